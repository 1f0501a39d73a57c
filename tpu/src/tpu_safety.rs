//! The libtpu safety rule (PJRT-FACTS.md): creating a libtpu client where there is no TPU makes
//! libtpu query the cloud metadata server over the network, with long retries. So before a libtpu
//! client is created: `TPU_SKIP_MDS_QUERY=1` must be set (done when the library is loaded), and if
//! the machine has no TPU device nodes the process must have no network interface up other than
//! loopback (run it under `unshare --net`). Then client creation fails at once with a clear error.
use crate::error::{Error, Result};
use std::path::Path;

/// TPU device nodes under `dev`: `accel*` or `vfio/<number>`.
pub fn tpu_devices_present(dev: &Path) -> bool {
    let any = |dir: &Path, pred: &dyn Fn(&str) -> bool| {
        std::fs::read_dir(dir)
            .map(|rd| rd.flatten().any(|e| pred(&e.file_name().to_string_lossy())))
            .unwrap_or(false)
    };
    any(dev, &|n| n.starts_with("accel"))
        || any(&dev.join("vfio"), &|n| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
        })
}

/// Non-loopback network interfaces that are up, read from `sys_class_net` (/sys/class/net).
pub fn non_loopback_interfaces_up(sys_class_net: &Path) -> Vec<String> {
    let mut up = Vec::new();
    let Ok(rd) = std::fs::read_dir(sys_class_net) else {
        return up;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let dir = e.path();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map(|s| s.trim().to_string());
        // ARPHRD_LOOPBACK = 772.
        if name == "lo" || read("type").is_ok_and(|t| t == "772") {
            continue;
        }
        let is_up = match read("flags") {
            // IFF_UP = 0x1
            Ok(f) => i64::from_str_radix(f.trim_start_matches("0x"), 16)
                .map(|v| v & 1 == 1)
                .unwrap_or(true),
            Err(_) => read("operstate").map(|s| s != "down").unwrap_or(true),
        };
        if is_up {
            up.push(name);
        }
    }
    up.sort();
    up
}

/// The check made before creating a libtpu client, with the paths as parameters for tests.
pub fn check_libtpu_client_allowed_at(dev: &Path, sys_class_net: &Path) -> Result<()> {
    if std::env::var("TPU_SKIP_MDS_QUERY").ok().as_deref() != Some("1") {
        return Err(Error::TpuSafety(
            "TPU_SKIP_MDS_QUERY=1 is not set in this process".into(),
        ));
    }
    if tpu_devices_present(dev) {
        return Ok(());
    }
    let up = non_loopback_interfaces_up(sys_class_net);
    if up.is_empty() {
        return Ok(());
    }
    Err(Error::TpuSafety(format!(
        "this machine has no TPU device (/dev/accel*, /dev/vfio/N) and network interface(s) {} \
         are up; off-TPU, libtpu would query the cloud metadata server over the network. \
         Run without network, e.g. `unshare --net --map-root-user <command>`",
        up.join(", ")
    )))
}

/// The check made before creating a libtpu client on this machine.
pub fn check_libtpu_client_allowed() -> Result<()> {
    check_libtpu_client_allowed_at(Path::new("/dev"), Path::new("/sys/class/net"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(root: &Path, name: &str, flags: &str, ty: &str) {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("flags"), flags).unwrap();
        std::fs::write(d.join("type"), ty).unwrap();
    }

    #[test]
    fn network_up_is_refused_without_tpu() {
        let t = tempfile::tempdir().unwrap();
        let net = t.path().join("net");
        let dev = t.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        iface(&net, "lo", "0x9", "772");
        iface(&net, "eth0", "0x1003", "1");
        iface(&net, "eth1", "0x1002", "1");
        assert_eq!(non_loopback_interfaces_up(&net), vec!["eth0".to_string()]);
        std::env::set_var("TPU_SKIP_MDS_QUERY", "1");
        let err = check_libtpu_client_allowed_at(&dev, &net).unwrap_err();
        assert!(err.to_string().contains("unshare --net"), "{err}");
        // Only loopback (as under `unshare --net`): allowed.
        std::fs::remove_dir_all(net.join("eth0")).unwrap();
        check_libtpu_client_allowed_at(&dev, &net).unwrap();
        // A TPU node present: allowed even with network.
        iface(&net, "eth0", "0x1003", "1");
        std::fs::create_dir_all(dev.join("vfio")).unwrap();
        std::fs::write(dev.join("vfio").join("0"), "").unwrap();
        check_libtpu_client_allowed_at(&dev, &net).unwrap();
    }
}

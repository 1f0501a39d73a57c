//! The libtpu safety rule (PJRT-FACTS.md): creating a libtpu client where there is no TPU makes
//! libtpu query the cloud metadata server over the network, with long retries. So off a TPU
//! host ([`crate::tpu_host`]), before a libtpu client is created: `TPU_SKIP_MDS_QUERY=1` must be
//! set (done when the library is loaded), and if the machine has no TPU device nodes the process
//! must have no network interface up other than loopback (run it under `unshare --net`). Then
//! client creation fails at once with a clear error.
//!
//! On a TPU host the rule does not apply: there the metadata server is the intended source of
//! libtpu's topology (its worker id and the slice's hosts), so `TPU_SKIP_MDS_QUERY` is left as
//! the user set it, and unset when they did not.
use crate::error::{Error, Result};
use crate::tpu_host::{is_tpu_host_at, HOST_ROOT};
use std::path::Path;

/// libtpu's switch that stops it querying the cloud metadata server.
pub const SKIP_MDS_QUERY_ENV: &str = "TPU_SKIP_MDS_QUERY";

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

/// Names of interfaces that are up and not loopback, from (name, flags) pairs (`IFF_*` flags).
pub fn non_loopback_up(interfaces: &[(String, u32)]) -> Vec<String> {
    let mut up: Vec<String> = interfaces
        .iter()
        .filter(|(_, f)| f & (libc::IFF_UP as u32) != 0 && f & (libc::IFF_LOOPBACK as u32) == 0)
        .map(|(n, _)| n.clone())
        .collect();
    up.sort();
    up.dedup();
    up
}

/// The network interfaces of this process's network namespace with their flags, from
/// `getifaddrs` (unlike /sys/class/net, which shows the namespace sysfs was mounted in, this
/// follows `unshare --net`). An error reading them counts as "unknown interface up".
pub fn interfaces_here() -> Vec<(String, u32)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return vec![("<getifaddrs failed>".into(), libc::IFF_UP as u32)];
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned by getifaddrs, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_name.is_null() {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned();
            out.push((name, ifa.ifa_flags));
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Non-loopback interfaces that are up in this process's network namespace.
pub fn non_loopback_interfaces_up() -> Vec<String> {
    non_loopback_up(&interfaces_here())
}

/// Sets libtpu's environment before the library is loaded, for the machine whose filesystem is
/// at `root` (a parameter for tests only, see [`crate::tpu_host`]): off a TPU host,
/// `TPU_SKIP_MDS_QUERY=1` (whatever it was), and without TPU device nodes also
/// `ALLOW_MULTIPLE_LIBTPU_LOAD=1` unless set: libtpu takes /tmp/libtpu_lockfile for exclusive
/// use of the TPU; without one there is nothing to guard, and the lock would make a second
/// process that only compiles (tests, two `tpu-run compile`s) fail to initialize.
pub fn prepare_libtpu_env_at(root: &Path) {
    if !is_tpu_host_at(root) {
        std::env::set_var(SKIP_MDS_QUERY_ENV, "1");
    }
    let allow = crate::plugin::ALLOW_MULTIPLE_LIBTPU_ENV;
    if !tpu_devices_present(&root.join("dev")) && std::env::var_os(allow).is_none() {
        std::env::set_var(allow, "1");
    }
}

/// [`prepare_libtpu_env_at`] this machine.
pub fn prepare_libtpu_env() {
    prepare_libtpu_env_at(Path::new(HOST_ROOT));
}

/// The check made before creating a libtpu client, with its inputs as parameters for tests: the
/// machine's filesystem root, its interfaces and the value of `TPU_SKIP_MDS_QUERY`.
pub fn check_libtpu_client_allowed_at(
    root: &Path,
    interfaces: &[(String, u32)],
    skip_mds_query: Option<&str>,
) -> Result<()> {
    if is_tpu_host_at(root) {
        return Ok(());
    }
    if skip_mds_query != Some("1") {
        return Err(Error::TpuSafety(
            "TPU_SKIP_MDS_QUERY=1 is not set in this process".into(),
        ));
    }
    if tpu_devices_present(&root.join("dev")) {
        return Ok(());
    }
    let up = non_loopback_up(interfaces);
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
    let skip = std::env::var(SKIP_MDS_QUERY_ENV).ok();
    check_libtpu_client_allowed_at(Path::new(HOST_ROOT), &interfaces_here(), skip.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_up_is_refused_without_tpu() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let dev = root.join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let (up, lo) = (libc::IFF_UP as u32, libc::IFF_LOOPBACK as u32);
        let mut ifs = vec![
            ("lo".to_string(), up | lo),
            ("eth0".to_string(), up | 0x1000),
            ("eth1".to_string(), 0x1000),
        ];
        assert_eq!(non_loopback_up(&ifs), vec!["eth0".to_string()]);
        let skip = Some("1");
        let err = check_libtpu_client_allowed_at(root, &ifs, skip).unwrap_err();
        assert!(err.to_string().contains("unshare --net"), "{err}");
        let err = check_libtpu_client_allowed_at(root, &ifs, None).unwrap_err();
        assert!(err.to_string().contains("TPU_SKIP_MDS_QUERY=1"), "{err}");
        // Only loopback (as under `unshare --net`): allowed, with the variable only.
        ifs.retain(|(n, _)| n != "eth0");
        check_libtpu_client_allowed_at(root, &ifs, skip).unwrap();
        assert!(check_libtpu_client_allowed_at(root, &ifs, Some("0")).is_err());
        // A TPU node present: allowed even with network, still only with the variable.
        ifs.push(("eth0".to_string(), up));
        std::fs::create_dir_all(dev.join("vfio")).unwrap();
        std::fs::write(dev.join("vfio").join("0"), "").unwrap();
        check_libtpu_client_allowed_at(root, &ifs, skip).unwrap();
        assert!(check_libtpu_client_allowed_at(root, &ifs, None).is_err());
    }

    #[test]
    fn a_tpu_host_needs_neither_the_variable_nor_isolation() {
        let t = tempfile::tempdir().unwrap();
        let v5e = (crate::tpu_host::GOOGLE_PCI_VENDOR, "0x0063");
        crate::tpu_host::fake_host(t.path(), true, Some(v5e)).unwrap();
        let ifs = vec![("eth0".to_string(), libc::IFF_UP as u32)];
        check_libtpu_client_allowed_at(t.path(), &ifs, None).unwrap();
        check_libtpu_client_allowed_at(t.path(), &ifs, Some("0")).unwrap();
    }

    #[test]
    fn this_process_sees_loopback() {
        // Every Linux network namespace has `lo`.
        assert!(interfaces_here().iter().any(|(n, _)| n == "lo"));
    }
}

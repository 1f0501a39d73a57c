//! Whether this machine is a Cloud TPU host (a TPU VM, or a GKE node with TPU chips): the one
//! place where libtpu is meant to ask the cloud metadata server for its place in the slice.
//!
//! Both signs must be there: TPU device nodes under `/dev` (`accel*` on v2-v4, `vfio/<N>` on
//! v5e and later, as libtpu opens them) and a TPU chip on the PCI bus (Google's vendor id with a
//! TPU device id, the test JAX's `hardware_utils.num_available_tpu_chips_and_device_id` makes).
//! Device nodes alone are not enough: `/dev/vfio/N` is any VFIO passthrough device (an NVMe
//! drive bound for SPDK, a GPU) and `/dev/accel*` is the kernel's generic accelerator class
//! (Intel NPUs, Habana). A TPU generation missing from [`TPU_PCI_DEVICE_IDS`] counts as no TPU,
//! which keeps the off-TPU rule of [`crate::tpu_safety`]: the safe direction.
//!
//! The filesystem root is a parameter (`*_at`) for tests only; product code calls the functions
//! without one, which read the real `/`. It is deliberately not an environment variable: a
//! stray export (or one copied from a test) in a product process could make a machine without a
//! TPU look like a TPU host and so turn off `TPU_SKIP_MDS_QUERY`. A parameter can be set only by
//! code, and no product path passes anything but [`HOST_ROOT`].
use std::path::Path;

/// The filesystem root product code probes.
pub const HOST_ROOT: &str = "/";

/// Google's PCI vendor id (also on gVNIC and NVMe devices, so never enough on its own).
pub const GOOGLE_PCI_VENDOR: &str = "0x1ae0";

/// PCI device ids of TPU chips and their generations (jax/_src/hardware_utils.py, 2026-08).
pub const TPU_PCI_DEVICE_IDS: [(&str, &str); 9] = [
    ("0x0027", "v3"),
    ("0x0056", "plc"),
    ("0x005e", "v4"),
    ("0x0062", "v5p"),
    ("0x0063", "v5e"),
    ("0x006f", "v6e"),
    ("0x0076", "tpu7x"),
    ("0x0083", "tpu8i"),
    ("0x007c", "tpu8t"),
];

/// At most this many PCI devices are looked at (a host has a few dozen).
const MAX_PCI_DEVICES: usize = 4096;

/// TPU chips on the PCI bus whose devices are listed in `pci_devices`
/// (`/sys/bus/pci/devices`: one directory per device with `vendor` and `device` files).
pub fn tpu_pci_chips(pci_devices: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(pci_devices) else {
        return 0;
    };
    let read = |p: &Path| std::fs::read_to_string(p).map(|s| s.trim().to_ascii_lowercase());
    entries
        .flatten()
        .take(MAX_PCI_DEVICES)
        .filter(|e| {
            let dir = e.path();
            read(&dir.join("vendor")).is_ok_and(|v| v == GOOGLE_PCI_VENDOR)
                && read(&dir.join("device"))
                    .is_ok_and(|d| TPU_PCI_DEVICE_IDS.iter().any(|(id, _)| *id == d))
        })
        .count()
}

/// Whether the machine whose filesystem is at `root` is a TPU host (see the module doc). For
/// tests; product code calls [`is_tpu_host`].
pub fn is_tpu_host_at(root: &Path) -> bool {
    crate::tpu_safety::tpu_devices_present(&root.join("dev"))
        && tpu_pci_chips(&root.join("sys/bus/pci/devices")) > 0
}

/// Whether this machine is a TPU host.
pub fn is_tpu_host() -> bool {
    is_tpu_host_at(Path::new(HOST_ROOT))
}

/// Writes a fake machine under `root` for tests: TPU device nodes (`/dev/vfio/0`) and/or one
/// PCI device of `vendor`:`device`.
#[doc(hidden)]
pub fn fake_host(root: &Path, nodes: bool, pci: Option<(&str, &str)>) -> std::io::Result<()> {
    std::fs::create_dir_all(root.join("dev"))?;
    if nodes {
        std::fs::create_dir_all(root.join("dev/vfio"))?;
        std::fs::write(root.join("dev/vfio/0"), "")?;
    }
    let devices = root.join("sys/bus/pci/devices");
    std::fs::create_dir_all(&devices)?;
    if let Some((vendor, device)) = pci {
        let dir = devices.join("0000:00:04.0");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("vendor"), format!("{vendor}\n"))?;
        std::fs::write(dir.join("device"), format!("{device}\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tpu_host_needs_device_nodes_and_a_tpu_chip() {
        let host = |nodes, pci| {
            let t = tempfile::tempdir().unwrap();
            fake_host(t.path(), nodes, pci).unwrap();
            is_tpu_host_at(t.path())
        };
        let v5e = Some((GOOGLE_PCI_VENDOR, "0x0063"));
        assert!(host(true, v5e));
        assert!(!host(false, v5e), "a chip but no device nodes");
        assert!(!host(true, None), "VFIO nodes of some other device");
        // gVNIC: Google's vendor id, not a TPU.
        assert!(!host(true, Some((GOOGLE_PCI_VENDOR, "0x0042"))));
        assert!(!host(true, Some(("0x10de", "0x0063"))), "another vendor");
        assert!(!is_tpu_host_at(Path::new("/nonexistent-root")));
    }
}

//! Where a benchmark ran: the plugin, the driver, the build; recorded with every result.
use super::record::Environment;
use crate::backend::Backend;
use std::time::{SystemTime, UNIX_EPOCH};
use tpu::Plugin;

/// The commit this binary was built from (see build.rs).
pub const GIT_COMMIT: &str = env!("TPU_RUN_GIT_COMMIT");

/// What can be told before anything runs; the platform and device kind are filled in from the
/// first measured run.
pub fn environment(backend: Backend, plugin: Option<&Plugin>) -> Environment {
    Environment {
        backend: format!("{backend:?}").to_lowercase(),
        driver: nvidia_driver(),
        plugin_path: plugin.map(|p| p.path().display().to_string()),
        plugin_version: plugin.and_then(Plugin::package_version),
        c_api: plugin.map(|p| {
            let (major, minor) = p.api_version();
            format!("{major}.{minor}")
        }),
        tpu_run_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: GIT_COMMIT.into(),
        xla_flags: crate::xla_flags::global(),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        ..Default::default()
    }
}

/// The first line of /proc/driver/nvidia/version (the kernel module's version), where present.
fn nvidia_driver() -> Option<String> {
    std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .filter(|l| !l.is_empty())
}

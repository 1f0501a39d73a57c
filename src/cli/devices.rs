//! `tpu-run devices`: what a backend's plugin offers.
use super::DeviceArgs;
use crate::backend::open_client;
use anyhow::Result;

pub fn run(a: &DeviceArgs) -> Result<()> {
    let client = open_client(a.backend, a.plugin.as_deref(), a.cpu_devices)?;
    let (major, minor) = client.plugin().api_version();
    println!(
        "platform {} {} (PJRT C API {major}.{minor}), process {}",
        client.platform_name()?,
        client.platform_version()?,
        client.process_index()?
    );
    for d in client.devices()? {
        let mem = match d.memory_stats()? {
            Some(m) => format!("{m:?}"),
            None => "memory stats not offered".into(),
        };
        println!(
            "  device {} kind {} process {} local id {} addressable {} {mem}",
            d.id(),
            d.kind(),
            d.process_index(),
            d.local_hardware_id(),
            d.is_addressable()
        );
    }
    Ok(())
}

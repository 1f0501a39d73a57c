//! The devices a fine-tuning run trains on: the backend's client (on CPU with as many virtual
//! devices as asked) and the data-parallel replica count, chosen as pretraining chooses it.
use crate::backend::{open_client, Backend};
use crate::pretrain::config::default_num_devices;
use anyhow::{bail, Result};
use std::path::Path;
use tpu::Client;

/// Opens `backend`'s client and decides the replicas: `asked` (`--num-devices`) or
/// [`default_num_devices`] (all of a TPU host's chips; 1 on CPU and CUDA).
pub fn open_training_devices(
    backend: Backend,
    plugin: Option<&Path>,
    asked: Option<u32>,
) -> Result<(Client, u32)> {
    if asked == Some(0) {
        bail!("--num-devices must be at least 1");
    }
    let cpu_devices = i64::from(asked.unwrap_or(1));
    let client = open_client(backend, plugin, cpu_devices)?;
    let available = client.addressable_devices()?.len();
    let n = asked.map_or_else(|| default_num_devices(backend, available), |n| n as usize);
    if n > available {
        bail!(
            "--num-devices {n}: the {} backend has {available} device(s)",
            backend.plugin_kind().name()
        );
    }
    Ok((client, n as u32))
}

/// A line naming the platform and kind of the client's first device, e.g. `cuda (NVIDIA H100)`,
/// with the replica count when the step is data parallel.
pub fn describe_devices(client: &Client, replicas: u32) -> Result<String> {
    let platform = client.platform_name().unwrap_or_default();
    let kind = client
        .addressable_devices()?
        .first()
        .map(|d| d.kind().to_string())
        .unwrap_or_default();
    Ok(if replicas > 1 {
        format!("{replicas} x {platform} ({kind})")
    } else {
        format!("{platform} ({kind})")
    })
}

//! Choosing a PJRT backend (CPU, CUDA, TPU) and opening a client on it.
use anyhow::{Context, Result};
use std::path::Path;
use tpu::plugin::{Plugin, PluginKind};
use tpu::{Client, ClientOptions};

/// Which kind of device to run on; each maps to one PJRT plugin family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Cpu,
    Cuda,
    Tpu,
}

impl Backend {
    pub fn plugin_kind(self) -> PluginKind {
        match self {
            Backend::Cpu => PluginKind::Cpu,
            Backend::Cuda => PluginKind::Cuda,
            Backend::Tpu => PluginKind::Tpu,
        }
    }
}

/// Finds the backend's plugin (an explicit path first) and creates a client. The CPU plugin is
/// installed into the cache on first use; the others must be installed by the user.
pub fn open_client(backend: Backend, plugin: Option<&Path>, cpu_devices: i64) -> Result<Client> {
    let kind = backend.plugin_kind();
    let plugin = if backend == Backend::Cpu {
        Plugin::discover_or_install(kind, plugin)
    } else {
        Plugin::discover(kind, plugin)
    }
    .with_context(|| format!("loading the {} PJRT plugin", kind.name()))?;
    let options = match backend {
        Backend::Cpu => ClientOptions::cpu(cpu_devices),
        _ => ClientOptions::default(),
    };
    Client::new(&plugin, &options)
        .with_context(|| format!("creating a PJRT client on {}", plugin.path().display()))
}

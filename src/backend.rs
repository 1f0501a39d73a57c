//! Choosing a PJRT backend (CPU, CUDA, TPU), opening a client on it, and the backend-specific
//! attention kernel.
use crate::model::{AttentionKernel, BertConfig};
use anyhow::{bail, Context, Result};
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

/// `--attention`: which self-attention kernel the model graph uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttentionChoice {
    /// cuDNN fused attention on CUDA with bf16 compute (when the head size allows), else graph.
    #[default]
    Auto,
    /// Plain HLO ops on every backend.
    Graph,
    /// cuDNN fused attention; CUDA and bf16 only.
    Cudnn,
}

impl AttentionChoice {
    /// The kernel for `cfg` (its compute dtype and head size) on `backend`; `seed` seeds cuDNN's
    /// dropout generator.
    pub fn resolve(self, backend: Backend, cfg: &BertConfig, seed: u64) -> Result<AttentionKernel> {
        let fused = AttentionKernel::CudnnFused { seed: seed as i64 };
        let fits = {
            let mut c = cfg.clone();
            c.attention = fused;
            c.validate()
        };
        match self {
            AttentionChoice::Graph => Ok(AttentionKernel::Graph),
            AttentionChoice::Auto if backend == Backend::Cuda && fits.is_ok() => Ok(fused),
            AttentionChoice::Auto => Ok(AttentionKernel::Graph),
            AttentionChoice::Cudnn if backend != Backend::Cuda => {
                bail!("--attention cudnn needs --backend cuda (cuDNN is an NVIDIA library)")
            }
            AttentionChoice::Cudnn => {
                fits.context("--attention cudnn")?;
                Ok(fused)
            }
        }
    }
}

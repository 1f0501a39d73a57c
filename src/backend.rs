//! Choosing a PJRT backend (CPU, CUDA, TPU), opening a client on it, the backend-specific
//! attention kernel, and with it a run's [`Execution`] ([`resolve_execution`]).
use crate::model::{AttentionKernel, BertConfig, ComputeDtype, Execution};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tpu::plugin::{Plugin, PluginKind};
use tpu::{Client, ClientOptions, CompileCache, CompileOptions, KeyValueStore, OptionOverride};

/// Which kind of device to run on; each maps to one PJRT plugin family. The names are those of
/// `--backend` and the run config's `device.backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Backend {
    /// The CPU plugin (installed on first use).
    Cpu,
    /// NVIDIA GPUs (the jax-cuda PJRT plugin); `gpu` is accepted too.
    #[serde(alias = "gpu")]
    #[value(alias = "gpu")]
    Cuda,
    /// Cloud TPU (libtpu).
    Tpu,
}

impl Backend {
    /// The name `--backend` and `device.backend` take.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Tpu => "tpu",
        }
    }

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
    let client = Client::new(&plugin, &options)
        .with_context(|| format!("creating a PJRT client on {}", plugin.path().display()))?;
    if compile_cache_enabled() {
        client.enable_compile_cache(CompileCache::default_location());
    }
    Ok(client)
}

static COMPILE_CACHE_OFF: AtomicBool = AtomicBool::new(false);

/// `--no-compile-cache`: clients opened from now on compile every program afresh.
pub fn disable_compile_cache() {
    COMPILE_CACHE_OFF.store(true, Ordering::Relaxed);
}

/// Whether [`open_client`] routes compiles through the per-user compile cache
/// ([`CompileCache::default_location`]): yes unless `--no-compile-cache` or
/// `TPU_RUN_COMPILE_CACHE=off|0|false`. Multi-process clients never do (their executables span
/// processes).
pub fn compile_cache_enabled() -> bool {
    let env_off = std::env::var("TPU_RUN_COMPILE_CACHE")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "off" | "0" | "false"));
    !(env_off || COMPILE_CACHE_OFF.load(Ordering::Relaxed))
}

/// Opens the client of process `process_id` of a `num_processes`-process run: one client
/// across the processes, formed through `store` (the coordinator's key-value store) with the
/// options the backend's plugin needs ([`ClientOptions::for_process`]). The CPU plugin cannot
/// do this; that is an error before any plugin is loaded.
pub fn open_process_client(
    backend: Backend,
    plugin: Option<&Path>,
    store: Arc<dyn KeyValueStore>,
    process_id: u32,
    num_processes: u32,
) -> Result<Client> {
    let kind = backend.plugin_kind();
    let options = ClientOptions::default()
        .for_process(kind, i64::from(process_id), i64::from(num_processes))
        .with_context(|| format!("the {} backend", kind.name()))?;
    let plugin = Plugin::discover(kind, plugin)
        .with_context(|| format!("loading the {} PJRT plugin", kind.name()))?;
    Client::with_kv_store(&plugin, &options, store).with_context(|| {
        format!(
            "creating the PJRT client of process {process_id} of {num_processes} on {}",
            plugin.path().display()
        )
    })
}

/// `--attention` (`device.attention`): which self-attention kernel the model graph uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
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
    /// The name `--attention` and `device.attention` take.
    pub fn name(self) -> &'static str {
        match self {
            AttentionChoice::Auto => "auto",
            AttentionChoice::Graph => "graph",
            AttentionChoice::Cudnn => "cudnn",
        }
    }

    /// The kernel for a model of `cfg` (its head size) computing in `compute` on `backend`;
    /// `seed` seeds cuDNN's dropout generator.
    pub fn resolve(
        self,
        backend: Backend,
        cfg: &BertConfig,
        compute: ComputeDtype,
        seed: u64,
    ) -> Result<AttentionKernel> {
        let fused = AttentionKernel::CudnnFused { seed: seed as i64 };
        let fits = Execution::new(compute).with_attention(fused).check(cfg);
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

/// A run's [`Execution`]: its precision (`--precision`, `train.precision`: the one value the
/// model's compute dtype and the train step's policy, [`Execution::step_policy`], both come
/// from) and the kernel `attention` picks for a model of `cfg` on `backend`, checked against
/// `cfg`. Every command that builds a model resolves its execution here.
pub fn resolve_execution(
    backend: Backend,
    precision: ComputeDtype,
    attention: AttentionChoice,
    cfg: &BertConfig,
    seed: u64,
) -> Result<Execution> {
    let exec =
        Execution::new(precision).with_attention(attention.resolve(backend, cfg, precision, seed)?);
    exec.check(cfg)?;
    Ok(exec)
}

/// Compile options for a program built to run as `exec`. XLA:GPU (jax-cuda13-pjrt 0.11.2) aborts
/// the process when a cuDNN attention call with dropout is recorded into a command buffer
/// (CUDA graph): `cuda_dnn.cc Check failed: local_device_ordinal.has_value()` in
/// `CudnnGraph::PackOperands`, as the dropout offset is kept per device. So with the fused
/// kernel the cuDNN calls run as plain launches: command buffers keep every other kind.
pub fn compile_options_for(exec: Execution, mut options: CompileOptions) -> CompileOptions {
    if let AttentionKernel::CudnnFused { .. } = exec.attention {
        options.env_option_overrides.insert(
            "xla_gpu_enable_command_buffer".into(),
            OptionOverride::Str("FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL".into()),
        );
    }
    crate::xla_flags::apply(&mut options);
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::squad_train::{train_program, Hyper};
    use hlo::ir::Op;

    #[test]
    fn auto_picks_cudnn_only_on_cuda_with_bf16() {
        let base = BertConfig::preset("base").unwrap();
        let (bf16, f32) = (ComputeDtype::Bf16, ComputeDtype::F32);
        let fused = AttentionKernel::CudnnFused { seed: 7 };
        let auto = AttentionChoice::Auto;
        assert_eq!(auto.resolve(Backend::Cuda, &base, bf16, 7).unwrap(), fused);
        for (backend, dtype) in [
            (Backend::Cuda, f32),
            (Backend::Cpu, bf16),
            (Backend::Tpu, bf16),
        ] {
            assert_eq!(
                auto.resolve(backend, &base, dtype, 7).unwrap(),
                AttentionKernel::Graph
            );
        }
        let graph = AttentionChoice::Graph;
        assert_eq!(
            graph.resolve(Backend::Cuda, &base, bf16, 7).unwrap(),
            AttentionKernel::Graph
        );
        // head size 4 (hidden 8, 2 heads) does not fit the kernel: auto falls back, cudnn says why
        let mut odd = base.clone();
        (odd.hidden_size, odd.num_attention_heads) = (8, 2);
        assert_eq!(
            auto.resolve(Backend::Cuda, &odd, bf16, 7).unwrap(),
            AttentionKernel::Graph
        );
        let cudnn = AttentionChoice::Cudnn;
        let e = format!(
            "{:#}",
            cudnn.resolve(Backend::Cuda, &odd, bf16, 7).unwrap_err()
        );
        assert!(e.contains("head size"), "{e}");
        let e = format!(
            "{:#}",
            cudnn.resolve(Backend::Cpu, &base, bf16, 7).unwrap_err()
        );
        assert!(e.contains("--backend cuda"), "{e}");
        let e = format!(
            "{:#}",
            cudnn.resolve(Backend::Cuda, &base, f32, 7).unwrap_err()
        );
        assert!(e.contains("bf16"), "{e}");
    }

    #[test]
    fn resolve_execution_carries_the_precision_and_checks_the_kernel() {
        let base = BertConfig::preset("base").unwrap();
        let exec = resolve_execution(
            Backend::Cuda,
            ComputeDtype::Fp8,
            AttentionChoice::Auto,
            &base,
            3,
        )
        .unwrap();
        assert_eq!(exec.compute, ComputeDtype::Fp8);
        assert_eq!(exec.attention, AttentionKernel::CudnnFused { seed: 3 });
        let exec = resolve_execution(
            Backend::Cpu,
            ComputeDtype::Bf16,
            AttentionChoice::Auto,
            &base,
            3,
        )
        .unwrap();
        assert_eq!(exec, Execution::new(ComputeDtype::Bf16));
        let e = resolve_execution(
            Backend::Cuda,
            ComputeDtype::F32,
            AttentionChoice::Cudnn,
            &base,
            3,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("needs bf16 compute"), "{e:#}");
    }

    #[test]
    fn fused_squad_step_has_one_call_pair_per_layer_with_distinct_seeds() {
        let cfg = BertConfig::preset("tiny").unwrap();
        let exec = Execution::new(ComputeDtype::Bf16)
            .with_attention(AttentionKernel::CudnnFused { seed: 11 });
        let hyper = Hyper {
            learning_rate: 3e-5,
            warmup_steps: 1,
            total_steps: 10,
            weight_decay: 0.01,
            clip_norm: Some(1.0),
        };
        let program = train_program(&cfg, exec, 2, 64, &hyper.step_config()).unwrap();
        let configs = |target: &str| -> Vec<String> {
            program
                .module
                .entry_computation()
                .instrs
                .iter()
                .filter_map(|i| match &i.op {
                    Op::CustomCall {
                        target: t,
                        backend_config,
                        ..
                    } if t == target => Some(backend_config.clone()),
                    _ => None,
                })
                .collect()
        };
        let fwd = configs(hlo::ops::CUDNN_ATTENTION_DROPOUT_FWD);
        let bwd = configs(hlo::ops::CUDNN_ATTENTION_DROPOUT_BWD);
        assert_eq!((fwd.len(), bwd.len()), (2, 2), "tiny has 2 layers");
        let seed = |c: &String| -> i64 {
            let v: serde_json::Value = serde_json::from_str(c).unwrap();
            v["cudnn_fmha_backend_config"]["seed"].as_i64().unwrap()
        };
        assert_ne!(seed(&fwd[0]), seed(&fwd[1]), "each layer its own stream");
        let mut fwd_seeds: Vec<i64> = fwd.iter().map(seed).collect();
        let mut bwd_seeds: Vec<i64> = bwd.iter().map(seed).collect();
        fwd_seeds.sort();
        bwd_seeds.sort();
        assert_eq!(
            fwd_seeds, bwd_seeds,
            "each backward regenerates its forward's mask"
        );
        let opts = compile_options_for(exec, CompileOptions::default());
        assert!(opts
            .env_option_overrides
            .contains_key("xla_gpu_enable_command_buffer"));
    }
}

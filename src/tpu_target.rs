//! Cloud TPU as a compile target: topology names and options as libtpu spells them, the
//! TPU-shaped run settings, the programs `tpu-run compile` builds (the pretraining train step,
//! built by the same function `tpu-run pretrain` uses, the BERT forward pass, the example
//! programs) and a memory estimate to compare with the compiler's report.
//!
//! Compiling needs no TPU: [`tpu::Topology::create`] describes any slice by name and
//! [`tpu::Topology::compile`] runs libtpu's compiler for it (see docs/tpu.md for what was
//! measured). libtpu must run without network where there is no TPU ([`tpu::tpu_safety`]);
//! [`reexec_without_network`] restarts the command in a fresh network namespace.
use crate::backend::compile_options_for;
use crate::model::params::param_specs;
use crate::model::{
    pretraining_forward, BatchShapes, BertConfig, ComputeDtype, Execution, ParamValues,
};
use crate::pretrain::program::train_step_module;
use crate::pretrain::PretrainConfig;
use anyhow::{anyhow, bail, Context, Result};
use hlo::{ElementType, Module, ModuleBuilder, Shape};
use tpu::{CompileOptions, Value};

/// A TPU slice to compile for: the topology name libtpu takes (`v5e:2x2`, `v4:2x2x1`,
/// `v5p:2x2x1`, `v6e:2x2`, `tpu7x:2x2x1`; `_twisted` / `_untwisted` suffixes) and the
/// `PJRT_TopologyDescription_Create` options (`chip_config_name`, `chips_per_host_bounds`,
/// `num_slices`, `wrap`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct TpuTarget {
    pub topology: String,
    pub options: Vec<(String, Value)>,
}

impl TpuTarget {
    /// Parses `tpu:<topology>` and `name=value` options. Values: integers, `AxBxC` lists,
    /// `true`/`false`, otherwise strings. v4 and v5p default to `chip_config_name=megacore` (one
    /// device per chip with two TensorCores, as Cloud TPU VMs run them); libtpu's own default
    /// for v4 is two devices per chip.
    pub fn parse(target: &str, options: &[String]) -> Result<Self> {
        let Some(topology) = target.strip_prefix("tpu:") else {
            bail!("--target {target:?}: expected tpu:<topology> (e.g. tpu:v5e:2x2, tpu:v4:2x2x1) or cpu");
        };
        let generation = topology.split([':', '_', '=']).next().unwrap_or("");
        if topology.is_empty() || generation.is_empty() {
            bail!("--target {target:?}: the topology is missing, e.g. tpu:v5e:2x2");
        }
        let mut parsed = Vec::new();
        for o in options {
            let (k, v) = o.split_once('=').ok_or_else(|| {
                anyhow!("--topology-option {o:?}: expected name=value, e.g. num_slices=2")
            })?;
            if k.is_empty() {
                bail!("--topology-option {o:?}: the name is empty");
            }
            if parsed.iter().any(|(n, _): &(String, Value)| n == k) {
                bail!("--topology-option {k} is given twice");
            }
            parsed.push((k.to_string(), option_value(v)));
        }
        if matches!(generation, "v4" | "v5p")
            && !parsed.iter().any(|(k, _)| k == "chip_config_name")
        {
            parsed.push(("chip_config_name".into(), Value::Str("megacore".into())));
        }
        Ok(Self {
            topology: topology.to_string(),
            options: parsed,
        })
    }
}

fn option_value(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return Value::Int64(i);
    }
    match v {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let parts: Vec<&str> = v.split('x').collect();
    if parts.len() > 1 {
        if let Ok(list) = parts.iter().map(|p| p.parse::<i64>()).collect() {
            return Value::Int64List(list);
        }
    }
    Value::Str(v.to_string())
}

/// Pads the vocabulary to a multiple of this on TPU: the matrix units are 128 x 128.
pub const TPU_VOCAB_MULTIPLE: usize = 128;

/// The TPU-shaped form of a pretraining run, in the run's own settings (`train.precision =
/// "bf16"`, `model.pad_vocab_to = 128`): bf16 matmul inputs with f32 accumulation (the model
/// keeps layer-norm and softmax statistics and the loss in f32, and f32 master weights) and the
/// vocabulary padded to a multiple of 128 (30,522 -> 30,592) with the padded logits masked out
/// of the loss. Shapes stay static and nothing is f64. `tpu-run pretrain --backend tpu` does not
/// do this by itself; the config asks for it.
pub fn tpu_shape(run: &mut PretrainConfig) {
    run.train.precision = ComputeDtype::Bf16;
    run.model.pad_vocab_to = Some(TPU_VOCAB_MULTIPLE);
}

/// Sizes that do not tile onto the TPU matrix units (128x128) and vector lanes (8 sublanes x
/// 128 lanes): they compile, but waste part of each tile. Empty when everything fits.
pub fn tpu_shape_notes(cfg: &BertConfig, shapes: &BatchShapes) -> Vec<String> {
    let mut notes = Vec::new();
    for (what, n) in [
        ("hidden_size", cfg.hidden_size),
        ("intermediate_size", cfg.intermediate_size),
        ("padded vocabulary", cfg.padded_vocab_size()),
        ("seq_len", shapes.seq_len),
    ] {
        if !n.is_multiple_of(128) {
            notes.push(format!("{what} {n} is not a multiple of 128"));
        }
    }
    if !(shapes.batch_size * shapes.seq_len).is_multiple_of(8) {
        notes.push(format!(
            "batch x seq = {} is not a multiple of 8",
            shapes.batch_size * shapes.seq_len
        ));
    }
    notes
}

/// What to build for a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// The whole pretraining step: forward, backward, clipping, optimizer, schedule.
    TrainStep,
    /// The pretraining forward pass at eval (no dropout): loss, MLM and NSP logits.
    Forward,
}

impl What {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "train-step" | "train_step" | "step" => Ok(Self::TrainStep),
            "forward" | "eval" => Ok(Self::Forward),
            other => bail!("--what {other:?}: choose train-step or forward"),
        }
    }
}

/// A program to compile, with what is known about its memory.
pub struct Program {
    pub module: Module,
    /// `module` lowered: the bytes handed to the compiler.
    pub proto: Vec<u8>,
    pub options: CompileOptions,
    pub estimate: MemoryEstimate,
}

impl Program {
    /// A one-device program with no memory estimate (the examples).
    pub fn plain(module: Module) -> Result<Self> {
        Ok(Self {
            proto: module.to_proto_bytes()?,
            module,
            options: CompileOptions::replicas(1),
            estimate: MemoryEstimate::default(),
        })
    }
}

/// A BERT program and the model and batch it was built for.
pub struct BertProgram {
    pub program: Program,
    /// The model as the run configures it (vocabulary padding included).
    pub model: BertConfig,
    /// How the run computes it (precision, attention kernel).
    pub exec: Execution,
    /// One replica's micro-batch (train step) or the batch (forward pass).
    pub shapes: BatchShapes,
}

/// BERT's pretraining forward pass at eval, for `cfg` run as `exec`: `(params..., batch...) ->
/// (loss, mlm_logits, nsp_logits)`.
pub fn bert_forward(cfg: &BertConfig, exec: Execution, shapes: &BatchShapes) -> Result<Program> {
    let mb = ModuleBuilder::new("bert_forward");
    let b = mb.builder("forward");
    let params = ParamValues::declare(&b, &param_specs(cfg))?;
    let batch = shapes.declare(&b)?;
    let key = b.constant_slice(&[0u64, 0], &[2])?;
    let out = pretraining_forward(&b, cfg, exec, &params, &batch, key, false)?;
    let root = b.tuple(&[out.loss, out.mlm_logits, out.nsp_logits])?;
    let entry = b.finish(root)?;
    let module = mb.build(entry)?;
    Ok(Program {
        proto: module.to_proto_bytes()?,
        module,
        options: compile_options_for(exec, CompileOptions::replicas(1)),
        estimate: MemoryEstimate::for_model(cfg, exec.compute, shapes, What::Forward, 0),
    })
}

/// Builds `what` for the pretraining run `run`. The train step is the one `tpu-run pretrain`
/// compiles for `run` on `replicas` data-parallel devices
/// ([`crate::pretrain::program::train_step_module`]; `train.batch_size` is the global batch);
/// the forward pass has no collective, so it takes only 1 replica and the whole batch.
pub fn bert_program(run: &PretrainConfig, what: What, replicas: u32) -> Result<BertProgram> {
    match what {
        What::TrainStep => {
            let step = train_step_module(run, replicas as usize)?;
            let slots = run.step_config()?.optimizer.slot_names().len() as u64;
            let mut estimate = MemoryEstimate::for_model(
                &step.model,
                step.exec.compute,
                &step.micro,
                What::TrainStep,
                slots,
            );
            // The step takes its micro-batches stacked, all at once.
            estimate.batch *= u64::from(run.train.accumulation_steps);
            Ok(BertProgram {
                program: Program {
                    module: step.program.module,
                    proto: step.proto,
                    options: step.options,
                    estimate,
                },
                model: step.model,
                exec: step.exec,
                shapes: step.micro,
            })
        }
        What::Forward if replicas == 1 => {
            let model = run.bert_config()?;
            let exec = run.execution(&model)?;
            let shapes = run.batch_shapes(run.train.batch_size);
            Ok(BertProgram {
                program: bert_forward(&model, exec, &shapes)?,
                model,
                exec,
                shapes,
            })
        }
        What::Forward => {
            bail!("the forward pass is a one-device program; it takes 1 replica, not {replicas}")
        }
    }
}

/// Device memory a program needs by plain accounting of its tensors (bytes, one device, no
/// sharding): what must be live at the peak if nothing is recomputed or fused away.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryEstimate {
    /// f32 master weights.
    pub params: u64,
    /// Optimizer slots (f32, `slots` per parameter).
    pub optimizer: u64,
    /// f32 gradients, all live before the global-norm clip.
    pub gradients: u64,
    /// The batch inputs.
    pub batch: u64,
    /// Activations live at the peak: those the backward pass reads (train step) or one layer's
    /// (forward).
    pub activations: u64,
    /// Outputs that do not reuse an input's buffer (the forward pass's logits).
    pub outputs: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.params + self.optimizer + self.gradients + self.batch + self.activations + self.outputs
    }

    /// The estimate for BERT, `slots` optimizer slots per parameter (2 for Adam).
    ///
    /// For `t = batch x seq` tokens and `c` bytes per compute-type element, one encoder layer
    /// keeps what its backward pass reads: the attention input, Q, K, V, the attention context,
    /// the attention output and its layer norm, the FFN output and its layer norm (9 t H), the
    /// FFN's input and GELU output (2 t I) and the attention probabilities (batch x heads x
    /// seq^2), all in the compute type. The MLM head keeps the gathered positions through its
    /// transform (3 n H, `n = batch x max_predictions`) and the f32 logits (n x vocab; the
    /// softmax the backward needs is recomputed from them). The forward pass at eval holds one
    /// layer's tensors at a time and returns the logits.
    pub fn for_model(
        cfg: &BertConfig,
        compute: ComputeDtype,
        shapes: &BatchShapes,
        what: What,
        slots: u64,
    ) -> Self {
        let c: u64 = match compute {
            ComputeDtype::F32 => 4,
            // fp8 keeps bf16 activations (the f8 copies are transient).
            ComputeDtype::Bf16 | ComputeDtype::Fp8 => 2,
        };
        let n_params: u64 = param_specs(cfg)
            .iter()
            .map(|s| s.num_elements() as u64)
            .sum();
        let (bs, s, p) = (
            shapes.batch_size as u64,
            shapes.seq_len as u64,
            shapes.max_predictions as u64,
        );
        let (h, i, a) = (
            cfg.hidden_size as u64,
            cfg.intermediate_size as u64,
            cfg.num_attention_heads as u64,
        );
        let (t, n) = (bs * s, bs * p);
        let layer = c * t * (9 * h + 2 * i) + c * bs * a * s * s;
        let transform = c * 3 * n * h;
        let logits = 4 * n * cfg.padded_vocab_size() as u64;
        let batch = 4 * (3 * t + 3 * n + bs);
        let params = 4 * n_params;
        match what {
            What::TrainStep => Self {
                params,
                optimizer: params * slots,
                gradients: params,
                batch,
                activations: layer * cfg.num_hidden_layers as u64 + transform + logits,
                outputs: 0,
            },
            What::Forward => Self {
                params,
                batch,
                activations: layer + transform,
                outputs: logits + 4 * (2 * bs + 1),
                ..Self::default()
            },
        }
    }
}

/// Element types used anywhere in a module (to check that a TPU program has no f64).
pub fn element_types(module: &Module) -> std::collections::BTreeSet<ElementType> {
    fn walk(s: &Shape, out: &mut std::collections::BTreeSet<ElementType>) {
        match s {
            Shape::Array(a) => {
                out.insert(a.ty);
            }
            Shape::Tuple(t) => t.iter().for_each(|e| walk(e, out)),
            Shape::Token => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for c in &module.computations {
        for i in &c.instrs {
            walk(&i.shape, &mut out);
        }
    }
    out
}

/// Environment variable set in the copy of the process started by [`reexec_without_network`].
pub const NO_NET_CHILD_ENV: &str = "TPU_RUN_NO_NET_CHILD";

/// libtpu may only run here without network (no TPU device, interfaces up): restarts this
/// command under `unshare --net --map-root-user` (a new network namespace with only a down
/// loopback) and returns its exit code. `Ok(None)` when no restart is needed (a TPU is present,
/// the network is already off, or this already is the restarted copy).
pub fn reexec_without_network() -> Result<Option<i32>> {
    if std::env::var_os(NO_NET_CHILD_ENV).is_some()
        || tpu::plugin::tpu_devices_present_here()
        || tpu::tpu_safety::non_loopback_interfaces_up().is_empty()
    {
        return Ok(None);
    }
    let probe = std::process::Command::new("unshare")
        .args(["--net", "--map-root-user", "true"])
        .stderr(std::process::Stdio::piped())
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            bail!(
                "this machine has no TPU and its network is up; libtpu may only run without \
                 network here (it would query the cloud metadata server), and `unshare --net \
                 --map-root-user` cannot make a network namespace ({why}). Run the command in a \
                 namespace without network yourself"
            )
        }
    }
    let exe = std::env::current_exe().context("locating the tpu-run executable")?;
    let status = std::process::Command::new("unshare")
        .args(["--net", "--map-root-user"])
        .arg(&exe)
        .args(std::env::args_os().skip(1))
        .env(NO_NET_CHILD_ENV, "1")
        .env("TPU_SKIP_MDS_QUERY", "1")
        .status();
    match status {
        Ok(s) => match s.code() {
            Some(code) => Ok(Some(code)),
            None => bail!("the network-less copy of tpu-run was killed by a signal ({s})"),
        },
        Err(e) => bail!(
            "this machine has no TPU and its network is up; libtpu may only run without network \
             here (it would query the cloud metadata server), and starting `unshare --net \
             --map-root-user` failed: {e}. Run the command in a network namespace yourself"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_options_and_defaults() {
        let t = TpuTarget::parse("tpu:v5e:2x2", &[]).unwrap();
        assert_eq!(t.topology, "v5e:2x2");
        assert!(t.options.is_empty());
        let t = TpuTarget::parse(
            "tpu:v4:2x2x2",
            &["num_slices=2".into(), "chips_per_host_bounds=2x2x1".into()],
        )
        .unwrap();
        assert_eq!(t.options[0], ("num_slices".into(), Value::Int64(2)));
        assert_eq!(
            t.options[1],
            (
                "chips_per_host_bounds".into(),
                Value::Int64List(vec![2, 2, 1])
            )
        );
        assert_eq!(
            t.options[2],
            ("chip_config_name".into(), Value::Str("megacore".into()))
        );
        let t = TpuTarget::parse("tpu:v4:2x2x1", &["chip_config_name=default".into()]).unwrap();
        assert_eq!(t.options.len(), 1);
        assert!(TpuTarget::parse("v5e:2x2", &[]).is_err());
        assert!(TpuTarget::parse("tpu:", &[]).is_err());
        assert!(TpuTarget::parse("tpu:v5e:2x2", &["x".into()]).is_err());
        assert!(TpuTarget::parse("tpu:v5e:2x2", &["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn tpu_shaped_pads_the_vocabulary_and_uses_bf16() {
        let mut run = PretrainConfig::default();
        run.model.preset = "base".into();
        tpu_shape(&mut run);
        let cfg = run.bert_config().unwrap();
        assert_eq!(cfg.padded_vocab_size(), 30592);
        assert_eq!(run.execution(&cfg).unwrap().compute, ComputeDtype::Bf16);
        let shapes = BatchShapes {
            batch_size: 32,
            seq_len: 128,
            max_predictions: 20,
            max_instances_per_row: None,
        };
        assert!(tpu_shape_notes(&cfg, &shapes).is_empty());
        let odd = BatchShapes {
            batch_size: 3,
            seq_len: 100,
            max_predictions: 20,
            max_instances_per_row: None,
        };
        assert_eq!(tpu_shape_notes(&cfg, &odd).len(), 2);
    }
}

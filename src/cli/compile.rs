//! `tpu-run compile`: builds a program (the BERT train step or forward pass, or an example) and
//! compiles it ahead of time for a TPU topology with no TPU present (libtpu's
//! `PJRT_TopologyDescription_Create` + `PJRT_Compile`), or for the CPU plugin; reports the
//! compiler's memory sizes and cost analysis and optionally writes the serialized executable.
//! The train step is the one `tpu-run pretrain` compiles for the same run config (`--config`
//! and the same overrides; both call [`crate::pretrain::program::train_step_module`]),
//! data-parallel (`num_replicas` = `--replicas`, by default the run's devices or every device
//! of the TPU slice).
use super::compile_program::{build_bert, build_example, replicas, run_config};
use super::compile_report::{gib, replicas_text, report};
use crate::model::ComputeDtype;
use crate::pretrain::program::write_program;
use crate::tpu_target::{element_types, reexec_without_network, Program, TpuTarget};
use crate::train::OptimizerKind;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use tpu::{Plugin, PluginKind, Topology, Value};

/// The slice to compile for, opened: libtpu, the topology and what it says about its devices.
struct OpenTarget {
    target: TpuTarget,
    plugin: Plugin,
    topology: Topology,
    devices: usize,
    hbm: Option<i64>,
}

#[derive(Args, Clone)]
pub struct CompileArgs {
    /// tpu:<topology> as libtpu names slices (tpu:v5e:2x2, tpu:v4:2x2x1, tpu:v5p:2x2x1,
    /// tpu:v6e:2x2), or cpu. The run's backend is the target's (tpu or cpu).
    #[arg(long)]
    pub target: String,
    /// A pretraining run config (the TOML `tpu-run pretrain --config` reads): the train step
    /// is the one that run compiles. The flags below override it as they do for pretrain;
    /// without it, pretrain's defaults apply.
    #[arg(long, value_name = "RUN.toml", conflicts_with = "example")]
    pub config: Option<PathBuf>,
    /// Compile an example program (mlp, softmax, embedding, bf16-dot, while) instead of BERT.
    #[arg(long)]
    pub example: Option<String>,
    /// A BERT preset (tiny, mini, small, medium, base, large); pretrain's --preset [default:
    /// the run config's, else tiny].
    #[arg(long, visible_alias = "preset", conflicts_with_all = ["model_config", "example"])]
    pub model: Option<String>,
    /// A BERT config file (bert_config.json or Hugging Face config.json) instead of a preset.
    #[arg(long, value_name = "FILE", conflicts_with = "example")]
    pub model_config: Option<PathBuf>,
    /// train-step (the pretraining step: forward, backward, clipping, optimizer, schedule) or
    /// forward (the eval forward pass, one device, the whole batch).
    #[arg(long, default_value = "train-step")]
    pub what: String,
    /// The global batch, split into --replicas equal shards of --accumulation-steps
    /// micro-batches [default: the run config's, else pretrain's 32].
    #[arg(long, conflicts_with = "example")]
    pub batch_size: Option<usize>,
    /// Data-parallel replicas of the train step (`num_replicas`; gradients all-reduced inside
    /// the step). Default, as pretrain: the run config's device.num_devices x
    /// device.num_processes when set, else every device of a TPU topology, else one per
    /// process on cpu; always 1 for forward and the examples.
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    /// Tokens per sequence [default: the run config's, else 128].
    #[arg(long, conflicts_with = "example")]
    pub seq_len: Option<usize>,
    /// Masked-LM predictions per sequence [default: the run config's, else 20].
    #[arg(long, conflicts_with = "example")]
    pub max_predictions: Option<usize>,
    /// Compute precision; pretrain's --precision [default: the run config's train.precision,
    /// else f32].
    #[arg(long, value_enum, conflicts_with = "example")]
    pub precision: Option<ComputeDtype>,
    /// The optimizer; pretrain's --optimizer [default: the run config's train.optimizer, else
    /// adam_weight_decay].
    #[arg(long, value_enum, conflicts_with = "example")]
    pub optimizer: Option<OptimizerKind>,
    /// Micro-batches per step (gradient accumulation).
    #[arg(long, conflicts_with = "example")]
    pub accumulation_steps: Option<u32>,
    /// bf16 matmuls with f32 accumulation and the vocabulary padded to 128: the run settings
    /// precision = "bf16" and pad_vocab_to = 128. Off by default, as in `tpu-run pretrain
    /// --backend tpu`, so the program is the one pretrain runs from the same config.
    #[arg(long, conflicts_with_all = ["no_tpu_shaped", "example"])]
    pub tpu_shaped: bool,
    /// Keep the run's precision and vocabulary (the default; kept for older command lines).
    #[arg(long)]
    pub no_tpu_shaped: bool,
    /// A PJRT_TopologyDescription_Create option name=value (repeatable), e.g. num_slices=2,
    /// chips_per_host_bounds=2x2x1, chip_config_name=default.
    #[arg(long = "topology-option")]
    pub topology_options: Vec<String>,
    /// Write the serialized executable here (load it on matching hardware with the same libtpu).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the program's HLO text here (XLA's syntax) before compiling.
    #[arg(long)]
    pub dump_hlo: Option<PathBuf>,
    /// Write the HloModuleProto bytes handed to the compiler here; for the train step they are
    /// those `tpu-run pretrain --dump-program` writes for the same config.
    #[arg(long, value_name = "FILE")]
    pub dump_program: Option<PathBuf>,
    /// Path of the PJRT plugin (libtpu.so for TPU targets); overrides discovery.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

pub fn run(a: &CompileArgs) -> Result<()> {
    let tpu_target = a.target != "cpu";
    if tpu_target {
        // Validate the arguments before a restart, so mistakes are reported once.
        TpuTarget::parse(&a.target, &a.topology_options)?;
        if let Some(code) = reexec_without_network()? {
            std::process::exit(code);
        }
    }
    let run_cfg = match &a.example {
        Some(_) => None,
        None => Some(run_config(a, tpu_target)?),
    };
    let target = if tpu_target {
        Some(open_target(a)?)
    } else {
        None
    };
    let replicas = replicas(a, target.as_ref().map(|t| t.devices), run_cfg.as_ref())?;
    let (program, title) = match &run_cfg {
        Some(cfg) => build_bert(a, cfg, tpu_target, replicas)?,
        None => build_example(a)?,
    };
    let m = &program.module;
    let types: Vec<String> = element_types(m).iter().map(|t| t.to_string()).collect();
    println!(
        "program {title}: {} instructions, {} parameters, element types {}",
        m.instruction_count(),
        m.entry_computation().params.len(),
        types.join(" ")
    );
    if let Some(path) = &a.dump_hlo {
        std::fs::write(path, hlo::text::to_text(m))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote the HLO text to {}", path.display());
    }
    if let Some(path) = &a.dump_program {
        write_program(path, &program.proto)?;
        println!("wrote the HloModuleProto to {}", path.display());
    }
    match &target {
        Some(t) => compile_for_tpu(a, t, &program),
        None => compile_for_cpu(a, &program),
    }
}

/// Loads libtpu and creates the topology `--target` names; prints what it is.
fn open_target(a: &CompileArgs) -> Result<OpenTarget> {
    let target = TpuTarget::parse(&a.target, &a.topology_options)?;
    let plugin = Plugin::discover(PluginKind::Tpu, a.plugin.as_deref())
        .context("loading libtpu (install it with `tpu-run plugin install tpu`)")?;
    let (major, minor) = plugin.api_version();
    let topology =
        Topology::create(&plugin, &target.topology, &target.options).with_context(|| {
            format!(
                "creating the TPU topology {:?} (libtpu at {}, C API {major}.{minor})",
                target.topology,
                plugin.path().display()
            )
        })?;
    let devices = topology.device_descriptions()?;
    let version = topology.platform_version()?;
    let hbm = devices
        .first()
        .and_then(|d| match d.attribute("device_memory_bytes_limit") {
            Some(Value::Int64(v)) => Some(*v),
            _ => None,
        });
    println!(
        "target {} ({}): {} devices of kind {}, {} per device",
        target.topology,
        version.lines().next().unwrap_or(""),
        devices.len(),
        devices.first().map(|d| d.kind.as_str()).unwrap_or("?"),
        hbm.map(gib).unwrap_or_else(|| "unknown memory".into()),
    );
    Ok(OpenTarget {
        devices: devices.len(),
        target,
        plugin,
        topology,
        hbm,
    })
}

fn compile_for_tpu(a: &CompileArgs, open: &OpenTarget, program: &Program) -> Result<()> {
    let options = &program.options;
    let OpenTarget {
        target,
        plugin,
        topology,
        hbm,
        ..
    } = open;
    let t = Instant::now();
    let exe = topology
        .compile(&program.proto, options)
        .context("compiling with libtpu for the topology (PJRT_Compile, no TPU needed)")?;
    println!(
        "compiled for {} in {:.2} s ({}; no TPU used)",
        target.topology,
        t.elapsed().as_secs_f64(),
        replicas_text(options.num_replicas)
    );
    report(
        exe.memory_stats()?,
        exe.cost_analysis()?,
        &program.estimate,
        *hbm,
    );
    if let Some(out) = &a.out {
        let bytes = exe.serialize()?;
        std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        println!(
            "wrote the serialized executable ({} bytes) to {}; it loads with the same libtpu \
             build ({}) on {}",
            bytes.len(),
            out.display(),
            plugin.package_version().unwrap_or_else(|| "?".into()),
            target.topology
        );
    }
    Ok(())
}

fn compile_for_cpu(a: &CompileArgs, program: &Program) -> Result<()> {
    let options = &program.options;
    // The CPU plugin makes as many virtual devices as there are replicas.
    let client = crate::backend::open_client(
        crate::backend::Backend::Cpu,
        a.plugin.as_deref(),
        options.num_replicas,
    )?;
    let t = Instant::now();
    let exe = client.compile(&program.proto, options)?;
    println!(
        "compiled for cpu in {:.2} s ({})",
        t.elapsed().as_secs_f64(),
        replicas_text(options.num_replicas)
    );
    report(
        exe.memory_stats()?,
        exe.cost_analysis()?,
        &program.estimate,
        None,
    );
    if let Some(out) = &a.out {
        let bytes = exe.serialize()?;
        std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        println!(
            "wrote the serialized executable ({} bytes) to {}",
            bytes.len(),
            out.display()
        );
    }
    Ok(())
}

//! `tpu-run compile`: builds a program (the BERT train step or forward pass, or an example) and
//! compiles it ahead of time for a TPU topology with no TPU present (libtpu's
//! `PJRT_TopologyDescription_Create` + `PJRT_Compile`), or for the CPU plugin; reports the
//! compiler's memory sizes and cost analysis and optionally writes the serialized executable.
//! The train step is the one `tpu-run pretrain` compiles for the same run config (`--config`
//! and the same overrides; both call [`crate::pretrain::program::train_step_module`]),
//! data-parallel (`num_replicas` = `--replicas`, by default the run's devices or every device
//! of the TPU slice).
use super::compile_report::{gib, replicas_text, report};
use crate::model::ComputeDtype;
use crate::pretrain::program::write_program;
use crate::pretrain::{Overrides, PretrainConfig};
use crate::tpu_target::{
    bert_program, element_types, reexec_without_network, tpu_shape, tpu_shape_notes, BertProgram,
    Program, TpuTarget, What,
};
use anyhow::{anyhow, bail, Context, Result};
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
    /// f32 or bf16 (bf16 matmul inputs, f32 accumulation and master weights).
    #[arg(long, conflicts_with = "example")]
    pub precision: Option<String>,
    /// adam_weight_decay, adamw, lamb or sgd.
    #[arg(long, conflicts_with = "example")]
    pub optimizer: Option<String>,
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

/// The pretraining run the BERT program comes from: `--config` (else pretrain's defaults), the
/// flags on top, the target's backend.
fn run_config(a: &CompileArgs, tpu_target: bool) -> Result<PretrainConfig> {
    let mut cfg = match &a.config {
        Some(p) if p.extension().is_some_and(|e| e == "json") => bail!(
            "--config {}: compile's --config is the pretraining run config (TOML, as for \
             `tpu-run pretrain --config`); give a BERT config file with --model-config",
            p.display()
        ),
        Some(p) => PretrainConfig::from_file(p)?,
        None => PretrainConfig::default(),
    };
    cfg.apply(&Overrides {
        preset: a.model.clone(),
        model_config: a.model_config.clone(),
        batch_size: a.batch_size,
        seq_len: a.seq_len,
        max_predictions: a.max_predictions,
        precision: a.precision.clone(),
        optimizer: a.optimizer.clone(),
        accumulation_steps: a.accumulation_steps,
        ..Overrides::default()
    });
    if a.tpu_shaped {
        tpu_shape(&mut cfg);
    }
    let backend = if tpu_target { "tpu" } else { "cpu" };
    if cfg.device.backend != backend {
        eprintln!(
            "tpu-run: note: the run config's backend is {}; building the step as the {backend} \
             backend would run it",
            cfg.device.backend
        );
        cfg.device.backend = backend.into();
    }
    // As for a benchmark: the step needs no data files.
    cfg.data.synthetic = true;
    cfg.validate()?;
    Ok(cfg)
}

/// `--replicas`, or its default: for the train step the run's devices (device.num_devices x
/// device.num_processes), else every device of a TPU slice, else one per process (pretrain's
/// default on cpu); 1 for anything else. There may not be more replicas than devices.
fn replicas(
    a: &CompileArgs,
    tpu_devices: Option<usize>,
    run: Option<&PretrainConfig>,
) -> Result<u32> {
    let train_step = a.example.is_none() && What::parse(&a.what)? == What::TrainStep;
    let n = match (a.replicas, run.filter(|_| train_step)) {
        (Some(n), _) => n,
        (None, Some(run)) => {
            let processes = run.device.num_processes;
            match (run.device.num_devices, tpu_devices) {
                (Some(d), _) => d.checked_mul(processes).ok_or_else(|| {
                    anyhow!("{d} devices x {processes} processes overflow a replica count")
                })?,
                (None, Some(devices)) => u32::try_from(devices)
                    .map_err(|_| anyhow!("the topology has {devices} devices"))?,
                (None, None) => processes,
            }
        }
        (None, None) => 1,
    };
    if n == 0 {
        bail!("--replicas must be at least 1");
    }
    if n > 1 && !train_step {
        bail!("--replicas {n}: only the train step is data-parallel; the forward pass and the examples compile for 1 replica");
    }
    if let Some(devices) = tpu_devices {
        if n as usize > devices {
            bail!("--replicas {n}: the topology has {devices} devices (one replica per device)");
        }
    }
    if let Some(run) = run.filter(|_| train_step) {
        let (batch, k) = (run.train.batch_size, run.train.accumulation_steps as usize);
        if !batch.is_multiple_of(n as usize * k) {
            bail!(
                "--batch-size {batch} (the global batch) does not split into {n} replica shards \
                 of {k} micro-batch(es); make it a multiple of --replicas {n} x \
                 --accumulation-steps {k}"
            );
        }
    }
    Ok(n)
}

fn build_example(a: &CompileArgs) -> Result<(Program, String)> {
    let name = a.example.as_deref().unwrap_or_default();
    let ex = crate::examples::example(name, 0)?;
    Ok((Program::plain(ex.module)?, format!("example {name}")))
}

/// The BERT program of `cfg` and its one-line description.
fn build_bert(
    a: &CompileArgs,
    cfg: &PretrainConfig,
    tpu_target: bool,
    replicas: u32,
) -> Result<(Program, String)> {
    let what = What::parse(&a.what)?;
    let BertProgram {
        program,
        model,
        shapes,
    } = bert_program(cfg, what, replicas)?;
    if tpu_target {
        for note in tpu_shape_notes(&model, &shapes) {
            eprintln!("tpu-run: note: {note} (compiles, but pads TPU tiles)");
        }
        if model.compute_dtype == ComputeDtype::F32 || model.pad_vocab_to.is_none() {
            eprintln!(
                "tpu-run: note: f32 matmuls or an unpadded vocabulary, as `tpu-run pretrain` \
                 runs this config; --tpu-shaped (or precision = \"bf16\" and pad_vocab_to = \
                 128 in the run config) gives the TPU-shaped step"
            );
        }
    }
    let t = &cfg.train;
    let step = match what {
        What::TrainStep => format!(
            ", {} with the {} schedule{}",
            t.optimizer,
            t.schedule,
            if t.accumulation_steps > 1 {
                format!(
                    ", {} micro-batches of {}",
                    t.accumulation_steps, shapes.batch_size
                )
            } else {
                String::new()
            }
        ),
        What::Forward => String::new(),
    };
    let title = format!(
        "BERT {} {} (L{} H{} A{}, vocab {}, {}), batch {} x seq {} ({} predictions){step}{}",
        cfg.model
            .config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| cfg.model.preset.clone()),
        a.what,
        model.num_hidden_layers,
        model.hidden_size,
        model.num_attention_heads,
        model.padded_vocab_size(),
        match model.compute_dtype {
            ComputeDtype::F32 => "f32",
            ComputeDtype::Bf16 => "bf16 matmuls, f32 accumulation",
        },
        t.batch_size,
        shapes.seq_len,
        shapes.max_predictions,
        if replicas > 1 {
            format!(
                ", data-parallel over {replicas} replicas of batch {}",
                t.batch_size / replicas as usize
            )
        } else {
            String::new()
        },
    );
    Ok((program, title))
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

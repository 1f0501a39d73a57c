//! `tpu-run compile`: builds a program (the BERT train step or forward pass, or an example) and
//! compiles it ahead of time for a TPU topology with no TPU present (libtpu's
//! `PJRT_TopologyDescription_Create` + `PJRT_Compile`), or for the CPU plugin; reports the
//! compiler's memory sizes and cost analysis and optionally writes the serialized executable.
//! The train step is compiled data-parallel (`num_replicas` = `--replicas`, by default every
//! device of the TPU slice), as `tpu-run pretrain` runs it.
use crate::model::{BatchShapes, BertConfig, ComputeDtype};
use crate::tpu_target::{
    bert_program, element_types, reexec_without_network, tpu_shape_notes, tpu_shaped,
    MemoryEstimate, Program, TpuTarget, What,
};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use tpu::{CompileOptions, CompiledMemoryStats, Plugin, PluginKind, Topology, Value};

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
    /// tpu:v6e:2x2), or cpu.
    #[arg(long)]
    pub target: String,
    /// A BERT preset (tiny, mini, small, medium, base, large).
    #[arg(long, default_value = "tiny", conflicts_with_all = ["config", "example"])]
    pub model: String,
    /// A BERT config file (bert_config.json or Hugging Face config.json) instead of a preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Compile an example program (mlp, softmax, embedding, bf16-dot, while) instead of BERT.
    #[arg(long)]
    pub example: Option<String>,
    /// train-step (forward, backward, clipping, AdamWeightDecay) or forward.
    #[arg(long, default_value = "train-step")]
    pub what: String,
    /// The global batch: split into `--replicas` equal shards, one per device.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Data-parallel replicas of the train step (`num_replicas`; gradients all-reduced inside
    /// the step). Default: every device of the TPU topology for train-step; 1 for cpu, forward
    /// and examples.
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 20)]
    pub max_predictions: usize,
    /// Keep the model as configured (f32, unpadded vocabulary) for a TPU target; by default a
    /// TPU target gets bf16 matmuls with f32 accumulation and the vocabulary padded to 128.
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
    let target = if tpu_target {
        Some(open_target(a)?)
    } else {
        None
    };
    let replicas = replicas(a, target.as_ref().map(|t| t.devices))?;
    let (program, title) = build(a, tpu_target, replicas)?;
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
    let bytes = m.to_proto_bytes()?;
    let options = CompileOptions::replicas(i64::from(replicas));
    match &target {
        Some(t) => compile_for_tpu(a, t, &bytes, &options, &program.estimate),
        None => compile_for_cpu(a, &bytes, &options, &program.estimate),
    }
}

/// `--replicas`, or its default: every device of the slice for a TPU train step, else 1. Only
/// the train step is data-parallel, and there may not be more replicas than devices.
fn replicas(a: &CompileArgs, tpu_devices: Option<usize>) -> Result<u32> {
    let train_step = a.example.is_none() && What::parse(&a.what)? == What::TrainStep;
    let n = match (a.replicas, tpu_devices) {
        (Some(n), _) => n,
        (None, Some(devices)) if train_step => u32::try_from(devices)
            .map_err(|_| anyhow::anyhow!("the topology has {devices} devices"))?,
        (None, _) => 1,
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
    Ok(n)
}

fn build(a: &CompileArgs, tpu_target: bool, replicas: u32) -> Result<(Program, String)> {
    if let Some(name) = &a.example {
        let ex = crate::examples::example(name, 0)?;
        return Ok((
            Program {
                module: ex.module,
                estimate: MemoryEstimate::default(),
            },
            format!("example {name}"),
        ));
    }
    let what = What::parse(&a.what)?;
    let mut cfg = match &a.config {
        Some(p) => BertConfig::from_file(p)?,
        None => BertConfig::preset(&a.model)?,
    };
    if a.batch_size == 0 || a.seq_len == 0 || a.max_predictions == 0 {
        bail!("--batch-size, --seq-len and --max-predictions must be at least 1");
    }
    if !a.batch_size.is_multiple_of(replicas as usize) {
        bail!(
            "--batch-size {} (the global batch) does not split into {replicas} equal replica \
             shards; make it a multiple of --replicas {replicas}",
            a.batch_size
        );
    }
    // The program is one replica's: its shard of the global batch.
    let shapes = BatchShapes {
        batch_size: a.batch_size / replicas as usize,
        seq_len: a.seq_len,
        max_predictions: a.max_predictions,
    };
    if shapes.seq_len > cfg.max_position_embeddings {
        bail!(
            "--seq-len {} exceeds the model's max_position_embeddings {}",
            shapes.seq_len,
            cfg.max_position_embeddings
        );
    }
    if tpu_target && !a.no_tpu_shaped {
        cfg = tpu_shaped(&cfg);
        for note in tpu_shape_notes(&cfg, &shapes) {
            eprintln!("tpu-run: note: {note} (compiles, but pads TPU tiles)");
        }
    }
    let title = format!(
        "BERT {} {} (L{} H{} A{}, vocab {}, {}), batch {} x seq {} ({} predictions){}",
        a.config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| a.model.clone()),
        a.what,
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.padded_vocab_size(),
        match cfg.compute_dtype {
            ComputeDtype::F32 => "f32",
            ComputeDtype::Bf16 => "bf16 matmuls, f32 accumulation",
        },
        a.batch_size,
        shapes.seq_len,
        shapes.max_predictions,
        if replicas > 1 {
            format!(
                ", data-parallel over {replicas} replicas of batch {}",
                shapes.batch_size
            )
        } else {
            String::new()
        },
    );
    Ok((bert_program(&cfg, &shapes, what, replicas)?, title))
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

fn compile_for_tpu(
    a: &CompileArgs,
    open: &OpenTarget,
    module: &[u8],
    options: &CompileOptions,
    estimate: &MemoryEstimate,
) -> Result<()> {
    let OpenTarget {
        target,
        plugin,
        topology,
        hbm,
        ..
    } = open;
    let t = Instant::now();
    let exe = topology
        .compile(module, options)
        .context("compiling with libtpu for the topology (PJRT_Compile, no TPU needed)")?;
    println!(
        "compiled for {} in {:.2} s ({}; no TPU used)",
        target.topology,
        t.elapsed().as_secs_f64(),
        replicas_text(options.num_replicas)
    );
    report(exe.memory_stats()?, exe.cost_analysis()?, estimate, *hbm);
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

fn compile_for_cpu(
    a: &CompileArgs,
    module: &[u8],
    options: &CompileOptions,
    estimate: &MemoryEstimate,
) -> Result<()> {
    // The CPU plugin makes as many virtual devices as there are replicas.
    let client = crate::backend::open_client(
        crate::backend::Backend::Cpu,
        a.plugin.as_deref(),
        options.num_replicas,
    )?;
    let t = Instant::now();
    let exe = client.compile(module, options)?;
    println!(
        "compiled for cpu in {:.2} s ({})",
        t.elapsed().as_secs_f64(),
        replicas_text(options.num_replicas)
    );
    report(exe.memory_stats()?, exe.cost_analysis()?, estimate, None);
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

fn replicas_text(n: i64) -> String {
    if n == 1 {
        "one device".into()
    } else {
        format!("{n} replicas, one per device")
    }
}

fn gib(bytes: i64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Bytes of device memory the executable needs at its peak, as far as the compiler's stats tell:
/// arguments and outputs (an aliased output reuses its argument's buffer) plus temporaries.
pub fn compiled_total(m: &CompiledMemoryStats) -> i64 {
    m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
}

fn report(
    mem: Option<CompiledMemoryStats>,
    cost: Option<Vec<(String, Value)>>,
    estimate: &MemoryEstimate,
    hbm: Option<i64>,
) {
    match mem {
        Some(m) => {
            let total = compiled_total(&m);
            println!("memory per device (compiler):");
            println!(
                "  arguments       {:>14} B  {}",
                m.argument_size_in_bytes,
                mib(m.argument_size_in_bytes.max(0) as u64)
            );
            println!(
                "  outputs         {:>14} B  {}",
                m.output_size_in_bytes,
                mib(m.output_size_in_bytes.max(0) as u64)
            );
            println!(
                "  aliased (donated) {:>12} B  {}",
                m.alias_size_in_bytes,
                mib(m.alias_size_in_bytes.max(0) as u64)
            );
            println!(
                "  temporaries     {:>14} B  {}",
                m.temp_size_in_bytes,
                mib(m.temp_size_in_bytes.max(0) as u64)
            );
            println!(
                "  generated code  {:>14} B  {}",
                m.generated_code_size_in_bytes,
                mib(m.generated_code_size_in_bytes.max(0) as u64)
            );
            let share = hbm
                .filter(|&h| h > 0)
                .map(|h| {
                    format!(
                        " = {:.1}% of the device's memory",
                        100.0 * total as f64 / h as f64
                    )
                })
                .unwrap_or_default();
            println!(
                "  total (args + outputs - aliased + temps) {}{share}",
                mib(total.max(0) as u64)
            );
            if estimate.total() > 0 {
                println!(
                    "  estimate from sizes: {} (params {}, optimizer {}, gradients {}, batch {}, activations {}, outputs {}); compiler/estimate = {:.2}",
                    mib(estimate.total()),
                    mib(estimate.params),
                    mib(estimate.optimizer),
                    mib(estimate.gradients),
                    mib(estimate.batch),
                    mib(estimate.activations),
                    mib(estimate.outputs),
                    total as f64 / estimate.total() as f64
                );
            }
        }
        None => println!("memory: the plugin does not report compiled memory sizes"),
    }
    match cost {
        Some(props) if !props.is_empty() => {
            let mut shown: Vec<&(String, Value)> = props
                .iter()
                .filter(|(n, v)| match (n.as_str(), v) {
                    ("flops" | "transcendentals" | "bytes accessed", _) => true,
                    // libtpu reports a negative placeholder when it has no estimate.
                    ("optimal_seconds", Value::Float(s)) => *s >= 0.0,
                    _ => false,
                })
                .collect();
            shown.sort_by(|x, y| x.0.cmp(&y.0));
            let text: Vec<String> = shown.iter().map(|(n, v)| format!("{n} {v}")).collect();
            println!("cost analysis: {}", text.join(", "));
        }
        _ => println!("cost analysis: not offered by the plugin"),
    }
}

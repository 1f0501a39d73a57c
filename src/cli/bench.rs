//! `tpu-run bench`: the cross product of models, tasks, shapes, precisions and attention
//! kernels, each built, compiled and timed; an aligned table on stdout, one JSON line per
//! configuration, and optionally the anchors, a baseline comparison, a plot and a trace.
use crate::backend::{AttentionChoice, Backend};
use crate::bench::anchors::Anchors;
use crate::bench::aot::AotTarget;
use crate::bench::matrix::{plan, Axes, Task};
use crate::bench::record::{read_jsonl, BenchRecord};
use crate::bench::run::{plot_entries, run, BenchOptions};
use crate::bench::table::render;
use crate::finetune::default_precision;
use crate::model::{ComputeDtype, PRESETS};
use crate::tpu_target::reexec_without_network;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Device backend (its PJRT plugin is found or, for cpu, installed on first use).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
    /// Path of a PJRT plugin shared library; overrides discovery.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Model presets, comma-separated (tiny, mini, small, medium, base, large).
    #[arg(long, default_value = "tiny", value_delimiter = ',')]
    pub model: Vec<String>,
    /// Tasks, comma-separated.
    #[arg(long, value_enum, default_value = "pretrain", value_delimiter = ',')]
    pub task: Vec<Task>,
    /// Sequence lengths, comma-separated.
    #[arg(long, default_value = "128", value_delimiter = ',')]
    pub seq: Vec<usize>,
    /// Global batch sizes, comma-separated.
    #[arg(long, default_value = "8", value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Precisions, comma-separated (default: f32 on cpu, bf16 on cuda and tpu); fp8 is bf16
    /// with the encoder's dense layers as FP8 matmuls under delayed scaling.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub precision: Vec<ComputeDtype>,
    /// Self-attention kernels, comma-separated.
    #[arg(long, value_enum, default_value = "auto", value_delimiter = ',')]
    pub attention: Vec<AttentionChoice>,
    /// Compile only, for this TPU slice (v5e:2x2, v4:2x2x1, ...; no TPU needed): the pretraining
    /// step over every device of the slice, its build and compile figures, nothing timed.
    #[arg(long, value_name = "TOPOLOGY")]
    pub topology: Option<String>,
    /// A PJRT_TopologyDescription_Create option name=value for --topology (repeatable).
    #[arg(long = "topology-option", requires = "topology")]
    pub topology_options: Vec<String>,
    /// Data-parallel devices of the pretraining step (the batch is split over them).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Hidden and attention dropout for every configuration (default: the model's, 0.1).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Timed steps per run, after the first step and the warm-up.
    #[arg(long, default_value_t = 20)]
    pub steps: u64,
    /// Untimed steps after the first.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Full runs per configuration (each builds and compiles afresh): their spread is the
    /// noise `--baseline` judges changes against.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Seeds initialization, the synthetic batches and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write one JSON line per configuration here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compare with an earlier `--out` file: changes beyond the noise measured by `--repeat`
    /// are flagged as regressions or improvements.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Read the records of an earlier `--out` file instead of running anything: its table,
    /// `--plot`, and with `--baseline` the comparison (two commits, flags or machines after
    /// the fact).
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
    /// Exit with an error when a configuration regressed against `--baseline`.
    #[arg(long, requires = "baseline")]
    pub fail_on_regression: bool,
    /// Also run the JAX and PyTorch anchors (../shared/bench) for the same shapes.
    #[arg(long)]
    pub anchors: bool,
    /// The anchors' Python (default /opt/torch/.venv/bin/python, else python3 on PATH).
    #[arg(long, requires = "anchors")]
    pub anchors_python: Option<PathBuf>,
    /// The directory of jax_bert.py and torch_bert.py (default: shared/bench here or in a
    /// parent directory).
    #[arg(long, requires = "anchors")]
    pub anchors_dir: Option<PathBuf>,
    /// Seconds one anchor run may take.
    #[arg(long, default_value_t = 900, requires = "anchors")]
    pub anchor_timeout: u64,
    /// Draw step time, its spread and MFU per configuration into this SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Take a device trace of a few steps of each configuration into DIR/<configuration>
    /// (the plugin's profiler extension; Perfetto/TensorBoard files).
    #[arg(long, value_name = "DIR")]
    pub profile: Option<PathBuf>,
    /// Load and store compiled executables in the per-user compile cache (off by default, so
    /// compile times are measured).
    #[arg(long)]
    pub compile_cache: bool,
}

/// Kernels that XLA:GPU records into command buffers (CUDA graphs) reach the profiler without
/// their HLO op, so a trace of them leaves most device time unattributed (measured on an H100,
/// BERT-base seq 128: 72% unmapped with command buffers, 1.4% without, at 0.7% slower steps).
/// `--profile` therefore turns them off, unless `--xla-flag` chose a setting.
fn profile_without_command_buffers() -> Result<()> {
    if crate::xla_flags::add_default("xla_gpu_enable_command_buffer=")? {
        eprintln!(
            "profile: XLA command buffers are off for this bench (xla_gpu_enable_command_buffer=), \
             so every kernel in the trace names its HLO op; pass --xla-flag \
             xla_gpu_enable_command_buffer=... to choose otherwise"
        );
    }
    Ok(())
}

pub fn run_cmd(a: &BenchArgs) -> Result<()> {
    if a.topology.is_some() && a.backend != Backend::Tpu {
        bail!("--topology is a TPU slice: use it with --backend tpu");
    }
    if a.repeat == 0 || a.steps == 0 || a.devices == 0 {
        bail!("--repeat, --steps and --devices must be at least 1");
    }
    if let Some(new) = &a.compare {
        let old = read_jsonl(a.baseline.as_deref().unwrap_or(new)).context("--baseline")?;
        let mut records: Vec<BenchRecord> = read_jsonl(new)
            .context("--compare")?
            .into_values()
            .collect();
        for r in records.iter_mut().filter(|r| r.runtime.is_some()) {
            r.compare_with(old.get(&r.key));
        }
        print!("{}", render(&records));
        plot(a, &records)?;
        return check_regressions(a, &records);
    }
    if !a.compile_cache {
        crate::backend::disable_compile_cache();
    }
    if a.profile.is_some() && a.backend == Backend::Cuda {
        profile_without_command_buffers()?;
    }
    let axes = axes(a)?;
    let aot = match &a.topology {
        Some(topology) => {
            // libtpu must not reach the network where there is no TPU: restart without it.
            if let Some(code) = reexec_without_network()? {
                std::process::exit(code);
            }
            Some(AotTarget::open(
                topology,
                &a.topology_options,
                a.plugin.as_deref(),
            )?)
        }
        None => None,
    };
    let devices = aot.as_ref().map_or(a.devices, |t| t.devices);
    let planned = plan(&axes, a.backend, devices, a.dropout)?;
    let anchors = a.anchors.then(|| {
        if a.backend != Backend::Cuda {
            return Err("the anchors run on NVIDIA GPUs: use --backend cuda".to_string());
        }
        Anchors::find(
            a.anchors_python.as_deref(),
            a.anchors_dir.as_deref(),
            Duration::from_secs(a.anchor_timeout),
        )
    });
    if let Some(Err(why)) = &anchors {
        eprintln!("anchors: not run: {why}");
    }
    let opts = BenchOptions {
        backend: a.backend,
        plugin: a.plugin.clone(),
        steps: a.steps,
        warmup: a.warmup,
        repeat: a.repeat,
        seed: a.seed,
        out: a.out.clone(),
        baseline: a.baseline.clone(),
        anchors,
        profile: a.profile.clone(),
    };
    let records = run(&planned, &opts, aot.as_ref())?;
    print!("{}", render(&records));
    for r in &records {
        for note in r.xla.iter().flat_map(|x| &x.notes) {
            println!("note: {}: {note}", r.key);
        }
        if let Some(p) = &r.profile {
            match (&p.not_offered, &p.trace_json) {
                (Some(why), _) => println!("profile: {}: {why}", r.key),
                (_, Some(t)) => println!("profile: {}: {t}", r.key),
                _ => {}
            }
        }
    }
    if let Some(path) = &a.out {
        println!("wrote {} records to {}", records.len(), path.display());
    }
    plot(a, &records)?;
    let failed: Vec<&str> = records
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.key.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} configurations failed: {}",
            failed.len(),
            records.len(),
            failed.join("; ")
        );
    }
    check_regressions(a, &records)
}

/// `--plot`: step time, its spread and MFU of the measured records.
fn plot(a: &BenchArgs, records: &[BenchRecord]) -> Result<()> {
    if let Some(path) = &a.plot {
        crate::plot::bench_report(path, "tpu-run bench", &plot_entries(records))?;
        println!("wrote the plot to {}", path.display());
    }
    Ok(())
}

/// With `--fail-on-regression`, an error naming every configuration that regressed.
fn check_regressions(a: &BenchArgs, records: &[BenchRecord]) -> Result<()> {
    let regressed: Vec<&str> = records
        .iter()
        .filter(|r| {
            r.baseline
                .as_ref()
                .is_some_and(|b| b.verdict == "regression")
        })
        .map(|r| r.key.as_str())
        .collect();
    if a.fail_on_regression && !regressed.is_empty() {
        bail!("regressed against the baseline: {}", regressed.join("; "));
    }
    Ok(())
}

fn axes(a: &BenchArgs) -> Result<Axes> {
    for m in &a.model {
        if !PRESETS.contains(&m.as_str()) {
            bail!("--model {m:?}: choose from {PRESETS:?}");
        }
    }
    let precisions = if a.precision.is_empty() {
        vec![default_precision(a.backend)]
    } else {
        a.precision.clone()
    };
    Ok(Axes {
        models: a.model.clone(),
        tasks: a.task.clone(),
        seqs: a.seq.clone(),
        batches: a.batch.clone(),
        precisions,
        attentions: a.attention.clone(),
    })
}

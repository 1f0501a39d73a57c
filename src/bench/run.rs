//! `tpu-run bench` from planned configurations to records: each configuration is built,
//! compiled and timed `repeat` times (afresh each time), then compared with the anchors and a
//! baseline. A configuration that fails is recorded with its error and the others go on.
use super::anchors::{set_ratios, Anchors};
use super::aot::AotTarget;
use super::environment::environment;
use super::matrix::{BenchConfig, Planned, Task};
use super::measure::{MeasureOptions, Measurement};
use super::record::{read_jsonl, AnchorResult, BenchRecord, Environment};
use crate::backend::{open_client, resolve_execution, Backend};
use crate::model::{BertConfig, Execution};
use crate::plot::BenchPlotEntry;
use crate::pretrain::config::PretrainConfig;
use anyhow::{anyhow, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use tpu::Plugin;

/// How each configuration is measured and reported.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub backend: Backend,
    pub plugin: Option<PathBuf>,
    pub steps: u64,
    pub warmup: u64,
    /// Full runs of every configuration (build, compile, time), for the noise a baseline
    /// comparison needs.
    pub repeat: usize,
    pub seed: u64,
    pub out: Option<PathBuf>,
    pub baseline: Option<PathBuf>,
    /// `Some(Err(why))`: anchors were asked for but cannot run (reported in every record).
    pub anchors: Option<Result<Anchors, String>>,
    pub profile: Option<PathBuf>,
}

/// Runs every planned configuration; returns the records (also written to `opts.out` one line
/// at a time, so a long invocation cut short keeps what it measured).
/// With `aot`, nothing runs: each configuration is compiled for that TPU slice only.
pub fn run(
    planned: &[Planned],
    opts: &BenchOptions,
    aot: Option<&AotTarget>,
) -> Result<Vec<BenchRecord>> {
    let baseline = match &opts.baseline {
        Some(p) => Some(read_jsonl(p).context("--baseline")?),
        None => None,
    };
    let mut out = match &opts.out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let env = match aot {
        Some(t) => environment(opts.backend, Some(&t.plugin)),
        None => environment(opts.backend, Some(&load_plugin(opts)?)),
    };
    let mut anchor_cache: BTreeMap<(Task, String, usize, usize), Vec<AnchorResult>> =
        BTreeMap::new();
    let mut records = vec![];
    for (i, p) in planned.iter().enumerate() {
        let progress = format!("[{}/{}]", i + 1, planned.len());
        let record = match p {
            Planned::Skip(c, why) => {
                eprintln!("{progress} {}: skipped: {why}", c.key());
                let mut r = BenchRecord::new(c.clone(), env.clone());
                r.skipped = Some(why.clone());
                r
            }
            Planned::Run(c) if aot.is_some() => compile_only(aot, c, opts, &env, &progress),
            Planned::Run(c) => {
                let mut r = measure_config(c, opts, &env, &progress);
                if let (Some(rt), Some(anchors)) = (r.runtime.as_ref(), &opts.anchors) {
                    let key = (c.task, c.model.clone(), c.seq, c.batch);
                    let results = anchor_cache
                        .entry(key)
                        .or_insert_with(|| run_anchors(anchors, c, &progress))
                        .clone();
                    r.anchors = results;
                    set_ratios(&mut r.anchors, rt.seq_per_s);
                }
                if let Some(b) = &baseline {
                    if r.runtime.is_some() {
                        r.compare_with(b.get(&r.key));
                    }
                }
                r
            }
        };
        if let Some(w) = out.as_mut() {
            writeln!(w, "{}", serde_json::to_string(&record)?)?;
            w.flush()?;
        }
        records.push(record);
    }
    Ok(records)
}

/// `c` compiled for the TPU slice `aot` (no timing).
fn compile_only(
    aot: Option<&AotTarget>,
    c: &BenchConfig,
    opts: &BenchOptions,
    env: &Environment,
    progress: &str,
) -> BenchRecord {
    let r = match (aot, pretrain_config(c, opts)) {
        (Some(t), Ok(run)) => t.compile(c, &run, env),
        (_, Err(e)) => failed(c, env, &e),
        (None, Ok(_)) => failed(c, env, &anyhow!("no TPU topology to compile for")),
    };
    let outcome = match (&r.xla, &r.skipped, &r.error) {
        (Some(x), _, _) => format!("compiled in {:.1} s", x.compile_s),
        (_, Some(why), _) => format!("skipped: {why}"),
        (_, _, Some(e)) => format!("failed: {e}"),
        _ => String::new(),
    };
    eprintln!("{progress} {}: {outcome}", c.key());
    r
}

fn failed(c: &BenchConfig, env: &Environment, e: &anyhow::Error) -> BenchRecord {
    let mut r = BenchRecord::new(c.clone(), env.clone());
    r.error = Some(format!("{e:#}"));
    r
}

fn load_plugin(opts: &BenchOptions) -> Result<Plugin> {
    let kind = opts.backend.plugin_kind();
    let plugin = opts.plugin.as_deref();
    if opts.backend == Backend::Cpu {
        Plugin::discover_or_install(kind, plugin)
    } else {
        Plugin::discover(kind, plugin)
    }
    .with_context(|| format!("loading the {} PJRT plugin", kind.name()))
}

/// `repeat` measured runs of `c`, folded into one record (with the error if one failed).
fn measure_config(
    c: &BenchConfig,
    opts: &BenchOptions,
    env: &Environment,
    progress: &str,
) -> BenchRecord {
    let mut record = BenchRecord::new(c.clone(), env.clone());
    let (model, exec) = match model_config(c, opts) {
        Ok(m) => m,
        Err(e) => return failed(c, env, &e),
    };
    let mut runs = vec![];
    for rep in 0..opts.repeat {
        // One trace is enough: of the last repeat, whose caches are as warm as they get.
        let profile = (rep + 1 == opts.repeat)
            .then(|| opts.profile.as_ref().map(|d| profile_dir(d, &c.key())))
            .flatten();
        let m = MeasureOptions {
            steps: opts.steps,
            warmup: opts.warmup,
            profile,
        };
        match measure_once(c, &model, exec, opts, &m) {
            Ok(run) => {
                eprintln!(
                    "{progress} {} (run {}/{}): compile {:.1} s, median step {:.2} ms",
                    c.key(),
                    rep + 1,
                    opts.repeat,
                    run.compile_s,
                    super::measure::median(&run.step_times_s) * 1e3
                );
                runs.push(run);
            }
            Err(e) => {
                eprintln!("{progress} {} (run {}): failed: {e:#}", c.key(), rep + 1);
                record.error = Some(format!("run {}: {e:#}", rep + 1));
                return record;
            }
        }
    }
    record.fill(&model, &runs);
    record
}

/// The model `c` runs (the preset with `c`'s dropout) and how: `c`'s precision and attention.
fn model_config(c: &BenchConfig, opts: &BenchOptions) -> Result<(BertConfig, Execution)> {
    let mut m = BertConfig::preset(&c.model)?;
    if let Some(p) = c.dropout {
        m.hidden_dropout_prob = p;
        m.attention_probs_dropout_prob = p;
    }
    let exec = resolve_execution(opts.backend, c.precision, c.attention, &m, opts.seed)?;
    Ok((m, exec))
}

fn measure_once(
    c: &BenchConfig,
    model: &BertConfig,
    exec: Execution,
    opts: &BenchOptions,
    m: &MeasureOptions,
) -> Result<Measurement> {
    match c.task {
        Task::Pretrain => crate::pretrain::bench::measure(&pretrain_config(c, opts)?, m),
        Task::Squad => {
            let client = open_client(opts.backend, opts.plugin.as_deref(), 1)?;
            crate::finetune::bench::measure(&client, model, exec, c.batch, c.seq, m, opts.seed)
        }
    }
}

/// The pretraining run config of `c`: the defaults of `tpu-run pretrain` with `c`'s shapes.
fn pretrain_config(c: &BenchConfig, opts: &BenchOptions) -> Result<PretrainConfig> {
    let mut cfg = PretrainConfig::default();
    cfg.model.preset = c.model.clone();
    cfg.model.hidden_dropout_prob = c.dropout;
    cfg.model.attention_probs_dropout_prob = c.dropout;
    cfg.data.synthetic = true;
    cfg.data.seq_len = c.seq;
    cfg.data.max_predictions = c.max_predictions;
    cfg.train.batch_size = c.batch;
    cfg.train.precision = c.precision;
    cfg.train.seed = opts.seed;
    cfg.device.backend = opts.backend;
    cfg.device.plugin = opts.plugin.clone();
    cfg.device.num_devices =
        Some(u32::try_from(c.devices).map_err(|_| anyhow!("{} devices", c.devices))?);
    cfg.device.attention = c.attention;
    cfg.output.progress = false;
    cfg.validate()?;
    Ok(cfg)
}

fn run_anchors(
    anchors: &Result<Anchors, String>,
    c: &BenchConfig,
    progress: &str,
) -> Vec<AnchorResult> {
    match anchors {
        Ok(a) => {
            eprintln!(
                "{progress} anchors for {} {} s{} b{}",
                c.model,
                c.task.name(),
                c.seq,
                c.batch
            );
            let results = a.run(c);
            for r in &results {
                match (&r.seq_per_s, &r.error) {
                    (Some(x), _) => eprintln!("{progress}   {}: {x:.1} seq/s", r.name),
                    (_, Some(e)) => eprintln!("{progress}   {}: {e}", r.name),
                    _ => {}
                }
            }
            results
        }
        Err(why) => vec![AnchorResult::unavailable("anchors", why.clone())],
    }
}

/// The plot entries of the measured records.
pub fn plot_entries(records: &[BenchRecord]) -> Vec<BenchPlotEntry> {
    records
        .iter()
        .filter_map(|r| {
            let rt = r.runtime.as_ref()?;
            Some(BenchPlotEntry {
                label: r.key.clone(),
                step_times_s: r.step_times_s.clone(),
                repeat_medians_s: r.repeat_medians(),
                mfu: rt.mfu,
            })
        })
        .collect()
}

/// `key` as a directory name: letters, digits, '-', '_' and '.', the rest '_'.
pub fn file_name(key: &str) -> String {
    key.chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || "-_.".contains(ch) {
                ch
            } else {
                '_'
            }
        })
        .collect()
}

/// Where `--profile` wrote each configuration's trace.
pub fn profile_dir(root: &Path, key: &str) -> PathBuf {
    root.join(file_name(key))
}

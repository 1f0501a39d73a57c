//! The pretraining loop: open the devices, build and compile the step, start from scratch or
//! from the latest checkpoint, then for each step feed a batch (reader or synthetic) with the
//! step's dropout key, log, evaluate and checkpoint on schedule; at the end a checkpoint, an
//! evaluation and a summary.
//!
//! On N devices the step is data-parallel (see [`crate::train::StepConfig::replicas`]): the
//! reader's global batch is split into N shards, the parameters and optimizer state live on every
//! device, and checkpoints and evaluation read replica 0's copy.
//!
//! Exact resume: the parameters, optimizer state and step come back from the checkpoint, the
//! data reader continues from its saved position, and the dropout key of each step derives from
//! the seed and the step number alone, so the resumed run computes the same steps, bit for bit
//! on CPU, as the uninterrupted one.
use super::batches::{step_literals, synthetic_batch};
use super::checkpoint::{capture, load_for_resume, reader_state, save};
use super::config::{default_num_devices, PretrainConfig};
use super::eval::{EvalResult, Evaluator};
use super::metrics::MetricsSink;
use super::program::train_program;
use super::progress::{Progress, Shown};
use crate::backend::{compile_options_for, open_client};
use crate::ckpt::{Spec, Store};
use crate::data::{Batch, Reader, ReaderConfig};
use crate::model::{init_params, BatchShapes, BertConfig};
use crate::train::{StepLayout, Trainer};
use anyhow::{anyhow, bail, Context, Result};
use hlo::Literal;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tpu::Client;

/// Options of one invocation that are not settings of the run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stop after this many steps in this invocation (a checkpoint is written), as a preempted
    /// job would; the schedule still spans `train.steps`.
    pub stop_after: Option<u64>,
    /// Print log lines (the CLI); library callers and tests keep quiet.
    pub print: bool,
}

/// One step's numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// Updates applied after this step (1 for the first).
    pub step: u64,
    pub loss: f32,
    pub metrics: Vec<(String, f32)>,
}

impl StepRecord {
    pub fn get(&self, name: &str) -> Option<f32> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// The step the run started from (0, or the resumed checkpoint's).
    pub start_step: u64,
    pub end_step: u64,
    pub resumed_from: Option<PathBuf>,
    /// Every step of this invocation, in order.
    pub history: Vec<StepRecord>,
    pub evals: Vec<(u64, EvalResult)>,
    pub compile_time: Duration,
    /// From the start of the run to the first step's results.
    pub time_to_first_step: Duration,
    pub wall_time: Duration,
    /// Sequences per second over the steps after the first.
    pub seq_per_s: f64,
    pub checkpoint: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
}

impl RunSummary {
    /// The final summary: steps, wall time, seq/s, final metrics, checkpoint path.
    pub fn print(&self, batch_size: usize) {
        let s = self;
        println!("== pretraining summary");
        println!(
            "steps:        {}..{} ({} this run, batch {batch_size})",
            s.start_step,
            s.end_step,
            s.history.len()
        );
        println!(
            "wall time:    {:.1} s (compile {:.1} s, first step after {:.1} s)",
            s.wall_time.as_secs_f64(),
            s.compile_time.as_secs_f64(),
            s.time_to_first_step.as_secs_f64()
        );
        println!("throughput:   {:.1} seq/s", s.seq_per_s);
        if let Some(r) = s.history.last() {
            println!(
                "final train:  loss {:.4} mlm_acc {:.4} nsp_acc {:.4}",
                r.loss,
                r.get("mlm_accuracy").unwrap_or(f32::NAN),
                r.get("nsp_accuracy").unwrap_or(f32::NAN)
            );
        }
        if let Some((step, e)) = s.evals.last() {
            println!(
                "final eval:   step {step}: mlm_loss {:.4} mlm_acc {:.4} nsp_loss {:.4} nsp_acc {:.4} ({} examples)",
                e.mlm_loss, e.mlm_accuracy, e.nsp_loss, e.nsp_accuracy, e.examples
            );
        }
        if let Some(p) = &s.checkpoint {
            println!("checkpoint:   {}", p.display());
        }
        if let Some(p) = &s.metrics_file {
            println!("metrics:      {}", p.display());
        }
    }
}

/// The devices, the compiled step and its starting state.
pub(crate) struct Session {
    pub client: Client,
    pub model: BertConfig,
    /// One replica's micro-batch.
    pub micro: BatchShapes,
    /// Devices the step runs on (data-parallel replicas).
    pub num_devices: usize,
    pub layout: StepLayout,
    pub trainer: Trainer,
    pub compile_time: Duration,
}

impl Session {
    /// Opens the backend, builds and compiles the step and uploads `start` (parameters and
    /// optimizer state, in layout order) or, when `None`, a fresh initialization from the seed.
    pub fn open(
        cfg: &PretrainConfig,
        start: impl FnOnce(&StepLayout) -> Result<Option<(Vec<Literal>, Vec<Literal>, u64)>>,
    ) -> Result<Self> {
        let model = cfg.bert_config()?;
        let (client, num_devices) = open_devices(cfg)?;
        let k = cfg.train.accumulation_steps as usize;
        let micro = BatchShapes {
            batch_size: cfg.train.batch_size / (k * num_devices),
            seq_len: cfg.data.seq_len,
            max_predictions: cfg.data.max_predictions,
        };
        let step_config = cfg.step_config()?.with_replicas(num_devices as u32);
        let program = train_program(&model, &micro, &step_config)?;
        let t0 = Instant::now();
        let exe = client
            .compile_module(
                &program.module,
                &compile_options_for(&model, program.layout.compile_options()),
            )
            .context("compiling the train step")?;
        let compile_time = t0.elapsed();
        let devices = exe.addressable_devices().to_vec();
        let layout = program.layout;
        let (params, opt_state, step) = match start(&layout)? {
            Some(s) => s,
            None => (
                initial_params(&model, &layout, cfg.train.seed)?,
                layout.initial_opt_state()?,
                0,
            ),
        };
        let step = i32::try_from(step).map_err(|_| anyhow!("step {step} exceeds s32"))?;
        let trainer = Trainer::on_devices(exe, layout.clone(), devices, &params, &opt_state, step)?;
        Ok(Self {
            client,
            model,
            micro,
            num_devices,
            layout,
            trainer,
            compile_time,
        })
    }
}

/// Opens the backend's client (on CPU with `device.num_devices` virtual devices) and decides how
/// many devices the step runs on; the global batch must split evenly over them.
fn open_devices(cfg: &PretrainConfig) -> Result<(Client, usize)> {
    let backend = cfg.backend()?;
    let asked = cfg.device.num_devices.map(|n| n as usize);
    let cpu_devices = asked.unwrap_or(1).max(1) as i64;
    let client = open_client(backend, cfg.device.plugin.as_deref(), cpu_devices)?;
    let available = client.addressable_devices()?.len();
    let n = asked.unwrap_or_else(|| default_num_devices(backend, available));
    if n == 0 || n > available {
        bail!(
            "device.num_devices (--num-devices) is {n}, the {} backend has {available} device(s)",
            cfg.device.backend
        );
    }
    cfg.check_batch_split(n)?;
    Ok((client, n))
}

/// The model's initialization from `seed`, in the step's parameter order.
fn initial_params(model: &BertConfig, layout: &StepLayout, seed: u64) -> Result<Vec<Literal>> {
    let set = init_params(model, seed);
    layout
        .params
        .iter()
        .map(|p| {
            let t = set
                .get(&p.name)
                .ok_or_else(|| anyhow!("initialization has no parameter '{}'", p.name))?;
            Ok(Literal::from_slice(&t.data, &p.shape.dims)?)
        })
        .collect()
}

/// Where batches come from.
enum Source {
    Files(Box<Reader>),
    /// Random batches derived from (seed, step): reproducible on resume.
    Synthetic {
        vocab: usize,
        seed: u64,
    },
}

impl Source {
    fn next(&mut self, cfg: &PretrainConfig, step: u64) -> Result<Batch> {
        match self {
            Source::Files(r) => r
                .next_batch()
                .ok_or_else(|| anyhow!("the training data ended (the reader repeats forever)"))?,
            Source::Synthetic { vocab, seed } => Ok(synthetic_batch(
                cfg.train.batch_size,
                cfg.data.seq_len,
                cfg.data.max_predictions,
                *vocab,
                seed.wrapping_add(step),
            )),
        }
    }

    fn state(&self) -> Option<crate::data::ReaderState> {
        match self {
            Source::Files(r) => Some(r.state()),
            Source::Synthetic { .. } => None,
        }
    }
}

fn reader_config(cfg: &PretrainConfig, files: Vec<PathBuf>) -> ReaderConfig {
    let mut rc = ReaderConfig::new(
        files,
        cfg.train.batch_size,
        cfg.data.seq_len,
        cfg.data.max_predictions,
    );
    rc.seed = cfg.train.seed;
    rc.shuffle_buffer = cfg.data.shuffle_buffer;
    rc.cycle_length = cfg.data.cycle_length;
    rc.prefetch_batches = cfg.data.prefetch_batches;
    rc
}

/// Logs a line through `tracing`, around the progress bar.
fn log(progress: &Progress, msg: String) {
    progress.suspend(|| tracing::info!("{msg}"));
}

/// Runs the pretraining `cfg` describes (see the module docs).
pub fn run(cfg: &PretrainConfig, opts: &RunOptions) -> Result<RunSummary> {
    let t_start = Instant::now();
    cfg.validate()?;
    let model = cfg.bert_config()?;
    let store = Store::new(cfg.checkpoint_dir()).with_keep_last(cfg.checkpoint.keep_last)?;
    let mut resumed: Option<(crate::ckpt::State, PathBuf)> = None;
    let session = Session::open(cfg, |layout| {
        let spec = Spec::from_layout(layout);
        if !cfg.checkpoint.resume {
            if let Some(latest) = store.latest()? {
                bail!(
                    "--no-resume: {} already holds checkpoints (latest {}); choose an empty \
                     --checkpoint-dir or remove them",
                    store.root().display(),
                    latest.path().display()
                );
            }
            return Ok(None);
        }
        let Some((state, dir)) = load_for_resume(&store, &spec, cfg, &model)? else {
            return Ok(None);
        };
        let start = (
            state.param_literals(),
            state.opt_state_literals(),
            state.step,
        );
        resumed = Some((state, dir));
        Ok(Some(start))
    })?;
    let Session {
        client,
        micro,
        num_devices,
        layout,
        mut trainer,
        compile_time,
        ..
    } = session;
    let spec = Spec::from_layout(&layout);
    let start_step = resumed.as_ref().map_or(0, |(s, _)| s.step);
    let mut examples_seen = resumed
        .as_ref()
        .and_then(|(s, _)| s.extra.get("examples_seen").and_then(Value::as_u64))
        .unwrap_or(0);

    let mut source = if cfg.data.synthetic {
        Source::Synthetic {
            vocab: model.vocab_size,
            seed: cfg.train.seed,
        }
    } else {
        let pattern = cfg.data.train.as_deref().unwrap_or_default();
        let files = ReaderConfig::files_from_patterns(pattern).context("data.train")?;
        let rc = reader_config(cfg, files);
        let saved = match &resumed {
            Some((s, dir)) => reader_state(&s.data_position, dir)?,
            None => None,
        };
        let reader = match saved {
            Some(st) => Reader::resume(rc, st)?,
            None => Reader::new(rc)?,
        };
        Source::Files(Box::new(reader))
    };

    let evaluator = match &cfg.data.eval {
        Some(pattern) => {
            let files = ReaderConfig::files_from_patterns(pattern).context("data.eval")?;
            // Evaluation runs on replica 0's device with its copy of the parameters.
            let shapes = BatchShapes {
                batch_size: cfg.eval_batch_size(),
                ..micro
            };
            Some(Evaluator::new(
                &client,
                &model,
                files,
                shapes,
                cfg.eval.batches,
                cfg.data.cycle_length,
                i32::try_from(cfg.mask_token_id()).context("eval.mask_token_id")?,
            )?)
        }
        None => None,
    };

    let mut sink = MetricsSink::open(&cfg.output.dir, cfg.output.tensorboard)?;
    let end_step = match opts.stop_after {
        Some(n) => (start_step + n).min(cfg.train.steps),
        None => cfg.train.steps,
    };
    let progress = Progress::new(
        start_step,
        cfg.train.steps,
        cfg.output.progress && opts.print,
    );
    let device = trainer.device().clone();
    if opts.print {
        let resumed_msg = match &resumed {
            Some((_, dir)) => format!("resumed from {} (step {start_step})", dir.display()),
            None => "starting from scratch".into(),
        };
        log(
            &progress,
            format!(
                "train step compiled in {:.1}s for {num_devices} device(s) (batch {} per device); {resumed_msg}; steps {start_step}..{end_step} of {}",
                compile_time.as_secs_f64(),
                cfg.train.batch_size / num_devices,
                cfg.train.steps
            ),
        );
    }

    let k = cfg.train.accumulation_steps as usize;
    let mut summary = RunSummary {
        start_step,
        end_step,
        resumed_from: resumed.as_ref().map(|(_, d)| d.clone()),
        compile_time,
        metrics_file: Some(sink.jsonl_path().to_path_buf()),
        ..Default::default()
    };
    let mut window_start = Instant::now();
    let mut window_seqs = 0u64;
    let mut first_done: Option<Instant> = None;
    let mut last_checkpoint = None;
    for step in start_step..end_step {
        let batch = source.next(cfg, step)?;
        let real = batch.real_rows as u64;
        let lits = step_literals(&batch, k, cfg.train.seed, step)?;
        let shards = trainer.upload_shards(0, &lits)?;
        let outs = trainer
            .step_sharded(&[&shards])
            .with_context(|| format!("step {}", step + 1))?;
        let rec = read_record(&layout, step + 1, &outs)?;
        let done = step + 1;
        examples_seen += real;
        if first_done.is_none() {
            first_done = Some(Instant::now());
            summary.time_to_first_step = t_start.elapsed();
            window_start = Instant::now();
        } else {
            window_seqs += real;
        }
        if !rec.loss.is_finite() {
            bail!(
                "step {done}: the loss is {} (diverged); lower train.learning_rate or check the data",
                rec.loss
            );
        }
        progress.set_step(done);
        if done % cfg.output.log_every == 0 || done == end_step {
            let secs = window_start.elapsed().as_secs_f64();
            let seq_per_s = if secs > 0.0 {
                window_seqs as f64 / secs
            } else {
                0.0
            };
            progress.show(&Shown {
                loss: rec.loss,
                mlm_accuracy: rec.get("mlm_accuracy").unwrap_or(0.0),
                nsp_accuracy: rec.get("nsp_accuracy").unwrap_or(0.0),
                seq_per_s,
            });
            let mut fields: Vec<(&str, Value)> = vec![("loss", Value::from(rec.loss))];
            for (n, v) in &rec.metrics {
                fields.push((n.as_str(), Value::from(*v)));
            }
            fields.push(("seq_per_s", Value::from(seq_per_s)));
            fields.push(("examples_seen", Value::from(examples_seen)));
            fields.push(("elapsed_s", Value::from(t_start.elapsed().as_secs_f64())));
            sink.record("train", done, &fields)?;
            if opts.print && !progress.is_visible() {
                log(
                    &progress,
                    format!(
                        "step {done}: loss {:.4} mlm_acc {:.3} nsp_acc {:.3} lr {:.3e} {seq_per_s:.1} seq/s",
                        rec.loss,
                        rec.get("mlm_accuracy").unwrap_or(0.0),
                        rec.get("nsp_accuracy").unwrap_or(0.0),
                        rec.get("learning_rate").unwrap_or(0.0),
                    ),
                );
            }
        }
        summary.history.push(rec);
        let last = done == end_step;
        if let Some(ev) = &evaluator {
            let due = cfg.eval.interval > 0 && done % cfg.eval.interval == 0;
            if due || (last && done == cfg.train.steps) {
                let r = ev.run(trainer.param_buffers(), &device)?;
                sink.record("eval", done, &r.fields())?;
                if opts.print {
                    log(
                        &progress,
                        format!(
                            "eval at step {done}: mlm_loss {:.4} mlm_acc {:.4} (at [MASK] {:.4}) nsp_loss {:.4} nsp_acc {:.4} ({} examples, {:.1}s)",
                            r.mlm_loss, r.mlm_accuracy, r.mlm_accuracy_at_mask, r.nsp_loss, r.nsp_accuracy, r.examples, r.seconds
                        ),
                    );
                }
                summary.evals.push((done, r));
            }
        }
        let due = cfg.checkpoint.interval > 0 && done % cfg.checkpoint.interval == 0;
        if due || last {
            let state = capture(
                &trainer,
                &spec,
                done,
                cfg,
                &model,
                source.state(),
                examples_seen,
            )?;
            let path = save(&store, &state)?;
            if opts.print {
                log(&progress, format!("checkpoint {}", path.display()));
            }
            last_checkpoint = Some(path);
        }
    }
    progress.finish();
    if let Some(first) = first_done {
        let secs = first.elapsed().as_secs_f64();
        let steps_after_first = summary.history.len().saturating_sub(1) as f64;
        if secs > 0.0 && steps_after_first > 0.0 {
            summary.seq_per_s = steps_after_first * cfg.train.batch_size as f64 / secs;
        }
    }
    summary.wall_time = t_start.elapsed();
    summary.checkpoint = last_checkpoint.or_else(|| summary.resumed_from.clone());
    let mut fields: Vec<(&str, Value)> = vec![
        ("start_step", Value::from(start_step)),
        ("steps_run", Value::from(summary.history.len())),
        ("wall_time_s", Value::from(summary.wall_time.as_secs_f64())),
        ("compile_s", Value::from(compile_time.as_secs_f64())),
        ("seq_per_s", Value::from(summary.seq_per_s)),
    ];
    if let Some(r) = summary.history.last() {
        fields.push(("loss", Value::from(r.loss)));
    }
    if let Some(p) = &summary.checkpoint {
        fields.push(("checkpoint", Value::from(p.display().to_string())));
    }
    sink.record("summary", end_step, &fields)?;
    Ok(summary)
}

/// Reads the loss and metrics of a step (the outputs after the state: loss, then metrics).
pub(crate) fn read_record(
    layout: &StepLayout,
    step: u64,
    outs: &[tpu::Buffer],
) -> Result<StepRecord> {
    let scalar = |b: &tpu::Buffer, what: &str| -> Result<f32> {
        b.to_host::<f32>()?
            .first()
            .copied()
            .ok_or_else(|| anyhow!("step output {what} is empty"))
    };
    let loss = scalar(
        outs.first()
            .ok_or_else(|| anyhow!("the step returned no loss"))?,
        "loss",
    )?;
    let metrics = layout
        .metric_names
        .iter()
        .zip(&outs[1..])
        .map(|(n, b)| Ok((n.clone(), scalar(b, n)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(StepRecord {
        step,
        loss,
        metrics,
    })
}

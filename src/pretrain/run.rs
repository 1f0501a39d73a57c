//! A pretraining run: open the devices, build and compile the step, start from scratch or from
//! the latest checkpoint, open the data (reader, work units or synthetic) behind the input feed
//! ([`super::feed`]), then run the steps ([`super::train_loop`]: pipelined, logging, evaluating
//! and checkpointing on schedule; at the end a checkpoint, an evaluation and a summary).
//!
//! On N devices the step is data-parallel (see [`crate::train::StepConfig::replicas`]): the
//! reader's global batch is split into N shards, the parameters and optimizer state live on every
//! device, and checkpoints and evaluation read replica 0's copy.
//!
//! Over several processes (`--num-processes`, see [`super::distributed`]) the step's replicas
//! are every process's local devices; each process reads its share of the batch from the work
//! units the coordinator's data cursor hands it ([`super::data_cursor`]), and process 0 alone
//! logs, evaluates and writes checkpoints (holding the cursor, which any number of processes
//! resumes from).
//!
//! Exact resume: the parameters, optimizer state and step come back from the checkpoint, the
//! data reader continues from its saved position, and the dropout key of each step derives from
//! the seed and the step number alone, so the resumed run computes the same steps, bit for bit
//! on CPU, as the uninterrupted one.
use super::checkpoint::{load_checkpoint, load_for_resume};
use super::clock::{HostWait, Steady};
use super::config::{default_num_devices, PretrainConfig};
use super::distributed::{process_seed, Distributed};
use super::eval::{EvalResult, Evaluator};
use super::feed::{Feed, FeedPlan};
use super::interrupt::StopSignal;
use super::metrics::{supersede_after, MetricsSink, METRICS_FILE, SUPERSEDED_FILE};
use super::program::{train_step_module, write_program, LoweredStep};
use super::source::{open_source, DataShare, Source};
use super::train_loop::TrainLoop;
use crate::backend::open_client;
use crate::ckpt::{Checkpoint, Spec, Store};
use crate::data::ReaderConfig;
use crate::model::{init_params, BatchShapes, BertConfig, Execution, ParamSet};
use crate::storage::OutputDir;
use crate::train::progress::TrainBar;
use crate::train::startup::Startup;
use crate::train::{StepLayout, Trainer};
use anyhow::{anyhow, bail, Context, Result};
use hlo::Literal;
use serde_json::Value;
use std::path::{Path, PathBuf};
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
    /// Installed by the CLI: a SIGINT/SIGTERM stops the run at the next step boundary with a
    /// checkpoint (see [`super::interrupt`]).
    pub stop: Option<StopSignal>,
    /// Write the train step's HloModuleProto bytes, as handed to the compiler, to this file
    /// (`--dump-program`; `tpu-run compile --config` writes the same bytes for the same run).
    pub dump_program: Option<PathBuf>,
    /// Run each step to its results before taking the next batch (the hidden `--lockstep`):
    /// the reference for the pipelined loop (see [`super::train_loop`]), and its baseline.
    pub lockstep: bool,
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
    /// Where the time before the step's first launch went (the rest of `time_to_first_step`
    /// is opening the data, the evaluator and the first step itself).
    pub startup: Startup,
    pub wall_time: Duration,
    /// Sequences (instances, when packed) per second over the steps after the first
    /// (evaluations and checkpoints included).
    pub seq_per_s: f64,
    /// This process's real (non-padding) tokens and all token slots of the batches it fed.
    pub real_tokens: u64,
    pub token_slots: u64,
    /// Real (non-padding) tokens per second over the steps after the first, all processes.
    pub real_tokens_per_s: f64,
    /// The median step after the warm-up, without evaluations or checkpoints, as the synthetic
    /// bench measures it; `None` when too few steps ran.
    pub steady: Option<Steady>,
    /// Time the loop waited for its input feed.
    pub host_wait: HostWait,
    pub checkpoint: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    /// Damaged training records skipped by this process (`data.skip_corrupt`), each logged.
    pub skipped_records: u64,
    /// Later checkpoints passed over on resume (incomplete, or a damaged manifest).
    pub skipped_checkpoints: Vec<crate::ckpt::Skipped>,
}

impl RunSummary {
    /// Real (non-padding) tokens over all token slots of the batches fed (0 before any).
    pub fn real_token_fraction(&self) -> f64 {
        if self.token_slots == 0 {
            return 0.0;
        }
        self.real_tokens as f64 / self.token_slots as f64
    }

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
        println!("startup:      {}", s.startup.describe());
        let steady = match &s.steady {
            Some(x) => format!(
                "{:.1} seq/s steady state (median step {:.2} ms over {} steps)",
                x.seq_per_s,
                x.median_step_s * 1e3,
                x.steps
            ),
            None => format!(
                "no steady state (it starts after {} steps)",
                super::clock::WARMUP_INTERVALS + 1
            ),
        };
        println!(
            "throughput:   {steady}; {:.1} seq/s over the whole run, {:.0} real tokens/s",
            s.seq_per_s, s.real_tokens_per_s
        );
        if s.token_slots > 0 {
            println!(
                "real tokens:  {:.1}% of the batches' token slots (the rest is padding)",
                100.0 * s.real_token_fraction()
            );
        }
        println!(
            "host wait:    {:.3} s for the input feed ({:.2}% of the loop, longest {:.1} ms)",
            s.host_wait.total.as_secs_f64(),
            100.0 * s.host_wait.fraction,
            s.host_wait.longest.as_secs_f64() * 1e3
        );
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
        for c in &s.skipped_checkpoints {
            println!(
                "passed over:  checkpoint {} ({}); the run resumed from the latest complete \
                 one before it, or from scratch if none",
                c.path.display(),
                c.reason
            );
        }
        if s.skipped_records > 0 {
            println!(
                "skipped:      {} damaged training record(s) (--skip-corrupt; each is logged \
                 above with its file and byte offset)",
                s.skipped_records
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
    /// How the step runs the model (the run's precision and attention kernel).
    pub exec: Execution,
    /// One replica's micro-batch.
    pub micro: BatchShapes,
    /// This process's devices the step runs on (its data-parallel replicas).
    pub num_devices: usize,
    /// Replicas of every process (`num_devices` in a single-process run).
    pub replicas: usize,
    pub layout: StepLayout,
    pub trainer: Trainer,
    pub compile_time: Duration,
    /// Building and lowering the step (before `compile_time`).
    pub build: crate::train::lowered::BuildStats,
    /// Where the time before the first step went.
    pub startup: Startup,
}

impl Session {
    /// Opens the backend, builds and compiles the step and uploads `start` (parameters and
    /// optimizer state, in layout order) or, when `None`, a fresh initialization from the seed.
    pub fn open(
        cfg: &PretrainConfig,
        start: impl FnOnce(&StepLayout) -> Result<Option<(Vec<Literal>, Vec<Literal>, u64)>>,
    ) -> Result<Self> {
        if cfg.device.num_processes > 1 {
            bail!(
                "this command runs in one process; device.num_processes (--num-processes) is \
                 for `tpu-run pretrain` training runs"
            );
        }
        Self::open_in(cfg, None, None, FreshInit::Likely, start)
    }

    /// [`Session::open`] as one process of a multi-process run when `dist` is given: the step
    /// is compiled for the replicas of every process and runs on this process's devices. The
    /// step's HloModuleProto bytes are written to `dump_program` first, when given. With
    /// [`FreshInit::Likely`] the initialization is drawn on a thread of its own while the client
    /// opens and the step compiles (or loads), and used if `start` gives no state.
    pub fn open_in(
        cfg: &PretrainConfig,
        dist: Option<&Distributed>,
        dump_program: Option<&Path>,
        fresh: FreshInit,
        start: impl FnOnce(&StepLayout) -> Result<Option<(Vec<Literal>, Vec<Literal>, u64)>>,
    ) -> Result<Self> {
        let model = cfg.bert_config()?;
        let need = super::memory::host_memory_need(
            &model,
            cfg.train.optimizer,
            cfg.device.backend == crate::backend::Backend::Cpu,
        );
        super::memory::check_host_memory(need, super::memory::available_host_memory())?;
        std::thread::scope(|scope| {
            let drawn = (fresh == FreshInit::Likely)
                .then(|| scope.spawn(|| init_params(&model, cfg.train.seed)));
            Self::open_with(cfg, dist, dump_program, start, drawn)
        })
    }

    fn open_with(
        cfg: &PretrainConfig,
        dist: Option<&Distributed>,
        dump_program: Option<&Path>,
        start: impl FnOnce(&StepLayout) -> Result<Option<(Vec<Literal>, Vec<Literal>, u64)>>,
        drawn: Option<std::thread::ScopedJoinHandle<'_, ParamSet>>,
    ) -> Result<Self> {
        let t_client = Instant::now();
        let (client, num_devices) = open_devices(cfg, dist)?;
        let client_s = t_client.elapsed().as_secs_f64();
        let processes = dist.map_or(1, Distributed::num_processes) as usize;
        let replicas = num_devices * processes;
        let LoweredStep {
            model,
            exec,
            micro,
            program,
            proto,
            mut options,
            build,
        } = train_step_module(cfg, replicas)?;
        if let Some(path) = dump_program {
            write_program(path, &proto)?;
        }
        if let Some(d) = dist {
            // As XLA's multi-host runners do: this process's place, and replica r on the
            // (r % n)-th device of process r / n, so each process's replicas are its own.
            options.process_index = i64::from(d.process_id());
            options.process_count = processes as i64;
            let devices: Vec<(i32, i32)> = client
                .devices()?
                .iter()
                .map(|d| (d.id(), d.process_index()))
                .collect();
            options.device_assignment =
                Some(vec![replica_devices(&devices, processes, num_devices)?]);
        }
        let t0 = Instant::now();
        let exe = client
            .compile(&proto, &options)
            .context("compiling the train step")?;
        let compile_time = t0.elapsed();
        drop(proto);
        let devices = exe.addressable_devices().to_vec();
        let layout = program.layout;
        let t_state = Instant::now();
        let (params, opt_state, step) = match start(&layout)? {
            Some(s) => s,
            None => {
                let set = match drawn {
                    Some(handle) => handle
                        .join()
                        .map_err(|_| anyhow!("drawing the initial parameters failed"))?,
                    None => init_params(&model, cfg.train.seed),
                };
                (
                    layout_literals(&set, &layout)?,
                    layout.initial_opt_state()?,
                    0,
                )
            }
        };
        let step = i32::try_from(step).map_err(|_| anyhow!("step {step} exceeds s32"))?;
        let state_s = t_state.elapsed().as_secs_f64();
        let t_upload = Instant::now();
        let trainer = Trainer::on_local_devices(
            exe,
            layout.clone(),
            devices,
            &params,
            &opt_state,
            step,
            processes as u32,
        )?;
        let startup = Startup {
            client_s,
            build_s: build.build_s,
            compile_s: compile_time.as_secs_f64(),
            state_s,
            upload_s: t_upload.elapsed().as_secs_f64(),
            first_step_s: None,
        };
        Ok(Self {
            client,
            model,
            exec,
            micro,
            num_devices,
            replicas,
            layout,
            trainer,
            compile_time,
            build,
            startup,
        })
    }
}

/// Opens the backend's client (on CPU with `device.num_devices` virtual devices; across the
/// processes with `dist`) and decides how many local devices the step runs on; the global batch
/// must split evenly over them (on every process).
fn open_devices(cfg: &PretrainConfig, dist: Option<&Distributed>) -> Result<(Client, usize)> {
    let backend = cfg.device.backend;
    let asked = cfg.device.num_devices.map(|n| n as usize);
    let cpu_devices = asked.unwrap_or(1).max(1) as i64;
    let plugin = cfg.device.plugin.as_deref();
    let client = match dist {
        Some(d) => d.open_client(backend, plugin)?,
        None => open_client(backend, plugin, cpu_devices)?,
    };
    let available = client.addressable_devices()?.len();
    let n = asked.unwrap_or_else(|| default_num_devices(backend, available));
    if n == 0 || n > available {
        bail!(
            "device.num_devices (--num-devices) is {n}, the {} backend has {available} device(s)",
            backend.name()
        );
    }
    cfg.check_batch_split(n)?;
    Ok((client, n))
}

/// The device of each replica of a multi-process step (`(id, process index)` of every device of
/// the client): replica `r` runs on the `(r % local)`-th device (by id) of process
/// `r / local`. Every process computes the same assignment.
pub fn replica_devices(devices: &[(i32, i32)], processes: usize, local: usize) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(processes * local);
    for p in 0..processes {
        let mut ids: Vec<i32> = devices
            .iter()
            .filter(|(_, proc)| usize::try_from(*proc).ok() == Some(p))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        if ids.len() < local {
            bail!(
                "process {p} has {} device(s) and every process must drive {local} \
                 (device.num_devices): give every host the same devices",
                ids.len()
            );
        }
        out.extend(ids[..local].iter().map(|&id| i64::from(id)));
    }
    Ok(out)
}

/// The model and the parameters a fresh run of `cfg` (nothing to resume) starts from: the
/// initialization from `train.seed` that [`Session::open_in`] draws. `tpu-run export-hf --init`
/// writes them for another trainer to start from the same weights.
pub fn initial_weights(cfg: &PretrainConfig) -> Result<(BertConfig, ParamSet)> {
    let model = cfg.bert_config()?;
    let params = init_params(&model, cfg.train.seed);
    Ok((model, params))
}

/// Whether a run starts from a fresh initialization (no checkpoint to resume): then
/// [`Session::open_in`] draws it while the step compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FreshInit {
    Likely,
    Unlikely,
}

/// The initialization `set`, in the step's parameter order.
fn layout_literals(set: &ParamSet, layout: &StepLayout) -> Result<Vec<Literal>> {
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

/// Where a stopped run can resume, for its error message.
pub(super) fn describe_checkpoint(path: Option<&PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "(none yet: a rerun starts from scratch)".into(),
    }
}

/// Logs a line through `tracing`, around the progress bar.
pub(super) fn log(progress: &TrainBar, msg: String) {
    progress.suspend(|| tracing::info!("{msg}"));
}

/// Runs the pretraining `cfg` describes (see the module docs). With several processes this
/// process joins the run first, and its failure is reported to the others.
pub fn run(cfg: &PretrainConfig, opts: &RunOptions) -> Result<RunSummary> {
    let t_start = Instant::now();
    cfg.validate()?;
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    match Distributed::start(cfg)? {
        None => run_in(cfg, opts, None, t_start),
        Some(dist) => match run_in(cfg, opts, Some(&dist), t_start) {
            Ok(summary) => {
                dist.finish()?;
                Ok(summary)
            }
            Err(e) => {
                let e = e.context(format!(
                    "process {} of {}",
                    dist.process_id(),
                    dist.num_processes()
                ));
                dist.fail(&e);
                Err(e)
            }
        },
    }
}

fn run_in(
    cfg: &PretrainConfig,
    opts: &RunOptions,
    dist: Option<&Distributed>,
    t_start: Instant,
) -> Result<RunSummary> {
    let model = cfg.bert_config()?;
    let (process_id, processes) = dist.map_or((0, 1), |d| (d.process_id(), d.num_processes()));
    let chief = process_id == 0;
    // Only process 0 prints progress and metrics; the others log what concerns them alone.
    let print = opts.print && chief;
    let store = Store::new(cfg.checkpoint_dir()).with_keep_last(cfg.checkpoint.keep_last)?;
    if chief {
        store.check_step_names_free()?;
    }
    // Before the PJRT client exists: the files of this process and the checkpoint all resume
    // from, agreed through the coordinator.
    let train_files = match (&cfg.data.synthetic, &cfg.data.train) {
        (false, Some(pattern)) => {
            let all = ReaderConfig::files_from_patterns(pattern).context("data.train")?;
            Some(match dist {
                // Every process lists the same files; the coordinator hands out their units.
                Some(d) => d.agree_on_files(&all)?,
                None => all,
            })
        }
        _ => None,
    };
    let resume_point: Option<Option<Checkpoint>> = match dist {
        Some(d) => Some(d.resume_point(&store, cfg.checkpoint.resume)?),
        None => None,
    };
    let mut resumed: Option<(crate::ckpt::State, PathBuf)> = None;
    let mut skipped_checkpoints = Vec::new();
    // A fresh run's initialization is drawn while the step compiles.
    let fresh = match &resume_point {
        Some(point) => point.is_none(),
        None => !cfg.checkpoint.resume || store.latest()?.is_none(),
    };
    let fresh = if fresh {
        FreshInit::Likely
    } else {
        FreshInit::Unlikely
    };
    let session = Session::open_in(cfg, dist, opts.dump_program.as_deref(), fresh, |layout| {
        let spec = Spec::from_layout(layout);
        let loaded = match &resume_point {
            // Several processes: the checkpoint process 0 chose (or none).
            Some(point) => match point {
                Some(ckpt) => Some(load_checkpoint(ckpt, &spec, cfg, &model)?),
                None => None,
            },
            None if !cfg.checkpoint.resume => {
                if let Some(latest) = store.latest()? {
                    bail!(
                        "--no-resume: {} already holds checkpoints (latest {}); choose an empty \
                         --checkpoint-dir or remove them",
                        store.root().display(),
                        latest.path().display()
                    );
                }
                None
            }
            None => load_for_resume(&store, &spec, cfg, &model, &mut skipped_checkpoints)?,
        };
        let Some((state, dir)) = loaded else {
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
        exec,
        micro,
        num_devices,
        replicas,
        layout,
        trainer,
        compile_time,
        startup,
        ..
    } = session;
    let spec = Spec::from_layout(&layout);
    let start_step = resumed.as_ref().map_or(0, |(s, _)| s.step);
    let examples_seen = resumed
        .as_ref()
        .and_then(|(s, _)| s.extra.get("examples_seen").and_then(Value::as_u64))
        .unwrap_or(0);

    // This process's rows of the global batch, drawn with its own seed.
    let rows = cfg.train.batch_size / processes as usize;
    let data_seed = process_seed(cfg.train.seed, process_id);
    let (source, keeper) = open_source(
        cfg,
        dist,
        train_files,
        resumed.as_ref(),
        DataShare {
            rows,
            seed: data_seed,
            process_id,
            processes,
            vocab: model.vocab_size,
            micro,
        },
    )?;
    if micro.max_instances_per_row.is_some() && !matches!(source, Source::Packed(_)) {
        bail!(
            "data.pack trains on packed rows, but this run's data comes from a multi-process \
             run's work units or from synthetic batches, which are padded; run without --pack"
        );
    }

    let evaluator = match &cfg.data.eval {
        Some(pattern) if chief => {
            let files = ReaderConfig::files_from_patterns(pattern).context("data.eval")?;
            // Evaluation runs on replica 0's device with its copy of the parameters.
            Some(Evaluator::new(&client, cfg, &model, exec, files)?)
        }
        _ => None,
    };

    // Process 0's metrics: in output.dir, or in a staging copy uploaded to its bucket.
    let output = if chief {
        let pull = [METRICS_FILE, SUPERSEDED_FILE];
        Some(OutputDir::open(&cfg.output.dir, &pull).with_context(|| {
            format!("opening the output directory {}", cfg.output.dir.display())
        })?)
    } else {
        None
    };
    let sink = match &output {
        Some(out) => {
            let moved = supersede_after(out.local(), start_step)?;
            if moved > 0 && opts.print {
                tracing::info!(
                    "{moved} metrics record(s) after step {start_step} are computed again: moved \
                     to {}",
                    out.shown(&out.local().join(SUPERSEDED_FILE)).display()
                );
            }
            Some(MetricsSink::open(out.local(), cfg.output.tensorboard)?)
        }
        None => None,
    };
    let end_step = match opts.stop_after {
        Some(n) => (start_step + n).min(cfg.train.steps),
        None => cfg.train.steps,
    };
    let progress = TrainBar::new(start_step, cfg.train.steps, cfg.output.progress && print);
    if opts.print {
        let resumed_msg = match &resumed {
            Some((_, dir)) => format!("resumed from {} (step {start_step})", dir.display()),
            None => "starting from scratch".into(),
        };
        let devices = if processes > 1 {
            format!(
                "{replicas} replicas ({processes} processes x {num_devices} device(s)); this is \
                 process {process_id}"
            )
        } else {
            format!("{num_devices} device(s)")
        };
        log(
            &progress,
            format!(
                "train step compiled in {:.1}s for {devices} (batch {} per device); {resumed_msg}; steps {start_step}..{end_step} of {}",
                compile_time.as_secs_f64(),
                cfg.train.batch_size / replicas,
                cfg.train.steps
            ),
        );
    }

    let summary = RunSummary {
        start_step,
        end_step,
        resumed_from: resumed.as_ref().map(|(_, d)| d.clone()),
        skipped_checkpoints,
        compile_time,
        startup,
        metrics_file: sink
            .as_ref()
            .zip(output.as_ref())
            .map(|(s, out)| out.shown(s.jsonl_path())),
        ..Default::default()
    };
    let feed = Feed::start(
        source,
        FeedPlan {
            steps: start_step..end_step,
            layout: layout.clone(),
            replicas: num_devices,
            micro_batches: cfg.train.accumulation_steps as usize,
            seed: cfg.train.seed,
        },
    )?;
    TrainLoop {
        cfg,
        opts,
        dist,
        trainer,
        layout,
        spec,
        model,
        store,
        keeper,
        evaluator,
        sink,
        output,
        progress,
        print,
        t_start,
        examples_seen,
        processes,
        replicas,
        summary,
    }
    .run(feed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_go_to_each_process_s_devices_in_id_order() {
        // Two processes with 3 devices each, listed out of order; 2 local replicas each.
        let devices = [(4, 1), (0, 0), (5, 1), (2, 0), (1, 0), (3, 1)];
        assert_eq!(replica_devices(&devices, 2, 2).unwrap(), vec![0, 1, 3, 4]);
        assert_eq!(
            replica_devices(&devices, 2, 3).unwrap(),
            vec![0, 1, 2, 3, 4, 5]
        );
        let e = replica_devices(&devices[..5], 2, 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("process 1 has 2 device(s)"), "{e}");
    }
}

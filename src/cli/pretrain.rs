//! `tpu-run pretrain`: BERT pretraining from a TOML config with command-line overrides; `--demo`
//! for a complete small run with no input files; `--bench-steps N` for step timings.
use crate::backend::{AttentionChoice, Backend};
use crate::model::ComputeDtype;
use crate::pretrain::bench::bench;
use crate::pretrain::data_only::{run_data_only, DataOnlyOptions};
use crate::pretrain::demo::{run_demo, DemoOptions};
use crate::pretrain::interrupt::StopSignal;
use crate::pretrain::pod_setup::{explicit_flags, place_on_tpu_pod};
use crate::pretrain::{run, Overrides, PretrainConfig, RunOptions};
use crate::tpu_pod::PodEnv;
use crate::train::OptimizerKind;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
pub struct PretrainArgs {
    /// Run settings (TOML; see configs/pretrain-tiny.toml). Flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A complete small run on the CPU plugin with no input files: builds a corpus from text on
    /// this machine, makes shards with create-data, trains a tiny BERT and evaluates it.
    #[arg(long)]
    pub demo: bool,
    /// Benchmark the train step on synthetic batches: N timed steps; prints compile time, time
    /// to the first step, median step time and seq/s (no files, no checkpoints).
    #[arg(long, value_name = "N")]
    pub bench_steps: Option<u64>,
    /// Stop after N steps of this invocation (a checkpoint is written); the schedule still
    /// spans --steps, and a later run resumes exactly.
    #[arg(long, value_name = "N")]
    pub stop_after: Option<u64>,
    /// Model preset: tiny, mini, small, medium, base, large.
    #[arg(long)]
    pub preset: Option<String>,
    /// Model config file (bert_config.json or Hugging Face config.json); replaces the preset.
    #[arg(long)]
    pub model_config: Option<PathBuf>,
    /// Training shards: paths or glob patterns, comma-separated; gs://BUCKET/... and
    /// s3://BUCKET/... patterns are matched against the bucket's listing and read as streams.
    #[arg(long)]
    pub data: Option<String>,
    /// Held-out shards for evaluation (same forms).
    #[arg(long)]
    pub eval_data: Option<String>,
    /// Random batches instead of files.
    #[arg(long)]
    pub synthetic_data: bool,
    /// Skip damaged training records (bad CRC or framing, undecodable or out-of-range values)
    /// instead of stopping: each is logged with its file and byte offset and counted in the run
    /// summary (the rest of a shard whose framing is broken is skipped with it).
    #[arg(long)]
    pub skip_corrupt: bool,
    /// Device backend (device.backend, default cpu).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// PJRT plugin file (overrides discovery).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Devices to train on, data-parallel (default: every chip of a TPU host, 1 on CPU and
    /// CUDA; on CPU this many virtual devices are made). --batch-size stays the global batch.
    #[arg(long, value_name = "N")]
    pub num_devices: Option<u32>,
    /// Self-attention kernel (device.attention, default auto).
    #[arg(long, value_enum)]
    pub attention: Option<AttentionChoice>,
    /// Multi-process runs (one process per host of a pod slice, or per GPU): worker 0's
    /// address HOST:PORT, the same on every process; process 0 serves the coordinator there.
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: Option<String>,
    /// Processes of a multi-process run (default 1); each drives --num-devices local devices.
    #[arg(long, value_name = "N")]
    pub num_processes: Option<u32>,
    /// This process's index in 0..--num-processes (0 serves the coordinator, writes metrics
    /// and checkpoints).
    #[arg(long, value_name = "K")]
    pub process_id: Option<u32>,
    /// A file holding the run's secret, the same on every process (keep it private: chmod
    /// 600). Unset: $TPU_RUN_COORDINATOR_TOKEN, else process 0 generates a token and prints it.
    #[arg(long, value_name = "FILE")]
    pub coordinator_token_file: Option<PathBuf>,
    /// Process 0 writes the token it generated to this new file (mode 600).
    #[arg(long, value_name = "FILE")]
    pub coordinator_token_out: Option<PathBuf>,
    /// The address process 0 listens on (default: the --coordinator address itself; give
    /// 0.0.0.0:PORT to listen on every interface).
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator_bind: Option<String>,
    /// TLS certificate chain (PEM) process 0 serves the coordinator with.
    #[arg(long, value_name = "FILE")]
    pub coordinator_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --coordinator-tls-cert.
    #[arg(long, value_name = "FILE")]
    pub coordinator_tls_key: Option<PathBuf>,
    /// The CA (PEM) every process verifies the coordinator's certificate with; turns TLS on.
    #[arg(long, value_name = "FILE")]
    pub coordinator_tls_ca: Option<PathBuf>,
    /// Seconds to keep trying to reach the coordinator (default 120).
    #[arg(long, value_name = "SECONDS")]
    pub coordinator_connect_timeout: Option<f64>,
    /// Seconds to wait for every process to join (default 300).
    #[arg(long, value_name = "SECONDS")]
    pub coordinator_join_timeout: Option<f64>,
    /// Seconds between heartbeats (default 1; process 0's applies).
    #[arg(long, value_name = "SECONDS")]
    pub coordinator_heartbeat_interval: Option<f64>,
    /// Seconds of silence after which a process is lost and the run fails (default 30;
    /// process 0's applies).
    #[arg(long, value_name = "SECONDS")]
    pub coordinator_heartbeat_timeout: Option<f64>,
    /// Seconds to wait for the other processes at a coordinated point: barriers, the resume
    /// decision, checkpoints (default 1800).
    #[arg(long, value_name = "SECONDS")]
    pub coordinator_wait_timeout: Option<f64>,
    /// Sequences per step over all devices (of all processes).
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub seq_len: Option<usize>,
    #[arg(long)]
    pub max_predictions: Option<usize>,
    /// Pack several short instances into each row (data.pack): --batch-size then counts packed
    /// rows.
    #[arg(long)]
    pub pack: bool,
    /// Instances per packed row (data.max_instances_per_row, default 3).
    #[arg(long, value_name = "K")]
    pub max_instances_per_row: Option<usize>,
    #[arg(long)]
    pub steps: Option<u64>,
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// The optimizer (train.optimizer, default adam_weight_decay).
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Compute precision (train.precision, default f32); fp8 takes train.fp8_amax_history and
    /// train.fp8_margin.
    #[arg(long, value_enum)]
    pub precision: Option<ComputeDtype>,
    /// Micro-batches per step (gradient accumulation).
    #[arg(long)]
    pub accumulation_steps: Option<u32>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub eval_interval: Option<u64>,
    /// Batches per evaluation (0: the whole eval set).
    #[arg(long)]
    pub eval_batches: Option<usize>,
    /// Where checkpoints go (default: <output-dir>/checkpoints); a gs:// or s3:// prefix
    /// keeps them in a bucket (each committed by a manifest written last).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    #[arg(long)]
    pub checkpoint_interval: Option<u64>,
    /// Checkpoints kept (the newest N).
    #[arg(long)]
    pub keep_last: Option<usize>,
    /// Never resume: start from scratch (refused when the checkpoint directory has checkpoints).
    #[arg(long)]
    pub no_resume: bool,
    /// Resume from the latest checkpoint when there is one (the default; overrides
    /// `checkpoint.resume = false` in the config). `tpu-run pod run` restarts with it.
    #[arg(long, conflicts_with = "no_resume")]
    pub resume: bool,
    /// Where metrics.jsonl, TensorBoard events and (by default) checkpoints go; a gs:// or
    /// s3:// prefix gets them uploaded at every checkpoint and at the end.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Write the train step's HloModuleProto bytes, as handed to the compiler, to FILE (the
    /// run goes on); `tpu-run compile --config` with the same config writes the same bytes.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["demo", "bench_steps", "data_only_ids"])]
    pub dump_program: Option<PathBuf>,
    /// For tests: run only the data path of a multi-process run, writing each step's example
    /// ids to this file (src/pretrain/data_only.rs).
    #[arg(long, hide = true, value_name = "FILE")]
    pub data_only_ids: Option<PathBuf>,
    /// With --data-only-ids: stop after this step and wait to be killed.
    #[arg(long, hide = true, value_name = "STEP", requires = "data_only_ids")]
    pub hang_after: Option<u64>,
    /// For measurements: run each step to its results before taking the next batch, without
    /// the overlapped input feed (src/pretrain/train_loop.rs), as a baseline.
    #[arg(long, hide = true, conflicts_with_all = ["demo", "bench_steps", "data_only_ids"])]
    pub lockstep: bool,
}

impl PretrainArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            preset: self.preset.clone(),
            model_config: self.model_config.clone(),
            train_data: self.data.clone(),
            eval_data: self.eval_data.clone(),
            synthetic_data: self.synthetic_data,
            skip_corrupt: self.skip_corrupt,
            backend: self.backend,
            plugin: self.plugin.clone(),
            num_devices: self.num_devices,
            attention: self.attention,
            coordinator: self.coordinator.clone(),
            num_processes: self.num_processes,
            process_id: self.process_id,
            coordinator_token_file: self.coordinator_token_file.clone(),
            coordinator_token_out: self.coordinator_token_out.clone(),
            coordinator_bind: self.coordinator_bind.clone(),
            coordinator_tls_cert: self.coordinator_tls_cert.clone(),
            coordinator_tls_key: self.coordinator_tls_key.clone(),
            coordinator_tls_ca: self.coordinator_tls_ca.clone(),
            coordinator_connect_timeout: self.coordinator_connect_timeout,
            coordinator_join_timeout: self.coordinator_join_timeout,
            coordinator_heartbeat_interval: self.coordinator_heartbeat_interval,
            coordinator_heartbeat_timeout: self.coordinator_heartbeat_timeout,
            coordinator_wait_timeout: self.coordinator_wait_timeout,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            max_predictions: self.max_predictions,
            pack: self.pack,
            max_instances_per_row: self.max_instances_per_row,
            steps: self.steps,
            warmup_steps: self.warmup_steps,
            learning_rate: self.learning_rate,
            optimizer: self.optimizer,
            precision: self.precision,
            accumulation_steps: self.accumulation_steps,
            seed: self.seed,
            eval_interval: self.eval_interval,
            eval_batches: self.eval_batches,
            checkpoint_dir: self.checkpoint_dir.clone(),
            checkpoint_interval: self.checkpoint_interval,
            keep_last: self.keep_last,
            no_resume: self.no_resume,
            resume: self.resume,
            output_dir: self.output_dir.clone(),
            log_every: self.log_every,
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialization (tests calling in twice) keeps the first; nothing to do then.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

pub fn run_cmd(a: &PretrainArgs) -> Result<()> {
    init_logging();
    if a.demo {
        let verdict = run_demo(&DemoOptions {
            overrides: a.overrides(),
            config: a.config.clone(),
            stop: Some(StopSignal::install()?),
        })?;
        if !verdict.learned {
            anyhow::bail!(
                "the demo did not learn: {} (a model that learned from context clears {}x the \
                 baseline, and {}x at [MASK] inputs)",
                verdict.line(),
                crate::pretrain::demo::MLM_MARGIN,
                crate::pretrain::demo::MASK_MARGIN
            );
        }
        return Ok(());
    }
    let file = match &a.config {
        Some(path) => Some((
            std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?,
            path,
        )),
        None => None,
    };
    let mut cfg = match &file {
        Some((text, path)) => PretrainConfig::from_toml_str(text, &path.display().to_string())?,
        None => PretrainConfig::default(),
    };
    let overrides = a.overrides();
    cfg.apply(&overrides);
    if a.bench_steps.is_none() {
        let flags = explicit_flags(file.as_ref().map(|(t, _)| t.as_str()), &overrides)?;
        let token_in_env = std::env::var_os(crate::coord::TOKEN_ENV).is_some();
        if let Some(p) = place_on_tpu_pod(&mut cfg, &flags, &PodEnv::from_process(), token_in_env)?
        {
            tracing::info!("{}", p.describe());
        }
    }
    if let Some(ids_out) = &a.data_only_ids {
        return run_data_only(
            &cfg,
            &DataOnlyOptions {
                ids_out: ids_out.clone(),
                hang_after: a.hang_after,
            },
        );
    }
    if let Some(n) = a.bench_steps {
        let r = bench(&cfg, n)?;
        println!("device:             {}", r.device);
        println!(
            "model:              {} (batch {}, seq {}, {})",
            cfg.model
                .config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| cfg.model.preset.clone()),
            r.batch_size,
            cfg.data.seq_len,
            cfg.train.precision.name()
        );
        println!("compile:            {:.2} s", r.compile_time.as_secs_f64());
        println!(
            "time to first step: {:.2} s",
            r.time_to_first_step.as_secs_f64()
        );
        println!(
            "median step:        {:.2} ms over {} steps ({:.1} seq/s)",
            r.median_step_s * 1e3,
            r.step_times.len(),
            r.seq_per_s
        );
        println!("{}", r.to_json(&cfg));
        return Ok(());
    }
    let s = run(
        &cfg,
        &RunOptions {
            stop_after: a.stop_after,
            print: true,
            stop: Some(StopSignal::install()?),
            dump_program: a.dump_program.clone(),
            lockstep: a.lockstep,
        },
    )?;
    s.print(cfg.train.batch_size);
    Ok(())
}

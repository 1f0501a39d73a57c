//! `tpu-run pretrain`: BERT pretraining from a TOML config with command-line overrides; `--demo`
//! for a complete small run with no input files; `--bench-steps N` for step timings.
use crate::pretrain::bench::bench;
use crate::pretrain::data_only::{run_data_only, DataOnlyOptions};
use crate::pretrain::demo::{run_demo, DemoOptions};
use crate::pretrain::interrupt::StopSignal;
use crate::pretrain::pod_setup::{explicit_flags, place_on_tpu_pod};
use crate::pretrain::{run, Overrides, PretrainConfig, RunOptions};
use crate::tpu_pod::PodEnv;
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
    /// The run settings the flags replace (each names its config key).
    #[command(flatten)]
    pub overrides: Overrides,
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
            overrides: a.overrides.clone(),
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
    let overrides = &a.overrides;
    cfg.apply(overrides);
    if a.bench_steps.is_none() {
        let flags = explicit_flags(file.as_ref().map(|(t, _)| t.as_str()), overrides)?;
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
        println!("startup:            {}", r.startup.describe());
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

//! `--bench-steps N`: the train step's speed on synthetic batches (no files, no checkpoints):
//! compile time, time to the first step's results, then the median of N step times.
//!
//! As in ../shared/bench/jax_bert.py, the batches live on the device before the clock starts
//! (two distinct random batches, alternated); only each step's dropout key (16 bytes) is
//! uploaded per step. On N devices the batches are split into the replicas' shards once, and
//! seq/s counts the global batch. The steps run on the training loop's session loop
//! ([`crate::bench::measure::pipelined_steps`]), launched one ahead of the read-back of their
//! loss, so the host never idles the device; a step's time is the interval between consecutive
//! results.
use super::batches::{field_literals, key_literal, synthetic_batch};
use super::config::PretrainConfig;
use super::run::{read_record, Session};
use crate::bench::measure::{
    device_description, device_peak_bytes, median, pipelined_steps, profile_steps, step_intervals,
    MeasureOptions, Measurement, ResidentBatches, Startup, XlaReport, PROFILE_STEPS,
};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct BenchResult {
    pub device: String,
    pub compile_time: Duration,
    /// From the start (building the program) to the first step's loss on the host.
    pub time_to_first_step: Duration,
    /// Seconds per step after the first (warm-up) steps.
    pub step_times: Vec<f64>,
    pub median_step_s: f64,
    pub seq_per_s: f64,
    /// The global batch, over `devices` data-parallel replicas.
    pub batch_size: usize,
    pub devices: usize,
    pub last_loss: f32,
    pub startup: Startup,
}

impl BenchResult {
    pub fn to_json(&self, cfg: &PretrainConfig) -> Value {
        json!({
            "bench": "tpu-run pretrain",
            "device": self.device,
            "preset": cfg.model.preset,
            "batch": self.batch_size,
            "devices": self.devices,
            "seq": cfg.data.seq_len,
            "precision": cfg.train.precision.name(),
            "compile_s": round(self.compile_time.as_secs_f64(), 2),
            "time_to_first_step_s": round(self.time_to_first_step.as_secs_f64(), 2),
            "median_step_ms": round(self.median_step_s * 1e3, 2),
            "seq_per_s": round(self.seq_per_s, 1),
            "steps_timed": self.step_times.len(),
            "loss": self.last_loss,
            "startup": self.startup.to_json(),
        })
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Warm-up steps not timed (after the first, which includes the first-run costs).
const WARMUP: u64 = 2;

/// Runs `steps` timed steps (after the warm-up) of the step `cfg` describes, on synthetic data.
pub fn bench(cfg: &PretrainConfig, steps: u64) -> Result<BenchResult> {
    let m = measure(
        cfg,
        &MeasureOptions {
            steps,
            warmup: WARMUP,
            profile: None,
        },
    )?;
    let median_step_s = median(&m.step_times_s);
    Ok(BenchResult {
        device: format!("{} ({}) x {}", m.platform, m.device_kind, m.devices),
        compile_time: Duration::from_secs_f64(m.compile_s),
        time_to_first_step: Duration::from_secs_f64(m.time_to_first_step_s),
        seq_per_s: if median_step_s > 0.0 {
            cfg.train.batch_size as f64 / median_step_s
        } else {
            0.0
        },
        median_step_s,
        step_times: m.step_times_s,
        batch_size: cfg.train.batch_size,
        devices: m.devices,
        last_loss: m.last_loss,
        startup: m.startup.unwrap_or_default(),
    })
}

/// One measured run of the step `cfg` describes on synthetic batches (see the module docs).
pub fn measure(cfg: &PretrainConfig, opts: &MeasureOptions) -> Result<Measurement> {
    if opts.steps == 0 {
        bail!("the benchmark needs at least 1 timed step");
    }
    let t_start = Instant::now();
    let mut cfg = cfg.clone();
    cfg.data.synthetic = true;
    cfg.validate()?;
    let session = Session::open(&cfg, |_| Ok(None))?;
    let Session {
        model,
        num_devices,
        layout,
        mut trainer,
        compile_time,
        build,
        mut startup,
        ..
    } = session;
    let (platform, platform_version, device_kind) = device_description(trainer.executable())?;
    let k = cfg.train.accumulation_steps as usize;
    let mut batches = Vec::new();
    for i in 0..2 {
        let b = synthetic_batch(
            cfg.train.batch_size,
            cfg.data.seq_len,
            cfg.data.max_predictions,
            model.vocab_size,
            cfg.train.seed + i,
        );
        batches.push(trainer.upload_shards(0, &field_literals(&b, k)?)?);
    }
    let total = 1 + opts.warmup + opts.steps;
    let seed = cfg.train.seed;
    let client = trainer.executable().client();
    let optimized = opts
        .profile
        .as_ref()
        .and_then(|_| trainer.executable().optimized_module().ok());
    let inputs = ResidentBatches {
        batches: &batches,
        per_step: &|step| Ok(vec![key_literal(seed, step, k)?]),
        loss_of: &|done, outs| Ok(read_record(&layout, done, outs)?.loss),
    };
    let t_steps = Instant::now();
    let (ready, last_loss) = pipelined_steps(&mut trainer, &inputs, 0..total)?;
    startup.first_step_s = ready
        .first()
        .map(|r| r.saturating_duration_since(t_steps).as_secs_f64());
    let time_to_first_step = ready.first().map(|r| r.saturating_duration_since(t_start));
    let profile = match &opts.profile {
        Some(dir) => Some(profile_steps(&client, optimized.as_deref(), dir, || {
            pipelined_steps(&mut trainer, &inputs, total..total + PROFILE_STEPS).map(drop)
        })?),
        None => None,
    };
    // After the steps: reading the optimized module back is the bench's, not the run's, time.
    let xla = XlaReport::of(trainer.executable());
    Ok(Measurement {
        platform,
        platform_version,
        device_kind,
        devices: num_devices,
        build,
        compile_s: compile_time.as_secs_f64(),
        xla,
        time_to_first_step_s: time_to_first_step.unwrap_or_default().as_secs_f64(),
        step_times_s: step_intervals(&ready, opts.warmup),
        device_peak_bytes: device_peak_bytes(trainer.devices()),
        last_loss,
        startup: Some(startup),
        profile,
    })
}

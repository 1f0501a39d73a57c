//! `--bench-steps N`: the train step's speed on synthetic batches (no files, no checkpoints):
//! compile time, time to the first step's results, then the median of N step times.
//!
//! As in ../shared/bench/jax_bert.py, the batches live on the device before the clock starts
//! (two distinct random batches, alternated); only each step's dropout key (16 bytes) is
//! uploaded per step. On N devices the batches are split into the replicas' shards once, and
//! seq/s counts the global batch. Steps are launched one ahead of the read-back of their loss, so the host
//! never idles the device; a step's time is the interval between consecutive results.
use super::batches::{field_literals, key_literal, synthetic_batch};
use super::config::PretrainConfig;
use super::run::{read_record, Session};
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
            "precision": cfg.train.precision,
            "compile_s": round(self.compile_time.as_secs_f64(), 2),
            "time_to_first_step_s": round(self.time_to_first_step.as_secs_f64(), 2),
            "median_step_ms": round(self.median_step_s * 1e3, 2),
            "seq_per_s": round(self.seq_per_s, 1),
            "steps_timed": self.step_times.len(),
            "loss": self.last_loss,
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
    if steps == 0 {
        bail!("--bench-steps must be at least 1");
    }
    let t_start = Instant::now();
    let mut cfg = cfg.clone();
    cfg.data.synthetic = true;
    cfg.validate()?;
    let session = Session::open(&cfg, |_| Ok(None))?;
    let Session {
        client,
        model,
        num_devices,
        layout,
        mut trainer,
        compile_time,
        ..
    } = session;
    let device_name = format!(
        "{} ({}) x {num_devices}",
        client.platform_name()?,
        trainer.device().kind()
    );
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
    let total = 1 + WARMUP + steps;
    let mut pending: Option<(u64, Vec<tpu::Buffer>)> = None;
    let mut ready_times: Vec<Instant> = Vec::new();
    let mut time_to_first_step = Duration::ZERO;
    let mut last_loss = f32::NAN;
    for step in 0..=total {
        let launched = if step < total {
            let fields = &batches[(step % 2) as usize];
            let key =
                trainer.upload_shards(fields.len(), &[key_literal(cfg.train.seed, step, k)?])?;
            Some((step, trainer.step_sharded(&[fields, &key])?))
        } else {
            None
        };
        if let Some((s, outs)) = pending.take() {
            let rec = read_record(&layout, s + 1, &outs)?;
            ready_times.push(Instant::now());
            if s == 0 {
                time_to_first_step = t_start.elapsed();
            }
            last_loss = rec.loss;
            if !rec.loss.is_finite() {
                bail!("bench step {}: the loss is {}", s + 1, rec.loss);
            }
        }
        pending = launched;
    }
    let step_times: Vec<f64> = ready_times
        .windows(2)
        .skip(WARMUP as usize)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let mut sorted = step_times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.is_empty() {
        0.0
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        0.5 * (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2])
    };
    Ok(BenchResult {
        device: device_name,
        compile_time,
        time_to_first_step,
        seq_per_s: if median > 0.0 {
            cfg.train.batch_size as f64 / median
        } else {
            0.0
        },
        median_step_s: median,
        step_times,
        batch_size: cfg.train.batch_size,
        devices: num_devices,
        last_loss,
    })
}

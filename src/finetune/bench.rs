//! `finetune squad --synthetic-bench`: the SQuAD train step's speed on random features (no
//! files, no checkpoints): compile time, then the median time of N steps after a warm-up.
//!
//! As the pretraining bench and ../shared/bench/torch_bert.py do, the batches live on the device
//! before the clock starts (two random batches, alternated); only each step's dropout key (16
//! bytes) is uploaded per step. The steps run on the training commands' session loop
//! ([`crate::bench::measure::pipelined_steps`]), launched one ahead of the read-back of their
//! loss, so the host never idles the device; a step's time is the interval between consecutive
//! results.
use super::batches::FeatureArrays;
use super::qa_head::squad_param_specs;
use super::squad_train::{layout_literals, train_program, Hyper};
use super::train_loop::{finetune_dropout, step_loss};
use crate::backend::compile_options_for;
use crate::bench::measure::{
    device_description, device_peak_bytes, median, pipelined_steps, profile_steps, step_intervals,
    MeasureOptions, Measurement, ResidentBatches, XlaReport, PROFILE_STEPS,
};
use crate::model::init::init_from_specs;
use crate::model::{AttentionKernel, BertConfig, Execution};
use crate::rng::SplitMix64;
use crate::train::lowered::lower;
use crate::train::Trainer;
use anyhow::{anyhow, bail, Context, Result};
use hlo::Literal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tpu::{Client, CompileOptions};

/// Steps run before timing starts (after the first, which carries first-run costs).
pub const WARMUP_STEPS: u64 = 3;

#[derive(Clone, Debug)]
pub struct BenchResult {
    pub device: String,
    pub compile_time: Duration,
    pub step_times: Vec<f64>,
    pub median_step_s: f64,
    pub seq_per_s: f64,
    pub last_loss: f32,
}

impl BenchResult {
    pub fn to_json(
        &self,
        model: &str,
        cfg: &BertConfig,
        exec: Execution,
        batch: usize,
        seq: usize,
    ) -> Value {
        let r = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
        json!({
            "bench": "tpu-run finetune squad --synthetic-bench",
            "device": self.device,
            "model": model,
            "layers": cfg.num_hidden_layers,
            "hidden": cfg.hidden_size,
            "batch": batch,
            "seq": seq,
            "precision": exec.compute.name(),
            "attention": match exec.attention {
                AttentionKernel::Graph => "graph",
                AttentionKernel::CudnnFused { .. } => "cudnn",
            },
            "compile_s": r(self.compile_time.as_secs_f64(), 2),
            "median_step_ms": r(self.median_step_s * 1e3, 2),
            "seq_per_s": r(self.seq_per_s, 1),
            "steps_timed": self.step_times.len(),
            "loss": self.last_loss,
        })
    }
}

/// `n` random features of `seq` tokens: `[CLS]` (id 101), a 16-token question, `[SEP]` (102),
/// the context, `[SEP]`; ids from the whole vocabulary above the special tokens; every position
/// real (as the PyTorch reference's all-ones mask); an answer span of 1-8 tokens in the context.
pub fn synthetic_features(n: usize, seq: usize, vocab: usize, seed: u64) -> Result<FeatureArrays> {
    let q = 16usize;
    if seq < q + 4 || vocab < 1100 {
        bail!(
            "synthetic features need seq >= {} and a vocabulary of at least 1100",
            q + 4
        );
    }
    let mut rng = SplitMix64::new(seed);
    let mut a = FeatureArrays {
        seq_len: seq,
        ..Default::default()
    };
    for _ in 0..n {
        let mut ids: Vec<i32> = (0..seq)
            .map(|_| 1000 + rng.below(vocab as u64 - 1000) as i32)
            .collect();
        ids[0] = 101;
        ids[q + 1] = 102;
        ids[seq - 1] = 102;
        a.input_ids.extend(ids);
        a.input_mask.extend(std::iter::repeat_n(1, seq));
        a.segment_ids.extend((0..seq).map(|i| i32::from(i > q + 1)));
        let ctx = (q + 2) as u64..(seq - 1) as u64;
        let start = ctx.start + rng.below(ctx.end - ctx.start);
        let end = (start + rng.below(8)).min(ctx.end - 1);
        a.start_positions.push(start as i32);
        a.end_positions.push(end as i32);
    }
    Ok(a)
}

/// Times `steps` steps of the SQuAD train step for `cfg` run as `exec` at `batch` x `seq` (see
/// the module docs).
pub fn bench(
    client: &Client,
    cfg: &BertConfig,
    exec: Execution,
    batch: usize,
    seq: usize,
    steps: u64,
    seed: u64,
) -> Result<BenchResult> {
    if steps == 0 {
        bail!("--max-steps must be at least 1 for the benchmark");
    }
    let opts = MeasureOptions {
        steps,
        warmup: WARMUP_STEPS,
        profile: None,
    };
    let m = measure(client, cfg, exec, batch, seq, &opts, seed)?;
    let median_step_s = median(&m.step_times_s);
    Ok(BenchResult {
        device: format!("{} ({})", m.platform, m.device_kind),
        compile_time: Duration::from_secs_f64(m.compile_s),
        seq_per_s: if median_step_s > 0.0 {
            batch as f64 / median_step_s
        } else {
            0.0
        },
        median_step_s,
        step_times: m.step_times_s,
        last_loss: m.last_loss,
    })
}

/// One measured run of the SQuAD train step on random features (see the module docs).
pub fn measure(
    client: &Client,
    cfg: &BertConfig,
    exec: Execution,
    batch: usize,
    seq: usize,
    opts: &MeasureOptions,
    seed: u64,
) -> Result<Measurement> {
    if opts.steps == 0 {
        bail!("the benchmark needs at least 1 timed step");
    }
    let t_start = Instant::now();
    let total = 1 + opts.warmup + opts.steps;
    let hyper = Hyper {
        learning_rate: 3e-5,
        warmup_steps: total / 10,
        total_steps: total,
        weight_decay: 0.01,
        clip_norm: Some(1.0),
    };
    let step = hyper.step_config_for_model(cfg, exec, 1);
    let program = train_program(cfg, exec, batch, seq, &step)?;
    let (proto, build) = lower(&program.module, t_start)?;
    let t0 = Instant::now();
    let exe = client
        .compile(
            &proto,
            &compile_options_for(exec, CompileOptions::default()),
        )
        .context("compiling the SQuAD train step")?;
    let compile_s = t0.elapsed().as_secs_f64();
    let (platform, platform_version, device_kind) = device_description(&exe)?;
    let xla = XlaReport::of(&exe);
    let device = client
        .addressable_devices()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the backend has no device"))?;
    let layout = program.layout;
    let init = init_from_specs(&squad_param_specs(cfg), cfg.initializer_range, seed);
    let params = layout_literals(&layout, &init)?;
    let mut trainer = Trainer::from_state(
        exe,
        layout.clone(),
        device,
        &params,
        &layout.initial_opt_state()?,
        0,
    )?;
    drop(params);
    let mut batches = vec![];
    for i in 0..2 {
        let f = synthetic_features(batch, seq, cfg.vocab_size, seed.wrapping_add(i))?;
        let rows: Vec<usize> = (0..batch).collect();
        batches.push(trainer.upload_shards(0, &f.train_literals(&rows)?)?);
    }
    let optimized = opts
        .profile
        .as_ref()
        .and_then(|_| trainer.executable().optimized_module().ok());
    let inputs = ResidentBatches {
        batches: &batches,
        per_step: &|step| {
            Ok(vec![Literal::from_slice(
                &finetune_dropout(seed).key(step),
                &[2],
            )?])
        },
        loss_of: &|done, outs| step_loss(outs).with_context(|| format!("step {done}")),
    };
    let (ready, last_loss) = pipelined_steps(&mut trainer, &inputs, 0..total)?;
    let first_ready = ready.first().map(|r| r.saturating_duration_since(t_start));
    let profile = match &opts.profile {
        Some(dir) => Some(profile_steps(client, optimized.as_deref(), dir, || {
            pipelined_steps(&mut trainer, &inputs, total..total + PROFILE_STEPS).map(drop)
        })?),
        None => None,
    };
    Ok(Measurement {
        startup: None,
        platform,
        platform_version,
        device_kind,
        devices: 1,
        build,
        compile_s,
        xla,
        time_to_first_step_s: first_ready.unwrap_or_default().as_secs_f64(),
        step_times_s: step_intervals(&ready, opts.warmup),
        device_peak_bytes: device_peak_bytes(trainer.devices()),
        last_loss,
        profile,
    })
}

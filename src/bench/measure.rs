//! One measured run of a train step: what building, compiling and running it cost, and what
//! XLA reports about the compiled program. The pretraining and SQuAD benches fill it in
//! (src/pretrain/bench.rs, src/finetune/bench.rs); `tpu-run bench` repeats and reports it.
use super::optimized::OptimizedStats;
use crate::profile::ProfileReport;
use crate::train::lowered::BuildStats;
use crate::train::session::{run_steps, SessionSteps, Staged};
pub use crate::train::startup::Startup;
use crate::train::{ShardedBatch, Trainer};
use anyhow::{anyhow, bail, Result};
use hlo::Literal;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tpu::{Buffer, Client, CompiledMemoryStats, Device, Executable, Value};

/// How many steps to time, after how many untimed ones.
#[derive(Clone, Debug)]
pub struct MeasureOptions {
    /// Timed steps.
    pub steps: u64,
    /// Steps after the first (which carries first-run costs) that are not timed.
    pub warmup: u64,
    /// Capture a device trace of [`PROFILE_STEPS`] more steps into this directory.
    pub profile: Option<PathBuf>,
}

/// Steps run under the profiler after the timed ones: enough to see a steady step between
/// its neighbours, few enough to keep the trace small.
pub const PROFILE_STEPS: u64 = 3;

/// What `--profile` gave.
#[derive(Clone, Debug)]
pub enum ProfileOutcome {
    Captured(ProfileReport),
    /// The plugin has no profiler extension (the reason, naming the plugin).
    NotOffered(String),
}

/// Runs `steps` under `client`'s profiler, writing the trace into `dir` (see
/// [`crate::profile::capture`]); a plugin without a profiler extension is an outcome, not an
/// error.
pub fn profile_steps(
    client: &Client,
    optimized_module: Option<&[u8]>,
    dir: &Path,
    steps: impl FnOnce() -> Result<()>,
) -> Result<ProfileOutcome> {
    Ok(
        match crate::profile::capture(client, optimized_module, dir, steps)? {
            Some(report) => ProfileOutcome::Captured(report),
            None => ProfileOutcome::NotOffered(format!(
                "the plugin {} offers no profiler extension, so no device trace was taken",
                client.plugin().path().display()
            )),
        },
    )
}

/// What XLA reports about a compiled program; each part `None` where the plugin does not
/// offer it (with the reason in `notes`).
#[derive(Clone, Debug, Default)]
pub struct XlaReport {
    pub optimized: Option<OptimizedStats>,
    /// Cost analysis: FLOPs and bytes accessed of one execution.
    pub flops: Option<f64>,
    pub bytes_accessed: Option<f64>,
    pub memory: Option<CompiledMemoryStats>,
    pub notes: Vec<String>,
}

impl XlaReport {
    /// Reads the optimized module, cost analysis and memory statistics of `exe`.
    pub fn of(exe: &Executable) -> Self {
        let mut r = XlaReport::default();
        match exe
            .optimized_module()
            .map_err(anyhow::Error::from)
            .and_then(|b| OptimizedStats::from_module_bytes(&b))
        {
            Ok(s) => r.optimized = Some(s),
            Err(e) => r.notes.push(format!("optimized module: {e:#}")),
        }
        match exe.cost_analysis() {
            Ok(Some(props)) => {
                r.flops = cost_value(&props, "flops");
                r.bytes_accessed = cost_value(&props, "bytes accessed");
            }
            Ok(None) => r
                .notes
                .push("cost analysis: not offered by the plugin".into()),
            Err(e) => r.notes.push(format!("cost analysis: {e}")),
        }
        match exe.memory_stats() {
            Ok(m) => r.memory = m,
            Err(e) => r.notes.push(format!("compiled memory stats: {e}")),
        }
        r
    }
}

/// A number of XLA's cost analysis by property name ("flops", "bytes accessed").
pub fn cost_value(props: &[(String, Value)], name: &str) -> Option<f64> {
    props
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| match v {
            Value::Float(f) => Some(f64::from(*f)),
            Value::Int64(i) => Some(*i as f64),
            _ => None,
        })
}

/// One run: build, compile, first step, timed steps.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// The plugin's platform ("cpu", "cuda", "tpu") and version string.
    pub platform: String,
    pub platform_version: String,
    /// The first device's kind, e.g. "NVIDIA H100 80GB HBM3".
    pub device_kind: String,
    /// Data-parallel replicas the step ran on.
    pub devices: usize,
    pub build: BuildStats,
    pub compile_s: f64,
    pub xla: XlaReport,
    /// From the start of the build to the first step's loss on the host.
    pub time_to_first_step_s: f64,
    /// Seconds of each timed step.
    pub step_times_s: Vec<f64>,
    /// The devices' peak memory in use at the end (the largest over devices), where the plugin
    /// reports it.
    pub device_peak_bytes: Option<i64>,
    pub last_loss: f32,
    /// Where the time before the first step went, where the command measures it.
    pub startup: Option<Startup>,
    /// The device trace, when `MeasureOptions::profile` asked for one.
    pub profile: Option<ProfileOutcome>,
}

/// The benches' inputs: batches that stay on the device (alternated, so consecutive steps see
/// different data) and, per step, the small inputs uploaded for it (its dropout key), placed
/// after the batch's.
pub struct ResidentBatches<'a> {
    pub batches: &'a [ShardedBatch],
    pub per_step: &'a dyn Fn(u64) -> Result<Vec<Literal>>,
    /// How the outputs of the step that made `done` updates give its loss.
    pub loss_of: &'a dyn Fn(u64, &[Buffer]) -> Result<f32>,
}

/// Runs steps `steps` of `trainer` on `inputs` through the training commands' session loop
/// ([`crate::train::session`]): each launched before the loss of the one before is read back,
/// so the host never leaves the device idle. Returns when each step's loss reached the host,
/// and the last loss. A non-finite loss stops the run: timings of a diverged step mean
/// nothing.
pub fn pipelined_steps(
    trainer: &mut Trainer,
    inputs: &ResidentBatches,
    steps: std::ops::Range<u64>,
) -> Result<(Vec<Instant>, f32)> {
    if inputs.batches.is_empty() {
        bail!("the bench has no batches on the device");
    }
    let mut run = BenchSteps {
        trainer,
        inputs,
        ready: Vec::with_capacity((steps.end - steps.start) as usize),
        last_loss: f32::NAN,
    };
    run_steps(&mut run, steps.start, steps.end, false)?;
    Ok((run.ready, run.last_loss))
}

/// [`pipelined_steps`]' side of the session loop.
struct BenchSteps<'t, 'a> {
    trainer: &'t mut Trainer,
    inputs: &'a ResidentBatches<'a>,
    ready: Vec<Instant>,
    last_loss: f32,
}

impl SessionSteps for BenchSteps<'_, '_> {
    /// The step's index, for its resident batch.
    type Meta = u64;

    fn trainer(&mut self) -> &mut Trainer {
        self.trainer
    }

    fn stage(&mut self, step: u64) -> Result<Staged<u64>> {
        let batch = &self.inputs.batches[(step % self.inputs.batches.len() as u64) as usize];
        let own = (self.inputs.per_step)(step)?;
        Ok(Staged {
            batch: self.trainer.upload_shards(batch.len(), &own)?,
            meta: step,
        })
    }

    fn launch(&mut self, staged: &Staged<u64>) -> Result<Vec<Buffer>> {
        let batches = self.inputs.batches;
        let resident = &batches[(staged.meta % batches.len() as u64) as usize];
        self.trainer.step_sharded(&[resident, &staged.batch])
    }

    fn finish(&mut self, done: u64, outputs: &[Buffer], _: &u64) -> Result<()> {
        let loss = (self.inputs.loss_of)(done, outputs)?;
        self.ready.push(Instant::now());
        if !loss.is_finite() {
            bail!("bench step {done}: the loss is {loss}");
        }
        self.last_loss = loss;
        Ok(())
    }

    fn hooks_due(&self, _: u64) -> bool {
        false
    }

    fn after(&mut self, _: u64, _: &u64, _: bool, _: Option<&'static str>) -> Result<()> {
        Ok(())
    }
}

/// The timed steps' seconds: intervals between consecutive results after the first result and
/// `warmup` more.
pub fn step_intervals(ready: &[Instant], warmup: u64) -> Vec<f64> {
    ready
        .windows(2)
        .skip(warmup as usize)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

/// The largest peak memory in use over `devices`, where reported.
pub fn device_peak_bytes(devices: &[Device]) -> Option<i64> {
    devices
        .iter()
        .filter_map(|d| d.memory_stats().ok().flatten())
        .filter_map(|m| m.peak_bytes_in_use)
        .max()
}

/// "platform", "platform version" and the first device's kind of `exe`'s client.
pub fn device_description(exe: &Executable) -> Result<(String, String, String)> {
    let client = exe.client();
    let kind = exe
        .addressable_devices()
        .first()
        .map(|d| d.kind().to_string())
        .ok_or_else(|| anyhow!("the executable has no device"))?;
    Ok((client.platform_name()?, client.platform_version()?, kind))
}

/// The median of `xs` (0 for none).
pub fn median(xs: &[f64]) -> f64 {
    super::stats::quantile(xs, 0.5).unwrap_or(0.0)
}

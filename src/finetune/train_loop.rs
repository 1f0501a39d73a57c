//! The fine-tuning train loop shared by every task (SQuAD, GLUE): one donated train step per
//! batch (the task's encoder + head loss, autodiff, global-norm clipping, the original BERT
//! schedule (warmup, then linear decay to 0) and AdamWeightDecay), data parallel over the
//! step's replicas, fed batches of feature rows in a seeded order, with a progress bar and
//! checkpoints through [`crate::ckpt`].
//!
//! The steps run on [`crate::train::session`]'s pipelined loop, as pretraining's do: the next
//! batch is prepared and uploaded and the previous step's loss read back while the device works
//! on a step; checkpoints run between steps on the state after the one they name.
use super::progress::Console;
use crate::backend::compile_options_for;
use crate::ckpt::{OptimizerInfo, RngState, Spec, State, Store};
use crate::model::fp8::fp8_setup;
use crate::model::{BertConfig, Execution, ParamSet};
use crate::rng::{domain, DropoutKeys};
use crate::train::session::{run_steps, SessionSteps, Staged};
use crate::train::{
    AdamWeightDecay, DelayedScaling, ParamSpec, Schedule, StepConfig, StepLayout, TrainProgram,
    Trainer, WeightDecay,
};
use anyhow::{anyhow, bail, Context, Result};
use hlo::Literal;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tpu::{Buffer, Client};

/// The batch input carrying the step's dropout key (`u64[2]`: stream word, counter; each
/// data-parallel replica folds its id in).
pub const RNG_KEY: &str = "rng_key";

/// The dropout keys of a fine-tuning run.
pub fn finetune_dropout(seed: u64) -> DropoutKeys {
    DropoutKeys::new(domain::FINETUNE_DROPOUT, seed)
}

/// A model's parameters as the step builder takes them (f32 master weights).
pub fn step_param_specs(specs: &[crate::model::ParamSpec]) -> Vec<ParamSpec> {
    specs
        .iter()
        .map(|s| {
            let dims: Vec<i64> = s.dims.iter().map(|&d| d as i64).collect();
            ParamSpec::new(s.name.clone(), &dims)
        })
        .collect()
}

/// The optimization settings of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Hyper {
    pub learning_rate: f64,
    pub warmup_steps: u64,
    /// The schedule decays to 0 at this step.
    pub total_steps: u64,
    pub weight_decay: f64,
    /// Global-norm clipping threshold (run_squad: 1.0).
    pub clip_norm: Option<f64>,
}

impl Hyper {
    /// AdamWeightDecay (b1 0.9, b2 0.999, eps 1e-6, no decay of LayerNorm and biases) with the
    /// original BERT schedule, and the default f32 policy; [`Self::step_config_for_model`]
    /// takes the policy from the run's execution.
    pub fn step_config(&self) -> StepConfig {
        StepConfig::new(
            AdamWeightDecay {
                weight_decay: WeightDecay::bert(self.weight_decay),
                ..Default::default()
            },
            Schedule::bert(self.learning_rate, self.warmup_steps, self.total_steps),
        )
        .with_clip_norm(self.clip_norm)
    }

    /// [`Self::step_config`] for a step data parallel over `replicas` devices.
    pub fn step_config_for(&self, replicas: u32) -> StepConfig {
        self.step_config().with_replicas(replicas)
    }

    /// [`Self::step_config_for`] for the model `cfg` run as `exec`: the precision policy of
    /// `exec` ([`Execution::step_policy`]) and, under fp8, the FP8 scaling state of its FP8
    /// matmuls (Transformer Engine's recipe with its defaults here: a 16-step amax history, no
    /// margin).
    pub fn step_config_for_model(
        &self,
        cfg: &BertConfig,
        exec: Execution,
        replicas: u32,
    ) -> StepConfig {
        self.step_config_for(replicas)
            .with_policy(exec.step_policy())
            .with_fp8(fp8_setup(cfg, exec, &DelayedScaling::default()))
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "weight_decay": self.weight_decay,
            "clip_norm": self.clip_norm,
            "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-6,
        })
    }
}

/// The parameters of `set` in the step's order, as literals.
pub fn layout_literals(layout: &StepLayout, set: &ParamSet) -> Result<Vec<Literal>> {
    layout
        .params
        .iter()
        .map(|p| {
            let t = set
                .get(&p.name)
                .ok_or_else(|| anyhow!("the initial weights have no parameter '{}'", p.name))?;
            Literal::from_slice(&t.data, &p.shape.dims)
                .with_context(|| format!("parameter '{}'", p.name))
        })
        .collect()
}

/// The step's batch inputs of some feature rows.
pub type RowInputs<'a> = dyn Fn(&[usize]) -> Result<Vec<Literal>> + 'a;

/// What a task gives the loop: its compiled-to-be step and the batch inputs of feature rows.
pub struct TrainTask<'a> {
    /// Recorded in checkpoints (`"squad"`, `"glue/mrpc"`).
    pub name: &'a str,
    pub program: TrainProgram,
    /// How `program` was built: the loop compiles it with the kernel's options and records
    /// the precision in checkpoints.
    pub exec: Execution,
    /// The step's batch inputs for the feature rows of one batch, for the whole batch (split
    /// across the replicas by the loop), every input but the trailing [`RNG_KEY`].
    pub batch_inputs: Box<RowInputs<'a>>,
}

/// Rows of a `batch` on each of `replicas` data-parallel devices.
pub fn rows_per_replica(batch: usize, replicas: u32) -> Result<usize> {
    let r = replicas as usize;
    if r == 0 || batch == 0 || !batch.is_multiple_of(r) {
        bail!(
            "--batch-size {batch} must be a positive multiple of the {replicas} device(s) the \
             step runs on (pass --num-devices to use fewer)"
        );
    }
    Ok(batch / r)
}

/// How to run the loop.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub batch_size: usize,
    /// The feature rows of every step (see [`super::batches::batch_rows`]).
    pub batches: Vec<Vec<usize>>,
    pub seed: u64,
    pub hyper: Hyper,
    /// A log line every this many steps when no progress bar is drawn (0: none).
    pub log_every: u64,
    pub progress: bool,
    /// Where checkpoints go (`None`: none are written).
    pub checkpoint_dir: Option<PathBuf>,
    /// A checkpoint every this many steps besides the last (0: only the last).
    pub checkpoint_every: u64,
}

/// What the loop did.
pub struct TrainResult {
    /// The trained parameters, in the step's order, with their names.
    pub params: Vec<(String, Literal)>,
    /// The loss of every step.
    pub losses: Vec<f32>,
    pub compile_time: Duration,
    /// From the first step's launch to the last step's results (checkpoint writing excluded).
    pub train_time: Duration,
    /// Sequences per second over the steps after the first (which carries first-run costs).
    pub seq_per_s: f64,
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_time: Duration,
}

/// The loss a fine-tuning step returned: its first output.
pub(crate) fn step_loss(outputs: &[Buffer]) -> Result<f32> {
    let loss = outputs
        .first()
        .ok_or_else(|| anyhow!("the step returned no outputs"))?;
    read_scalar(loss, "loss")
}

fn read_scalar(b: &Buffer, what: &str) -> Result<f32> {
    b.to_host::<f32>()?
        .first()
        .copied()
        .ok_or_else(|| anyhow!("the step's {what} output is empty"))
}

/// Trains `task`'s model of `cfg` from `init` (see the module docs). The step runs on as many
/// of the client's devices as its layout has replicas.
pub fn train(
    client: &Client,
    cfg: &BertConfig,
    init: &ParamSet,
    task: TrainTask,
    opts: &TrainOptions,
    console: &mut Console,
) -> Result<TrainResult> {
    let steps = opts.batches.len() as u64;
    if steps == 0 {
        bail!("no training steps to run");
    }
    let TrainTask {
        name,
        program,
        exec,
        batch_inputs,
    } = task;
    let layout = program.layout;
    let available = client.addressable_devices()?.len();
    if available < layout.replicas as usize {
        bail!(
            "the train step runs data parallel on {} devices; the backend has {available}",
            layout.replicas
        );
    }
    let t0 = Instant::now();
    let exe = client
        .compile_module(
            &program.module,
            &compile_options_for(exec, layout.compile_options()),
        )
        .with_context(|| format!("compiling the {name} train step"))?;
    let compile_time = t0.elapsed();
    console.say(&format!(
        "train step compiled in {:.1}s",
        compile_time.as_secs_f64()
    ));
    let devices = exe.addressable_devices().to_vec();
    let params = layout_literals(&layout, init)?;
    let trainer = Trainer::on_devices(
        exe,
        layout.clone(),
        devices,
        &params,
        &layout.initial_opt_state()?,
        0,
    )?;
    drop(params);
    let store = opts.checkpoint_dir.as_ref().map(Store::new);
    if let Some(store) = &store {
        store.check_step_names_free()?;
    }
    console.start_bar(steps, opts.progress);
    let lr_index = layout
        .metric_names
        .iter()
        .position(|n| n == "learning_rate");
    let mut run = Steps {
        trainer,
        spec: Spec::from_layout(&layout),
        cfg,
        exec,
        opts,
        name,
        batch_inputs,
        store,
        console,
        meter: Meter {
            steps,
            batch_size: opts.batch_size,
            log_every: opts.log_every,
            lr_index,
            losses: Vec::with_capacity(steps as usize),
            clock_start: None,
            paused: Duration::ZERO,
        },
        checkpoint: None,
        checkpoint_time: Duration::ZERO,
    };
    let start = Instant::now();
    run_steps(&mut run, 0, steps, false)?;
    let train_time = start.elapsed().saturating_sub(run.checkpoint_time);
    run.console.finish_bar();
    let names = layout.params.iter().map(|p| p.name.clone());
    Ok(TrainResult {
        params: names.zip(run.trainer.params()?).collect(),
        seq_per_s: run.meter.seq_per_s(steps),
        losses: run.meter.losses,
        compile_time,
        train_time,
        checkpoint: run.checkpoint,
        checkpoint_time: run.checkpoint_time,
    })
}

/// The loop's side of [`run_steps`]: the task's batches, the meter and the checkpoints.
struct Steps<'a, 'c> {
    trainer: Trainer,
    spec: Spec,
    cfg: &'a BertConfig,
    exec: Execution,
    opts: &'a TrainOptions,
    name: &'a str,
    batch_inputs: Box<RowInputs<'a>>,
    store: Option<Store>,
    console: &'c mut Console,
    meter: Meter,
    checkpoint: Option<PathBuf>,
    checkpoint_time: Duration,
}

impl SessionSteps for Steps<'_, '_> {
    type Meta = ();

    fn trainer(&mut self) -> &mut Trainer {
        &mut self.trainer
    }

    fn stage(&mut self, step: u64) -> Result<Staged<()>> {
        let rows = &self.opts.batches[step as usize];
        let mut lits = (self.batch_inputs)(rows)?;
        lits.push(Literal::from_slice(
            &finetune_dropout(self.opts.seed).key(step),
            &[2],
        )?);
        Ok(Staged {
            batch: self.trainer.upload_shards(0, &lits)?,
            meta: (),
        })
    }

    fn finish(&mut self, done: u64, outputs: &[Buffer], _: &()) -> Result<()> {
        self.meter.finish(done, outputs, self.console)
    }

    fn hooks_due(&self, done: u64) -> bool {
        let every = self.opts.checkpoint_every;
        self.store.is_some() && every > 0 && done.is_multiple_of(every)
    }

    /// A checkpoint when one is due, and at the end (its time is not training time).
    fn after(&mut self, done: u64, _: &(), _: bool, _: Option<&'static str>) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let t = Instant::now();
        let state = capture(
            &self.trainer,
            &self.spec,
            self.cfg,
            self.exec,
            self.opts,
            self.name,
            done,
        )?;
        let path = save(store, &state)?;
        self.console.say(&format!("checkpoint {}", path.display()));
        self.checkpoint = Some(path);
        self.checkpoint_time += t.elapsed();
        self.meter.paused += t.elapsed();
        Ok(())
    }
}

/// Reads finished steps: losses, the progress bar, log lines, the throughput.
struct Meter {
    steps: u64,
    batch_size: usize,
    log_every: u64,
    lr_index: Option<usize>,
    losses: Vec<f32>,
    /// When the first step's results were read: the clock of the steady-state throughput,
    /// which leaves out that step's first-run costs. A figure shown mid-run (results are read
    /// one step late) errs low; the final one is exact.
    clock_start: Option<Instant>,
    /// Time spent writing checkpoints after the clock started, not counted as training.
    paused: Duration,
}

impl Meter {
    fn finish(&mut self, n: u64, outputs: &[Buffer], console: &Console) -> Result<()> {
        let loss = step_loss(outputs)?;
        if !loss.is_finite() {
            bail!("step {n}: the loss is {loss} (diverged); lower --learning-rate");
        }
        self.losses.push(loss);
        if n == 1 {
            self.clock_start = Some(Instant::now());
        }
        let seq_per_s = self.seq_per_s(n);
        let lr = match self.lr_index {
            Some(i) => read_scalar(&outputs[1 + i], "learning_rate")?,
            None => 0.0,
        };
        console.set_step(n, loss, lr, seq_per_s);
        let log_due = self.log_every > 0 && (n.is_multiple_of(self.log_every) || n == self.steps);
        if log_due && !console.bar_visible() {
            console.say(&format!(
                "step {n}/{}: loss {loss:.4} lr {lr:.3e} {seq_per_s:.1} seq/s",
                self.steps
            ));
        }
        Ok(())
    }

    /// Sequences per second over steps 2..=n (the first carries first-run costs).
    fn seq_per_s(&self, n: u64) -> f64 {
        let Some(start) = self.clock_start else {
            return 0.0;
        };
        let secs = start.elapsed().saturating_sub(self.paused).as_secs_f64();
        if n > 1 && secs > 0.0 {
            (n - 1) as f64 * self.batch_size as f64 / secs
        } else {
            0.0
        }
    }
}

/// The trainer's state after `step` updates, with what a later run needs to know about it.
fn capture(
    trainer: &Trainer,
    spec: &Spec,
    cfg: &BertConfig,
    exec: Execution,
    opts: &TrainOptions,
    task: &str,
    step: u64,
) -> Result<State> {
    let mut state = State::from_parts(step, spec, trainer.params()?, trainer.opt_state()?)?;
    state.model_config = serde_json::to_value(cfg)?;
    state.optimizer = OptimizerInfo {
        name: "adam_weight_decay".into(),
        hyperparameters: opts.hyper.to_json(),
    };
    state.rng = RngState {
        dropout_key: finetune_dropout(opts.seed).key(step).to_vec(),
        host_seed: Some(opts.seed),
        host_state: vec![],
    };
    state.data_position = json!({ "batches_done": step });
    state.extra = json!({
        "task": task,
        // Informational (the model config is the architecture alone): what the step computed in.
        "precision": exec.compute.name(),
        "replicas": trainer.replicas(),
        "batch_size": opts.batch_size,
        "steps": opts.batches.len(),
    });
    Ok(state)
}

fn save(store: &Store, state: &State) -> Result<PathBuf> {
    Ok(store
        .save(state)
        .with_context(|| format!("saving the checkpoint of step {}", state.step))?
        .path()
        .to_path_buf())
}

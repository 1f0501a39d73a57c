//! The step loop every training command drives (pretraining, `finetune squad`, `finetune glue`):
//! steps launched back to back so the device never waits for the host, with the run's own
//! work plugged in through [`SessionSteps`].
//!
//! Step N is launched, the inputs of step N+1 are staged (prepared and uploaded) while it runs,
//! and only then are step N-1's results read back, one step late. What must see the state after
//! step N (an evaluation, a checkpoint, a stop by signal, the end: [`SessionSteps::hooks_due`])
//! runs before step N+1 is launched: step N's results are read first, so results keep their
//! order and a diverged step never reaches a hook. The first step's results are read at once
//! (the time to the first step). With `lockstep` each step runs to its results before the next
//! batch is staged: the reference the pipelined loop must match bit for bit.
use super::{ShardedBatch, Trainer};
use anyhow::{Context, Result};
use tpu::Buffer;

/// A step's inputs on the device and what the run keeps of them until after the step.
pub struct Staged<M> {
    pub batch: ShardedBatch,
    pub meta: M,
}

/// What a run plugs into [`run_steps`].
pub trait SessionSteps {
    /// What a step carries from its staging to its results and hooks (examples in the batch,
    /// the data position after it, ...).
    type Meta;

    fn trainer(&mut self) -> &mut Trainer;

    /// Runs before each step is launched (a multi-process run checks its peers here).
    fn before_step(&mut self, _step: u64) -> Result<()> {
        Ok(())
    }

    /// Prepares and uploads the inputs of step `step` (0-based). The upload may still be in
    /// flight on return, while the device works on the step before.
    fn stage(&mut self, step: u64) -> Result<Staged<Self::Meta>>;

    /// Launches a staged step (without waiting for it): the staged batch is the step's whole
    /// input unless a run adds inputs that stay on the device (the benches' resident batches).
    fn launch(&mut self, staged: &Staged<Self::Meta>) -> Result<Vec<Buffer>> {
        self.trainer().step_sharded(&[&staged.batch])
    }

    /// Reads the results of the step that made `done` updates (waiting for them): loss checks,
    /// metrics, progress.
    fn finish(&mut self, done: u64, outputs: &[Buffer], meta: &Self::Meta) -> Result<()>;

    /// A stop asked for from outside (a signal's name); checked after each launch.
    fn stop_requested(&self) -> Option<&'static str> {
        None
    }

    /// Whether [`Self::after`] runs after step `done` (it always runs after the last step: the
    /// run's final one, or the one a stop request ended the run at).
    fn hooks_due(&self, done: u64) -> bool;

    /// The hooks after step `done` (its results already read), on the trainer's state after it;
    /// `last`: the run ends after it (its final step, or `stop` asked for).
    fn after(
        &mut self,
        done: u64,
        meta: &Self::Meta,
        last: bool,
        stop: Option<&'static str>,
    ) -> Result<()>;
}

/// A launched step whose results are not read yet; its inputs live until they are.
struct Launched<M> {
    done: u64,
    outputs: Vec<Buffer>,
    meta: M,
    _inputs: ShardedBatch,
}

/// Runs steps `start..end` of `run` (see the module docs).
pub fn run_steps<S: SessionSteps>(run: &mut S, start: u64, end: u64, lockstep: bool) -> Result<()> {
    let mut next: Option<Result<Staged<S::Meta>>> = None;
    let mut pending: Option<Launched<S::Meta>> = None;
    for step in start..end {
        run.before_step(step)?;
        let staged = match next.take() {
            Some(s) => s?,
            None => run.stage(step)?,
        };
        let done = step + 1;
        let outputs = run
            .launch(&staged)
            .with_context(|| format!("step {done}"))?;
        let launched = Launched {
            done,
            outputs,
            meta: staged.meta,
            _inputs: staged.batch,
        };
        if !lockstep && done < end {
            // An error here is the next step's: it surfaces there, after this step's hooks.
            next = Some(run.stage(done));
        }
        if let Some(p) = pending.take() {
            run.finish(p.done, &p.outputs, &p.meta)?;
        }
        let stop = run.stop_requested();
        let last = done == end || stop.is_some();
        let hooks = last || run.hooks_due(done);
        if lockstep || done == start + 1 || hooks {
            run.finish(done, &launched.outputs, &launched.meta)?;
            if hooks {
                run.after(done, &launched.meta, last, stop)?;
            }
        } else {
            pending = Some(launched);
        }
    }
    Ok(())
}

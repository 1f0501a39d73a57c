//! The training loop's input feed: a host thread takes each step's batch from the data source
//! (the reader of files, the coordinator's work units, or synthetic batches), builds the step's
//! inputs (the fields and the step's dropout key), splits them into the replicas' shards and
//! hands them to the loop through a bounded channel, up to [`FEED_DEPTH`] steps ahead. Behind
//! it the readers' own prefetch threads decode and batch records; what is left to the loop is
//! the upload.
//!
//! Each step's inputs carry the data position after their batch: the feed reads ahead of the
//! loop, so the readers' own positions are past the step a checkpoint records.
use super::source::{DataPosition, Source};
use crate::train::{split_inputs, HostShards, StepLayout};
use anyhow::{anyhow, Context, Result};
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::{Duration, Instant};

/// Steps whose inputs wait ready in the channel: one for the loop to upload while the device
/// runs the current step, one more to absorb a slow batch.
pub const FEED_DEPTH: usize = 2;

/// One step's inputs, ready to upload.
pub struct FedStep {
    pub step: u64,
    pub inputs: HostShards,
    /// This process's pretraining instances in the batch (padding excluded).
    pub examples: u64,
    /// This process's real (non-padding) tokens and all token slots of the batch.
    pub real_tokens: u64,
    pub token_slots: u64,
    pub position: DataPosition,
    /// Damaged records the reader had skipped when it handed this batch out.
    pub skipped_records: u64,
}

/// What the feed needs to turn a batch into a step's inputs.
pub struct FeedPlan {
    /// The steps to feed, in order (0-based: the batch of step s is the (s+1)-th update's).
    pub steps: Range<u64>,
    pub layout: StepLayout,
    /// This process's replicas (the shards each input splits into).
    pub replicas: usize,
    /// Micro-batches per step (gradient accumulation).
    pub micro_batches: usize,
    /// The run's seed, from which each step's dropout key derives.
    pub seed: u64,
}

/// The loop's end of the feed.
pub struct Feed {
    rx: Receiver<Result<FedStep>>,
}

impl Feed {
    /// Starts the feed thread over `source` for the steps of `plan`. The thread ends after the
    /// last step, at the first error (which the loop receives in that step's place), or when
    /// the loop drops its end.
    pub fn start(mut source: Source, plan: FeedPlan) -> Result<Feed> {
        let (tx, rx) = sync_channel::<Result<FedStep>>(FEED_DEPTH);
        std::thread::Builder::new()
            .name("tpu-run-feed".into())
            .spawn(move || {
                for step in plan.steps.clone() {
                    let item = prepare(&mut source, &plan, step)
                        .with_context(|| format!("the input of step {}", step + 1));
                    let failed = item.is_err();
                    if tx.send(item).is_err() || failed {
                        return;
                    }
                }
            })
            .context("starting the input feed thread")?;
        Ok(Feed { rx })
    }

    /// The next step's inputs, and how long the loop waited for them.
    pub fn recv(&mut self) -> Result<(FedStep, Duration)> {
        let t = Instant::now();
        let item = self
            .rx
            .recv()
            .map_err(|_| anyhow!("the input feed stopped before the run's last step"))?;
        Ok((item?, t.elapsed()))
    }
}

fn prepare(source: &mut Source, plan: &FeedPlan, step: u64) -> Result<FedStep> {
    let (batch, position) = source.next(step)?;
    let literals = batch.step_literals(plan.micro_batches, plan.seed, step)?;
    let (real_tokens, token_slots) = batch.token_counts();
    Ok(FedStep {
        step,
        inputs: split_inputs(&plan.layout, plan.replicas, 0, literals)?,
        examples: batch.examples() as u64,
        real_tokens: real_tokens as u64,
        token_slots: token_slots as u64,
        position,
        skipped_records: source.skipped_records(),
    })
}

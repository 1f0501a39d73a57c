//! The steps of a pretraining run on [`crate::train::session`]'s pipelined loop: the inputs of
//! step N+1 (prepared by the feed thread, [`super::feed`]) are uploaded while step N runs, and
//! step N-1's results are read back and logged one step late, so the host's work for a step
//! overlaps the device's work on the one before.
//!
//! The hooks after step N (an evaluation, a checkpoint, a stop by signal, the end) see exactly
//! the state after it and the data position that travelled with its batch; a diverged step is
//! never checkpointed. A non-finite loss stops the run when it is read: one step later than a
//! step-by-step loop would, with step N+1 launched (and nothing of it kept).
//!
//! `RunOptions::lockstep` runs each step to its results before taking the next batch, as the
//! loop did before the feed: the reference the pipelined loop must match bit for bit.
use super::checkpoint::{capture, data_position, process_positions, save};
use super::clock::StepClock;
use super::config::PretrainConfig;
use super::data_cursor::{local_position, CursorKeeper};
use super::distributed::Distributed;
use super::eval::Evaluator;
use super::feed::Feed;
use super::interrupt::StopSignal;
use super::metrics::MetricsSink;
use super::run::{describe_checkpoint, log, read_record, RunOptions, RunSummary};
use super::source::DataPosition;
use crate::ckpt::{Spec, Store};
use crate::model::BertConfig;
use crate::storage::OutputDir;
use crate::train::progress::TrainBar;
use crate::train::session::{run_steps, SessionSteps, Staged};
use crate::train::{StepLayout, Trainer};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;
use tpu::Buffer;

/// Everything the steps of a run use, set up by [`super::run`].
pub(crate) struct TrainLoop<'a> {
    pub cfg: &'a PretrainConfig,
    pub opts: &'a RunOptions,
    pub dist: Option<&'a Distributed>,
    pub trainer: Trainer,
    pub layout: StepLayout,
    pub spec: Spec,
    pub model: BertConfig,
    pub store: Store,
    /// The data cursor's side, when the batches are its work units.
    pub keeper: Option<CursorKeeper>,
    pub evaluator: Option<Evaluator>,
    pub sink: Option<MetricsSink>,
    /// Process 0's output directory (a local staging copy when it is a bucket).
    pub output: Option<OutputDir>,
    pub progress: TrainBar,
    /// This process prints (process 0 of a run that prints).
    pub print: bool,
    pub t_start: Instant,
    pub examples_seen: u64,
    pub processes: u32,
    pub replicas: usize,
    /// Filled in as the steps run: start/end steps and the run's setup come in set.
    pub summary: RunSummary,
}

/// What the loop needs of a step's batch after the step.
struct StepMeta {
    /// Examples of every process.
    real: u64,
    /// Real tokens of every process.
    real_tokens: u64,
    position: DataPosition,
}

/// The loop's side of [`run_steps`]: the run, its input feed and its running figures.
struct Steps<'r, 'a> {
    run: &'r mut TrainLoop<'a>,
    feed: Feed,
    t: Tally,
}

impl SessionSteps for Steps<'_, '_> {
    type Meta = StepMeta;

    fn trainer(&mut self) -> &mut Trainer {
        &mut self.run.trainer
    }

    fn before_step(&mut self, _step: u64) -> Result<()> {
        if let Some(d) = self.run.dist {
            d.check()?;
        }
        Ok(())
    }

    fn stage(&mut self, step: u64) -> Result<Staged<StepMeta>> {
        self.run.stage(&mut self.feed, step, &mut self.t)
    }

    fn finish(&mut self, done: u64, outputs: &[Buffer], meta: &StepMeta) -> Result<()> {
        self.run.finish(done, outputs, meta, &mut self.t)
    }

    fn stop_requested(&self) -> Option<&'static str> {
        self.run.opts.stop.as_ref().and_then(StopSignal::received)
    }

    fn hooks_due(&self, done: u64) -> bool {
        let due = self.run.due(done, false);
        due.eval || due.checkpoint
    }

    fn after(
        &mut self,
        done: u64,
        meta: &StepMeta,
        last: bool,
        stop: Option<&'static str>,
    ) -> Result<()> {
        let due = self.run.due(done, last);
        self.run.after(done, &meta.position, stop, due, &mut self.t)
    }
}

/// What runs after a step, before the next is launched.
#[derive(Clone, Copy, Debug, Default)]
struct Due {
    eval: bool,
    checkpoint: bool,
}

/// The loop's running figures.
#[derive(Default)]
struct Tally {
    clock: StepClock,
    first_done: Option<Instant>,
    /// Sequences after the first step, for the running seq/s of the log lines.
    window_seqs: u64,
    window_tokens: u64,
    window_start: Option<Instant>,
    last_checkpoint: Option<PathBuf>,
    skipped_records: u64,
}

impl TrainLoop<'_> {
    /// Runs steps `summary.start_step..summary.end_step` on the inputs of `feed`.
    pub fn run(mut self, feed: Feed) -> Result<RunSummary> {
        let (start, end, lockstep) = (
            self.summary.start_step,
            self.summary.end_step,
            self.opts.lockstep,
        );
        let mut steps = Steps {
            run: &mut self,
            feed,
            t: Tally::default(),
        };
        run_steps(&mut steps, start, end, lockstep)?;
        let t = steps.t;
        self.progress.finish();
        self.conclude(t)
    }

    /// Takes the inputs of `step` from the feed and uploads them (the copy is done on return;
    /// the transfer may still run while the device works on the step before).
    fn stage(&mut self, feed: &mut Feed, step: u64, t: &mut Tally) -> Result<Staged<StepMeta>> {
        let (fed, waited) = feed.recv()?;
        t.clock.start();
        if step > self.summary.start_step {
            t.clock.waited(waited);
        }
        if fed.step != step {
            bail!(
                "the input feed is out of step: it gave the batch of step {} for step {}",
                fed.step + 1,
                step + 1
            );
        }
        t.skipped_records = fed.skipped_records;
        self.summary.real_tokens += fed.real_tokens;
        self.summary.token_slots += fed.token_slots;
        // Every process reads as many rows (readers repeat forever, so batches are full).
        let processes = u64::from(self.processes);
        Ok(Staged {
            batch: self.trainer.upload_split(&fed.inputs)?,
            meta: StepMeta {
                real: fed.examples * processes,
                real_tokens: fed.real_tokens * processes,
                position: fed.position,
            },
        })
    }

    fn due(&self, done: u64, last: bool) -> Due {
        let cfg = self.cfg;
        let eval_due = cfg.eval.interval > 0 && done.is_multiple_of(cfg.eval.interval);
        let ckpt_due = cfg.checkpoint.interval > 0 && done.is_multiple_of(cfg.checkpoint.interval);
        Due {
            eval: self.evaluator.is_some() && (eval_due || (last && done == cfg.train.steps)),
            checkpoint: ckpt_due || last,
        }
    }

    /// Reads a step's results (waiting for them), counts, checks and logs them.
    fn finish(
        &mut self,
        done: u64,
        outputs: &[Buffer],
        launched: &StepMeta,
        t: &mut Tally,
    ) -> Result<()> {
        let rec = read_record(&self.layout, done, outputs)?;
        t.clock.step_ready();
        self.examples_seen += launched.real;
        if t.first_done.is_none() {
            let now = Instant::now();
            t.first_done = Some(now);
            t.window_start = Some(now);
            self.summary.time_to_first_step = self.t_start.elapsed();
        } else {
            t.window_seqs += launched.real;
            t.window_tokens += launched.real_tokens;
        }
        if !rec.loss.is_finite() {
            bail!(
                "step {done}: the loss is {} (diverged); lower train.learning_rate or check the data",
                rec.loss
            );
        }
        self.progress.set_step(done);
        if done.is_multiple_of(self.cfg.output.log_every) || done == self.summary.end_step {
            let secs = t.window_start.map_or(0.0, |w| w.elapsed().as_secs_f64());
            let seq_per_s = if secs > 0.0 {
                t.window_seqs as f64 / secs
            } else {
                0.0
            };
            self.progress.set_message(format!(
                "loss {:.4} mlm_acc {:.3} nsp_acc {:.3} {seq_per_s:.1} seq/s",
                rec.loss,
                rec.get("mlm_accuracy").unwrap_or(0.0),
                rec.get("nsp_accuracy").unwrap_or(0.0),
            ));
            let mut fields: Vec<(&str, Value)> = vec![("loss", Value::from(rec.loss))];
            for (n, v) in &rec.metrics {
                fields.push((n.as_str(), Value::from(*v)));
            }
            fields.push(("seq_per_s", Value::from(seq_per_s)));
            fields.push(("examples_seen", Value::from(self.examples_seen)));
            fields.push((
                "elapsed_s",
                Value::from(self.t_start.elapsed().as_secs_f64()),
            ));
            if let Some(sink) = &mut self.sink {
                sink.record("train", done, &fields)?;
            }
            if self.print && !self.progress.is_visible() {
                log(
                    &self.progress,
                    format!(
                        "step {done}: loss {:.4} mlm_acc {:.3} nsp_acc {:.3} lr {:.3e} {seq_per_s:.1} seq/s",
                        rec.loss,
                        rec.get("mlm_accuracy").unwrap_or(0.0),
                        rec.get("nsp_accuracy").unwrap_or(0.0),
                        rec.get("learning_rate").unwrap_or(0.0),
                    ),
                );
            }
        }
        self.summary.history.push(rec);
        Ok(())
    }

    /// The evaluation, checkpoint and stop that follow step `done`, on the state after it.
    fn after(
        &mut self,
        done: u64,
        position: &DataPosition,
        signal: Option<&'static str>,
        due: Due,
        t: &mut Tally,
    ) -> Result<()> {
        if let (Some(sig), Some(_)) = (signal, self.dist) {
            // The processes of a multi-process run would have to agree on a step to checkpoint
            // together; this one stops now and the others stop when they miss it.
            bail!(
                "stopped by {sig} after step {done}; a multi-process run stops without a new \
                 checkpoint: rerun every process to resume from {}",
                describe_checkpoint(
                    t.last_checkpoint
                        .as_ref()
                        .or(self.summary.resumed_from.as_ref())
                )
            );
        }
        if due.eval {
            self.evaluate(done)?;
            t.clock.hook_ran();
        }
        if due.checkpoint {
            if let Some(path) = self.checkpoint(done, position)? {
                if self.print {
                    log(&self.progress, format!("checkpoint {}", path.display()));
                }
                t.last_checkpoint = Some(path);
                self.upload_output()?;
            }
            t.clock.hook_ran();
        }
        if let Some(sig) = signal {
            self.progress.finish();
            if let Some(sink) = &mut self.sink {
                sink.record("stopped", done, &[("signal", Value::from(sig))])?;
            }
            self.upload_output()?;
            bail!(
                "stopped by {sig} after step {done} of {}; checkpoint {}: run the same command \
                 again to resume",
                self.cfg.train.steps,
                describe_checkpoint(t.last_checkpoint.as_ref())
            );
        }
        Ok(())
    }

    /// Uploads the metrics written so far when output.dir is a bucket (at each checkpoint, so
    /// a preempted run's bucket holds its numbers up to the checkpoint it resumes from).
    fn upload_output(&self) -> Result<()> {
        if let Some(out) = &self.output {
            out.sync().with_context(|| {
                format!("uploading the run's metrics from {}", out.local().display())
            })?;
        }
        Ok(())
    }

    fn evaluate(&mut self, done: u64) -> Result<()> {
        let Some(ev) = &self.evaluator else {
            return Ok(());
        };
        let r = ev.run(self.trainer.param_buffers(), self.trainer.device())?;
        if let Some(sink) = &mut self.sink {
            // The wall time too, as the train records have it (`tpu-run plot --x time`).
            let mut fields = r.fields();
            fields.push((
                "elapsed_s",
                Value::from(self.t_start.elapsed().as_secs_f64()),
            ));
            sink.record("eval", done, &fields)?;
        }
        if self.print {
            log(
                &self.progress,
                format!(
                    "eval at step {done}: mlm_loss {:.4} mlm_acc {:.4} (at [MASK] {:.4}) nsp_loss {:.4} nsp_acc {:.4} ({} examples, {:.1}s)",
                    r.mlm_loss, r.mlm_accuracy, r.mlm_accuracy_at_mask, r.nsp_loss, r.nsp_accuracy, r.examples, r.seconds
                ),
            );
        }
        self.summary.evals.push((done, r));
        Ok(())
    }

    /// Writes the checkpoint of step `done` (the trainer's state now, `position` the data's
    /// after that step); `None` where another process writes it.
    fn checkpoint(&self, done: u64, position: &DataPosition) -> Result<Option<PathBuf>> {
        let (cfg, model, spec) = (self.cfg, &self.model, &self.spec);
        let seen = self.examples_seen;
        let units = match position {
            DataPosition::Units(p) => Some(*p),
            _ => None,
        };
        let Some(d) = self.dist else {
            let mut state = capture(
                &self.trainer,
                spec,
                done,
                cfg,
                model,
                position.reader_state(),
                seen,
            )?;
            if let (Some(k), Some(p)) = (&self.keeper, units) {
                k.report(done, p)?;
                state.data_position = k.checkpoint_position(done)?;
            }
            return Ok(Some(save(&self.store, &state)?));
        };
        // Process 0 writes it with the data cursor (every process reports its position
        // first), or every process's synthetic position.
        let local = match (&self.keeper, units) {
            (Some(k), Some(p)) => {
                k.report(done, p)?;
                local_position(p)?
            }
            _ => serde_json::to_vec(&data_position(position.reader_state())?)?,
        };
        d.checkpoint(done, &local, |positions| {
            let mut state = capture(&self.trainer, spec, done, cfg, model, None, seen)?;
            state.data_position = match &self.keeper {
                Some(k) => k.checkpoint_position(done)?,
                None => process_positions(positions)?,
            };
            state.extra["num_processes"] = Value::from(self.processes);
            state.extra["replicas"] = Value::from(self.replicas);
            save(&self.store, &state)
        })
        .with_context(|| format!("the checkpoint of step {done}"))
    }

    /// The summary: throughput over the whole run and in the steady state, the host's waits,
    /// and its record in metrics.jsonl.
    fn conclude(mut self, t: Tally) -> Result<RunSummary> {
        let cfg = self.cfg;
        let s = &mut self.summary;
        if let Some(first) = t.first_done {
            let secs = first.elapsed().as_secs_f64();
            if secs > 0.0 {
                s.seq_per_s = t.window_seqs as f64 / secs;
                s.real_tokens_per_s = t.window_tokens as f64 / secs;
            }
        }
        // Packed rows hold a varying number of instances: the mean per step.
        let steps_after_first = s.history.len().saturating_sub(1);
        let seqs_per_step = if steps_after_first > 0 {
            t.window_seqs as f64 / steps_after_first as f64
        } else {
            cfg.train.batch_size as f64
        };
        s.steady = t.clock.steady(seqs_per_step);
        s.host_wait = t.clock.host_wait();
        s.wall_time = self.t_start.elapsed();
        s.checkpoint = t.last_checkpoint.or_else(|| s.resumed_from.clone());
        s.skipped_records = t.skipped_records;
        let mut fields: Vec<(&str, Value)> = vec![
            ("start_step", Value::from(s.start_step)),
            ("steps_run", Value::from(s.history.len())),
            ("wall_time_s", Value::from(s.wall_time.as_secs_f64())),
            ("compile_s", Value::from(s.compile_time.as_secs_f64())),
            (
                "time_to_first_step_s",
                Value::from(s.time_to_first_step.as_secs_f64()),
            ),
            ("startup", s.startup.to_json()),
            ("seq_per_s", Value::from(s.seq_per_s)),
            (
                "steady_seq_per_s",
                s.steady.map_or(Value::Null, |x| Value::from(x.seq_per_s)),
            ),
            ("steady_steps", Value::from(s.steady.map_or(0, |x| x.steps))),
            ("host_wait_s", Value::from(s.host_wait.total.as_secs_f64())),
            ("host_wait_fraction", Value::from(s.host_wait.fraction)),
            ("real_tokens_per_s", Value::from(s.real_tokens_per_s)),
            ("real_token_fraction", Value::from(s.real_token_fraction())),
        ];
        if let Some(r) = s.history.last() {
            fields.push(("loss", Value::from(r.loss)));
        }
        if s.skipped_records > 0 {
            fields.push(("skipped_records", Value::from(s.skipped_records)));
        }
        if let Some(p) = &s.checkpoint {
            fields.push(("checkpoint", Value::from(p.display().to_string())));
        }
        if let Some(sink) = &mut self.sink {
            sink.record("summary", s.end_step, &fields)?;
        }
        self.upload_output()?;
        Ok(self.summary)
    }
}

//! The data path of a multi-process `tpu-run pretrain` without a model, for the accounting
//! test (tests/data_cursor_processes.rs), behind the hidden flag `--data-only-ids FILE`: the
//! CPU plugin cannot span processes, so the training run itself cannot be run on CPU with
//! several; this runs every part of it that concerns the data with real processes. Each
//! process joins the run, agrees on the files and the checkpoint to resume from, reads its
//! batches from the coordinator's work units (data_cursor.rs) and writes the example ids of
//! each step to FILE (`STEP EPOCH:FILE:RECORD ...`, one line a step, flushed at once); the
//! coordinated checkpoints hold the data position only.
//!
//! `--hang-after STEP` makes every process stop after that step (and its checkpoint, if one is
//! due) and wait, at most [`HANG_LIMIT`], to be killed, as a preempted run would be.
use super::checkpoint::save;
use super::config::PretrainConfig;
use super::data_cursor::CursorData;
use super::distributed::Distributed;
use crate::ckpt::{State, Store};
use crate::data::ReaderConfig;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// The longest a process waits after `--hang-after` before it fails on its own.
pub const HANG_LIMIT: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct DataOnlyOptions {
    /// Where this process writes its example ids (appended).
    pub ids_out: PathBuf,
    pub hang_after: Option<u64>,
}

/// Runs the data path `cfg` describes (see the module doc). One process (no coordinator)
/// continues a multi-process run's checkpoint with a cursor of its own.
pub fn run_data_only(cfg: &PretrainConfig, opts: &DataOnlyOptions) -> Result<()> {
    cfg.validate()?;
    let Some(dist) = Distributed::start(cfg)? else {
        return run_in(cfg, opts, None);
    };
    match run_in(cfg, opts, Some(&dist)) {
        Ok(()) => dist.finish(),
        Err(e) => {
            let e = e.context(format!(
                "process {} of {}",
                dist.process_id(),
                dist.num_processes()
            ));
            dist.fail(&e);
            Err(e)
        }
    }
}

fn run_in(cfg: &PretrainConfig, opts: &DataOnlyOptions, dist: Option<&Distributed>) -> Result<()> {
    let Some(pattern) = cfg.data.train.as_deref().filter(|_| !cfg.data.synthetic) else {
        bail!("--data-only-ids needs training files (--data)");
    };
    let all = ReaderConfig::files_from_patterns(pattern).context("data.train")?;
    let store = Store::new(cfg.checkpoint_dir()).with_keep_last(cfg.checkpoint.keep_last)?;
    let (files, point) = match dist {
        Some(d) => (
            d.agree_on_files(&all)?,
            d.resume_point(&store, cfg.checkpoint.resume)?,
        ),
        None => (all, store.latest()?.filter(|_| cfg.checkpoint.resume)),
    };
    let resumed = match point {
        Some(ckpt) => {
            let state = ckpt
                .load(None)
                .with_context(|| format!("resuming from {}", ckpt.path().display()))?;
            Some((state, ckpt.path().to_path_buf()))
        }
        None => None,
    };
    let start = resumed.as_ref().map_or(0, |(s, _)| s.step);
    let processes = dist.map_or(1, Distributed::num_processes);
    let rows = cfg.train.batch_size / processes as usize;
    let vocab = cfg.bert_config()?.vocab_size;
    let position = resumed
        .as_ref()
        .map(|(s, dir)| (&s.data_position, dir.as_path()));
    let mut data = match (dist, position) {
        (Some(d), _) => CursorData::open(d, cfg, &files, position, rows, vocab)?,
        (None, Some(p)) => CursorData::open_local(cfg, &files, p, rows, vocab)?,
        (None, None) => bail!(
            "--data-only-ids in one process continues a multi-process run's checkpoint, and {} \
             holds none: start the run with --num-processes 2 or more",
            store.root().display()
        ),
    };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&opts.ids_out)
        .with_context(|| format!("opening --data-only-ids {}", opts.ids_out.display()))?;
    for step in start..cfg.train.steps {
        if let Some(d) = dist {
            d.check()?;
        }
        let batch = data.next_batch()?;
        let done = step + 1;
        let ids: Vec<String> = batch
            .ids
            .iter()
            .map(|id| format!("{}:{}:{}", id.epoch, id.file, id.record))
            .collect();
        writeln!(out, "{done} {}", ids.join(" "))
            .and_then(|()| out.flush())
            .with_context(|| format!("writing {}", opts.ids_out.display()))?;
        let due = cfg.checkpoint.interval > 0 && done % cfg.checkpoint.interval == 0;
        if due || done == cfg.train.steps {
            data.report(done)?;
            let write = |_: &[Vec<u8>]| {
                let mut state = State::new(done, vec![], vec![]);
                state.data_position = data.checkpoint_position(done)?;
                state.extra = serde_json::json!({ "num_processes": processes });
                save(&store, &state)
            };
            match dist {
                Some(d) => d.checkpoint(done, &data.local_position()?, write).map(drop),
                None => write(&[]).map(drop),
            }
            .with_context(|| format!("the checkpoint of step {done}"))?;
        }
        if opts.hang_after == Some(done) {
            let who = dist.map_or(0, Distributed::process_id);
            eprintln!("process {who}: hanging after step {done} until killed");
            std::thread::sleep(HANG_LIMIT);
            bail!(
                "--hang-after {done}: not killed within {} s",
                HANG_LIMIT.as_secs()
            );
        }
    }
    Ok(())
}

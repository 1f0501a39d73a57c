//! The training data of a multi-process run on files: the coordinator's data cursor
//! (src/coord/cursor.rs) hands out work units (src/data/units.rs) to whichever process asks
//! next, and each process reads its pieces with a [`UnitReader`]. At a checkpoint step every
//! process reports its position to the cursor; process 0 writes the cursor's snapshot as the
//! checkpoint's `data_position.cursor`. Resuming opens the cursor from it, whatever the number
//! of processes or devices now: the pieces not consumed by the checkpointed step are handed out
//! first, so no example is lost or read twice. One process continuing such a checkpoint
//! keeps the cursor itself ([`CursorData::open_local`]), under the same rules.
//!
//! `tpu-run pretrain` and the data-only harness (data_only.rs) both run this code.
use super::config::PretrainConfig;
use super::distributed::Distributed;
use crate::coord::{CursorSource, LocalCursor, OpenCursor};
use crate::data::unit_reader::{UnitBatch, UnitPosition, UnitReader, UnitReaderConfig, UnitSource};
use crate::data::units::{index_file, listing_digest, CursorState, IndexedFile};
use crate::data::OnCorrupt;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Pieces a process asks for at once: one being read, one ready.
const AHEAD: u32 = 2;

/// Where the cursor lives: the coordinator, or (a single process continuing a checkpoint of
/// a multi-process run) this process.
enum Keeper {
    Coordinator(Arc<crate::coord::Client>),
    Local(Arc<LocalCursor>),
}

/// This process's reader of the cursor's work units.
pub struct CursorData {
    reader: UnitReader,
    keeper: CursorKeeper,
}

/// The cursor's side of [`CursorData`], for a reader that reads ahead on another thread (the
/// training loop's input feed): positions are given, taken where a batch was handed out.
pub struct CursorKeeper(Keeper);

fn on_corrupt(cfg: &PretrainConfig) -> OnCorrupt {
    if cfg.data.skip_corrupt {
        OnCorrupt::Skip
    } else {
        OnCorrupt::Stop
    }
}

/// The cursor over `files` (indexed here) from the checkpointed one in `resumed`, if any.
fn open_request(
    cfg: &PretrainConfig,
    files: &[PathBuf],
    resumed: Option<(&Value, &Path)>,
) -> Result<OpenCursor> {
    let resume = match resumed {
        Some((position, dir)) => Some(cursor_state(position, dir)?),
        None => None,
    };
    let unit_records = cfg.data.unit_records;
    let indexed = files
        .iter()
        .map(|f| index_file(f, unit_records, on_corrupt(cfg)))
        .collect::<Result<Vec<IndexedFile>, _>>()
        .context("indexing the training files into work units")?;
    Ok(OpenCursor {
        files: indexed,
        unit_records,
        seed: cfg.train.seed,
        shuffle: true,
        resume,
    })
}

fn opening(resumed: Option<(&Value, &Path)>) -> String {
    match resumed {
        Some((_, dir)) => format!("opening the data cursor from checkpoint {}", dir.display()),
        None => "opening the data cursor".to_string(),
    }
}

fn start_reader(
    cfg: &PretrainConfig,
    files: &[PathBuf],
    rows: usize,
    vocab_size: usize,
    source: Arc<dyn UnitSource>,
) -> Result<UnitReader> {
    UnitReader::start(
        UnitReaderConfig {
            files: files.to_vec(),
            rows,
            seq_len: cfg.data.seq_len,
            max_predictions: cfg.data.max_predictions,
            vocab_size: Some(vocab_size),
            on_corrupt: on_corrupt(cfg),
            verify_crc: true,
            prefetch_batches: cfg.data.prefetch_batches,
            ahead: AHEAD,
        },
        source,
    )
}

impl CursorData {
    /// Opens the run's cursor (process 0, from the checkpointed cursor in `resumed`, the
    /// data position of the checkpoint in the given directory) and this process's reader of
    /// `rows` rows a step. `files` is the sorted listing every process agreed on.
    pub fn open(
        dist: &Distributed,
        cfg: &PretrainConfig,
        files: &[PathBuf],
        resumed: Option<(&Value, &Path)>,
        rows: usize,
        vocab_size: usize,
    ) -> Result<CursorData> {
        if dist.is_chief() {
            let open = open_request(cfg, files, resumed)?;
            let (_, units) = dist
                .client()
                .open_cursor(&open)
                .with_context(|| opening(resumed))?;
            tracing::info!(
                "process 0: the data cursor hands out {units} work unit(s) of up to {} records \
                 an epoch",
                cfg.data.unit_records
            );
        }
        dist.barrier("tpu-run/data/cursor-open")?;
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                f.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| f.display().to_string())
            })
            .collect();
        let digest = listing_digest(names.iter().map(String::as_str));
        let source = Arc::new(CursorSource::new(dist.client().clone(), digest));
        Ok(CursorData {
            reader: start_reader(cfg, files, rows, vocab_size, source)?,
            keeper: CursorKeeper(Keeper::Coordinator(dist.client().clone())),
        })
    }

    /// A single process continuing the cursor checkpointed in `resumed` (the data position of
    /// the checkpoint in the given directory), with a cursor of its own over `files` (sorted).
    pub fn open_local(
        cfg: &PretrainConfig,
        files: &[PathBuf],
        resumed: (&Value, &Path),
        rows: usize,
        vocab_size: usize,
    ) -> Result<CursorData> {
        // Sorted as the coordinator sorts the listing every process agrees on.
        let mut files = files.to_vec();
        files.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        files.dedup();
        let open = open_request(cfg, &files, Some(resumed))?;
        let cursor = Arc::new(LocalCursor::open(&open).with_context(|| opening(Some(resumed)))?);
        tracing::info!(
            "one process continues the data cursor of checkpoint {} (a multi-process run's)",
            resumed.1.display()
        );
        Ok(CursorData {
            reader: start_reader(cfg, &files, rows, vocab_size, cursor.clone())?,
            keeper: CursorKeeper(Keeper::Local(cursor)),
        })
    }

    pub fn next_batch(&mut self) -> Result<UnitBatch> {
        self.reader.next_batch()
    }

    pub fn skipped_records(&self) -> u64 {
        self.reader.skipped_records()
    }

    /// The reader (which may move to another thread) and the cursor's side.
    pub fn into_parts(self) -> (UnitReader, CursorKeeper) {
        (self.reader, self.keeper)
    }

    /// This process's position (JSON), its part of a coordinated checkpoint.
    pub fn local_position(&self) -> Result<Vec<u8>> {
        local_position(self.reader.position())
    }

    /// Every process, at checkpoint step `step` before the checkpoint: its position to the
    /// cursor.
    pub fn report(&self, step: u64) -> Result<()> {
        self.keeper.report(step, self.reader.position())
    }

    /// Process 0, writing the checkpoint of `step` (after every process's report): its data
    /// position (the cursor).
    pub fn checkpoint_position(&self, step: u64) -> Result<Value> {
        self.keeper.checkpoint_position(step)
    }
}

/// A process's position `p` (JSON), its part of a coordinated checkpoint.
pub fn local_position(p: UnitPosition) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&json!({ "units": p }))?)
}

impl CursorKeeper {
    /// Every process, at checkpoint step `step` before the checkpoint: its position after the
    /// batch of that step, `p`, to the cursor.
    pub fn report(&self, step: u64, p: UnitPosition) -> Result<()> {
        match &self.0 {
            Keeper::Coordinator(c) => c.report_position(step, p.consumed, p.records),
            Keeper::Local(c) => c.report(step, p.consumed, p.records),
        }
        .with_context(|| format!("reporting the data position at step {step}"))
    }

    /// Process 0, writing the checkpoint of `step` (after every process's report): its data
    /// position (the cursor).
    pub fn checkpoint_position(&self, step: u64) -> Result<Value> {
        let state = match &self.0 {
            Keeper::Coordinator(c) => c.cursor_snapshot(step),
            Keeper::Local(c) => c.snapshot(step),
        }
        .with_context(|| format!("the data cursor at step {step}"))?;
        Ok(json!({ "cursor": serde_json::to_value(state)? }))
    }
}

/// Whether a checkpoint's data position is a data cursor (a single process then continues
/// it with [`CursorData::open_local`]).
pub fn is_cursor(position: &Value) -> bool {
    position.get("cursor").is_some()
}

/// The checkpointed cursor in a checkpoint's data position (of the checkpoint in `dir`).
/// Positions of readers (a single-process run's, or per process from an earlier tpu-run that
/// split the files by count) cannot be continued by a cursor without repeating or losing
/// examples: an error saying what to do.
pub fn cursor_state(position: &Value, dir: &Path) -> Result<CursorState> {
    if let Some(c) = position.get("cursor") {
        return serde_json::from_value(c.clone()).with_context(|| {
            format!(
                "checkpoint {}: data_position.cursor is not a data cursor",
                dir.display()
            )
        });
    }
    let written_by = if position.get("processes").is_some() {
        "a multi-process run of an earlier tpu-run, which split the files over the processes \
         by count (data_position.processes)"
    } else if position.get("reader").is_some() {
        "a single-process run (data_position.reader); resume it with --num-processes 1"
    } else {
        "a run without a data position for files"
    };
    bail!(
        "cannot continue the data position of {} with the data cursor: it was written by {written_by}, \
         and a multi-process run takes its data from the coordinator's work units, which \
         cannot continue that position without repeating or losing examples; or start anew \
         with --no-resume and an empty --checkpoint-dir",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_positions_are_refused_by_a_cursor_and_the_reverse() {
        let dir = Path::new("/ckpt/step-00000004");
        let old = json!({"processes": [{"reader": {}}, {"reader": {}}]});
        let e = format!("{:#}", cursor_state(&old, dir).unwrap_err());
        assert!(
            e.contains("/ckpt/step-00000004")
                && e.contains("data_position.processes")
                && e.contains("--no-resume"),
            "{e}"
        );
        let single = json!({"reader": {}});
        let e = format!("{:#}", cursor_state(&single, dir).unwrap_err());
        assert!(e.contains("--num-processes 1"), "{e}");
        let cursor = json!({"cursor": {"version": 1}});
        let e = format!("{:#}", cursor_state(&cursor, dir).unwrap_err());
        assert!(
            e.contains("data_position.cursor is not a data cursor"),
            "{e}"
        );
        assert!(is_cursor(&cursor) && !is_cursor(&single) && !is_cursor(&old));
    }
}

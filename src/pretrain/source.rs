//! Where a process's batches come from: the reader of its files (resumed from a reader's saved
//! position; packed into rows as read with `data.pack`), the coordinator's work units (a multi-process run, or one process continuing
//! such a run's cursor), or synthetic batches; and where the data stands after each batch, for
//! the checkpoint of that step.
use super::batches::{packed_source, synthetic_batch, StepBatch};
use super::checkpoint::reader_state_for;
use super::config::PretrainConfig;
use super::data_cursor::{is_cursor, CursorData, CursorKeeper};
use super::distributed::Distributed;
use crate::data::packed_reader::PackedReader;
use crate::data::unit_reader::{UnitPosition, UnitReader};
use crate::data::{Reader, ReaderConfig, ReaderState};
use crate::model::BatchShapes;
use anyhow::{anyhow, Result};
use std::path::PathBuf;

/// Where batches come from.
pub enum Source {
    Files(Box<Reader>),
    /// `data.pack`: the files' examples packed into rows as they are read.
    Packed(Box<PackedReader>),
    /// A multi-process run's work units from the coordinator's cursor (whose side of it stays
    /// with the loop, see [`super::data_cursor::CursorKeeper`]).
    Units(Box<UnitReader>),
    /// Random batches derived from (seed, step): reproducible on resume.
    Synthetic {
        vocab: usize,
        seed: u64,
        /// This process's rows of the batch.
        rows: usize,
        seq_len: usize,
        max_predictions: usize,
    },
}

impl Source {
    /// Damaged records the reader skipped so far.
    pub(super) fn skipped_records(&self) -> u64 {
        match self {
            Source::Files(r) => r.stats().skipped_corrupt,
            Source::Packed(p) => p.stats().skipped_corrupt,
            Source::Units(u) => u.skipped_records(),
            Source::Synthetic { .. } => 0,
        }
    }

    /// The batch of `step` and the data position after it.
    pub(super) fn next(&mut self, step: u64) -> Result<(StepBatch, DataPosition)> {
        let ended = || anyhow!("the training data ended (the reader repeats forever)");
        match self {
            Source::Files(r) => {
                let batch = r.next_batch().ok_or_else(ended)??;
                Ok((
                    StepBatch::Padded(batch),
                    DataPosition::Reader(Box::new(r.state())),
                ))
            }
            Source::Packed(p) => {
                let batch = p.next_batch()?.ok_or_else(ended)?;
                Ok((
                    StepBatch::Packed(batch),
                    DataPosition::Reader(Box::new(p.state())),
                ))
            }
            Source::Units(u) => {
                let batch = u.next_batch()?.batch;
                Ok((StepBatch::Padded(batch), DataPosition::Units(u.position())))
            }
            Source::Synthetic {
                vocab,
                seed,
                rows,
                seq_len,
                max_predictions,
            } => {
                let batch = synthetic_batch(
                    *rows,
                    *seq_len,
                    *max_predictions,
                    *vocab,
                    seed.wrapping_add(step),
                );
                Ok((StepBatch::Padded(batch), DataPosition::Synthetic))
            }
        }
    }
}

/// Where the data stands after a step's batch.
#[derive(Clone, Debug)]
pub enum DataPosition {
    Reader(Box<ReaderState>),
    Units(UnitPosition),
    /// Synthetic batches derive from the step alone.
    Synthetic,
}

impl DataPosition {
    /// The reader's state, for a checkpoint of a run that reads files itself.
    pub fn reader_state(&self) -> Option<ReaderState> {
        match self {
            DataPosition::Reader(s) => Some((**s).clone()),
            DataPosition::Units(_) | DataPosition::Synthetic => None,
        }
    }
}

/// This process's part of the data: its rows of the global batch, drawn with its own seed.
pub(super) struct DataShare {
    pub rows: usize,
    pub seed: u64,
    pub process_id: u32,
    pub processes: u32,
    pub vocab: usize,
    /// One replica's micro-batch: packed rows when it has `max_instances_per_row`.
    pub micro: BatchShapes,
}

/// Where this process's batches come from (see [`Source`]), and the data cursor's side when
/// they are its work units.
pub(super) fn open_source(
    cfg: &PretrainConfig,
    dist: Option<&Distributed>,
    train_files: Option<Vec<PathBuf>>,
    resumed: Option<&(crate::ckpt::State, PathBuf)>,
    share: DataShare,
) -> Result<(Source, Option<CursorKeeper>)> {
    let units = |data: CursorData| {
        let (reader, keeper) = data.into_parts();
        (Source::Units(Box::new(reader)), Some(keeper))
    };
    Ok(match train_files {
        None => (
            Source::Synthetic {
                vocab: share.vocab,
                seed: share.seed,
                rows: share.rows,
                seq_len: cfg.data.seq_len,
                max_predictions: cfg.data.max_predictions,
            },
            None,
        ),
        Some(files) if dist.is_some() => {
            let d = dist.ok_or_else(|| anyhow!("a multi-process run without its coordinator"))?;
            let resumed = resumed.map(|(s, dir)| (&s.data_position, dir.as_path()));
            let data = CursorData::open(d, cfg, &files, resumed, share.rows, share.vocab)?;
            units(data)
        }
        // One process continuing a multi-process run's checkpoint: its cursor, kept here.
        Some(files) if resumed.is_some_and(|(s, _)| is_cursor(&s.data_position)) => {
            let (s, dir) =
                resumed.ok_or_else(|| anyhow!("no checkpoint to continue the data cursor of"))?;
            let data = CursorData::open_local(
                cfg,
                &files,
                (&s.data_position, dir),
                share.rows,
                share.vocab,
            )?;
            units(data)
        }
        Some(files) => {
            let rc = reader_config(cfg, files, share.rows, share.seed, share.vocab);
            let saved = match resumed {
                Some((s, dir)) => {
                    reader_state_for(&s.data_position, dir, share.process_id, share.processes)?
                }
                None => None,
            };
            let source = match share.micro.max_instances_per_row {
                Some(_) => Source::Packed(Box::new(packed_source(
                    rc,
                    saved,
                    &share.micro,
                    share.rows,
                )?)),
                None => Source::Files(Box::new(match saved {
                    Some(st) => Reader::resume(rc, st)?,
                    None => Reader::new(rc)?,
                })),
            };
            (source, None)
        }
    })
}

/// The reader of one process's files and rows (`rows` of the global batch, `seed` its own),
/// refusing token ids outside the model's `vocab_size`.
fn reader_config(
    cfg: &PretrainConfig,
    files: Vec<PathBuf>,
    rows: usize,
    seed: u64,
    vocab_size: usize,
) -> ReaderConfig {
    let mut rc = ReaderConfig::new(files, rows, cfg.data.seq_len, cfg.data.max_predictions);
    rc.seed = seed;
    rc.vocab_size = Some(vocab_size);
    if cfg.data.skip_corrupt {
        rc.on_corrupt = crate::data::OnCorrupt::Skip;
    }
    rc.shuffle_buffer = cfg.data.shuffle_buffer;
    rc.cycle_length = cfg.data.cycle_length;
    rc.prefetch_batches = cfg.data.prefetch_batches;
    rc
}

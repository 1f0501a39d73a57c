//! A process's reader of work units (src/data/units.rs) in a multi-process run: it asks a
//! [`UnitSource`] (the coordinator's cursor) for pieces and reads them in the order given,
//! records in file order, into batches of this process's rows. A prefetch thread reads ahead;
//! the position after each batch travels with it, so [`UnitReader::position`] is exact at a
//! step boundary: pieces read to their end, and records read of the next. Every row comes with
//! its [`ExampleId`] (epoch, file, record), for accounting.
use super::batch::{Batch, HostExample};
use super::error::DataError;
use super::example::PretrainingExample;
use super::shard_stream::OnCorrupt;
use super::tfrecord::RecordReader;
use super::units::{ExampleId, Piece};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Where pieces come from: the coordinator ([`crate::coord::CursorSource`]) or a test's own.
pub trait UnitSource: Send + Sync {
    /// Up to `max` next pieces for this process, at least one.
    fn next_units(&self, max: u32) -> Result<Vec<Piece>>;
}

#[derive(Clone, Debug)]
pub struct UnitReaderConfig {
    /// The sorted listing the pieces' file indices point into.
    pub files: Vec<PathBuf>,
    /// This process's rows of a step.
    pub rows: usize,
    pub seq_len: usize,
    pub max_predictions: usize,
    pub vocab_size: Option<usize>,
    pub on_corrupt: OnCorrupt,
    pub verify_crc: bool,
    pub prefetch_batches: usize,
    /// Pieces asked for at once.
    pub ahead: u32,
}

/// Pieces this process read to their end since it started, and records read of the next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnitPosition {
    pub consumed: u64,
    pub records: u64,
}

/// A batch with the identity of each real row.
pub struct UnitBatch {
    pub batch: Batch,
    pub ids: Vec<ExampleId>,
}

type Prefetched = Result<(UnitBatch, UnitPosition)>;

pub struct UnitReader {
    rx: Receiver<Prefetched>,
    position: UnitPosition,
    skipped: Arc<AtomicU64>,
    finished: bool,
}

impl UnitReader {
    /// Starts the prefetch thread, which asks `source` for pieces as it needs them.
    pub fn start(cfg: UnitReaderConfig, source: Arc<dyn UnitSource>) -> Result<UnitReader> {
        if cfg.rows == 0 {
            bail!("the unit reader needs at least one row a batch");
        }
        let skipped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = sync_channel::<Prefetched>(cfg.prefetch_batches.max(1));
        let counter = skipped.clone();
        std::thread::Builder::new()
            .name("tpu-run-unit-reader".into())
            .spawn(move || {
                let mut t = Thread {
                    cfg,
                    source,
                    skipped: counter,
                    queue: VecDeque::new(),
                    current: None,
                    consumed: 0,
                };
                t.run(&tx);
            })
            .context("starting the unit reader thread")?;
        Ok(UnitReader {
            rx,
            position: UnitPosition::default(),
            skipped,
            finished: false,
        })
    }

    /// The next batch (the reader repeats over epochs: it ends only with an error).
    pub fn next_batch(&mut self) -> Result<UnitBatch> {
        if self.finished {
            bail!("the unit reader stopped after an earlier error");
        }
        match self.rx.recv() {
            Ok(Ok((batch, position))) => {
                self.position = position;
                Ok(batch)
            }
            Ok(Err(e)) => {
                self.finished = true;
                Err(e)
            }
            Err(_) => {
                self.finished = true;
                Err(anyhow!("the unit reader thread ended unexpectedly"))
            }
        }
    }

    /// The position after the last batch [`UnitReader::next_batch`] returned.
    pub fn position(&self) -> UnitPosition {
        self.position
    }

    /// Damaged records skipped so far (`OnCorrupt::Skip`).
    pub fn skipped_records(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// The piece being read: records `passed` of it are behind the reader.
struct Current {
    piece: Piece,
    reader: RecordReader<crate::storage::Input>,
    passed: u64,
}

struct Thread {
    cfg: UnitReaderConfig,
    source: Arc<dyn UnitSource>,
    skipped: Arc<AtomicU64>,
    queue: VecDeque<Piece>,
    current: Option<Current>,
    consumed: u64,
}

impl Thread {
    fn run(&mut self, tx: &SyncSender<Prefetched>) {
        loop {
            let next = self.batch();
            let failed = next.is_err();
            if tx.send(next).is_err() || failed {
                return;
            }
        }
    }

    fn batch(&mut self) -> Prefetched {
        let c = &self.cfg;
        let mut batch = Batch::with_capacity(c.rows, c.seq_len, c.max_predictions);
        let mut ids = Vec::with_capacity(c.rows);
        while !batch.is_full() {
            if self.current.is_none() {
                self.current = Some(self.open_next()?);
            }
            if let Some((id, ex)) = self.read_one()? {
                batch.push(&ex);
                ids.push(id);
            }
            // A piece read to its end counts as consumed at once, so a position never names
            // a finished piece.
            if self
                .current
                .as_ref()
                .is_some_and(|c| c.passed >= c.piece.len())
            {
                self.current = None;
                self.consumed += 1;
            }
        }
        let position = UnitPosition {
            consumed: self.consumed,
            records: self.current.as_ref().map_or(0, |c| c.passed),
        };
        Ok((UnitBatch { batch, ids }, position))
    }

    fn path(&self, file: u32) -> Result<&PathBuf> {
        self.cfg.files.get(file as usize).ok_or_else(|| {
            anyhow!(
                "the coordinator handed out a work unit of file #{file}, this process lists {} \
                 file(s)",
                self.cfg.files.len()
            )
        })
    }

    /// The next piece, opened at its first record (asking the source when none is queued).
    fn open_next(&mut self) -> Result<Current> {
        if self.queue.is_empty() {
            self.queue.extend(self.source.next_units(self.cfg.ahead)?);
        }
        let piece = self
            .queue
            .pop_front()
            .ok_or_else(|| anyhow!("the coordinator handed out no work unit"))?;
        if piece.start < piece.first || piece.is_empty() {
            bail!("the coordinator handed out an empty or malformed work unit: {piece:?}");
        }
        let path = self.path(piece.file)?.clone();
        let mut reader = RecordReader::open_at(&path, piece.offset, self.cfg.verify_crc)?;
        let mut passed = 0;
        // A piece that resumes inside its unit: step over the records before it.
        for _ in piece.first..piece.start {
            match reader.skip_record() {
                Ok(Some(_)) => {}
                Ok(None) => return Err(changed(&path, &piece).into()),
                Err(e) if e.is_corruption() && self.cfg.on_corrupt == OnCorrupt::Skip => {
                    // The framing is broken before the piece: none of it can be read.
                    self.skip(&e);
                    passed = piece.len();
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Current {
            piece,
            reader,
            passed,
        })
    }

    fn skip(&self, e: &DataError) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("skipping corrupt record: {e}");
    }

    /// Reads the current piece's next record: the example, or `None` for a damaged record
    /// skipped (the rest of the piece, when its framing is broken).
    fn read_one(&mut self) -> Result<Option<(ExampleId, HostExample)>> {
        let skip_mode = self.cfg.on_corrupt == OnCorrupt::Skip;
        let (seq_len, preds, vocab) = (
            self.cfg.seq_len,
            self.cfg.max_predictions,
            self.cfg.vocab_size,
        );
        let Some(cur) = self.current.as_mut().filter(|c| c.passed < c.piece.len()) else {
            return Ok(None);
        };
        let piece = cur.piece;
        let id = ExampleId {
            epoch: piece.epoch,
            file: piece.file,
            record: piece.start + cur.passed,
        };
        let read = cur.reader.next_record();
        cur.passed += 1;
        let failed = match read {
            Ok(Some(rec)) => {
                let decoded = PretrainingExample::decode(&rec.data, seq_len, preds)
                    .and_then(|ex| HostExample::from_example(ex, vocab));
                match decoded {
                    Ok(ex) => return Ok(Some((id, ex))),
                    Err(reason) => DataError::BadExample {
                        path: cur.reader.path().to_path_buf(),
                        offset: rec.offset,
                        reason,
                    },
                }
            }
            Ok(None) => return Err(changed(cur.reader.path(), &piece).into()),
            Err(e) => e,
        };
        if !(skip_mode && failed.is_corruption()) {
            return Err(failed.into());
        }
        if !matches!(
            failed,
            DataError::CorruptData { .. } | DataError::BadExample { .. }
        ) {
            // The framing is broken: nothing after it in this file can be read.
            cur.passed = piece.len();
        }
        self.skip(&failed);
        Ok(None)
    }
}

fn changed(path: &std::path::Path, piece: &Piece) -> DataError {
    DataError::Config(format!(
        "{} ends before record {} of its work unit (records {}..{}): the file changed since \
         the run indexed it; every process must read the same, unchanged files",
        path.display(),
        piece.end,
        piece.start,
        piece.end
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::units::{index_file, Unit};
    use std::sync::Mutex;

    /// Hands out a fixed list of pieces, then fails.
    struct Fixed(Mutex<VecDeque<Piece>>);

    impl UnitSource for Fixed {
        fn next_units(&self, max: u32) -> Result<Vec<Piece>> {
            let mut q = self.0.lock().unwrap();
            let n = (max as usize).min(q.len());
            if n == 0 {
                bail!("no more pieces");
            }
            Ok(q.drain(..n).collect())
        }
    }

    fn example(k: i64) -> PretrainingExample {
        PretrainingExample {
            input_ids: vec![k + 1; 4],
            input_mask: vec![1; 4],
            segment_ids: vec![0; 4],
            masked_lm_positions: vec![1],
            masked_lm_ids: vec![k + 1],
            masked_lm_weights: vec![1.0],
            next_sentence_label: 0,
        }
    }

    #[test]
    fn pieces_are_read_in_order_and_the_position_follows_the_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tfrecord");
        let mut w = crate::data::tfrecord::RecordWriter::create(&path).unwrap();
        for k in 0..7 {
            w.write_record(&example(k).encode()).unwrap();
        }
        w.finish().unwrap();
        let f = index_file(&path, 3, OnCorrupt::Stop).unwrap();
        let unit = |k: usize| Unit {
            file: 0,
            first: 3 * k as u64,
            records: 3.min(7 - 3 * k as u64),
            offset: f.unit_offsets[k],
        };
        // Unit 1 from its second record (a resumed piece), then units 2 and 0.
        let mut p1 = Piece::whole(0, 1, 1, &unit(1));
        p1.start = 4;
        let pieces = vec![
            p1,
            Piece::whole(0, 2, 2, &unit(2)),
            Piece::whole(1, 0, 0, &unit(0)),
        ];
        let source = Arc::new(Fixed(Mutex::new(pieces.into())));
        let cfg = UnitReaderConfig {
            files: vec![path],
            rows: 2,
            seq_len: 4,
            max_predictions: 1,
            vocab_size: None,
            on_corrupt: OnCorrupt::Stop,
            verify_crc: true,
            prefetch_batches: 1,
            ahead: 1,
        };
        let mut r = UnitReader::start(cfg, source).unwrap();
        let mut seen = Vec::new();
        let mut positions = Vec::new();
        for _ in 0..3 {
            let b = r.next_batch().unwrap();
            for (row, id) in b.ids.iter().enumerate() {
                // The record's content is its index: what was read is what the id says.
                assert_eq!(b.batch.row(row).unwrap().input_ids[0], id.record as i32 + 1);
                seen.push((id.epoch, id.record));
            }
            positions.push(r.position());
        }
        assert_eq!(seen, [(0, 4), (0, 5), (0, 6), (1, 0), (1, 1), (1, 2)]);
        let pos = |consumed, records| UnitPosition { consumed, records };
        assert_eq!(positions, [pos(1, 0), pos(2, 1), pos(3, 0)]);
        // The pieces ran out: the source's error, then the reader stays stopped.
        let e = r.next_batch().err().unwrap().to_string();
        assert!(e.contains("no more pieces"), "{e}");
        assert!(r.next_batch().is_err());
    }
}

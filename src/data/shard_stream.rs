//! The reader's deterministic record stream: each epoch visits this worker's shards in a seeded
//! order; `cycle_length` shards are read at once, each by its own thread (read, CRC check,
//! decode), and their records are interleaved round-robin; the stream is cut into windows of
//! `shuffle_buffer` records and each window is permuted with a seed derived from
//! (seed, epoch, window). The order depends only on the configuration, never on thread timing,
//! and the position is a small exact state: the interleave cursors at the start of the current
//! window plus how many of its records were taken.
use super::batch::HostExample;
use super::error::DataError;
use super::example::PretrainingExample;
use super::pyrandom::PyRandom;
use super::tfrecord::RecordReader;
use crate::rng::splitmix64;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// What to do with a damaged record (bad length or data CRC, truncated file, undecodable or
/// malformed example).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OnCorrupt {
    /// Fail with an error naming the file and byte offset.
    Stop,
    /// Log it, count it in [`ReaderStats`](super::ReaderStats) and go on (after a bad length or
    /// a truncation the rest of that shard is unreadable and is skipped).
    Skip,
}

/// Where a shard is being read: index into the worker's file list, next record's byte offset
/// and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardCursor {
    pub file: usize,
    pub offset: u64,
    pub record: u64,
}

/// Interleave position: which shard each slot reads (`None`: empty slot), the slot to take from
/// next, and the next shard of the epoch's order to open.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InterleaveState {
    pub epoch: u64,
    pub next_shard: usize,
    pub round_robin: usize,
    pub slots: Vec<Option<ShardCursor>>,
}

/// Settings that fix the order of the stream.
#[derive(Clone, Debug)]
pub struct StreamSpec {
    pub files: Vec<PathBuf>,
    pub seq_len: usize,
    pub max_predictions: usize,
    pub seed: u64,
    pub shuffle: bool,
    pub shuffle_buffer: usize,
    pub cycle_length: usize,
    pub on_corrupt: OnCorrupt,
    pub verify_crc: bool,
    /// The model's vocab size: a token id outside it is a bad example.
    pub vocab_size: Option<usize>,
    /// Records each shard thread may read ahead.
    pub read_ahead: usize,
}

/// The shard visiting order of `epoch` (indices into the file list).
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        PyRandom::new(splitmix64(seed ^ splitmix64(epoch))).shuffle(&mut order);
    }
    order
}

fn window_rng(seed: u64, epoch: u64, window: u64) -> PyRandom {
    // SplitMix64 spreads (seed, epoch, window) over distinct generator seeds.
    PyRandom::new(splitmix64(
        splitmix64(seed ^ splitmix64(epoch)) ^ splitmix64(window.wrapping_add(0x5157)),
    ))
}

enum SlotMsg {
    Record {
        example: Box<HostExample>,
        next_offset: u64,
    },
    End,
    Failed(DataError),
}

struct Slot {
    cursor: ShardCursor,
    rx: Receiver<SlotMsg>,
}

/// Reads one shard from `cursor` on its own thread into a bounded channel; the thread ends when
/// the shard ends or the receiver is dropped.
fn spawn_slot(spec: &StreamSpec, cursor: ShardCursor, skipped: Arc<AtomicU64>) -> Slot {
    let (tx, rx) = sync_channel(spec.read_ahead.max(1));
    let path = spec.files[cursor.file].clone();
    let (seq_len, max_predictions) = (spec.seq_len, spec.max_predictions);
    let (on_corrupt, verify, vocab_size) = (spec.on_corrupt, spec.verify_crc, spec.vocab_size);
    let start = cursor.offset;
    std::thread::spawn(move || {
        let mut reader = match RecordReader::open_at(&path, start, verify) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(SlotMsg::Failed(e));
                return;
            }
        };
        let skip = |e: &DataError| {
            skipped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("skipping corrupt record: {e}");
        };
        loop {
            let msg = match reader.next_record() {
                Ok(None) => SlotMsg::End,
                Ok(Some(rec)) => {
                    let decoded = PretrainingExample::decode(&rec.data, seq_len, max_predictions)
                        .and_then(|ex| HostExample::from_example(ex, vocab_size));
                    match decoded {
                        Ok(ex) => SlotMsg::Record {
                            example: Box::new(ex),
                            next_offset: reader.offset(),
                        },
                        Err(reason) => {
                            let e = DataError::BadExample {
                                path: path.clone(),
                                offset: rec.offset,
                                reason,
                            };
                            match on_corrupt {
                                OnCorrupt::Skip => {
                                    skip(&e);
                                    continue;
                                }
                                OnCorrupt::Stop => SlotMsg::Failed(e),
                            }
                        }
                    }
                }
                Err(e @ DataError::CorruptData { .. }) if on_corrupt == OnCorrupt::Skip => {
                    skip(&e);
                    continue;
                }
                Err(e) if e.is_corruption() && on_corrupt == OnCorrupt::Skip => {
                    skip(&e);
                    SlotMsg::End
                }
                Err(e) => SlotMsg::Failed(e),
            };
            let last = !matches!(msg, SlotMsg::Record { .. });
            if tx.send(msg).is_err() || last {
                return;
            }
        }
    });
    Slot { cursor, rx }
}

/// Round-robin interleave of the epoch's shards over `cycle_length` slots; an emptied slot takes
/// the next shard of the order at once.
struct Interleave {
    spec: Arc<StreamSpec>,
    epoch: u64,
    order: Vec<usize>,
    next_shard: usize,
    round_robin: usize,
    slots: Vec<Option<Slot>>,
    skipped: Arc<AtomicU64>,
}

impl Interleave {
    fn start(spec: Arc<StreamSpec>, st: &InterleaveState, skipped: Arc<AtomicU64>) -> Self {
        let order = epoch_order(spec.files.len(), spec.seed, st.epoch, spec.shuffle);
        let slots = st
            .slots
            .iter()
            .map(|c| c.map(|c| spawn_slot(&spec, c, skipped.clone())))
            .collect();
        Interleave {
            spec,
            epoch: st.epoch,
            order,
            next_shard: st.next_shard,
            round_robin: st.round_robin,
            slots,
            skipped,
        }
    }

    fn state(&self) -> InterleaveState {
        InterleaveState {
            epoch: self.epoch,
            next_shard: self.next_shard,
            round_robin: self.round_robin,
            slots: self
                .slots
                .iter()
                .map(|s| s.as_ref().map(|s| s.cursor))
                .collect(),
        }
    }

    /// The next record of this epoch, `None` when every shard of the epoch is done.
    fn next(&mut self) -> Option<Result<HostExample, DataError>> {
        let k = self.slots.len();
        loop {
            let s = self.round_robin;
            if self.slots[s].is_none() {
                if self.next_shard < self.order.len() {
                    let cursor = ShardCursor {
                        file: self.order[self.next_shard],
                        offset: 0,
                        record: 0,
                    };
                    self.next_shard += 1;
                    self.slots[s] = Some(spawn_slot(&self.spec, cursor, self.skipped.clone()));
                } else if self.slots.iter().all(Option::is_none) {
                    return None;
                } else {
                    self.round_robin = (s + 1) % k;
                    continue;
                }
            }
            let slot = self.slots[s].as_mut()?;
            match slot.rx.recv() {
                Ok(SlotMsg::Record {
                    example,
                    next_offset,
                }) => {
                    slot.cursor.offset = next_offset;
                    slot.cursor.record += 1;
                    self.round_robin = (s + 1) % k;
                    return Some(Ok(*example));
                }
                Ok(SlotMsg::End) => self.slots[s] = None,
                Ok(SlotMsg::Failed(e)) => {
                    self.slots[s] = None;
                    return Some(Err(e));
                }
                Err(_) => {
                    let path = self.spec.files[slot.cursor.file].clone();
                    return Some(Err(DataError::Config(format!(
                        "the reading thread of {} ended unexpectedly",
                        path.display()
                    ))));
                }
            }
        }
    }
}

/// Exact stream position: the interleave state where the current window began, the window's
/// index in its epoch and how many of its records were already taken.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamPosition {
    pub window_start: InterleaveState,
    pub window: u64,
    pub taken: usize,
}

impl StreamPosition {
    pub fn beginning(cycle_length: usize, files: usize) -> Self {
        StreamPosition {
            window_start: InterleaveState {
                epoch: 0,
                next_shard: 0,
                round_robin: 0,
                slots: vec![None; cycle_length.clamp(1, files.max(1))],
            },
            window: 0,
            taken: 0,
        }
    }
}

/// Windows of the interleaved stream, each permuted, across epochs.
pub struct WindowedStream {
    spec: Arc<StreamSpec>,
    max_epochs: Option<u64>,
    interleave: Interleave,
    window_start: InterleaveState,
    window_index: u64,
    /// The permuted window's records not yet taken.
    window: std::vec::IntoIter<HostExample>,
    window_len: usize,
    taken: usize,
    /// Records the current epoch produced so far (an epoch of none is an error, not a spin).
    epoch_records: u64,
    done: bool,
}

impl WindowedStream {
    /// Continues from `pos` (use [`StreamPosition::beginning`] for a fresh start).
    pub fn new(
        spec: StreamSpec,
        pos: StreamPosition,
        max_epochs: Option<u64>,
        skipped: Arc<AtomicU64>,
    ) -> Result<Self, DataError> {
        let spec = Arc::new(spec);
        let interleave = Interleave::start(spec.clone(), &pos.window_start, skipped);
        let mut s = WindowedStream {
            spec,
            max_epochs,
            interleave,
            window_start: pos.window_start.clone(),
            window_index: pos.window,
            window: Vec::new().into_iter(),
            window_len: 0,
            taken: 0,
            // Windows after the first follow a full one, so the epoch already had records.
            epoch_records: u64::from(pos.window > 0),
            done: max_epochs.is_some_and(|m| pos.window_start.epoch >= m),
        };
        if !s.done {
            s.fill()?;
            if pos.taken > s.window_len {
                return Err(DataError::Config(format!(
                    "saved reader position takes {} records of a window that has {}; the shards \
                     changed since the state was saved",
                    pos.taken, s.window_len
                )));
            }
            s.window.by_ref().take(pos.taken).for_each(drop);
            s.taken = pos.taken;
        }
        Ok(s)
    }

    /// Reads the next window (of the current epoch) and permutes it.
    fn fill(&mut self) -> Result<(), DataError> {
        self.window = Vec::new().into_iter();
        self.window_len = 0;
        self.taken = 0;
        self.window_start = self.interleave.state();
        let size = self.spec.shuffle_buffer.max(1);
        let mut window = Vec::with_capacity(size.min(1 << 16));
        while window.len() < size {
            match self.interleave.next() {
                Some(r) => window.push(r?),
                None => break,
            }
        }
        if self.spec.shuffle {
            window_rng(self.spec.seed, self.interleave.epoch, self.window_index)
                .shuffle(&mut window);
        }
        self.epoch_records += window.len() as u64;
        self.window_len = window.len();
        self.window = window.into_iter();
        Ok(())
    }

    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            window_start: self.window_start.clone(),
            window: self.window_index,
            taken: self.taken,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.interleave.epoch
    }

    /// The next record; `None` after `max_epochs` epochs.
    pub fn next_example(&mut self) -> Option<Result<HostExample, DataError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(ex) = self.window.next() {
                self.taken += 1;
                return Some(Ok(ex));
            }
            if self.window_len < self.spec.shuffle_buffer.max(1) {
                // A short window means the epoch ran out: start the next one.
                if self.epoch_records == 0 {
                    self.done = true;
                    return Some(Err(DataError::Config(format!(
                        "the {} shard(s) of this worker hold no records",
                        self.spec.files.len()
                    ))));
                }
                let next_epoch = self.interleave.epoch + 1;
                if self.max_epochs.is_some_and(|m| next_epoch >= m) {
                    self.done = true;
                    return None;
                }
                let st = InterleaveState {
                    epoch: next_epoch,
                    next_shard: 0,
                    round_robin: 0,
                    slots: vec![None; self.interleave.slots.len()],
                };
                self.interleave =
                    Interleave::start(self.spec.clone(), &st, self.interleave.skipped.clone());
                self.window_index = 0;
                self.epoch_records = 0;
            } else {
                self.window_index += 1;
            }
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

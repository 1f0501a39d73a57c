//! The training input reader: this worker's shards, read in parallel and shuffled with a seed
//! (see shard_stream.rs for the order), batched into fixed-shape host arrays on a background
//! thread that keeps up to `prefetch_batches` ready in a bounded channel, so the device does not
//! wait. [`Reader::state`] is the exact position after the last batch handed out; a reader made
//! with [`Reader::resume`] from it yields the same batches the original would have.
use super::batch::Batch;
use super::error::DataError;
pub use super::shard_stream::{OnCorrupt, ShardCursor};
use super::shard_stream::{StreamPosition, StreamSpec, WindowedStream};
use crate::storage::{self, Location};
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct ReaderConfig {
    /// Every shard of the data set (all workers); sorted by path before splitting.
    pub files: Vec<PathBuf>,
    pub batch_size: usize,
    pub seq_len: usize,
    pub max_predictions: usize,
    pub seed: u64,
    /// Shuffle the shard order each epoch and the records within each window.
    pub shuffle: bool,
    /// Records per shuffle window.
    pub shuffle_buffer: usize,
    /// Shards read at once, one thread each.
    pub cycle_length: usize,
    /// This worker gets every `num_workers`-th shard starting at `worker_index`.
    pub worker_index: usize,
    pub num_workers: usize,
    pub on_corrupt: OnCorrupt,
    /// Check data CRCs (length CRCs are always checked).
    pub verify_crc: bool,
    /// The model's vocab size: an example with a token id outside it is a bad example (see
    /// [`HostExample::from_example`](super::batch::HostExample::from_example)).
    pub vocab_size: Option<usize>,
    /// Batches prepared ahead of the consumer.
    pub prefetch_batches: usize,
    /// Stop after this many passes over the shards (`None`: repeat forever). A last partial
    /// batch is padded (see [`Batch::real_rows`]).
    pub epochs: Option<u64>,
}

impl ReaderConfig {
    /// Training defaults: shuffled, 4 shards in parallel, a 10,000-record window, 4 batches of
    /// prefetch, CRCs verified, stop on corruption, repeat forever, one worker.
    pub fn new(
        files: Vec<PathBuf>,
        batch_size: usize,
        seq_len: usize,
        max_predictions: usize,
    ) -> Self {
        ReaderConfig {
            files,
            batch_size,
            seq_len,
            max_predictions,
            seed: 12345,
            shuffle: true,
            shuffle_buffer: 10_000,
            cycle_length: 4,
            worker_index: 0,
            num_workers: 1,
            on_corrupt: OnCorrupt::Stop,
            verify_crc: true,
            vocab_size: None,
            prefetch_batches: 4,
            epochs: None,
        }
    }

    /// The shard files matching comma-separated paths or glob patterns, sorted. A pattern may
    /// be a `gs://` / `s3://` URL, matched against the bucket's listing.
    pub fn files_from_patterns(patterns: &str) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for p in patterns.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let before = files.len();
            match Location::parse(Path::new(p)).with_context(|| format!("data pattern {p:?}"))? {
                Location::Object(url) => {
                    files.extend(storage::glob(&url).with_context(|| format!("listing {p:?}"))?)
                }
                Location::Local(_) => {
                    for entry in glob::glob(p).with_context(|| format!("bad data pattern {p:?}"))? {
                        let path = entry.with_context(|| format!("listing {p:?}"))?;
                        if path.is_file() {
                            files.push(path);
                        }
                    }
                }
            }
            if files.len() == before {
                return Err(anyhow!("data pattern {p:?} matches no file"));
            }
        }
        files.sort();
        files.dedup();
        Ok(files)
    }

    fn validate(&self) -> Result<()> {
        let checks = [
            (self.batch_size == 0, "batch size must be at least 1"),
            (self.seq_len == 0, "sequence length must be at least 1"),
            (
                self.max_predictions == 0,
                "max predictions must be at least 1",
            ),
            (
                self.num_workers == 0,
                "number of workers must be at least 1",
            ),
            (
                self.shuffle_buffer == 0,
                "shuffle buffer must be at least 1",
            ),
            (self.cycle_length == 0, "cycle length must be at least 1"),
        ];
        if let Some((_, msg)) = checks.iter().find(|(bad, _)| *bad) {
            return Err(anyhow!("reader: {msg}"));
        }
        if self.worker_index >= self.num_workers {
            return Err(anyhow!(
                "reader: worker index {} is not below the worker count {}",
                self.worker_index,
                self.num_workers
            ));
        }
        Ok(())
    }

    /// This worker's shards: sorted, every `num_workers`-th from `worker_index`.
    pub fn worker_files(&self) -> Result<Vec<PathBuf>> {
        let mut all = self.files.clone();
        all.sort();
        all.dedup();
        let mine: Vec<PathBuf> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % self.num_workers == self.worker_index)
            .map(|(_, p)| p.clone())
            .collect();
        if mine.is_empty() {
            return Err(anyhow!(
                "reader: worker {} of {} gets no shard ({} shard files); use at least as many \
                 shards as workers",
                self.worker_index,
                self.num_workers,
                all.len()
            ));
        }
        Ok(mine)
    }
}

/// A shard as recorded in a saved state: name and size, so a resume notices changed data.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardId {
    pub name: String,
    pub bytes: u64,
}

/// Exact reader position, serializable (serde) into a checkpoint manifest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReaderState {
    pub version: u32,
    pub seed: u64,
    pub shuffle: bool,
    pub shuffle_buffer: usize,
    pub worker_index: usize,
    pub num_workers: usize,
    /// This worker's shards in file-index order (the `file` of each cursor indexes this list).
    pub shards: Vec<ShardId>,
    pub position: StreamPosition,
    /// Examples handed out so far (batches × batch size, padding rows excluded).
    pub examples: u64,
}

impl ReaderState {
    pub const VERSION: u32 = 1;
}

/// Counters of a running reader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    pub batches: u64,
    pub examples: u64,
    /// Corrupt records stepped over (skip mode).
    pub skipped_corrupt: u64,
}

type Prefetched = std::result::Result<(Batch, StreamPosition), DataError>;

/// Iterator of batches (`Result`, since a shard can be damaged); see the module doc.
pub struct Reader {
    rx: Receiver<Prefetched>,
    state: ReaderState,
    stats: ReaderStats,
    skipped: Arc<AtomicU64>,
    finished: bool,
}

fn shard_ids(files: &[PathBuf]) -> Result<Vec<ShardId>> {
    files
        .iter()
        .map(|p| {
            let bytes =
                storage::size(p).with_context(|| format!("reading shard {}", p.display()))?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string());
            Ok(ShardId { name, bytes })
        })
        .collect()
}

impl Reader {
    /// Starts reading at the beginning of the data.
    pub fn new(cfg: ReaderConfig) -> Result<Reader> {
        cfg.validate()?;
        let files = cfg.worker_files()?;
        let pos = StreamPosition::beginning(cfg.cycle_length, files.len());
        Self::start(cfg, files, pos, 0)
    }

    /// Continues exactly where `state` (from [`Reader::state`]) was taken. The configuration
    /// must match the one the state was saved with in everything that fixes the order (seed,
    /// shuffle, window, workers, cycle length, shards); batch size may differ.
    pub fn resume(cfg: ReaderConfig, state: ReaderState) -> Result<Reader> {
        cfg.validate()?;
        let files = cfg.worker_files()?;
        let ids = shard_ids(&files)?;
        let mismatch = |what: &str, saved: String, now: String| {
            anyhow!(
                "cannot resume the reader: {what} was {saved} when the state was saved and is \
                 {now} now; resume with the same data and reader settings"
            )
        };
        if state.version != ReaderState::VERSION {
            return Err(mismatch(
                "the state version",
                state.version.to_string(),
                ReaderState::VERSION.to_string(),
            ));
        }
        let pairs = [
            ("the seed", state.seed.to_string(), cfg.seed.to_string()),
            (
                "shuffle",
                state.shuffle.to_string(),
                cfg.shuffle.to_string(),
            ),
            (
                "the shuffle buffer",
                state.shuffle_buffer.to_string(),
                cfg.shuffle_buffer.to_string(),
            ),
            (
                "the worker",
                format!("{} of {}", state.worker_index, state.num_workers),
                format!("{} of {}", cfg.worker_index, cfg.num_workers),
            ),
            (
                "the cycle length",
                state.position.window_start.slots.len().to_string(),
                cfg.cycle_length.clamp(1, files.len()).to_string(),
            ),
        ];
        for (what, saved, now) in pairs {
            if saved != now {
                return Err(mismatch(what, saved, now));
            }
        }
        if state.shards != ids {
            let show = |v: &[ShardId]| {
                v.iter()
                    .map(|s| format!("{} ({} bytes)", s.name, s.bytes))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(mismatch("the shard list", show(&state.shards), show(&ids)));
        }
        let bad_cursor = state
            .position
            .window_start
            .slots
            .iter()
            .flatten()
            .any(|c| c.file >= ids.len() || c.offset > ids[c.file].bytes);
        if bad_cursor {
            return Err(anyhow!(
                "cannot resume the reader: the saved state points outside its shards"
            ));
        }
        let examples = state.examples;
        Self::start(cfg, files, state.position, examples)
    }

    fn start(
        cfg: ReaderConfig,
        files: Vec<PathBuf>,
        pos: StreamPosition,
        examples: u64,
    ) -> Result<Reader> {
        let shards = shard_ids(&files)?;
        let state = ReaderState {
            version: ReaderState::VERSION,
            seed: cfg.seed,
            shuffle: cfg.shuffle,
            shuffle_buffer: cfg.shuffle_buffer,
            worker_index: cfg.worker_index,
            num_workers: cfg.num_workers,
            shards,
            position: pos.clone(),
            examples,
        };
        let skipped = Arc::new(AtomicU64::new(0));
        let spec = StreamSpec {
            files,
            seq_len: cfg.seq_len,
            max_predictions: cfg.max_predictions,
            seed: cfg.seed,
            shuffle: cfg.shuffle,
            shuffle_buffer: cfg.shuffle_buffer,
            cycle_length: cfg.cycle_length,
            on_corrupt: cfg.on_corrupt,
            verify_crc: cfg.verify_crc,
            vocab_size: cfg.vocab_size,
            read_ahead: cfg.batch_size.clamp(64, 4096),
        };
        let (tx, rx) = sync_channel::<Prefetched>(cfg.prefetch_batches.max(1));
        let stream_skipped = skipped.clone();
        let (b, s, p) = (cfg.batch_size, cfg.seq_len, cfg.max_predictions);
        let epochs = cfg.epochs;
        std::thread::Builder::new()
            .name("tpu-run-data-prefetch".into())
            .spawn(move || {
                let mut stream = match WindowedStream::new(spec, pos, epochs, stream_skipped) {
                    Ok(st) => st,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let mut batch = Batch::with_capacity(b, s, p);
                    while !batch.is_full() {
                        match stream.next_example() {
                            Some(Ok(ex)) => batch.push(&ex),
                            Some(Err(e)) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                            None => break,
                        }
                    }
                    if batch.rows() == 0 {
                        return;
                    }
                    let last = !batch.is_full();
                    batch.pad();
                    if tx.send(Ok((batch, stream.position()))).is_err() || last {
                        return;
                    }
                }
            })
            .context("starting the data prefetch thread")?;
        Ok(Reader {
            rx,
            state,
            stats: ReaderStats {
                examples,
                ..Default::default()
            },
            skipped,
            finished: false,
        })
    }

    /// The next batch; `None` at the end of a finite read. After an error the reader is done.
    pub fn next_batch(&mut self) -> Option<Result<Batch>> {
        if self.finished {
            return None;
        }
        match self.rx.recv() {
            Ok(Ok((batch, pos))) => {
                self.state.position = pos;
                self.state.examples += batch.real_rows as u64;
                self.stats.batches += 1;
                self.stats.examples += batch.real_rows as u64;
                Some(Ok(batch))
            }
            Ok(Err(e)) => {
                self.finished = true;
                Some(Err(e.into()))
            }
            Err(_) => {
                self.finished = true;
                None
            }
        }
    }

    /// Position after the last batch returned by [`Reader::next_batch`] (prefetched batches not
    /// yet handed out are not counted).
    pub fn state(&self) -> ReaderState {
        self.state.clone()
    }

    pub fn stats(&self) -> ReaderStats {
        ReaderStats {
            skipped_corrupt: self.skipped.load(Ordering::Relaxed),
            ..self.stats
        }
    }

    /// The shards this reader reads, in file-index order.
    pub fn shard_names(&self) -> Vec<&str> {
        self.state.shards.iter().map(|s| s.name.as_str()).collect()
    }
}

impl Iterator for Reader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

/// Reads every record of one shard in file order (no shuffle, no batching), verifying CRCs:
/// for inspection tools and tests.
pub fn read_shard(
    path: &Path,
    seq_len: usize,
    max_predictions: usize,
) -> Result<Vec<super::example::PretrainingExample>> {
    let mut r = super::tfrecord::RecordReader::open_at(path, 0, true)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        let ex = super::example::PretrainingExample::decode(&rec.data, seq_len, max_predictions)
            .map_err(|reason| DataError::BadExample {
                path: path.to_path_buf(),
                offset: rec.offset,
                reason,
            })?;
        out.push(ex);
    }
    Ok(out)
}

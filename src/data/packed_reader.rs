//! Packing at load time: the reader's examples, in stream order, packed into batches of a fixed
//! number of rows (src/data/packing.rs), with exact resume.
//!
//! The reader hands out small chunks (reader batches of [`chunk_size`] examples). Each batch
//! takes whole chunks, each chunk's examples placed longest first into the first row with room,
//! until a chunk does not fit whole; that chunk is kept for the next batch. So a batch always
//! ends at a chunk boundary of the stream, and [`PackedReader::state`] (the reader's position
//! after the last chunk packed) is exact: a reader resumed from it re-reads the kept chunk, and
//! the resumed run packs the same rows the original would have. Nothing beyond the reader's own
//! state goes into a checkpoint.
use super::batch::{Batch, HostExample};
use super::packing::{decreasing, Footprint, PackLimits, PackedBatch, Packer};
use super::reader::{Reader, ReaderState, ReaderStats};
use anyhow::{anyhow, bail, Result};

/// The largest chunk: each chunk costs a copy of the reader's state, and sorting within a
/// chunk helps first fit a little.
pub const PACK_CHUNK: usize = 8;

/// The reader batch size (examples per chunk) for batches of `rows` packed rows: small against
/// `rows`, since a batch ends at the first chunk that does not fit whole (chunks of a quarter of
/// the rows or more would end most batches after one chunk), and at most [`PACK_CHUNK`].
pub fn chunk_size(rows: usize) -> usize {
    (rows / 32).clamp(1, PACK_CHUNK)
}

/// Batches of packed rows from a [`Reader`] of [`chunk_size`]-example batches.
pub struct PackedReader {
    reader: Reader,
    limits: PackLimits,
    rows: usize,
    /// A chunk read but not packed yet, and the reader's state after it.
    pending: Option<(Vec<HostExample>, ReaderState)>,
    state: ReaderState,
}

impl PackedReader {
    /// Packs `reader`'s examples into batches of `rows` rows within `limits`.
    pub fn new(reader: Reader, limits: PackLimits, rows: usize) -> Result<Self> {
        limits.validate().map_err(|e| anyhow!(e))?;
        if rows == 0 {
            bail!("a packed batch needs at least one row");
        }
        let state = reader.state();
        Ok(Self {
            reader,
            limits,
            rows,
            pending: None,
            state,
        })
    }

    /// The next batch of packed rows (the rest padding when a finite read ends), or `None`
    /// when the data has ended.
    pub fn next_batch(&mut self) -> Result<Option<PackedBatch>> {
        let mut packer = Packer::new(self.limits, self.rows);
        let mut members: Vec<HostExample> = vec![];
        loop {
            let (chunk, after) = match self.pending.take() {
                Some(p) => p,
                None => match self.reader.next_batch() {
                    None => break,
                    Some(batch) => (examples(&batch?), self.reader.state()),
                },
            };
            let fps = chunk
                .iter()
                .map(Footprint::of)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!("packing the training data: {e}"))?;
            let before = packer.clone();
            let base = members.len();
            if !decreasing(&fps)
                .into_iter()
                .all(|i| packer.place(base + i, fps[i]).is_some())
            {
                if members.is_empty() {
                    bail!(
                        "a chunk of {} examples does not fit into {} empty packed rows of \
                         {:?}; the reader's batches must be at most {} examples",
                        chunk.len(),
                        self.rows,
                        self.limits,
                        self.rows
                    );
                }
                packer = before;
                self.pending = Some((chunk, after));
                break;
            }
            members.extend(chunk);
            self.state = after;
        }
        if members.is_empty() {
            return Ok(None);
        }
        let mut batch = PackedBatch::new(self.rows, self.limits);
        for row in packer.rows() {
            let instances: Vec<&HostExample> = row.iter().map(|&i| &members[i]).collect();
            batch.push_row(&instances).map_err(|e| anyhow!(e))?;
        }
        batch.pad();
        Ok(Some(batch))
    }

    /// The reader's position after the last example packed into a returned batch.
    pub fn state(&self) -> ReaderState {
        self.state.clone()
    }

    pub fn stats(&self) -> ReaderStats {
        self.reader.stats()
    }
}

/// The real rows of a reader batch.
fn examples(batch: &Batch) -> Vec<HostExample> {
    (0..batch.real_rows).filter_map(|r| batch.row(r)).collect()
}

//! The data cursor seen from a process: the calls of [`Client`] that open it, take work units
//! from it and report positions to it, and the conversions between the wire messages and the
//! data module's types. The rules live in cursor.rs.
use super::client::Client;
use super::cursor::Cursor;
use super::error::CoordError;
use super::proto;
use super::state::Refusal;
use crate::data::unit_reader::UnitSource;
use crate::data::units::{CursorState, IndexedFile, Piece, UnitTable};
use std::sync::Arc;

/// What process 0 opens the cursor with.
#[derive(Clone, Debug)]
pub struct OpenCursor {
    /// The sorted listing, indexed with `unit_records`.
    pub files: Vec<IndexedFile>,
    pub unit_records: u64,
    pub seed: u64,
    pub shuffle: bool,
    /// The checkpointed cursor to continue from.
    pub resume: Option<CursorState>,
}

pub(super) fn piece_to_wire(p: &Piece) -> proto::WorkUnit {
    proto::WorkUnit {
        epoch: p.epoch,
        pos: p.pos,
        unit: p.unit,
        file: p.file,
        offset: p.offset,
        first: p.first,
        start: p.start,
        end: p.end,
    }
}

fn piece_from_wire(u: &proto::WorkUnit) -> Piece {
    Piece {
        epoch: u.epoch,
        pos: u.pos,
        unit: u.unit,
        file: u.file,
        offset: u.offset,
        first: u.first,
        start: u.start,
        end: u.end,
    }
}

/// The cursor an OpenCursor request describes, for `processes` processes.
pub(super) fn cursor_from_wire(
    r: &proto::OpenCursorRequest,
    processes: u32,
) -> Result<Cursor, Refusal> {
    let files: Vec<IndexedFile> = r
        .files
        .iter()
        .map(|f| IndexedFile {
            name: f.name.clone(),
            bytes: f.bytes,
            records: f.records,
            unit_offsets: f.unit_offsets.clone(),
        })
        .collect();
    let table = UnitTable::new(&files, r.unit_records).map_err(Refusal::invalid_argument)?;
    let resume = if r.resume_state.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice::<CursorState>(&r.resume_state).map_err(|e| {
                Refusal::invalid_argument(format!("the checkpointed data cursor: {e}"))
            })?,
        )
    };
    Cursor::open(table, r.seed, r.shuffle, processes, resume.as_ref())
}

impl Client {
    /// Process 0 opens the run's data cursor (once); the listing's digest and the units of an
    /// epoch.
    pub fn open_cursor(&self, o: &OpenCursor) -> Result<(u64, u64), CoordError> {
        let resume_state = match &o.resume {
            Some(s) => serde_json::to_vec(s)
                .map_err(|e| CoordError::Rejected(format!("the data cursor: {e}")))?,
            None => Vec::new(),
        };
        let req = proto::OpenCursorRequest {
            process_id: self.process_id(),
            files: o
                .files
                .iter()
                .map(|f| proto::IndexedFile {
                    name: f.name.clone(),
                    bytes: f.bytes,
                    records: f.records,
                    unit_offsets: f.unit_offsets.clone(),
                })
                .collect(),
            unit_records: o.unit_records,
            seed: o.seed,
            shuffle: o.shuffle,
            resume_state,
        };
        let r = self.call_now(|mut g| async move { g.open_cursor(req).await })?;
        Ok((r.listing_digest, r.units))
    }

    /// The next (up to `max`) work units of this process, with the listing's digest.
    pub fn next_units(&self, max: u32) -> Result<(Vec<Piece>, u64), CoordError> {
        let req = proto::NextUnitsRequest {
            process_id: self.process_id(),
            max,
        };
        let r = self.call_now(|mut g| async move { g.next_units(req).await })?;
        Ok((
            r.units.iter().map(piece_from_wire).collect(),
            r.listing_digest,
        ))
    }

    /// This process's data position at `step`: `consumed` units read to their end, `records`
    /// of the next.
    pub fn report_position(
        &self,
        step: u64,
        consumed: u64,
        records: u64,
    ) -> Result<(), CoordError> {
        let req = proto::ReportPositionRequest {
            process_id: self.process_id(),
            step,
            consumed,
            records,
        };
        self.call_now(|mut g| async move { g.report_position(req).await })?;
        Ok(())
    }

    /// Process 0: the cursor to checkpoint at `step` (every process has reported at `step`).
    pub fn cursor_snapshot(&self, step: u64) -> Result<CursorState, CoordError> {
        let req = proto::CursorSnapshotRequest {
            process_id: self.process_id(),
            step,
        };
        let r = self.call_now(|mut g| async move { g.cursor_snapshot(req).await })?;
        serde_json::from_slice(&r.state).map_err(|e| {
            CoordError::Rejected(format!("the coordinator's data cursor snapshot: {e}"))
        })
    }
}

/// The coordinator as a process's source of work units, checking that the coordinator's
/// units index the same files this process lists.
pub struct CursorSource {
    client: Arc<Client>,
    digest: u64,
}

impl CursorSource {
    /// `digest`: [`crate::data::units::listing_digest`] of this process's sorted file names.
    pub fn new(client: Arc<Client>, digest: u64) -> CursorSource {
        CursorSource { client, digest }
    }
}

impl UnitSource for CursorSource {
    fn next_units(&self, max: u32) -> anyhow::Result<Vec<Piece>> {
        let (pieces, digest) = self.client.next_units(max)?;
        if digest != self.digest {
            anyhow::bail!(
                "process {}: the coordinator's work units index other training files than this \
                 process lists (listing digests {digest:016x} and {:016x}); give every process \
                 the same --data",
                self.client.process_id(),
                self.digest
            );
        }
        Ok(pieces)
    }
}

/// The cursor without the network: a single-process run that continues a checkpoint of a
/// multi-process run keeps its data position in a cursor of its own, with the same rules.
pub struct LocalCursor {
    cursor: std::sync::Mutex<Cursor>,
    digest: u64,
}

fn local_error(r: Refusal) -> CoordError {
    CoordError::from_status(r.into(), "(none: the local data cursor)")
}

impl LocalCursor {
    pub fn open(o: &OpenCursor) -> Result<LocalCursor, CoordError> {
        let table = UnitTable::new(&o.files, o.unit_records).map_err(CoordError::Rejected)?;
        let cursor =
            Cursor::open(table, o.seed, o.shuffle, 1, o.resume.as_ref()).map_err(local_error)?;
        Ok(LocalCursor {
            digest: cursor.digest(),
            cursor: std::sync::Mutex::new(cursor),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cursor> {
        // The cursor's rules leave it consistent after any single call.
        self.cursor.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn report(&self, step: u64, consumed: u64, records: u64) -> Result<(), CoordError> {
        self.lock()
            .report(0, step, consumed, records)
            .map_err(local_error)
    }

    pub fn snapshot(&self, step: u64) -> Result<CursorState, CoordError> {
        self.lock().snapshot(step).map_err(local_error)
    }

    /// The digest of the listing the cursor's units index.
    pub fn digest(&self) -> u64 {
        self.digest
    }
}

impl UnitSource for LocalCursor {
    fn next_units(&self, max: u32) -> anyhow::Result<Vec<Piece>> {
        Ok(self.lock().next_units(0, max).map_err(local_error)?)
    }
}

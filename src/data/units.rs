//! Work units of the training data, as the coordinator hands them out in a multi-process run
//! (src/coord/cursor.rs): a unit is a range of at most `unit_records` consecutive records of one
//! file of the sorted listing (file `f`'s units start at records 0, u, 2u, ...). The units of
//! epoch `e` are visited in a seeded shuffle of (seed, e), the same on every process and after
//! every resume, so the order depends on the data and the seed alone, never on how many
//! processes read it.
//!
//! A [`Piece`] is what a process is handed: a unit, or the rest of one from a saved position,
//! with the byte offset of the unit's first record so the reader seeks instead of scanning.
//! [`CursorState`] is the checkpointed cursor: where the epoch's order stands and the pieces
//! that were handed out but not consumed by the checkpointed step.
use super::error::DataError;
use super::pyrandom::PyRandom;
use super::shard_stream::OnCorrupt;
use super::tfrecord::RecordReader;
use crate::rng::splitmix64;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Records of a unit unless `data.unit_records` says otherwise: small enough that the
/// processes' shares stay balanced and a resume re-reads little, large enough that asking the
/// coordinator costs nothing next to reading.
pub const DEFAULT_UNIT_RECORDS: u64 = 256;

/// One file of the sorted listing, indexed for units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedFile {
    /// The file name (without directories), as the reader's saved states name shards.
    pub name: String,
    pub bytes: u64,
    /// Readable records (with `--skip-corrupt`, those before any damaged framing).
    pub records: u64,
    /// The byte offset of record `k * unit_records`, for each unit `k` of the file.
    pub unit_offsets: Vec<u64>,
}

/// Counts the records of `path` and notes where each unit starts, reading only the framing.
/// Damaged framing stops with the error (naming file and offset), or with `OnCorrupt::Skip`
/// ends the file there, as the reader does.
pub fn index_file(
    path: &Path,
    unit_records: u64,
    on_corrupt: OnCorrupt,
) -> Result<IndexedFile, DataError> {
    let unit_records = unit_records.max(1);
    let mut r = RecordReader::open_at(path, 0, false)?;
    let mut records = 0u64;
    let mut unit_offsets = Vec::new();
    loop {
        match r.skip_record() {
            Ok(None) => break,
            Ok(Some(at)) => {
                if records.is_multiple_of(unit_records) {
                    unit_offsets.push(at);
                }
                records += 1;
            }
            Err(e) if e.is_corruption() && on_corrupt == OnCorrupt::Skip => {
                tracing::warn!("indexing for work units: the rest of the file is skipped: {e}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let bytes = crate::storage::size(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        offset: 0,
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(IndexedFile {
        name,
        bytes,
        records,
        unit_offsets,
    })
}

/// One unit: `records` records of file `file` from record `first`, whose framing starts at
/// byte `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    pub file: u32,
    pub first: u64,
    pub records: u64,
    pub offset: u64,
}

/// A file as a checkpoint records it (to refuse a resume on changed data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub records: u64,
}

/// Every unit of the listing, file by file.
#[derive(Clone, Debug)]
pub struct UnitTable {
    unit_records: u64,
    files: Vec<FileEntry>,
    units: Vec<Unit>,
}

impl UnitTable {
    /// The units of `files` (the sorted listing, indexed with the same `unit_records`). An
    /// error when the offsets do not match the counts, or when no file holds a record.
    pub fn new(files: &[IndexedFile], unit_records: u64) -> Result<UnitTable, String> {
        if unit_records == 0 {
            return Err("data.unit_records must be at least 1".into());
        }
        let mut units = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let file = u32::try_from(i).map_err(|_| "more than 2^32 input files".to_string())?;
            if f.unit_offsets.len() as u64 != f.records.div_ceil(unit_records) {
                return Err(format!(
                    "file {} ({} records) comes with {} unit offsets for units of {unit_records} \
                     records",
                    f.name,
                    f.records,
                    f.unit_offsets.len()
                ));
            }
            for (k, &offset) in f.unit_offsets.iter().enumerate() {
                let first = k as u64 * unit_records;
                units.push(Unit {
                    file,
                    first,
                    records: unit_records.min(f.records - first),
                    offset,
                });
            }
        }
        if units.is_empty() {
            return Err(format!(
                "the {} training file(s) hold no records",
                files.len()
            ));
        }
        Ok(UnitTable {
            unit_records,
            files: files
                .iter()
                .map(|f| FileEntry {
                    name: f.name.clone(),
                    bytes: f.bytes,
                    records: f.records,
                })
                .collect(),
            units,
        })
    }

    pub fn unit_records(&self) -> u64 {
        self.unit_records
    }

    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    pub fn len(&self) -> u64 {
        self.units.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    pub fn unit(&self, u: u64) -> Option<&Unit> {
        usize::try_from(u).ok().and_then(|u| self.units.get(u))
    }

    /// The units of `epoch` in the order they are handed out.
    pub fn order(&self, seed: u64, shuffle: bool, epoch: u64) -> Vec<u64> {
        let mut order: Vec<u64> = (0..self.len()).collect();
        if shuffle {
            // A stream of its own: distinct from the reader's shard and window shuffles.
            PyRandom::new(splitmix64(seed ^ splitmix64(epoch)) ^ splitmix64(0x756e_6974))
                .shuffle(&mut order);
        }
        order
    }

    /// A 64-bit digest (FNV-1a) of the listing: names, sizes, record counts and unit size.
    /// Every process compares its own listing's names against the coordinator's through it.
    pub fn digest(&self) -> u64 {
        listing_digest(self.files.iter().map(|f| f.name.as_str()))
    }
}

/// FNV-1a over the names of a sorted listing, so that each process can check that the
/// coordinator's units index the same files it lists.
pub fn listing_digest<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for n in names {
        for b in n.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// What a process is handed: records `start..end` of unit `unit` (position `pos` of epoch
/// `epoch`'s order), in file `file`, whose first record `first` starts at byte `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub epoch: u64,
    pub pos: u64,
    pub unit: u64,
    pub file: u32,
    pub offset: u64,
    pub first: u64,
    pub start: u64,
    pub end: u64,
}

impl Piece {
    /// The whole of unit `unit` (at `pos` of `epoch`'s order).
    pub fn whole(epoch: u64, pos: u64, unit: u64, u: &Unit) -> Piece {
        Piece {
            epoch,
            pos,
            unit,
            file: u.file,
            offset: u.offset,
            first: u.first,
            start: u.first,
            end: u.first + u.records,
        }
    }

    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Records `start..end` of the unit at position `pos` of epoch `epoch`: not consumed by the
/// checkpointed step, handed out again first on resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub epoch: u64,
    pub pos: u64,
    pub start: u64,
    pub end: u64,
}

/// The coordinator's data cursor in a checkpoint (`data_position.cursor`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    pub version: u32,
    pub seed: u64,
    pub shuffle: bool,
    pub unit_records: u64,
    /// The sorted listing the units index.
    pub files: Vec<FileEntry>,
    /// The epoch whose order is being handed out, and the next position in it.
    pub epoch: u64,
    pub next: u64,
    /// Pieces handed out before but not consumed by the checkpointed step, in (epoch, pos)
    /// order.
    pub pending: Vec<Pending>,
}

impl CursorState {
    pub const VERSION: u32 = 1;
}

/// An example's identity: the record index in a file of the sorted listing, and the epoch it
/// was read in (for accounting: every example once per epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExampleId {
    pub epoch: u64,
    pub file: u32,
    pub record: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexed(name: &str, records: u64, unit: u64) -> IndexedFile {
        IndexedFile {
            name: name.into(),
            bytes: records * 100,
            records,
            unit_offsets: (0..records.div_ceil(unit))
                .map(|k| k * unit * 100)
                .collect(),
        }
    }

    #[test]
    fn units_cover_every_record_once_and_epochs_shuffle_them() {
        let files = [indexed("a", 7, 3), indexed("b", 0, 3), indexed("c", 6, 3)];
        let t = UnitTable::new(&files, 3).unwrap();
        let got: Vec<(u32, u64, u64)> = (0..t.len())
            .map(|u| {
                let x = t.unit(u).unwrap();
                (x.file, x.first, x.records)
            })
            .collect();
        assert_eq!(got, [(0, 0, 3), (0, 3, 3), (0, 6, 1), (2, 0, 3), (2, 3, 3)]);
        assert_eq!(t.unit(3).unwrap().offset, 0);
        assert_eq!(t.unit(1).unwrap().offset, 300);
        let e0 = t.order(7, true, 0);
        let mut sorted = e0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..5).collect::<Vec<_>>());
        assert_eq!(
            e0,
            t.order(7, true, 0),
            "an epoch's order is fixed by the seed"
        );
        let epochs: std::collections::BTreeSet<Vec<u64>> =
            (0..6).map(|e| t.order(7, true, e)).collect();
        assert!(epochs.len() > 1, "epochs are shuffled differently");
        assert_eq!(t.order(7, false, 3), (0..5).collect::<Vec<_>>());
    }

    #[test]
    fn bad_tables_are_refused() {
        let e = UnitTable::new(&[indexed("a", 0, 2)], 2).unwrap_err();
        assert!(e.contains("hold no records"), "{e}");
        let e = UnitTable::new(&[indexed("a", 5, 2)], 3).unwrap_err();
        assert!(e.contains("file a") && e.contains("3 records"), "{e}");
        assert!(UnitTable::new(&[indexed("a", 5, 2)], 0).is_err());
        assert_ne!(listing_digest(["a", "bc"]), listing_digest(["ab", "c"]));
    }

    #[test]
    fn indexing_finds_each_unit_s_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.tfrecord");
        let mut w = super::super::tfrecord::RecordWriter::create(&path).unwrap();
        let mut starts = Vec::new();
        for i in 0..7u8 {
            starts.push(w.bytes());
            w.write_record(&vec![i; 10 + usize::from(i)]).unwrap();
        }
        w.finish().unwrap();
        let f = index_file(&path, 3, OnCorrupt::Stop).unwrap();
        assert_eq!(f.records, 7);
        assert_eq!(f.unit_offsets, vec![starts[0], starts[3], starts[6]]);
        assert_eq!(f.name, "part.tfrecord");
        // A file cut in its last record: an error naming it, or its readable records.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let e = index_file(&path, 3, OnCorrupt::Stop).unwrap_err();
        assert!(e.to_string().contains("part.tfrecord"), "{e}");
        let f = index_file(&path, 3, OnCorrupt::Skip).unwrap();
        assert_eq!((f.records, f.unit_offsets.len()), (6, 2));
    }
}

//! The data cursor of a multi-process run, kept by the coordinator: the run's work units
//! (src/data/units.rs) handed out in their epoch order to whichever process asks next, so the
//! split follows consumption, not file counts.
//!
//! Rules:
//! - A process consumes its pieces in the order it was handed them, and reports its position
//!   at a step as (pieces fully consumed since it joined, records consumed of the next one).
//!   A report drops the pieces it covers: they are part of every later checkpoint's past.
//! - The snapshot at step S needs every process's report at S. It is the checkpointed cursor:
//!   the epoch order's next position, plus every piece handed out but not consumed by S (the
//!   rest of each process's current piece, the pieces it read ahead, pieces waiting to be
//!   handed out again), in (epoch, position) order.
//! - Opened from a snapshot, the cursor hands those pending pieces out first, then goes on in
//!   the order: with any number of processes, no record consumed by step S is read again and
//!   none after it is lost.
use super::state::Refusal;
use crate::data::units::{CursorState, FileEntry, Pending, Piece, UnitTable};
use std::collections::{BTreeMap, VecDeque};

/// Most pieces one request hands out.
pub const MAX_PIECES_PER_CALL: u32 = 64;
/// Most pieces a process may hold between two reports of its position (a bound on what a
/// process can make the coordinator remember; reports come at least with every checkpoint).
pub const MAX_HELD: usize = 1 << 16;

/// What one process was handed and has not reported consumed.
#[derive(Default)]
struct Held {
    /// Pieces handed to the process before `pieces[0]` (all consumed).
    base: u64,
    pieces: VecDeque<Piece>,
    /// The latest report: (step, records consumed of `pieces[0]`).
    report: Option<(u64, u64)>,
}

pub(crate) struct Cursor {
    table: UnitTable,
    seed: u64,
    shuffle: bool,
    epoch: u64,
    order: Vec<u64>,
    next: u64,
    /// Pieces to hand out before the order goes on (a resumed run's pending pieces).
    requeued: VecDeque<Piece>,
    held: Vec<Held>,
}

fn bad(m: String) -> Refusal {
    Refusal::invalid_argument(m)
}

impl Cursor {
    /// A cursor over `table` for `num_processes` processes, from the start or from `resume`
    /// (a snapshot of a run over the same listing with the same seed and unit size).
    pub fn open(
        table: UnitTable,
        seed: u64,
        shuffle: bool,
        num_processes: u32,
        resume: Option<&CursorState>,
    ) -> Result<Cursor, Refusal> {
        let mut c = Cursor {
            order: table.order(seed, shuffle, 0),
            table,
            seed,
            shuffle,
            epoch: 0,
            next: 0,
            requeued: VecDeque::new(),
            held: (0..num_processes).map(|_| Held::default()).collect(),
        };
        if let Some(s) = resume {
            c.resume(s)?;
        }
        Ok(c)
    }

    fn resume(&mut self, s: &CursorState) -> Result<(), Refusal> {
        let refuse = |what: &str, saved: String, now: String| {
            bad(format!(
                "the checkpointed data cursor does not fit this run: {what} was {saved} and is \
                 {now} now; resume with the data and settings of the checkpoint"
            ))
        };
        if s.version != CursorState::VERSION {
            return Err(refuse(
                "its version",
                s.version.to_string(),
                CursorState::VERSION.to_string(),
            ));
        }
        if s.seed != self.seed {
            return Err(refuse(
                "the seed",
                s.seed.to_string(),
                self.seed.to_string(),
            ));
        }
        if s.shuffle != self.shuffle {
            return Err(refuse(
                "shuffle",
                s.shuffle.to_string(),
                self.shuffle.to_string(),
            ));
        }
        if s.unit_records != self.table.unit_records() {
            return Err(refuse(
                "data.unit_records",
                s.unit_records.to_string(),
                self.table.unit_records().to_string(),
            ));
        }
        if s.files != self.table.files() {
            return Err(refuse(
                "the training file listing",
                describe_difference(&s.files, self.table.files()),
                format!("{} file(s)", self.table.files().len()),
            ));
        }
        if s.next > self.table.len() {
            return Err(bad(format!(
                "the checkpointed data cursor is at unit {} of an epoch of {}",
                s.next,
                self.table.len()
            )));
        }
        let mut orders: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let mut pieces = Vec::with_capacity(s.pending.len());
        for p in &s.pending {
            let order = orders
                .entry(p.epoch)
                .or_insert_with(|| self.table.order(self.seed, self.shuffle, p.epoch));
            let unit = usize::try_from(p.pos)
                .ok()
                .and_then(|i| order.get(i))
                .copied();
            let whole = unit.and_then(|u| Some((u, self.table.unit(u)?)));
            let Some((u, whole)) = whole else {
                return Err(bad(format!(
                    "a pending piece of the checkpointed data cursor is at position {} of \
                     epoch {}, which has {} units",
                    p.pos,
                    p.epoch,
                    self.table.len()
                )));
            };
            let mut piece = Piece::whole(p.epoch, p.pos, u, whole);
            if p.start < piece.start || p.end > piece.end || p.start >= p.end {
                return Err(bad(format!(
                    "a pending piece of the checkpointed data cursor (records {}..{}) is not \
                     inside its unit (records {}..{} of file {})",
                    p.start, p.end, piece.start, piece.end, whole.file
                )));
            }
            piece.start = p.start;
            piece.end = p.end;
            pieces.push(piece);
        }
        self.epoch = s.epoch;
        self.order = self.table.order(self.seed, self.shuffle, s.epoch);
        self.next = s.next;
        self.requeued = pieces.into();
        Ok(())
    }

    pub fn digest(&self) -> u64 {
        self.table.digest()
    }

    pub fn units(&self) -> u64 {
        self.table.len()
    }

    fn held(&mut self, p: u32) -> Result<&mut Held, Refusal> {
        let n = self.held.len();
        self.held.get_mut(p as usize).ok_or_else(|| {
            bad(format!(
                "process {p} is not one of the cursor's {n} processes"
            ))
        })
    }

    /// The next `max` pieces (at least one, at most [`MAX_PIECES_PER_CALL`]) for process `p`:
    /// pieces to hand out again first, then the epoch order (the next epoch after the last).
    pub fn next_units(&mut self, p: u32, max: u32) -> Result<Vec<Piece>, Refusal> {
        let n = max.clamp(1, MAX_PIECES_PER_CALL) as usize;
        let holding = self.held(p)?.pieces.len();
        if holding + n > MAX_HELD {
            return Err(Refusal::resource_exhausted(format!(
                "process {p} holds {holding} work units it has not reported consumed, the \
                 limit is {MAX_HELD}: it must report its position (every checkpoint does); \
                 checkpoint more often or raise data.unit_records"
            )));
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if let Some(piece) = self.requeued.pop_front() {
                out.push(piece);
                continue;
            }
            if self.next >= self.order.len() as u64 {
                self.epoch += 1;
                self.order = self.table.order(self.seed, self.shuffle, self.epoch);
                self.next = 0;
            }
            let pos = self.next;
            let unit = self.order[pos as usize];
            let whole = self
                .table
                .unit(unit)
                .ok_or_else(|| Refusal::internal(format!("unit {unit} is not in the table")))?;
            out.push(Piece::whole(self.epoch, pos, unit, whole));
            self.next += 1;
        }
        self.held(p)?.pieces.extend(out.iter().copied());
        Ok(out)
    }

    /// Process `p` has consumed, by step `step`, its first `consumed` pieces and `records`
    /// records of the next one.
    pub fn report(
        &mut self,
        p: u32,
        step: u64,
        consumed: u64,
        records: u64,
    ) -> Result<(), Refusal> {
        let h = self.held(p)?;
        if let Some((last, _)) = h.report {
            if step < last {
                return Err(bad(format!(
                    "process {p} reports its data position at step {step} after one at step \
                     {last}: steps only go forward"
                )));
            }
        }
        let handed = h.base + h.pieces.len() as u64;
        if consumed < h.base || consumed > handed {
            return Err(bad(format!(
                "process {p} reports {consumed} work units consumed; it had reported {} and \
                 was handed {handed}",
                h.base
            )));
        }
        let i = (consumed - h.base) as usize;
        let room = h.pieces.get(i).map_or(0, Piece::len);
        if records > room || (records > 0 && records == room) {
            return Err(bad(format!(
                "process {p} reports {records} records consumed of its work unit #{consumed}, \
                 which has {room} (a unit read to its end counts as consumed)"
            )));
        }
        h.pieces.drain(..i);
        h.base = consumed;
        h.report = Some((step, records));
        Ok(())
    }

    /// The checkpointed cursor at `step`; every process must have reported its position at
    /// `step`.
    pub fn snapshot(&self, step: u64) -> Result<CursorState, Refusal> {
        let mut pending = Vec::new();
        for (p, h) in self.held.iter().enumerate() {
            let records = match h.report {
                Some((s, r)) if s == step => r,
                other => {
                    let last = other.map_or("none".to_string(), |(s, _)| format!("step {s}"));
                    return Err(Refusal::failed_precondition(format!(
                        "the data cursor's snapshot at step {step} needs every process's \
                         position at that step; process {p} reported none (its last: {last})"
                    )));
                }
            };
            for (k, piece) in h.pieces.iter().enumerate() {
                let start = if k == 0 {
                    piece.start + records
                } else {
                    piece.start
                };
                pending.push(Pending {
                    epoch: piece.epoch,
                    pos: piece.pos,
                    start,
                    end: piece.end,
                });
            }
        }
        pending.extend(self.requeued.iter().map(|piece| Pending {
            epoch: piece.epoch,
            pos: piece.pos,
            start: piece.start,
            end: piece.end,
        }));
        pending.retain(|p| p.start < p.end);
        pending.sort_by_key(|p| (p.epoch, p.pos, p.start));
        Ok(CursorState {
            version: CursorState::VERSION,
            seed: self.seed,
            shuffle: self.shuffle,
            unit_records: self.table.unit_records(),
            files: self.table.files().to_vec(),
            epoch: self.epoch,
            next: self.next,
            pending,
        })
    }
}

/// The first difference between a saved listing and this run's, for the error message.
fn describe_difference(saved: &[FileEntry], now: &[FileEntry]) -> String {
    let show = |f: &FileEntry| format!("{} ({} bytes, {} records)", f.name, f.bytes, f.records);
    for (i, s) in saved.iter().enumerate() {
        match now.get(i) {
            Some(n) if n == s => {}
            Some(n) => return format!("file #{i} {} (now {})", show(s), show(n)),
            None => return format!("{} file(s), file #{i} {}", saved.len(), show(s)),
        }
    }
    format!(
        "{} file(s) (this run has more: file #{} is new)",
        saved.len(),
        saved.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::units::IndexedFile;
    use std::collections::BTreeMap;

    /// Files of 7, 5 and 9 records in units of 3: units of 3,3,1 / 3,2 / 3,3,3.
    fn table() -> UnitTable {
        let f = |name: &str, records: u64| IndexedFile {
            name: name.into(),
            bytes: records * 10,
            records,
            unit_offsets: (0..records.div_ceil(3)).map(|k| k * 30).collect(),
        };
        UnitTable::new(&[f("a", 7), f("b", 5), f("c", 9)], 3).unwrap()
    }

    /// A process that consumes its pieces in order, a record at a time.
    struct Proc {
        pieces: VecDeque<Piece>,
        consumed: u64,
        records: u64,
    }

    impl Proc {
        fn new() -> Proc {
            Proc {
                pieces: VecDeque::new(),
                consumed: 0,
                records: 0,
            }
        }

        /// Takes `n` records, asking for pieces `ahead` at a time; their (epoch, file, record).
        fn take(&mut self, c: &mut Cursor, p: u32, n: usize, ahead: u32) -> Vec<(u64, u32, u64)> {
            let mut out = Vec::new();
            while out.len() < n {
                if self.pieces.is_empty() {
                    self.pieces.extend(c.next_units(p, ahead).unwrap());
                }
                let piece = self.pieces[0];
                out.push((piece.epoch, piece.file, piece.start + self.records));
                self.records += 1;
                if self.records == piece.len() {
                    self.pieces.pop_front();
                    self.consumed += 1;
                    self.records = 0;
                }
            }
            out
        }

        fn report(&self, c: &mut Cursor, p: u32, step: u64) {
            c.report(p, step, self.consumed, self.records).unwrap();
        }
    }

    /// Every example once per epoch: counts of (epoch, file, record).
    fn counts(ids: &[(u64, u32, u64)]) -> BTreeMap<(u64, u32, u64), u32> {
        let mut m = BTreeMap::new();
        for id in ids {
            *m.entry(*id).or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn a_resumed_cursor_with_other_process_counts_loses_and_repeats_nothing() {
        // 21 records an epoch; 3 processes take 2 records a step, reading ahead 2 pieces.
        let mut c = Cursor::open(table(), 5, true, 3, None).unwrap();
        let mut procs: Vec<Proc> = (0..3).map(|_| Proc::new()).collect();
        let mut kept = Vec::new();
        for _step in 1..=3 {
            for (p, pr) in procs.iter_mut().enumerate() {
                kept.extend(pr.take(&mut c, p as u32, 2, 2));
            }
        }
        for (p, pr) in procs.iter().enumerate() {
            pr.report(&mut c, p as u32, 3);
        }
        let s3 = c.snapshot(3).unwrap();
        // Consumed after the checkpoint, then lost with the processes: not kept.
        for (p, pr) in procs.iter_mut().enumerate() {
            pr.take(&mut c, p as u32, 2, 2);
        }
        let json = serde_json::to_string(&s3).unwrap();
        let s3: CursorState = serde_json::from_str(&json).unwrap();

        // Resumed with 2 processes taking 3 records a step.
        let mut c = Cursor::open(table(), 5, true, 2, Some(&s3)).unwrap();
        let mut procs: Vec<Proc> = (0..2).map(|_| Proc::new()).collect();
        for _step in 4..=6 {
            for (p, pr) in procs.iter_mut().enumerate() {
                kept.extend(pr.take(&mut c, p as u32, 3, 3));
            }
        }
        for (p, pr) in procs.iter().enumerate() {
            pr.report(&mut c, p as u32, 6);
        }
        let s6 = c.snapshot(6).unwrap();

        // Resumed with 4 processes, 3 records each a step, reading one piece at a time.
        let mut c = Cursor::open(table(), 5, true, 4, Some(&s6)).unwrap();
        let mut procs: Vec<Proc> = (0..4).map(|_| Proc::new()).collect();
        for _step in 7..=8 {
            for (p, pr) in procs.iter_mut().enumerate() {
                kept.extend(pr.take(&mut c, p as u32, 3, 1));
            }
        }
        // 18 + 18 + 24 = 60 records: epochs 0 and 1 whole (42), 18 of epoch 2, none twice.
        assert_eq!(kept.len(), 60);
        let counts = counts(&kept);
        assert!(counts.values().all(|&n| n == 1), "a record read twice");
        for epoch in 0..2 {
            assert_eq!(counts.keys().filter(|k| k.0 == epoch).count(), 21);
        }
        assert_eq!(counts.keys().filter(|k| k.0 == 2).count(), 18);
    }

    #[test]
    fn reports_and_snapshots_are_checked() {
        let mut c = Cursor::open(table(), 1, false, 2, None).unwrap();
        let got = c.next_units(0, 2).unwrap();
        assert_eq!((got[0].file, got[0].start, got[0].end), (0, 0, 3));
        assert_eq!((got[1].file, got[1].start, got[1].end), (0, 3, 6));
        let e = c.report(0, 1, 3, 0).unwrap_err();
        assert!(e.message().contains("was handed 2"), "{e}");
        let e = c.report(0, 1, 0, 3).unwrap_err();
        assert!(e.message().contains("counts as consumed"), "{e}");
        c.report(0, 2, 1, 1).unwrap();
        let e = c.report(0, 1, 1, 1).unwrap_err();
        assert!(e.message().contains("steps only go forward"), "{e}");
        let e = c.report(0, 3, 0, 0).unwrap_err();
        assert!(e.message().contains("it had reported 1"), "{e}");
        let e = c.snapshot(2).unwrap_err();
        assert!(e.message().contains("process 1 reported none"), "{e}");
        c.report(1, 2, 0, 0).unwrap();
        let s = c.snapshot(2).unwrap();
        // Process 0 read 1 of the second unit: the rest of it is pending.
        assert_eq!(
            s.pending,
            vec![Pending {
                epoch: 0,
                pos: 1,
                start: 4,
                end: 6
            }]
        );
        assert_eq!((s.epoch, s.next), (0, 2));
        assert!(c.next_units(7, 1).is_err());
    }

    #[test]
    fn a_snapshot_of_other_data_or_settings_is_refused() {
        let mut c = Cursor::open(table(), 1, true, 1, None).unwrap();
        c.next_units(0, 1).unwrap();
        c.report(0, 1, 0, 1).unwrap();
        let s = c.snapshot(1).unwrap();
        for (seed, shuffle) in [(2, true), (1, false)] {
            let e = Cursor::open(table(), seed, shuffle, 1, Some(&s))
                .err()
                .unwrap();
            assert!(e.message().contains("does not fit this run"), "{e}");
        }
        let mut other = s.clone();
        other.files[1].records = 6;
        let e = Cursor::open(table(), 1, true, 1, Some(&other))
            .err()
            .unwrap();
        assert!(
            e.message()
                .contains("file #1 b (50 bytes, 6 records) (now b (50 bytes, 5 records))"),
            "{e}"
        );
        let mut other = s.clone();
        other.pending[0].end = 99;
        let e = Cursor::open(table(), 1, true, 1, Some(&other))
            .err()
            .unwrap();
        assert!(e.message().contains("not inside its unit"), "{e}");
        let mut other = s;
        other.pending[0].pos = 99;
        let e = Cursor::open(table(), 1, true, 1, Some(&other))
            .err()
            .unwrap();
        assert!(e.message().contains("position 99"), "{e}");
    }
}

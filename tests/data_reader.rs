//! The training reader: order (round-robin interleave, seeded shuffle, epochs), worker split,
//! fixed-shape batches with padding, exact resume from a saved state, damaged shards (stop or
//! skip-and-count), and shards written by TensorFlow.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tpu_run::data::example::PretrainingExample;
use tpu_run::data::reader::read_shard;
use tpu_run::data::tfrecord::RecordWriter;
use tpu_run::data::{Batch, OnCorrupt, Reader, ReaderConfig, ReaderState};

const SEQ: usize = 16;
const PREDS: usize = 4;

/// Record ids are stored in input_ids[1]: shard * 1000 + index + 1000.
fn example(id: i64, salt: i64) -> PretrainingExample {
    let n = 6 + (id % 9) as usize;
    let mut input_ids = vec![0i64; SEQ];
    input_ids[0] = 101;
    input_ids[1] = id;
    for (i, t) in input_ids.iter_mut().enumerate().take(n - 1).skip(2) {
        *t = 1000 + (id * 7 + i as i64 * 13 + salt) % 29000;
    }
    input_ids[n - 1] = 102;
    let mut input_mask = vec![0i64; SEQ];
    input_mask[..n].fill(1);
    let mut segment_ids = vec![0i64; SEQ];
    segment_ids[n / 2..n].fill(1);
    PretrainingExample {
        input_ids,
        input_mask,
        segment_ids,
        masked_lm_positions: vec![2, 3, 0, 0],
        masked_lm_ids: vec![id % 30000, (id + 1) % 30000, 0, 0],
        masked_lm_weights: vec![1.0, 1.0, 0.0, 0.0],
        next_sentence_label: id % 2,
    }
}

fn make_shards(dir: &Path, counts: &[usize]) -> Vec<PathBuf> {
    counts
        .iter()
        .enumerate()
        .map(|(s, &n)| {
            let p = dir.join(format!("shard-{s:03}.tfrecord"));
            let mut w = RecordWriter::create(&p).unwrap();
            for i in 0..n {
                w.write_record(&example(1000 * (s as i64 + 1) + i as i64, 0).encode())
                    .unwrap();
            }
            w.finish().unwrap();
            p
        })
        .collect()
}

fn cfg(files: Vec<PathBuf>, batch: usize) -> ReaderConfig {
    ReaderConfig::new(files, batch, SEQ, PREDS)
}

fn ids(b: &Batch) -> Vec<i64> {
    (0..b.real_rows)
        .map(|r| i64::from(b.input_ids[r * SEQ + 1]))
        .collect()
}

fn take(reader: &mut Reader, n: usize) -> Vec<Batch> {
    (0..n)
        .map(|_| reader.next_batch().unwrap().unwrap())
        .collect()
}

fn all_ids(counts: &[usize]) -> Vec<i64> {
    counts
        .iter()
        .enumerate()
        .flat_map(|(s, &n)| (0..n).map(move |i| 1000 * (s as i64 + 1) + i as i64))
        .collect()
}

#[test]
fn one_epoch_in_file_order_with_padded_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let counts = [5, 3, 4];
    let files = make_shards(dir.path(), &counts);
    let mut c = cfg(files.iter().rev().cloned().collect(), 5); // sorted by the reader
    c.shuffle = false;
    c.cycle_length = 1;
    c.epochs = Some(1);
    let batches: Vec<Batch> = Reader::new(c).unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 3);
    let got: Vec<i64> = batches.iter().flat_map(ids).collect();
    assert_eq!(got, all_ids(&counts));
    for b in &batches {
        assert_eq!(b.input_ids.len(), 5 * SEQ);
        assert_eq!(b.input_mask.len(), 5 * SEQ);
        assert_eq!(b.segment_ids.len(), 5 * SEQ);
        assert_eq!(b.masked_lm_positions.len(), 5 * PREDS);
        assert_eq!(b.masked_lm_ids.len(), 5 * PREDS);
        assert_eq!(b.masked_lm_weights.len(), 5 * PREDS);
        assert_eq!(b.next_sentence_labels.len(), 5);
    }
    // Every row equals the stored example, narrowed to i32/f32.
    let first = &batches[0];
    let ex = example(1000, 0);
    let row = first.row(0).unwrap();
    assert_eq!(
        row.input_ids,
        ex.input_ids.iter().map(|&v| v as i32).collect::<Vec<_>>()
    );
    assert_eq!(
        row.segment_ids,
        ex.segment_ids.iter().map(|&v| v as i32).collect::<Vec<_>>()
    );
    assert_eq!(row.masked_lm_weights, ex.masked_lm_weights);
    assert_eq!(row.next_sentence_label, 0);
    // 12 records in batches of 5: the last has 2 rows and 3 zero rows.
    let last = &batches[2];
    assert_eq!(last.real_rows, 2);
    assert!(last.input_ids[2 * SEQ..].iter().all(|&v| v == 0));
    assert!(last.input_mask[2 * SEQ..].iter().all(|&v| v == 0));
    assert!(last.masked_lm_weights[2 * PREDS..]
        .iter()
        .all(|&v| v == 0.0));
}

#[test]
fn interleaves_shards_round_robin_and_refills_slots() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), &[3, 1, 2]);
    let mut c = cfg(files, 1);
    c.shuffle = false;
    c.cycle_length = 2;
    c.epochs = Some(1);
    let got: Vec<i64> = Reader::new(c)
        .unwrap()
        .flat_map(|b| ids(&b.unwrap()))
        .collect();
    // Slots: 0 <- shard 0, 1 <- shard 1; shard 1 ends after one record and slot 1 takes shard 2.
    assert_eq!(got, vec![1000, 2000, 1001, 3000, 1002, 3001]);
}

#[test]
fn shuffled_epochs_are_seeded_permutations() {
    let dir = tempfile::tempdir().unwrap();
    let counts = [50, 37, 0, 61, 44];
    let files = make_shards(dir.path(), &counts);
    let total: usize = counts.iter().sum();
    let run = |seed: u64, shuffle: bool| -> Vec<i64> {
        let mut c = cfg(files.clone(), 8);
        c.seed = seed;
        c.shuffle = shuffle;
        c.shuffle_buffer = 32;
        c.cycle_length = 3;
        c.epochs = Some(2);
        Reader::new(c)
            .unwrap()
            .flat_map(|b| ids(&b.unwrap()))
            .collect()
    };
    let a = run(1, true);
    assert_eq!(a.len(), 2 * total);
    let expected: HashSet<i64> = all_ids(&counts).into_iter().collect();
    let (e0, e1) = a.split_at(total);
    for e in [e0, e1] {
        let set: HashSet<i64> = e.iter().copied().collect();
        assert_eq!(set, expected, "each epoch sees every record once");
    }
    assert_ne!(e0, e1, "epochs are shuffled differently");
    assert_eq!(a, run(1, true));
    assert_ne!(a, run(2, true));
    let plain = run(1, false);
    assert_ne!(a, plain);
    assert_eq!(plain[..total], plain[total..]);
}

#[test]
fn workers_get_disjoint_shards_covering_all() {
    let dir = tempfile::tempdir().unwrap();
    let counts = [4, 5, 6, 7, 8];
    let files = make_shards(dir.path(), &counts);
    let mut seen = Vec::new();
    for w in 0..3 {
        let mut c = cfg(files.clone(), 3);
        c.worker_index = w;
        c.num_workers = 3;
        c.epochs = Some(1);
        let mine: Vec<i64> = Reader::new(c)
            .unwrap()
            .flat_map(|b| ids(&b.unwrap()))
            .collect();
        let shards: HashSet<i64> = mine.iter().map(|id| id / 1000 - 1).collect();
        let expected: HashSet<i64> = (0..5).filter(|s| s % 3 == w as i64).collect();
        assert_eq!(shards, expected, "worker {w}");
        seen.extend(mine);
    }
    seen.sort();
    assert_eq!(seen, all_ids(&counts));
    let mut c = cfg(files, 3);
    c.num_workers = 6;
    c.worker_index = 5;
    let err = Reader::new(c).err().unwrap().to_string();
    assert!(err.contains("worker 5 of 6 gets no shard"), "{err}");
}

fn resume_cfg(files: Vec<PathBuf>, batch: usize) -> ReaderConfig {
    let mut c = cfg(files, batch);
    c.seed = 99;
    c.shuffle_buffer = 20;
    c.cycle_length = 3;
    c.prefetch_batches = 3;
    c
}

#[test]
fn resume_from_saved_state_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), &[23, 41, 17, 30, 9]); // 120 records
    let total = 60;
    let reference: Vec<Batch> = take(
        &mut Reader::new(resume_cfg(files.clone(), 7)).unwrap(),
        total,
    );
    // Stops inside windows, on window edges and across epoch ends (7 * 17 = 119 records).
    for stop in [0, 1, 2, 3, 5, 8, 13, 17, 18, 21, 34, 35, 52] {
        let mut r = Reader::new(resume_cfg(files.clone(), 7)).unwrap();
        let first = take(&mut r, stop);
        assert_eq!(first[..], reference[..stop]);
        let saved = serde_json::to_string(&r.state()).unwrap();
        drop(r);
        let state: ReaderState = serde_json::from_str(&saved).unwrap();
        assert_eq!(state.examples, 7 * stop as u64);
        let mut resumed = Reader::resume(resume_cfg(files.clone(), 7), state).unwrap();
        let rest = take(&mut resumed, total - stop);
        assert!(
            rest[..] == reference[stop..],
            "resume after {stop} batches differs"
        );
    }
    // Another batch size continues the same record sequence.
    let mut r = Reader::new(resume_cfg(files.clone(), 7)).unwrap();
    take(&mut r, 4);
    let mut resumed = Reader::resume(resume_cfg(files.clone(), 5), r.state()).unwrap();
    let rest: Vec<i64> = take(&mut resumed, 10).iter().flat_map(ids).collect();
    let expected: Vec<i64> = reference.iter().flat_map(ids).skip(28).take(50).collect();
    assert_eq!(rest, expected);
}

#[test]
fn resume_rejects_other_settings_or_changed_shards() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), &[10, 10]);
    let mut r = Reader::new(resume_cfg(files.clone(), 4)).unwrap();
    take(&mut r, 2);
    let state = r.state();
    let mut other = resume_cfg(files.clone(), 4);
    other.seed = 100;
    let err = Reader::resume(other, state.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("seed") && err.contains("99") && err.contains("100"),
        "{err}"
    );
    let mut other = resume_cfg(files.clone(), 4);
    other.shuffle_buffer = 21;
    assert!(Reader::resume(other, state.clone()).is_err());
    // A shard rewritten with another record count.
    make_shards(dir.path(), &[10, 11]);
    let err = Reader::resume(resume_cfg(files, 4), state)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("shard list") && err.contains("shard-001.tfrecord"),
        "{err}"
    );
}

fn corrupt(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

/// Byte offset of record `i` of shard `s` as make_shards writes it.
fn record_offset(s: usize, i: usize) -> u64 {
    (0..i)
        .map(|j| 16 + example(1000 * (s as i64 + 1) + j as i64, 0).encode().len() as u64)
        .sum()
}

#[test]
fn damaged_shards_stop_with_file_and_offset_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let counts = [6, 6, 6];
    let files = make_shards(dir.path(), &counts);
    let bad_data = record_offset(1, 2);
    corrupt(&files[1], bad_data + 20); // data of shard 1 record 2
    corrupt(&files[2], record_offset(2, 3) + 2); // length of shard 2 record 3: rest of shard 2 lost
    let mut c = cfg(files.clone(), 4);
    c.shuffle = false;
    c.epochs = Some(1);
    let results: Vec<_> = Reader::new(c.clone()).unwrap().collect();
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("an error")
        .to_string();
    assert!(
        err.contains("shard-001.tfrecord") && err.contains(&format!("byte {bad_data}")),
        "{err}"
    );
    c.on_corrupt = OnCorrupt::Skip;
    let mut r = Reader::new(c).unwrap();
    let mut got: Vec<i64> = Vec::new();
    for b in r.by_ref() {
        got.extend(ids(&b.unwrap()));
    }
    got.sort();
    let mut expected = all_ids(&counts);
    expected.retain(|&id| id != 2002 && !(3003..=3005).contains(&id));
    assert_eq!(got, expected);
    assert_eq!(r.stats().skipped_corrupt, 2);
    assert_eq!(r.stats().examples, expected.len() as u64);
    // A truncated shard: skip counts it, stop names it.
    let bytes = std::fs::read(&files[0]).unwrap();
    let cut = record_offset(0, 4);
    std::fs::write(&files[0], &bytes[..(cut + 7) as usize]).unwrap();
    let mut c = cfg(vec![files[0].clone()], 2);
    c.epochs = Some(1);
    c.on_corrupt = OnCorrupt::Skip;
    let mut r = Reader::new(c.clone()).unwrap();
    let n: usize = r.by_ref().map(|b| b.unwrap().real_rows).sum();
    assert_eq!((n, r.stats().skipped_corrupt), (4, 1));
    c.on_corrupt = OnCorrupt::Stop;
    let err = Reader::new(c)
        .unwrap()
        .find_map(|b| b.err())
        .unwrap()
        .to_string();
    assert!(
        err.contains("truncated") && err.contains(&format!("byte {cut}")),
        "{err}"
    );
}

#[test]
fn wrong_sequence_length_names_the_feature_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), &[3]);
    let mut c = ReaderConfig::new(files, 2, 32, PREDS);
    c.epochs = Some(1);
    let err = Reader::new(c)
        .unwrap()
        .find_map(|b| b.err())
        .unwrap()
        .to_string();
    assert!(
        err.contains("shard-000.tfrecord")
            && err.contains("input_ids")
            && err.contains("expected 32"),
        "{err}"
    );
}

/// The first error of a one-epoch read of one shard holding `ex` after two good records, with
/// the model's vocab of `vocab` ids, and the byte offsets of the three records.
fn first_error(ex: &PretrainingExample, vocab: Option<usize>) -> (String, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-values.tfrecord");
    let mut w = RecordWriter::create(&path).unwrap();
    w.write_record(&example(1000, 0).encode()).unwrap();
    w.write_record(&example(1001, 0).encode()).unwrap();
    w.write_record(&ex.encode()).unwrap();
    w.finish().unwrap();
    let offsets = read_shard_offsets(&path);
    let mut c = ReaderConfig::new(vec![path], 4, SEQ, PREDS);
    c.epochs = Some(1);
    c.vocab_size = vocab;
    let err = Reader::new(c).unwrap().find_map(|b| b.err());
    (err.map(|e| format!("{e:#}")).unwrap_or_default(), offsets)
}

fn read_shard_offsets(path: &Path) -> Vec<u64> {
    let mut r = tpu_run::data::tfrecord::RecordReader::open_at(path, 0, true).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push(rec.offset);
    }
    out
}

#[test]
fn values_the_model_cannot_take_are_refused_with_file_offset_and_feature() {
    let good = example(1002, 0);
    assert_eq!(
        first_error(&good, Some(30522)).0,
        "",
        "a good record is read"
    );
    let ids = |f: fn(&mut PretrainingExample)| {
        let mut ex = good.clone();
        f(&mut ex);
        ex
    };
    // (the third record, the model's vocab, what the error says, the first bad record)
    let cases: Vec<(PretrainingExample, Option<usize>, &str, usize)> = vec![
        (
            ids(|e| e.input_ids[3] = 40_000),
            Some(30522),
            "input_ids holds 40000 at index 3",
            2,
        ),
        (
            ids(|e| e.input_ids[3] = 2_000_000_000),
            Some(30522),
            "input_ids holds 2000000000",
            2,
        ),
        (
            ids(|e| e.masked_lm_ids[0] = 40_000),
            Some(30522),
            "masked_lm_ids holds 40000 at index 0",
            2,
        ),
        // Shards made with the 30,522-id vocab and a model of 1,000 ids: the first record fails.
        (
            good.clone(),
            Some(1000),
            "the model's vocab has 1000 ids",
            0,
        ),
        (ids(|e| e.input_ids[3] = -1), None, "input_ids holds -1", 2),
        (
            ids(|e| e.masked_lm_weights[0] = -1e6),
            Some(30522),
            "masked_lm_weights holds -1000000 at index 0",
            2,
        ),
        (
            ids(|e| e.masked_lm_weights[1] = f32::NAN),
            Some(30522),
            "masked_lm_weights holds NaN at index 1",
            2,
        ),
        (
            ids(|e| e.masked_lm_weights[2] = f32::INFINITY),
            Some(30522),
            "masked_lm_weights holds inf",
            2,
        ),
    ];
    for (ex, vocab, want, bad) in cases {
        let (err, offsets) = first_error(&ex, vocab);
        let offset = offsets[bad];
        assert!(
            err.contains(want)
                && err.contains("bad-values.tfrecord")
                && err.contains(&format!("record at byte {offset} ")),
            "want {want:?} with file and offset {offset}, got: {err}"
        );
    }
}

#[test]
fn reads_shards_written_by_tensorflow() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let files: Vec<PathBuf> = (0..2)
        .map(|i| {
            fixtures.join(format!(
                "create_data_golden_seq48-0000{i}-of-00002.tfrecord"
            ))
        })
        .collect();
    let mut expected = Vec::new();
    for f in &files {
        expected.extend(read_shard(f, 48, 8).unwrap());
    }
    let mut c = ReaderConfig::new(files, 16, 48, 8);
    c.shuffle = false;
    c.cycle_length = 1;
    c.epochs = Some(1);
    let rows: Vec<_> = Reader::new(c)
        .unwrap()
        .flat_map(|b| {
            let b = b.unwrap();
            (0..b.real_rows)
                .map(|r| b.row(r).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(rows.len(), expected.len());
    for (row, ex) in rows.iter().zip(&expected) {
        let narrow = |v: &[i64]| v.iter().map(|&x| x as i32).collect::<Vec<_>>();
        assert_eq!(row.input_ids, narrow(&ex.input_ids));
        assert_eq!(row.input_mask, narrow(&ex.input_mask));
        assert_eq!(row.segment_ids, narrow(&ex.segment_ids));
        assert_eq!(row.masked_lm_positions, narrow(&ex.masked_lm_positions));
        assert_eq!(row.masked_lm_ids, narrow(&ex.masked_lm_ids));
        assert_eq!(row.masked_lm_weights, ex.masked_lm_weights);
        assert_eq!(i64::from(row.next_sentence_label), ex.next_sentence_label);
    }
}

#[test]
fn dropping_a_reader_mid_stream_stops_its_threads() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), &[200, 200, 200, 200]);
    for _ in 0..20 {
        let mut r = Reader::new(cfg(files.clone(), 2)).unwrap();
        take(&mut r, 1);
    }
    // Reaching here means no drop blocked on a full channel; a new reader still works.
    let mut r = Reader::new(cfg(files, 2)).unwrap();
    assert_eq!(take(&mut r, 3).len(), 3);
}

#[test]
fn bad_settings_and_patterns_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), &[3]);
    let mut c = cfg(files.clone(), 0);
    assert!(Reader::new(c.clone())
        .err()
        .unwrap()
        .to_string()
        .contains("batch size"));
    c.batch_size = 2;
    c.worker_index = 2;
    c.num_workers = 2;
    assert!(Reader::new(c)
        .err()
        .unwrap()
        .to_string()
        .contains("worker index 2"));
    let pattern = format!("{}/shard-*.tfrecord", dir.path().display());
    assert_eq!(ReaderConfig::files_from_patterns(&pattern).unwrap(), files);
    let err = ReaderConfig::files_from_patterns("/nonexistent/*.tfrecord").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/*.tfrecord"));
    let empty = dir.path().join("empty.tfrecord");
    std::fs::write(&empty, b"").unwrap();
    let err = Reader::new(cfg(vec![empty], 2))
        .unwrap()
        .next_batch()
        .unwrap()
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("hold no records"), "{err}");
}

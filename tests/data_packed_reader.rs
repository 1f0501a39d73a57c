//! Packing at load time (src/data/packed_reader.rs through pretrain's `packed_source`): every
//! example of a finite read is packed exactly once, with fewer rows than padded batches need,
//! and a feed resumed from a saved state packs the same rows as the original.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tpu_run::data::example::PretrainingExample;
use tpu_run::data::packing::PackedBatch;
use tpu_run::data::tfrecord::RecordWriter;
use tpu_run::data::ReaderConfig;
use tpu_run::model::BatchShapes;
use tpu_run::pretrain::batches::packed_source;

const SEQ: usize = 32;
const PREDS: usize = 4;
const K: usize = 3;
const ROWS: usize = 6;

/// Example `id` (stored in input_ids[1]) of 3..=SEQ real tokens, spread by a hash of the id.
fn example(id: i64) -> PretrainingExample {
    let n = 3 + ((id * 7919) % (SEQ as i64 - 2)) as usize;
    let mut input_ids = vec![0i64; SEQ];
    input_ids[0] = 101;
    input_ids[1] = id;
    for (i, t) in input_ids.iter_mut().enumerate().take(n).skip(2) {
        *t = 1000 + (id * 13 + i as i64) % 20000;
    }
    let mut input_mask = vec![0i64; SEQ];
    input_mask[..n].fill(1);
    let mut segment_ids = vec![0i64; SEQ];
    segment_ids[n / 2..n].fill(1);
    PretrainingExample {
        input_ids,
        input_mask,
        segment_ids,
        masked_lm_positions: vec![1, 2, 0, 0],
        masked_lm_ids: vec![id % 30000, 7, 0, 0],
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
                w.write_record(&example(1000 * (s as i64 + 1) + i as i64).encode())
                    .unwrap();
            }
            w.finish().unwrap();
            p
        })
        .collect()
}

fn micro() -> BatchShapes {
    BatchShapes {
        batch_size: ROWS,
        seq_len: SEQ,
        max_predictions: PREDS + K,
        max_instances_per_row: Some(K),
    }
}

/// The id of every instance in `b` (the token after each instance's `[CLS]`), row by row.
fn instance_ids(b: &PackedBatch) -> Vec<i64> {
    let mut out = vec![];
    for row in 0..b.batch_size {
        for slot in 0..K {
            if b.next_sentence_weights[row * K + slot] == 1.0 {
                let start = b.next_sentence_positions[row * K + slot] as usize;
                out.push(i64::from(b.input_ids[row * SEQ + start + 1]));
            }
        }
    }
    out
}

#[test]
fn a_finite_read_packs_every_example_once_into_fewer_rows() {
    let dir = tempfile::tempdir().unwrap();
    let counts = [23, 17, 30];
    let files = make_shards(dir.path(), &counts);
    let mut rc = ReaderConfig::new(files, ROWS, SEQ, PREDS);
    rc.epochs = Some(1);
    let mut feed = packed_source(rc, None, &micro(), ROWS).unwrap();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let (mut rows, mut real, mut batches) = (0, 0, 0);
    while let Some(b) = feed.next_batch().unwrap() {
        assert!(b.rows <= ROWS);
        batches += 1;
        rows += b.rows;
        real += b.real_tokens;
        for id in instance_ids(&b) {
            *seen.entry(id).or_default() += 1;
        }
    }
    let total: usize = counts.iter().sum();
    assert_eq!(seen.len(), total, "every example is packed");
    assert!(seen.values().all(|&n| n == 1), "no example is packed twice");
    let want: usize = (0..counts.len())
        .flat_map(|s| (0..counts[s]).map(move |i| 1000 * (s as i64 + 1) + i as i64))
        .map(|id| example(id).input_mask.iter().sum::<i64>() as usize)
        .sum();
    assert_eq!(real, want, "every real token is packed");
    assert!(
        rows * 10 < total * 7,
        "{total} examples took {rows} packed rows; packing should save a third here"
    );
    assert!(
        batches < total.div_ceil(ROWS),
        "fewer steps than padded batches"
    );
}

#[test]
fn a_resumed_feed_packs_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), &[40, 25, 33]);
    let rc = || {
        let mut rc = ReaderConfig::new(files.clone(), ROWS, SEQ, PREDS);
        rc.seed = 17;
        rc.shuffle_buffer = 16;
        rc
    };
    let mut feed = packed_source(rc(), None, &micro(), ROWS).unwrap();
    let mut first = vec![];
    let mut saved = None;
    for i in 0..8 {
        first.push(feed.next_batch().unwrap().unwrap());
        if i == 3 {
            saved = Some(feed.state());
        }
    }
    let mut resumed = packed_source(rc(), saved, &micro(), ROWS).unwrap();
    for (i, want) in first.iter().enumerate().skip(4) {
        let got = resumed.next_batch().unwrap().unwrap();
        assert_eq!(&got, want, "batch {i} after resuming at batch 4");
    }
}

//! `tpu-run pretrain` on shards holding values the model cannot take (token ids past the model's
//! vocab, negative or NaN weights): the run stops with the file and byte offset by default, and
//! with `data.skip_corrupt` (`--skip-corrupt`) it skips, logs and counts each such record. A
//! model too large for the machine is refused with its figures.
use std::path::Path;
use tpu_run::data::example::PretrainingExample;
use tpu_run::data::tfrecord::RecordWriter;
use tpu_run::pretrain::{run, PretrainConfig, RunOptions};

const SEQ: usize = 16;
const PREDS: usize = 2;
const VOCAB: usize = 64;

/// A valid example whose ids lie in 5..5+spread.
fn example(i: i64, spread: i64) -> PretrainingExample {
    let ids: Vec<i64> = (0..SEQ as i64)
        .map(|j| 5 + (i * 7 + j * 3) % spread)
        .collect();
    PretrainingExample {
        masked_lm_ids: vec![ids[2], ids[5]],
        input_ids: ids,
        input_mask: vec![1; SEQ],
        segment_ids: (0..SEQ as i64).map(|j| i64::from(j >= 8)).collect(),
        masked_lm_positions: vec![2, 5],
        masked_lm_weights: vec![1.0; PREDS],
        next_sentence_label: i % 2,
    }
}

/// Damages one example.
type Damage = fn(&mut PretrainingExample);

/// One shard of 24 records; `bad` maps a record index to a damage. Returns the glob and the
/// damaged records' byte offsets.
fn write_shard(dir: &Path, bad: &[(usize, Damage)]) -> (String, Vec<u64>) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("part-0.tfrecord");
    let mut w = RecordWriter::create(&path).unwrap();
    let mut offsets = Vec::new();
    let mut at = 0u64;
    for i in 0..24 {
        let mut ex = example(i as i64, 40);
        if let Some((_, damage)) = bad.iter().find(|(j, _)| *j == i) {
            damage(&mut ex);
            offsets.push(at);
        }
        let bytes = ex.encode();
        // TFRecord framing: length (8) + length CRC (4) + data + data CRC (4).
        at += 16 + bytes.len() as u64;
        w.write_record(&bytes).unwrap();
    }
    w.finish().unwrap();
    (dir.join("*.tfrecord").display().to_string(), offsets)
}

fn config(data: &str, out: &Path, skip: bool) -> PretrainConfig {
    let text = format!(
        r#"
        [model]
        preset = "tiny"
        vocab_size = {VOCAB}
        hidden_size = 32
        num_attention_heads = 2
        num_hidden_layers = 1
        max_position_embeddings = {SEQ}
        [data]
        train = "{data}"
        seq_len = {SEQ}
        max_predictions = {PREDS}
        shuffle_buffer = 4
        skip_corrupt = {skip}
        [train]
        batch_size = 4
        steps = 8
        warmup_steps = 1
        [checkpoint]
        interval = 0
        [output]
        dir = "{}"
        progress = false
        "#,
        out.display()
    );
    PretrainConfig::from_toml_str(&text, "test config").unwrap()
}

fn quiet() -> RunOptions {
    RunOptions {
        print: false,
        ..Default::default()
    }
}

#[test]
fn values_outside_the_model_stop_the_run_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let damages: [(usize, Damage); 3] = [
        (3, |e| e.input_ids[4] = 40_000),
        (9, |e| e.masked_lm_weights[1] = -1e6),
        (15, |e| e.masked_lm_weights[0] = f32::NAN),
    ];
    let (data, offsets) = write_shard(&dir.path().join("data"), &damages);

    let err = run(&config(&data, &dir.path().join("a"), false), &quiet())
        .map(|_| ())
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("part-0.tfrecord")
            && err.contains(&format!("record at byte {} ", offsets[0]))
            && err.contains("input_ids holds 40000"),
        "{err}"
    );

    // 8 steps of 4 take 32 records, more than the 21 good ones of an epoch: every damaged record
    // is met at least once (the reader's read-ahead may meet them again in later epochs).
    let summary = run(&config(&data, &dir.path().join("b"), true), &quiet()).unwrap();
    assert_eq!(summary.end_step, 8);
    assert!(
        summary.skipped_records >= 3,
        "skipped {}",
        summary.skipped_records
    );
    assert!(summary.history.iter().all(|r| r.loss.is_finite()));
}

/// A model far beyond the machine is refused with its figures before anything is allocated
/// (hidden_size 2^20 aborted in the allocator before: 128 GB for the word embeddings alone).
#[test]
fn a_model_that_cannot_fit_is_refused_with_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("hidden_size", 1_048_576u64),
        ("num_hidden_layers", 10_000_000),
    ] {
        let text = format!(
            "[model]\npreset = \"tiny\"\n{key} = {value}\n[data]\nsynthetic = true\n\
             [train]\nsteps = 1\nwarmup_steps = 0\n[output]\ndir = \"{}\"\nprogress = false\n",
            dir.path().join(key).display()
        );
        let cfg = PretrainConfig::from_toml_str(&text, "test config").unwrap();
        let err = format!("{:#}", run(&cfg, &quiet()).map(|_| ()).unwrap_err());
        assert!(
            err.contains("the model does not fit")
                && err.contains("GiB of host memory")
                && err.contains("is available"),
            "{key} = {value}: {err}"
        );
    }
}

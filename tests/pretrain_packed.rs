//! `tpu-run pretrain` with `data.pack`: the shards' examples are packed as they are read, the
//! packed step trains (evaluation stays padded), the summary reports the real-token fraction,
//! and a run stopped and resumed computes the same losses, bit for bit on the CPU plugin, as
//! the uninterrupted one (the packed feed resumes from the reader's saved position).
mod pretrain_support;
use pretrain_support::{quiet, tiny_run};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use tpu_run::data::example::PretrainingExample;
use tpu_run::data::tfrecord::RecordWriter;
use tpu_run::pretrain::{run, PretrainConfig, RunSummary};

const SEQ: usize = 16;
const PREDS: usize = 3;
const VOCAB: usize = 96;
const ROWS: usize = 4;

/// Random examples of 3..=SEQ real tokens with 1 or 2 predictions each (real TFRecord shards);
/// returns the glob and the fraction of real tokens in them as padded rows.
fn write_shards(dir: &Path, shards: usize, per_shard: usize) -> (String, f64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut real = 0;
    for s in 0..shards {
        let mut w = RecordWriter::create(&dir.join(format!("part-{s}.tfrecord"))).unwrap();
        for _ in 0..per_shard {
            let len = rng.gen_range(3..=SEQ);
            real += len;
            let mut ids: Vec<i64> = (0..len).map(|_| rng.gen_range(10..VOCAB as i64)).collect();
            ids[0] = 2;
            ids.resize(SEQ, 0);
            let n = rng.gen_range(1..=2);
            let mut positions: Vec<i64> = rand::seq::index::sample(&mut rng, len - 1, n)
                .into_iter()
                .map(|p| p as i64 + 1)
                .collect();
            positions.sort_unstable();
            let mut labels: Vec<i64> = positions.iter().map(|&p| ids[p as usize]).collect();
            let mut weights = vec![1.0; n];
            positions.resize(PREDS, 0);
            labels.resize(PREDS, 0);
            weights.resize(PREDS, 0.0);
            let ex = PretrainingExample {
                input_ids: ids,
                input_mask: (0..SEQ).map(|t| i64::from(t < len)).collect(),
                segment_ids: (0..SEQ)
                    .map(|t| i64::from(t >= len / 2 && t < len))
                    .collect(),
                masked_lm_positions: positions,
                masked_lm_ids: labels,
                masked_lm_weights: weights,
                next_sentence_label: rng.gen_range(0..2),
            };
            w.write_record(&ex.encode()).unwrap();
        }
        w.finish().unwrap();
    }
    let glob = dir.join("*.tfrecord").display().to_string();
    (glob, real as f64 / (shards * per_shard * SEQ) as f64)
}

fn config(data: &str, out: &Path) -> PretrainConfig {
    let run = format!(
        r#"
        [data]
        eval = "{data}"
        pack = true
        max_instances_per_row = 3
        [train]
        batch_size = {ROWS}
        steps = 6
        [eval]
        interval = 3
        batches = 2
        "#
    );
    tiny_run(VOCAB, SEQ, PREDS, data, out.display(), &run)
}

fn loss_bits(s: &RunSummary) -> Vec<(u64, u32)> {
    s.history
        .iter()
        .map(|r| (r.step, r.loss.to_bits()))
        .collect()
}

#[test]
fn a_packed_run_trains_reports_its_padding_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, padded_fraction) = write_shards(&tmp.path().join("data"), 2, 40);

    let whole = run(&config(&data, &tmp.path().join("whole")), &quiet(None)).unwrap();
    assert_eq!(whole.history.len(), 6);
    assert!(whole.history.iter().all(|r| r.loss.is_finite()));
    assert_eq!(whole.evals.len(), 2, "padded evaluations at steps 3 and 6");
    assert_eq!(whole.token_slots, (6 * ROWS * SEQ) as u64);
    assert!(
        whole.real_token_fraction() > padded_fraction + 0.1,
        "packed rows are {:.2} real tokens, padded ones {padded_fraction:.2}",
        whole.real_token_fraction()
    );

    let cfg = config(&data, &tmp.path().join("split"));
    let first = run(&cfg, &quiet(Some(3))).unwrap();
    let second = run(&cfg, &quiet(None)).unwrap();
    assert_eq!(second.start_step, 3);
    let mut resumed = loss_bits(&first);
    resumed.extend(loss_bits(&second));
    assert_eq!(resumed, loss_bits(&whole), "the resumed packed run differs");
}

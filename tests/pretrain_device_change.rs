//! `tpu-run pretrain` checkpointed on 4 CPU devices and resumed in the same process count on 2,
//! with the same global batch (issue 13): the reader continues from its saved position (the
//! same examples in the same order), and the losses equal an uninterrupted 4-device run's.
//!
//! Where the math allows: dropout is off (each replica folds its id into the dropout key, so
//! the bits of a row depend on its replica) and every example carries the same number of MLM
//! predictions (each replica's MLM loss is a weighted mean over its shard, and the mean of
//! per-replica means is the global mean only when the shards weigh the same). What is left is
//! f32 arithmetic in another order: on 2 devices each replica sums 2 rows before the all-reduce
//! averages 2 partial results, on 4 devices the all-reduce averages 4. The steps before the
//! checkpoint are bit-identical (same devices); after it the losses agree to a relative 2e-5
//! (measured: 1.5e-6, about ten f32 rounding steps, carried through 3 Adam steps), 50 times
//! below the loss's change from one step to the next (above 1e-3).
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use tpu_run::data::example::PretrainingExample;
use tpu_run::data::tfrecord::RecordWriter;
use tpu_run::pretrain::{run, PretrainConfig, RunOptions, RunSummary};

const SEQ: usize = 16;
const PREDS: usize = 3;
const VOCAB: usize = 96;

/// Two shards of random examples, each with exactly PREDS predictions of weight 1.
fn write_shards(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = StdRng::seed_from_u64(41);
    for s in 0..2 {
        let mut w = RecordWriter::create(&dir.join(format!("part-{s}.tfrecord"))).unwrap();
        for _ in 0..20 {
            let len = rng.gen_range(8..=SEQ);
            let mut ids: Vec<i64> = (0..len).map(|_| rng.gen_range(5..VOCAB as i64)).collect();
            ids[0] = 2;
            ids.resize(SEQ, 0);
            let mut mask = vec![1i64; len];
            mask.resize(SEQ, 0);
            let mut positions: Vec<i64> = rand::seq::index::sample(&mut rng, len - 1, PREDS)
                .into_iter()
                .map(|p| p as i64 + 1)
                .collect();
            positions.sort_unstable();
            let labels: Vec<i64> = positions.iter().map(|&p| ids[p as usize]).collect();
            for &p in &positions {
                ids[p as usize] = 4;
            }
            let half = len / 2;
            let e = PretrainingExample {
                input_ids: ids,
                input_mask: mask,
                segment_ids: (0..SEQ).map(|i| i64::from(i >= half && i < len)).collect(),
                masked_lm_positions: positions,
                masked_lm_ids: labels,
                masked_lm_weights: vec![1.0; PREDS],
                next_sentence_label: rng.gen_range(0..2),
            };
            w.write_record(&e.encode()).unwrap();
        }
        w.finish().unwrap();
    }
    dir.join("*.tfrecord").display().to_string()
}

fn config(data: &str, out: &Path, devices: u32) -> PretrainConfig {
    let text = format!(
        r#"
        [model]
        preset = "tiny"
        vocab_size = {VOCAB}
        num_hidden_layers = 1
        hidden_size = 32
        num_attention_heads = 2
        max_position_embeddings = {SEQ}
        hidden_dropout_prob = 0.0
        attention_probs_dropout_prob = 0.0
        [data]
        train = "{data}"
        seq_len = {SEQ}
        max_predictions = {PREDS}
        shuffle_buffer = 8
        cycle_length = 2
        [train]
        batch_size = 4
        steps = 5
        warmup_steps = 2
        learning_rate = 3e-3
        seed = 7
        [checkpoint]
        interval = 0
        [output]
        dir = "{}"
        log_every = 1
        progress = false
        [device]
        num_devices = {devices}
        "#,
        out.display()
    );
    PretrainConfig::from_toml_str(&text, "test config").unwrap()
}

fn losses(s: &RunSummary) -> Vec<(u64, f32)> {
    s.history.iter().map(|r| (r.step, r.loss)).collect()
}

#[test]
fn checkpointed_on_4_cpu_devices_resumed_on_2_gives_the_same_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_shards(&tmp.path().join("data"));
    let quiet = |stop_after| RunOptions {
        stop_after,
        ..Default::default()
    };

    let whole = run(&config(&data, &tmp.path().join("whole"), 4), &quiet(None)).unwrap();
    let split = tmp.path().join("split");
    let first = run(&config(&data, &split, 4), &quiet(Some(2))).unwrap();
    let second = run(&config(&data, &split, 2), &quiet(None)).unwrap();
    assert_eq!(second.start_step, 2);
    assert!(second.resumed_from.is_some());

    let want = losses(&whole);
    assert_eq!(want.len(), 5);
    // Before the checkpoint: the same 4 devices, bit for bit.
    assert_eq!(losses(&first), want[..2].to_vec());
    let after = losses(&second);
    assert_eq!(after.len(), 3);
    for ((step, got), (_, w)) in after.iter().zip(&want[2..]) {
        let rel = ((got - w) / w).abs();
        eprintln!("step {step}: loss {got} on 2 devices after the resume, {w} on 4 ({rel:e})");
        assert!(
            rel < 2e-5,
            "step {step}: loss {got} on 2 devices, {w} on 4 ({rel:e})"
        );
    }
    // The losses move from step to step by far more than the tolerance (on average; one step
    // may move little): a resume that read other examples, or lost the optimizer state, would
    // not pass.
    let moves: Vec<f32> = want
        .windows(2)
        .map(|w| ((w[1].1 - w[0].1) / w[0].1).abs())
        .collect();
    let mean_move = moves.iter().sum::<f32>() / moves.len() as f32;
    assert!(mean_move > 20.0 * 2e-5, "{want:?}: mean move {mean_move:e}");
}

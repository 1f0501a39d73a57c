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
mod pretrain_support;
use pretrain_support::{tiny_run, MaskedShards, Tokens};
use std::path::Path;
use tpu_run::pretrain::{run, PretrainConfig, RunOptions, RunSummary};

const SEQ: usize = 16;
const PREDS: usize = 3;
const VOCAB: usize = 96;

/// Two shards of random examples, each with exactly PREDS predictions of weight 1.
fn write_shards(dir: &Path) -> String {
    MaskedShards {
        seed: 41,
        shards: 2,
        per_shard: 20,
        tokens: Tokens::Uniform {
            from: 5,
            vocab: VOCAB as i64,
        },
        seq: SEQ,
        preds: PREDS,
    }
    .write(dir)
}

fn config(data: &str, out: &Path, devices: u32) -> PretrainConfig {
    let run = format!(
        r#"
        [model]
        num_hidden_layers = 1
        hidden_dropout_prob = 0.0
        attention_probs_dropout_prob = 0.0
        [train]
        steps = 5
        [device]
        num_devices = {devices}
        "#
    );
    tiny_run(VOCAB, SEQ, PREDS, data, out.display(), &run)
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

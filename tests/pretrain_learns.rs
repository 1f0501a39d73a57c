//! Pretraining a tiny BERT on the CPU plugin learns, within a bounded number of steps, measured
//! on held-out data against baselines counted from the shards themselves, with a margin that
//! rounding cannot cross:
//!
//! - real English text: `tpu-run pretrain --demo` itself (its pinned corpus, vocab and recipe)
//!   must end with the held-out MLM accuracy at least `MLM_MARGIN` (2.5x) the most-frequent-token
//!   baseline, and `MASK_MARGIN` (2x) at the predictions whose input is `[MASK]` (where only
//!   the context tells the token); a model on the first plateau scores 1.0x on both.
//! - next-sentence prediction: on shards where segment B continues A's topic or comes from
//!   another topic, the held-out NSP accuracy rises far above the majority class (and MLM above
//!   its baseline). On real text a model this small, trained this briefly, stays at NSP's
//!   majority baseline, so NSP is shown on a task it can learn within a test's budget.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use tpu_run::data::example::PretrainingExample;
use tpu_run::data::reader::read_shard;
use tpu_run::data::tfrecord::RecordWriter;
use tpu_run::pretrain::config::Overrides;
use tpu_run::pretrain::demo::{run_demo, DemoOptions};
use tpu_run::pretrain::{run, PretrainConfig, RunOptions, RunSummary};

/// Held-out baselines: the eval set's share of the training set's most frequent masked token
/// (what always predicting it scores) and of its majority NSP class.
struct Baselines {
    mlm: f64,
    nsp: f64,
}

/// Masked-token counts and (random-next, total) example counts of the shards in `dir`.
fn shard_stats(dir: &Path, seq: usize, preds: usize) -> (HashMap<i64, u64>, u64, u64) {
    let mut counts = HashMap::new();
    let (mut random, mut total) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        for ex in read_shard(&entry.unwrap().path(), seq, preds).unwrap() {
            for (id, w) in ex.masked_lm_ids.iter().zip(&ex.masked_lm_weights) {
                if *w > 0.0 {
                    *counts.entry(*id).or_insert(0) += 1;
                }
            }
            random += u64::from(ex.next_sentence_label == 1);
            total += 1;
        }
    }
    (counts, random, total)
}

fn baselines(train: &Path, eval: &Path, seq: usize, preds: usize) -> Baselines {
    let (train_counts, _, _) = shard_stats(train, seq, preds);
    let (eval_counts, eval_random, eval_total) = shard_stats(eval, seq, preds);
    let (&top, _) = train_counts
        .iter()
        .max_by_key(|(id, n)| (**n, -**id))
        .unwrap();
    let mlm = eval_counts.get(&top).copied().unwrap_or(0) as f64
        / eval_counts.values().sum::<u64>() as f64;
    let p_random = eval_random as f64 / eval_total as f64;
    Baselines {
        mlm,
        nsp: p_random.max(1.0 - p_random),
    }
}

/// A run over `train`/`eval` shards with the given model and schedule. Dropout is off: these runs
/// are too short to overfit, and the trajectory then does not depend on the dropout generator.
#[allow(clippy::too_many_arguments)]
fn train(
    dir: &Path,
    mask_id: u32,
    vocab: usize,
    hidden: usize,
    seq: usize,
    preds: usize,
    steps: u64,
    warmup_pct: u64,
    lr: f64,
    seed: u64,
) -> RunSummary {
    let text = format!(
        r#"
        [model]
        preset = "tiny"
        vocab_size = {vocab}
        hidden_size = {hidden}
        max_position_embeddings = {seq}
        hidden_dropout_prob = 0.0
        attention_probs_dropout_prob = 0.0
        [data]
        train = "{train}/*.tfrecord"
        eval = "{eval}/*.tfrecord"
        seq_len = {seq}
        max_predictions = {preds}
        shuffle_buffer = 2000
        [train]
        batch_size = 32
        steps = {steps}
        warmup_steps = {warmup}
        learning_rate = {lr}
        seed = {seed}
        [eval]
        interval = {interval}
        [checkpoint]
        interval = 0
        [output]
        dir = "{out}"
        progress = false
        tensorboard = false
        "#,
        train = dir.join("train").display(),
        eval = dir.join("eval").display(),
        out = dir.join("run").display(),
        warmup = steps * warmup_pct / 100,
        interval = steps / 2,
    );
    let mut cfg = PretrainConfig::from_toml_str(&text, "test").unwrap();
    cfg.eval.mask_token_id = Some(mask_id);
    run(&cfg, &RunOptions::default()).unwrap()
}

fn demo_learns(seed: Option<u64>) {
    let tmp = tempfile::tempdir().unwrap();
    let verdict = run_demo(&DemoOptions {
        overrides: Overrides {
            output_dir: Some(tmp.path().join("demo")),
            seed,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    eprintln!("demo, seed {seed:?}: {}", verdict.line());
    assert!(verdict.learned, "seed {seed:?}: {}", verdict.line());
}

#[test]
fn the_demo_learns_with_margin_on_real_text() {
    demo_learns(None);
}

/// The demo's margins hold for other seeds, not by luck for one (run locally, ~6 min a seed:
/// `cargo test --release --test pretrain_learns -- --ignored`).
#[test]
#[ignore = "five seeds of the demo (~30 min in release); run with --ignored"]
fn the_demo_learns_for_five_seeds() {
    for seed in 1..=5 {
        demo_learns(Some(seed));
    }
}

/// Shards where each example is `[CLS] A [SEP] B [SEP]`, A's words from one of four topics (20
/// ids each) and B's from the same topic ("is next", label 0) or another one (label 1); three
/// masked positions per example as create-data writes them ([MASK] at the position, the
/// original id as the label).
fn write_topic_shards(dir: &Path, n: usize, seq: usize, preds: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = RecordWriter::create(&dir.join("part-0.tfrecord")).unwrap();
    let word = |rng: &mut StdRng, topic: i64| 10 + topic * 20 + rng.gen_range(0..20);
    for _ in 0..n {
        let len = rng.gen_range(seq / 2..=seq);
        let a_len = (len - 3) / 2;
        let topic_a = rng.gen_range(0..4);
        let random = rng.gen_bool(0.5);
        let topic_b = if random {
            (topic_a + rng.gen_range(1..4)) % 4
        } else {
            topic_a
        };
        let mut ids = vec![2i64]; // [CLS]
        ids.extend((0..a_len).map(|_| word(&mut rng, topic_a)));
        ids.push(3); // [SEP]
        let b_start = ids.len();
        ids.extend((0..len - 3 - a_len).map(|_| word(&mut rng, topic_b)));
        ids.push(3);
        let mut segments = vec![0i64; b_start];
        segments.resize(ids.len(), 1);
        let mut positions: Vec<i64> = (1..ids.len() - 1)
            .filter(|&p| ids[p] != 3)
            .map(|p| p as i64)
            .collect();
        let mut picked = vec![];
        for _ in 0..preds {
            picked.push(positions.swap_remove(rng.gen_range(0..positions.len())));
        }
        picked.sort_unstable();
        let labels: Vec<i64> = picked.iter().map(|&p| ids[p as usize]).collect();
        for &p in &picked {
            ids[p as usize] = 4; // [MASK]
        }
        let mut mask = vec![1i64; ids.len()];
        ids.resize(seq, 0);
        mask.resize(seq, 0);
        segments.resize(seq, 0);
        let ex = PretrainingExample {
            input_ids: ids,
            input_mask: mask,
            segment_ids: segments,
            masked_lm_positions: picked,
            masked_lm_ids: labels,
            masked_lm_weights: vec![1.0; preds],
            next_sentence_label: i64::from(random),
        };
        w.write_record(&ex.encode()).unwrap();
    }
    w.finish().unwrap();
}

/// The topic task with data and initialisation drawn from `seed`; `Err` says what fell short of
/// held-out NSP accuracy above 0.80 and 0.25 above the majority class, and MLM accuracy above
/// 2x its baseline. Seeds 0-5 reached NSP 0.88-1.00 (majority ~0.52) and MLM 2.8-8x, so each
/// clears both by 10% or more; a model that learned nothing scores ~0.52 and 1x.
fn topic_task(seed: u64) -> Result<(), String> {
    const SEQ: usize = 24;
    const PREDS: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    write_topic_shards(&tmp.path().join("train"), 4000, SEQ, PREDS, 2 * seed + 1);
    write_topic_shards(&tmp.path().join("eval"), 400, SEQ, PREDS, 2 * seed + 2);
    let base = baselines(
        &tmp.path().join("train"),
        &tmp.path().join("eval"),
        SEQ,
        PREDS,
    );
    let s = train(tmp.path(), 4, 96, 32, SEQ, PREDS, 1200, 10, 1e-3, seed);
    let (_, e) = s.evals.last().unwrap();
    let figures = format!(
        "topic task, seed {seed}: after {} steps NSP accuracy {:.3} (majority baseline {:.3}), \
         MLM accuracy {:.3} (baseline {:.3}; a topic-aware guess scores ~0.05)",
        s.end_step, e.nsp_accuracy, base.nsp, e.mlm_accuracy, base.mlm
    );
    eprintln!("{figures}");
    // Every prediction's input is [MASK] here, so this accuracy is context's alone.
    assert_eq!(e.mlm_accuracy, e.mlm_accuracy_at_mask);
    let nsp_ok = e.nsp_accuracy > 0.80 && e.nsp_accuracy > base.nsp + 0.25;
    let mlm_ok = e.mlm_accuracy > 2.0 * base.mlm;
    if nsp_ok && mlm_ok {
        Ok(())
    } else {
        Err(figures)
    }
}

#[test]
fn nsp_and_mlm_rise_far_above_their_baselines_on_a_topic_task() {
    if let Err(figures) = topic_task(0) {
        panic!("short of the margin: {figures}");
    }
}

/// The margin holds for other seeds too, not by luck for one (run locally:
/// `cargo test --release --test pretrain_learns -- --ignored`). Every seed runs before the
/// verdict, so one report shows them all.
#[test]
#[ignore = "five seeds of the topic task (~5 min in release); run with --ignored"]
fn the_topic_task_learns_for_five_seeds() {
    let short: Vec<String> = (1..=5).filter_map(|seed| topic_task(seed).err()).collect();
    assert!(
        short.is_empty(),
        "short of the margin:\n{}",
        short.join("\n")
    );
}

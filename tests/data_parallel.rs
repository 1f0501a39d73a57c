//! The data-parallel train step on 2 and 4 virtual CPU devices: N replicas, each on its shard of
//! the global batch with gradients averaged by an all-reduce inside the step, against the same
//! BERT step on one device.
//!
//! The oracle: averaging the replicas' gradients is exactly what accumulation over micro-batches
//! does on one device (the mean of the shards' mean losses), so N replicas must equal one device
//! accumulating N micro-batches that hold the same rows — even when the shards carry different
//! MLM weights. With equal weights per shard that is also the one-device step on the whole batch
//! (up to the 1e-5 in the MLM loss's denominator). A tiny BERT (L1 H32) with dropout off, f32,
//! AdamWeightDecay with warmup and clipping, over 4 steps. Also: dropout with per-replica bits,
//! the key fold against a Rust reference, errors, `tpu-run pretrain --num-devices 2` stopped and
//! resumed, `tpu-run compile --replicas`.
mod cli_support;
mod common;
mod pretrain_support;
use cli_support::{run_fail, run_ok, stderr, stdout, tpu_run};
use common::check::{assert_close, assert_exact};
use common::client;
use hlo::{ElementType, Literal, ModuleBuilder, Shape};
use pretrain_support::{tensor_bytes, tiny_run};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use tpu::CompileOptions;
use tpu_run::data::batch::HostExample;
use tpu_run::data::Batch;
use tpu_run::model::{init_params, BatchShapes, BertConfig, Execution};
use tpu_run::pretrain::batches::{field_literals, key_literal, step_literals};
use tpu_run::pretrain::program::train_program;
use tpu_run::pretrain::{run, PretrainConfig, RunOptions};
use tpu_run::train::replicas::fold_replica_id;
use tpu_run::train::{
    autodiff, build_train_step, AdamWeightDecay, BatchSpec, DynamicLossScale, LossScale, ParamSpec,
    Params, Policy, Schedule, Sgd, StepConfig, StepMetrics, Trainer, WeightDecay,
};

const SEQ: usize = 16;
const PREDS: usize = 4;
const VOCAB: usize = 64;

fn model(dropout: f64) -> BertConfig {
    let mut c = BertConfig::preset("tiny").unwrap();
    c.vocab_size = VOCAB;
    c.num_hidden_layers = 1;
    c.hidden_size = 32;
    c.intermediate_size = 64;
    c.num_attention_heads = 2;
    c.max_position_embeddings = SEQ;
    c.hidden_dropout_prob = dropout;
    c.attention_probs_dropout_prob = dropout;
    c
}

/// A trainer for `replicas` replicas of `k` micro-batches of `micro_rows` rows each.
fn trainer(model: &BertConfig, micro_rows: usize, k: u32, replicas: u32) -> Trainer {
    let micro = BatchShapes {
        batch_size: micro_rows,
        seq_len: SEQ,
        max_predictions: PREDS,
        max_instances_per_row: None,
    };
    let step = StepConfig::new(
        AdamWeightDecay {
            weight_decay: WeightDecay::bert(0.01),
            ..Default::default()
        },
        Schedule::bert(3e-3, 2, 10),
    )
    .with_accumulation(k)
    .with_replicas(replicas);
    let program = train_program(model, Execution::default(), &micro, &step).unwrap();
    let init = init_params(model, 3);
    let params: Vec<Literal> = program
        .layout
        .params
        .iter()
        .map(|p| Literal::from_slice(&init.get(&p.name).unwrap().data, &p.shape.dims).unwrap())
        .collect();
    Trainer::new(client(), &program, &params).unwrap()
}

/// Random rows: ids from the whole vocabulary above the specials, a random length with padding,
/// `preds(row)` predictions (weight 1, the rest weight 0), random NSP labels.
fn batch(rows: usize, seed: u64, preds: impl Fn(usize) -> usize) -> Batch {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut b = Batch::with_capacity(rows, SEQ, PREDS);
    for r in 0..rows {
        let len = rng.gen_range(SEQ / 2..=SEQ);
        let mut ids: Vec<i32> = (0..len).map(|_| rng.gen_range(5..VOCAB as i32)).collect();
        ids[0] = 2;
        ids.resize(SEQ, 0);
        let n = preds(r);
        let mut positions: Vec<i32> = rand::seq::index::sample(&mut rng, len - 1, n)
            .into_iter()
            .map(|p| p as i32 + 1)
            .collect();
        positions.sort_unstable();
        let mut labels: Vec<i32> = positions.iter().map(|&p| ids[p as usize]).collect();
        for &p in &positions {
            ids[p as usize] = 4;
        }
        let mut weights = vec![1.0f32; n];
        positions.resize(PREDS, 0);
        labels.resize(PREDS, 0);
        weights.resize(PREDS, 0.0);
        let mut mask = vec![1; len];
        mask.resize(SEQ, 0);
        b.push(&HostExample {
            input_ids: ids,
            input_mask: mask,
            segment_ids: (0..SEQ)
                .map(|i| i32::from(i >= len / 2 && i < len))
                .collect(),
            masked_lm_positions: positions,
            masked_lm_ids: labels,
            masked_lm_weights: weights,
            next_sentence_label: rng.gen_range(0..2),
        });
    }
    b
}

fn f64s(lits: &[Literal]) -> Vec<f64> {
    lits.iter().flat_map(|l| l.to_f64_vec()).collect()
}

/// Each tensor within `tol` times its largest magnitude, element by element: summation order
/// differs between the programs, and a tensor's rounding error scales with its values. The
/// attention key biases are left out: their gradient is zero in exact arithmetic (softmax does
/// not change when a query's logits all shift by q.b), so both runs hold only rounding noise
/// there, which Adam scales up; they must stay negligible.
fn compare_tensors(names: &[String], a: &[Literal], b: &[Literal], tol: f64, what: &str) {
    assert_eq!(
        (names.len(), a.len()),
        (b.len(), b.len()),
        "{what}: tensor counts"
    );
    for ((name, x), y) in names.iter().zip(a).zip(b) {
        let (x, y) = (x.to_f64_vec(), y.to_f64_vec());
        if name.contains("attention.self.key.bias") {
            if !name.contains('/') {
                let biggest = x.iter().chain(&y).fold(0f64, |m, v| m.max(v.abs()));
                assert!(
                    biggest < 1e-6,
                    "{what}: {name} should stay ~0, has {biggest:e}"
                );
            }
            continue;
        }
        let scale = y.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert_close(&x, &y, tol * scale, 0.0, &format!("{what}: {name}"));
    }
}

fn metric_values(m: &StepMetrics) -> Vec<f64> {
    std::iter::once(f64::from(m.loss))
        .chain(m.metrics.iter().map(|(_, v)| f64::from(*v)))
        .collect()
}

/// Runs 4 steps of `a` (micro-batches `ka`) and `b` (`kb`) on the same global batches and
/// compares losses and metrics (relative `metric_rtol`), then parameters and optimizer state
/// (see [`compare_tensors`]); also checks that every replica of `a` holds bit-identical state.
#[allow(clippy::too_many_arguments)]
fn compare(
    a: &mut Trainer,
    ka: usize,
    b: &mut Trainer,
    kb: usize,
    global_rows: usize,
    preds: impl Fn(usize) -> usize + Copy,
    metric_rtol: f64,
    tensor_tol: f64,
    what: &str,
) {
    for step in 0..4u64 {
        let batch = batch(global_rows, 100 + step, preds);
        let ma = a
            .step_host(&step_literals(&batch, ka, 7, step).unwrap())
            .unwrap();
        let mb = b
            .step_host(&step_literals(&batch, kb, 7, step).unwrap())
            .unwrap();
        let names_a: Vec<&String> = ma.metrics.iter().map(|(n, _)| n).collect();
        let names_b: Vec<&String> = mb.metrics.iter().map(|(n, _)| n).collect();
        assert_eq!(names_a, names_b);
        assert_close(
            &metric_values(&ma),
            &metric_values(&mb),
            0.0,
            metric_rtol,
            &format!("{what}, step {step}: loss and metrics {names_a:?}"),
        );
    }
    let names: Vec<String> = a
        .layout()
        .params
        .iter()
        .map(|p| p.name.clone())
        .chain(a.layout().opt_state.iter().map(|s| s.name.clone()))
        .collect();
    let state = |t: &Trainer| -> Vec<Literal> {
        let mut v = t.params().unwrap();
        v.extend(t.opt_state().unwrap());
        v
    };
    compare_tensors(&names, &state(a), &state(b), tensor_tol, what);
    let p0: Vec<u8> = a
        .params()
        .unwrap()
        .iter()
        .flat_map(|l| l.bytes().to_vec())
        .collect();
    for r in 1..a.replicas() {
        let pr: Vec<u8> = a
            .replica_params(r)
            .unwrap()
            .iter()
            .flat_map(|l| l.bytes().to_vec())
            .collect();
        assert!(
            p0 == pr,
            "{what}: replica {r}'s parameters differ from replica 0's"
        );
        let o0 = f64s(&a.opt_state().unwrap());
        assert_exact(&f64s(&a.replica_opt_state(r).unwrap()), &o0, what);
    }
}

#[test]
fn replicas_average_gradients_as_accumulation_does_on_one_device() {
    let m = model(0.0);
    // Rows with 1 to 4 predictions: the shards carry different MLM weights.
    let uneven = |r: usize| 1 + r % PREDS;
    for n in [2u32, 4] {
        let mut dp = trainer(&m, 2, 1, n);
        assert_eq!(dp.replicas(), n as usize);
        let mut acc = trainer(&m, 2, n, 1);
        let rows = 2 * n as usize;
        let what = format!("{n} replicas vs {n} micro-batches");
        compare(
            &mut dp, 1, &mut acc, n as usize, rows, uneven, 1e-6, 4e-6, &what,
        );
    }
}

#[test]
fn two_replicas_equal_one_device_on_the_whole_batch() {
    // Every row has 3 predictions, so both halves carry the same MLM weight and the mean of the
    // halves' losses is the whole batch's loss, but for the 1e-5 that BERT adds to the weight
    // sum (a relative 1e-5 / 12 here), which sets the looser tolerance.
    let m = model(0.0);
    let mut dp = trainer(&m, 2, 1, 2);
    let mut one = trainer(&m, 4, 1, 1);
    let what = "2 replicas vs the whole batch";
    compare(&mut dp, 1, &mut one, 1, 4, |_| 3, 2e-6, 1e-5, what);
}

#[test]
fn accumulation_with_replicas_equals_one_device_over_all_micro_batches() {
    // 2 replicas x 2 micro-batches of 2 rows: the stacked [2, 4, ...] batch splits along its rows
    // (dim 1), so replica r's micro-batch j is the one-device micro-batch 2j + r of 2 rows.
    let m = model(0.0);
    let mut dp = trainer(&m, 2, 2, 2);
    let mut acc = trainer(&m, 2, 4, 1);
    let what = "2 replicas x 2 micro-batches";
    compare(&mut dp, 2, &mut acc, 4, 8, |r| 1 + r % 3, 1e-6, 4e-6, what);
}

#[test]
fn with_dropout_replicas_draw_their_own_bits_and_stay_identical() {
    // Both replicas get the same rows and the same host key. Replica 0 keeps the key, so it
    // computes what one device computes on those rows; replica 1 folds its id into the key. Had
    // it drawn the same dropout bits, the average would equal the one-device loss (as it does
    // without dropout: see the tests above).
    let rows = batch(2, 5, |_| 2);
    let mut twice = Batch::with_capacity(4, SEQ, PREDS);
    for _ in 0..2 {
        for r in 0..2 {
            twice.push(&rows.row(r).unwrap());
        }
    }
    let m = model(0.2);
    let mut dp = trainer(&m, 2, 1, 2);
    let mut one = trainer(&m, 2, 1, 1);
    let a = dp
        .step_host(&step_literals(&twice, 1, 9, 0).unwrap())
        .unwrap();
    let b = one
        .step_host(&step_literals(&rows, 1, 9, 0).unwrap())
        .unwrap();
    // Shared bits would leave only the two programs' rounding differences (~1e-7 relative: the
    // mean of two equal losses is exact); other bits move the loss by a dropout mask's effect
    // (1.7e-5 with this model's initialization, 2e-4 with an earlier one).
    let rel = ((a.loss - b.loss) / b.loss).abs();
    assert!(
        rel > 1e-6,
        "dropout bits look shared: {} vs {}",
        a.loss,
        b.loss
    );
    // More steps with dropout on: every replica applies the same update.
    for step in 1..4 {
        let b = batch(4, 40 + step, |_| 2);
        let r = dp
            .step_host(&step_literals(&b, 1, 9, step).unwrap())
            .unwrap();
        assert!(r.loss.is_finite());
    }
    assert_exact(
        &f64s(&dp.replica_params(1).unwrap()),
        &f64s(&dp.params().unwrap()),
        "params with dropout",
    );
    assert_exact(
        &f64s(&dp.replica_opt_state(1).unwrap()),
        &f64s(&dp.opt_state().unwrap()),
        "optimizer state with dropout",
    );
}

/// A linear model `loss = 0.5 * mean((x W - y)^2)` under dynamic loss scaling, on 2 replicas of
/// 2 rows each, plain SGD (no momentum), no clipping.
fn linear_trainer(w0: &[f32]) -> Trainer {
    let params = [ParamSpec::new("w", &[3, 2])];
    let batch = [
        BatchSpec::new("x", ElementType::F32, &[2, 3]),
        BatchSpec::new("y", ElementType::F32, &[2, 2]),
    ];
    let source = autodiff(
        |b: &hlo::Builder, p: &Params, batch: &tpu_run::train::Batch| {
            let r = b.sub(b.matmul(batch.get("x")?, p.get("w")?)?, batch.get("y")?)?;
            let sq = b.reduce_sum(b.mul(r, r)?, &[0, 1])?;
            Ok((b.mul(sq, b.scalar(0.5f32 / 4.0)?)?, vec![]))
        },
    );
    let mut policy = Policy::f32();
    policy.loss_scale = LossScale::Dynamic(DynamicLossScale {
        initial: 4.0,
        ..Default::default()
    });
    let config = StepConfig::new(
        Sgd {
            momentum: 0.0,
            ..Default::default()
        },
        Schedule::Constant { lr: 0.5 },
    )
    .with_clip_norm(None)
    .with_policy(policy)
    .with_replicas(2);
    let program = build_train_step("linear", &params, &batch, &config, &source).unwrap();
    let w = Literal::from_slice(w0, &[3, 2]).unwrap();
    Trainer::new(client(), &program, &[w]).unwrap()
}

#[test]
fn averaged_gradient_against_f64_and_a_non_finite_replica_skips_the_step_everywhere() {
    let mut r = StdRng::seed_from_u64(21);
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| r.gen_range(-1.0..1.0)).collect() };
    let (w0, x, y) = (draw(6), draw(12), draw(8));
    let mut t = linear_trainer(&w0);
    let lits = |x: &[f32]| {
        vec![
            Literal::from_slice(x, &[4, 3]).unwrap(),
            Literal::from_slice(&y, &[4, 2]).unwrap(),
        ]
    };
    let m = t.step_host(&lits(&x)).unwrap();
    assert_eq!(m.get("grads_finite"), Some(1.0));
    // f64 reference: replica s has rows 2s, 2s+1; its gradient is x_s^T (x_s W - y_s) / 4; the
    // update uses their mean; the loss is the mean of the replicas' losses.
    let (mut grad, mut loss) = ([0f64; 6], 0f64);
    for row in 0..4 {
        for o in 0..2 {
            let pred: f64 = (0..3)
                .map(|i| f64::from(x[row * 3 + i]) * f64::from(w0[i * 2 + o]))
                .sum();
            let res = pred - f64::from(y[row * 2 + o]);
            loss += 0.5 * res * res / 4.0 / 2.0;
            for i in 0..3 {
                grad[i * 2 + o] += f64::from(x[row * 3 + i]) * res / 4.0 / 2.0;
            }
        }
    }
    let want: Vec<f64> = (0..6).map(|i| f64::from(w0[i]) - 0.5 * grad[i]).collect();
    assert_close(&f64s(&t.params().unwrap()), &want, 1e-6, 1e-6, "SGD step");
    assert_close(&[f64::from(m.loss)], &[loss], 1e-7, 1e-6, "loss");
    let after_one = t.params().unwrap();

    // Replica 1's rows carry an inf: its gradient is not finite, so both replicas skip the step
    // (parameters and step count unchanged) and halve the loss scale.
    let mut bad = x.clone();
    bad[7] = f32::INFINITY;
    let m = t.step_host(&lits(&bad)).unwrap();
    assert_eq!(m.get("grads_finite"), Some(0.0));
    assert_eq!(t.step_count().unwrap(), 1);
    for replica in 0..2 {
        assert_exact(
            &f64s(&t.replica_params(replica).unwrap()),
            &f64s(&after_one),
            &format!("replica {replica} skipped the step"),
        );
        let state = t.replica_opt_state(replica).unwrap();
        let at = |name: &str| {
            let i = t.layout().opt_state.iter().position(|s| s.name == name);
            state[i.unwrap()].to_f64_vec()
        };
        assert_eq!(at("loss_scale"), vec![2.0], "loss scale halved");
        assert_eq!(at("loss_scale_good_steps"), vec![0.0]);
    }
}

#[test]
fn the_replica_id_is_folded_into_word_0_of_the_key() {
    // Against a Rust reference of the fold, on 4 devices, for a [2] and a stacked [3, 2] key.
    let mb = ModuleBuilder::new("fold");
    let b = mb.builder("main");
    let k1 = b
        .parameter(Shape::array(ElementType::U64, vec![2]), "k1")
        .unwrap();
    let k3 = b
        .parameter(Shape::array(ElementType::U64, vec![3, 2]), "k3")
        .unwrap();
    let outs = [
        fold_replica_id(&b, k1).unwrap(),
        fold_replica_id(&b, k3).unwrap(),
    ];
    let entry = b.finish(b.tuple(&outs).unwrap()).unwrap();
    let m = mb.build(entry).unwrap();
    let keys1 = [0x0123_4567_89ab_cdefu64, 77];
    let keys3 = [1u64, 2, u64::MAX, 4, 5, 6];
    let inputs: Vec<Vec<Literal>> = (0..4)
        .map(|_| {
            vec![
                Literal::from_slice(&keys1, &[2]).unwrap(),
                Literal::from_slice(&keys3, &[3, 2]).unwrap(),
            ]
        })
        .collect();
    let out = common::run_devices(&m, &CompileOptions::replicas(4), &inputs);
    for (r, o) in out.iter().enumerate() {
        let salt = (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let fold =
            |k: &[u64]| -> Vec<u64> { k.chunks(2).flat_map(|w| [w[0] ^ salt, w[1]]).collect() };
        assert_exact(&o[0].to_vec::<u64>().unwrap(), &fold(&keys1), "u64[2] key");
        assert_exact(
            &o[1].to_vec::<u64>().unwrap(),
            &fold(&keys3),
            "u64[3, 2] key",
        );
    }
}

#[test]
fn a_batch_that_does_not_split_over_the_replicas_is_a_clear_error() {
    let m = model(0.0);
    let mut dp = trainer(&m, 2, 1, 2);
    // 5 rows for 2 replicas of 2.
    let lits = field_literals(&batch(5, 1, |_| 2), 1).unwrap();
    let e = dp
        .upload_shards(0, &lits)
        .err()
        .expect("5 rows on 2 replicas");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("input_ids") && msg.contains("multiple of 2"),
        "{msg}"
    );
    // The one-device calls refuse a replicated step instead of feeding replica 0 alone.
    let e = dp
        .upload_batch(&lits)
        .expect_err("upload_batch on 2 replicas");
    assert!(format!("{e:#}").contains("upload_shards"), "{e:#}");
    // Parts must cover the inputs in order.
    let good = field_literals(&batch(4, 1, |_| 2), 1).unwrap();
    let fields = dp.upload_shards(0, &good).unwrap();
    let key = dp
        .upload_shards(good.len(), &[key_literal(1, 0, 1).unwrap()])
        .unwrap();
    let e = dp
        .step_sharded(&[&key, &fields])
        .expect_err("parts out of order");
    assert!(format!("{e:#}").contains("in order"), "{e:#}");
    dp.step_sharded(&[&fields, &key]).unwrap();

    // The pretraining config says which settings to change.
    let mut cfg = PretrainConfig::default();
    cfg.data.synthetic = true;
    cfg.train.batch_size = 6;
    cfg.device.num_devices = Some(4);
    let e = cfg.validate().unwrap_err().to_string();
    assert!(
        e.contains("train.batch_size 6") && e.contains("device.num_devices"),
        "{e}"
    );
    cfg.device.num_devices = Some(0);
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("num_devices"));
}

/// TOML for a short pretraining run on TFRecord shards, with evaluation every 2 steps and
/// dropout on (the tiny preset's 0.1).
fn pretrain_config(data: &str, out: &Path, num_devices: Option<u32>) -> PretrainConfig {
    let devices = num_devices
        .map(|n| format!("[device]\nnum_devices = {n}\n"))
        .unwrap_or_default();
    let run = format!(
        r#"
        [model]
        num_hidden_layers = 1
        [data]
        eval = "{data}"
        [train]
        steps = 5
        [eval]
        interval = 2
        batches = 2
        {devices}
        "#
    );
    tiny_run(VOCAB, SEQ, PREDS, data, out.display(), &run)
}

/// Two TFRecord shards of random examples.
fn write_shards(dir: &Path) -> String {
    use tpu_run::data::example::PretrainingExample;
    use tpu_run::data::tfrecord::RecordWriter;
    std::fs::create_dir_all(dir).unwrap();
    for s in 0..2u64 {
        let b = batch(16, 500 + s, |r| 1 + r % 3);
        let mut w = RecordWriter::create(&dir.join(format!("part-{s}.tfrecord"))).unwrap();
        for r in 0..b.rows() {
            let ex = b.row(r).unwrap();
            let wide = |v: &[i32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<i64>>();
            // As create-data writes them: predictions padded to max_predictions, weight 0.
            let e = PretrainingExample {
                input_ids: wide(&ex.input_ids),
                input_mask: wide(&ex.input_mask),
                segment_ids: wide(&ex.segment_ids),
                masked_lm_positions: wide(&ex.masked_lm_positions),
                masked_lm_ids: wide(&ex.masked_lm_ids),
                masked_lm_weights: ex.masked_lm_weights.clone(),
                next_sentence_label: i64::from(ex.next_sentence_label),
            };
            w.write_record(&e.encode()).unwrap();
        }
        w.finish().unwrap();
    }
    dir.join("*.tfrecord").display().to_string()
}

/// The `loss` of every `train` line of a run's metrics.jsonl, as bits.
fn logged_losses(out: &Path) -> Vec<(u64, u32)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| {
            (
                v["step"].as_u64().unwrap(),
                (v["loss"].as_f64().unwrap() as f32).to_bits(),
            )
        })
        .collect()
}

#[test]
fn pretrain_on_two_cpu_devices_resumes_exactly_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_shards(&tmp.path().join("data"));

    // Uninterrupted, from the library, with [device] num_devices = 2 in the TOML.
    let whole_dir = tmp.path().join("whole");
    let whole = run(
        &pretrain_config(&data, &whole_dir, Some(2)),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(whole.history.len(), 5);
    assert!(whole.evals.len() >= 2);

    // The same through the CLI with --num-devices 2: stopped after 2 steps, then resumed.
    let split_dir = tmp.path().join("split");
    let config_file = tmp.path().join("split.toml");
    let cfg = pretrain_config(&data, &split_dir, None);
    std::fs::write(&config_file, cfg.to_toml().unwrap()).unwrap();
    let cli = |extra: &[&str]| {
        let out = run_ok(
            tpu_run()
                .args(["pretrain", "--config", config_file.to_str().unwrap()])
                .args(["--num-devices", "2"])
                .args(extra),
        );
        cli_support::text(&out)
    };
    let first = cli(&["--stop-after", "2"]);
    assert!(
        first.contains("for 2 device(s) (batch 2 per device)"),
        "{first}"
    );
    let second = cli(&[]);
    assert!(second.contains("resumed from"), "{second}");

    let want: Vec<(u64, u32)> = whole
        .history
        .iter()
        .map(|r| (r.step, r.loss.to_bits()))
        .collect();
    assert_eq!(logged_losses(&whole_dir), want);
    assert_eq!(
        logged_losses(&split_dir),
        want,
        "losses of the stopped + resumed run"
    );
    let end = |dir: &Path| dir.join("checkpoints").join("step-00000005");
    assert!(
        tensor_bytes(&end(&whole_dir)) == tensor_bytes(&end(&split_dir)),
        "final parameters and optimizer state differ"
    );
    let manifest = std::fs::read_to_string(end(&split_dir).join("manifest.json")).unwrap();
    assert!(manifest.contains("\"num_devices\": 2"), "{manifest}");
}

#[test]
fn compile_takes_replicas_for_the_train_step_only() {
    let small = [
        "--model",
        "tiny",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--max-predictions",
        "4",
    ];
    let out = run_ok(
        tpu_run().args(
            [
                &["compile", "--target", "cpu", "--replicas", "2"],
                &small[..],
            ]
            .concat(),
        ),
    );
    let stdout = stdout(&out);
    assert!(
        stdout.contains("data-parallel over 2 replicas of batch 2"),
        "{stdout}"
    );
    assert!(stdout.contains("2 replicas, one per device"), "{stdout}");
    let out = run_fail(
        tpu_run().args(
            [
                &[
                    "compile",
                    "--target",
                    "cpu",
                    "--replicas",
                    "2",
                    "--what",
                    "forward",
                ],
                &small[..],
            ]
            .concat(),
        ),
    );
    let stderr = stderr(&out);
    assert!(
        stderr.contains("only the train step is data-parallel"),
        "{stderr}"
    );
    let out = run_fail(
        tpu_run().args(
            [
                &["compile", "--target", "cpu", "--replicas", "3"],
                &small[..],
            ]
            .concat(),
        ),
    );
    let stderr = cli_support::stderr(&out);
    assert!(stderr.contains("multiple of --replicas 3"), "{stderr}");
}

/// The regression of XLA:CPU's all-reduce deadlock: the tiny preset at seq 128 on 2 devices,
/// with the plugin's thread pools held to 2 threads (`PJRT_NPROC=2`, as on a 2-core machine,
/// whatever this one has). With XNNPACK dots in the program, one replica's pool thread waited
/// in the all-reduce while the other's waited in XNNPACK for a task only a free pool thread
/// could run, and XLA aborted the process after 40 s ("Termination timeout for all reduce").
/// `Client::effective_compile_options` compiles such programs without XNNPACK. The run is a
/// child process killed after 10 minutes, so a hang fails the test instead of stalling it.
#[test]
fn two_cpu_devices_at_seq_128_do_not_deadlock_on_a_two_thread_pool() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let mut child = tpu_run()
        .args(["pretrain", "--backend", "cpu", "--preset", "tiny"])
        .args([
            "--synthetic-data",
            "--num-devices",
            "2",
            "--batch-size",
            "8",
        ])
        .args([
            "--seq-len",
            "128",
            "--max-predictions",
            "20",
            "--bench-steps",
            "1",
        ])
        .arg("--no-compile-cache")
        .env("PJRT_NPROC", "2")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes while waiting, so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = format!("{}\n{}", stdout.join().unwrap(), stderr.join().unwrap());
    let status = status.unwrap_or_else(|| panic!("still running after 10 minutes:\n{text}"));
    assert!(status.success(), "{status}:\n{text}");
    assert!(text.contains("median step"), "{text}");
}

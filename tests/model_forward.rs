//! The BERT pretraining graph on the CPU plugin against an independent f64 implementation
//! written here from the BERT math (google-research/bert's modeling.py and
//! run_pretraining.py), on random weights and random ids, masks and masked positions.
mod common;
mod model_support;

use common::check::assert_close;
use common::f64s;
use hlo::{ElementType, Literal, Module, ModuleBuilder, Shape};
use model_support::*;
use tpu_run::model::params::param_specs;
use tpu_run::model::{
    pretraining_forward, BatchShapes, BertConfig, ComputeDtype, Execution, HiddenAct, ModelError,
    ParamSet, ParamValues,
};

// ---------------------------------------------------------------------------------------------
// The graph.

/// Outputs of the test module, in order.
const OUTPUTS: [&str; 12] = [
    "sequence",
    "pooled",
    "mlm_logits",
    "nsp_logits",
    "loss",
    "mlm_loss",
    "nsp_loss",
    "mlm_accuracy",
    "nsp_accuracy",
    "mlm_weight_sum",
    "mlm_correct_sum",
    "nsp_correct_sum",
];

/// `(params..., batch..., rng_key) -> OUTPUTS`, computed as `exec` says.
fn pretraining_module(
    cfg: &BertConfig,
    exec: Execution,
    train: bool,
) -> Result<Module, ModelError> {
    let m = ModuleBuilder::new("bert_pretraining");
    let b = m.builder("main");
    let params = ParamValues::declare(&b, &param_specs(cfg))?;
    let batch = shapes().declare(&b)?;
    let key = b.parameter(Shape::array(ElementType::U64, vec![2]), "rng_key")?;
    let out = pretraining_forward(&b, cfg, exec, &params, &batch, key, train)?;
    let mut outs = vec![
        out.encoder.sequence,
        out.encoder.pooled,
        out.mlm_logits,
        out.nsp_logits,
        out.loss,
    ];
    outs.extend(out.metrics.values());
    let entry = b.finish(b.tuple(&outs)?)?;
    Ok(m.build(entry)?)
}

/// Runs the module and returns the outputs as f64.
fn run(module: &Module, inputs: &[Literal]) -> Vec<Vec<f64>> {
    let outs = common::run(module, inputs);
    assert_eq!(outs.len(), OUTPUTS.len());
    outs.iter().map(f64s).collect()
}

fn scalar(outs: &[Vec<f64>], name: &str) -> f64 {
    let i = OUTPUTS.iter().position(|n| *n == name).unwrap();
    outs[i][0]
}

/// Tolerances for one comparison: (atol, rtol) for activations, logits and scalars.
struct Tol {
    hidden: f64,
    logits: f64,
    loss: f64,
}

/// Builds (as `exec` says), runs and compares everything against the reference; returns the
/// outputs.
fn check_against_reference(
    cfg: &BertConfig,
    exec: Execution,
    seed: u64,
    tol: &Tol,
) -> Vec<Vec<f64>> {
    let params = random_params(cfg, seed);
    let batch = random_batch(seed + 1);
    let want = reference(cfg, &F64Params::from_set(&params), &batch);
    let batch = with_labels(batch, &want, seed + 2);
    let want_scores = scores(&want, &batch);
    let module = pretraining_module(cfg, exec, false).unwrap();
    let got = run(&module, &inputs(cfg, &params, &batch, [1, 2]));

    let seq: Vec<f64> = want
        .sequence
        .iter()
        .flat_map(|x| x.iter().copied())
        .collect();
    assert_close(&got[0], &seq, tol.hidden, tol.hidden, "sequence output");
    let pooled: Vec<f64> = want.pooled.iter().copied().collect();
    assert_close(&got[1], &pooled, tol.hidden, tol.hidden, "pooled output");
    // MLM logits: the real vocabulary, then the padding at the masked constant.
    let vp = cfg.padded_vocab_size();
    let mut real = vec![];
    for row in got[2].chunks(vp) {
        real.extend_from_slice(&row[..VOCAB]);
        assert!(row[VOCAB..].iter().all(|&x| x == -1e9), "padded logits");
    }
    let mlm: Vec<f64> = want.mlm_logits.iter().copied().collect();
    assert_close(&real, &mlm, tol.logits, tol.logits, "MLM logits");
    let nsp: Vec<f64> = want.nsp_logits.iter().copied().collect();
    assert_close(&got[3], &nsp, tol.logits, tol.logits, "NSP logits");

    let w = &want_scores;
    for (name, v) in [
        ("loss", w.loss),
        ("mlm_loss", w.mlm_loss),
        ("nsp_loss", w.nsp_loss),
    ] {
        assert_close(&[scalar(&got, name)], &[v], tol.loss, tol.loss, name);
    }
    // Counts are exact; the argmax labels win by a margin, so these match exactly.
    for (name, v) in [
        ("mlm_accuracy", w.mlm_accuracy),
        ("nsp_accuracy", w.nsp_accuracy),
        ("mlm_weight_sum", w.mlm_weight_sum),
        ("mlm_correct_sum", w.mlm_correct_sum),
        ("nsp_correct_sum", w.nsp_correct_sum),
    ] {
        assert_close(&[scalar(&got, name)], &[v], 1e-6, 1e-6, name);
    }
    // The labels were built so that the accuracies are informative.
    assert!(
        w.mlm_accuracy > 0.3 && w.mlm_accuracy < 1.0,
        "{}",
        w.mlm_accuracy
    );
    assert_eq!(w.nsp_accuracy, 0.5);
    assert_eq!(w.mlm_weight_sum, 8.0);
    got
}

const F32_TOL: Tol = Tol {
    hidden: 2e-5,
    logits: 5e-5,
    loss: 2e-5,
};

#[test]
fn f32_forward_matches_the_f64_reference_erf_gelu() {
    check_against_reference(
        &small_config(HiddenAct::GeluErf),
        Execution::default(),
        11,
        &F32_TOL,
    );
}

#[test]
fn f32_forward_matches_the_f64_reference_tanh_gelu() {
    check_against_reference(
        &small_config(HiddenAct::GeluTanh),
        Execution::default(),
        21,
        &F32_TOL,
    );
}

#[test]
fn bf16_compute_stays_close_to_the_f64_reference() {
    let cfg = small_config(HiddenAct::GeluErf);
    let bf16 = Execution::new(ComputeDtype::Bf16);
    // bf16 keeps 8 significant bits (relative error 2^-9 per rounding); two layers of it.
    let tol = Tol {
        hidden: 6e-2,
        logits: 1e-1,
        loss: 3e-2,
    };
    check_against_reference(&cfg, bf16, 31, &tol);
}

#[test]
fn vocab_padding_gives_the_same_loss() {
    let cfg = small_config(HiddenAct::GeluErf);
    let mut padded_cfg = cfg.clone();
    padded_cfg.pad_vocab_to = Some(128);
    assert_eq!(padded_cfg.padded_vocab_size(), 128);
    // The padded model's parameters: the plain ones, plus random (large) padding rows.
    let params = random_params(&cfg, 41);
    let mut padded = random_params(&padded_cfg, 42);
    for (name, t) in params.iter() {
        let p = padded.get_mut(name).unwrap();
        p.data[..t.data.len()].copy_from_slice(&t.data);
    }
    let batch = random_batch(43);
    let want = reference(&cfg, &F64Params::from_set(&params), &batch);
    let batch = with_labels(batch, &want, 44);
    let plain_out = run(
        &pretraining_module(&cfg, Execution::default(), false).unwrap(),
        &inputs(&cfg, &params, &batch, [0, 0]),
    );
    // Checks the padded logits and every output against the reference too.
    let padded_out = check_against_reference_with(&padded_cfg, &padded, &batch);
    for name in OUTPUTS.iter().skip(4) {
        let (a, b) = (scalar(&plain_out, name), scalar(&padded_out, name));
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1e-6),
            "{name}: {a} unpadded vs {b} padded"
        );
    }
}

/// Like `check_against_reference`, on given parameters and labelled batch.
fn check_against_reference_with(
    cfg: &BertConfig,
    params: &ParamSet,
    batch: &HostBatch,
) -> Vec<Vec<f64>> {
    let want = reference(cfg, &F64Params::from_set(params), batch);
    let s = scores(&want, batch);
    let got = run(
        &pretraining_module(cfg, Execution::default(), false).unwrap(),
        &inputs(cfg, params, batch, [0, 0]),
    );
    let vp = cfg.padded_vocab_size();
    for row in got[2].chunks(vp) {
        assert!(row[VOCAB..].iter().all(|&x| x == -1e9), "padded logits");
    }
    assert_close(&[scalar(&got, "loss")], &[s.loss], 2e-5, 2e-5, "loss");
    assert_close(
        &[scalar(&got, "mlm_accuracy")],
        &[s.mlm_accuracy],
        1e-6,
        1e-6,
        "mlm_accuracy",
    );
    got
}

#[test]
fn dropout_follows_the_key_and_is_off_at_eval() {
    let cfg = small_config(HiddenAct::GeluErf);
    let params = random_params(&cfg, 51);
    let batch = random_batch(52);
    let want = reference(&cfg, &F64Params::from_set(&params), &batch);
    let batch = with_labels(batch, &want, 53);
    let train = pretraining_module(&cfg, Execution::default(), true).unwrap();
    let eval = pretraining_module(&cfg, Execution::default(), false).unwrap();
    let exe_train = common::compile(&train, &Default::default());
    let exe_eval = common::compile(&eval, &Default::default());
    let go = |exe: &tpu::Executable, key: [u64; 2]| -> Vec<Vec<f64>> {
        let lits = inputs(&cfg, &params, &batch, key);
        let bufs: Vec<tpu::Buffer> = lits.iter().map(|l| common::upload(l, 0)).collect();
        let args: Vec<&tpu::Buffer> = bufs.iter().collect();
        let outs = exe.execute(&args).unwrap();
        outs.iter().map(|b| f64s(&common::download(b))).collect()
    };
    let e1 = go(&exe_eval, [1, 2]);
    let e2 = go(&exe_eval, [7, 9]);
    assert_eq!(e1, e2, "eval ignores the key");
    let t1 = go(&exe_train, [1, 2]);
    let t1_again = go(&exe_train, [1, 2]);
    let t2 = go(&exe_train, [7, 9]);
    assert_eq!(t1, t1_again, "same key, same dropout");
    assert_ne!(t1[0], t2[0], "another key drops other units");
    assert_ne!(t1[0], e1[0], "training drops units");
    // About 10% of the embedding dropout's outputs... are not observable after layer norm; but
    // the pooled output of a dropped-out network differs from eval by more than rounding.
    let diff = t1[1]
        .iter()
        .zip(&e1[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff > 1e-2, "dropout changes the pooled output ({diff})");

    // With both dropout probabilities 0, training mode is eval mode.
    let mut no_drop = cfg.clone();
    no_drop.hidden_dropout_prob = 0.0;
    no_drop.attention_probs_dropout_prob = 0.0;
    let t0 = run(
        &pretraining_module(&no_drop, Execution::default(), true).unwrap(),
        &inputs(&no_drop, &params, &batch, [1, 2]),
    );
    assert_eq!(t0, e1);
}

#[test]
fn bad_inputs_are_named() {
    let cfg = small_config(HiddenAct::GeluErf);
    // A missing parameter.
    let m = ModuleBuilder::new("t");
    let b = m.builder("main");
    let mut specs = param_specs(&cfg);
    specs.retain(|s| s.name != "bert.encoder.layer.1.output.dense.bias");
    let params = ParamValues::declare(&b, &specs).unwrap();
    let batch = shapes().declare(&b).unwrap();
    let key = b
        .parameter(Shape::array(ElementType::U64, vec![2]), "k")
        .unwrap();
    let err = pretraining_forward(&b, &cfg, Execution::default(), &params, &batch, key, false)
        .unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingParam { name } if name == "bert.encoder.layer.1.output.dense.bias"),
        "{err}"
    );

    // A sequence longer than the position table.
    let m = ModuleBuilder::new("t");
    let b = m.builder("main");
    let params = ParamValues::declare(&b, &param_specs(&cfg)).unwrap();
    let long = BatchShapes {
        seq_len: 32,
        ..shapes()
    };
    let batch = long.declare(&b).unwrap();
    let key = b
        .parameter(Shape::array(ElementType::U64, vec![2]), "k")
        .unwrap();
    let err = pretraining_forward(&b, &cfg, Execution::default(), &params, &batch, key, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_position_embeddings 24"), "{err}");

    // A batch field of the wrong type, a parameter of the wrong shape, a bad key.
    let m = ModuleBuilder::new("t");
    let b = m.builder("main");
    let mut params = ParamValues::declare(&b, &param_specs(&cfg)).unwrap();
    let mut batch = shapes().declare(&b).unwrap();
    let key = b
        .parameter(Shape::array(ElementType::U64, vec![2]), "k")
        .unwrap();
    let good_weights = batch.masked_lm_weights;
    batch.masked_lm_weights = b
        .parameter(Shape::array(ElementType::S32, vec![2, 5]), "w")
        .unwrap();
    let err = pretraining_forward(&b, &cfg, Execution::default(), &params, &batch, key, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("masked_lm_weights"), "{err}");
    batch.masked_lm_weights = good_weights;
    let wrong = b
        .parameter(Shape::array(ElementType::F32, vec![64, 32]), "q")
        .unwrap();
    params.insert("bert.encoder.layer.0.attention.self.query.weight", wrong);
    let err = pretraining_forward(&b, &cfg, Execution::default(), &params, &batch, key, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attention.self.query.weight") && err.contains("[32, 32]"),
        "{err}"
    );
    let params = ParamValues::declare(&b, &param_specs(&cfg)).unwrap();
    let bad_key = b
        .parameter(Shape::array(ElementType::U32, vec![2]), "k2")
        .unwrap();
    let err = pretraining_forward(
        &b,
        &cfg,
        Execution::default(),
        &params,
        &batch,
        bad_key,
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("u64[2]"), "{err}");
}

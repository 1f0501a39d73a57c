//! `tpu-run bench` on the CPU plugin with the tiny model: the cross product with its skips, one
//! JSON record per configuration (checked field by field, the model FLOPs recomputed here), the
//! aligned table, the SVG, a baseline comparison, the anchors (through a stand-in Python on
//! CPU, since the real anchor scripts need CUDA), and clear errors for bad input.
mod cli_support;
use cli_support::{output, run_fail, run_ok, stderr, stdout, tpu_run};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use tpu_run::backend::AttentionChoice;
use tpu_run::bench::anchors::Anchors;
use tpu_run::bench::matrix::{max_predictions, BenchConfig, Task};
use tpu_run::model::ComputeDtype;

/// `tpu-run bench ARGS`, run in `dir`.
fn bench(dir: &Path, args: &[&str]) -> Command {
    let mut c = tpu_run();
    c.current_dir(dir).arg("bench").args(args);
    c
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The anchors' model FLOPs of a train step, written out here for the tiny preset
/// (L=2, H=128, I=512, V=30522).
fn tiny_flops(batch: f64, seq: f64, predictions: f64) -> f64 {
    let (l, h, i, v) = (2.0, 128.0, 512.0, 30522.0);
    batch
        * (6.0 * l * (4.0 * h * h + 2.0 * h * i + 2.0 * seq * h) * seq
            + 6.0 * (h * h + h * v) * predictions)
}

#[test]
fn the_cross_product_is_measured_skipped_recorded_and_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(&mut bench(
        dir.path(),
        &[
            "--model",
            "tiny",
            "--task",
            "pretrain,squad",
            "--seq",
            "16,32",
            "--batch",
            "2",
            "--attention",
            "graph,cudnn",
            "--steps",
            "3",
            "--warmup",
            "1",
            "--out",
            "a.jsonl",
            "--plot",
            "a.svg",
            "--anchors",
        ],
    ));
    let (stdout, log) = (stdout(&out), stderr(&out));
    assert!(
        log.contains("anchors: not run: the anchors run on NVIDIA GPUs"),
        "{log}"
    );
    let rs = records(&dir.path().join("a.jsonl"));
    assert_eq!(rs.len(), 8, "2 tasks x 2 seqs x 2 attentions");
    let by_key = |k: &str| {
        rs.iter()
            .find(|r| r["key"] == k)
            .unwrap_or_else(|| panic!("{k}"))
    };
    for k in [
        "tiny pretrain s16 b2 f32 cudnn",
        "tiny squad s32 b2 f32 cudnn",
    ] {
        assert!(by_key(k)["skipped"]
            .as_str()
            .unwrap()
            .contains("--backend cuda"));
        assert!(by_key(k)["runtime"].is_null());
    }
    assert!(by_key("tiny squad s16 b2 f32 graph")["skipped"]
        .as_str()
        .unwrap()
        .contains("SQuAD needs seq"));
    let measured = [
        (
            "tiny pretrain s16 b2 f32 graph",
            16.0,
            max_predictions(16) as f64,
        ),
        (
            "tiny pretrain s32 b2 f32 graph",
            32.0,
            max_predictions(32) as f64,
        ),
        ("tiny squad s32 b2 f32 graph", 32.0, 0.0),
    ];
    for (k, seq, preds) in measured {
        let r = by_key(k);
        assert!(r["skipped"].is_null() && r["error"].is_null(), "{r}");
        assert_eq!(r["schema"], "tpu-run-bench/1");
        assert_eq!(r["env"]["platform"], "cpu");
        assert_eq!(r["env"]["backend"], "cpu");
        assert!(r["env"]["plugin_version"]
            .as_str()
            .unwrap()
            .contains("xla-cpu-pjrt"));
        assert!(r["env"]["c_api"].as_str().unwrap().contains('.'));
        assert!(!r["env"]["git_commit"].as_str().unwrap().is_empty());
        assert!(r["rust"]["ir_instructions"].as_u64().unwrap() > 100);
        assert!(r["rust"]["proto_bytes"].as_u64().unwrap() > 1000);
        assert!(r["xla"]["compile_s"].as_f64().unwrap() > 0.0);
        assert!(r["xla"]["optimized"]["fusions"].as_u64().unwrap() > 0);
        assert!(r["xla"]["cost_flops"].as_f64().unwrap() > 0.0);
        assert!(r["xla"]["temp_bytes"].as_i64().is_some());
        let rt = &r["runtime"];
        assert_eq!(rt["steps_timed"], 3);
        assert_eq!(r["step_times_s"].as_array().unwrap().len(), 3);
        let (p10, med, p90) = (
            rt["p10_step_s"].as_f64().unwrap(),
            rt["median_step_s"].as_f64().unwrap(),
            rt["p90_step_s"].as_f64().unwrap(),
        );
        assert!(0.0 < p10 && p10 <= med && med <= p90, "{rt}");
        let seq_per_s = rt["seq_per_s"].as_f64().unwrap();
        assert!((seq_per_s - 2.0 / med).abs() < 1e-9 * seq_per_s);
        assert!(
            (rt["tokens_per_s"].as_f64().unwrap() - seq_per_s * seq).abs() < 1e-6 * seq_per_s * seq
        );
        let flops = tiny_flops(2.0, seq, preds);
        assert!(
            (rt["model_flops"].as_f64().unwrap() - flops).abs() < 1e-9 * flops,
            "{k}"
        );
        assert!((rt["model_tflops_per_s"].as_f64().unwrap() - flops / med / 1e12).abs() < 1e-9);
        assert!(rt["mfu"].is_null(), "a CPU has no peak in the table");
        assert!(rt["last_loss"].as_f64().unwrap().is_finite());
        assert_eq!(r["repeats"].as_array().unwrap().len(), 1);
        assert!(r["anchors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("NVIDIA GPUs"));
        // The table row: the configuration, then its figures.
        let row = stdout
            .lines()
            .find(|l| l.starts_with(k))
            .expect("a table row");
        assert!(row.contains(&format!("{:.2}", med * 1e3)), "{row}");
    }
    let header = stdout.lines().next().unwrap();
    assert!(header.starts_with("configuration") && header.contains("MFU"));
    let svg = std::fs::read_to_string(dir.path().join("a.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("tiny squad s32 b2 f32 graph"));

    // A later run against this one as the baseline: one repeat there, so not judged (the noise
    // is unknown); a key the baseline lacks is "absent".
    run_ok(&mut bench(
        dir.path(),
        &[
            "--model",
            "tiny",
            "--seq",
            "16",
            "--batch",
            "2,3",
            "--attention",
            "graph",
            "--steps",
            "2",
            "--warmup",
            "0",
            "--repeat",
            "2",
            "--baseline",
            "a.jsonl",
            "--fail-on-regression",
            "--out",
            "b.jsonl",
        ],
    ));
    let rs = records(&dir.path().join("b.jsonl"));
    assert_eq!(rs[0]["repeats"].as_array().unwrap().len(), 2);
    assert_eq!(rs[0]["step_times_s"].as_array().unwrap().len(), 4);
    assert_eq!(rs[0]["baseline"]["verdict"], "not judged");
    assert!(rs[0]["baseline"]["reason"]
        .as_str()
        .unwrap()
        .contains("--repeat >= 2"));
    assert_eq!(rs[1]["baseline"]["verdict"], "absent");

    // Regression detection, judged from files: the measured record given three repeats with
    // 1% spread, against a synthetic baseline 20% faster (a regression), and one 20% slower.
    let measured = records(&dir.path().join("a.jsonl"))
        .into_iter()
        .find(|r| r["key"] == "tiny pretrain s16 b2 f32 graph")
        .unwrap();
    let with_medians = |scale: f64| {
        let mut r = measured.clone();
        let m = r["runtime"]["median_step_s"].as_f64().unwrap() * scale;
        let repeat = r["repeats"][0].clone();
        r["repeats"] = Value::Array(
            [1.0, 1.01, 0.99]
                .iter()
                .map(|f| {
                    let mut x = repeat.clone();
                    x["median_step_s"] = Value::from(m * f);
                    x
                })
                .collect(),
        );
        format!("{r}\n")
    };
    std::fs::write(dir.path().join("new.jsonl"), with_medians(1.0)).unwrap();
    std::fs::write(dir.path().join("faster.jsonl"), with_medians(1.0 / 1.2)).unwrap();
    std::fs::write(dir.path().join("slower.jsonl"), with_medians(1.2)).unwrap();
    let judge = |baseline: &str, fail: bool| {
        let mut args = vec!["--compare", "new.jsonl", "--baseline", baseline];
        if fail {
            args.push("--fail-on-regression");
        }
        bench(dir.path(), &args)
    };
    let out = run_fail(&mut judge("faster.jsonl", true));
    let stderr = stderr(&out);
    assert!(
        stderr.contains("regressed against the baseline: tiny pretrain s16 b2 f32 graph"),
        "{stderr}"
    );
    let row = |out: &Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("tiny pretrain s16"))
            .unwrap()
            .to_string()
    };
    assert!(
        row(&out).contains("baseline +20.0% regression"),
        "{}",
        row(&out)
    );
    let out = run_ok(&mut judge("slower.jsonl", true));
    assert!(
        row(&out).contains("baseline -16.7% improvement"),
        "{}",
        row(&out)
    );
    let out = output(&mut judge("new.jsonl", false));
    assert!(
        row(&out).contains("baseline +0.0% unchanged"),
        "{}",
        row(&out)
    );
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let err = |args: &[&str]| stderr(&run_fail(&mut bench(dir.path(), args)));
    assert!(err(&["--model", "huge"]).contains("--model \"huge\""));
    // clap refuses values outside the enums, listing them (comma-separated lists included).
    assert!(err(&["--task", "glue"]).contains("[possible values: pretrain, squad]"));
    let e = err(&["--precision", "bf16,fp4"]);
    assert!(
        e.contains("'fp4'") && e.contains("[possible values: f32, bf16, fp8]"),
        "{e}"
    );
    assert!(err(&["--attention", "flash"]).contains("[possible values: auto, graph, cudnn]"));
    assert!(err(&["--repeat", "0"]).contains("at least 1"));
    std::fs::write(dir.path().join("old.jsonl"), "{\"not\": \"a record\"}\n").unwrap();
    let e = err(&["--baseline", "old.jsonl"]);
    assert!(
        e.contains("old.jsonl line 1") && e.contains("not a tpu-run bench record"),
        "{e}"
    );
    assert!(err(&["--xla-flag", "nonsense"]).contains("expected NAME=VALUE"));
}

/// A stand-in for the anchors' Python: prints the anchor's JSON line for the arguments it was
/// given, fails for seq 64, and hangs for seq 96 (to be timed out).
const FAKE_PYTHON: &str = r#"#!/bin/sh
case "$*" in
  *"96, "*|*" 96"*) sleep 30 ;;
  *"64, "*|*" 64"*) echo '{"anchor": "torch", "cfg": [], "error": "CUDA out of memory"}' ;;
  *jax_bert.py*cudnn*) echo '{"jax": "0.0"}'; echo '{"anchor": "jax", "attn": "cudnn", "seq_per_s": 400.0, "first_step_incl_compile_s": 16.5}' ;;
  *jax_bert.py*) echo '{"anchor": "jax", "attn": "xla", "seq_per_s": 300.0}' ;;
  *True*) echo '{"anchor": "torch", "compiled": true, "seq_per_s": 250.0}' ;;
  *) echo '{"anchor": "torch", "compiled": false, "seq_per_s": 200.0}' ;;
esac
"#;

#[test]
fn anchors_run_once_each_and_report_failures() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let python = dir.path().join("python");
    std::fs::write(&python, FAKE_PYTHON).unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    for s in ["jax_bert.py", "torch_bert.py"] {
        std::fs::write(dir.path().join(s), "").unwrap();
    }
    let anchors = Anchors::find(Some(&python), Some(dir.path()), Duration::from_secs(3)).unwrap();
    let config = |model: &str, task, seq| BenchConfig {
        model: model.into(),
        task,
        seq,
        batch: 8,
        precision: ComputeDtype::Bf16,
        attention: AttentionChoice::Cudnn,
        devices: 1,
        max_predictions: max_predictions(seq),
        dropout: None,
    };
    let got: Vec<(String, Option<f64>, Option<f64>)> = anchors
        .run(&config("base", Task::Pretrain, 128))
        .into_iter()
        .map(|a| (a.name, a.seq_per_s, a.first_step_incl_compile_s))
        .collect();
    assert_eq!(
        got,
        [
            ("jax xla".to_string(), Some(300.0), None),
            ("jax cudnn".into(), Some(400.0), Some(16.5)),
            ("torch eager".into(), Some(200.0), None),
            ("torch.compile".into(), Some(250.0), None),
        ]
    );
    let squad = anchors.run(&config("large", Task::Squad, 64));
    assert_eq!(squad.len(), 2, "SQuAD has only the PyTorch anchors");
    assert!(squad
        .iter()
        .all(|a| a.error.as_ref().unwrap().contains("out of memory")));
    let hung = anchors.run(&config("base", Task::Squad, 96));
    assert!(hung
        .iter()
        .all(|a| a.error.as_ref().unwrap().contains("timed out")));
    let tiny = anchors.run(&config("tiny", Task::Pretrain, 128));
    assert!(tiny[0].error.as_ref().unwrap().contains("define BERT"));
    assert!(Anchors::find(
        Some(&python),
        Some(&dir.path().join("nope")),
        Duration::from_secs(1)
    )
    .unwrap_err()
    .contains("missing"));
}

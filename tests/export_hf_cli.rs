//! `tpu-run export-hf`, run as a user runs it: a checkpoint's parameters come back from the
//! Hugging Face directory it writes bit for bit (found from the step directory, the checkpoint
//! directory or the run's output directory), `--init` writes exactly the weights `pretrain`
//! starts from (checked against a 1-step run whose only update has learning rate 0, so its
//! checkpoint holds the initial weights), and bad arguments are clear errors.
mod cli_support;
use cli_support::{run_fail, run_ok, stderr, text, tpu_run};
use hlo::Literal;
use std::path::Path;
use std::process::Command;
use tpu_run::ckpt::{import_hf, Checkpoint, State};
use tpu_run::model::{init_params, param_specs, BertConfig, ConfigFlavor, ParamSet};

/// tpu-run with `args`, without backtraces and without the user's compile cache.
fn command(args: &[&str]) -> Command {
    let mut c = tpu_run();
    c.args(args)
        .env("RUST_BACKTRACE", "0")
        .env("TPU_RUN_COMPILE_CACHE", "off");
    c
}

/// Runs tpu-run with `args`, which must succeed; stdout and stderr.
fn ok(args: &[&str]) -> String {
    text(&run_ok(&mut command(args)))
}

/// Runs tpu-run with `args`, which must fail; its stderr.
fn refused(args: &[&str]) -> String {
    stderr(&run_fail(&mut command(args)))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

fn small_config() -> BertConfig {
    let json = serde_json::json!({
        "vocab_size": 60, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 24, "max_position_embeddings": 32, "type_vocab_size": 2,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.05, "attention_probs_dropout_prob": 0.0,
    });
    BertConfig::from_json_str(&json.to_string(), ConfigFlavor::HuggingFace).unwrap()
}

/// Every tensor of `a` equals `b`'s bit for bit, and both hold the same names.
fn assert_same(a: &ParamSet, b: &ParamSet) {
    assert_eq!(a.len(), b.len());
    for (name, t) in a.iter() {
        let u = b.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(t.dims, u.dims, "{name}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&t.data), bits(&u.data), "{name}");
    }
}

#[test]
fn a_checkpoint_exports_and_imports_back_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let params = init_params(&cfg, 11);
    // A checkpoint as pretrain writes one: parameters in the model's order, optimizer slots,
    // the model config in the manifest.
    let lits = |suffix: &str| -> Vec<(String, Literal)> {
        param_specs(&cfg)
            .iter()
            .map(|s| {
                let t = params.get(&s.name).unwrap();
                let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
                let lit = Literal::from_slice(&t.data, &dims).unwrap();
                (format!("{}{suffix}", s.name), lit)
            })
            .collect()
    };
    let mut state = State::new(7, lits(""), lits("/adam_m"));
    state.model_config = serde_json::to_value(&cfg).unwrap();
    let run_dir = tmp.path().join("run");
    let ckpt = Checkpoint::save(&run_dir.join("checkpoints"), &state).unwrap();

    for (given, out) in [
        (run_dir.clone(), "from-run-dir"),
        (run_dir.join("checkpoints"), "from-store"),
        (ckpt.path().to_path_buf(), "from-step-dir"),
    ] {
        let out = tmp.path().join(out);
        let text = ok(&[
            "export-hf",
            "--checkpoint",
            path(&given),
            "--out",
            path(&out),
        ]);
        assert!(text.contains("(step 7)"), "{text}");
        let (back_cfg, back) = import_hf(&out).unwrap();
        assert_eq!(back_cfg, cfg);
        assert_eq!(back_cfg.hidden_dropout_prob, 0.05);
        assert_same(&back, &params);
    }
}

#[test]
fn init_exports_the_weights_pretrain_starts_from() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run.toml");
    // warmup_steps = 1: the only update of this run uses learning rate 0 (the schedule's
    // warmup at step 0), so its checkpoint holds the initial weights exactly.
    std::fs::write(
        &run,
        r#"[model]
preset = "tiny"
vocab_size = 80
hidden_size = 16
num_hidden_layers = 1
num_attention_heads = 2
max_position_embeddings = 16
hidden_dropout_prob = 0.0

[data]
synthetic = true
seq_len = 16
max_predictions = 4

[train]
batch_size = 2
steps = 1
warmup_steps = 1
learning_rate = 1e-3

[output]
tensorboard = false
progress = false
"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    ok(&[
        "pretrain",
        "--config",
        path(&run),
        "--seed",
        "5",
        "--output-dir",
        path(&out),
    ]);
    let from_ckpt = tmp.path().join("hf-ckpt");
    ok(&[
        "export-hf",
        "--checkpoint",
        path(&out),
        "--out",
        path(&from_ckpt),
    ]);
    let init = tmp.path().join("hf-init");
    let text = ok(&[
        "export-hf",
        "--init",
        "--config",
        path(&run),
        "--seed",
        "5",
        "--out",
        path(&init),
    ]);
    assert!(text.contains("seed 5"), "{text}");
    let (cfg, started) = import_hf(&init).unwrap();
    let (ckpt_cfg, trained) = import_hf(&from_ckpt).unwrap();
    assert_eq!(cfg, ckpt_cfg);
    assert_eq!(cfg.hidden_dropout_prob, 0.0);
    assert_same(&started, &trained);
    // Another seed starts elsewhere.
    let other = tmp.path().join("hf-other");
    ok(&[
        "export-hf",
        "--init",
        "--config",
        path(&run),
        "--out",
        path(&other),
    ]);
    let (_, moved) = import_hf(&other).unwrap();
    let word = "bert.embeddings.word_embeddings.weight";
    assert_ne!(
        moved.get(word).unwrap().data,
        started.get(word).unwrap().data
    );
}

#[test]
fn bad_arguments_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let missing = tmp.path().join("nowhere");
    let e = refused(&[
        "export-hf",
        "--checkpoint",
        path(&missing),
        "--out",
        path(&out),
    ]);
    assert!(e.contains("no such directory"), "{e}");
    let e = refused(&[
        "export-hf",
        "--checkpoint",
        path(tmp.path()),
        "--out",
        path(&out),
    ]);
    assert!(e.contains("not a tpu-run checkpoint"), "{e}");
    let e = refused(&["export-hf", "--out", path(&out)]);
    assert!(e.contains("--checkpoint") && e.contains("--init"), "{e}");
    let e = refused(&[
        "export-hf",
        "--init",
        "--checkpoint",
        path(tmp.path()),
        "--out",
        path(&out),
    ]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = refused(&[
        "export-hf",
        "--seed",
        "3",
        "--checkpoint",
        "x",
        "--out",
        "y",
    ]);
    assert!(e.contains("'--seed <SEED>' cannot be used with"), "{e}");
    assert!(!out.exists());
}

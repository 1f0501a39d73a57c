//! `tpu-run compile --config RUN.toml` compiles exactly the train step `tpu-run pretrain
//! --config RUN.toml` runs: both commands, run as a user runs them on the CPU plugin, write the
//! HloModuleProto bytes they hand the compiler (`--dump-program`), and the bytes are equal for a
//! run with non-default settings (LAMB, bf16, dropout, accumulation, 2 devices, seq 64). A
//! changed setting changes the bytes, so the comparison can fail.
mod cli_support;
use cli_support::{run_fail, run_ok, stderr, text, tpu_run};
use std::path::Path;

/// A tiny run that differs from pretrain's defaults wherever the step can: the optimizer, its
/// schedule, precision, dropout, accumulation, data-parallel devices, the batch shapes.
fn run_toml(out: &Path, schedule: &str) -> String {
    format!(
        r#"[model]
preset = "tiny"
hidden_dropout_prob = 0.2
attention_probs_dropout_prob = 0.05

[data]
synthetic = true
seq_len = 64
max_predictions = 8

[train]
batch_size = 8
steps = 4
warmup_steps = 1
learning_rate = 3e-4
schedule = "{schedule}"
optimizer = "lamb"
precision = "bf16"
accumulation_steps = 2
seed = 7

[device]
backend = "cpu"
num_devices = 2

[output]
dir = "{}"
tensorboard = false
progress = false
"#,
        out.display()
    )
}

/// Runs tpu-run with `args`, which must succeed; stdout and stderr.
fn ok(args: &[&str]) -> String {
    let out = run_ok(
        tpu_run()
            .args(args)
            .env("RUST_BACKTRACE", "0")
            // Every command compiles what it built, and the user's compile cache stays untouched.
            .env("TPU_RUN_COMPILE_CACHE", "off"),
    );
    text(&out)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// `compile --target cpu --config run --dump-program dump`, plus `extra` flags; the bytes.
fn compile_step(run: &Path, dump: &Path, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["compile", "--target", "cpu", "--config", path(run)];
    args.extend(["--dump-program", path(dump)]);
    args.extend(extra);
    let text = ok(&args);
    assert!(text.contains("compiled for cpu"), "{text}");
    std::fs::read(dump).expect("compile's program dump")
}

#[test]
fn compile_hands_the_compiler_the_bytes_pretrain_does() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run.toml");
    std::fs::write(&run, run_toml(&tmp.path().join("out"), "linear")).unwrap();

    let trained = tmp.path().join("pretrain.pb");
    let text = ok(&[
        "pretrain",
        "--config",
        path(&run),
        "--dump-program",
        path(&trained),
        "--stop-after",
        "1",
    ]);
    assert!(text.contains("for 2 device(s)"), "{text}");
    let trained = std::fs::read(&trained).expect("pretrain's program dump");

    let compiled = compile_step(&run, &tmp.path().join("compile.pb"), &[]);
    assert!(trained.len() > 10_000, "{} bytes", trained.len());
    assert!(
        compiled == trained,
        "compile's step ({} bytes) differs from pretrain's ({} bytes)",
        compiled.len(),
        trained.len()
    );

    // One setting changed, in the file or by a flag: another program.
    let cosine = tmp.path().join("cosine.toml");
    std::fs::write(&cosine, run_toml(&tmp.path().join("out"), "cosine")).unwrap();
    let other = compile_step(&cosine, &tmp.path().join("cosine.pb"), &[]);
    assert!(
        other != trained,
        "the cosine schedule compiled the same step"
    );
    let other = compile_step(
        &run,
        &tmp.path().join("adam.pb"),
        &["--optimizer", "adam_weight_decay"],
    );
    assert!(other != trained, "AdamWeightDecay compiled the same step");
}

#[test]
fn compile_refuses_a_bert_config_as_the_run_config() {
    let out =
        run_fail(tpu_run().args(["compile", "--target", "cpu", "--config", "bert_config.json"]));
    let stderr = stderr(&out);
    assert!(
        stderr.contains("give a BERT config file with --model-config"),
        "{stderr}"
    );
}

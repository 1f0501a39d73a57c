//! The `tpu-run devices` and `tpu-run compile` commands as a user runs them on a machine without
//! a TPU. The binary restarts itself under `unshare --net` before libtpu runs; this test process
//! never loads libtpu. libtpu is installed from PyPI when absent (see tests/tpu_libtpu.rs for
//! why); `TPU_RUN_SKIP_LIBTPU=1` skips the libtpu parts. The CPU target needs no libtpu.
mod cli_support;
use cli_support::{output, stderr, stdout, tpu_run};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tpu::PluginKind;

/// tpu-run with `args`, without backtraces; its output and how long it ran.
fn timed(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = output(tpu_run().args(args).env("RUST_BACKTRACE", "0"));
    (out, t.elapsed())
}

fn text(o: &Output) -> (String, String) {
    (stdout(o), stderr(o))
}

/// libtpu present (installed when absent) and a network namespace possible; `None` skips.
fn libtpu_ready() -> Option<PathBuf> {
    if std::env::var_os("TPU_RUN_SKIP_LIBTPU").is_some() {
        eprintln!("skipped: TPU_RUN_SKIP_LIBTPU is set");
        return None;
    }
    if tpu::plugin::tpu_devices_present_here() {
        eprintln!("skipped: this machine has a TPU; these tests describe the TPU-less case");
        return None;
    }
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let path = match tpu::plugin::find(PluginKind::Tpu, None).filter(|p| p.is_file()) {
        Some(p) => p,
        None => {
            tpu::plugin::install(PluginKind::Tpu)
                .unwrap_or_else(|e| {
                    panic!("installing libtpu failed ({e}); set TPU_RUN_SKIP_LIBTPU=1 to skip")
                })
                .path
        }
    };
    let ns = Command::new("unshare")
        .args(["--net", "--map-root-user", "true"])
        .status();
    if !matches!(ns, Ok(s) if s.success()) {
        eprintln!("skipped: cannot create a network namespace with unshare: {ns:?}");
        return None;
    }
    Some(path)
}

#[test]
fn devices_on_tpu_without_a_tpu_fails_fast_and_says_what_to_do() {
    if libtpu_ready().is_none() {
        return;
    }
    let (out, took) = timed(&["devices", "--backend", "tpu"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(stderr.contains("this machine has no TPU"), "{stderr}");
    assert!(stderr.contains("tpu-run devices --topology"), "{stderr}");
    // libtpu's own reason, from a client creation that ran without network.
    assert!(stderr.contains("PJRT_Client_Create"), "{stderr}");
}

#[test]
fn devices_describes_a_topology_by_name() {
    if libtpu_ready().is_none() {
        return;
    }
    let (out, _) = timed(&["devices", "--topology", "v4:2x2x1"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("4 devices on 4 chips of kind TPU v4, 2 core(s) per device"),
        "{stdout}"
    );
    for c in ["[0, 0, 0]", "[1, 0, 0]", "[0, 1, 0]", "[1, 1, 0]"] {
        assert!(stdout.contains(&format!("coords={c}")), "{c}: {stdout}");
    }
    // A wrong name comes back with libtpu's explanation.
    let (out, _) = timed(&["devices", "--topology", "v5e-2x2"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("does not match regex"), "{stderr}");
}

#[test]
fn compile_for_a_tpu_topology_reports_memory_and_writes_the_executable() {
    if libtpu_ready().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("mlp.tpu");
    let (out, _) = timed(&[
        "compile",
        "--target",
        "tpu:v5e:2x2",
        "--example",
        "mlp",
        "--out",
        exe.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 devices of kind TPU v5 lite"), "{stdout}");
    assert!(stdout.contains("memory per device (compiler):"), "{stdout}");
    assert!(stdout.contains("cost analysis: bytes accessed"), "{stdout}");
    let bytes = std::fs::read(&exe).unwrap();
    assert!(bytes.len() > 1000, "{} bytes", bytes.len());

    let (out, _) = timed(&["compile", "--target", "tpu:v9:2x2", "--example", "mlp"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("creating the TPU topology"), "{stderr}");
}

#[test]
fn compile_for_cpu_needs_no_libtpu() {
    let (out, _) = timed(&[
        "compile",
        "--target",
        "cpu",
        "--model",
        "tiny",
        "--what",
        "forward",
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--max-predictions",
        "4",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("vocab 30522, f32"), "{stdout}");
    assert!(stdout.contains("compiled for cpu"), "{stdout}");
    assert!(stdout.contains("compiler/estimate"), "{stdout}");
    let (out, _) = timed(&["compile", "--target", "gpu", "--model", "tiny"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("expected tpu:<topology>"), "{stderr}");
}

#[test]
fn bench_with_a_topology_compiles_the_pretraining_step_for_the_slice_only() {
    if libtpu_ready().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("tpu.jsonl");
    let (out, _) = timed(&[
        "bench",
        "--backend",
        "tpu",
        "--topology",
        "v5e:2x2",
        "--model",
        "tiny",
        "--task",
        "pretrain,squad",
        "--seq",
        "32",
        "--batch",
        "8,6",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4);
    let pretrain = &records[0];
    assert_eq!(pretrain["key"], "tiny pretrain s32 b8 bf16 auto x4");
    assert_eq!(
        pretrain["config"]["devices"], 4,
        "every device of the 2x2 slice"
    );
    assert!(pretrain["rust"]["ir_instructions"].as_u64().unwrap() > 100);
    assert!(pretrain["xla"]["compile_s"].as_f64().unwrap() > 0.0);
    assert!(pretrain["xla"]["temp_bytes"].as_i64().is_some());
    assert!(
        pretrain["runtime"].is_null(),
        "nothing is timed without a TPU"
    );
    assert!(pretrain["env"]["device_kind"]
        .as_str()
        .unwrap()
        .contains("v5e:2x2"));
    assert!(records[1]["skipped"]
        .as_str()
        .unwrap()
        .contains("does not split over 4 devices"));
    assert!(records[2]["skipped"]
        .as_str()
        .unwrap()
        .contains("one device"));
    let row = stdout
        .lines()
        .find(|l| l.starts_with("tiny pretrain s32 b8"))
        .unwrap();
    assert!(row.contains("compile only"), "{row}");
}

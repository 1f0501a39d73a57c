//! `tpu-run pretrain` under SIGTERM (preemption, schedulers) and SIGINT (Ctrl-C): the run stops at
//! the next step boundary, writes a complete checkpoint (no `.tmp-` directory left), says which
//! signal stopped it and where it can resume, exits non-zero, and a rerun of the same command
//! resumes from that checkpoint.
mod cli_support;
use cli_support::tpu_run;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: &str = "100000";

fn spawn(out: &Path) -> std::process::Child {
    tpu_run()
        .args([
            "pretrain",
            "--synthetic-data",
            "--preset",
            "tiny",
            "--backend",
            "cpu",
        ])
        .args([
            "--batch-size",
            "4",
            "--seq-len",
            "16",
            "--max-predictions",
            "2",
        ])
        .args(["--steps", STEPS, "--warmup-steps", "1", "--log-every", "1"])
        .arg("--output-dir")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` once this invocation has logged three steps, then collects stderr and the
/// status.
fn stop_with(signal: &str, out: &Path) -> (String, std::process::ExitStatus) {
    let mut child = spawn(out);
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut line = String::new();
    let (mut sent, mut steps_logged) = (false, 0);
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        log.push_str(&line);
        steps_logged += usize::from(line.contains(" step ") && line.contains(": loss"));
        if !sent && steps_logged == 3 {
            // The shell's builtin `kill`: present wherever `sh` is, unlike a kill binary.
            let ok = Command::new("sh")
                .args(["-c", &format!("kill -{signal} {}", child.id())])
                .status()
                .unwrap();
            assert!(ok.success());
            sent = true;
        }
    }
    assert!(sent, "the run never logged 3 steps:\n{log}");
    let status = child.wait().unwrap();
    (log, status)
}

fn checkpoints(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn sigterm_and_sigint_stop_at_a_step_boundary_with_a_checkpoint_and_the_rerun_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (log, status) = stop_with("TERM", &out);
    assert!(!status.success(), "a stopped run exits non-zero:\n{log}");
    assert!(
        log.contains("stopped by SIGTERM after step") && log.contains("run the same command"),
        "{log}"
    );
    let first = checkpoints(&out);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with("step-"), "{first:?}");
    assert!(out
        .join("checkpoints")
        .join(&first[0])
        .join("manifest.json")
        .is_file());
    let stopped_at: u64 = first[0]["step-".len()..].parse().unwrap();
    assert!(stopped_at >= 3, "{first:?}");

    // Ctrl-C on the rerun: it resumed from the first checkpoint and stops with a later one.
    let (log, status) = stop_with("INT", &out);
    assert!(!status.success());
    assert!(
        log.contains("resumed from") && log.contains("stopped by SIGINT after step"),
        "{log}"
    );
    let second = checkpoints(&out);
    let last: u64 = second.last().unwrap()["step-".len()..].parse().unwrap();
    assert!(last > stopped_at, "{second:?}");
    assert!(
        second.iter().all(|n| !n.starts_with('.')),
        "no temporary directory is left: {second:?}"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains(r#""kind":"stopped""#), "{metrics}");
    // Each step is logged once, across the stop and the resume.
    let mut train_steps: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    let n = train_steps.len();
    train_steps.dedup();
    assert_eq!(train_steps.len(), n, "a step is logged twice");
}

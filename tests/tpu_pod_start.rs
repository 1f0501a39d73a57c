//! The zero-flag pod start with real processes (issue 15): `tpu-run pretrain --backend tpu
//! --data-only-ids` (the run's data path; no plugin is loaded) started from the environment
//! variables GKE sets (`TPU_WORKER_ID`, `TPU_WORKER_HOSTNAMES`) and the run's token alone;
//! without them, one process as before. The discovery itself against a fake metadata server
//! and fake machines: tests/tpu_pod_discovery.rs.
//!
//! Everything stays on loopback; every child is killed past `CHILD_LIMIT`.
mod cli_support;
mod pretrain_support;
use cli_support::{finish_within, free_port, stderr, tpu_run};
use pretrain_support::write_patterned_shards;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// One TFRecord shard of 8 examples (seq 16, 2 predictions) in `dir`/data.
fn write_shard(dir: &Path) {
    write_patterned_shards(&dir.join("data"), &[8]);
}

/// `tpu-run pretrain --backend tpu --data-only-ids` (no plugin is loaded on that path) in
/// `dir` (with its shard written by [`write_shard`]) as process `name`, with `env` and
/// `flags`, started.
fn spawn(dir: &Path, name: &str, env: &[(&str, &str)], flags: &[&str]) -> std::process::Child {
    let mut cmd = tpu_run();
    cmd.args(["pretrain", "--preset", "tiny", "--backend", "tpu"])
        .args([
            "--batch-size",
            "4",
            "--seq-len",
            "16",
            "--max-predictions",
            "2",
        ])
        .args(["--steps", "2", "--warmup-steps", "1"])
        .args(["--data", &dir.join("data/*.tfrecord").display().to_string()])
        .arg("--checkpoint-dir")
        .arg(dir.join("ckpt"))
        .arg("--output-dir")
        .arg(dir.join(format!("out-{name}")))
        .arg("--data-only-ids")
        .arg(dir.join(format!("ids-{name}.txt")))
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in [
        "TPU_WORKER_ID",
        "TPU_WORKER_HOSTNAMES",
        "TPU_RUN_METADATA_URL",
        "TPU_SKIP_MDS_QUERY",
        "TPU_RUN_COORDINATOR_TOKEN",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied()).env("RUST_LOG", "info");
    cmd.spawn().expect("starting tpu-run")
}

fn finish(child: std::process::Child) -> Output {
    finish_within(child, CHILD_LIMIT)
}

#[test]
fn two_processes_start_from_the_environment_alone() {
    let t = tempfile::tempdir().unwrap();
    let port = free_port();
    // As GKE sets them; the coordinator's port is given (8482 may be taken on this machine),
    // which also shows an explicit flag winning over the discovered address.
    let coordinator = format!("127.0.0.1:{port}");
    write_shard(t.path());
    let procs: Vec<_> = ["0", "1"]
        .iter()
        .map(|id| {
            spawn(
                t.path(),
                id,
                &[
                    ("TPU_WORKER_ID", id),
                    ("TPU_WORKER_HOSTNAMES", "127.0.0.1,127.0.0.1"),
                    ("TPU_RUN_COORDINATOR_TOKEN", "tpu-pod-discovery-test-token"),
                ],
                &["--coordinator", &coordinator],
            )
        })
        .collect();
    let outs: Vec<Output> = procs.into_iter().map(finish).collect();
    for (id, o) in outs.iter().enumerate() {
        let log = stderr(o);
        assert!(o.status.success(), "process {id} failed:\n{log}");
        assert!(
            log.contains(&format!(
                "TPU worker {id} of 2, coordinator {coordinator} (workers from \
                 TPU_WORKER_HOSTNAMES; worker id from TPU_WORKER_ID)"
            )),
            "{log}"
        );
        let ids = std::fs::read_to_string(t.path().join(format!("ids-{id}.txt"))).unwrap();
        assert_eq!(ids.lines().count(), 2, "two steps:\n{ids}");
    }
}

#[test]
fn processes_without_pod_settings_behave_as_before() {
    let t = tempfile::tempdir().unwrap();
    write_shard(t.path());
    // Off-TPU, no variables: one process, no coordinator, no token asked for. (The data path
    // alone refuses to start one process without a multi-process checkpoint: its error shows
    // that it runs as one.)
    let o = finish(spawn(t.path(), "alone", &[], &[]));
    let log = stderr(&o);
    assert!(
        log.contains("--data-only-ids in one process continues a multi-process run's checkpoint"),
        "{log}"
    );
    assert!(
        !log.contains("TPU worker") && !log.contains("coordinator token"),
        "{log}"
    );
    // Variables but no token: refused before anything starts, naming the way to give it.
    let env = [
        ("TPU_WORKER_ID", "1"),
        ("TPU_WORKER_HOSTNAMES", "10.0.0.1,10.0.0.2"),
    ];
    let o = finish(spawn(t.path(), "x", &env, &[]));
    let log = stderr(&o);
    assert!(!o.status.success());
    assert!(
        log.contains("TPU worker 1 of 2, coordinator 10.0.0.1:8482"),
        "{log}"
    );
    assert!(log.contains("--coordinator-token-file"), "{log}");
    // A metadata override off loopback: refused.
    let env = [
        ("TPU_WORKER_ID", "0"),
        ("TPU_WORKER_HOSTNAMES", "10.0.0.1"),
        ("TPU_RUN_METADATA_URL", "http://169.254.169.254"),
    ];
    let o = finish(spawn(t.path(), "y", &env, &[]));
    let log = stderr(&o);
    assert!(!o.status.success());
    assert!(log.contains("TPU_RUN_METADATA_URL is"), "{log}");
}

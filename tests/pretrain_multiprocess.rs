//! `tpu-run pretrain --num-processes 2` as two real OS processes on loopback, process 0 serving
//! the coordinator. The CPU plugin cannot form a client across processes, so these runs end at
//! PJRT client creation with that error; everything before it is the real multi-process path:
//! joining the run, the training files (checked to be the same list everywhere),
//! the checkpoint every process resumes from (decided by process 0, opened by each from shared
//! storage), and the failure of one process reaching the other with its cause.
//!
//! Every process carries the run's token (`TPU_RUN_COORDINATOR_TOKEN`); a token process 0
//! generates and prints when none is given works for the other process; a process without
//! one is refused naming both ways to give it; `--coordinator-join-timeout` takes effect.
//!
//! Every child is killed if it runs longer than `CHILD_LIMIT`; no assertion depends on timing.
mod cli_support;
mod pretrain_support;
use cli_support::{finish_within, free_port, run_fail, stderr, tpu_run};
use hlo::Literal;
use pretrain_support::write_patterned_shards;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};
use tpu_run::ckpt::{State, Store};

const CHILD_LIMIT: Duration = Duration::from_secs(120);
const CPU_REFUSAL: &str = "the CPU plugin cannot form a client across 2 processes";
const TOKEN_ENV: &str = "TPU_RUN_COORDINATOR_TOKEN";
/// The run token of these tests' pairs (the token is any printable ASCII text).
const TOKEN: &str = "pretrain-multiprocess-test-token-5f1c";

/// One `tpu-run pretrain` process of a 2-process run of a tiny model, with the tests' token.
fn spawn(port: u16, id: u32, out: &Path, extra: &[&str]) -> Child {
    spawn_with_token(port, id, out, extra, Some(TOKEN))
}

/// As `spawn`, with `token` in the environment (None: no token at all).
fn spawn_with_token(port: u16, id: u32, out: &Path, extra: &[&str], token: Option<&str>) -> Child {
    let mut cmd = tpu_run();
    cmd.args(["pretrain", "--preset", "tiny", "--backend", "cpu"])
        .args([
            "--batch-size",
            "8",
            "--seq-len",
            "16",
            "--max-predictions",
            "2",
        ])
        .args(["--steps", "4", "--warmup-steps", "1"])
        .args(["--coordinator", &format!("127.0.0.1:{port}")])
        .args(["--num-processes", "2", "--process-id", &id.to_string()])
        .arg("--output-dir")
        .arg(out.join(format!("out-{id}")))
        .args(extra)
        .env_remove(TOKEN_ENV)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env(TOKEN_ENV, t);
    }
    cmd.spawn().expect("starting tpu-run")
}

/// Waits for a child, killing it past `CHILD_LIMIT`; its exit status and output.
fn finish(child: Child) -> Output {
    finish_within(child, CHILD_LIMIT)
}

/// Runs processes 0 and 1 with their own extra flags; their stderr texts, both having failed.
fn run_pair(dir: &Path, flags0: &[&str], flags1: &[&str]) -> [String; 2] {
    let port = free_port();
    let p0 = spawn(port, 0, dir, flags0);
    let p1 = spawn(port, 1, dir, flags1);
    let outs = [finish(p0), finish(p1)];
    outs.map(|o| {
        let text = stderr(&o);
        assert!(
            !o.status.success(),
            "a CPU multi-process run must fail:\n{text}"
        );
        text
    })
}

/// `n` TFRecord shards of a few examples each (seq 16, 2 predictions).
fn write_shards(dir: &Path, n: usize) -> String {
    write_patterned_shards(dir, &vec![4; n])
}

/// A complete checkpoint of step 3 in `dir` (opened, not loaded, before the client exists).
fn write_checkpoint(dir: &Path) -> PathBuf {
    let w = Literal::from_slice(&[0.5f32, -1.25, 2.0], &[3]).unwrap();
    let state = State::new(3, vec![("w".into(), w)], vec![]);
    Store::new(dir).save(&state).unwrap().path().to_path_buf()
}

#[test]
fn two_processes_agree_on_the_files_then_the_cpu_plugin_refuses_to_span_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_shards(&dir.path().join("shards"), 3);
    let ckpts = dir.path().join("ckpt").display().to_string();
    let flags = ["--data", &data, "--checkpoint-dir", &ckpts];
    let [e0, e1] = run_pair(dir.path(), &flags, &flags);
    for (id, e) in [(0, &e0), (1, &e1)] {
        assert!(
            e.contains(&format!("process {id} of 2: every process joined")),
            "{e}"
        );
        assert!(
            e.contains(&format!(
                "process {id} of 2: every process starts from scratch"
            )),
            "{e}"
        );
        assert!(e.contains(CPU_REFUSAL), "{e}");
    }
    // No split by count: both list the 3 files, and the coordinator will hand out their units.
    for e in [&e0, &e1] {
        assert!(
            e.contains("every process lists the same 3 training file(s)"),
            "{e}"
        );
    }
}

#[test]
fn different_file_lists_are_refused_naming_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let all = write_shards(&dir.path().join("shards"), 3);
    let some = dir
        .path()
        .join("shards/part-[01].tfrecord")
        .display()
        .to_string();
    let [e0, e1] = run_pair(dir.path(), &["--data", &all], &["--data", &some]);
    assert!(
        e1.contains("process 1 sees 2 train input file(s), process 0 sees 3")
            && e1.contains("process 0 also has"),
        "{e1}"
    );
    // Process 0 stops too: from process 1's report, or at its own client creation.
    assert!(
        e0.contains("process 1 sees 2 train input file(s)") || e0.contains(CPU_REFUSAL),
        "{e0}"
    );
}

#[test]
fn every_process_resumes_from_process_0_s_checkpoint_on_shared_storage_only() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    write_checkpoint(&shared);
    let shared = shared.display().to_string();
    let flags = ["--synthetic-data", "--checkpoint-dir", &shared];
    let [e0, e1] = run_pair(dir.path(), &flags, &flags);
    for (id, e) in [(0, &e0), (1, &e1)] {
        let agreed =
            format!("process {id} of 2: every process resumes from checkpoint step-00000003");
        assert!(e.contains(&agreed), "{e}");
        assert!(e.contains(CPU_REFUSAL), "{e}");
    }

    // Process 1 given a directory of its own (not the storage process 0 sees): a clear error.
    let private = dir.path().join("private").display().to_string();
    let [e0, e1] = run_pair(
        dir.path(),
        &flags,
        &["--synthetic-data", "--checkpoint-dir", &private],
    );
    assert!(
        e1.contains("process 0 resumes from checkpoint step-00000003")
            && e1.contains("must be shared storage"),
        "{e1}"
    );
    assert!(
        e0.contains("must be shared storage") || e0.contains(CPU_REFUSAL),
        "{e0}"
    );

    // --no-resume over existing checkpoints: process 0 refuses, process 1 hears why.
    let mut no_resume = flags.to_vec();
    no_resume.push("--no-resume");
    let [e0, e1] = run_pair(dir.path(), &no_resume, &no_resume);
    assert!(
        e0.contains("--no-resume") && e0.contains("already holds"),
        "{e0}"
    );
    assert!(
        e1.contains("the run failed") && e1.contains("already holds checkpoints"),
        "{e1}"
    );
}

#[test]
fn flag_errors_name_the_flag_before_anything_starts() {
    let run = |args: &[&str]| -> String {
        let out = run_fail(
            tpu_run()
                .args(["pretrain", "--synthetic-data", "--backend", "cpu"])
                .args(args)
                .env_remove(TOKEN_ENV)
                .stdin(Stdio::null()),
        );
        stderr(&out)
    };
    let e = run(&["--num-processes", "2"]);
    assert!(e.contains("--coordinator HOST:PORT"), "{e}");
    let e = run(&[
        "--num-processes",
        "2",
        "--process-id",
        "2",
        "--coordinator",
        "h:1",
    ]);
    assert!(e.contains("--process-id) is 2"), "{e}");
    let e = run(&[
        "--num-processes",
        "3",
        "--coordinator",
        "127.0.0.1:1",
        "--batch-size",
        "8",
    ]);
    assert!(e.contains("over 3 process(es)"), "{e}");
    // A short join timeout, so that a case that wrongly passed the checks ends soon.
    let two = [
        "--num-processes",
        "2",
        "--coordinator",
        "127.0.0.1:1",
        "--coordinator-join-timeout",
        "1",
    ];
    let e = run(&[&two[..], &["--coordinator-heartbeat-interval", "30"]].concat());
    assert!(
        e.contains("--coordinator-heartbeat-interval) 30 s must be below")
            && e.contains("(--coordinator-heartbeat-timeout) 30 s"),
        "{e}"
    );
    let e = run(&[&two[..], &["--coordinator-connect-timeout", "0"]].concat());
    assert!(e.contains("(--coordinator-connect-timeout) is 0 s"), "{e}");
    let e = run(&[&two[..], &["--coordinator-wait-timeout", "NaN"]].concat());
    assert!(e.contains("(--coordinator-wait-timeout) is NaN s"), "{e}");
    let e = run(&[&two[..], &["--coordinator-tls-cert", "c.pem"]].concat());
    assert!(e.contains("--coordinator-tls-key"), "{e}");
    // A process other than 0 without a token: both ways to give one are named.
    let e = run(&[&two[..], &["--process-id", "1"]].concat());
    assert!(
        e.contains("process 1: no coordinator token")
            && e.contains("--coordinator-token-file FILE")
            && e.contains(TOKEN_ENV),
        "{e}"
    );
}

#[test]
fn the_token_process_0_generates_lets_the_other_process_in() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let token_out = dir.path().join("token");
    let flags = [
        "--synthetic-data",
        "--coordinator-token-out",
        token_out.to_str().unwrap(),
    ];
    let mut p0 = spawn_with_token(port, 0, dir.path(), &flags, None);
    // Read process 0's stderr as it comes, for the printed token; keep every line.
    let stderr = p0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let token = loop {
        let line = rx
            .recv_timeout(CHILD_LIMIT)
            .expect("process 0 printed no token");
        if let Some(t) = line.strip_prefix("tpu-run: coordinator token: ") {
            break t.trim().to_string();
        }
    };
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    // Written where asked, readable by its owner only.
    assert_eq!(std::fs::read_to_string(&token_out).unwrap().trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let p1 = spawn_with_token(port, 1, dir.path(), &["--synthetic-data"], Some(&token));
    let o1 = finish(p1);
    let e1 = cli_support::stderr(&o1);
    let o0 = finish(p0);
    let e0 = reader.join().unwrap();
    for (id, e) in [(0, &e0), (1, &e1)] {
        assert!(
            e.contains(&format!("process {id} of 2: every process joined")),
            "{e}"
        );
        assert!(e.contains(CPU_REFUSAL), "{e}");
    }
    assert!(!o0.status.success() && !o1.status.success());
    // Shown once: in the line that hands it over, in no log line.
    assert_eq!(e0.matches(&token).count(), 1, "{e0}");
    assert!(!e1.contains(&token), "{e1}");
}

#[test]
fn two_processes_join_over_tls_with_a_token_file() {
    let dir = tempfile::tempdir().unwrap();
    // A CA and a certificate for 127.0.0.1 it signs, made now.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let file = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (ca, cert, key) = (
        file("ca.pem", ca.pem()),
        file("cert.pem", cert.pem()),
        file("key.pem", key.serialize_pem()),
    );
    let token = file("token", "a-token-in-a-file\n".into());
    let common = [
        "--synthetic-data",
        "--coordinator-token-file",
        &token,
        "--coordinator-tls-ca",
        &ca,
    ];
    let server = [
        &common[..],
        &[
            "--coordinator-tls-cert",
            &cert,
            "--coordinator-tls-key",
            &key,
        ],
    ]
    .concat();
    let [e0, e1] = run_pair(dir.path(), &server, &common);
    assert!(e0.contains("(TLS, token required)"), "{e0}");
    for (id, e) in [(0, &e0), (1, &e1)] {
        assert!(
            e.contains(&format!("process {id} of 2: every process joined")),
            "{e}"
        );
        assert!(e.contains(CPU_REFUSAL), "{e}");
        // The file is world-readable as written here: a warning naming it.
        assert!(
            e.contains("can be read by other users") && e.contains("chmod 600"),
            "{e}"
        );
    }
}

#[test]
fn a_join_timeout_from_the_command_line_names_the_missing_process() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let p0 = spawn(
        free_port(),
        0,
        dir.path(),
        &["--synthetic-data", "--coordinator-join-timeout", "2"],
    );
    let o = finish(p0);
    let took = started.elapsed();
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("only 1 of 2 processes registered within 2.0 s")
            && e.contains("missing process id(s) 1"),
        "{e}"
    );
    // Not the default 300 s (generous bound: a loaded machine starts the binary slowly).
    assert!(took < Duration::from_secs(60), "{took:?}");
}

//! `tpu-run pod` against a stand-in gcloud (tests/pod_support/gcloud.sh) on PATH that records
//! every call and plays back describe outputs; its ssh runs the worker scripts with bash in a
//! directory per worker, and its scp copies there, so the scripts `pod` sends really run (with
//! tests/pod_support/tpu-run.sh standing in for the binary). No network, no Cloud TPU.
mod cli_support;
use cli_support::{run_fail, run_ok, stderr, stdout, tpu_run};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tpu_run::pod::plan;

const ZONE: &str = "--zone=us-west4-a";

struct Fake {
    tmp: tempfile::TempDir,
}

impl Fake {
    /// A stand-in slice of `workers` hosts; describe answers READY unless a test says otherwise.
    fn new(workers: u32) -> Fake {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fake { tmp };
        std::fs::create_dir_all(f.bin()).unwrap();
        std::fs::create_dir_all(f.dir().join("responses")).unwrap();
        std::fs::copy(support("gcloud.sh"), f.bin().join("gcloud")).unwrap();
        std::fs::write(f.dir().join("workers"), workers.to_string()).unwrap();
        for w in 0..workers {
            std::fs::create_dir_all(f.dir().join(format!("w{w}"))).unwrap();
        }
        f.respond("tpu-vm-describe", None, &node_json("READY", workers));
        std::fs::write(f.dir().join("pretrain.toml"), "[train]\nsteps = 10\n").unwrap();
        f
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn bin(&self) -> PathBuf {
        self.dir().join("bin")
    }

    /// `body` (bash, sourced) answers the `n`-th call of `key` (`group-verb`), or every call.
    fn respond(&self, key: &str, n: Option<u32>, body: &str) {
        let name = match n {
            Some(n) => format!("{key}.{n}.sh"),
            None => format!("{key}.sh"),
        };
        std::fs::write(self.dir().join("responses").join(name), body).unwrap();
    }

    /// `tpu-run pod ARGS` with the stand-in first on PATH, in the fake's directory.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = tpu_run();
        let path = format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.arg("pod")
            .args(args)
            .current_dir(self.dir())
            .env("PATH", path)
            .env("FAKE_GCLOUD_DIR", self.dir())
            .env_remove("FAKE_GCLOUD_RECORD_ONLY")
            .env_remove("FAKE_MODE")
            .stdin(Stdio::null());
        c
    }

    fn pod(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// As [`Fake::pod`], which must succeed.
    fn pod_ok(&self, args: &[&str]) -> Output {
        run_ok(&mut self.command(args))
    }

    /// As [`Fake::pod`], which must fail.
    fn pod_fail(&self, args: &[&str]) -> Output {
        run_fail(&mut self.command(args))
    }

    /// Every gcloud call so far, as argument lists.
    fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.dir().join("calls.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                l.split('\u{1f}')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    /// The calls whose third and fourth words are `group verb`.
    fn calls_of(&self, group: &str, verb: &str) -> Vec<Vec<String>> {
        self.calls()
            .into_iter()
            .filter(|c| c.get(2).map(String::as_str) == Some(group) && c[3] == verb)
            .collect()
    }

    fn worker_file(&self, w: u32, name: &str) -> PathBuf {
        self.dir().join(format!("w{w}/tpu-run-pod/{name}"))
    }
}

fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/pod_support")
        .join(name)
}

/// A describe answer: a spot v5litepod-16 node with `workers` endpoints 10.0.0.2, .3, ...
fn node_json(state: &str, workers: u32) -> String {
    let eps: Vec<String> = (0..workers)
        .map(|w| format!(r#"{{"ipAddress": "10.0.0.{}", "port": 8470}}"#, w + 2))
        .collect();
    format!(
        "cat <<'JSON'\n{{\"name\": \"projects/p/locations/us-west4-a/nodes/bert-pod\", \
         \"state\": \"{state}\", \"health\": \"HEALTHY\", \"acceleratorType\": \"v5litepod-16\", \
         \"runtimeVersion\": \"v2-alpha-tpuv5-lite\", \"schedulingConfig\": {{\"spot\": true}}, \
         \"networkEndpoints\": [{}]}}\nJSON\n",
        eps.join(", ")
    )
}

const NOT_FOUND: &str = "echo 'ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: \
    projects/p/locations/us-west4-a/nodes/bert-pod was not found' >&2; exit 1\n";

fn words(s: &[&str]) -> Vec<String> {
    s.iter().map(|w| w.to_string()).collect()
}

fn text(o: &Output) -> (String, String) {
    (stdout(o), stderr(o))
}

/// `pod run bert-pod` with the stand-in binary, no waiting between looks, and `extra`.
fn run_args(extra: &[&str]) -> Vec<String> {
    let mut a = words(&[
        "run",
        "bert-pod",
        "--zone",
        "us-west4-a",
        "--config",
        "pretrain.toml",
        "--poll-interval",
        "0",
        "--failure-grace",
        "20",
    ]);
    a.push("--binary".into());
    a.push(support("tpu-run.sh").display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The `--command=` of an ssh call.
fn ssh_command(call: &[String]) -> &str {
    call.iter()
        .find_map(|a| a.strip_prefix("--command="))
        .expect("an ssh call has --command")
}

fn worker_of(call: &[String]) -> &str {
    call.iter()
        .find_map(|a| a.strip_prefix("--worker="))
        .expect("--worker")
}

#[test]
fn create_a_spot_vm_and_a_spot_queued_resource() {
    let f = Fake::new(2);
    f.pod_ok(&[
        "create",
        "bert-pod",
        "--zone",
        "us-west4-a",
        "--accelerator-type",
        "v5litepod-16",
        "--version",
        "v2-alpha-tpuv5-lite",
        "--spot",
        "--poll-interval",
        "0",
    ]);
    assert_eq!(
        f.calls()[0],
        words(&[
            "compute",
            "tpus",
            "tpu-vm",
            "create",
            "bert-pod",
            ZONE,
            "--accelerator-type=v5litepod-16",
            "--version=v2-alpha-tpuv5-lite",
            "--spot"
        ])
    );

    // A queued resource: created, then waited for through its queue until the node is READY.
    let f = Fake::new(2);
    f.respond("tpu-vm-describe", Some(1), NOT_FOUND);
    f.respond(
        "queued-resources-describe",
        Some(1),
        "echo '{\"state\": {\"state\": \"WAITING_FOR_RESOURCES\"}}'\n",
    );
    let o = f.pod_ok(&[
        "create",
        "bert-pod",
        "--queued-resource",
        "bert-qr",
        "--zone",
        "us-west4-a",
        "--project",
        "my-proj",
        "--accelerator-type",
        "v5litepod-16",
        "--runtime-version",
        "v2-alpha-tpuv5-lite",
        "--spot",
        "--poll-interval",
        "0",
    ]);
    let (out, err) = text(&o);
    let calls = f.calls();
    assert_eq!(
        calls[0],
        words(&[
            "compute",
            "tpus",
            "queued-resources",
            "create",
            "bert-qr",
            ZONE,
            "--project=my-proj",
            "--node-id=bert-pod",
            "--accelerator-type=v5litepod-16",
            "--runtime-version=v2-alpha-tpuv5-lite",
            "--spot"
        ])
    );
    let verbs: Vec<String> = calls[1..]
        .iter()
        .map(|c| format!("{} {}", c[2], c[3]))
        .collect();
    assert_eq!(
        verbs,
        [
            "tpu-vm describe",
            "queued-resources describe",
            "tpu-vm describe"
        ]
    );
    assert!(err.contains("waiting for bert-pod: queued resource bert-qr WAITING_FOR_RESOURCES"));
    assert!(
        out.contains("bert-pod is READY: 2 workers (v5litepod-16)"),
        "{out}"
    );

    // Queued resources have no --preemptible.
    let o = f.pod_fail(&[
        "create",
        "x",
        "--queued-resource",
        "q",
        "--accelerator-type",
        "v4-8",
        "--version",
        "v",
        "--preemptible",
    ]);
    assert!(text(&o).1.contains("queued resources take --spot"));
}

#[test]
fn run_copies_to_every_worker_starts_each_with_its_id_and_streams_worker_0() {
    let f = Fake::new(2);
    let o = run_ok(&mut f.command(&as_strs(&run_args(&[
        "--",
        "--steps",
        "10",
        "--data",
        "/mnt/d/*.tfrecord",
    ]))));
    let out = text(&o).0;
    assert!(
        out.contains("step 1 loss 7.25 (process 0)"),
        "worker 0 streamed: {out}"
    );
    assert!(
        !out.contains("(process 1)"),
        "only worker 0 is streamed: {out}"
    );

    // The local directory defaults to tpu-run-pod/<name> under the current one.
    let stage = f.dir().join("tpu-run-pod/bert-pod/stage");
    let scp = f.calls_of("tpu-vm", "scp");
    assert_eq!(
        scp,
        vec![words(&[
            "compute",
            "tpus",
            "tpu-vm",
            "scp",
            "tpu-run-pod/bert-pod/stage/tpu-run",
            "tpu-run-pod/bert-pod/stage/pretrain.toml",
            "tpu-run-pod/bert-pod/stage/coordinator-token",
            "bert-pod:tpu-run-pod/",
            ZONE,
            "--worker=all"
        ])]
    );
    let ssh = f.calls_of("tpu-vm", "ssh");
    let all: Vec<&str> = ssh
        .iter()
        .filter(|c| worker_of(c) == "all")
        .map(|c| ssh_command(c))
        .collect();
    assert_eq!(all, [plan::prepare_script(), plan::setup_script(None)]);
    let mut per_worker: Vec<(&str, &str)> = ssh
        .iter()
        .filter(|c| worker_of(c) != "all")
        .map(|c| (worker_of(c), ssh_command(c)))
        .collect();
    per_worker.sort();
    let launch = plan::Launch {
        coordinator: "10.0.0.2:8476".into(),
        num_processes: 2,
        resume: false,
        extra: words(&["--steps", "10", "--data", "/mnt/d/*.tfrecord"]),
    };
    assert_eq!(
        per_worker,
        [
            ("0", launch.start_script(0, true).as_str()),
            ("1", launch.start_script(1, false).as_str())
        ]
    );
    for c in ssh.iter().filter(|c| worker_of(c) != "all") {
        let head = words(&["compute", "tpus", "tpu-vm", "ssh", "bert-pod", ZONE]);
        assert_eq!((c.len(), &c[..6]), (8, &head[..]), "{c:?}");
    }

    // What each worker ran: its own process id, the glob unexpanded, and the same private token.
    for w in 0..2u32 {
        let log = std::fs::read_to_string(f.worker_file(w, "pretrain.log")).unwrap();
        assert!(
            log.contains(&format!(
                "argv: pretrain --config pretrain.toml --backend tpu --coordinator \
                 10.0.0.2:8476 --num-processes 2 --process-id {w} --coordinator-token-file \
                 coordinator-token --steps 10 --data /mnt/d/*.tfrecord"
            )),
            "{log}"
        );
        let pid: u32 = std::fs::read_to_string(f.worker_file(w, "pretrain.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(pid > 1);
        use std::os::unix::fs::PermissionsExt;
        let token = f.worker_file(w, "coordinator-token");
        let mode = std::fs::metadata(&token).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read(&token).unwrap(),
            std::fs::read(stage.join("coordinator-token")).unwrap()
        );
    }
}

#[test]
fn a_preempted_spot_vm_is_recreated_and_the_run_resumes() {
    let f = Fake::new(2);
    // READY at the start; worker 1's ssh then fails as the VM goes away; describe says so
    // until the VM is created again.
    f.respond("tpu-vm-describe", Some(2), &node_json("PREEMPTED", 2));
    f.respond("tpu-vm-describe", Some(3), &node_json("PREEMPTED", 2));
    std::fs::write(f.dir().join("ssh-fail-once.1"), "").unwrap();
    let o = run_ok(&mut f.command(&as_strs(&run_args(&[
        "--max-restarts",
        "1",
        "--",
        "--no-resume",
    ]))));
    let err = text(&o).1;
    assert!(
        err.contains("worker 1 unreachable (ssh exit status 255)"),
        "{err}"
    );
    assert!(err.contains("bert-pod was interrupted (TPU VM PREEMPTED); restart 1 of at most 1"));

    let calls = f.calls();
    let at = |group: &str, verb: &str| {
        calls
            .iter()
            .position(|c| c[2] == group && c[3] == verb)
            .unwrap_or_else(|| panic!("no {group} {verb} in {calls:?}"))
    };
    let (delete, create) = (at("tpu-vm", "delete"), at("tpu-vm", "create"));
    assert_eq!(
        calls[delete],
        words(&["compute", "tpus", "tpu-vm", "delete", "bert-pod", ZONE, "--quiet"])
    );
    assert_eq!(
        calls[create],
        words(&[
            "compute",
            "tpus",
            "tpu-vm",
            "create",
            "bert-pod",
            ZONE,
            "--accelerator-type=v5litepod-16",
            "--version=v2-alpha-tpuv5-lite",
            "--spot"
        ])
    );
    assert!(delete < create);
    assert_eq!(f.calls_of("tpu-vm", "describe").len(), 4);
    assert_eq!(
        f.calls_of("tpu-vm", "scp").len(),
        2,
        "copied again to the new VM"
    );
    let starts: Vec<(usize, &Vec<String>)> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c[3] == "ssh" && worker_of(c) != "all")
        .collect();
    assert_eq!(starts.len(), 4);
    for (i, c) in starts {
        let cmd = ssh_command(c);
        let w = worker_of(c);
        assert!(
            cmd.contains(&format!("--num-processes 2 --process-id {w} ")),
            "{cmd}"
        );
        if i < delete {
            assert!(
                !cmd.contains("--resume ") && cmd.contains("--no-resume"),
                "{cmd}"
            );
        } else {
            assert!(
                cmd.contains("--resume ") && !cmd.contains("--no-resume"),
                "{cmd}"
            );
        }
    }
    let log = std::fs::read_to_string(f.worker_file(1, "pretrain.log")).unwrap();
    assert!(log.contains("--process-id 1 --coordinator-token-file coordinator-token --resume"));

    // Without --max-restarts the preemption ends the run, saying how to go on.
    let f = Fake::new(2);
    f.respond("tpu-vm-describe", Some(2), &node_json("PREEMPTED", 2));
    std::fs::write(f.dir().join("ssh-fail-once.0"), "").unwrap();
    let o = run_fail(&mut f.command(&as_strs(&run_args(&[]))));
    let err = text(&o).1;
    assert!(
        err.contains("--max-restarts 0 allows no more restarts"),
        "{err}"
    );
    assert!(f.calls_of("tpu-vm", "create").is_empty());
}

#[test]
fn a_suspended_queued_resource_is_recreated_and_waited_for_in_the_queue() {
    let f = Fake::new(2);
    // READY; then worker 0's ssh fails, the node is gone and its queued resource SUSPENDED;
    // once created again, the request waits for capacity before the node is READY.
    for n in [2, 3, 4] {
        f.respond("tpu-vm-describe", Some(n), NOT_FOUND);
    }
    let qr = |state: &str| format!("echo '{{\"state\": {{\"state\": \"{state}\"}}}}'\n");
    f.respond("queued-resources-describe", Some(1), &qr("SUSPENDED"));
    f.respond("queued-resources-describe", Some(2), &qr("SUSPENDED"));
    f.respond(
        "queued-resources-describe",
        Some(3),
        &qr("WAITING_FOR_RESOURCES"),
    );
    std::fs::write(f.dir().join("ssh-fail-once.0"), "").unwrap();
    let o = run_ok(&mut f.command(&as_strs(&run_args(&[
        "--queued-resource",
        "bert-qr",
        "--max-restarts",
        "1",
    ]))));
    let err = text(&o).1;
    assert!(err.contains("waiting for bert-pod: queued resource bert-qr WAITING_FOR_RESOURCES"));
    let calls = f.calls();
    let of = |verb: &str| -> Vec<&Vec<String>> {
        calls
            .iter()
            .filter(|c| c[2] == "queued-resources" && c[3] == verb)
            .collect()
    };
    assert_eq!(
        of("delete"),
        [&words(&[
            "compute",
            "tpus",
            "queued-resources",
            "delete",
            "bert-qr",
            ZONE,
            "--force",
            "--quiet"
        ])]
    );
    // The spec is the one describe showed while the node was READY (spot).
    assert_eq!(
        of("create"),
        [&words(&[
            "compute",
            "tpus",
            "queued-resources",
            "create",
            "bert-qr",
            ZONE,
            "--node-id=bert-pod",
            "--accelerator-type=v5litepod-16",
            "--runtime-version=v2-alpha-tpuv5-lite",
            "--spot"
        ])]
    );
    assert!(f.calls_of("tpu-vm", "delete").is_empty() && f.calls_of("tpu-vm", "create").is_empty());
    let resumed = calls
        .iter()
        .filter(|c| c[3] == "ssh" && worker_of(c) != "all")
        .filter(|c| ssh_command(c).contains("--resume"))
        .count();
    assert_eq!(resumed, 2, "both workers restarted with --resume");
}

#[test]
fn a_failed_worker_has_every_log_fetched_and_named() {
    let f = Fake::new(2);
    let o = run_fail(
        f.command(&as_strs(&run_args(&[])))
            .env("FAKE_MODE", "fail1"),
    );
    let err = text(&o).1;
    let logs = f.dir().join("tpu-run-pod/bert-pod/logs/attempt-1");
    assert!(err.contains("worker 1 failed (exit status 3)"), "{err}");
    assert!(err.contains("not preempted"), "{err}");
    assert!(
        err.contains("2 of 2 workers' logs are in tpu-run-pod/bert-pod/logs/attempt-1"),
        "{err}"
    );
    let w1 = std::fs::read_to_string(logs.join("worker-1.log")).unwrap();
    assert!(w1.contains("process 1: out of memory"), "{w1}");
    assert!(std::fs::read_to_string(logs.join("worker-0.log"))
        .unwrap()
        .contains("(process 0)"));
    let fetches: Vec<Vec<String>> = f
        .calls_of("tpu-vm", "scp")
        .into_iter()
        .filter(|c| c[4].starts_with("bert-pod:"))
        .collect();
    assert_eq!(
        fetches[1],
        words(&[
            "compute",
            "tpus",
            "tpu-vm",
            "scp",
            "bert-pod:tpu-run-pod/pretrain.log",
            "tpu-run-pod/bert-pod/logs/attempt-1/worker-1.log",
            ZONE,
            "--worker=1"
        ])
    );
}

/// Waits for `child` at most `limit`; kills it and fails past that.
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn stop_sends_sigterm_to_every_workers_pretrain() {
    let f = Fake::new(2);
    let running = f
        .command(&as_strs(&run_args(&[])))
        .env("FAKE_MODE", "wait")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !(0..2).all(|w| f.worker_file(w, "pretrain.pid").exists()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the workers did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = f.pod_ok(&["stop", "bert-pod", "--zone", "us-west4-a"]);
    let out = text(&o).0;
    assert_eq!(
        out.matches("sent SIGTERM to tpu-run pretrain").count(),
        2,
        "{out}"
    );
    let stops = f
        .calls_of("tpu-vm", "ssh")
        .into_iter()
        .filter(|c| ssh_command(c) == plan::stop_script())
        .collect::<Vec<_>>();
    assert_eq!(
        stops,
        vec![words(&[
            "compute",
            "tpus",
            "tpu-vm",
            "ssh",
            "bert-pod",
            ZONE,
            "--worker=all",
            &format!("--command={}", plan::stop_script())
        ])]
    );

    let o = wait_bounded(running, Duration::from_secs(60));
    let (out, err) = text(&o);
    assert!(!o.status.success(), "stopped, not finished: {out}\n{err}");
    assert!(
        out.contains("SIGTERM: checkpoint written at step 1"),
        "{out}"
    );
    for w in 0..2 {
        let log = std::fs::read_to_string(f.worker_file(w, "pretrain.log")).unwrap();
        assert!(log.contains("SIGTERM: checkpoint written"), "{log}");
    }
    // Nothing left to stop.
    let o = f.pod(&["stop", "bert-pod", "--zone", "us-west4-a"]);
    assert_eq!(text(&o).0.matches("no tpu-run pretrain running").count(), 2);
}

#[test]
fn delete_a_vm_or_a_queued_resource_and_show_status_and_logs() {
    let f = Fake::new(2);
    assert!(f
        .pod(&["delete", "bert-pod", "--zone", "us-west4-a"])
        .status
        .success());
    assert!(f
        .pod(&[
            "delete",
            "bert-pod",
            "--zone",
            "us-west4-a",
            "--queued-resource",
            "bert-qr"
        ])
        .status
        .success());
    assert_eq!(
        f.calls(),
        vec![
            words(&["compute", "tpus", "tpu-vm", "delete", "bert-pod", ZONE, "--quiet"]),
            words(&[
                "compute",
                "tpus",
                "queued-resources",
                "delete",
                "bert-qr",
                ZONE,
                "--force",
                "--quiet"
            ]),
        ]
    );

    let o = f.pod(&["status", "bert-pod", "--zone", "us-west4-a"]);
    let out = text(&o).0;
    assert!(
        out.contains("TPU VM bert-pod: READY, health HEALTHY"),
        "{out}"
    );
    assert!(
        out.contains("v5litepod-16, runtime v2-alpha-tpuv5-lite, spot"),
        "{out}"
    );
    assert!(out.contains("worker 1: 10.0.0.3"), "{out}");

    for w in 0..2 {
        std::fs::create_dir_all(f.worker_file(w, "")).unwrap();
        std::fs::write(f.worker_file(w, "pretrain.log"), format!("log of {w}\n")).unwrap();
    }
    f.pod_ok(&[
        "logs",
        "bert-pod",
        "--zone",
        "us-west4-a",
        "--out",
        "fetched",
    ]);
    assert_eq!(
        std::fs::read_to_string(f.dir().join("fetched/worker-1.log")).unwrap(),
        "log of 1\n"
    );

    f.respond("tpu-vm-describe", None, NOT_FOUND);
    let o = f.pod_fail(&["status", "bert-pod", "--zone", "us-west4-a"]);
    assert!(text(&o).0.contains("TPU VM bert-pod: not found"));
}

/// Runs each printed line (comments skipped) with bash against the stand-in in record-only mode.
fn replay(f: &Fake, printed: &str) -> Vec<Vec<String>> {
    let _ = std::fs::remove_file(f.dir().join("calls.log"));
    for line in printed.lines().filter(|l| !l.starts_with('#')) {
        let ok = Command::new("bash")
            .args(["-c", line])
            .current_dir(f.dir())
            .env("PATH", format!("{}:/usr/bin:/bin", f.bin().display()))
            .env("FAKE_GCLOUD_DIR", f.dir())
            .env("FAKE_GCLOUD_RECORD_ONLY", "1")
            .status()
            .unwrap()
            .success();
        assert!(ok, "{line}");
    }
    f.calls()
}

#[test]
fn dry_run_runs_nothing_and_prints_commands_that_paste() {
    let f = Fake::new(2);
    let o = f.pod_ok(&[
        "create",
        "bert-pod",
        "--zone",
        "us-west4-a",
        "--accelerator-type",
        "v5litepod-16",
        "--version",
        "v2-alpha-tpuv5-lite",
        "--preemptible",
        "--dry-run",
    ]);
    let out = text(&o).0;
    assert_eq!(
        out,
        "gcloud compute tpus tpu-vm create bert-pod --zone=us-west4-a \
         --accelerator-type=v5litepod-16 --version=v2-alpha-tpuv5-lite --preemptible\n"
    );
    for sub in ["stop", "delete", "status"] {
        let o = f.pod_ok(&[sub, "bert-pod", "--zone", "us-west4-a", "--dry-run"]);
        assert!(
            text(&o).0.starts_with("gcloud compute tpus tpu-vm "),
            "{sub}"
        );
    }
    let o = f.pod(&["logs", "bert-pod", "--workers", "2", "--dry-run"]);
    assert_eq!(text(&o).0.lines().count(), 2);
    let o = run_ok(&mut f.command(&as_strs(&run_args(&[
        "--workers",
        "2",
        "--dry-run",
        "--",
        "--data",
        "a b",
    ]))));
    let printed = text(&o).0;
    assert!(!f.dir().join("calls.log").exists(), "a dry run ran gcloud");
    assert!(
        !f.dir().join("tpu-run-pod").exists(),
        "a dry run staged files"
    );

    let calls = replay(&f, &printed);
    let verbs: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {}", c[3], c.last().unwrap().split('=').next().unwrap()))
        .collect();
    assert_eq!(
        verbs,
        [
            "describe --format",
            "ssh --command",
            "scp --worker",
            "ssh --command",
            "ssh --command",
            "ssh --command",
            "scp --worker",
            "scp --worker"
        ]
    );
    let launch = plan::Launch {
        coordinator: "<worker-0-ip>:8476".into(),
        num_processes: 2,
        resume: false,
        extra: words(&["--data", "a b"]),
    };
    assert_eq!(ssh_command(&calls[5]), launch.start_script(1, false));
    assert_eq!(worker_of(&calls[5]), "1");

    // Without --workers a dry run cannot know the slice's size.
    let o = f
        .command(&as_strs(&run_args(&["--dry-run"])))
        .output()
        .unwrap();
    assert!(text(&o).1.contains("needs --workers N"));
}

#[test]
fn a_missing_gcloud_is_named_with_what_to_do() {
    let f = Fake::new(1);
    let empty = f.dir().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run_fail(f.command(&["status", "bert-pod"]).env("PATH", &empty));
    let err = text(&o).1;
    assert!(
        err.contains("gcloud (the Google Cloud CLI) was not found on PATH"),
        "{err}"
    );
    assert!(err.contains("--gcloud PATH"), "{err}");
    // --gcloud names it instead.
    run_ok(
        f.command(&["status", "bert-pod", "--gcloud"])
            .arg(f.bin().join("gcloud"))
            .env("PATH", format!("{}:/usr/bin:/bin", empty.display())),
    );
    // Pretrain flags pod sets itself are refused before anything runs.
    std::fs::remove_file(f.dir().join("calls.log")).unwrap();
    let o = f
        .command(&as_strs(&run_args(&["--", "--process-id", "3"])))
        .output()
        .unwrap();
    assert!(text(&o)
        .1
        .contains("`--process-id` is set by `tpu-run pod run`"));
    assert!(!f.dir().join("calls.log").exists());
}

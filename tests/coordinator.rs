//! The multi-process coordinator (src/coord) on loopback: the error paths with clients on
//! threads of this process, and whole runs of 3 real OS processes (this test binary started
//! again as `worker_process`), one of which serves the coordinator as worker 0 does: membership,
//! key-value exchange of random values checked against their seeds, disjoint and complete input
//! shards, a coordinated checkpoint, barriers; a worker killed mid-run and a coordinator killed
//! mid-run make the others fail with an error naming what was lost. Every process carries the
//! run token (auth is always on); tests/coordinator_security.rs tests the refusals.
//!
//! Every wait is bounded: the clients' own timeouts, and the parent kills children that do not
//! finish within `CHILD_LIMIT`. No assertion depends on timing.
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};
use tpu_run::coord::{self, Client, ClientConfig, CoordError, ServerConfig, Token};

const ROLE_ENV: &str = "TPU_RUN_COORD_TEST_ROLE";
/// The run token a parent hands its worker processes.
const TOKEN_ENV: &str = "TPU_RUN_COORD_TEST_TOKEN";
const CHILD_LIMIT: Duration = Duration::from_secs(120);
/// Long enough never to be reached in a healthy run; a failure must end waits before this.
const LONG: Duration = Duration::from_secs(60);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// This test process's run token (a worker process takes its parent's).
fn token() -> Token {
    static TOKEN: OnceLock<Token> = OnceLock::new();
    TOKEN
        .get_or_init(|| match std::env::var(TOKEN_ENV) {
            Ok(t) => Token::new(&t, TOKEN_ENV).unwrap(),
            Err(_) => Token::generate().unwrap(),
        })
        .clone()
}

/// Short heartbeats, so that lost processes are noticed within seconds (and a busy test
/// machine still does not starve a healthy process for that long).
fn fast_server(n: u32) -> coord::Server {
    let config = ServerConfig {
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_secs(3),
        ..ServerConfig::new(n, token())
    };
    coord::serve(loopback(), config).expect("coordinator")
}

fn config(id: u32) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(20),
        register_timeout: LONG,
        call_timeout: Duration::from_secs(10),
        hostname: Some(format!("host-{id}")),
        local_device_count: id + 1,
        ..ClientConfig::new(token())
    }
}

/// Connects processes 0..n on threads (connect blocks until everyone registered).
fn connect_all(addr: &str, n: u32) -> Vec<Client> {
    let handles: Vec<_> = (0..n)
        .map(|id| {
            let addr = addr.to_string();
            std::thread::spawn(move || Client::connect(&addr, id, n, config(id)))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("connect"))
        .collect()
}

// ------------------------------------------------------------ in-process error paths

#[test]
fn wrong_counts_taken_ids_and_a_missing_coordinator_are_clear_errors() {
    let server = fast_server(2);
    let addr = server.local_addr().to_string();
    let first = {
        let addr = addr.clone();
        std::thread::spawn(move || Client::connect(&addr, 0, 2, config(0)))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.registered().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.registered()[0].hostname, "host-0");
    let taken = Client::connect(&addr, 0, 2, config(5)).unwrap_err();
    assert!(matches!(taken, CoordError::Rejected(_)), "{taken:?}");
    assert!(
        taken.to_string().contains("host host-0") && taken.to_string().contains("host-5"),
        "{taken}"
    );
    let e = Client::connect(&addr, 1, 3, config(1)).unwrap_err();
    assert!(e.to_string().contains("--num-processes 3"), "{e}");
    let e = Client::connect(&addr, 2, 2, config(2)).unwrap_err();
    assert!(e.to_string().contains("must be in 0..2"), "{e}");
    let second = Client::connect(&addr, 1, 2, config(1)).unwrap();
    let first = first.join().unwrap().unwrap();
    let members: Vec<(u32, String, u32)> = first
        .members()
        .iter()
        .map(|m| (m.process_id, m.hostname.clone(), m.local_device_count))
        .collect();
    assert_eq!(
        members,
        vec![(0, "host-0".into(), 1), (1, "host-1".into(), 2)]
    );
    assert_eq!(second.members(), first.members());
    first.shutdown().unwrap();
    second.shutdown().unwrap();
    server.wait_until_all_left(LONG).unwrap();

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind(loopback())
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let quick = ClientConfig {
        connect_timeout: Duration::from_millis(300),
        ..config(0)
    };
    let e = Client::connect(&format!("127.0.0.1:{port}"), 0, 1, quick).unwrap_err();
    assert!(matches!(e, CoordError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("is worker 0 running"), "{e}");
    let e = Client::connect("no-port-here", 0, 1, config(0)).unwrap_err();
    assert!(e.to_string().contains("HOST:PORT"), "{e}");
}

#[test]
fn registration_get_and_barrier_timeouts_name_what_is_missing() {
    let server = fast_server(3);
    let addr = server.local_addr().to_string();
    let short = ClientConfig {
        register_timeout: Duration::from_millis(300),
        ..config(1)
    };
    let e = Client::connect(&addr, 1, 3, short).unwrap_err();
    assert!(matches!(e, CoordError::Timeout(_)), "{e:?}");
    assert!(e.to_string().contains("missing process id(s) 0, 2"), "{e}");
    drop(server);

    let server = fast_server(2);
    let c = connect_all(&server.local_addr().to_string(), 2);
    let e = c[0]
        .get("never-set", Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(e, CoordError::Timeout(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("`never-set` was not set within 0.2 s"),
        "{e}"
    );
    assert_eq!(c[1].try_get("never-set").unwrap(), None);
    // Values past gRPC's default 4 MiB message limit go through.
    let big: Vec<u8> = {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        (0..(9 << 20)).map(|_| rng.gen()).collect()
    };
    c[0].put("big", &big).unwrap();
    assert!(c[1].get("big", LONG).unwrap() == big);

    let e = c[0].barrier("b", Duration::from_millis(200)).unwrap_err();
    assert!(
        e.to_string().contains("process(es) 1 did not reach it"),
        "{e}"
    );
    // The late process finds the barrier failed, not a fresh one.
    let e = c[1].barrier("b", LONG).unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    // The next use of the name is a new barrier.
    std::thread::scope(|s| {
        let t = s.spawn(|| c[1].barrier("b", LONG));
        c[0].barrier("b", LONG).unwrap();
        t.join().unwrap().unwrap();
    });
    for x in &c {
        x.shutdown().unwrap();
    }
}

#[test]
fn a_process_that_stops_early_fails_the_run_for_the_others() {
    let server = fast_server(3);
    let mut c = connect_all(&server.local_addr().to_string(), 3);
    let last = c.pop().unwrap();
    std::thread::scope(|s| {
        let waiting: Vec<_> = c
            .iter()
            .map(|x| s.spawn(|| x.barrier("step", LONG)))
            .collect();
        // Dropped without shutdown, as on an error return: the others hear of it at once.
        drop(last);
        for w in waiting {
            let e = w.join().unwrap().unwrap_err();
            assert!(matches!(e, CoordError::RunFailed(_)), "{e:?}");
            assert!(
                e.to_string()
                    .contains("process 2 (host host-2) stopped early: it ended without leaving"),
                "{e}"
            );
        }
    });
    let e = c[0].put("k", b"v").unwrap_err();
    assert!(matches!(e, CoordError::RunFailed(_)), "{e:?}");
    assert!(server.failure().unwrap().contains("process 2"));
    // An explicit abort carries the reason.
    let server = fast_server(2);
    let c = connect_all(&server.local_addr().to_string(), 2);
    c[1].abort("data shard 7 is damaged").unwrap();
    let e = c[0].get("x", LONG).unwrap_err();
    assert!(e.to_string().contains("data shard 7 is damaged"), "{e}");
    assert!(matches!(
        server.wait_until_all_left(LONG),
        Err(CoordError::RunFailed(_))
    ));
}

#[test]
fn checkpoint_failures_and_different_file_lists_reach_every_process() {
    let server = fast_server(2);
    let c = connect_all(&server.local_addr().to_string(), 2);
    std::thread::scope(|s| {
        let other = s.spawn(|| {
            c[1].checkpoint(40, b"pos-1", LONG, |_| -> Result<(), String> {
                panic!("only process 0 writes")
            })
        });
        let mine = c[0].checkpoint(40, b"pos-0", LONG, |states| {
            assert_eq!(states, [b"pos-0".to_vec(), b"pos-1".to_vec()]);
            Err("disk full")
        });
        for e in [mine.unwrap_err(), other.join().unwrap().unwrap_err()] {
            assert!(matches!(e, CoordError::Checkpoint(_)), "{e:?}");
            assert_eq!(
                e.to_string(),
                "process 0 could not write the checkpoint of step 40: disk full"
            );
        }
    });
    let files: Vec<PathBuf> = (0..4).map(|i| format!("/d/part-{i}").into()).collect();
    std::thread::scope(|s| {
        let other = s.spawn(|| c[1].shard_files("train", &files[..3], LONG));
        let mine = c[0].shard_files("train", &files, LONG).unwrap();
        assert_eq!(mine, vec![files[0].clone(), files[2].clone()]);
        let e = other.join().unwrap().unwrap_err();
        assert!(
            e.to_string()
                .contains("process 1 sees 3 train input file(s), process 0 sees 4"),
            "{e}"
        );
        assert!(
            e.to_string().contains("process 0 also has /d/part-3"),
            "{e}"
        );
    });
    for x in &c {
        x.shutdown().unwrap();
    }
}

#[test]
fn a_pjrt_client_takes_the_coordinator_as_its_key_value_store() {
    let server = fast_server(1);
    let coord = std::sync::Arc::new(
        Client::connect(&server.local_addr().to_string(), 0, 1, config(0)).unwrap(),
    );
    let plugin = tpu::Plugin::cpu_default().expect("CPU plugin");
    let kind = plugin.kind().unwrap();
    let options = tpu::ClientOptions::cpu(1).for_process(kind, 0, 1).unwrap();
    let pjrt = tpu::Client::with_kv_store(&plugin, &options, coord.pjrt_store()).unwrap();
    assert_eq!(pjrt.addressable_devices().unwrap().len(), 1);
    // The PJRT client holds the coordinator client until it is destroyed.
    assert_eq!(std::sync::Arc::strong_count(&coord), 2);
    drop(pjrt);
    assert_eq!(std::sync::Arc::strong_count(&coord), 1);
    // More than one CPU process cannot share a client (the plugin ignores the store).
    let e = tpu::ClientOptions::cpu(1)
        .for_process(kind, 0, 2)
        .unwrap_err();
    assert!(e.to_string().contains("cuda or tpu"), "{e}");
    coord.shutdown().unwrap();
    server.wait_until_all_left(LONG).unwrap();
}

// ------------------------------------------------------------ real processes

/// A child process: this test binary running `worker_process` with its role in the environment.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Worker {
    fn spawn(scenario: &str, id: u32, n: u32, addr: &str, dir: &std::path::Path) -> Worker {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["worker_process", "--exact", "--ignored", "--nocapture"])
            .env(ROLE_ENV, format!("{scenario} {id} {n} {addr}"))
            .env(TOKEN_ENV, token().expose())
            .env("TPU_RUN_COORD_TEST_DIR", dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting a worker process");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(l) = line.strip_prefix("COORD ") {
                    if tx.send(l.to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        Worker {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line starting with `prefix`; returns its rest.
    fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + CHILD_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(_) => panic!("worker never said `{prefix}`; said {:?}", self.seen),
            }
        }
    }

    /// Waits for the process to end (killing it after `CHILD_LIMIT`); returns every line.
    fn finish(mut self) -> Vec<String> {
        let deadline = Instant::now() + CHILD_LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("worker did not finish; said {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        assert!(
            status.success(),
            "worker failed ({status}); said {:?}",
            self.seen
        );
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{prefix}` in {lines:?}"))
}

/// The files every worker is given (each in its own shuffled order).
fn input_files() -> Vec<PathBuf> {
    (0..11)
        .map(|i| PathBuf::from(format!("/data/shard-{i:02}.tfrecord")))
        .collect()
}

/// Process k's random value: its length and bytes depend only on k (zeros included).
fn random_value(k: u32) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + u64::from(k));
    let len = 64 + 100 * k as usize;
    let mut v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    v[0] = 0;
    v
}

#[test]
fn three_processes_coordinate_through_worker_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut w0 = Worker::spawn("protocol", 0, 3, "127.0.0.1:0", dir.path());
    let port = w0.expect("LISTENING");
    let addr = format!("127.0.0.1:{port}");
    let others: Vec<Worker> = (1..3)
        .map(|id| Worker::spawn("protocol", id, 3, &addr, dir.path()))
        .collect();
    let mut outputs = vec![w0.finish()];
    outputs.extend(others.into_iter().map(Worker::finish));

    let members = line(&outputs[0], "MEMBERS");
    assert_eq!(members, "0:host-0:1 1:host-1:2 2:host-2:3");
    let mut shards = BTreeSet::new();
    for out in &outputs {
        assert_eq!(line(out, "MEMBERS"), members);
        assert_eq!(line(out, "KV"), "ok");
        assert_eq!(line(out, "PJRT_STORE"), "ok");
        assert_eq!(
            line(out, "CHECKPOINT"),
            "position-of-0,position-of-1,position-of-2"
        );
        let mine: Vec<&str> = line(out, "SHARD").split(',').collect();
        assert!(mine.len() >= 3, "{mine:?}");
        for f in mine {
            assert!(shards.insert(f.to_string()), "{f} went to two processes");
        }
    }
    let all: BTreeSet<String> = input_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(shards, all);
    assert_eq!(line(&outputs[0], "ALL_LEFT"), "ok");
}

#[test]
fn a_killed_worker_makes_the_others_fail_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = fast_server(3);
    let addr = server.local_addr().to_string();
    // Process 2 idles (never reaching the barrier) until it is killed.
    let mut workers: Vec<Worker> = (0..3)
        .map(|id| {
            let scenario = if id == 2 { "idle" } else { "wait_at_barrier" };
            Worker::spawn(scenario, id, 3, &addr, dir.path())
        })
        .collect();
    for w in &mut workers {
        w.expect("READY");
    }
    // SIGKILL: no chance to say goodbye; only the missing heartbeats tell.
    let mut victim = workers.pop().unwrap();
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    for w in workers {
        let out = w.finish();
        let e = line(&out, "ERROR");
        eprintln!("a worker after process 2 was killed: {e}");
        assert!(e.starts_with("RunFailed"), "{e}");
        assert!(
            e.contains("process 2 (host host-2) sent no heartbeat"),
            "{e}"
        );
    }
    assert!(server.failure().unwrap().contains("process 2"));
}

#[test]
fn a_killed_coordinator_makes_the_workers_fail_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut w0 = Worker::spawn("idle", 0, 3, "127.0.0.1:0", dir.path());
    let port = w0.expect("LISTENING");
    let addr = format!("127.0.0.1:{port}");
    let mut others: Vec<Worker> = (1..3)
        .map(|id| Worker::spawn("wait_at_barrier", id, 3, &addr, dir.path()))
        .collect();
    w0.expect("READY");
    for w in &mut others {
        w.expect("READY");
    }
    w0.child.kill().unwrap();
    w0.child.wait().unwrap();
    for w in others {
        let out = w.finish();
        let e = line(&out, "ERROR");
        eprintln!("a worker after the coordinator was killed: {e}");
        assert!(e.contains(&addr), "{e}");
        assert!(
            e.starts_with("Unreachable") || e.starts_with("RunFailed"),
            "{e}"
        );
    }
}

// ------------------------------------------------------------ the worker side

/// The body of a child process (ignored when run directly: it needs its role).
#[test]
#[ignore = "started by the tests above as a separate process"]
fn worker_process() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        eprintln!("worker_process runs only as a child of the coordinator tests");
        return;
    };
    let parts: Vec<&str> = role.split(' ').collect();
    let (scenario, id, n, addr) = (
        parts[0],
        parts[1].parse::<u32>().unwrap(),
        parts[2].parse::<u32>().unwrap(),
        parts[3].to_string(),
    );
    let dir = PathBuf::from(std::env::var("TPU_RUN_COORD_TEST_DIR").unwrap());
    // Worker 0 of a run without an outside server serves the coordinator itself.
    let server = (addr == "127.0.0.1:0").then(|| {
        let s = fast_server(n);
        println!("COORD LISTENING {}", s.local_addr().port());
        s
    });
    let addr = match &server {
        Some(s) => s.local_addr().to_string(),
        None => addr,
    };
    let client = std::sync::Arc::new(Client::connect(&addr, id, n, config(id)).unwrap());
    match scenario {
        "protocol" => protocol(&client, &dir),
        "idle" => {
            println!("COORD READY");
            // Killed by the test long before this ends.
            std::thread::sleep(CHILD_LIMIT);
            return;
        }
        "wait_at_barrier" => {
            println!("COORD READY");
            let e = client.barrier("forever", LONG).unwrap_err();
            println!("COORD ERROR {e:?}");
            // This process failed; it leaves without waiting for anyone.
            return;
        }
        other => panic!("unknown scenario {other}"),
    }
    client.shutdown().unwrap();
    if let Some(s) = server {
        s.wait_until_all_left(LONG).unwrap();
        println!("COORD ALL_LEFT ok");
    }
}

fn protocol(client: &std::sync::Arc<Client>, dir: &std::path::Path) {
    let (id, n) = (client.process_id(), client.num_processes());
    let members: Vec<String> = client
        .members()
        .iter()
        .map(|m| format!("{}:{}:{}", m.process_id, m.hostname, m.local_device_count))
        .collect();
    println!("COORD MEMBERS {}", members.join(" "));

    // Every process publishes a random value and reads everyone's.
    client
        .put(&format!("value/{id}"), &random_value(id))
        .unwrap();
    for k in 0..n {
        let got = client.get(&format!("value/{k}"), LONG).unwrap();
        assert_eq!(got, random_value(k), "value of process {k}");
    }
    assert_eq!(client.try_get("value/none").unwrap(), None);
    println!("COORD KV ok");

    // The PJRT view of the store: keys under pjrt/.
    let store = client.pjrt_store();
    store
        .put(&format!("topology/{id}"), &[id as u8; 3])
        .unwrap();
    let next = (id + 1) % n;
    assert_eq!(
        store.get(&format!("topology/{next}"), LONG).unwrap(),
        vec![next as u8; 3]
    );
    assert_eq!(
        client.get(&format!("pjrt/topology/{next}"), LONG).unwrap(),
        vec![next as u8; 3]
    );
    println!("COORD PJRT_STORE ok");

    let mut files = input_files();
    files.shuffle(&mut rand::rngs::StdRng::seed_from_u64(u64::from(id)));
    let mine = client.shard_files("train", &files, LONG).unwrap();
    let mine: Vec<String> = mine.iter().map(|p| p.display().to_string()).collect();
    println!("COORD SHARD {}", mine.join(","));

    let path = dir.join("checkpoint-step-5.txt");
    let local = format!("position-of-{id}");
    client
        .checkpoint(5, local.as_bytes(), LONG, |states| {
            let joined: Vec<String> = states
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            std::fs::write(&path, joined.join(","))
        })
        .unwrap();
    // Written by process 0 before anyone returned.
    println!(
        "COORD CHECKPOINT {}",
        std::fs::read_to_string(&path).unwrap()
    );
    client.barrier("end", LONG).unwrap();
}

//! The zero-flag pod start (issue 15): a worker's id, the worker count and worker 0's address
//! found in a TPU VM's environment, against stand-ins: a fake machine in a temp dir (TPU device
//! nodes and a TPU chip on the PCI bus, or neither) and a fake metadata server on 127.0.0.1 (a
//! std TcpListener thread answering canned attributes, bounded in time and connections, which
//! records every path asked). Real processes started this way: tests/tpu_pod_start.rs.
//!
//! Nothing here leaves loopback; no real metadata server or TPU is involved.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tpu::tpu_host::{fake_host, GOOGLE_PCI_VENDOR};
use tpu_run::pretrain::pod_setup::place_on_tpu_pod;
use tpu_run::pretrain::PretrainConfig;
use tpu_run::tpu_pod::{discover, PodEnv, ProcessFlags, COORDINATOR_PORT};

const SERVER_LIMIT: Duration = Duration::from_secs(60);
const MAX_CONNECTIONS: usize = 64;
const ENDPOINTS: &str = "t1v-n-0-w-0:8470:10.130.0.5,t1v-n-0-w-1:8470:10.130.0.6,\
                         t1v-n-0-w-2:8470:10.130.0.7,t1v-n-0-w-3:8470:10.130.0.8";

/// A fake metadata server: answers `GET /computeMetadata/v1/instance/attributes/NAME` with the
/// canned value (200), 404 for other names, 403 without `Metadata-Flavor: Google`, and `500`
/// for names mapped to `None`. Stops when dropped, after `SERVER_LIMIT` or `MAX_CONNECTIONS`.
struct FakeMetadata {
    url: String,
    asked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeMetadata {
    fn start(attributes: &[(&str, Option<&str>)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let values: HashMap<String, Option<String>> = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect();
        let (asked, stop) = (Arc::default(), Arc::new(AtomicBool::new(false)));
        let (asked2, stop2) = (Arc::clone(&asked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let deadline = Instant::now() + SERVER_LIMIT;
            let mut served = 0;
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) if served < MAX_CONNECTIONS => {
                        served += 1;
                        answer(s, &values, &asked2);
                    }
                    Ok(_) => return,
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { url, asked, stop }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for FakeMetadata {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn answer(s: TcpStream, values: &HashMap<String, Option<String>>, asked: &Mutex<Vec<String>>) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut flavor = false;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        flavor |= line.to_ascii_lowercase().trim() == "metadata-flavor: google";
    }
    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
    asked.lock().unwrap().push(path.clone());
    let name = path.strip_prefix("/computeMetadata/v1/instance/attributes/");
    let (status, body) = match name.map(|n| values.get(n)) {
        _ if !flavor => ("403 Forbidden", String::new()),
        Some(Some(Some(v))) => ("200 OK", v.clone()),
        Some(Some(None)) => ("500 Internal Server Error", String::new()),
        _ => ("404 Not Found", "not found".to_string()),
    };
    let mut s = s;
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/text\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The attributes of worker `id` of a v5litepod-16 (4 hosts).
fn pod_attributes(id: &str) -> Vec<(&'static str, Option<&str>)> {
    vec![
        ("agent-worker-number", Some(id)),
        ("worker-network-endpoints", Some(ENDPOINTS)),
        ("accelerator-type", Some("v5litepod-16")),
    ]
}

/// A fake machine under a new temp dir: a TPU host, or one without TPU.
fn machine(tpu: bool) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let chip = (GOOGLE_PCI_VENDOR, "0x0063");
    fake_host(t.path(), tpu, tpu.then_some(chip)).unwrap();
    t
}

fn env_at(root: &Path, server: &FakeMetadata) -> PodEnv {
    PodEnv {
        root: root.to_path_buf(),
        metadata_url: Some(server.url.clone()),
        ..PodEnv::default()
    }
}

const NO_FLAGS: ProcessFlags = ProcessFlags {
    coordinator: None,
    num_processes: None,
    process_id: None,
};

#[test]
fn a_tpu_vm_worker_finds_its_place_in_the_metadata() {
    let server = FakeMetadata::start(&pod_attributes("2\n"));
    let vm = machine(true);
    let p = discover(true, &NO_FLAGS, &env_at(vm.path(), &server))
        .unwrap()
        .expect("discovered");
    assert_eq!((p.process_id, p.num_processes), (2, 4));
    assert_eq!(
        p.coordinator.as_deref(),
        Some(format!("10.130.0.5:{COORDINATOR_PORT}").as_str())
    );
    assert_eq!(p.accelerator_type.as_deref(), Some("v5litepod-16"));
    assert!(p
        .describe()
        .contains("TPU worker 2 of 4 of a v5litepod-16 slice"));
    // The newer format: host names.
    let hosts = "t1v-n-0-w-0,t1v-n-0-w-1";
    let server = FakeMetadata::start(&[
        ("agent-worker-number", Some("1")),
        ("worker-network-endpoints", Some(hosts)),
    ]);
    let p = discover(true, &NO_FLAGS, &env_at(vm.path(), &server))
        .unwrap()
        .unwrap();
    assert_eq!((p.process_id, p.num_processes), (1, 2));
    assert_eq!(
        p.coordinator.unwrap(),
        format!("t1v-n-0-w-0:{COORDINATOR_PORT}")
    );
    assert_eq!(p.accelerator_type, None, "absent: only the log misses it");
}

#[test]
fn a_single_host_tpu_vm_stays_one_process() {
    let server = FakeMetadata::start(&[
        ("worker-network-endpoints", Some("w-0:8470:10.0.0.9")),
        ("accelerator-type", Some("v5litepod-4")),
    ]);
    let vm = machine(true);
    let p = discover(true, &NO_FLAGS, &env_at(vm.path(), &server))
        .unwrap()
        .unwrap();
    assert_eq!((p.process_id, p.num_processes, p.coordinator), (0, 1, None));
    // agent-worker-number was not needed (and not served): not asked.
    assert!(!server
        .asked()
        .iter()
        .any(|a| a.ends_with("agent-worker-number")));
}

#[test]
fn environment_variables_come_before_the_metadata() {
    let server = FakeMetadata::start(&pod_attributes("2"));
    let vm = machine(true);
    let env = PodEnv {
        worker_id: Some("1".into()),
        worker_hostnames: Some("gke-w-0.svc:8471,gke-w-1.svc,gke-w-2.svc".into()),
        ..env_at(vm.path(), &server)
    };
    let p = discover(true, &NO_FLAGS, &env).unwrap().unwrap();
    assert_eq!((p.process_id, p.num_processes), (1, 3));
    assert_eq!(
        p.coordinator.unwrap(),
        format!("gke-w-0.svc:{COORDINATOR_PORT}")
    );
    let asked = server.asked();
    assert!(
        asked.iter().all(|a| a.ends_with("accelerator-type")),
        "{asked:?}"
    );
    // Off a TPU host the variables alone are enough, and the metadata is never asked.
    let bare = machine(false);
    let env = PodEnv {
        root: bare.path().to_path_buf(),
        ..env
    };
    let before = server.asked().len();
    let p = discover(true, &NO_FLAGS, &env).unwrap().unwrap();
    assert_eq!((p.process_id, p.num_processes), (1, 3));
    assert_eq!(p.accelerator_type, None);
    assert_eq!(server.asked().len(), before);
}

#[test]
fn explicit_flags_override_what_is_discovered() {
    let server = FakeMetadata::start(&pod_attributes("2"));
    let vm = machine(true);
    let env = env_at(vm.path(), &server);
    let flags = ProcessFlags {
        coordinator: Some("10.9.9.9:9000".into()),
        process_id: Some(3),
        num_processes: None,
    };
    let p = discover(true, &flags, &env).unwrap().unwrap();
    assert_eq!((p.process_id, p.num_processes), (3, 4));
    assert_eq!(p.coordinator.as_deref(), Some("10.9.9.9:9000"));
    // Only the count was needed: the worker list, never the id.
    assert!(!server
        .asked()
        .iter()
        .any(|a| a.ends_with("agent-worker-number")));
    // Everything given, or one process asked for: no discovery at all.
    let all = ProcessFlags {
        num_processes: Some(2),
        process_id: Some(1),
        ..flags
    };
    let before = server.asked().len();
    assert_eq!(discover(true, &all, &env).unwrap(), None);
    let one = ProcessFlags {
        num_processes: Some(1),
        ..NO_FLAGS
    };
    assert_eq!(discover(true, &one, &env).unwrap(), None);
    assert_eq!(server.asked().len(), before);
    // An explicit count that the discovered id does not fit.
    let two = ProcessFlags {
        num_processes: Some(2),
        ..NO_FLAGS
    };
    let e = discover(true, &two, &env).unwrap_err().to_string();
    assert!(
        e.contains("worker's id is 2 but the run has 2 worker(s)"),
        "{e}"
    );
    assert!(e.contains("agent-worker-number"), "{e}");
}

#[test]
fn nothing_is_discovered_off_tpu_or_for_other_backends() {
    let server = FakeMetadata::start(&pod_attributes("2"));
    let (bare, vm) = (machine(false), machine(true));
    assert_eq!(
        discover(true, &NO_FLAGS, &env_at(bare.path(), &server)).unwrap(),
        None
    );
    assert_eq!(
        discover(false, &NO_FLAGS, &env_at(vm.path(), &server)).unwrap(),
        None
    );
    // Device nodes without a TPU chip (some other VFIO device): not a TPU host.
    let nodes = tempfile::tempdir().unwrap();
    fake_host(nodes.path(), true, None).unwrap();
    assert_eq!(
        discover(true, &NO_FLAGS, &env_at(nodes.path(), &server)).unwrap(),
        None
    );
    // The user's TPU_SKIP_MDS_QUERY keeps the metadata out, as in JAX.
    let skip = PodEnv {
        skip_mds_query: Some("1".into()),
        ..env_at(vm.path(), &server)
    };
    assert_eq!(discover(true, &NO_FLAGS, &skip).unwrap(), None);
    let half = PodEnv {
        worker_hostnames: Some("a,b".into()),
        ..skip
    };
    let e = discover(true, &NO_FLAGS, &half).unwrap_err().to_string();
    assert!(e.contains("TPU_WORKER_ID is not"), "{e}");
    assert!(e.contains("TPU_SKIP_MDS_QUERY is set"), "{e}");
    assert!(server.asked().is_empty(), "{:?}", server.asked());
}

#[test]
fn missing_or_malformed_attributes_are_named() {
    let vm = machine(true);
    let server = FakeMetadata::start(&[("worker-network-endpoints", Some(ENDPOINTS))]);
    let e = format!(
        "{:#}",
        discover(true, &NO_FLAGS, &env_at(vm.path(), &server)).unwrap_err()
    );
    assert!(e.contains("agent-worker-number is not set"), "{e}");
    assert!(e.contains("404"), "{e}");

    let server = FakeMetadata::start(&[("agent-worker-number", Some("0"))]);
    let e = format!(
        "{:#}",
        discover(true, &NO_FLAGS, &env_at(vm.path(), &server)).unwrap_err()
    );
    assert!(e.contains("worker-network-endpoints is not set"), "{e}");

    for (endpoints, needle) in [
        ("w0:8470", "\"w0:8470\""),
        ("w0:8470:10.0.0.1,,w2:8470:10.0.0.3", "entry 1"),
        ("w0:8470:ten.0.0.1", "\"w0:8470:ten.0.0.1\""),
    ] {
        let server = FakeMetadata::start(&[
            ("agent-worker-number", Some("0")),
            ("worker-network-endpoints", Some(endpoints)),
        ]);
        let e = format!(
            "{:#}",
            discover(true, &NO_FLAGS, &env_at(vm.path(), &server)).unwrap_err()
        );
        assert!(e.contains("worker-network-endpoints"), "{e}");
        assert!(e.contains(needle), "{e}");
    }

    let server = FakeMetadata::start(&pod_attributes("two"));
    let e = format!(
        "{:#}",
        discover(true, &NO_FLAGS, &env_at(vm.path(), &server)).unwrap_err()
    );
    assert!(e.contains("agent-worker-number is \"two\""), "{e}");
    let server = FakeMetadata::start(&pod_attributes("4"));
    let e = format!(
        "{:#}",
        discover(true, &NO_FLAGS, &env_at(vm.path(), &server)).unwrap_err()
    );
    assert!(e.contains("worker's id is 4 but the run has 4"), "{e}");
}

#[test]
fn an_unreachable_or_failing_server_is_an_error_in_bounded_time() {
    let vm = machine(true);
    // A port nobody listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = PodEnv {
        root: vm.path().to_path_buf(),
        metadata_url: Some(format!("http://127.0.0.1:{closed}")),
        ..PodEnv::default()
    };
    let t = Instant::now();
    let e = format!("{:#}", discover(true, &NO_FLAGS, &env).unwrap_err());
    assert!(e.contains("worker-network-endpoints"), "{e}");
    assert!(e.contains("3 attempts"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // 500s are retried, then reported.
    let server = FakeMetadata::start(&[("worker-network-endpoints", None)]);
    let e = format!(
        "{:#}",
        discover(true, &NO_FLAGS, &env_at(vm.path(), &server)).unwrap_err()
    );
    assert!(e.contains("HTTP status 500"), "{e}");
    assert_eq!(server.asked().len(), 3);
}

#[test]
fn a_metadata_override_off_loopback_is_refused() {
    let vm = machine(true);
    for url in [
        "http://10.0.0.1",
        "http://metadata.google.internal",
        "http://localhost:80",
    ] {
        let env = PodEnv {
            root: vm.path().to_path_buf(),
            metadata_url: Some(url.into()),
            ..PodEnv::default()
        };
        let e = discover(true, &NO_FLAGS, &env).unwrap_err().to_string();
        assert!(e.starts_with("TPU_RUN_METADATA_URL is"), "{url}: {e}");
        assert!(e.contains("loopback"), "{url}: {e}");
    }
}

#[test]
fn a_discovered_pod_run_needs_the_token_on_every_worker() {
    let server = FakeMetadata::start(&pod_attributes("0"));
    let vm = machine(true);
    let env = env_at(vm.path(), &server);
    let mut cfg = PretrainConfig::default();
    cfg.device.backend = tpu_run::backend::Backend::Tpu;
    // Worker 0 too: it could generate one, but the others could not get it in time.
    let e = place_on_tpu_pod(&mut cfg, &NO_FLAGS, &env, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--coordinator-token-file"), "{e}");
    assert!(e.contains("TPU_RUN_COORDINATOR_TOKEN"), "{e}");
    assert_eq!(cfg.device.num_processes, 1, "unchanged on error");
    let p = place_on_tpu_pod(&mut cfg, &NO_FLAGS, &env, true)
        .unwrap()
        .unwrap();
    assert_eq!(p.num_processes, 4);
    assert_eq!((cfg.device.process_id, cfg.device.num_processes), (0, 4));
    assert_eq!(
        cfg.device.coordinator.as_deref(),
        Some(format!("10.130.0.5:{COORDINATOR_PORT}").as_str())
    );
    cfg.check_processes().unwrap();
    // A token file counts as well; another backend is left alone.
    let mut cfg = PretrainConfig::default();
    cfg.device.backend = tpu_run::backend::Backend::Tpu;
    cfg.device.coordinator_token_file = Some(PathBuf::from("/run/token"));
    assert!(place_on_tpu_pod(&mut cfg, &NO_FLAGS, &env, false)
        .unwrap()
        .is_some());
    let mut cpu = PretrainConfig::default();
    assert!(place_on_tpu_pod(&mut cpu, &NO_FLAGS, &env, false)
        .unwrap()
        .is_none());
    assert_eq!(cpu.device.num_processes, 1);
}

//! A local S3-compatible server for tests/object_storage.rs: moto (PyPI) in server mode on
//! 127.0.0.1, one per test binary.
//!
//! moto and its dependencies are installed once into a venv in the per-user cache
//! (`<cache>/tools/moto-5.2.6`) with the machine's `python3 -m pip`, every file pinned by
//! version and SHA-256 in tests/fixtures/moto-requirements.txt (`--require-hashes`). Without
//! PyPI (and no cached venv) the tests print why and pass without checking; any other install
//! failure is a test failure.
//!
//! The server is a Python process that binds port 0 (so no port race), prints the port, and
//! exits when its stdin closes: the pipe closes when this test process ends, however it ends,
//! so no server outlives the tests.
#![allow(dead_code)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

const LOCK: &str = include_str!("../fixtures/moto-requirements.txt");
const TOOL: &str = "moto-5.2.6";
/// Written into the venv last: the lock file it was installed from.
const RECORD: &str = "INSTALLED-FROM";
const STARTUP: Duration = Duration::from_secs(90);
const INSTALL: Duration = Duration::from_secs(600);

const SERVER: &str = "\
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
server.start()
print('ready', server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
";

pub struct Moto {
    pub endpoint: String,
    pub port: u16,
    child: Mutex<Child>,
    /// Held open for the life of the process; its closing stops the server.
    stdin: Mutex<ChildStdin>,
}

/// The shared server, with the `AWS_*` variables object_store reads pointing at it; `None`
/// (after printing why) when moto cannot be fetched because PyPI is unreachable.
pub fn server() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(|| {
        let python = match venv() {
            Ok(p) => p,
            Err(Fetch::Unreachable(why)) => {
                eprintln!(
                    "SKIPPED: moto cannot be fetched, the package registry is unreachable ({why})"
                );
                return None;
            }
            Err(Fetch::Failed(why)) => panic!("installing moto failed: {why}"),
        };
        let moto = start(&python);
        // Set once, before any object-store client exists (clients read them when made).
        for (k, v) in [
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ] {
            std::env::set_var(k, v);
        }
        for k in [
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
        ] {
            std::env::remove_var(k);
        }
        Some(moto)
    })
    .as_ref()
}

impl Moto {
    /// Creates bucket `name` (an unsigned `PUT /name`, which moto accepts).
    pub fn create_bucket(&self, name: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("moto's answer");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "creating bucket {name}: {answer}"
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn start(python: &Path) -> Moto {
    let log = std::env::temp_dir().join(format!("tpu-run-moto-{}.log", std::process::id()));
    let mut child = Command::new(python)
        .args(["-c", SERVER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("moto log file"))
        .spawn()
        .expect("starting moto");
    let stdin = child.stdin.take().expect("moto's stdin");
    let stdout = child.stdout.take().expect("moto's stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(STARTUP) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "moto did not start within {STARTUP:?}; its log: {}",
                log.display()
            );
        }
    };
    let port: u16 = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "moto printed {line:?}, not its port; its log: {}",
                log.display()
            )
        });
    Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        port,
        child: Mutex::new(child),
        stdin: Mutex::new(stdin),
    }
}

enum Fetch {
    Unreachable(String),
    Failed(String),
}

fn cache_dir() -> PathBuf {
    tpu::plugin::cache_dir().join("tools").join(TOOL)
}

/// The venv's python, installing the pinned files first when the cache lacks them.
fn venv() -> Result<PathBuf, Fetch> {
    let dir = cache_dir();
    let python = dir.join("bin").join("python");
    let installed = |d: &Path| std::fs::read_to_string(d.join(RECORD)).is_ok_and(|r| r == LOCK);
    if installed(&dir) {
        return Ok(python);
    }
    let parent = dir.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent).map_err(|e| Fetch::Failed(e.to_string()))?;
    let work = parent.join(format!(".{TOOL}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let result = install(&work);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    // Another process may have finished first; its venv is as good as ours.
    if installed(&dir) {
        let _ = std::fs::remove_dir_all(&work);
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&work, &dir).map_err(|e| Fetch::Failed(format!("moving the venv: {e}")))?;
    Ok(python)
}

fn install(work: &Path) -> Result<(), Fetch> {
    run(
        Command::new("python3").args(["-m", "venv"]).arg(work),
        "python3 -m venv",
    )?;
    let lock = work.join("requirements.txt");
    std::fs::write(&lock, LOCK).map_err(|e| Fetch::Failed(e.to_string()))?;
    run(
        Command::new(work.join("bin").join("python"))
            .args(["-m", "pip", "install", "--require-hashes", "--no-deps"])
            .args([
                "--only-binary",
                ":all:",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&lock)
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        "pip install (moto, pinned)",
    )?;
    std::fs::write(work.join(RECORD), LOCK).map_err(|e| Fetch::Failed(e.to_string()))
}

/// Runs `cmd` with a time limit; a failure whose output shows a network error is `Unreachable`.
fn run(cmd: &mut Command, what: &str) -> Result<(), Fetch> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Fetch::Failed(format!("{what}: {e}")))?;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let collect = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + INSTALL;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Fetch::Failed(format!(
                    "{what} did not finish within {INSTALL:?}"
                )));
            }
        }
    };
    let text = collect.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    const NETWORK: &[&str] = &[
        "NewConnectionError",
        "Failed to establish a new connection",
        "Temporary failure in name resolution",
        "Name or service not known",
        "Network is unreachable",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ProxyError",
        "No route to host",
        "Could not fetch URL",
    ];
    let tail: String = text
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    let network_line = text
        .lines()
        .rev()
        .find(|l| NETWORK.iter().any(|n| l.contains(n)));
    if let Some(line) = network_line {
        Err(Fetch::Unreachable(format!("{what}: {}", line.trim())))
    } else {
        Err(Fetch::Failed(format!("{what} failed ({status}):\n{tail}")))
    }
}

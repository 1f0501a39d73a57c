//! Starting every worker's pretrain at once, one ssh per worker in parallel (each worker's
//! command carries its own process id), and waiting for all of them.
//!
//! Worker 0's output (its log, followed) goes to this process's stdout; every worker's ssh errors
//! go to stderr prefixed with the worker. Training runs as long as it runs, so there is no
//! overall timeout; once one worker has failed the others get `grace` to stop too (the
//! coordinator tells them within its heartbeat timeout) before their ssh is closed.
use super::exec::{describe_exit, Gcloud};
use super::gcloud::{Target, Workers};
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the ssh processes are checked.
const POLL: Duration = Duration::from_millis(200);

/// How one worker's ssh ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// pretrain (or the remote script) failed with this status.
    Failed(String),
    /// ssh itself failed (exit 255): the connection was refused or lost, e.g. the VM went away.
    Unreachable,
    /// Still running `grace` after another worker failed; its ssh was closed (pretrain on the
    /// worker may go on: `tpu-run pod stop` ends it).
    Abandoned,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        *self == Outcome::Succeeded
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Succeeded => f.write_str("finished"),
            Outcome::Failed(s) => write!(f, "failed ({s})"),
            Outcome::Unreachable => f.write_str("unreachable (ssh exit status 255)"),
            Outcome::Abandoned => f.write_str("still running after the others failed"),
        }
    }
}

fn outcome(status: ExitStatus) -> Outcome {
    match status.code() {
        Some(0) => Outcome::Succeeded,
        Some(255) => Outcome::Unreachable,
        _ => Outcome::Failed(describe_exit(status)),
    }
}

struct Running {
    worker: u32,
    child: Child,
    relay: Option<JoinHandle<()>>,
}

/// Runs `scripts[i]` on worker i, all at once; returns how each ended, in worker order.
pub fn run_all(
    g: &Gcloud,
    t: &Target,
    scripts: &[String],
    grace: Duration,
) -> Result<Vec<Outcome>> {
    let mut running: Vec<Running> = Vec::with_capacity(scripts.len());
    for (i, script) in scripts.iter().enumerate() {
        let worker = u32::try_from(i).context("worker count")?;
        match spawn(g, t, worker, script) {
            Ok(r) => running.push(r),
            Err(e) => {
                for r in &mut running {
                    let _ = r.child.kill(); // best effort: the launch as a whole has failed
                }
                return Err(e);
            }
        }
    }
    let mut ends: Vec<Option<Outcome>> = vec![None; scripts.len()];
    let mut first_failure: Option<Instant> = None;
    while ends.iter().any(Option::is_none) {
        for r in &mut running {
            let slot = &mut ends[r.worker as usize];
            if slot.is_some() {
                continue;
            }
            if let Some(status) = r.child.try_wait().context("waiting for a worker's ssh")? {
                let o = outcome(status);
                if !o.ok() && first_failure.is_none() {
                    eprintln!("tpu-run pod: worker {} {o}", r.worker);
                    first_failure = Some(Instant::now());
                }
                *slot = Some(o);
            }
        }
        if first_failure.is_some_and(|at| at.elapsed() >= grace) {
            for r in &mut running {
                if ends[r.worker as usize].is_none() {
                    let _ = r.child.kill(); // closes our ssh only; reported as abandoned
                    let _ = r.child.wait();
                    ends[r.worker as usize] = Some(Outcome::Abandoned);
                }
            }
        }
        std::thread::sleep(POLL);
    }
    for r in &mut running {
        // An abandoned ssh's own child (gcloud runs ssh) may hold the pipe open: not joined.
        if ends[r.worker as usize] == Some(Outcome::Abandoned) {
            continue;
        }
        if let Some(h) = r.relay.take() {
            let _ = h.join(); // a relay thread only copies lines; nothing to report
        }
    }
    Ok(ends
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Abandoned))
        .collect())
}

fn spawn(g: &Gcloud, t: &Target, worker: u32, script: &str) -> Result<Running> {
    let mut cmd = g.command(&t.ssh(Workers::One(worker), script));
    // Parallel sessions cannot share the terminal's input; only worker 0 prints progress.
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    cmd.stdout(if worker == 0 {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting ssh to worker {worker}"))?;
    let relay = child.stderr.take().map(|err| relay_lines(err, worker));
    Ok(Running {
        worker,
        child,
        relay,
    })
}

/// Copies `from`'s lines to stderr as `worker N: line`.
fn relay_lines(from: impl Read + Send + 'static, worker: u32) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(from);
        let mut line = Vec::new();
        while matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            eprintln!(
                "worker {worker}: {}",
                String::from_utf8_lossy(&line).trim_end()
            );
            line.clear();
        }
    })
}

//! The multi-process part of `tpu-run pretrain` (`--num-processes N`, one process per host of a
//! pod slice or per GPU): process 0 serves the coordinator (src/coord) at `--coordinator`, every
//! process connects to it, the PJRT client is formed across the processes through its
//! key-value store, and the run's shared decisions go through it: the training files every
//! process lists, the checkpoint every process resumes from, the data cursor that hands out
//! the files' work units (data_cursor.rs), and coordinated checkpoints (process 0 writes them
//! with the cursor every process reported its position to). Gradients never pass through here; they
//! are averaged by the all-reduce inside the compiled step.
//!
//! Failure: an error in any process is reported to the coordinator ([`Distributed::fail`]),
//! and the others see it at their next per-step [`Distributed::check`] or blocking call. A
//! process stuck inside a step (a collective waiting for a dead peer never returns) is ended by
//! the watchdog thread with the run's failure as its message.
use super::config::PretrainConfig;
use super::coord_setup;
use crate::backend::{open_process_client, Backend};
use crate::ckpt::{Checkpoint, Store};
use crate::coord::{self, Client, Server};
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// How long the watchdog lets the main thread notice a failure of the run itself before it
/// ends the process (the main thread is then stuck in a collective with a lost peer).
const WATCHDOG_GRACE: Duration = Duration::from_secs(20);

const RESUME_KEY: &str = "tpu-run/pretrain/resume-from";
const NO_CHECKPOINT: &str = "none";

/// This process's membership in a multi-process run.
pub struct Distributed {
    process_id: u32,
    num_processes: u32,
    client: Arc<Client>,
    /// Process 0's coordinator; stopped only after every process has left.
    server: Option<Server>,
    /// How long to wait for the others at a coordinated point (resume decision, file lists,
    /// checkpoints, the end; `--coordinator-wait-timeout`). Generous: a process may still be
    /// compiling a large model. A failed or killed process ends these waits at once through
    /// the coordinator, not this limit.
    wait: Duration,
    /// How long process 0 keeps the coordinator up after it failed, so the others hear why.
    failure_linger: Duration,
    watchdog: Option<Watchdog>,
}

impl Distributed {
    /// Joins the run `cfg.device` describes (process 0 serves the coordinator first); returns
    /// once every process has connected. `None` for a single-process run.
    pub fn start(cfg: &PretrainConfig) -> Result<Option<Distributed>> {
        cfg.check_processes()?;
        let d = &cfg.device;
        if d.num_processes <= 1 {
            return Ok(None);
        }
        let addr = d
            .coordinator
            .as_deref()
            .ok_or_else(|| anyhow!("config: device.coordinator is required"))?;
        let token = coord_setup::run_token(d)?;
        let server = if d.process_id == 0 {
            let listen = coord_setup::listen_on(d, addr)?;
            let config = coord_setup::server_config(d, token.clone())?;
            Some(coord::serve(listen, config).with_context(|| {
                format!(
                    "process 0 serving the coordinator for --coordinator {addr} on {listen} \
                     (when that is not one of this host's addresses, e.g. behind NAT, give \
                     --coordinator-bind with one that is, or 0.0.0.0:PORT for every interface)"
                )
            })?)
        } else {
            None
        };
        tracing::info!(
            "process {} of {}: connecting to the coordinator at {addr}",
            d.process_id,
            d.num_processes
        );
        let client = Client::connect(
            addr,
            d.process_id,
            d.num_processes,
            coord_setup::client_config(d, token)?,
        )
        .with_context(|| {
            format!(
                "process {} of {} joining the run at {addr}",
                d.process_id, d.num_processes
            )
        })?;
        let client = Arc::new(client);
        let hosts: Vec<String> = client
            .members()
            .iter()
            .map(|m| format!("{}={}", m.process_id, m.hostname))
            .collect();
        tracing::info!(
            "process {} of {}: every process joined ({})",
            d.process_id,
            d.num_processes,
            hosts.join(", ")
        );
        Ok(Some(Distributed {
            process_id: d.process_id,
            num_processes: d.num_processes,
            watchdog: Some(Watchdog::start(client.clone())),
            client,
            server,
            wait: coord_setup::wait_timeout(d),
            failure_linger: coord_setup::failure_linger(d),
        }))
    }

    pub fn process_id(&self) -> u32 {
        self.process_id
    }

    pub fn num_processes(&self) -> u32 {
        self.num_processes
    }

    /// Process 0 writes metrics and checkpoints, evaluates and prints progress.
    pub fn is_chief(&self) -> bool {
        self.process_id == 0
    }

    /// The run's failure, if another process reported one (no network call).
    pub fn check(&self) -> Result<()> {
        Ok(self.client.check()?)
    }

    /// The PJRT client of this process, formed across the processes (all of them arrive here
    /// together: the plugins exchange their devices at creation).
    pub fn open_client(&self, backend: Backend, plugin: Option<&Path>) -> Result<tpu::Client> {
        self.client
            .barrier("tpu-run/pretrain/pjrt-client", self.wait)
            .context("waiting for every process to open its devices")?;
        open_process_client(
            backend,
            plugin,
            self.client.pjrt_store(),
            self.process_id,
            self.num_processes,
        )
    }

    /// The training files, sorted, after checking that every process lists the same ones
    /// (the listing the data cursor's work units index).
    pub fn agree_on_files(&self, files: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let all = self
            .client
            .agree_on_files("train", files, self.wait)
            .context("data.train across the processes")?;
        tracing::info!(
            "process {} of {}: every process lists the same {} training file(s); the              coordinator hands out their work units",
            self.process_id,
            self.num_processes,
            all.len()
        );
        Ok(all)
    }

    /// This process's connection to the coordinator.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Waits until every process has reached barrier `name` (at most the wait timeout).
    pub fn barrier(&self, name: &str) -> Result<()> {
        self.client
            .barrier(name, self.wait)
            .with_context(|| format!("waiting for every process at {name}"))
    }

    /// The checkpoint every process resumes from: process 0 looks in its checkpoint directory
    /// and publishes its choice (or that it starts from scratch); the others open that same
    /// checkpoint in theirs, which must be the same shared storage.
    pub fn resume_point(&self, store: &Store, resume: bool) -> Result<Option<Checkpoint>> {
        if self.is_chief() {
            let latest = store.latest()?;
            if !resume {
                if let Some(latest) = latest {
                    let e = anyhow!(
                        "--no-resume: {} already holds checkpoints (latest {}); choose an empty \
                         --checkpoint-dir or remove them",
                        store.root().display(),
                        latest.path().display()
                    );
                    return Err(e);
                }
            }
            let choice = match &latest {
                Some(c) => c
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| anyhow!("checkpoint {} has no name", c.path().display()))?,
                None => NO_CHECKPOINT.to_string(),
            };
            self.client.put(RESUME_KEY, choice.as_bytes())?;
            self.log_resume(&choice);
            return Ok(latest);
        }
        let choice = self.client.get(RESUME_KEY, self.wait)?;
        let choice = String::from_utf8_lossy(&choice).into_owned();
        if choice == NO_CHECKPOINT {
            self.log_resume(&choice);
            return Ok(None);
        }
        let dir = store.root().join(&choice);
        let opened = Checkpoint::open(&dir).map(Some).map_err(|e| {
            anyhow!(
                "process {}: process 0 resumes from checkpoint {choice}, which this process \
                 cannot open at {} ({e}); the checkpoint directory must be shared storage that \
                 every host sees at the same path (an NFS or GCS FUSE mount), given as the same \
                 --checkpoint-dir to every process",
                self.process_id,
                dir.display()
            )
        })?;
        self.log_resume(&choice);
        Ok(opened)
    }

    fn log_resume(&self, choice: &str) {
        let what = if choice == NO_CHECKPOINT {
            "every process starts from scratch".to_string()
        } else {
            format!("every process resumes from checkpoint {choice}")
        };
        tracing::info!(
            "process {} of {}: {what}",
            self.process_id,
            self.num_processes
        );
    }

    /// A coordinated checkpoint at `step`: every process hands in `local` (its data position);
    /// process 0 runs `write` with all of them, by process id, and returns its result; the
    /// others return `None` once it is written, or process 0's error.
    pub fn checkpoint(
        &self,
        step: u64,
        local: &[u8],
        write: impl FnOnce(&[Vec<u8>]) -> Result<PathBuf>,
    ) -> Result<Option<PathBuf>> {
        let mut written = None;
        self.client
            .checkpoint(step, local, self.wait, |states| {
                write(states)
                    .map(|p| written = Some(p))
                    .map_err(|e| format!("{e:#}"))
            })
            .map_err(anyhow::Error::from)?;
        Ok(written)
    }

    /// Leaves the run after a successful end; process 0 then waits for every other process to
    /// leave before it stops the coordinator.
    pub fn finish(mut self) -> Result<()> {
        self.stop_watchdog();
        self.client.shutdown()?;
        if let Some(server) = self.server.take() {
            server
                .wait_until_all_left(self.wait)
                .map_err(|e| anyhow!("waiting for the other processes to finish: {e}"))?;
        }
        Ok(())
    }

    /// Leaves the run because this process failed with `error`: the others stop, naming it.
    /// Process 0 keeps the coordinator up briefly so that they hear why.
    pub fn fail(mut self, error: &anyhow::Error) {
        self.stop_watchdog();
        let reason = format!("{error:#}");
        if let Err(e) = self.client.abort(&reason) {
            tracing::warn!("telling the other processes that this one failed: {e}");
        }
        if let Some(server) = self.server.take() {
            // The others learn of the failure at once in a blocking call, else from their next
            // heartbeat answer (every second); the coordinator stays up that long for them.
            std::thread::sleep(self.failure_linger);
            drop(server);
        }
    }

    fn stop_watchdog(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.stop();
        }
    }
}

impl Drop for Distributed {
    fn drop(&mut self) {
        self.stop_watchdog();
    }
}

/// A thread that ends the process when the run has failed and the main thread has not
/// noticed within [`WATCHDOG_GRACE`] (it is inside a step whose collective waits for a lost
/// process, which never returns).
struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(client: Arc<Client>) -> Watchdog {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tpu-run-watchdog".into())
            .spawn(move || loop {
                match stopped.recv_timeout(Duration::from_secs(1)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let Err(failure) = client.check() else {
                    continue;
                };
                match stopped.recv_timeout(WATCHDOG_GRACE) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        eprintln!(
                            "error: {failure}; process {} stops (it was waiting inside a step \
                             for the lost process)",
                            client.process_id()
                        );
                        std::process::exit(1);
                    }
                    _ => return,
                }
            })
            .ok();
        Watchdog { stop, thread }
    }

    fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Mixes `process_id` into a seed, so that each process draws its own data (process 0 keeps
/// the seed itself).
pub fn process_seed(seed: u64, process_id: u32) -> u64 {
    seed ^ u64::from(process_id).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_seeds_differ_and_process_0_keeps_the_seed() {
        assert_eq!(process_seed(12345, 0), 12345);
        let seeds: std::collections::BTreeSet<u64> =
            (0..64).map(|p| process_seed(12345, p)).collect();
        assert_eq!(seeds.len(), 64);
    }
}

//! `tpu-run pod run`: copy the binary and config to every worker, start `tpu-run pretrain` on all
//! of them at once, follow worker 0, and on the way out either report success, fetch every
//! worker's log after a failure, or, when the TPU was preempted and `--max-restarts` allows,
//! create it again and restart with `--resume` so the run continues from its last checkpoint.
use super::exec::Gcloud;
use super::gcloud::{Spec, Target, Workers};
use super::plan::{self, check_pretrain_args, Launch, REMOTE_DIR};
use super::stage::{scp_word, LocalDir};
use super::tpu::{self, Probe, Settled, Waits};
use super::workers::{self, Outcome};
use super::{describe::Node, logs};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Everything `pod run` needs besides the TPU.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: PathBuf,
    /// The tpu-run binary the workers run (a Linux x86-64 build).
    pub binary: PathBuf,
    pub local: LocalDir,
    pub coordinator_port: u16,
    /// Preemptions to recover from: recreate the TPU and restart with `--resume`.
    pub max_restarts: u32,
    /// The worker count a dry run shows (a real run reads it from describe).
    pub dry_run_workers: Option<u32>,
    /// A command run in `~/tpu-run-pod` on every worker before pretrain starts.
    pub setup: Option<String>,
    pub waits: Waits,
    /// How long the other workers get to stop once one has failed.
    pub failure_grace: Duration,
    /// Arguments for every worker's `tpu-run pretrain` (after `--`).
    pub pretrain_args: Vec<String>,
}

pub fn run(g: &Gcloud, t: &Target, o: &RunOptions) -> Result<()> {
    check_pretrain_args(&o.pretrain_args)?;
    for (what, p) in [("--config", &o.config), ("--binary", &o.binary)] {
        if !p.is_file() {
            bail!("{what} {}: no such file", p.display());
        }
    }
    if g.dry_run() {
        return dry_run(g, t, o);
    }
    o.local.fill(&o.binary, &o.config)?;
    let mut seen: Option<Spec> = None;
    let mut restarts = Restarts {
        max: o.max_restarts,
        used: 0,
        recovering: false,
    };
    let mut attempt = 0u32;
    // Ends by returning: success, a failure, or the restart budget spent.
    loop {
        attempt += 1;
        let node = ensure_ready(g, t, o, &mut seen, &mut restarts)?;
        let ends = start(g, t, o, &node, attempt)?;
        if ends.iter().all(Outcome::ok) {
            println!(
                "tpu-run pod: pretrain finished on all {} workers of {}",
                ends.len(),
                t.node
            );
            return Ok(());
        }
        let summary = summarize(&ends);
        match tpu::probe(g, t)? {
            Probe::Ready(_) => return Err(failed(g, t, o, attempt, &ends, &summary)),
            Probe::Pending(state) | Probe::Lost(tpu::Lost { state, .. }) => {
                if !restarts.interrupted() {
                    bail!(
                        "{} was interrupted ({state}) while pretrain ran ({summary}), and \
                         --max-restarts {} allows no more restarts; rerun `tpu-run pod run` with \
                         --max-restarts to create it again and resume from the last checkpoint",
                        t.node,
                        o.max_restarts
                    );
                }
                eprintln!(
                    "tpu-run pod: {} was interrupted ({state}); restart {} of at most {}, \
                     resuming from the last checkpoint",
                    t.node, restarts.used, o.max_restarts
                );
            }
        }
    }
}

/// Restarts after preemptions, at most `max`. An interrupted attempt is one restart; creating
/// the TPU again for that same interruption is part of it, not another; a TPU lost again while
/// waiting for it to come up is another.
struct Restarts {
    max: u32,
    used: u32,
    /// An interruption was counted and the TPU has not been READY since.
    recovering: bool,
}

impl Restarts {
    /// Counts the interruption of a running attempt; false when none are left.
    fn interrupted(&mut self) -> bool {
        if self.used >= self.max {
            return false;
        }
        self.used += 1;
        self.recovering = true;
        true
    }

    /// Counts a TPU found lost, unless that belongs to the interruption just counted; false
    /// when none are left.
    fn lost(&mut self) -> bool {
        if std::mem::take(&mut self.recovering) {
            return true;
        }
        if self.used >= self.max {
            return false;
        }
        self.used += 1;
        true
    }
}

/// Waits for the TPU to be READY, creating it again when it is lost and the budget allows.
fn ensure_ready(
    g: &Gcloud,
    t: &Target,
    o: &RunOptions,
    seen: &mut Option<Spec>,
    restarts: &mut Restarts,
) -> Result<Node> {
    loop {
        match tpu::wait_settled(g, t, o.waits)? {
            Settled::Ready(n) => {
                *seen = Some(n.spec.clone());
                restarts.recovering = false;
                return Ok(*n);
            }
            Settled::Lost(lost) => {
                if !restarts.lost() {
                    bail!(
                        "{} is lost ({}): preempted or deleted. Pass --max-restarts N to let \
                         `tpu-run pod run` create it again, or create it with `tpu-run pod create`",
                        t.node,
                        lost.state
                    );
                }
                let spec = tpu::spec_for(&lost, seen.as_ref(), t)?;
                eprintln!(
                    "tpu-run pod: {} is lost ({}); creating it again ({}, {})",
                    t.node, lost.state, spec.accelerator_type, spec.runtime_version
                );
                tpu::recreate(g, t, &spec, lost.exists)?;
            }
        }
    }
}

/// One attempt: copy, set up, start every worker, wait for all.
fn start(
    g: &Gcloud,
    t: &Target,
    o: &RunOptions,
    node: &Node,
    attempt: u32,
) -> Result<Vec<Outcome>> {
    let launch = launch_for(o, node, attempt)?;
    let n = launch.num_processes;
    copy_and_setup(g, t, o)?;
    eprintln!(
        "tpu-run pod: attempt {attempt}: starting pretrain on {n} workers (coordinator {}{}); \
         worker 0's output follows",
        launch.coordinator,
        if launch.resume { ", --resume" } else { "" }
    );
    workers::run_all(g, t, &scripts(&launch, n), o.failure_grace)
}

fn launch_for(o: &RunOptions, node: &Node, attempt: u32) -> Result<Launch> {
    let first = node
        .endpoints
        .first()
        .context("the TPU VM's describe output lists no workers (networkEndpoints)")?;
    Ok(Launch {
        coordinator: format!("{}:{}", first.ip, o.coordinator_port),
        num_processes: u32::try_from(node.endpoints.len()).context("worker count")?,
        resume: attempt > 1,
        extra: o.pretrain_args.clone(),
    })
}

fn scripts(launch: &Launch, n: u32) -> Vec<String> {
    (0..n).map(|i| launch.start_script(i, i == 0)).collect()
}

/// The directory on every worker, the staged files into it, then the setup script. The first
/// ssh runs on this terminal, so gcloud can ask once for what it needs (an ssh key).
fn copy_and_setup(g: &Gcloud, t: &Target, o: &RunOptions) -> Result<()> {
    g.run(
        &t.ssh(Workers::All, &plan::prepare_script()),
        &format!("creating ~/{REMOTE_DIR} on every worker"),
    )?;
    let files = o
        .local
        .staged()
        .iter()
        .map(|p| scp_word(p))
        .collect::<Result<Vec<_>>>()?;
    g.run(
        &t.scp_to_all(&files, &format!("{REMOTE_DIR}/")),
        "copying the binary, config and token to every worker",
    )?;
    g.run(
        &t.ssh(Workers::All, &plan::setup_script(o.setup.as_deref())),
        "setting up the workers",
    )
}

fn summarize(ends: &[Outcome]) -> String {
    ends.iter()
        .enumerate()
        .filter(|(_, e)| !e.ok())
        .map(|(i, e)| format!("worker {i} {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A failure on a TPU that is still READY: every worker's log, fetched, and the error.
fn failed(
    g: &Gcloud,
    t: &Target,
    o: &RunOptions,
    attempt: u32,
    ends: &[Outcome],
    summary: &str,
) -> anyhow::Error {
    let dir = o.local.attempt_logs(attempt);
    let n = u32::try_from(ends.len()).unwrap_or(u32::MAX);
    let logs = match logs::fetch(g, t, n, &dir) {
        Ok(got) => format!(
            "{} of {n} workers' logs are in {}",
            got.len(),
            dir.display()
        ),
        Err(e) => format!("fetching the workers' logs failed: {e:#}"),
    };
    anyhow::anyhow!(
        "pretrain failed on {} ({summary}); the TPU is READY, so it was not preempted. {logs}. \
         `tpu-run pod stop {}` ends any pretrain still running",
        t.node,
        t.node
    )
}

/// The commands of a first attempt, printed: values that only describe gives are placeholders.
fn dry_run(g: &Gcloud, t: &Target, o: &RunOptions) -> Result<()> {
    let n = o.dry_run_workers.context(
        "a dry run of `pod run` needs --workers N (the slice's host count, which a real run reads \
         from describe)",
    )?;
    println!("# the TPU's state, its workers and worker 0's internal IP:");
    println!("{}", g.line(&t.describe_node()));
    println!(
        "# `pod run` stages the binary, the config and a new coordinator token in {}:",
        o.local.stage().display()
    );
    copy_and_setup(g, t, o)?;
    let launch = Launch {
        coordinator: format!("<worker-0-ip>:{}", o.coordinator_port),
        num_processes: n,
        resume: false,
        extra: o.pretrain_args.clone(),
    };
    println!("# then at once, one per worker (<worker-0-ip>: networkEndpoints[0].ipAddress):");
    for (i, script) in scripts(&launch, n).iter().enumerate() {
        let w = u32::try_from(i).context("worker count")?;
        println!("{}", g.line(&t.ssh(Workers::One(w), script)));
    }
    println!("# after a failure on a READY TPU, every worker's log:");
    logs::fetch(g, t, n, &o.local.attempt_logs(1))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Restarts;

    #[test]
    fn a_preemption_is_one_restart_however_many_times_the_tpu_is_recreated_for_it() {
        let mut r = Restarts {
            max: 2,
            used: 0,
            recovering: false,
        };
        assert!(r.interrupted());
        assert!(
            r.lost(),
            "recreating after the interruption: the same restart"
        );
        assert_eq!(r.used, 1);
        assert!(r.lost(), "lost again before READY: another");
        assert_eq!(r.used, 2);
        assert!(!r.lost() && !r.interrupted(), "the budget is spent");
    }
}

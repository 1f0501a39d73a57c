//! `tpu-run pod create|run|status|logs|stop|delete`: a Cloud TPU slice through gcloud.
use crate::pod::{
    self, manage, plan::DEFAULT_COORDINATOR_PORT, Gcloud, LocalDir, Provisioning, RunOptions, Spec,
    Target, Waits,
};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum PodCommand {
    /// Create the TPU VM, or a queued resource that creates it when capacity comes.
    Create(CreateArgs),
    /// Copy this binary and a pretrain config to every worker and run pretraining on all of
    /// them; restarts with --resume after a preemption (--max-restarts).
    Run(Box<RunArgs>),
    /// The TPU's state, health and workers (and its queued resource's state).
    Status(TpuArgs),
    /// Fetch every worker's pretrain log.
    Logs(LogsArgs),
    /// SIGTERM to pretrain on every worker: each checkpoints and exits.
    Stop(TpuArgs),
    /// Delete the TPU VM (or its queued resource, with the VM).
    Delete(TpuArgs),
}

/// Which TPU, and how to reach gcloud.
#[derive(Args, Clone)]
pub struct TpuArgs {
    /// The TPU VM (node) name.
    pub name: String,
    /// Zone (default: gcloud's compute/zone).
    #[arg(long)]
    pub zone: Option<String>,
    /// Project (default: gcloud's core/project).
    #[arg(long)]
    pub project: Option<String>,
    /// The queued resource that holds the TPU VM (create: make one).
    #[arg(long, value_name = "ID")]
    pub queued_resource: Option<String>,
    /// The gcloud executable (default: gcloud on PATH).
    #[arg(long, value_name = "PATH")]
    pub gcloud: Option<PathBuf>,
    /// Print the gcloud commands instead of running them.
    #[arg(long)]
    pub dry_run: bool,
}

impl TpuArgs {
    fn target(&self) -> Target {
        Target {
            node: self.name.clone(),
            zone: self.zone.clone(),
            project: self.project.clone(),
            queued_resource: self.queued_resource.clone(),
        }
    }

    fn gcloud(&self) -> Result<Gcloud> {
        Gcloud::locate(self.gcloud.as_deref(), self.dry_run)
    }

    /// `tpu-run-pod/<name>` unless given.
    fn local_dir(&self, given: &Option<PathBuf>) -> LocalDir {
        LocalDir::new(
            given
                .clone()
                .unwrap_or_else(|| PathBuf::from("tpu-run-pod").join(&self.name)),
        )
    }
}

/// Waiting for a TPU to come up.
#[derive(Args, Clone)]
pub struct WaitArgs {
    /// Seconds to wait for the TPU to be READY (a queued resource waits for capacity).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub wait_timeout: u64,
    /// Seconds between looks at the TPU's state while waiting.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub poll_interval: f64,
}

impl WaitArgs {
    fn waits(&self) -> Result<Waits> {
        Ok(Waits {
            timeout: Duration::from_secs(self.wait_timeout),
            poll: seconds(self.poll_interval, "--poll-interval")?,
        })
    }
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub tpu: TpuArgs,
    /// e.g. v5litepod-16 (a v5e slice of 16 chips on 4 hosts).
    #[arg(long)]
    pub accelerator_type: String,
    /// The TPU VM image, e.g. v2-alpha-tpuv5-lite.
    #[arg(long, visible_alias = "runtime-version")]
    pub version: String,
    /// A spot TPU (cheaper; can be preempted at any time).
    #[arg(long, conflicts_with = "preemptible")]
    pub spot: bool,
    /// A preemptible TPU (the older form of spot; TPU VMs only).
    #[arg(long)]
    pub preemptible: bool,
    /// Return once gcloud has created it, without waiting for READY (queued resources).
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub tpu: TpuArgs,
    /// The pretrain config (TOML) every worker runs with; paths in it and in the arguments
    /// after `--` must exist on the workers (shared storage for data and checkpoints).
    #[arg(long)]
    pub config: PathBuf,
    /// The tpu-run binary to copy (default: this one). The workers run Linux on x86-64.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// The port worker 0 serves the coordinator on.
    #[arg(long, default_value_t = DEFAULT_COORDINATOR_PORT)]
    pub coordinator_port: u16,
    /// Preemptions to recover from: create the TPU again and restart with --resume.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_restarts: u32,
    /// A shell command run in ~/tpu-run-pod on every worker before pretrain starts (e.g. a
    /// mount of the storage holding data and checkpoints).
    #[arg(long, value_name = "COMMAND")]
    pub setup: Option<String>,
    /// Local directory for the staged files and fetched logs (default: tpu-run-pod/<NAME>).
    #[arg(long, value_name = "DIR")]
    pub local_dir: Option<PathBuf>,
    /// Seconds the other workers get to stop after one has failed, before their ssh is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0)]
    pub failure_grace: f64,
    /// With --dry-run: the slice's worker (host) count, which a real run reads from describe.
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Arguments for every worker's `tpu-run pretrain`, after `--` (e.g. --data, --checkpoint-dir).
    #[arg(last = true, value_name = "PRETRAIN_ARGS")]
    pub pretrain_args: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub tpu: TpuArgs,
    /// Where the logs go (default: tpu-run-pod/<NAME>/logs/latest).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The worker count (default: from describe; needed with --dry-run).
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
}

pub fn run(c: &PodCommand) -> Result<()> {
    match c {
        PodCommand::Create(a) => {
            let provisioning = match (a.spot, a.preemptible) {
                (true, _) => Provisioning::Spot,
                (_, true) => Provisioning::Preemptible,
                _ => Provisioning::Standard,
            };
            let spec = Spec {
                accelerator_type: a.accelerator_type.clone(),
                runtime_version: a.version.clone(),
                provisioning,
            };
            let wait = (!a.no_wait).then(|| a.wait.waits()).transpose()?;
            manage::create(&a.tpu.gcloud()?, &a.tpu.target(), &spec, wait)
        }
        PodCommand::Run(a) => {
            let binary = match &a.binary {
                Some(b) => b.clone(),
                None => std::env::current_exe().context("finding this executable")?,
            };
            let o = RunOptions {
                config: a.config.clone(),
                binary,
                local: a.tpu.local_dir(&a.local_dir),
                coordinator_port: a.coordinator_port,
                max_restarts: a.max_restarts,
                dry_run_workers: a.workers,
                setup: a.setup.clone(),
                waits: a.wait.waits()?,
                failure_grace: seconds(a.failure_grace, "--failure-grace")?,
                pretrain_args: a.pretrain_args.clone(),
            };
            pod::run::run(&a.tpu.gcloud()?, &a.tpu.target(), &o)
        }
        PodCommand::Status(a) => pod::status::status(&a.gcloud()?, &a.target()),
        PodCommand::Logs(a) => {
            let dir = match &a.out {
                Some(d) => d.clone(),
                None => a.tpu.local_dir(&None).root.join("logs").join("latest"),
            };
            manage::fetch_logs(&a.tpu.gcloud()?, &a.tpu.target(), a.workers, &dir)
        }
        PodCommand::Stop(a) => manage::stop(&a.gcloud()?, &a.target()),
        PodCommand::Delete(a) => manage::delete(&a.gcloud()?, &a.target()),
    }
}

fn seconds(s: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{flag} {s}: not a number of seconds"))
}

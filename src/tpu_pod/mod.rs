//! A multi-host TPU slice's process settings found in the TPU VM's environment, as
//! `jax.distributed.initialize()` finds them on Cloud TPU (jax/_src/clusters/
//! cloud_tpu_cluster.py): this worker's id, the number of workers and worker 0's address, so
//! that `tpu-run pretrain --backend tpu` starts a pod run with no coordinator flags.
//!
//! Each value comes from the first of: the explicit setting (`--process-id`, `--num-processes`,
//! `--coordinator`, or the config file's `[device]` keys); the environment (`TPU_WORKER_ID`,
//! `TPU_WORKER_HOSTNAMES`, as GKE sets them); the metadata server's instance attributes
//! (`agent-worker-number`, `worker-network-endpoints`; `accelerator-type` for the log only).
//! The coordinator is worker 0's address at [`COORDINATOR_PORT`].
//!
//! Discovery happens only with `--backend tpu`, where `TPU_WORKER_ID` / `TPU_WORKER_HOSTNAMES`
//! are set or the metadata server may be asked: on a TPU host ([`tpu::tpu_host`]) where the
//! user did not set `TPU_SKIP_MDS_QUERY` (JAX skips the metadata then too). Elsewhere nothing
//! changes: a run with no process flags is one process.
pub mod metadata;
pub mod parse;

use anyhow::{bail, Result};
use metadata::{Metadata, METADATA_URL_ENV};
use std::path::PathBuf;

/// The port worker 0 serves the coordinator on when its address is discovered (JAX's since
/// 2025-11; `--coordinator HOST:PORT` chooses another).
pub const COORDINATOR_PORT: u16 = 8482;

pub const WORKER_ID_ENV: &str = "TPU_WORKER_ID";
pub const WORKER_HOSTNAMES_ENV: &str = "TPU_WORKER_HOSTNAMES";
const SKIP_MDS_ENV: &str = tpu::tpu_safety::SKIP_MDS_QUERY_ENV;

/// The instance attributes read.
pub const AGENT_WORKER_NUMBER: &str = "agent-worker-number";
pub const WORKER_NETWORK_ENDPOINTS: &str = "worker-network-endpoints";
pub const ACCELERATOR_TYPE: &str = "accelerator-type";

/// What discovery reads: the machine (its filesystem root, probed for a TPU host) and the
/// environment variables that matter. Product code takes this process's
/// ([`PodEnv::from_process`]); tests build one on a fake machine.
#[derive(Clone, Debug, Default)]
pub struct PodEnv {
    /// The filesystem root (for tests only a parameter, see [`tpu::tpu_host`]).
    pub root: PathBuf,
    pub worker_id: Option<String>,
    pub worker_hostnames: Option<String>,
    pub skip_mds_query: Option<String>,
    pub metadata_url: Option<String>,
}

impl PodEnv {
    pub fn from_process() -> Self {
        let var = |n: &str| std::env::var(n).ok();
        Self {
            root: PathBuf::from(tpu::tpu_host::HOST_ROOT),
            worker_id: var(WORKER_ID_ENV),
            worker_hostnames: var(WORKER_HOSTNAMES_ENV),
            skip_mds_query: var(SKIP_MDS_ENV),
            metadata_url: var(METADATA_URL_ENV),
        }
    }
}

/// The process settings the user gave (`None`: not given).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFlags {
    pub coordinator: Option<String>,
    pub num_processes: Option<u32>,
    pub process_id: Option<u32>,
}

/// This process's place in the run, with where each part came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub process_id: u32,
    pub num_processes: u32,
    /// Worker 0's `HOST:PORT`; `None` for one process.
    pub coordinator: Option<String>,
    /// The discovered parts and their sources, e.g. `process id from TPU_WORKER_ID`.
    pub found: Vec<String>,
    /// The metadata's `accelerator-type` (e.g. `v5litepod-16`), when it was read.
    pub accelerator_type: Option<String>,
}

impl Placement {
    /// One line for the log.
    pub fn describe(&self) -> String {
        let slice = self
            .accelerator_type
            .as_deref()
            .map(|t| format!(" of a {t} slice"))
            .unwrap_or_default();
        let coordinator = self
            .coordinator
            .as_deref()
            .map(|c| format!(", coordinator {c}"))
            .unwrap_or_default();
        format!(
            "TPU worker {} of {}{slice}{coordinator} ({})",
            self.process_id,
            self.num_processes,
            self.found.join("; ")
        )
    }
}

/// Finds the settings `flags` leaves open (see the module doc). `Ok(None)`: no discovery (not
/// a TPU run, everything given, or neither a TPU host nor the environment variables).
pub fn discover(
    tpu_backend: bool,
    flags: &ProcessFlags,
    env: &PodEnv,
) -> Result<Option<Placement>> {
    let everything_given =
        flags.process_id.is_some() && flags.num_processes.is_some() && flags.coordinator.is_some();
    let single = flags.num_processes == Some(1);
    let from_env = env.worker_id.is_some() || env.worker_hostnames.is_some();
    if !tpu_backend || everything_given || single {
        return Ok(None);
    }
    let ask_metadata = env.skip_mds_query.is_none() && tpu::tpu_host::is_tpu_host_at(&env.root);
    if !(ask_metadata || from_env) {
        return Ok(None);
    }
    let metadata = Metadata::from_override(env.metadata_url.as_deref())?;
    Discovery {
        flags,
        env,
        metadata: ask_metadata.then_some(metadata),
    }
    .run()
    .map(Some)
}

struct Discovery<'a> {
    flags: &'a ProcessFlags,
    env: &'a PodEnv,
    /// The metadata server, where it may be asked.
    metadata: Option<Metadata>,
}

impl Discovery<'_> {
    fn run(&self) -> Result<Placement> {
        let mut found = Vec::new();
        let workers = match (&self.flags.num_processes, &self.flags.coordinator) {
            (Some(_), Some(_)) => None,
            _ => Some(self.workers(&mut found)?),
        };
        let num_processes = match (self.flags.num_processes, &workers) {
            (Some(n), _) => n,
            (None, Some(w)) => u32::try_from(w.len()).unwrap_or(u32::MAX),
            (None, None) => 1,
        };
        let process_id = match self.flags.process_id {
            Some(id) => id,
            None if num_processes == 1 => 0,
            None => self.worker_id(&mut found)?,
        };
        if process_id >= num_processes {
            bail!(
                "this worker's id is {process_id} but the run has {num_processes} worker(s) \
                 ({}); the ids must be below the count",
                found.join("; ")
            );
        }
        let coordinator = match (&self.flags.coordinator, &workers) {
            _ if num_processes == 1 => None,
            (Some(c), _) => Some(c.clone()),
            (None, Some(w)) => w.first().map(|host| coordinator_address(host)),
            (None, None) => None,
        };
        let accelerator_type = self.metadata.as_ref().and_then(|m| {
            m.attribute(ACCELERATOR_TYPE)
                .ok()
                .map(|t| t.trim().to_string())
        });
        Ok(Placement {
            process_id,
            num_processes,
            coordinator,
            found,
            accelerator_type,
        })
    }

    /// The slice's workers in worker order: `TPU_WORKER_HOSTNAMES`, else the metadata.
    fn workers(&self, found: &mut Vec<String>) -> Result<Vec<String>> {
        if let Some(text) = &self.env.worker_hostnames {
            found.push(format!("workers from {WORKER_HOSTNAMES_ENV}"));
            return parse::worker_hostnames(text);
        }
        let Some(m) = &self.metadata else {
            bail!(
                "{WORKER_ID_ENV} is set but {WORKER_HOSTNAMES_ENV} is not (and the TPU VM \
                 metadata server is not asked: {}): set {WORKER_HOSTNAMES_ENV} to the workers' \
                 host names in worker order, comma-separated, or give --num-processes and \
                 --coordinator",
                self.why_no_metadata()
            );
        };
        found.push(format!("workers from metadata {WORKER_NETWORK_ENDPOINTS}"));
        parse::worker_endpoints(&metadata::required(m, WORKER_NETWORK_ENDPOINTS)?)
    }

    /// This worker's id: `TPU_WORKER_ID`, else the metadata.
    fn worker_id(&self, found: &mut Vec<String>) -> Result<u32> {
        if let Some(text) = &self.env.worker_id {
            found.push(format!("worker id from {WORKER_ID_ENV}"));
            return parse::worker_id(text, WORKER_ID_ENV);
        }
        let Some(m) = &self.metadata else {
            bail!(
                "{WORKER_HOSTNAMES_ENV} is set but {WORKER_ID_ENV} is not (and the TPU VM \
                 metadata server is not asked: {}): set {WORKER_ID_ENV} to this worker's index \
                 in {WORKER_HOSTNAMES_ENV}, or give --process-id",
                self.why_no_metadata()
            );
        };
        found.push(format!("worker id from metadata {AGENT_WORKER_NUMBER}"));
        let text = metadata::required(m, AGENT_WORKER_NUMBER)?;
        parse::worker_id(&text, &format!("metadata attribute {AGENT_WORKER_NUMBER}"))
    }

    fn why_no_metadata(&self) -> &'static str {
        if self.env.skip_mds_query.is_some() {
            "TPU_SKIP_MDS_QUERY is set"
        } else {
            "this machine is not a TPU host"
        }
    }
}

/// `HOST:PORT` of worker 0's coordinator (IPv6 addresses in brackets).
pub fn coordinator_address(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{COORDINATOR_PORT}")
    } else {
        format!("{host}:{COORDINATOR_PORT}")
    }
}

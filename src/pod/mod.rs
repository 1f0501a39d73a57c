//! `tpu-run pod`: a Cloud TPU slice driven through the `gcloud` CLI, from this machine: create
//! it (a TPU VM or a queued resource, spot or preemptible allowed), run pretraining on every
//! worker at once with restarts after preemptions, show its state, fetch logs, stop the run
//! (SIGTERM: the workers checkpoint and exit), delete it. `--dry-run` prints the gcloud
//! commands instead of running them.
//!
//! `gcloud.rs` builds the command lines, `exec.rs` finds gcloud and runs them, `describe.rs`
//! reads describe's JSON, `plan.rs` holds the scripts the workers run, `tpu.rs` the TPU's
//! lifecycle (ready, waiting, recreating), `workers.rs` the parallel launch, `run.rs` the run
//! with its restarts, `stage.rs` the local files, `logs.rs`, `manage.rs` and `status.rs` the
//! other subcommands.
pub mod describe;
pub mod exec;
pub mod gcloud;
pub mod logs;
pub mod manage;
pub mod plan;
pub mod quote;
pub mod run;
pub mod stage;
pub mod status;
pub mod tpu;
pub mod workers;

pub use exec::Gcloud;
pub use gcloud::{Provisioning, Spec, Target};
pub use run::RunOptions;
pub use stage::LocalDir;
pub use tpu::Waits;

//! The multi-process coordinator: one tpu-run worker process per host, process 0 also serves
//! this gRPC service (proto/tpu_run/coordinator.proto) and every process, 0 included, is a
//! [`Client`] of it. It provides what a run across hosts needs besides the compiled step:
//!
//! - membership: [`Client::connect`] registers the process and returns once all
//!   `num_processes` processes have joined; mismatched process counts and duplicate ids are
//!   refused at once. Clients send heartbeats; a process that stops sending them, or leaves
//!   early, fails the run, and every blocking call of the other processes then returns
//!   [`CoordError::RunFailed`] naming it (within the heartbeat timeout, never hanging).
//! - a write-once key-value store with blocking get ([`Client::put`], [`Client::get`],
//!   [`Client::try_get`]); [`Client::pjrt_store`] hands it to a PJRT client
//!   (`tpu::Client::with_kv_store`) under the `pjrt/` key prefix;
//! - named barriers ([`Client::barrier`]);
//! - input sharding ([`shard_files`], [`Client::shard_files`]) and checkpoint coordination
//!   ([`Client::checkpoint`]).
//!
//! Everything is blocking for the caller: the server and each client run their own small tokio
//! runtime. Gradients never go through the coordinator; they stay inside the compiled step.
mod checkpoint;
mod client;
mod error;
mod server;
mod shard;
mod state;

pub use client::{Client, ClientConfig, PjrtKvStore};
pub use error::CoordError;
pub use server::{listen_address, serve, Server, ServerConfig};
pub use shard::shard_files;

/// The generated protobuf and gRPC types.
#[allow(clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/tpu_run.coord.rs"));
}

pub use proto::Member;

/// The largest message either side accepts (gRPC's default is 4 MiB; input-file lists of a big
/// corpus come near that).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The longest any blocking call may wait; larger timeouts (XLA's "infinite") are cut to this.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

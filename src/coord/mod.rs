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
//! - the data cursor (cursor.rs, data.rs): the input as work units handed out in a seeded
//!   epoch order to whichever process asks next ([`Client::open_cursor`],
//!   [`Client::next_units`]), each process's position reported at a step
//!   ([`Client::report_position`]) and the cursor checkpointed from them
//!   ([`Client::cursor_snapshot`]);
//! - input sharding ([`shard_files`], [`Client::shard_files`]) and checkpoint coordination
//!   ([`Client::checkpoint`]).
//!
//! Security (auth.rs): every call carries the run's token, and every call after Register the
//! session id Register returned, which must belong to the process id the call names; what a run
//! may store is bounded (limits.rs). Optional TLS encrypts the connections.
//!
//! Everything is blocking for the caller: the server and each client run their own small tokio
//! runtime. Gradients never go through the coordinator; they stay inside the compiled step.
mod auth;
mod checkpoint;
mod client;
mod cursor;
mod data;
mod error;
mod limits;
mod server;
mod shard;
mod state;

pub use auth::{write_token_file, Token, AUTHORIZATION, SESSION, TOKEN_ENV};
pub use client::{Client, ClientConfig, PjrtKvStore};
pub use data::{CursorSource, LocalCursor, OpenCursor};
pub use error::CoordError;
pub use limits::Limits;
pub use server::{
    bind_address, serve, Refusals, Server, ServerConfig, ServerTls, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
};
pub use shard::shard_files;

/// The generated protobuf and gRPC types.
#[allow(clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/tpu_run.coord.rs"));
}

pub use proto::Member;

/// The largest message a client sends or accepts. Larger than the server's own limit
/// ([`Limits::max_message_bytes`]), so that an oversize request reaches the server and is
/// refused there with the limit named.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The longest any blocking call may wait; larger timeouts (XLA's "infinite") are cut to this.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

//! What one run may make the coordinator hold, so that a buggy or hostile holder of the token
//! cannot grow process 0 without bound. Each refusal is a RESOURCE_EXHAUSTED or
//! INVALID_ARGUMENT status naming the limit and the value.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The bounds of a coordinator. The defaults leave ample room for what tpu-run and the PJRT
/// plugins store: XLA's GPU plugin exchanges per-host device topologies and NCCL ids (a few
/// KiB each), libtpu similar; the largest tpu-run value is the list of input files each
/// process publishes (`shard_files`: ~100 bytes a file, so 16 MiB is ~160k files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes (tpu-run's keys are < 100 bytes; PJRT's too).
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Keys and values of the whole store, plus [`ENTRY_OVERHEAD`] a key, in bytes.
    pub max_store_bytes: usize,
    /// Keys of the whole run (keys are never deleted: every checkpoint adds one per process).
    pub max_keys: usize,
    /// Longest barrier name, in bytes.
    pub max_barrier_name_bytes: usize,
    /// Distinct barriers of the run (every checkpoint uses one).
    pub max_barriers: usize,
    /// Open connections (each process holds one; connections beyond this are closed at once).
    pub max_connections: usize,
    /// Requests in flight on one connection (HTTP/2 streams): a process's heartbeats, its
    /// main thread's blocking call and the PJRT plugin's threads' key-value calls.
    pub max_streams_per_connection: u32,
    /// Largest gRPC message either side decodes (a value plus its key and framing).
    pub max_message_bytes: usize,
}

/// What a key costs besides its bytes (the map entry, the allocations).
pub const ENTRY_OVERHEAD: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 1 << 10,
            max_value_bytes: 16 << 20,
            max_store_bytes: 256 << 20,
            max_keys: 1_000_000,
            max_barrier_name_bytes: 1 << 10,
            max_barriers: 100_000,
            max_connections: 1024,
            max_streams_per_connection: 256,
            // A largest value with a largest key, and room for the framing.
            max_message_bytes: (16 << 20) + (64 << 10),
        }
    }
}

/// The accepted connections of `listener`, each counted against `max_connections`; one past
/// the limit is closed at once (with a warning naming its peer and the limit).
pub(crate) fn counted_incoming(
    listener: tokio::net::TcpListener,
    max_connections: usize,
) -> impl tokio_stream::Stream<Item = io::Result<Counted>> {
    use tokio_stream::StreamExt;
    let slots = Arc::new(Semaphore::new(max_connections));
    tokio_stream::wrappers::TcpListenerStream::new(listener).filter_map(move |accepted| {
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        // Small request/response messages: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        match Counted::admit(stream, &slots) {
            Some(c) => Some(Ok(c)),
            None => {
                tracing::warn!(
                    "coordinator: refused a connection from {peer:?}: already \
                     {max_connections} open (the limit on connections)"
                );
                None
            }
        }
    })
}

/// A connection counted against [`Limits::max_connections`] until it is dropped.
pub(crate) struct Counted {
    stream: tokio::net::TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Counted {
    /// `stream` if a connection slot is free, else `None` (the caller drops the stream, which
    /// closes it).
    pub fn admit(stream: tokio::net::TcpStream, slots: &Arc<Semaphore>) -> Option<Counted> {
        let permit = slots.clone().try_acquire_owned().ok()?;
        Some(Counted {
            stream,
            _permit: permit,
        })
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

//! The object-store client is async (reqwest on tokio); tpu-run's callers are synchronous
//! threads (the training loop, the reader's shard threads). As the coordinator does
//! (src/coord/client.rs), a runtime owned here runs each call with `block_on`: one runtime for
//! the process, made on first use, whose two workers drive the HTTP connections while the
//! calling thread waits.
use std::future::Future;
use std::io;
use std::sync::OnceLock;

fn runtime() -> io::Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tpu-run-storage")
            .enable_all()
            .build()
            .map_err(|e| format!("starting the object-storage runtime: {e}"))
    })
    .as_ref()
    .map_err(|e| io::Error::other(e.clone()))
}

/// Runs `fut` to completion on the storage runtime. Called from inside an async context it
/// is an error, not tokio's panic (no caller in tpu-run is async).
pub fn block_on<F: Future>(fut: F) -> io::Result<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(io::Error::other(
            "object storage was called from inside an async runtime; call it from a plain thread",
        ));
    }
    Ok(runtime()?.block_on(fut))
}

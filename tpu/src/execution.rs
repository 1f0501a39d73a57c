//! A launched execution: `PJRT_LoadedExecutable_Execute` returns as soon as the work is queued,
//! with one completion event per device. [`Execution`] owns those events; [`Execution::wait`]
//! awaits them and returns the first error. Errors are never lost: an execution dropped without
//! being waited for awaits its events in `drop` and logs any error (and reading an output buffer
//! of a failed execution returns the error too, as PJRT marks them).
use crate::client::ClientInner;
use crate::error::Result;
use crate::ffi::{self, new_args};
use std::sync::Arc;

/// The completion of one launched execution (every device of it).
#[must_use = "an execution's errors surface when it is waited for"]
pub struct Execution {
    client: Arc<ClientInner>,
    /// Owned device-complete events; null where the plugin gave none. Emptied by `wait`.
    events: Vec<*mut ffi::PJRT_Event>,
    what: &'static str,
}

// SAFETY: PJRT events may be awaited and destroyed from any thread (the C API's contract; every
// framework hands them to other threads). Each is destroyed exactly once (in `wait` or `drop`),
// and the Arc keeps the client, whose API table destroys them, alive until then.
unsafe impl Send for Execution {}

impl Execution {
    /// Takes ownership of `events` (device-complete events of one execute call).
    pub(crate) fn new(
        client: Arc<ClientInner>,
        events: Vec<*mut ffi::PJRT_Event>,
        what: &'static str,
    ) -> Self {
        Self {
            client,
            events,
            what,
        }
    }

    /// Waits until every device finished; the first device's error, if any.
    pub fn wait(mut self) -> Result<()> {
        self.await_all()
    }

    /// Whether every device has finished (success or error), without waiting.
    pub fn is_done(&self) -> Result<bool> {
        let api = self.client.api();
        for &ev in &self.events {
            if ev.is_null() {
                continue;
            }
            let mut a: ffi::PJRT_Event_IsReady_Args = new_args();
            a.event = ev;
            pjrt!(api, PJRT_Event_IsReady, &mut a)?;
            if !a.is_ready {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn await_all(&mut self) -> Result<()> {
        let api = self.client.api();
        let mut first = None;
        for ev in std::mem::take(&mut self.events) {
            if let Err(e) = api.await_event(ev, self.what) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        if let Err(e) = self.await_all() {
            tracing::warn!("an execution nobody waited for failed: {e}");
        }
    }
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("devices", &self.events.len())
            .field("what", &self.what)
            .finish()
    }
}

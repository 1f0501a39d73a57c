//! Ctrl-C and SIGTERM (what a preempted VM or a job scheduler sends) stop a run at the next step
//! boundary: the step in flight finishes, a checkpoint is written and the run ends with an error
//! naming the signal, so a rerun of the same command resumes there. A second signal ends the
//! process at once (exit status 130 for SIGINT, 143 for SIGTERM, as a shell reports them).
//!
//! Only the CLI installs the handlers (library callers and tests keep the default behaviour).
use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set by the first SIGINT or SIGTERM; read once per step.
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    any: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

impl StopSignal {
    /// Registers the handlers for this process. The conditional exits are registered first, so
    /// they see the flag as it was before this signal: unset on the first signal (no exit), set
    /// on the second (exit at once).
    pub fn install() -> Result<StopSignal> {
        let s = StopSignal::default();
        let register = || -> std::io::Result<()> {
            signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&s.any))?;
            signal_hook::flag::register_conditional_shutdown(SIGTERM, 143, Arc::clone(&s.any))?;
            signal_hook::flag::register(SIGINT, Arc::clone(&s.any))?;
            signal_hook::flag::register(SIGTERM, Arc::clone(&s.any))?;
            signal_hook::flag::register(SIGTERM, Arc::clone(&s.term))?;
            Ok(())
        };
        register().context("installing the SIGINT/SIGTERM handlers")?;
        Ok(s)
    }

    /// The signal that asked the run to stop, if one did.
    pub fn received(&self) -> Option<&'static str> {
        if !self.any.load(Ordering::SeqCst) {
            None
        } else if self.term.load(Ordering::SeqCst) {
            Some("SIGTERM")
        } else {
            Some("SIGINT")
        }
    }
}

//! Coordinated checkpoints: every process reaches step S; each hands in its own small state
//! (e.g. its data reader's position); process 0 writes the checkpoint with all of them; the
//! others wait until it is written (or learn that it failed). Parameters and optimizer state
//! are replicated across processes in data-parallel training, so process 0 holds them all.
use super::client::Client;
use super::error::CoordError;
use std::time::Duration;

const OK: &[u8] = b"ok";
const FAILED: &[u8] = b"failed: ";

impl Client {
    /// Every process calls this at the same step, with its own `local` state. Process 0 runs
    /// `write` with the states of all processes, ordered by process id; everyone returns once
    /// the write has finished, Ok or with process 0's error ([`CoordError::Checkpoint`]).
    /// `timeout` bounds each wait: for all processes to reach the step, and for the write.
    /// `write` runs only on process 0 (elsewhere it is dropped unused).
    pub fn checkpoint<E: std::fmt::Display>(
        &self,
        step: u64,
        local: &[u8],
        timeout: Duration,
        write: impl FnOnce(&[Vec<u8>]) -> Result<(), E>,
    ) -> Result<(), CoordError> {
        let key = self.next_use(&format!("tpu-run/checkpoint/step-{step}"));
        self.put(&format!("{key}/local/{}", self.process_id()), local)?;
        self.barrier(&format!("{key}/reached"), timeout)?;
        let outcome = format!("{key}/outcome");
        if self.process_id() == 0 {
            let states = (0..self.num_processes())
                .map(|p| self.get(&format!("{key}/local/{p}"), timeout))
                .collect::<Result<Vec<_>, _>>()?;
            let written = write(&states).map_err(|e| e.to_string());
            let published = match &written {
                Ok(()) => OK.to_vec(),
                Err(e) => [FAILED, e.as_bytes()].concat(),
            };
            self.put(&outcome, &published)?;
            written.map_err(|e| {
                CoordError::Checkpoint(format!(
                    "process 0 could not write the checkpoint of step {step}: {e}"
                ))
            })
        } else {
            let v = self.get(&outcome, timeout)?;
            if v == OK {
                return Ok(());
            }
            let why = String::from_utf8_lossy(v.strip_prefix(FAILED).unwrap_or(&v)).into_owned();
            Err(CoordError::Checkpoint(format!(
                "process 0 could not write the checkpoint of step {step}: {why}"
            )))
        }
    }
}

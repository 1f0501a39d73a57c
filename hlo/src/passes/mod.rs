//! Passes over the IR. Each pass returns a new module and is followed by the verifier.
mod verify;

pub use verify::verify;

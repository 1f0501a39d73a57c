//! Passes over the IR. Each pass returns a new module and is followed by the verifier.
mod cse;
mod dce;
mod fold;
mod pipeline;
mod simplify;
mod verify;

pub use cse::cse;
pub use dce::dce;
pub use pipeline::{run_pipeline, run_pipeline_with_stats, PassStats};
pub use simplify::simplify;
pub use verify::verify;

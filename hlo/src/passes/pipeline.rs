//! The standard pass sequence, with per-pass instruction counts and times.
use super::{cse, dce, simplify};
use crate::error::Result;
use crate::ir::Module;
use std::time::{Duration, Instant};

/// What one pass did: instruction counts over the whole module before and after, and its time.
#[derive(Clone, Debug, PartialEq)]
pub struct PassStats {
    pub pass: &'static str,
    pub before: usize,
    pub after: usize,
    pub elapsed: Duration,
}

type Pass = fn(&Module) -> Result<Module>;

const PIPELINE: [(&str, Pass); 3] = [("simplify", simplify), ("cse", cse), ("dce", dce)];

/// simplify, then CSE, then DCE; each pass ends with the verifier.
pub fn run_pipeline(m: &Module) -> Result<Module> {
    Ok(run_pipeline_with_stats(m)?.0)
}

/// [`run_pipeline`], also returning what each pass did.
pub fn run_pipeline_with_stats(m: &Module) -> Result<(Module, Vec<PassStats>)> {
    let mut cur = m.clone();
    let mut stats = Vec::with_capacity(PIPELINE.len());
    for (pass, run) in PIPELINE {
        let before = cur.instruction_count();
        let start = Instant::now();
        cur = run(&cur)?;
        stats.push(PassStats {
            pass,
            before,
            after: cur.instruction_count(),
            elapsed: start.elapsed(),
        });
    }
    Ok((cur, stats))
}

//! A program lowered to `HloModuleProto` bytes, with what building it took: the Rust side of a
//! benchmark's compile figures (model build, autodiff, passes and lowering).
use anyhow::{Context, Result};
use hlo::Module;
use std::time::Instant;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BuildStats {
    /// Seconds from the start of the build to the proto bytes.
    pub build_s: f64,
    /// Instructions of our IR over every computation.
    pub ir_instructions: usize,
    pub proto_bytes: usize,
}

/// Lowers `module`, built since `started`, and measures it.
pub fn lower(module: &Module, started: Instant) -> Result<(Vec<u8>, BuildStats)> {
    let proto = module
        .to_proto_bytes()
        .with_context(|| format!("lowering {} to HloModuleProto", module.name))?;
    let stats = BuildStats {
        build_s: started.elapsed().as_secs_f64(),
        ir_instructions: module.instruction_count(),
        proto_bytes: proto.len(),
    };
    Ok((proto, stats))
}

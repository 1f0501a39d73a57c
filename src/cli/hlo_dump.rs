//! `tpu-run hlo dump`: HLO text of an example program, optionally its HloModuleProto bytes.
use crate::examples::example;
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DumpArgs {
    /// Example program: mlp, softmax, embedding, bf16-dot, while.
    #[arg(default_value = "mlp")]
    pub example: String,
    /// Also write the serialized HloModuleProto to this file.
    #[arg(long)]
    pub proto: Option<PathBuf>,
}

pub fn run(a: &DumpArgs) -> Result<()> {
    let ex = example(&a.example, 0)?;
    print!("{}", hlo::text::to_text(&ex.module));
    if let Some(p) = &a.proto {
        let bytes = ex.module.to_proto_bytes()?;
        std::fs::write(p, &bytes).with_context(|| format!("writing {}", p.display()))?;
        eprintln!(
            "wrote {} bytes of HloModuleProto to {}",
            bytes.len(),
            p.display()
        );
    }
    Ok(())
}

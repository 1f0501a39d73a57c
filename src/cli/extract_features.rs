//! `tpu-run extract-features`: per-token hidden states of chosen encoder layers, as
//! google-research/bert's extract_features.py writes them (see `crate::features`).
use crate::backend::Backend;
use crate::features::{extract_features, ExtractSettings, OutputFormat};
use crate::model::ComputeDtype;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
pub struct ExtractFeaturesArgs {
    /// The weights: a Hugging Face BERT directory, a TF checkpoint (directory or prefix) or a
    /// tpu-run checkpoint directory.
    #[arg(long)]
    pub init: PathBuf,
    /// UTF-8 text, one example per line; `text_a ||| text_b` is a pair.
    #[arg(long)]
    pub input: PathBuf,
    /// The JSON lines file (--format jsonl) or the directory of .npy files (--format npy).
    #[arg(long)]
    pub output: PathBuf,
    /// Encoder layers to write, counted back from the last: -1 is the last layer's output.
    #[arg(long, default_value = "-1,-2,-3,-4", allow_hyphen_values = true)]
    pub layers: String,
    /// Tokens per line, [CLS] and [SEP]s included (longer lines are truncated).
    #[arg(long, default_value_t = 128)]
    pub max_seq_length: usize,
    /// Lines per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// jsonl: extract_features.py's output (values rounded to 6 decimals); npy: one f32 array
    /// per layer [examples, max_seq_length, hidden] plus tokens.jsonl, in the --output directory.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: OutputFormat,
    /// WordPiece vocabulary (default: the init's vocab.txt).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Lowercase and strip accents (uncased models); `false` for cased ones.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub do_lower_case: bool,
    /// Compute precision, f32 or bf16 (default: bf16 on cuda/tpu, f32 on cpu; fp8 applies to
    /// training only and is refused).
    #[arg(long, value_enum)]
    pub precision: Option<ComputeDtype>,
    /// Device backend (its PJRT plugin is found or, for cpu, installed on first use).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
    /// PJRT plugin file (overrides discovery).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

pub fn run(a: &ExtractFeaturesArgs) -> Result<()> {
    if a.precision == Some(ComputeDtype::Fp8) {
        bail!("--precision fp8: choose f32 or bf16 (fp8 applies to training)");
    }
    let precision = a.precision;
    let settings = ExtractSettings {
        init: a.init.clone(),
        input: a.input.clone(),
        output: a.output.clone(),
        format: a.format,
        layers: a.layers.clone(),
        max_seq_length: a.max_seq_length,
        batch_size: a.batch_size,
        vocab: a.vocab.clone(),
        do_lower_case: a.do_lower_case,
        precision,
        backend: a.backend,
        plugin: a.plugin.clone(),
    };
    let r = extract_features(&settings, &mut |m| println!("{m}"))?;
    let files: Vec<String> = r.files.iter().map(|f| f.display().to_string()).collect();
    println!(
        "done: {} examples, {} tokens ({} truncated); compile {:.1}s, run {:.1}s\n  wrote {}",
        r.examples,
        r.tokens,
        r.truncated,
        r.compile_time.as_secs_f64(),
        r.run_time.as_secs_f64(),
        files.join("\n  wrote ")
    );
    Ok(())
}

//! `tpu-run squad-eval DATA PREDS`: the official SQuAD v1.1 evaluation; prints
//! `{"exact_match": .., "f1": ..}` as evaluate-v1.1.py does (notices go to stderr, as there).
use crate::squad::{evaluate, read_predictions, SquadDataset, Warnings};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct SquadEvalArgs {
    /// SQuAD v1.1 dataset file (e.g. dev-v1.1.json).
    pub data: PathBuf,
    /// Predictions file: one JSON object, question id -> answer text.
    pub predictions: PathBuf,
}

pub fn run(args: &SquadEvalArgs) -> Result<()> {
    // The evaluation reads only ids and answer texts; problems elsewhere in the file are the
    // reader's warnings, which do not change the score.
    let mut warnings = Warnings::new();
    let dataset = SquadDataset::read(&args.data, &mut warnings)?;
    let predictions = read_predictions(&args.predictions)?;
    if let Some(notice) = crate::squad::eval::version_notice(&dataset) {
        eprintln!("{notice}");
    }
    let result = evaluate(&dataset, &predictions)?;
    for id in &result.unanswered {
        eprintln!("Unanswered question {id} will receive score 0.");
    }
    println!("{}", result.to_official_json());
    Ok(())
}

//! GLUE's submission files (what gluebenchmark.com takes, one per task in a zip): a header
//! `index\tprediction`, then one line per test example with the file's index and the label as
//! the task's files spell it (`entailment`, `1`), or STS-B's score with 3 decimals.
use super::examples::GlueExample;
use super::tasks::Output;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// A model's prediction for one example.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Prediction {
    Class(u32),
    Score(f32),
}

/// The submission file's text.
pub fn submission_text(
    output: Output,
    examples: &[GlueExample],
    predictions: &[Prediction],
) -> Result<String> {
    if examples.len() != predictions.len() {
        bail!(
            "{} predictions for {} examples",
            predictions.len(),
            examples.len()
        );
    }
    let mut s = String::from("index\tprediction\n");
    for (ex, p) in examples.iter().zip(predictions) {
        let value = match (output, p) {
            (Output::Classes(labels), Prediction::Class(c)) => match labels.get(*c as usize) {
                Some(l) => (*l).to_string(),
                None => bail!(
                    "predicted class {c} has no label (the task has {})",
                    labels.len()
                ),
            },
            (Output::Regression, Prediction::Score(v)) => format!("{v:.3}"),
            (o, p) => bail!("a {p:?} prediction does not fit the task's output {o:?}"),
        };
        let _ = writeln!(s, "{}\t{value}", ex.index);
    }
    Ok(s)
}

/// Writes [`submission_text`] to `path`.
pub fn write_submission(
    path: &Path,
    output: Output,
    examples: &[GlueExample],
    predictions: &[Prediction],
) -> Result<()> {
    let text = submission_text(output, examples, predictions)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

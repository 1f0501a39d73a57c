//! run_squad's `write_predictions` for SQuAD v1.1: from the start/end logits of every feature,
//! the n-best answer spans of each question, mapped back to the original text, with softmax
//! probabilities; the best one is the prediction.
//!
//! A span is kept when its start and end lie in the context window, the start token is in its
//! max-context window, start <= end and it is at most `max_answer_length` tokens long. Only the
//! `n_best_size` best start and end positions of each feature are paired.
use super::error::{Result, SquadError};
use super::examples::{squash_python_whitespace, SquadExample};
use super::features::InputFeature;
use super::final_text::get_final_text;
use super::pyfloat::python_float_repr;
use super::tokenizer::SquadTokenizer;
use super::warnings::{WarningKind, Warnings};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PredictConfig {
    pub n_best_size: usize,
    /// In WordPieces, start and end included.
    pub max_answer_length: usize,
}

impl Default for PredictConfig {
    /// run_squad's defaults: 20 and 30.
    fn default() -> PredictConfig {
        PredictConfig {
            n_best_size: 20,
            max_answer_length: 30,
        }
    }
}

/// The model's output for one feature: a logit per input position (`max_seq_length` each).
#[derive(Clone, Debug, PartialEq)]
pub struct RawResult {
    pub unique_id: u64,
    pub start_logits: Vec<f32>,
    pub end_logits: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NbestEntry {
    pub text: String,
    /// Softmax of start + end logit over the n-best entries of the question.
    pub probability: f64,
    pub start_logit: f64,
    pub end_logit: f64,
}

/// Per question, in example order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Predictions {
    /// (question id, answer): what `predictions.json` holds.
    pub answers: Vec<(String, String)>,
    /// (question id, n-best list, best first): `nbest_predictions.json`.
    pub nbest: Vec<(String, Vec<NbestEntry>)>,
}

/// The `n` positions with the largest logits, largest first; ties keep the lower position first
/// (Python's stable sort).
pub fn best_indexes(logits: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| descending(logits[a], logits[b]));
    order.truncate(n);
    order
}

/// Larger first; -0.0 and 0.0 compare equal, as in Python (inputs are checked finite).
fn descending(a: f64, b: f64) -> std::cmp::Ordering {
    b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal)
}

/// run_squad's `_compute_softmax` (max subtracted first), in f64.
pub fn compute_softmax(scores: &[f64]) -> Vec<f64> {
    let Some(max) = scores.iter().copied().reduce(f64::max) else {
        return Vec::new();
    };
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

struct Candidate {
    feature: usize,
    start: usize,
    end: usize,
    start_logit: f64,
    end_logit: f64,
}

/// The WordPiece text of a span: tokens joined by spaces, `##` continuations glued back on.
fn wordpiece_text(
    feature: &InputFeature,
    start: usize,
    end: usize,
    tokenizer: &dyn SquadTokenizer,
) -> Result<String> {
    let mut tokens = Vec::with_capacity(end + 1 - start);
    for &id in &feature.input_ids[start..=end] {
        let token = u32::try_from(id)
            .ok()
            .and_then(|id| tokenizer.id_to_token(id));
        tokens.push(token.ok_or_else(|| {
            SquadError::Results(format!(
                "feature {} has token id {id}, which the vocabulary does not have; featurize \
                 and predict with the same vocab",
                feature.unique_id
            ))
        })?);
    }
    let text = tokens.join(" ").replace(" ##", "").replace("##", "");
    Ok(squash_python_whitespace(&text))
}

fn checked_logits(result: &RawResult, feature: &InputFeature) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = feature.input_ids.len();
    if result.start_logits.len() != n || result.end_logits.len() != n {
        return Err(SquadError::Results(format!(
            "feature {} has {n} positions but its result has {} start and {} end logits",
            feature.unique_id,
            result.start_logits.len(),
            result.end_logits.len()
        )));
    }
    if let Some(bad) = result
        .start_logits
        .iter()
        .chain(&result.end_logits)
        .find(|x| !x.is_finite())
    {
        return Err(SquadError::Results(format!(
            "feature {} has a non-finite logit ({bad}); the model diverged or its output was \
             read wrongly",
            feature.unique_id
        )));
    }
    let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect();
    Ok((widen(&result.start_logits), widen(&result.end_logits)))
}

/// The n-best answers of one example from its features' results.
fn example_nbest(
    example: &SquadExample,
    features: &[&InputFeature],
    results: &HashMap<u64, &RawResult>,
    tokenizer: &dyn SquadTokenizer,
    config: &PredictConfig,
    warnings: &mut Warnings,
) -> Result<Vec<NbestEntry>> {
    let mut candidates = Vec::new();
    for (fi, feature) in features.iter().enumerate() {
        let result = results.get(&feature.unique_id).ok_or_else(|| {
            SquadError::Results(format!(
                "no logits for feature {} (question {:?}); every feature needs a result",
                feature.unique_id, example.qas_id
            ))
        })?;
        let (start_logits, end_logits) = checked_logits(result, feature)?;
        let starts = best_indexes(&start_logits, config.n_best_size);
        let ends = best_indexes(&end_logits, config.n_best_size);
        for &start in &starts {
            for &end in &ends {
                let valid = start < feature.num_tokens
                    && end < feature.num_tokens
                    && feature.orig_word(start).is_some()
                    && feature.orig_word(end).is_some()
                    && feature.is_max_context(start)
                    && end >= start
                    && end - start < config.max_answer_length;
                if valid {
                    candidates.push(Candidate {
                        feature: fi,
                        start,
                        end,
                        start_logit: start_logits[start],
                        end_logit: end_logits[end],
                    });
                }
            }
        }
    }
    // Stable: equal scores keep generation order, as Python's sorted does.
    candidates.sort_by(|a, b| descending(a.start_logit + a.end_logit, b.start_logit + b.end_logit));

    let mut seen = HashSet::new();
    let mut nbest: Vec<(String, f64, f64)> = Vec::new();
    for c in candidates {
        if nbest.len() >= config.n_best_size {
            break;
        }
        let feature = features[c.feature];
        // Valid spans lie in the window, so both positions map to words.
        let (Some(first_word), Some(last_word)) =
            (feature.orig_word(c.start), feature.orig_word(c.end))
        else {
            continue;
        };
        let pred_text = wordpiece_text(feature, c.start, c.end, tokenizer)?;
        let words = example
            .doc
            .words
            .get(first_word..=last_word)
            .ok_or_else(|| {
                SquadError::Results(format!(
                "feature {} maps to words {first_word}..={last_word}, but question {:?} has {} \
                 words; features and examples do not belong together",
                feature.unique_id,
                example.qas_id,
                example.doc.words.len()
            ))
            })?;
        let orig_text = words.join(" ");
        let text = get_final_text(&pred_text, &orig_text, tokenizer)?;
        if seen.insert(text.clone()) {
            nbest.push((text, c.start_logit, c.end_logit));
        }
    }
    if nbest.is_empty() {
        let kind = if features.is_empty() {
            WarningKind::NoFeatures
        } else {
            WarningKind::NoValidSpan
        };
        warnings.warn(
            kind,
            format!(
                "question {:?}: {}; predicted \"empty\"",
                example.qas_id,
                kind.describe()
            ),
        );
        nbest.push(("empty".into(), 0.0, 0.0));
    }
    let scores: Vec<f64> = nbest.iter().map(|(_, s, e)| s + e).collect();
    let probs = compute_softmax(&scores);
    Ok(nbest
        .into_iter()
        .zip(probs)
        .map(|((text, start_logit, end_logit), probability)| NbestEntry {
            text,
            probability,
            start_logit,
            end_logit,
        })
        .collect())
}

/// Predictions for every example (in order) from the results of their features. An example
/// without features or without a valid span is predicted "empty" (counted), as run_squad does.
pub fn make_predictions(
    examples: &[SquadExample],
    features: &[InputFeature],
    results: &[RawResult],
    tokenizer: &dyn SquadTokenizer,
    config: &PredictConfig,
    warnings: &mut Warnings,
) -> Result<Predictions> {
    if config.n_best_size == 0 || config.max_answer_length == 0 {
        return Err(SquadError::Config(
            "n_best_size and max_answer_length must be at least 1".into(),
        ));
    }
    let mut by_example: Vec<Vec<&InputFeature>> = vec![Vec::new(); examples.len()];
    for f in features {
        by_example
            .get_mut(f.example_index)
            .ok_or_else(|| {
                SquadError::Results(format!(
                    "feature {} belongs to example {}, but only {} examples were given",
                    f.unique_id,
                    f.example_index,
                    examples.len()
                ))
            })?
            .push(f);
    }
    // Later results for the same feature replace earlier ones (as run_squad's dict does).
    let results: HashMap<u64, &RawResult> = results.iter().map(|r| (r.unique_id, r)).collect();
    let mut out = Predictions::default();
    for (example, features) in examples.iter().zip(&by_example) {
        let nbest = example_nbest(example, features, &results, tokenizer, config, warnings)?;
        out.answers
            .push((example.qas_id.clone(), nbest[0].text.clone()));
        out.nbest.push((example.qas_id.clone(), nbest));
    }
    Ok(out)
}

fn json_string(s: &str) -> String {
    // Serializing a str cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

impl Predictions {
    /// `predictions.json` as run_squad writes it (`json.dumps(..., indent=4)`), ids in order.
    pub fn predictions_json(&self) -> String {
        if self.answers.is_empty() {
            return "{}\n".into();
        }
        let body: Vec<String> = self
            .answers
            .iter()
            .map(|(id, text)| format!("    {}: {}", json_string(id), json_string(text)))
            .collect();
        format!("{{\n{}\n}}\n", body.join(",\n"))
    }

    /// `nbest_predictions.json`: per id, the n-best list with text, probability and logits.
    pub fn nbest_json(&self) -> String {
        if self.nbest.is_empty() {
            return "{}\n".into();
        }
        let mut out = String::from("{\n");
        for (qi, (id, entries)) in self.nbest.iter().enumerate() {
            let _ = writeln!(out, "    {}: [", json_string(id));
            for (ei, e) in entries.iter().enumerate() {
                let _ = write!(
                    out,
                    "        {{\n            \"text\": {},\n            \"probability\": {},\n            \
                     \"start_logit\": {},\n            \"end_logit\": {}\n        }}",
                    json_string(&e.text),
                    python_float_repr(e.probability),
                    python_float_repr(e.start_logit),
                    python_float_repr(e.end_logit)
                );
                out.push_str(if ei + 1 < entries.len() { ",\n" } else { "\n" });
            }
            out.push_str(if qi + 1 < self.nbest.len() {
                "    ],\n"
            } else {
                "    ]\n"
            });
        }
        out.push_str("}\n");
        out
    }

    /// Writes `predictions.json` and `nbest_predictions.json` into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SquadError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let preds = dir.join("predictions.json");
        std::fs::write(&preds, self.predictions_json()).map_err(io(&preds))?;
        let nbest = dir.join("nbest_predictions.json");
        std::fs::write(&nbest, self.nbest_json()).map_err(io(&nbest))?;
        Ok(())
    }
}

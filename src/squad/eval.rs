//! The official SQuAD v1.1 evaluation (evaluate-v1.1.py), rule for rule
//! (../shared/data/squad/EVAL_RULES.md): answers normalized (lowercase, ASCII punctuation
//! deleted, the words a/an/the removed, whitespace collapsed); per question the best exact
//! match and the best token F1 over its ground truths; both averaged over all questions of the
//! dataset (a question without a prediction scores 0) and reported x100.
use super::error::{Result, SquadError};
use super::json::{SquadDataset, SQUAD_VERSION};
use super::pyfloat::python_float_repr;
use crate::data::normalizer::is_python_space;
use std::collections::HashMap;
use std::path::Path;
use unicode_general_category::{get_general_category, GeneralCategory as Gc};

/// A character of Python's regex `\w` (str patterns): letters, numbers (Nd, Nl, No), `_`.
/// Combining marks are not word characters there.
fn is_python_word_char(c: char) -> bool {
    c == '_'
        || matches!(
            get_general_category(c),
            Gc::UppercaseLetter
                | Gc::LowercaseLetter
                | Gc::TitlecaseLetter
                | Gc::ModifierLetter
                | Gc::OtherLetter
                | Gc::DecimalNumber
                | Gc::LetterNumber
                | Gc::OtherNumber
        )
}

/// `re.sub(r'\b(a|an|the)\b', ' ', text)`: every maximal run of word characters that is
/// exactly "a", "an" or "the" becomes one space.
fn remove_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_python_word_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The official `normalize_answer`.
pub fn normalize_answer(s: &str) -> String {
    let lowered = s.to_lowercase();
    let no_punct: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let no_articles = remove_articles(&no_punct);
    no_articles
        .split(is_python_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn exact_match_score(prediction: &str, ground_truth: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(ground_truth)
}

/// Token F1 with multiset overlap; 0 when nothing overlaps (also when either side is empty).
pub fn f1_score(prediction: &str, ground_truth: &str) -> f64 {
    let pred = normalize_answer(prediction);
    let truth = normalize_answer(ground_truth);
    let pred_tokens: Vec<&str> = pred.split(' ').filter(|t| !t.is_empty()).collect();
    let truth_tokens: Vec<&str> = truth.split(' ').filter(|t| !t.is_empty()).collect();
    let mut truth_counts: HashMap<&str, usize> = HashMap::new();
    for t in &truth_tokens {
        *truth_counts.entry(t).or_insert(0) += 1;
    }
    let mut num_same = 0usize;
    for t in &pred_tokens {
        if let Some(n) = truth_counts.get_mut(t) {
            if *n > 0 {
                *n -= 1;
                num_same += 1;
            }
        }
    }
    if num_same == 0 {
        return 0.0;
    }
    let precision = num_same as f64 / pred_tokens.len() as f64;
    let recall = num_same as f64 / truth_tokens.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

#[derive(Clone, Debug, PartialEq)]
pub struct EvalResult {
    /// Percent, unrounded.
    pub exact_match: f64,
    /// Percent, unrounded.
    pub f1: f64,
    /// Questions in the dataset (the denominator).
    pub total: usize,
    /// Ids of dataset questions without a prediction (scored 0), in file order.
    pub unanswered: Vec<String>,
}

impl EvalResult {
    /// `{"exact_match": .., "f1": ..}` exactly as the official script prints it.
    pub fn to_official_json(&self) -> String {
        format!(
            "{{\"exact_match\": {}, \"f1\": {}}}",
            python_float_repr(self.exact_match),
            python_float_repr(self.f1)
        )
    }
}

/// Scores `predictions` (question id -> answer) against every question of `dataset`.
/// Predictions for ids the dataset does not have are ignored, as by the official script.
pub fn evaluate(
    dataset: &SquadDataset,
    predictions: &HashMap<String, String>,
) -> Result<EvalResult> {
    let (mut exact_match, mut f1, mut total) = (0usize, 0.0f64, 0usize);
    let mut unanswered = Vec::new();
    for (_, _, qa) in dataset.questions() {
        total += 1;
        let Some(prediction) = predictions.get(&qa.id) else {
            unanswered.push(qa.id.clone());
            continue;
        };
        if qa.answers.is_empty() {
            return Err(SquadError::NoGroundTruth {
                path: dataset.path.clone(),
                id: qa.id.clone(),
            });
        }
        let em = qa
            .answers
            .iter()
            .any(|a| exact_match_score(prediction, &a.text));
        exact_match += usize::from(em);
        f1 += qa
            .answers
            .iter()
            .map(|a| f1_score(prediction, &a.text))
            .fold(f64::NEG_INFINITY, f64::max);
    }
    if total == 0 {
        return Err(SquadError::NoQuestions {
            path: dataset.path.clone(),
        });
    }
    Ok(EvalResult {
        exact_match: 100.0 * exact_match as f64 / total as f64,
        f1: 100.0 * f1 / total as f64,
        total,
        unanswered,
    })
}

/// Reads a predictions file: one JSON object, question id -> answer string.
pub fn read_predictions(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|source| SquadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |message: String| SquadError::Predictions {
        path: path.to_path_buf(),
        message,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "not valid JSON at line {}, column {}: {e}; a predictions file is one JSON object \
             {{\"question id\": \"answer\", ...}}",
            e.line(),
            e.column()
        ))
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad(
            "expected one JSON object {\"question id\": \"answer\", ...} (an n-best file is not a \
             predictions file)"
                .into(),
        ));
    };
    map.into_iter()
        .map(|(id, v)| match v {
            serde_json::Value::String(s) => Ok((id, s)),
            other => Err(bad(format!(
                "the prediction for {id:?} must be one answer string, found {other}"
            ))),
        })
        .collect()
}

/// The official script's stderr notice when the dataset is not v1.1 (it scores anyway).
pub fn version_notice(dataset: &SquadDataset) -> Option<String> {
    let v = dataset.version.as_deref().unwrap_or("none");
    (v != SQUAD_VERSION)
        .then(|| format!("Evaluation expects v-{SQUAD_VERSION}, but got dataset with v-{v}"))
}

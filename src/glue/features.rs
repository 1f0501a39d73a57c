//! run_classifier.py's `convert_single_example`: WordPiece both texts, cut a pair longest-first
//! to `max_seq_length - 3` tokens (a single text to `max_seq_length - 2`), lay them out as
//! `[CLS] a [SEP] b [SEP]` with segment 0 up to the first `[SEP]` and 1 after it, mask 1 on
//! real tokens, zero padding. Kept as flat row-major arrays, one row per example.
use super::examples::{GlueExample, Label};
use super::tasks::Output;
use crate::squad::SquadTokenizer;
use anyhow::{anyhow, bail, Result};

/// The examples of one file as program inputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GlueFeatures {
    pub seq_len: usize,
    pub input_ids: Vec<i32>,
    pub input_mask: Vec<i32>,
    pub segment_ids: Vec<i32>,
    /// Class indices (classification; 0 where an example has no label).
    pub labels: Vec<i32>,
    /// Scores (regression; 0 where an example has no label).
    pub scores: Vec<f32>,
    /// Examples cut to fit `seq_len`.
    pub truncated: usize,
}

impl GlueFeatures {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// run_classifier's `_truncate_seq_pair`: drop the last token of the longer text (of `b` when
/// equal) until the pair fits `max_len`.
pub fn truncate_seq_pair(a: &mut Vec<u32>, b: &mut Vec<u32>, max_len: usize) {
    while a.len() + b.len() > max_len {
        if a.len() > b.len() {
            a.pop();
        } else {
            b.pop();
        }
    }
}

/// The features of `examples` (see the module docs).
pub fn convert_examples(
    examples: &[GlueExample],
    tokenizer: &dyn SquadTokenizer,
    max_seq_length: usize,
    output: Output,
) -> Result<GlueFeatures> {
    let pairs = examples.iter().any(|e| e.text_b.is_some());
    let reserved = if pairs { 3 } else { 2 };
    if max_seq_length <= reserved {
        bail!("--max-seq-length {max_seq_length} leaves no room for text after [CLS] and [SEP]");
    }
    let special = |t: &str| {
        tokenizer
            .token_to_id(t)
            .map(|id| id as i32)
            .ok_or_else(|| anyhow!("the vocabulary has no {t} token"))
    };
    let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
    let texts_a: Vec<&str> = examples.iter().map(|e| e.text_a.as_str()).collect();
    let texts_b: Vec<&str> = examples
        .iter()
        .map(|e| e.text_b.as_deref().unwrap_or(""))
        .collect();
    let ids_a = tokenizer.wordpiece_ids_batch(&texts_a)?;
    let ids_b = if pairs {
        tokenizer.wordpiece_ids_batch(&texts_b)?
    } else {
        vec![vec![]; examples.len()]
    };
    let s = max_seq_length;
    let mut f = GlueFeatures {
        seq_len: s,
        ..Default::default()
    };
    for ((ex, mut a), mut b) in examples.iter().zip(ids_a).zip(ids_b) {
        let before = a.len() + b.len();
        if ex.text_b.is_some() {
            truncate_seq_pair(&mut a, &mut b, s - 3);
        } else {
            a.truncate(s - 2);
            b.clear();
        }
        if a.len() + b.len() < before {
            f.truncated += 1;
        }
        let mut ids = Vec::with_capacity(s);
        let mut segments = Vec::with_capacity(s);
        ids.push(cls);
        ids.extend(a.iter().map(|&t| t as i32));
        ids.push(sep);
        segments.resize(ids.len(), 0);
        if ex.text_b.is_some() {
            ids.extend(b.iter().map(|&t| t as i32));
            ids.push(sep);
            segments.resize(ids.len(), 1);
        }
        let real = ids.len();
        ids.resize(s, 0);
        segments.resize(s, 0);
        f.input_ids.extend(ids);
        f.segment_ids.extend(segments);
        f.input_mask.extend((0..s).map(|i| i32::from(i < real)));
        let (label, score) = match (ex.label, output) {
            (Some(Label::Class(c)), Output::Classes(_)) => (c as i32, 0.0),
            (Some(Label::Score(v)), Output::Regression) => (0, v),
            (None, _) => (0, 0.0),
            (Some(l), _) => bail!(
                "line {}: a {l:?} label does not fit the task's output {output:?}",
                ex.line
            ),
        };
        f.labels.push(label);
        f.scores.push(score);
    }
    Ok(f)
}

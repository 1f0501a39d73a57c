//! run_squad's `convert_examples_to_features`: each question with a window of its context as
//! `[CLS] question [SEP] context-window [SEP]`, windows of `max_seq_length` sliding by
//! `doc_stride` over the WordPieces of the context words, with the max-context flag per token
//! and, in training, the answer's token positions (0 when the window does not contain it).
use super::error::{Result, SquadError};
use super::examples::{Document, SquadExample};
use super::tokenizer::SquadTokenizer;
use super::warnings::{WarningKind, Warnings};
use std::collections::HashMap;

/// run_squad's first `unique_id`; features are numbered from it in order.
pub const FIRST_UNIQUE_ID: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureConfig {
    /// Tokens per feature, [CLS] and both [SEP] included; shorter ones are padded with id 0.
    pub max_seq_length: usize,
    /// How far successive context windows start apart (in WordPieces).
    pub doc_stride: usize,
    /// Questions longer than this (in WordPieces) are truncated.
    pub max_query_length: usize,
}

impl Default for FeatureConfig {
    /// run_squad's defaults: 384, 128, 64.
    fn default() -> FeatureConfig {
        FeatureConfig {
            max_seq_length: 384,
            doc_stride: 128,
            max_query_length: 64,
        }
    }
}

impl FeatureConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_seq_length <= self.max_query_length + 3 {
            return Err(SquadError::Config(format!(
                "max_seq_length ({}) must be greater than max_query_length ({}) + 3",
                self.max_seq_length, self.max_query_length
            )));
        }
        if self.doc_stride == 0 {
            return Err(SquadError::Config("doc_stride must be at least 1".into()));
        }
        Ok(())
    }
}

/// One model input. Token positions index `input_ids`; the context window sits at
/// `doc_offset .. doc_offset + token_to_orig.len()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFeature {
    pub unique_id: u64,
    /// Index of its example in the slice given to [`convert_examples_to_features`].
    pub example_index: usize,
    /// Which window of the example's context this is (0, 1, ...).
    pub doc_span_index: usize,
    /// `max_seq_length` ids: `[CLS] question [SEP] window [SEP]`, then zeros.
    pub input_ids: Vec<i32>,
    /// 1 for real tokens, 0 for padding.
    pub input_mask: Vec<i32>,
    /// 0 for [CLS], the question and the first [SEP]; 1 for the window and the last [SEP];
    /// 0 for padding.
    pub segment_ids: Vec<i32>,
    /// Real tokens (the length before padding).
    pub num_tokens: usize,
    /// Position of the window's first token (question WordPieces + 2).
    pub doc_offset: usize,
    /// For each window token, the whitespace word of the context it comes from.
    pub token_to_orig: Vec<usize>,
    /// For each window token: this window gives it the most context of all windows holding it.
    pub token_is_max_context: Vec<bool>,
    /// Training only: answer start/end positions, both 0 when the window misses the answer.
    pub start_position: Option<usize>,
    pub end_position: Option<usize>,
}

impl InputFeature {
    /// The context word of the token at `position`, or `None` outside the window
    /// (run_squad's `token_to_orig_map`).
    pub fn orig_word(&self, position: usize) -> Option<usize> {
        position
            .checked_sub(self.doc_offset)
            .and_then(|i| self.token_to_orig.get(i).copied())
    }

    /// run_squad's `token_is_max_context.get(position, False)`.
    pub fn is_max_context(&self, position: usize) -> bool {
        position
            .checked_sub(self.doc_offset)
            .and_then(|i| self.token_is_max_context.get(i).copied())
            .unwrap_or(false)
    }

    /// The real (unpadded) token ids.
    pub fn token_ids(&self) -> &[i32] {
        &self.input_ids[..self.num_tokens]
    }
}

/// A window over the context's WordPieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocSpan {
    pub start: usize,
    pub length: usize,
}

/// The sliding windows: each at most `max_tokens` long, starting `min(length, doc_stride)` after
/// the previous one, the last one ending at the last token.
pub fn doc_spans(num_tokens: usize, max_tokens: usize, doc_stride: usize) -> Vec<DocSpan> {
    let mut spans = Vec::new();
    let mut start = 0;
    while start < num_tokens {
        let length = (num_tokens - start).min(max_tokens);
        spans.push(DocSpan { start, length });
        if start + length == num_tokens {
            break;
        }
        start += length.min(doc_stride);
    }
    spans
}

/// run_squad's `_check_is_max_context`: the window with the largest
/// `min(left context, right context) + 0.01 * window length` for the token (the first such
/// window on ties) is its max-context window.
pub fn is_max_context(spans: &[DocSpan], current: usize, position: usize) -> bool {
    let mut best: Option<(f64, usize)> = None;
    for (index, span) in spans.iter().enumerate() {
        let end = span.start + span.length - 1;
        if position < span.start || position > end {
            continue;
        }
        let left = position - span.start;
        let right = end - position;
        let score = left.min(right) as f64 + 0.01 * span.length as f64;
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, index));
        }
    }
    best.is_some_and(|(_, index)| index == current)
}

/// run_squad's `_improve_answer_span`: the first (start, then longest) sub-span of
/// `start..=end` whose WordPieces equal those of the answer text, else the span unchanged.
/// (E.g. "1895" inside the word "(1895-1943).".)
pub fn improve_answer_span(
    doc_ids: &[u32],
    start: isize,
    end: isize,
    answer_ids: &[u32],
) -> (isize, isize) {
    for new_start in start.max(0)..=end {
        for new_end in (new_start..=end).rev() {
            let slice = doc_ids.get(new_start as usize..=new_end as usize);
            if slice == Some(answer_ids) {
                return (new_start, new_end);
            }
        }
    }
    (start, end)
}

/// The WordPieces of a context, word by word.
struct TokenizedDoc {
    ids: Vec<u32>,
    /// Word of each WordPiece.
    tok_to_orig: Vec<usize>,
    /// First WordPiece of each word (the next word's, for a word without WordPieces).
    orig_to_tok: Vec<usize>,
}

/// Tokenizes every distinct context once (run_squad tokenizes it again for each question; the
/// result is the same) in one batch.
fn tokenize_docs(
    examples: &[SquadExample],
    tokenizer: &dyn SquadTokenizer,
) -> Result<(Vec<TokenizedDoc>, Vec<usize>)> {
    let mut doc_index: HashMap<*const Document, usize> = HashMap::new();
    let mut docs: Vec<&Document> = Vec::new();
    let example_doc = examples
        .iter()
        .map(|e| {
            *doc_index
                .entry(std::sync::Arc::as_ptr(&e.doc))
                .or_insert_with(|| {
                    docs.push(&e.doc);
                    docs.len() - 1
                })
        })
        .collect();
    let words: Vec<&str> = docs
        .iter()
        .flat_map(|d| d.words.iter().map(String::as_str))
        .collect();
    let mut pieces = tokenizer.wordpiece_ids_batch(&words)?.into_iter();
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        let mut t = TokenizedDoc {
            ids: Vec::new(),
            tok_to_orig: Vec::new(),
            orig_to_tok: Vec::with_capacity(d.words.len()),
        };
        for word in 0..d.words.len() {
            t.orig_to_tok.push(t.ids.len());
            let sub = pieces.next().ok_or_else(|| {
                SquadError::Tokenizer("batch tokenization returned fewer results than texts".into())
            })?;
            t.tok_to_orig.extend(std::iter::repeat_n(word, sub.len()));
            t.ids.extend(sub);
        }
        out.push(t);
    }
    Ok((out, example_doc))
}

/// Features of `examples` in order (unique ids from [`FIRST_UNIQUE_ID`]). Training examples
/// (`is_training`) must carry their answer. Truncated questions and contexts without WordPieces
/// are counted in `warnings`.
pub fn convert_examples_to_features(
    examples: &[SquadExample],
    tokenizer: &dyn SquadTokenizer,
    config: &FeatureConfig,
    is_training: bool,
    warnings: &mut Warnings,
) -> Result<Vec<InputFeature>> {
    config.validate()?;
    let special = |t: &str| {
        tokenizer
            .token_to_id(t)
            .ok_or_else(|| SquadError::Tokenizer(format!("the vocabulary has no {t} token")))
    };
    let (cls, sep) = (special("[CLS]")? as i32, special("[SEP]")? as i32);
    let (docs, example_doc) = tokenize_docs(examples, tokenizer)?;
    let questions: Vec<&str> = examples.iter().map(|e| e.question_text.as_str()).collect();
    let question_ids = tokenizer.wordpiece_ids_batch(&questions)?;
    let answer_ids = if is_training {
        let texts: Vec<&str> = examples
            .iter()
            .map(|e| e.answer.as_ref().map_or("", |a| a.text.as_str()))
            .collect();
        tokenizer.wordpiece_ids_batch(&texts)?
    } else {
        Vec::new()
    };

    let mut features = Vec::new();
    let mut unique_id = FIRST_UNIQUE_ID;
    for (example_index, example) in examples.iter().enumerate() {
        let doc = &docs[example_doc[example_index]];
        let mut query = question_ids[example_index].clone();
        if query.len() > config.max_query_length {
            warnings.warn(
                WarningKind::QuestionTruncated,
                format!(
                    "question {:?} has {} WordPieces; truncated to max_query_length {}",
                    example.qas_id,
                    query.len(),
                    config.max_query_length
                ),
            );
            query.truncate(config.max_query_length);
        }
        let answer = match (&example.answer, is_training) {
            (Some(a), true) => Some(a),
            (None, true) => {
                return Err(SquadError::Config(format!(
                    "training example {:?} has no answer (read it with is_training = true)",
                    example.qas_id
                )))
            }
            (_, false) => None,
        };
        if doc.ids.is_empty() {
            warnings.warn(
                WarningKind::NoDocTokens,
                format!(
                    "question {:?}: its context has no WordPiece tokens; no features",
                    example.qas_id
                ),
            );
            continue;
        }
        let answer_tokens = match answer {
            Some(answer) => {
                let start = doc.orig_to_tok.get(answer.start_word).ok_or_else(|| {
                    SquadError::Config(format!(
                        "training example {:?}: answer word {} is past its context's {} words",
                        example.qas_id,
                        answer.start_word,
                        doc.orig_to_tok.len()
                    ))
                })?;
                let end = match doc.orig_to_tok.get(answer.end_word + 1) {
                    Some(&next) => next as isize - 1,
                    None => doc.ids.len() as isize - 1,
                };
                let answer_ids = &answer_ids[example_index];
                Some(improve_answer_span(
                    &doc.ids,
                    *start as isize,
                    end,
                    answer_ids,
                ))
            }
            None => None,
        };

        let max_tokens_for_doc = config.max_seq_length - query.len() - 3;
        let spans = doc_spans(doc.ids.len(), max_tokens_for_doc, config.doc_stride);
        let doc_offset = query.len() + 2;
        for (span_index, span) in spans.iter().enumerate() {
            let num_tokens = doc_offset + span.length + 1;
            let mut input_ids = Vec::with_capacity(config.max_seq_length);
            input_ids.push(cls);
            input_ids.extend(query.iter().map(|&id| id as i32));
            input_ids.push(sep);
            input_ids.extend(
                doc.ids[span.start..span.start + span.length]
                    .iter()
                    .map(|&id| id as i32),
            );
            input_ids.push(sep);
            input_ids.resize(config.max_seq_length, 0);
            let mut segment_ids = vec![0; config.max_seq_length];
            segment_ids[doc_offset..num_tokens].fill(1);
            let mut input_mask = vec![0; config.max_seq_length];
            input_mask[..num_tokens].fill(1);
            let window = span.start..span.start + span.length;
            let (start_position, end_position) = match answer_tokens {
                None => (None, None),
                Some((start, end)) => {
                    let (first, last) =
                        (span.start as isize, (span.start + span.length) as isize - 1);
                    if start >= first && end <= last {
                        let shift = doc_offset as isize - first;
                        (Some((start + shift) as usize), Some((end + shift) as usize))
                    } else {
                        (Some(0), Some(0))
                    }
                }
            };
            features.push(InputFeature {
                unique_id,
                example_index,
                doc_span_index: span_index,
                input_ids,
                input_mask,
                segment_ids,
                num_tokens,
                doc_offset,
                token_to_orig: doc.tok_to_orig[window.clone()].to_vec(),
                token_is_max_context: window
                    .map(|p| is_max_context(&spans, span_index, p))
                    .collect(),
                start_position,
                end_position,
            });
            unique_id += 1;
        }
    }
    Ok(features)
}

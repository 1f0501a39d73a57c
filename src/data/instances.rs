//! Training instances (sentence pairs) with create_pretraining_data.py's semantics and random
//! stream: documents shuffled; for each of `dupe_factor` passes and each document, chunks of
//! sentences filled to a target length (`max_seq_length - 3`, or with `short_seq_prob` a
//! uniform one in 2..=that), split at a random sentence into A and B; B is a random span of
//! another document with p 0.5 (or always when the chunk has one sentence) and then the unused
//! sentences are put back; `truncate_seq_pair` trims the longer side from the front or back at
//! random; masking follows (see masking.rs); all instances are shuffled at the end.
use super::documents::Document;
use super::masking::{create_masked_lm_predictions, MaskedLm, MaskingConfig, SpecialIds};
use super::pyrandom::PyRandom;

/// One sentence pair: `[CLS] A [SEP] B [SEP]` (masked), and its predictions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub tokens: Vec<u32>,
    /// Tokens with segment id 0: `[CLS]`, A and the first `[SEP]`; the rest have segment id 1.
    pub segment_a_len: usize,
    pub masked: MaskedLm,
    pub is_random_next: bool,
}

impl Instance {
    pub fn segment_ids(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.tokens.len()).map(|i| u32::from(i >= self.segment_a_len))
    }
}

#[derive(Clone, Copy, Debug)]
pub struct InstanceConfig {
    pub max_seq_length: usize,
    pub short_seq_prob: f64,
    pub dupe_factor: usize,
    pub masking: MaskingConfig,
}

/// What masking needs to know about the vocabulary.
pub struct VocabInfo<'a> {
    pub special: SpecialIds,
    pub is_continuation: &'a dyn Fn(u32) -> bool,
    pub words: &'a [u32],
}

/// `create_training_instances` after reading: shuffles `documents` in place (as the reference
/// does), creates the instances of every pass, shuffles them. `on_document` is called after each
/// document of each pass (progress).
pub fn create_training_instances(
    documents: &mut [Document],
    cfg: &InstanceConfig,
    vocab: &VocabInfo,
    rng: &mut PyRandom,
    on_document: &mut dyn FnMut(),
) -> Vec<Instance> {
    rng.shuffle(documents);
    let mut instances = Vec::new();
    for _ in 0..cfg.dupe_factor {
        for index in 0..documents.len() {
            instances.extend(create_instances_from_document(
                documents, index, cfg, vocab, rng,
            ));
            on_document();
        }
    }
    rng.shuffle(&mut instances);
    instances
}

/// `create_instances_from_document`.
pub fn create_instances_from_document(
    documents: &[Document],
    document_index: usize,
    cfg: &InstanceConfig,
    vocab: &VocabInfo,
    rng: &mut PyRandom,
) -> Vec<Instance> {
    let document = &documents[document_index];
    let max_num_tokens = cfg.max_seq_length.saturating_sub(3);
    let mut target_seq_length = max_num_tokens;
    if rng.random() < cfg.short_seq_prob {
        target_seq_length = rng.randint(2, max_num_tokens);
    }

    let mut instances = Vec::new();
    let mut chunk: Vec<&Vec<u32>> = Vec::new();
    let mut current_length = 0usize;
    let mut i = 0usize;
    while i < document.len() {
        let segment = &document[i];
        chunk.push(segment);
        current_length += segment.len();
        if i == document.len() - 1 || current_length >= target_seq_length {
            if !chunk.is_empty() {
                let a_end = if chunk.len() >= 2 {
                    rng.randint(1, chunk.len() - 1)
                } else {
                    1
                };
                let tokens_a: Vec<u32> = chunk[..a_end]
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                let mut tokens_b: Vec<u32> = Vec::new();
                let is_random_next;
                if chunk.len() == 1 || rng.random() < 0.5 {
                    is_random_next = true;
                    let target_b_length = target_seq_length.saturating_sub(tokens_a.len());
                    let mut random_index = 0;
                    for _ in 0..10 {
                        random_index = rng.randint(0, documents.len().saturating_sub(1));
                        if random_index != document_index {
                            break;
                        }
                    }
                    let random_document = &documents[random_index];
                    let random_start = rng.randint(0, random_document.len().saturating_sub(1));
                    for sentence in random_document.get(random_start..).unwrap_or_default() {
                        tokens_b.extend_from_slice(sentence);
                        if tokens_b.len() >= target_b_length {
                            break;
                        }
                    }
                    // The sentences of this chunk that B did not use are read again.
                    let unused = chunk.len() - a_end;
                    i -= unused;
                } else {
                    is_random_next = false;
                    tokens_b = chunk[a_end..]
                        .iter()
                        .flat_map(|s| s.iter().copied())
                        .collect();
                }
                let mut keep_a = 0..tokens_a.len();
                let mut keep_b = 0..tokens_b.len();
                truncate_seq_pair(&mut keep_a, &mut keep_b, max_num_tokens, rng);

                let mut tokens = Vec::with_capacity(keep_a.len() + keep_b.len() + 3);
                tokens.push(vocab.special.cls);
                tokens.extend_from_slice(&tokens_a[keep_a]);
                tokens.push(vocab.special.sep);
                let segment_a_len = tokens.len();
                tokens.extend_from_slice(&tokens_b[keep_b]);
                tokens.push(vocab.special.sep);
                let masked = create_masked_lm_predictions(
                    &mut tokens,
                    &cfg.masking,
                    &vocab.special,
                    vocab.is_continuation,
                    vocab.words,
                    rng,
                );
                instances.push(Instance {
                    tokens,
                    segment_a_len,
                    masked,
                    is_random_next,
                });
            }
            chunk.clear();
            current_length = 0;
        }
        i += 1;
    }
    instances
}

/// `truncate_seq_pair` on index ranges: while too long, drop one token of the longer side
/// (B on a tie), from the front with p 0.5 else from the back.
pub fn truncate_seq_pair(
    a: &mut std::ops::Range<usize>,
    b: &mut std::ops::Range<usize>,
    max_num_tokens: usize,
    rng: &mut PyRandom,
) {
    while a.len() + b.len() > max_num_tokens {
        let longer = if a.len() > b.len() { &mut *a } else { &mut *b };
        if longer.start >= longer.end {
            return;
        }
        if rng.random() < 0.5 {
            longer.start += 1;
        } else {
            longer.end -= 1;
        }
    }
}

//! Masked-LM predictions with create_pretraining_data.py's `create_masked_lm_predictions`
//! semantics and random stream: candidates are every token but [CLS]/[SEP] (with whole-word
//! masking, a word's `##` pieces join the candidate of the piece before), shuffled;
//! `num_to_predict = min(max_predictions, max(1, round_half_even(len * masked_lm_prob)))`;
//! a candidate that would overshoot it or overlaps a covered index is skipped; each chosen
//! position becomes [MASK] with p 0.8, else stays with p 0.5, else a random vocab word.
use super::pyrandom::PyRandom;

#[derive(Clone, Copy, Debug)]
pub struct MaskingConfig {
    pub masked_lm_prob: f64,
    pub max_predictions: usize,
    pub whole_word: bool,
}

/// Ids of the special tokens create-data uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialIds {
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
}

/// Masked positions (ascending) and their original ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaskedLm {
    pub positions: Vec<u32>,
    pub labels: Vec<u32>,
}

/// Masks `tokens` in place and returns the predictions. `is_continuation(id)` tells `##` pieces;
/// `vocab_words` is the list random replacements are drawn from.
pub fn create_masked_lm_predictions(
    tokens: &mut [u32],
    cfg: &MaskingConfig,
    special: &SpecialIds,
    is_continuation: &dyn Fn(u32) -> bool,
    vocab_words: &[u32],
    rng: &mut PyRandom,
) -> MaskedLm {
    let mut cand: Vec<Vec<usize>> = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        if t == special.cls || t == special.sep {
            continue;
        }
        match cand.last_mut() {
            Some(last) if cfg.whole_word && is_continuation(t) => last.push(i),
            _ => cand.push(vec![i]),
        }
    }
    rng.shuffle(&mut cand);

    let original: Vec<u32> = tokens.to_vec();
    let wanted = (tokens.len() as f64 * cfg.masked_lm_prob).round_ties_even();
    let num_to_predict = cfg.max_predictions.min((wanted as usize).max(1));

    let mut covered = vec![false; tokens.len()];
    let mut masked: Vec<(usize, u32)> = Vec::with_capacity(num_to_predict);
    for set in &cand {
        if masked.len() >= num_to_predict {
            break;
        }
        if masked.len() + set.len() > num_to_predict {
            continue;
        }
        if set.iter().any(|&i| covered[i]) {
            continue;
        }
        for &i in set {
            covered[i] = true;
            let replacement = if rng.random() < 0.8 {
                special.mask
            } else if rng.random() < 0.5 {
                original[i]
            } else {
                vocab_words[rng.randint(0, vocab_words.len().saturating_sub(1))]
            };
            tokens[i] = replacement;
            masked.push((i, original[i]));
        }
    }
    masked.sort_by_key(|&(i, _)| i);
    MaskedLm {
        positions: masked.iter().map(|&(i, _)| i as u32).collect(),
        labels: masked.iter().map(|&(_, l)| l).collect(),
    }
}

//! extract_features.py's `convert_examples_to_features`: FullTokenizer tokens of each text, a
//! pair truncated longest-first to `max_seq_length - 3`, a single text cut to
//! `max_seq_length - 2`, then `[CLS] a [SEP] (b [SEP])` with segment ids 0 (1 on `b [SEP]`), the
//! mask 1 on those tokens and zero padding up to `max_seq_length`.
use super::input::InputExample;
use crate::data::BertTokenizer;
use anyhow::{bail, Result};

/// One example laid out for the model; `tokens.len()` positions are real, the rest padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feature {
    /// `[CLS] ... [SEP]`: the vocabulary strings of the real positions.
    pub tokens: Vec<String>,
    /// `max_seq_length` entries each.
    pub input_ids: Vec<i32>,
    pub segment_ids: Vec<i32>,
    /// Whether tokens were cut to fit.
    pub truncated: bool,
}

impl Feature {
    /// 1 on the real tokens, 0 on padding.
    pub fn input_mask(&self) -> Vec<i32> {
        let n = self.tokens.len();
        (0..self.input_ids.len())
            .map(|i| i32::from(i < n))
            .collect()
    }
}

/// `_truncate_seq_pair`: drops the last token of the longer side (of `b` on a tie) until the
/// pair fits `max_len`. Returns whether anything was dropped.
pub fn truncate_pair<T>(a: &mut Vec<T>, b: &mut Vec<T>, max_len: usize) -> bool {
    let before = a.len() + b.len();
    while a.len() + b.len() > max_len {
        if a.len() > b.len() {
            a.pop();
        } else {
            b.pop();
        }
    }
    a.len() + b.len() != before
}

/// The tokenizer and the special ids the layout needs.
pub struct Layout<'t> {
    tokenizer: &'t BertTokenizer,
    cls: u32,
    sep: u32,
    max_seq_length: usize,
}

impl<'t> Layout<'t> {
    pub fn new(tokenizer: &'t BertTokenizer, max_seq_length: usize) -> Result<Self> {
        if max_seq_length < 3 {
            bail!("--max-seq-length {max_seq_length}: must be at least 3 ([CLS], [SEP], [SEP])");
        }
        let id = |t: &str| {
            tokenizer.vocab().id(t).ok_or_else(|| {
                anyhow::anyhow!("the vocabulary has no {t} token; use a BERT vocab.txt")
            })
        };
        Ok(Layout {
            tokenizer,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            max_seq_length,
        })
    }

    /// Every example's feature, in order (tokenized in parallel).
    pub fn features(&self, examples: &[InputExample]) -> Result<Vec<Feature>> {
        let a: Vec<&str> = examples.iter().map(|e| e.text_a.as_str()).collect();
        let b: Vec<&str> = examples
            .iter()
            .filter_map(|e| e.text_b.as_deref())
            .collect();
        let mut ids_a = self.tokenizer.encode_batch(&a)?.into_iter();
        let mut ids_b = self.tokenizer.encode_batch(&b)?.into_iter();
        let mut out = Vec::with_capacity(examples.len());
        for e in examples {
            let a = ids_a.next().unwrap_or_default();
            let b = match e.text_b {
                Some(_) => ids_b.next().unwrap_or_default(),
                None => vec![],
            };
            out.push(self.layout(a, b));
        }
        Ok(out)
    }

    /// The layout of one example's token ids (`b` empty: a single text, as `if tokens_b:`).
    pub fn layout(&self, mut a: Vec<u32>, mut b: Vec<u32>) -> Feature {
        let seq = self.max_seq_length;
        let truncated = if b.is_empty() {
            let cut = a.len() > seq - 2;
            a.truncate(seq - 2);
            cut
        } else {
            truncate_pair(&mut a, &mut b, seq - 3)
        };
        let mut ids = Vec::with_capacity(seq);
        let mut segments = Vec::with_capacity(seq);
        ids.push(self.cls);
        ids.extend(&a);
        ids.push(self.sep);
        segments.resize(ids.len(), 0);
        if !b.is_empty() {
            ids.extend(&b);
            ids.push(self.sep);
            segments.resize(ids.len(), 1);
        }
        let tokens = ids
            .iter()
            .map(|&id| self.tokenizer.token(id).to_string())
            .collect();
        // Vocabulary ids fit i32: a vocab.txt of 2^31 lines could not be loaded.
        let mut input_ids: Vec<i32> = ids.iter().map(|&id| id as i32).collect();
        input_ids.resize(seq, 0);
        segments.resize(seq, 0);
        Feature {
            tokens,
            input_ids,
            segment_ids: segments,
            truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_truncation_drops_from_the_longer_side_b_on_ties() {
        let (mut a, mut b) = (vec![1, 2, 3, 4, 5], vec![6, 7]);
        assert!(truncate_pair(&mut a, &mut b, 5));
        assert_eq!((a, b), (vec![1, 2, 3], vec![6, 7]));
        let (mut a, mut b) = (vec![1, 2, 3], vec![4, 5, 6]);
        assert!(truncate_pair(&mut a, &mut b, 4));
        assert_eq!((a, b), (vec![1, 2], vec![4, 5]));
        let (mut a, mut b) = (vec![1], vec![2, 3]);
        assert!(!truncate_pair(&mut a, &mut b, 3));
        assert_eq!((a, b), (vec![1], vec![2, 3]));
    }

    fn vocab_file() -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let words = "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\nb\nc\nd\ne\n";
        std::io::Write::write_all(&mut f, words.as_bytes()).unwrap();
        f
    }

    #[test]
    fn single_and_pair_layouts_follow_the_original() {
        let f = vocab_file();
        let tok = BertTokenizer::from_vocab_file(f.path(), true).unwrap();
        let layout = Layout::new(&tok, 6).unwrap();
        let single = layout.layout(vec![4, 5], vec![]);
        assert_eq!(single.tokens, ["[CLS]", "a", "b", "[SEP]"]);
        assert_eq!(single.input_ids, [2, 4, 5, 3, 0, 0]);
        assert_eq!(single.segment_ids, [0; 6]);
        assert_eq!(single.input_mask(), [1, 1, 1, 1, 0, 0]);
        assert!(!single.truncated);
        // A single text keeps max_seq_length - 2 tokens.
        let cut = layout.layout(vec![4, 5, 6, 7, 8], vec![]);
        assert_eq!(cut.input_ids, [2, 4, 5, 6, 7, 3]);
        assert!(cut.truncated);
        // A pair keeps max_seq_length - 3, longest first.
        let pair = layout.layout(vec![4, 5, 6], vec![7]);
        assert_eq!(pair.tokens, ["[CLS]", "a", "b", "[SEP]", "d", "[SEP]"]);
        assert_eq!(pair.segment_ids, [0, 0, 0, 0, 1, 1]);
        assert!(pair.truncated);
        let examples = [
            InputExample {
                text_a: "A b".into(),
                text_b: Some("c".into()),
            },
            InputExample {
                text_a: "".into(),
                text_b: None,
            },
        ];
        let got = layout.features(&examples).unwrap();
        assert_eq!(got[0].tokens, ["[CLS]", "a", "b", "[SEP]", "c", "[SEP]"]);
        assert_eq!(got[1].tokens, ["[CLS]", "[SEP]"]);
        assert!(Layout::new(&tok, 2).is_err());
    }
}

//! The tokenizer the SQuAD pipeline needs, as a small trait: run_squad uses tokenization.py's
//! FullTokenizer (basic tokenization then WordPiece) for questions and context words, and its
//! BasicTokenizer alone to map a predicted span back to the original text (get_final_text).
//! [`BertSquadTokenizer`] implements it over the data pipeline's WordPiece tokenizer.
use super::error::{Result, SquadError};
use crate::data::normalizer::{BertBasicNormalizer, BertBasicPreTokenizer};
use crate::data::BertTokenizer;
use std::path::Path;
use tokenizers::{
    NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
};

pub trait SquadTokenizer: Sync {
    /// FullTokenizer.tokenize as vocabulary ids (no [CLS]/[SEP]).
    fn wordpiece_ids(&self, text: &str) -> Result<Vec<u32>>;

    /// [`Self::wordpiece_ids`] of many texts, in order (implementations may run in parallel).
    fn wordpiece_ids_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.wordpiece_ids(t)).collect()
    }

    /// The vocabulary entry of an id (the WordPiece token string, `##` prefix included).
    fn id_to_token(&self, id: u32) -> Option<&str>;

    /// The id of a token the input layout needs ([CLS], [SEP]).
    fn token_to_id(&self, token: &str) -> Option<u32>;

    /// BasicTokenizer.tokenize with the same casing setting: cleaned, (lowercased and
    /// accent-stripped when uncased), split on whitespace and around punctuation.
    fn basic_tokenize(&self, text: &str) -> Result<Vec<String>>;
}

/// The BERT WordPiece tokenizer of a `vocab.txt` (src/data/tokenize.rs) with its casing.
pub struct BertSquadTokenizer {
    wordpiece: BertTokenizer,
    do_lower_case: bool,
}

impl BertSquadTokenizer {
    /// `do_lower_case` must match the vocabulary: true for uncased ones.
    pub fn from_vocab_file(path: &Path, do_lower_case: bool) -> Result<BertSquadTokenizer> {
        let wordpiece = BertTokenizer::from_vocab_file(path, do_lower_case)
            .map_err(|e| SquadError::Tokenizer(format!("{e:#}")))?;
        for special in ["[CLS]", "[SEP]"] {
            if wordpiece.vocab().id(special).is_none() {
                return Err(SquadError::Tokenizer(format!(
                    "vocab {} has no {special} token; SQuAD inputs need [CLS] and [SEP] (use a \
                     BERT vocab.txt)",
                    path.display()
                )));
            }
        }
        Ok(BertSquadTokenizer {
            wordpiece,
            do_lower_case,
        })
    }

    pub fn do_lower_case(&self) -> bool {
        self.do_lower_case
    }

    /// Entries of the vocabulary (ids 0..len).
    pub fn vocab_len(&self) -> usize {
        self.wordpiece.vocab().len()
    }
}

impl SquadTokenizer for BertSquadTokenizer {
    fn wordpiece_ids(&self, text: &str) -> Result<Vec<u32>> {
        self.wordpiece
            .encode(text)
            .map_err(|e| SquadError::Tokenizer(format!("{e:#}")))
    }

    fn wordpiece_ids_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        self.wordpiece
            .encode_batch(texts)
            .map_err(|e| SquadError::Tokenizer(format!("{e:#}")))
    }

    fn id_to_token(&self, id: u32) -> Option<&str> {
        self.wordpiece
            .vocab()
            .tokens
            .get(id as usize)
            .map(String::as_str)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.wordpiece.vocab().id(token)
    }

    fn basic_tokenize(&self, text: &str) -> Result<Vec<String>> {
        let fail = |e: tokenizers::Error| {
            SquadError::Tokenizer(format!("basic tokenization of {text:?}: {e}"))
        };
        let mut normalized = NormalizedString::from(text);
        BertBasicNormalizer {
            lowercase: self.do_lower_case,
        }
        .normalize(&mut normalized)
        .map_err(fail)?;
        let mut split = PreTokenizedString::from(normalized);
        BertBasicPreTokenizer
            .pre_tokenize(&mut split)
            .map_err(fail)?;
        Ok(split
            .get_splits(OffsetReferential::Normalized, OffsetType::None)
            .into_iter()
            .map(|(s, _, _)| s.to_string())
            .filter(|s| !s.is_empty())
            .collect())
    }
}

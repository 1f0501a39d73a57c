//! WordPiece tokenization from a BERT `vocab.txt`: [`BertBasicNormalizer`] and
//! [`BertBasicPreTokenizer`] (tokenization.py's BasicTokenizer) in front of the `tokenizers`
//! crate's WordPiece model (greedy longest match, `##` continuations, `[UNK]` for a word it
//! cannot cover or one longer than 200 characters, as tokenization.py's WordpieceTokenizer).
use super::normalizer::{is_python_space, BertBasicNormalizer, BertBasicPreTokenizer};
use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::TokenizerImpl;

/// tokenization.py's WordpieceTokenizer `max_input_chars_per_word` (the crate defaults to 100).
pub const MAX_INPUT_CHARS_PER_WORD: usize = 200;

type Inner = TokenizerImpl<
    WordPiece,
    BertBasicNormalizer,
    BertBasicPreTokenizer,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// The vocabulary as tokenization.py's `load_vocab` builds it: one token per line, stripped;
/// a token seen twice keeps its last line number.
#[derive(Clone, Debug)]
pub struct Vocab {
    /// Token of each id (line number).
    pub tokens: Vec<String>,
    pub ids: HashMap<String, u32>,
    /// `list(vocab.keys())`: each distinct token once, in first-seen order, as its id. The
    /// random replacement word of masking is drawn from this list.
    pub words: Vec<u32>,
}

impl Vocab {
    pub fn from_file(path: &Path) -> Result<Vocab> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading vocab {}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            anyhow!(
                "vocab {} is not UTF-8 (byte {}); a BERT vocab.txt is UTF-8 text, one token a line",
                path.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        let mut v = Vocab {
            tokens: Vec::new(),
            ids: HashMap::new(),
            words: Vec::new(),
        };
        let mut first_seen: Vec<String> = Vec::new();
        for line in text.split_inclusive('\n') {
            let token = line.trim_matches(is_python_space).to_string();
            let id = v.tokens.len() as u32;
            if v.ids.insert(token.clone(), id).is_none() {
                first_seen.push(token.clone());
            }
            v.tokens.push(token);
        }
        if v.tokens.is_empty() {
            return Err(anyhow!("vocab {} is empty", path.display()));
        }
        v.words = first_seen.iter().map(|t| v.ids[t]).collect();
        Ok(v)
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The id of a token the pipeline cannot work without, or an error naming it.
    pub fn required(&self, token: &str, path_hint: &str) -> Result<u32> {
        self.id(token).ok_or_else(|| {
            anyhow!("vocab {path_hint} has no {token} token; use a BERT WordPiece vocab.txt")
        })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// BERT WordPiece tokenizer (tokenization.py's FullTokenizer) over the `tokenizers` crate.
pub struct BertTokenizer {
    inner: Inner,
    vocab: Vocab,
    /// Per id: the token starts with `##` (a word continuation; whole-word masking groups these).
    continuation: Vec<bool>,
}

impl BertTokenizer {
    /// Loads `vocab.txt`; `do_lower_case` is true for uncased vocabularies (lowercase and strip
    /// accents), false for cased ones.
    pub fn from_vocab_file(path: &Path, do_lower_case: bool) -> Result<BertTokenizer> {
        let vocab = Vocab::from_file(path)?;
        vocab.required("[UNK]", &path.display().to_string())?;
        let model = WordPiece::builder()
            .vocab(
                vocab
                    .ids
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<ahash::AHashMap<String, u32>>(),
            )
            .unk_token("[UNK]".into())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(MAX_INPUT_CHARS_PER_WORD)
            .build()
            .map_err(|e| anyhow!("building WordPiece from {}: {e}", path.display()))?;
        let mut inner = Inner::new(model);
        inner
            .with_normalizer(Some(BertBasicNormalizer {
                lowercase: do_lower_case,
            }))
            .with_pre_tokenizer(Some(BertBasicPreTokenizer));
        let continuation = vocab.tokens.iter().map(|t| t.starts_with("##")).collect();
        Ok(BertTokenizer {
            inner,
            vocab,
            continuation,
        })
    }

    /// Token ids of `text` (no [CLS]/[SEP] added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing {:?}: {e}", truncate_for_error(text)))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of many texts, in parallel (the crate's rayon pool), in input order.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encs = self
            .inner
            .encode_batch(texts.to_vec(), false)
            .map_err(|e| anyhow!("tokenizing a batch of {} lines: {e}", texts.len()))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// WordPiece tokens of `text`, as strings.
    pub fn tokenize(&self, text: &str) -> Result<Vec<String>> {
        Ok(self
            .encode(text)?
            .into_iter()
            .map(|id| self.token(id).to_string())
            .collect())
    }

    pub fn token(&self, id: u32) -> &str {
        self.vocab
            .tokens
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("[UNK]")
    }

    pub fn is_continuation(&self, id: u32) -> bool {
        self.continuation.get(id as usize).copied().unwrap_or(false)
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }
}

fn truncate_for_error(text: &str) -> String {
    text.chars().take(80).collect()
}

//! BERT hyperparameters: presets, JSON from google-research/bert (`bert_config.json`) and Hugging
//! Face (`config.json`), validation.
//!
//! Both files use the same key names; they differ in what `"hidden_act": "gelu"` means:
//! - Hugging Face: `gelu` is the exact erf form; `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast` are
//!   the tanh approximation.
//! - google-research/bert: `modeling.py`'s `gelu` *is* the tanh approximation, so a
//!   `bert_config.json` read as [`ConfigFlavor::GoogleResearch`] maps `gelu` to
//!   [`HiddenAct::GeluTanh`].
//!
//! [`BertConfig::hidden_act`] records the resolved form, so nothing downstream guesses. Our own
//! JSON (serde, as written into checkpoints) uses the Hugging Face spellings, plus one key of
//! ours: `pad_vocab_to`. A `BertConfig` is the architecture only; how a run computes it
//! (precision, attention kernel) is an [`super::Execution`]. JSON written before that split
//! carries a `compute_dtype` key, which is read as any unknown key is: ignored here (pretraining
//! resume reads it as the checkpoint's precision, `crate::pretrain::checkpoint`).
use super::ModelError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The activation of the FFN and the MLM transform. Its serde names are the Hugging Face
/// spellings (the run config's `model.hidden_act`); [`HiddenAct::parse`] reads either flavor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HiddenAct {
    /// 0.5 x (1 + erf(x / sqrt 2)): Hugging Face `gelu`.
    #[serde(rename = "gelu", alias = "gelu_erf", alias = "gelu_exact")]
    GeluErf,
    /// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): google-research `gelu`, HF `gelu_new`.
    #[serde(
        rename = "gelu_new",
        alias = "gelu_tanh",
        alias = "gelu_pytorch_tanh",
        alias = "gelu_fast"
    )]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
}

impl HiddenAct {
    /// Resolves a `hidden_act` string as `flavor` spells it.
    pub fn parse(s: &str, flavor: ConfigFlavor) -> Option<Self> {
        Some(match (s, flavor) {
            ("gelu", ConfigFlavor::HuggingFace) => Self::GeluErf,
            ("gelu", ConfigFlavor::GoogleResearch) => Self::GeluTanh,
            ("gelu_new" | "gelu_tanh" | "gelu_pytorch_tanh" | "gelu_fast", _) => Self::GeluTanh,
            ("gelu_erf" | "gelu_exact", _) => Self::GeluErf,
            ("relu", _) => Self::Relu,
            _ => return None,
        })
    }

    /// The Hugging Face spelling (what our own JSON writes).
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::GeluErf => "gelu",
            Self::GeluTanh => "gelu_new",
            Self::Relu => "relu",
        }
    }
}

/// Which program wrote a config file (decides what `"gelu"` means, see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFlavor {
    HuggingFace,
    GoogleResearch,
}

/// The names [`BertConfig::preset`] accepts.
pub const PRESETS: [&str; 6] = ["tiny", "mini", "small", "medium", "base", "large"];

/// BERT hyperparameters (validated: every constructor runs [`BertConfig::validate`]): the
/// architecture, all of it and nothing else, so two configs are the same model exactly when
/// they are equal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "RawConfig", try_from = "RawConfig")]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: HiddenAct,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    /// Stddev of the truncated normal initializer (before truncation at 2 sigma).
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    /// Pads the vocabulary (word embeddings, MLM bias and logits) up to a multiple of this (128
    /// for TPU matrix units); the padded logits are masked out of the loss and the accuracy.
    pub pad_vocab_to: Option<usize>,
}

impl BertConfig {
    /// A preset: tiny (L2/H128/A2), mini (L4/H256/A4), small (L4/H512/A8), medium (L8/H512/A8),
    /// base (L12/H768/A12), large (L24/H1024/A16); intermediate 4H, vocab 30522, 512 positions,
    /// 2 token types, dropout 0.1, exact-erf GELU.
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let (layers, hidden, heads) = match name {
            "tiny" => (2, 128, 2),
            "mini" => (4, 256, 4),
            "small" => (4, 512, 8),
            "medium" => (8, 512, 8),
            "base" => (12, 768, 12),
            "large" => (24, 1024, 16),
            other => {
                return Err(ModelError::Config {
                    field: "preset",
                    msg: format!("unknown preset '{other}'; choose one of {PRESETS:?}"),
                })
            }
        };
        Ok(Self::with_sizes(layers, hidden, heads))
    }

    fn with_sizes(layers: usize, hidden: usize, heads: usize) -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: 4 * hidden,
            hidden_act: HiddenAct::GeluErf,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_vocab_to: None,
        }
    }

    /// Parses config JSON written by `flavor`.
    pub fn from_json_str(json: &str, flavor: ConfigFlavor) -> Result<Self, ModelError> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| ModelError::Config {
            field: "json",
            msg: e.to_string(),
        })?;
        raw.resolve(flavor)
    }

    /// Reads a config file. The flavor is google-research when the file is named
    /// `bert_config.json` (the name of every config Google released), Hugging Face otherwise;
    /// use [`BertConfig::from_file_with`] to say it explicitly.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let flavor = if path.file_name().is_some_and(|n| n == "bert_config.json") {
            ConfigFlavor::GoogleResearch
        } else {
            ConfigFlavor::HuggingFace
        };
        Self::from_file_with(path, flavor)
    }

    pub fn from_file_with(path: &Path, flavor: ConfigFlavor) -> Result<Self, ModelError> {
        let file_err = |msg: String| ModelError::ConfigFile {
            path: path.display().to_string(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        Self::from_json_str(&text, flavor).map_err(|e| file_err(e.to_string()))
    }

    /// Our JSON (Hugging Face spellings plus `pad_vocab_to`).
    pub fn to_json(&self) -> String {
        // Serializing plain numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the sizes and probabilities; errors name the field and what is wrong.
    pub fn validate(&self) -> Result<(), ModelError> {
        let err = |field: &'static str, msg: String| Err(ModelError::Config { field, msg });
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return err(field, "must be at least 1".into());
            }
            if v > i32::MAX as usize {
                return err(field, format!("{v} does not fit an s32 index"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return err(
                "num_attention_heads",
                format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            );
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return err(field, format!("{p} is not a probability in [0, 1)"));
            }
        }
        if !(self.initializer_range.is_finite() && self.initializer_range > 0.0) {
            return err(
                "initializer_range",
                format!("{} must be finite and > 0", self.initializer_range),
            );
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps >= 0.0) {
            return err(
                "layer_norm_eps",
                format!("{} must be finite and >= 0", self.layer_norm_eps),
            );
        }
        if self.pad_vocab_to == Some(0) {
            return err("pad_vocab_to", "must be at least 1 (or absent)".into());
        }
        if self.padded_vocab_size() > i32::MAX as usize {
            return err("pad_vocab_to", "the padded vocabulary overflows s32".into());
        }
        Ok(())
    }

    /// Rows of the word-embedding table and width of the MLM logits: `vocab_size` rounded up to
    /// a multiple of `pad_vocab_to` (30,522 -> 30,592 for 128).
    pub fn padded_vocab_size(&self) -> usize {
        match self.pad_vocab_to {
            Some(m) if m > 0 => self.vocab_size.div_ceil(m) * m,
            _ => self.vocab_size,
        }
    }

    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }
}

/// The JSON form: required sizes, BERT's defaults for the rest, unknown keys ignored (among
/// them the `compute_dtype` our JSON carried before [`super::Execution`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    attention_probs_dropout_prob: f64,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_init_range")]
    initializer_range: f64,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pad_vocab_to: Option<usize>,
    /// HF only; anything but absolute position embeddings is a different model.
    #[serde(default, skip_serializing)]
    position_embedding_type: Option<String>,
    /// HF only; BERT checkpoints say "bert" (RoBERTa etc. differ in ways we do not model).
    #[serde(default, skip_serializing)]
    model_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_init_range() -> f64 {
    0.02
}
fn default_eps() -> f64 {
    1e-12
}

impl RawConfig {
    fn resolve(self, flavor: ConfigFlavor) -> Result<BertConfig, ModelError> {
        if let Some(t) = self.model_type.as_deref().filter(|t| *t != "bert") {
            return Err(ModelError::Config {
                field: "model_type",
                msg: format!("'{t}' is not a BERT model (expected \"bert\")"),
            });
        }
        if let Some(p) = self
            .position_embedding_type
            .as_deref()
            .filter(|p| *p != "absolute")
        {
            return Err(ModelError::Config {
                field: "position_embedding_type",
                msg: format!("'{p}' is not supported; only \"absolute\" position embeddings"),
            });
        }
        let hidden_act =
            HiddenAct::parse(&self.hidden_act, flavor).ok_or_else(|| ModelError::Config {
                field: "hidden_act",
                msg: format!(
                    "unknown activation '{}'; use gelu, gelu_new (tanh form) or relu",
                    self.hidden_act
                ),
            })?;
        let cfg = BertConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            hidden_act,
            hidden_dropout_prob: self.hidden_dropout_prob,
            attention_probs_dropout_prob: self.attention_probs_dropout_prob,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            initializer_range: self.initializer_range,
            layer_norm_eps: self.layer_norm_eps,
            pad_vocab_to: self.pad_vocab_to,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl TryFrom<RawConfig> for BertConfig {
    type Error = ModelError;
    /// serde's path (our own JSON): Hugging Face spellings.
    fn try_from(raw: RawConfig) -> Result<Self, ModelError> {
        raw.resolve(ConfigFlavor::HuggingFace)
    }
}

impl From<BertConfig> for RawConfig {
    fn from(c: BertConfig) -> Self {
        Self {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            intermediate_size: c.intermediate_size,
            hidden_act: c.hidden_act.hf_name().into(),
            hidden_dropout_prob: c.hidden_dropout_prob,
            attention_probs_dropout_prob: c.attention_probs_dropout_prob,
            max_position_embeddings: c.max_position_embeddings,
            type_vocab_size: c.type_vocab_size,
            initializer_range: c.initializer_range,
            layer_norm_eps: c.layer_norm_eps,
            pad_vocab_to: c.pad_vocab_to,
            position_embedding_type: None,
            model_type: None,
        }
    }
}

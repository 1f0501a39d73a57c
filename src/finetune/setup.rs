//! What every command that starts from pre-trained weights does first: load them for the task's
//! parameter list, resolve the run's execution (compute dtype and attention kernel for the
//! backend), check the sequence length against the model, and find the vocabulary (the init's
//! own unless given). A checkpoint's recorded precision plays no part: the run decides.
use super::init::{load_init_for, InitWeights};
use super::run::default_precision;
use crate::backend::{resolve_execution, AttentionChoice, Backend};
use crate::model::{BertConfig, ComputeDtype, Execution, ParamSpec};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// How to start.
pub struct ModelRequest<'a> {
    pub init: &'a Path,
    /// Seeds absent heads' initialization and the attention choice.
    pub seed: u64,
    /// The model's parameters for a config (the encoder with the task's head).
    pub specs_of: &'a dyn Fn(&BertConfig) -> Vec<ParamSpec>,
    /// `None`: [`default_precision`] of the backend.
    pub precision: Option<ComputeDtype>,
    pub attention: AttentionChoice,
    pub backend: Backend,
    pub max_seq_length: usize,
    /// `--vocab`, overriding the init's `vocab.txt`.
    pub vocab: Option<&'a Path>,
}

/// The loaded weights, the model and how to run it, and the vocabulary file.
pub struct ModelSetup {
    pub init: InitWeights,
    pub cfg: BertConfig,
    pub exec: Execution,
    pub vocab: PathBuf,
}

/// Loads and checks (see the module docs).
pub fn prepare_model(r: &ModelRequest) -> Result<ModelSetup> {
    let init = load_init_for(r.init, r.seed, r.specs_of)?;
    let cfg = init.config.clone();
    cfg.validate()?;
    let precision = r.precision.unwrap_or_else(|| default_precision(r.backend));
    let exec = resolve_execution(r.backend, precision, r.attention, &cfg, r.seed)?;
    if r.max_seq_length > cfg.max_position_embeddings {
        bail!(
            "--max-seq-length {} exceeds the model's max_position_embeddings {}",
            r.max_seq_length,
            cfg.max_position_embeddings
        );
    }
    let vocab = match (r.vocab, &init.vocab) {
        (Some(v), _) => v.to_path_buf(),
        (None, Some(v)) => v.clone(),
        (None, None) => bail!(
            "--init {} has no vocab.txt; pass the vocabulary the model was trained with \
             (--vocab FILE)",
            r.init.display()
        ),
    };
    Ok(ModelSetup {
        init,
        cfg,
        exec,
        vocab,
    })
}

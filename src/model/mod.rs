//! BERT (google-research/bert's model, Hugging Face names) as an HLO graph.
//!
//! - [`config`]: hyperparameters, presets, JSON from google-research and Hugging Face: the
//!   architecture only.
//! - [`execution`]: how a run computes it ([`Execution`]: compute dtype, attention kernel).
//!   Every builder takes `cfg: &BertConfig` and `exec: Execution` side by side.
//! - [`params`]: the named parameter list, host storage, graph values by name, HF/TF mapping.
//! - [`init`]: deterministic truncated-normal initialization.
//! - [`batch`]: the pretraining batch (google-research/bert's feature names) as graph values.
//! - [`packed`]: the packed layout (several instances per row, block-diagonal attention).
//! - `embeddings`, `encoder`, [`heads`], [`loss`]: the pieces; [`forward`] puts them together:
//!   [`encoder_forward`] (sequence and pooled output, reused by SQuAD) and
//!   [`pretraining_loss`] (MLM + NSP loss and metrics, what the train step differentiates).
//!
//! Parameters enter the graph as f32 (master weights); [`ComputeDtype::Bf16`] casts them to bf16
//! at each use; [`ComputeDtype::Fp8`] also quantizes the encoder's dense layers to FP8 in
//! training graphs ([`fp8`]). Dropout draws from an explicit `u64[2]` key (a fused counter-based hash, see
//! hlo/src/ops/dropout.rs).
pub mod batch;
pub mod config;
mod embeddings;
mod encoder;
pub mod execution;
pub mod forward;
pub mod fp8;
pub mod heads;
pub mod init;
mod layers;
pub mod loss;
pub mod packed;
pub mod params;

pub use batch::{BatchShapes, BatchValues};
pub use config::{BertConfig, ConfigFlavor, HiddenAct, PRESETS};
pub use execution::{AttentionKernel, ComputeDtype, Execution};
pub use forward::{
    encoder_forward, encoder_layer_outputs, pretraining_forward, pretraining_loss, EncoderInputs,
    EncoderOutput, PretrainingOutput,
};
pub use init::init_params;
pub use loss::Metrics;
pub use packed::PackedValues;
pub use params::{param_specs, HostTensor, ParamSet, ParamSpec, ParamValues};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    /// A config value is missing, malformed or inconsistent.
    #[error("BERT config: {field}: {msg}")]
    Config { field: &'static str, msg: String },
    #[error("BERT config file {path}: {msg}")]
    ConfigFile { path: String, msg: String },
    /// An execution choice does not fit the model (see [`Execution::check`]).
    #[error("{field}: {msg}")]
    Execution { field: &'static str, msg: String },
    #[error("parameter '{name}' is missing (expected by the BERT config)")]
    MissingParam { name: String },
    #[error("parameter '{name}': {msg}")]
    Param { name: String, msg: String },
    #[error("tensor: {0}")]
    Tensor(String),
    /// A batch input has the wrong shape or type.
    #[error("batch input '{field}': {msg}")]
    Batch { field: &'static str, msg: String },
    #[error(transparent)]
    Hlo(#[from] hlo::HloError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

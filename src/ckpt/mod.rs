//! Checkpoints: parameters and optimizer state as safetensors files plus a JSON manifest, in a
//! directory of `step-00001234` subdirectories written atomically; export and import of
//! Hugging Face `BertForPreTraining` weights.
//!
//! ```text
//! <dir>/step-00001234/params.safetensors      parameters, in the step's order
//!                    /opt_state.safetensors   optimizer slots and loss-scale state
//!                    /manifest.json           step, model config, optimizer, RNG, data position,
//!                                             wall time, size + CRC-32C + tensor list per file
//! ```
//! - [`Checkpoint::save`] / [`Checkpoint::load_latest`]: the resume API of the training loop.
//! - [`store`]: atomic writes, keep-last-N, latest complete checkpoint, listing.
//! - [`checkpoint`]: one directory, opened and loaded with every check.
//! - [`manifest`], [`tensors`] (safetensors I/O for any element type), [`checksum`].
//! - [`hf_export`]: `model.safetensors` + `config.json` in Hugging Face's names and layouts.
//!
//! Nothing damaged is loaded silently: sizes, checksums, the safetensors structure, the tensor
//! list and (given a [`Spec`]) every dtype and dims are checked, and errors name the file and
//! tensor.
pub mod checkpoint;
pub mod checksum;
mod error;
pub mod hf_export;
pub mod manifest;
mod state;
pub mod store;
pub mod tensors;

pub use checkpoint::Checkpoint;
pub use error::{CkptError, Result};
pub use hf_export::{export_hf, import_hf, import_hf_params};
pub use manifest::{Manifest, OptimizerInfo, RngState};
pub use state::{Spec, State, TensorSpec};
pub use store::{Scan, Skipped, Store, DEFAULT_KEEP_LAST};
pub use tensors::NamedTensors;

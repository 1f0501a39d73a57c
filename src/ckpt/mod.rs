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
//! - [`store`]: atomic writes, keep-last-N, latest complete checkpoint, listing; a root that
//!   is a `gs://` / `s3://` URL keeps its checkpoints in a bucket, with the manifest written
//!   last and read first as the commit point (`remote.rs`).
//! - [`checkpoint`]: one directory, opened and loaded with every check.
//! - [`manifest`], [`tensors`] (safetensors I/O for any element type), [`checksum`].
//! - [`hf_export`]: `model.safetensors` + `config.json` in Hugging Face's names and layouts.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hlo::Literal;
//! use tpu_run::ckpt::{Checkpoint, Spec, State};
//! let dir = tempfile::tempdir()?;
//! let w = Literal::from_slice(&[0.5f32, -1.25, 3.0, 7.5], &[2, 2])?;
//! let m = Literal::from_slice(&[0.1f32, 0.2, 0.3, 0.4], &[2, 2])?;
//! let mut state = State::new(100, vec![("w".into(), w)], vec![("w/m".into(), m)]);
//! state.data_position = serde_json::json!({"shard": 3, "record": 1234});
//! Checkpoint::save(dir.path(), &state)?; // writes step-00000100/
//! let spec = Spec::of_state(&state); // a run uses Spec::from_layout(&program.layout)
//! let resumed = Checkpoint::load_latest(dir.path(), &spec)?.expect("one checkpoint");
//! assert_eq!(resumed, state);
//! # Ok(()) }
//! ```
//!
//! Nothing damaged is loaded silently: sizes, checksums, the safetensors structure, the tensor
//! list and (given a [`Spec`]) every dtype and dims are checked, and errors name the file and
//! tensor.
pub mod checkpoint;
pub mod checksum;
mod error;
pub mod hf_export;
pub mod manifest;
mod remote;
mod state;
pub mod store;
pub mod tensors;

pub use checkpoint::Checkpoint;
pub use error::{CkptError, Result};
pub use hf_export::{checkpoint_weights, export_hf, import_hf, import_hf_params};
pub use manifest::{Manifest, OptimizerInfo, RngState};
pub use state::{Spec, State, TensorSpec};
pub use store::{Scan, Skipped, Store, DEFAULT_KEEP_LAST};
pub use tensors::NamedTensors;

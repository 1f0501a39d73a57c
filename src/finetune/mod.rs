//! `tpu-run finetune squad`: SQuAD v1.1 fine-tuning from pre-trained weights, prediction and the
//! official evaluation, as google-research/bert's run_squad.py does it.
//!
//! ```text
//! --init (HF dir | TF checkpoint | tpu-run checkpoint) ─► init: encoder weights + QA head
//! --train / --predict SQuAD JSON ─► crate::squad: examples, features (384 / 128 / 64)
//!   ─► batches: feature arrays, seeded epoch order ─► squad_train: one donated train step
//!      (encoder with dropout + qa_head loss, autodiff, clip 1.0, AdamWeightDecay, warmup +
//!      linear decay), progress bar, checkpoints
//!   ─► squad_predict: eval-mode logits ─► crate::squad post-processing ─► predictions.json,
//!      nbest_predictions.json ─► official EM / F1
//! ```
//! - [`qa_head`]: the QA parameters, logits and loss.
//! - [`init`]: where the weights come from.
//! - [`batches`]: program inputs and the feature order (randomness from [`crate::rng`]).
//! - [`squad_train`], [`squad_predict`], [`run`]: the run; [`bench`]: `--synthetic-bench`.
//! - [`split`]: `tpu-run squad-split`, an article-level validation split.
pub mod batches;
pub mod bench;
pub mod classifier_head;
pub mod devices;
pub mod eval_program;
pub mod glue_program;
pub mod glue_run;
pub mod head_dense;
pub mod init;
pub mod progress;
pub mod qa_head;
pub mod run;
pub mod setup;
pub mod split;
pub mod squad_predict;
pub mod squad_train;
pub mod train_loop;

pub use run::{default_precision, run_squad, SquadSettings, SquadSummary};

//! `tpu-run extract-features`: google-research/bert's extract_features.py. Every line of a text
//! file (`text_a` or `text_a ||| text_b`) goes through the encoder in eval mode, and the hidden
//! states of the requested layers at every real token are written out, as the original's JSON
//! lines (byte for byte) or as `.npy` arrays.
//!
//! ```text
//! --input lines ─► input: examples ─► layout: FullTokenizer, truncation, [CLS] a [SEP] b [SEP]
//! --init (HF dir | TF checkpoint | tpu-run checkpoint) ─► encoder weights (no pooler)
//!   ─► program: one compiled forward program, the layers' f32 outputs, batch by batch
//!   ─► output: jsonl (pyjson: Python's rounding and float/string printing) or npy
//! ```
pub mod input;
pub mod layers;
pub mod layout;
pub mod npy;
pub mod output;
pub mod program;
pub mod pyjson;
pub mod run;

pub use output::OutputFormat;
pub use run::{extract_features, ExtractSettings, ExtractSummary};

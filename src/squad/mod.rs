//! SQuAD v1.1 as google-research/bert's run_squad.py does it, apart from the model:
//!
//! ```text
//! SQuAD JSON ─► json (checked, counted warnings) ─► examples (whitespace words, answer words)
//!   ─► features (WordPiece, [CLS] q [SEP] window [SEP], doc_stride windows, max-context flags,
//!      answer positions) ─► model logits ─► postprocess (n-best spans, get_final_text)
//!   ─► predictions.json / nbest_predictions.json ─► eval (official v1.1 EM and F1)
//! ```
//!
//! Each stage is a plain function over plain data, tested on its own. Everything the pipeline
//! cannot use as given is either an error naming the file, article and question id, or a
//! counted warning ([`Warnings`]).
pub mod error;
pub mod eval;
pub mod examples;
pub mod features;
pub mod final_text;
pub mod json;
pub mod postprocess;
pub mod pyfloat;
pub mod tokenizer;
pub mod warnings;

pub use error::{Result, SquadError};
pub use eval::{evaluate, read_predictions, EvalResult};
pub use examples::{read_examples, Document, SquadExample};
pub use features::{convert_examples_to_features, FeatureConfig, InputFeature};
pub use json::SquadDataset;
pub use postprocess::{make_predictions, PredictConfig, Predictions, RawResult};
pub use tokenizer::{BertSquadTokenizer, SquadTokenizer};
pub use warnings::{WarningKind, Warnings};

//! GLUE as google-research/bert's run_classifier.py reads and featurizes it, apart from the
//! model (see [`crate::finetune::glue_run`]):
//!
//! ```text
//! GLUE TSV ─► tsv (lines, fields) ─► examples (task layout: texts, label, index; header and
//!   labels checked) ─► features ([CLS] a [SEP] b [SEP], longest-first truncation)
//!   ─► model outputs ─► metrics (accuracy, F1, Matthews, Pearson/Spearman) / submission TSV
//! ```
pub mod examples;
pub mod features;
pub mod metrics;
pub mod submission;
pub mod tasks;
pub mod tsv;

pub use examples::{read_examples, GlueExample, GlueFile, Label};
pub use features::{convert_examples, GlueFeatures};
pub use metrics::{score, Scores};
pub use tasks::{EvalFile, Metric, Output, Split, Task};

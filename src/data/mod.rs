//! BERT pretraining data: WordPiece tokenization, `create-data` (google-research/bert's
//! create_pretraining_data.py semantics, same random stream), TFRecord shards of tf.train.Example
//! and the parallel, shuffling, resumable reader that feeds training batches.
//!
//! ```text
//! text files ─► sentences ─► tokenize (WordPiece) ─► documents ─► instances + masking ─► writer
//!                                                                              (TFRecord shards)
//! shards ─► reader (parallel shard threads, seeded shuffle, worker split) ─► Batch (host arrays)
//!                                                         └─► packing ─► PackedBatch (data.pack)
//! ```
//! Every stage is a plain function or iterator that tests drive on its own.
pub mod assets;
pub mod batch;
pub mod create;
pub mod documents;
pub mod error;
pub mod example;
pub mod instances;
pub mod masking;
pub mod normalizer;
pub mod packed_reader;
pub mod packing;
pub mod pyrandom;
pub mod reader;
pub mod sentences;
pub mod shard_stream;
pub mod tfrecord;
pub mod tokenize;
pub mod unit_reader;
pub mod units;
pub mod writer;

pub use batch::Batch;
pub use create::{create_pretraining_data, CreateDataConfig, CreateDataSummary, InputFormat};
pub use error::DataError;
pub use reader::{OnCorrupt, Reader, ReaderConfig, ReaderState, ReaderStats};
pub use tokenize::BertTokenizer;

//! `tpu-run bench`: compiler-level benchmarking of the BERT train steps: what building,
//! compiling and running each configuration of a cross product costs, what XLA made of it, its
//! MFU, side by side with the JAX and PyTorch anchors and with an earlier run.
pub mod anchors;
pub mod aot;
pub mod environment;
pub mod flops;
pub mod matrix;
pub mod measure;
pub mod optimized;
pub mod record;
pub mod run;
pub mod stats;
pub mod table;

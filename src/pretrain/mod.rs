//! `tpu-run pretrain`: BERT pretraining end to end, on one device or data-parallel over several.
//!
//! - [`config`]: the run's settings (TOML file, command-line overrides).
//! - [`program`]: the train step (one donated module) and the evaluation pass.
//! - [`run`]: a run's setup (devices, step, resume, data) and its summary.
//! - [`source`], [`feed`]: where batches come from; the input feed, a host thread preparing
//!   each step's inputs ahead of the loop.
//! - [`train_loop`]: the steps, pipelined (logging, evaluation, checkpoints, exact resume);
//!   [`clock`] its steady-state throughput and host waits.
//! - [`batches`]: host batches as program inputs, with the dropout key of each step
//!   ([`crate::rng`]).
//! - [`eval`], [`metrics`]: held-out evaluation, JSON lines and TensorBoard events (the
//!   progress bar is [`crate::train::progress`]).
//! - [`checkpoint`]: what a checkpoint holds besides tensors, and the checks on resume.
//! - [`bench`]: `--bench-steps` on synthetic batches.
//! - [`demo`]: `--demo`, a complete small run from nothing but the machine's own text.
//! - [`distributed`]: runs over several processes (hosts of a pod slice, or one per GPU).
//! - [`pod_setup`]: the zero-flag start of a pod run: process settings from the TPU VM.
//! - [`data_cursor`]: their training data, work units handed out by the coordinator.
//! - [`data_only`]: that data path without a model (a hidden flag, for the accounting test).
pub mod batches;
pub mod bench;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod coord_setup;
pub mod corpus;
pub mod data_cursor;
pub mod data_only;
pub mod demo;
pub mod distributed;
pub mod eval;
pub mod feed;
pub mod interrupt;
pub mod memory;
pub mod metrics;
pub mod overrides;
pub mod pod_setup;
pub mod program;
pub mod run;
pub mod source;
pub mod train_loop;

pub use config::{Overrides, PretrainConfig};
pub use run::{initial_weights, run, RunOptions, RunSummary, StepRecord};

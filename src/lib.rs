//! tpu-run: BERT as XLA HLO, compiled and run through PJRT plugins.
pub mod backend;
pub mod ckpt;
pub mod cli;
pub mod coord;
pub mod data;
pub mod examples;
pub mod features;
pub mod finetune;
pub mod glue;
pub mod import;
pub mod model;
pub mod pretrain;
pub mod profile;
pub mod run;
pub mod squad;
pub mod tpu_target;
pub mod train;

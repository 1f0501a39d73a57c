//! Prost types generated from the XLA `.proto` subset in `proto/xla/` (XLA's field numbers).
#![allow(clippy::all, missing_docs)]
include!(concat!(env!("OUT_DIR"), "/xla.rs"));

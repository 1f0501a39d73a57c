//! prost types of proto/tensorflow/tensor_bundle.proto: BundleHeaderProto and BundleEntryProto,
//! the values of a checkpoint index (with TensorFlow's field numbers).
#![allow(clippy::all, missing_docs)]
include!(concat!(env!("OUT_DIR"), "/tensorflow.bundle.rs"));

//! XLA HLO in Rust: element types and shapes, an arena IR, a builder with shape inference at
//! every op, passes, a text printer in XLA's syntax and lowering to `HloModuleProto`.
pub mod dtype;
pub mod proto;

pub use dtype::{ElementType, NativeType};

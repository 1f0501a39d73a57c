//! XLA HLO in Rust: element types and shapes, an arena IR, a builder with shape inference at
//! every op, passes, a text printer in XLA's syntax and lowering to `HloModuleProto`.
pub mod autodiff;
pub mod builder;
pub mod dtype;
pub mod error;
pub mod f8;
pub mod ir;
pub mod literal;
pub mod lower;
pub mod ops;
pub mod passes;
pub mod proto;
pub mod shape;
pub mod text;

pub use builder::{Builder, ModuleBuilder, ScopeGuard, Value};
pub use dtype::{ElementType, NativeType};
pub use error::{HloError, Result};
pub use f8::{F8E4M3FN, F8E5M2};
pub use ir::{CompId, InstrId, Module};
pub use literal::Literal;
pub use shape::{ArrayShape, Shape};

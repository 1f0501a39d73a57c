//! The error type of the hlo crate: every builder error names the op and the shapes involved.
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum HloError {
    /// Shape inference rejected an op: `op` is XLA's opcode, `shapes` the operand shapes.
    #[error("{op}: {msg} (operands: {shapes})")]
    Shape {
        op: &'static str,
        msg: String,
        shapes: String,
    },
    /// A value from another computation was used as an operand.
    #[error("{op}: operand {value} belongs to another computation ({origin}), not {target}")]
    ForeignValue {
        op: &'static str,
        value: String,
        origin: String,
        target: String,
    },
    /// A computation was used after it was finished, or referenced before.
    #[error("computation '{name}': {msg}")]
    Computation { name: String, msg: String },
    #[error("literal: {0}")]
    Literal(String),
    /// The verifier found a broken invariant (after a pass or on a hand-made module).
    #[error("verifier: {0}")]
    Verify(String),
    /// Reverse-mode autodiff met an op it cannot differentiate (`op` is XLA's opcode).
    #[error("autodiff: no gradient rule for {op}: {msg}")]
    NoGradient { op: String, msg: String },
    /// Lowering to HloModuleProto failed.
    #[error("lowering: {0}")]
    Lower(String),
}

pub type Result<T, E = HloError> = std::result::Result<T, E>;

/// Builds a [`HloError::Shape`] listing the operand shapes.
pub(crate) fn shape_err(
    op: &'static str,
    msg: impl Into<String>,
    shapes: &[&dyn std::fmt::Display],
) -> HloError {
    let shapes = shapes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    HloError::Shape {
        op,
        msg: msg.into(),
        shapes,
    }
}

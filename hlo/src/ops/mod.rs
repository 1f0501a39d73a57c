//! Composite helpers built only from primitive builder ops: softmax family, normalization,
//! activations, softmax cross-entropy with integer labels (with its own gradient), index ops (one_hot, argmax/argmin), dropout, FP8 quantize-dequantize (with its
//! own gradient), a batch-broadcast add whose gradient sums by a dot (layouts, see its module),
//! and cuDNN's fused attention (a custom call with its gradient rule).
//!
//! Axes are `i64` and may be negative (`-1` is the last dimension), as in NumPy. Each helper
//! validates its arguments up front and reports errors under its own name (`softmax`,
//! `layer_norm`, ...) rather than under the primitive op that would fail later.
mod activation;
mod batch_broadcast;
mod cross_entropy;
mod dropout;
mod fp8;
mod fused_attention;
mod index;
mod norm;
mod softmax;

pub use cross_entropy::CrossEntropy;
pub use dropout::DropoutBits;
pub use fused_attention::{
    FusedAttention, CUDNN_ATTENTION_BWD, CUDNN_ATTENTION_DROPOUT_BWD, CUDNN_ATTENTION_DROPOUT_FWD,
    CUDNN_ATTENTION_FWD,
};

use crate::builder::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::shape::ArrayShape;

/// Resolves a possibly negative `axis` of an array of rank `a.rank()`.
fn axis_index(op: &'static str, axis: i64, a: &ArrayShape) -> Result<i64> {
    let rank = a.rank() as i64;
    if axis < -rank || axis >= rank {
        return Err(shape_err(
            op,
            format!("axis {axis} out of range for rank {rank}"),
            &[a],
        ));
    }
    Ok(if axis < 0 { axis + rank } else { axis })
}

/// Resolves `axes` (possibly negative, no repeats) to sorted non-negative dimensions.
fn axes_indices(op: &'static str, axes: &[i64], a: &ArrayShape) -> Result<Vec<i64>> {
    let mut out = axes
        .iter()
        .map(|&ax| axis_index(op, ax, a))
        .collect::<Result<Vec<_>>>()?;
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(shape_err(
            op,
            format!("axes {axes:?} repeat a dimension"),
            &[a],
        ));
    }
    Ok(out)
}

fn require_float(op: &'static str, a: &ArrayShape) -> Result<()> {
    if a.ty.is_float() {
        Ok(())
    } else {
        Err(shape_err(
            op,
            format!("needs a floating-point operand, got {}", a.ty),
            &[a],
        ))
    }
}

/// The type statistics are computed in when f32 statistics are asked for: f32 for 16-bit
/// floats (their sums lose too much precision), the input type otherwise.
fn f32_stats_type(ty: ElementType) -> ElementType {
    match ty {
        ElementType::Bf16 | ElementType::F16 => ElementType::F32,
        t => t,
    }
}

impl Builder<'_> {
    /// Broadcasts `r`, the result of reducing an array of `dims` over `axes` (sorted), back to
    /// `dims` (keepdims-style), so it can be combined elementwise with the original array.
    fn unreduce(&self, r: Value, dims: &[i64], axes: &[i64]) -> Result<Value> {
        let kept: Vec<i64> = (0..dims.len() as i64)
            .filter(|d| !axes.contains(d))
            .collect();
        self.broadcast_in_dim(r, dims, &kept)
    }
}

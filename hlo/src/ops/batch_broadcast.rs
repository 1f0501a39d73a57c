//! `x + y` with `y` broadcast over `x`'s leading (batch) dimension, whose gradient for `y` is a
//! matrix product with ones rather than a reduce over the batch.
//!
//! Why not a reduce: XLA:GPU's layout assignment gives a reduce's operand the layout that makes
//! it a row reduction (the summed dimensions minor, from 32 summed elements on:
//! `GpuLayoutAssignment::PropagateReductionLayoutToOperand`) and carries that layout on through
//! every elementwise producer. In BERT the position-embedding gradient, a sum over the batch of
//! `[batch, seq, hidden]`, thereby laid the whole residual stream out as `[seq, hidden, batch]`,
//! and every layer's GEMMs read and wrote it through transposes (363 transpose fusions in the
//! BERT-base step). XLA keeps a dot of two matrices a dot, and a 2-D dot imposes no layout.
//! Hence `dy = (ones[8, n] . g[n, rest])[0]`: eight rows because XLA drops a unit dimension and
//! strength-reduces the vector-matrix dot that is left back into a reduce; the ones behind an
//! optimization barrier so that no simplification sees they are constant. The dot accumulates
//! in f32 at the highest precision.
use crate::builder::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::ir::{DotDims, Precision};
use crate::shape::ArrayShape;

const OP: &str = "add_batch_broadcast";
/// Rows of the ones operand of the gradient's dot (see the module docs).
const ONES_ROWS: i64 = 8;

impl Builder<'_> {
    /// `x + y` for `x: [n, d...]` and `y: [d...]` (same float type), `y` repeated over the `n`
    /// rows; the gradient of `y` is the sum of the cotangent's rows, taken as a dot with ones.
    pub fn add_batch_broadcast(&self, x: Value, y: Value) -> Result<Value> {
        let (a, b) = (self.array_shape(x, OP)?, self.array_shape(y, OP)?);
        if a.ty != b.ty || !a.ty.is_float() || a.ty.is_f8() {
            return Err(shape_err(
                OP,
                "x and y must have the same f16/bf16/f32/f64 type",
                &[&a, &b],
            ));
        }
        if a.rank() < 2 || a.dims[1..] != b.dims[..] {
            return Err(shape_err(
                OP,
                "x must be [n, d...] and y [d...] (y's dims are x's after the first)",
                &[&a, &b],
            ));
        }
        let along: Vec<i64> = (1..a.rank() as i64).collect();
        let out = self.add(x, self.broadcast_in_dim(y, &a.dims, &along)?)?;
        let dims = a.dims.clone();
        self.custom_vjp(&[x, y], out, move |b, args| {
            let g = args.cotangent;
            let ty = b.element_type(g)?;
            let (rows, rest) = (dims[0], &dims[1..]);
            let cols: i64 = rest.iter().product();
            let ones = b.full(&ArrayShape::new(ty, vec![ONES_ROWS, rows]), 1.0)?;
            let ones = b.optimization_barrier(ones)?;
            let wide =
                matches!(ty, ElementType::F16 | ElementType::Bf16).then_some(ElementType::F32);
            let sums = b.dot_general(
                ones,
                b.reshape(g, &[rows, cols])?,
                DotDims {
                    lhs_contracting: vec![1],
                    rhs_contracting: vec![0],
                    ..Default::default()
                },
                [Precision::Highest; 2],
                wide,
            )?;
            let dy = b.convert(b.slice_in_dim(sums, 0, 1, 0)?, ty)?;
            Ok(vec![Some(g), Some(b.reshape(dy, rest)?)])
        })
    }
}

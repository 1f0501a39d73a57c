//! Softmax cross-entropy with integer labels (optax's `softmax_cross_entropy_with_integer_labels`,
//! TF's `sparse_softmax_cross_entropy_with_logits`) together with the argmax, in as few passes
//! over the logits `x: [n, classes]` as the math allows:
//!
//!   (m, pred) = max and argmax of each row            one variadic reduction
//!   s         = sum(exp(x - m0)),  m0 = (m == -inf ? 0 : m)   one reduction
//!   nll       = log(s) + m0 - x[label]                 a gather of one logit per row
//!
//! and a gradient written out rather than differentiated: dx = g * (exp(x - m0) / s - onehot),
//! one elementwise pass. Differentiating the composite would pick the label's logit with a
//! one-hot reduction and add a reduction of the cotangent per row; on BERT's MLM head
//! ([5120, 30528] per step) each pass is a read of the step's largest tensor.
//!
//! A label outside `0..classes` picks no logit: its nll and its gradient are 0, as the one-hot
//! form `-sum(onehot(label) * log_softmax(x))` gives. Rows of -inf and NaN behave as
//! [`Builder::log_softmax`] (module `softmax`).
use super::require_float;
use crate::builder::{Builder, Value};
use crate::error::{shape_err, Result};
use crate::ir::GatherDims;
use crate::shape::ArrayShape;

/// What [`Builder::softmax_cross_entropy`] returns.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropy {
    /// `-log_softmax(x)[label]` per row, in x's type; 0 for an out-of-range label.
    pub nll: Value,
    /// `argmax(x)` per row, in the labels' type (no gradient).
    pub pred: Value,
}

impl Builder<'_> {
    /// Per-row softmax cross-entropy of `labels: int[n]` under `logits: float[n, classes]`,
    /// and the argmax of each row (see the module docs).
    pub fn softmax_cross_entropy(&self, logits: Value, labels: Value) -> Result<CrossEntropy> {
        const OP: &str = "softmax_cross_entropy";
        let a = self.array_shape(logits, OP)?;
        let l = self.array_shape(labels, OP)?;
        require_float(OP, &a)?;
        if a.rank() != 2 || l.rank() != 1 || l.dims[0] != a.dims[0] || !l.ty.is_integer() {
            return Err(shape_err(
                OP,
                "needs logits [n, classes] and integer labels [n]",
                &[&a, &l],
            ));
        }
        let (n, classes) = (a.dims[0], a.dims[1]);
        let rows = |v: Value| self.broadcast_in_dim(v, &a.dims, &[0]);

        let (m, pred) = self.max_and_argmax(logits, 1, l.ty)?;
        let m0 = self.select(
            self.eq(m, self.scalar_of(a.ty, f64::NEG_INFINITY)?)?,
            self.zeros_like(m)?,
            m,
        )?;
        let e = self.exp(self.sub(logits, rows(m0)?)?)?;
        let s = self.reduce_sum(e, &[1])?;
        // Only a row of -inf sums to 0; its softmax is then a row of zeros (as softmax's docs).
        let s = self.select(
            self.eq(s, self.zeros_like(s)?)?,
            self.full(&ArrayShape::new(a.ty, vec![n]), 1.0)?,
            s,
        )?;

        let in_range = self.and(
            self.ge(labels, self.scalar_of(l.ty, 0.0)?)?,
            self.lt(labels, self.scalar_of(l.ty, classes as f64)?)?,
        )?;
        let label = self.select(in_range, labels, self.zeros_like(labels)?)?;
        let picked = self.gather(
            logits,
            self.reshape(label, &[n, 1])?,
            GatherDims {
                offset_dims: vec![],
                collapsed_slice_dims: vec![1],
                start_index_map: vec![1],
                index_vector_dim: 1,
                operand_batching_dims: vec![0],
                start_indices_batching_dims: vec![0],
            },
            &[1, 1],
            false,
        )?;
        let nll = self.sub(self.add(self.log(s)?, m0)?, picked)?;
        let nll = self.select(in_range, nll, self.zeros_like(nll)?)?;

        let dims = a.dims.clone();
        let nll = self.custom_vjp(&[logits, m0, s, label, in_range], nll, move |b, args| {
            let [x, m0, s, label, in_range] = args.inputs else {
                unreachable!("softmax_cross_entropy declares five inputs");
            };
            let rows = |v: Value| b.broadcast_in_dim(v, &dims, &[0]);
            let g = b.select(*in_range, args.cotangent, b.zeros_like(args.cotangent)?)?;
            let p = b.div(b.exp(b.sub(*x, rows(*m0)?)?)?, rows(*s)?)?;
            let class = b.iota(
                &ArrayShape::new(b.array_shape(*label, OP)?.ty, dims.clone()),
                1,
            )?;
            let hit = b.eq(class, rows(*label)?)?;
            let p = b.sub(p, b.convert(hit, b.array_shape(p, OP)?.ty)?)?;
            Ok(vec![Some(b.mul(rows(g)?, p)?), None, None, None, None])
        })?;
        Ok(CrossEntropy { nll, pred })
    }
}

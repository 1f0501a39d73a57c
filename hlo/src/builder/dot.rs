//! dot_general and matmul conveniences.
use super::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::ir::{DotDims, Op, Precision};
use crate::shape::{ArrayShape, Shape};

impl Builder<'_> {
    /// General dot: output dims are the batch dims, then lhs free dims, then rhs free dims.
    /// `preferred` sets the result type (e.g. f32 accumulation of bf16 inputs). The operands
    /// share one element type, except that the two f8 types may mix (an FP8 GEMM's e5m2
    /// gradient times an e4m3fn operand, as XLA's dots allow); such a dot names its result
    /// type.
    pub fn dot_general(
        &self,
        lhs: Value,
        rhs: Value,
        dims: DotDims,
        precision: [Precision; 2],
        preferred: Option<ElementType>,
    ) -> Result<Value> {
        let (a, b) = (self.array_shape(lhs, "dot")?, self.array_shape(rhs, "dot")?);
        let err = |m: String| Err(shape_err("dot", m, &[&a, &b]));
        if a.ty != b.ty {
            if !(a.ty.is_f8() && b.ty.is_f8()) {
                return err("operand element types differ".into());
            }
            if preferred.is_none() {
                return err("a dot of two f8 types needs a preferred result type".into());
            }
        }
        if dims.lhs_batch.len() != dims.rhs_batch.len()
            || dims.lhs_contracting.len() != dims.rhs_contracting.len()
        {
            return err(format!(
                "{dims:?}: batch and contracting lists must pair up"
            ));
        }
        let lhs_used: Vec<i64> = dims
            .lhs_batch
            .iter()
            .chain(&dims.lhs_contracting)
            .copied()
            .collect();
        let rhs_used: Vec<i64> = dims
            .rhs_batch
            .iter()
            .chain(&dims.rhs_contracting)
            .copied()
            .collect();
        let distinct = |v: &[i64], r: usize| {
            v.iter().all(|&d| d >= 0 && (d as usize) < r)
                && (0..v.len()).all(|i| !v[i + 1..].contains(&v[i]))
        };
        if !distinct(&lhs_used, a.rank()) || !distinct(&rhs_used, b.rank()) {
            return err(format!("{dims:?}: dimensions out of range or repeated"));
        }
        for (l, r) in dims
            .lhs_batch
            .iter()
            .zip(&dims.rhs_batch)
            .chain(dims.lhs_contracting.iter().zip(&dims.rhs_contracting))
        {
            if a.dims[*l as usize] != b.dims[*r as usize] {
                return err(format!(
                    "lhs dimension {l} (size {}) does not match rhs dimension {r} (size {})",
                    a.dims[*l as usize], b.dims[*r as usize]
                ));
            }
        }
        let mut out: Vec<i64> = dims.lhs_batch.iter().map(|&d| a.dims[d as usize]).collect();
        out.extend(
            (0..a.rank() as i64)
                .filter(|d| !lhs_used.contains(d))
                .map(|d| a.dims[d as usize]),
        );
        out.extend(
            (0..b.rank() as i64)
                .filter(|d| !rhs_used.contains(d))
                .map(|d| b.dims[d as usize]),
        );
        let ty = preferred.unwrap_or(a.ty);
        if ty.is_pred() != a.ty.is_pred() {
            return err(format!(
                "preferred element type {ty} does not fit the operands"
            ));
        }
        self.push(
            Op::Dot { dims, precision },
            &[lhs, rhs],
            Shape::Array(ArrayShape::new(ty, out)),
        )
    }

    /// `[..., m, k] x [..., k, n] -> [..., m, n]` with equal leading batch dims (or a rank-2 rhs).
    pub fn matmul(&self, lhs: Value, rhs: Value) -> Result<Value> {
        let (a, b) = (self.array_shape(lhs, "dot")?, self.array_shape(rhs, "dot")?);
        if a.rank() < 2 || b.rank() < 2 {
            return Err(shape_err(
                "dot",
                "matmul needs rank >= 2 operands",
                &[&a, &b],
            ));
        }
        let ra = a.rank() as i64;
        if b.rank() == 2 {
            let dims = DotDims {
                lhs_contracting: vec![ra - 1],
                rhs_contracting: vec![0],
                ..Default::default()
            };
            return self.dot_general(lhs, rhs, dims, Default::default(), None);
        }
        if a.rank() != b.rank() {
            return Err(shape_err(
                "dot",
                "batched matmul needs equal ranks",
                &[&a, &b],
            ));
        }
        let batch: Vec<i64> = (0..ra - 2).collect();
        let dims = DotDims {
            lhs_batch: batch.clone(),
            rhs_batch: batch,
            lhs_contracting: vec![ra - 1],
            rhs_contracting: vec![ra - 2],
        };
        self.dot_general(lhs, rhs, dims, Default::default(), None)
    }
}

//! dot_general with any dimension numbers, transposed as JAX's `_dot_general_transpose_lhs` /
//! `_dot_general_transpose_rhs`: the operand's cotangent is a dot of g with the other operand,
//! contracting g's dims of the other operand's free dims, then transposed into the operand's
//! dim order.
//!
//! Types: g has the result type (e.g. f32 for a bf16 x bf16 -> f32 dot). It is converted to the
//! operands' type so the backward dots run at the forward's input precision with the same
//! preferred (accumulation) type, and the result is converted back to the operand's type: the
//! cotangent of a bf16 weight is bf16.
use super::Ctx;
use crate::builder::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::Result;
use crate::ir::{DotDims, Precision};
use crate::shape::ArrayShape;

pub(super) fn dot(
    c: &Ctx,
    g: Value,
    dims: &DotDims,
    precision: [Precision; 2],
) -> Result<Vec<Option<Value>>> {
    let (x, y) = (c.x[0], c.x[1]);
    let (xa, ya) = (c.arr(0)?, c.arr(1)?);
    let out_ty = c.out_arr()?.ty;
    // The backward dots mix g with an operand, so they use the stricter of the two precisions.
    let p = if rank(precision[0]) >= rank(precision[1]) {
        precision[0]
    } else {
        precision[1]
    };
    let swapped = DotDims {
        lhs_batch: dims.rhs_batch.clone(),
        rhs_batch: dims.lhs_batch.clone(),
        lhs_contracting: dims.rhs_contracting.clone(),
        rhs_contracting: dims.lhs_contracting.clone(),
    };
    Ok(vec![
        c.when(0, || {
            transpose_lhs(&c.b, g, &xa, y, &ya, dims, p, out_ty, false)
        })?,
        c.when(1, || {
            transpose_lhs(&c.b, g, &ya, x, &xa, &swapped, p, out_ty, true)
        })?,
    ])
}

fn rank(p: Precision) -> u8 {
    match p {
        Precision::Default => 0,
        Precision::High => 1,
        Precision::Highest => 2,
    }
}

/// Dims of `0..n` not in `a` or `b`, ascending.
fn remaining(n: usize, a: &[i64], b: &[i64]) -> Vec<i64> {
    (0..n as i64)
        .filter(|d| !a.contains(d) && !b.contains(d))
        .collect()
}

/// Indices that sort `v` ascending.
fn argsort(v: &[i64]) -> Vec<i64> {
    let mut idx: Vec<i64> = (0..v.len() as i64).collect();
    idx.sort_by_key(|&i| v[i as usize]);
    idx
}

/// The cotangent of the lhs `x` of `dot(x, y, dims)`; with `swap`, g's free dims are ordered
/// (y's, x's), which is how the rhs rule reuses this one.
#[allow(clippy::too_many_arguments)]
fn transpose_lhs(
    b: &Builder,
    g: Value,
    xa: &ArrayShape,
    y: Value,
    ya: &ArrayShape,
    dims: &DotDims,
    precision: Precision,
    out_ty: ElementType,
    swap: bool,
) -> Result<Value> {
    let (x_contract, y_contract) = (&dims.lhs_contracting, &dims.rhs_contracting);
    let (x_batch, y_batch) = (&dims.lhs_batch, &dims.rhs_batch);
    let x_kept = remaining(xa.rank(), x_contract, x_batch);
    let y_kept = remaining(ya.rank(), y_contract, y_batch);
    let nb = x_batch.len() as i64;
    let ans_batch: Vec<i64> = (0..nb).collect();
    let y_start = if swap { nb } else { nb + x_kept.len() as i64 };
    let ans_y: Vec<i64> = (y_start..y_start + y_kept.len() as i64).collect();
    let back = DotDims {
        lhs_batch: ans_batch,
        rhs_batch: y_batch.clone(),
        lhs_contracting: ans_y,
        rhs_contracting: y_kept,
    };
    // The result's dims are x's (batch, kept, contracting in y's contracting order).
    let x_contract_by_y: Vec<i64> = argsort(y_contract)
        .iter()
        .map(|&i| x_contract[i as usize])
        .collect();
    let order: Vec<i64> = x_batch
        .iter()
        .chain(&x_kept)
        .chain(&x_contract_by_y)
        .copied()
        .collect();
    let g = b.convert(g, ya.ty)?;
    let preferred = (out_ty != ya.ty).then_some(out_ty);
    let r = b.dot_general(g, y, back, [precision, precision], preferred)?;
    let r = b.transpose(r, &argsort(&order))?;
    b.convert(r, xa.ty)
}

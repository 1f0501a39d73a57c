//! Global-norm gradient clipping (as `tf.clip_by_global_norm`) and the all-finite test used by
//! dynamic loss scaling.
use anyhow::{bail, Result};
use hlo::ir::BinaryOp;
use hlo::{Builder, ElementType, Value};

/// Tensors of at most this many elements are summed in one reduction over their concatenation:
/// one by one, BERT-base's ~150 biases and layer-norm vectors each took a kernel launch of its
/// own (the clipping's 286 kernels, 0.55 ms of a 59 ms step on an H100).
const SMALL_TENSOR: i64 = 1 << 16;

/// `sqrt(sum over tensors of sum(g^2))`, an f32 scalar (tensors are converted to f32 first).
pub fn global_norm(b: &Builder, grads: &[Value]) -> Result<Value> {
    let mut total = b.scalar_of(ElementType::F32, 0.0)?;
    let mut small = vec![];
    for &g in grads {
        let g = b.convert(g, ElementType::F32)?;
        let dims = b.dims(g)?;
        let n: i64 = dims.iter().product();
        if n <= SMALL_TENSOR {
            small.push(b.reshape(g, &[n])?);
            continue;
        }
        let all: Vec<i64> = (0..dims.len() as i64).collect();
        total = b.add(total, b.reduce_sum(b.mul(g, g)?, &all)?)?;
    }
    if !small.is_empty() {
        let flat = if small.len() == 1 {
            small[0]
        } else {
            b.concatenate(&small, 0)?
        };
        total = b.add(total, b.reduce_sum(b.mul(flat, flat)?, &[0])?)?;
    }
    Ok(b.sqrt(total)?)
}

/// Scales every gradient by `clip * min(1 / norm, 1 / clip)` (tf.clip_by_global_norm: unchanged
/// when the global norm is at most `clip`, scaled to norm `clip` otherwise; NaN everywhere when
/// the norm is not finite). Returns the clipped gradients and the global norm before clipping.
pub fn clip_by_global_norm(b: &Builder, grads: &[Value], clip: f64) -> Result<(Vec<Value>, Value)> {
    if !(clip.is_finite() && clip > 0.0) {
        bail!("gradient clipping: the clip norm must be finite and > 0, got {clip}");
    }
    let norm = global_norm(b, grads)?;
    let c = |v: f64| b.scalar_of(ElementType::F32, v);
    let inv_norm = b.div(c(1.0)?, norm)?;
    let scale = b.mul(c(clip)?, b.min(inv_norm, c(1.0 / clip)?)?)?;
    // tf adds (norm - norm): NaN when the norm is inf or NaN, so a blown-up step is visible.
    let scale = b.add(scale, b.sub(norm, norm)?)?;
    let clipped = grads
        .iter()
        .map(|&g| {
            let ty = b.element_type(g)?;
            Ok(b.mul(g, b.convert(scale, ty)?)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((clipped, norm))
}

/// A pred scalar: every element of every tensor is finite.
pub fn all_finite(b: &Builder, grads: &[Value]) -> Result<Value> {
    let and = b
        .module()
        .scalar_reducer(BinaryOp::And, ElementType::Pred)?;
    let mut ok = b.scalar_of(ElementType::Pred, 1.0)?;
    for &g in grads {
        let fin = b.is_finite(g)?;
        let all: Vec<i64> = (0..b.dims(g)?.len() as i64).collect();
        let t = b.scalar_of(ElementType::Pred, 1.0)?;
        ok = b.and(ok, b.reduce(&[fin], &[t], &all, and)?)?;
    }
    Ok(ok)
}

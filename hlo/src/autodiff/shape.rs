//! Rules of data-movement ops: each is a linear map, so its rule is the transposed map.
//! broadcast <-> reduce-sum, reshape, transpose (inverse permutation), slice <-> pad,
//! concatenate -> slices, dynamic-slice <-> dynamic-update-slice.
use super::Ctx;
use crate::builder::Value;
use crate::error::Result;
use crate::ir::PadDim;

/// Sums over the dims the broadcast added (and the size-1 dims it expanded), then puts the
/// remaining dims back in operand order and shape.
pub(super) fn broadcast(c: &Ctx, g: Value, dims: &[i64]) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let a = c.arr(0)?;
    let out = c.out_arr()?;
    // (output dim, operand dim) of the operand dims that were not expanded from size 1.
    let mut kept: Vec<(i64, usize)> = dims
        .iter()
        .enumerate()
        .filter(|&(i, &d)| a.dims[i] == out.dims[d as usize])
        .map(|(i, &d)| (d, i))
        .collect();
    kept.sort_unstable();
    let summed: Vec<i64> = (0..out.rank() as i64)
        .filter(|d| !kept.iter().any(|&(k, _)| k == *d))
        .collect();
    let r = if summed.is_empty() {
        g
    } else {
        b.reduce_sum(g, &summed)?
    };
    // r's dim j is operand dim kept[j].1; order them by operand dim.
    let mut perm: Vec<i64> = (0..kept.len() as i64).collect();
    perm.sort_by_key(|&j| kept[j as usize].1);
    let r = b.transpose(r, &perm)?;
    Ok(vec![Some(b.reshape(r, &a.dims)?)])
}

pub(super) fn reshape(c: &Ctx, g: Value) -> Result<Vec<Option<Value>>> {
    Ok(vec![Some(c.b.reshape(g, &c.arr(0)?.dims)?)])
}

pub(super) fn transpose(c: &Ctx, g: Value, perm: &[i64]) -> Result<Vec<Option<Value>>> {
    let mut inv = vec![0i64; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p as usize] = i as i64;
    }
    Ok(vec![Some(c.b.transpose(g, &inv)?)])
}

/// Scatters the slice back with zeros around it and between strided elements.
pub(super) fn slice(
    c: &Ctx,
    g: Value,
    starts: &[i64],
    strides: &[i64],
) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let a = c.arr(0)?;
    let out = c.out_arr()?;
    if out.num_elements() == 0 {
        return Ok(vec![None]);
    }
    let dims: Vec<PadDim> = (0..a.rank())
        .map(|i| {
            let last = starts[i] + (out.dims[i] - 1) * strides[i];
            PadDim {
                low: starts[i],
                high: a.dims[i] - 1 - last,
                interior: strides[i] - 1,
            }
        })
        .collect();
    let zero = b.scalar_of(a.ty, 0.0)?;
    Ok(vec![Some(b.pad(g, zero, &dims)?)])
}

/// Operand: undo the low/high padding (crop, or zero-fill where it cropped), then take every
/// (interior+1)-th element. Padding value: every element of g the operand did not land on.
pub(super) fn pad(c: &Ctx, g: Value, dims: &[PadDim]) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let a = c.arr(0)?;
    let zero = b.scalar_of(a.ty, 0.0)?;
    let dx = || -> Result<Value> {
        let unpad: Vec<PadDim> = dims
            .iter()
            .map(|p| PadDim {
                low: -p.low,
                high: -p.high,
                interior: 0,
            })
            .collect();
        let t = b.pad(g, zero, &unpad)?;
        let t_dims = b.dims(t)?;
        let strides: Vec<i64> = dims.iter().map(|p| p.interior + 1).collect();
        b.slice(t, &vec![0; a.rank()], &t_dims, &strides)
    };
    let dx_val = if c.want(0) || c.want(1) {
        Some(dx()?)
    } else {
        None
    };
    let dv = c.when(1, || {
        let all = |v: Value| -> Result<Value> {
            let r = b.dims(v)?.len() as i64;
            b.reduce_sum(v, &(0..r).collect::<Vec<_>>())
        };
        let inner = match dx_val {
            Some(v) => all(v)?,
            None => zero,
        };
        b.sub(all(g)?, inner)
    })?;
    Ok(vec![if c.want(0) { dx_val } else { None }, dv])
}

pub(super) fn concatenate(c: &Ctx, g: Value, dim: i64) -> Result<Vec<Option<Value>>> {
    let mut off = 0;
    let mut out = Vec::with_capacity(c.x.len());
    for k in 0..c.x.len() {
        let n = c.arr(k)?.dims[dim as usize];
        out.push(c.when(k, || c.b.slice_in_dim(g, off, off + n, dim as usize))?);
        off += n;
    }
    Ok(out)
}

/// The operand gets g written into zeros at the (equally clamped) start indices.
pub(super) fn dynamic_slice(c: &Ctx, g: Value) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let starts = &c.x[1..];
    let mut out = c.none();
    out[0] = c.when(0, || {
        b.dynamic_update_slice(b.zeros_like(c.x[0])?, g, starts)
    })?;
    Ok(out)
}

/// Operand: g with the update window zeroed; update: the window of g.
pub(super) fn dynamic_update_slice(c: &Ctx, g: Value) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let update = c.x[1];
    let starts = &c.x[2..];
    let mut out = c.none();
    out[0] = c.when(0, || {
        b.dynamic_update_slice(g, b.zeros_like(update)?, starts)
    })?;
    out[1] = c.when(1, || b.dynamic_slice(g, starts, &c.arr(1)?.dims))?;
    Ok(out)
}

//! gather -> scatter-add and scatter-add -> gather, with XLA's index semantics kept exact:
//! - gather clamps each start so the slice fits, so its rule scatters at the clamped starts
//!   (scatter does not clamp; it would drop those windows);
//! - scatter skips a window that does not fit, so its updates' rule gathers g and zeroes the
//!   windows that were skipped (gather would clamp and read something).
//!
//! Indices carry no gradient.
use super::{no_rule, Ctx};
use crate::builder::{Builder, Value};
use crate::error::Result;
use crate::ir::{BinaryOp, CompId, GatherDims, ScatterDims};

pub(super) fn gather(
    c: &Ctx,
    g: Value,
    dims: &GatherDims,
    slice_sizes: &[i64],
    indices_are_sorted: bool,
) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let a = c.arr(0)?;
    let dx = c.when(0, || {
        let hi = index_limits(
            &b,
            c.x[1],
            &a.dims,
            slice_sizes,
            &dims.start_index_map,
            dims.index_vector_dim,
        )?;
        let idx = match hi {
            Some(hi) => b.clamp(b.scalar_of(c.arr(1)?.ty, 0.0)?, c.x[1], hi)?,
            None => c.x[1],
        };
        let add = b.module().scalar_reducer(BinaryOp::Add, a.ty)?;
        let sd = Builder::scatter_dims_for_gather(dims);
        b.scatter(
            b.zeros_like(c.x[0])?,
            idx,
            g,
            sd,
            add,
            indices_are_sorted,
            false,
        )
    })?;
    Ok(vec![dx, None])
}

pub(super) fn scatter(
    c: &Ctx,
    g: Value,
    dims: &ScatterDims,
    comp: CompId,
    indices_are_sorted: bool,
) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    if !b.module().is_scalar_binary(comp, BinaryOp::Add) {
        return Err(no_rule(
            "scatter",
            "only a scatter that adds its updates (scatter_add) is differentiated",
        ));
    }
    let a = c.arr(0)?;
    let (idx, updates) = (c.x[1], c.x[2]);
    let u = c.arr(2)?;
    let du = c.when(2, || {
        let gd = GatherDims {
            offset_dims: dims.update_window_dims.clone(),
            collapsed_slice_dims: dims.inserted_window_dims.clone(),
            start_index_map: dims.scatter_dims_to_operand_dims.clone(),
            index_vector_dim: dims.index_vector_dim,
            operand_batching_dims: dims.input_batching_dims.clone(),
            start_indices_batching_dims: dims.scatter_indices_batching_dims.clone(),
        };
        let mut window = dims.update_window_dims.iter();
        let slice_sizes = (0..a.rank() as i64)
            .map(|d| {
                if dims.inserted_window_dims.contains(&d) || dims.input_batching_dims.contains(&d) {
                    Some(1)
                } else {
                    window.next().map(|&w| u.dims[w as usize])
                }
            })
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| no_rule("scatter", "update window dims do not cover the operand"))?;
        let gathered = b.gather(g, idx, gd, &slice_sizes, indices_are_sorted)?;
        let hi = index_limits(
            &b,
            idx,
            &a.dims,
            &slice_sizes,
            &dims.scatter_dims_to_operand_dims,
            dims.index_vector_dim,
        )?;
        let Some(hi) = hi else {
            return Ok(gathered);
        };
        let ity = c.arr(1)?.ty;
        let ok = b.and(b.ge(idx, b.scalar_of(ity, 0.0)?)?, b.le(idx, hi)?)?;
        let irank = c.arr(1)?.rank() as i64;
        let ok = if dims.index_vector_dim < irank {
            b.reduce_with(ok, BinaryOp::And, 1.0, &[dims.index_vector_dim])?
        } else {
            ok
        };
        let scatter_dims: Vec<i64> = (0..u.rank() as i64)
            .filter(|d| !dims.update_window_dims.contains(d))
            .collect();
        let mask = b.broadcast_in_dim(ok, &u.dims, &scatter_dims)?;
        b.select(mask, gathered, b.zeros_like(updates)?)
    })?;
    Ok(vec![c.when(0, || Ok(g))?, None, du])
}

/// The largest valid start of each index component (`dim - slice size` of the operand dim it
/// indexes), shaped to compare with `indices` elementwise; `None` when there are no components.
fn index_limits(
    b: &Builder,
    indices: Value,
    operand_dims: &[i64],
    slice_sizes: &[i64],
    start_index_map: &[i64],
    index_vector_dim: i64,
) -> Result<Option<Value>> {
    let ia = b.array_shape(indices, "gather")?;
    let limits: Vec<i64> = start_index_map
        .iter()
        .map(|&d| operand_dims[d as usize] - slice_sizes[d as usize])
        .collect();
    Ok(Some(match limits.as_slice() {
        [] => return Ok(None),
        [one] => b.scalar_of(ia.ty, *one as f64)?,
        many => {
            let parts = many
                .iter()
                .map(|&l| b.reshape(b.scalar_of(ia.ty, l as f64)?, &[1]))
                .collect::<Result<Vec<_>>>()?;
            let v = b.concatenate(&parts, 0)?;
            b.broadcast_in_dim(v, &ia.dims, &[index_vector_dim])?
        }
    }))
}

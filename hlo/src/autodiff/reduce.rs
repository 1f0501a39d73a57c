//! Rules of `reduce`, by reducer:
//! - add: g broadcast back over the reduced dims; the init value gets the sum of g.
//! - max/min: g goes to the positions equal to the result, split equally among ties (as JAX's
//!   reduce_max). The init value gets g only where no element reaches the result.
//! - variadic (argmax/argmin as (value, index) pairs): the integer outputs carry no gradient;
//!   a cotangent reaching a float output is an error, since the reducer is arbitrary.
use super::{no_rule, Cot, Ctx};
use crate::builder::Value;
use crate::error::Result;
use crate::ir::{BinaryOp, CompId};

pub(super) fn reduce(c: &Ctx, g: Cot, dims: &[i64], comp: CompId) -> Result<Vec<Option<Cot>>> {
    let n = c.x.len() / 2;
    let g = match g {
        Cot::Array(g) if n == 1 => g,
        Cot::Tuple(items) if items.iter().all(|i| i.is_none()) => return Ok(vec![None; c.x.len()]),
        _ => {
            return Err(no_rule(
                "reduce",
                "a variadic reduce (argmax, argmin, ...) has no gradient for its value outputs; \
                 use only its index outputs, or reduce_max/reduce_min for the values",
            ))
        }
    };
    let m = c.b.module();
    let cots = if m.is_scalar_binary(comp, BinaryOp::Add) {
        sum(c, g, dims)?
    } else if m.is_scalar_binary(comp, BinaryOp::Max) || m.is_scalar_binary(comp, BinaryOp::Min) {
        chooser(c, g, dims)?
    } else {
        let name = m
            .finished_computation(comp)
            .map(|(c, _)| c.name)
            .unwrap_or_else(|_| comp.to_string());
        return Err(no_rule(
            "reduce",
            format!("the reducer '{name}' is not a scalar add, max or min"),
        ));
    };
    Ok(cots.into_iter().map(|v| v.map(Cot::Array)).collect())
}

/// Operand dims kept by a reduce over `dims`.
fn kept(rank: usize, dims: &[i64]) -> Vec<i64> {
    (0..rank as i64).filter(|d| !dims.contains(d)).collect()
}

fn all_dims(c: &Ctx) -> Result<Vec<i64>> {
    Ok((0..c.out_arr()?.rank() as i64).collect())
}

fn sum(c: &Ctx, g: Value, dims: &[i64]) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let a = c.arr(0)?;
    Ok(vec![
        c.when(0, || b.broadcast_in_dim(g, &a.dims, &kept(a.rank(), dims)))?,
        c.when(1, || b.reduce_sum(g, &all_dims(c)?))?,
    ])
}

fn chooser(c: &Ctx, g: Value, dims: &[i64]) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let (x, init) = (c.x[0], c.x[1]);
    let a = c.arr(0)?;
    let kd = kept(a.rank(), dims);
    let hit = b.eq(x, b.broadcast_in_dim(c.out, &a.dims, &kd)?)?;
    let count = b.reduce_sum(b.convert(hit, a.ty)?, dims)?;
    let dx = c.when(0, || {
        // max(count, 1): a result that came from init alone has no positions to share g.
        let share = b.div(g, b.max(count, b.scalar_of(a.ty, 1.0)?)?)?;
        let share = b.broadcast_in_dim(share, &a.dims, &kd)?;
        b.select(hit, share, b.zeros_like(x)?)
    })?;
    let dinit = c.when(1, || {
        let from_init = b.and(b.eq(count, b.scalar_of(a.ty, 0.0)?)?, b.eq(c.out, init)?)?;
        b.reduce_sum(b.select(from_init, g, b.zeros_like(g)?)?, &all_dims(c)?)
    })?;
    Ok(vec![dx, dinit])
}

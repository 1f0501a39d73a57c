//! one_hot (iota + compare) and argmax/argmin (a variadic reduce over values and indices).
//!
//!   one_hot(i, depth)[..., j] = (i[...] == j) ? on : off,   j in 0..depth
//!   argmax(x, axis) = the smallest index k with x[k] = max(x); argmin likewise with min.
//!
//! Out-of-range indices (negative or >= depth) give a row of `off`, as jax.nn.one_hot.
//! NaN counts as greater than everything for argmax and less than everything for argmin, so
//! both return the first NaN's index when there is one (as jnp.argmax/argmin). -0.0 and 0.0
//! tie. The reducer is a strict total order on (value, index) pairs, hence associative and
//! commutative, so the result does not depend on how XLA splits the reduction.
use super::axis_index;
use crate::builder::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::ir::CompId;
use crate::literal::Literal;
use crate::shape::{ArrayShape, Shape};

/// The smallest and largest value of an integer type.
fn int_bounds(ty: ElementType) -> Option<(i128, i128)> {
    Some(match ty {
        ElementType::S8 => (i8::MIN.into(), i8::MAX.into()),
        ElementType::S32 => (i32::MIN.into(), i32::MAX.into()),
        ElementType::S64 => (i64::MIN.into(), i64::MAX.into()),
        ElementType::U8 => (0, u8::MAX.into()),
        ElementType::U32 => (0, u32::MAX.into()),
        ElementType::U64 => (0, u64::MAX.into()),
        _ => return None,
    })
}

/// Whether `v` is exactly representable as an element of `ty` (floats take any value).
fn fits(ty: ElementType, v: f64) -> bool {
    if ty.is_float() {
        return true;
    }
    if ty.is_pred() {
        return v == 0.0 || v == 1.0;
    }
    match int_bounds(ty) {
        // lo and hi + 1 are powers of two (or 0), exact in f64.
        Some((lo, hi)) => v.fract() == 0.0 && v >= lo as f64 && v < (hi + 1) as f64,
        None => false,
    }
}

/// The reduction's initial value: the type's lowest value for argmax (-inf for floats), its
/// highest for argmin; every element beats or ties it.
fn identity(ty: ElementType, is_max: bool) -> Option<Literal> {
    Some(match (ty, is_max) {
        (ElementType::S8, true) => Literal::scalar(i8::MIN),
        (ElementType::S8, false) => Literal::scalar(i8::MAX),
        (ElementType::S32, true) => Literal::scalar(i32::MIN),
        (ElementType::S32, false) => Literal::scalar(i32::MAX),
        (ElementType::S64, true) => Literal::scalar(i64::MIN),
        (ElementType::S64, false) => Literal::scalar(i64::MAX),
        (ElementType::U8, true) => Literal::scalar(u8::MIN),
        (ElementType::U8, false) => Literal::scalar(u8::MAX),
        (ElementType::U32, true) => Literal::scalar(u32::MIN),
        (ElementType::U32, false) => Literal::scalar(u32::MAX),
        (ElementType::U64, true) => Literal::scalar(u64::MIN),
        (ElementType::U64, false) => Literal::scalar(u64::MAX),
        // e4m3fn has no infinity (it would convert to NaN): its largest value bounds it.
        (ElementType::F8E4M3FN, true) => Literal::scalar(crate::f8::F8E4M3FN::from_bits(0xFE)),
        (ElementType::F8E4M3FN, false) => Literal::scalar(crate::f8::F8E4M3FN::from_bits(0x7E)),
        (t, true) if t.is_float() => Literal::scalar_from_f64(t, f64::NEG_INFINITY),
        (t, false) if t.is_float() => Literal::scalar_from_f64(t, f64::INFINITY),
        _ => return None,
    })
}

impl Builder<'_> {
    /// `indices.shape + [depth]` of `dtype`: `on` where the last coordinate equals the index,
    /// `off` elsewhere. `indices` is an integer array. For integer and pred `dtype`s, `on` and
    /// `off` must be exact values of it; float `dtype`s round them.
    pub fn one_hot(
        &self,
        indices: Value,
        depth: i64,
        dtype: ElementType,
        on: f64,
        off: f64,
    ) -> Result<Value> {
        let op = "one_hot";
        let a = self.array_shape(indices, op)?;
        let (_, hi) = int_bounds(a.ty).ok_or_else(|| {
            shape_err(op, format!("indices must be integers, got {}", a.ty), &[&a])
        })?;
        if depth <= 0 || i128::from(depth - 1) > hi {
            return Err(shape_err(
                op,
                format!("depth {depth} must be > 0 and its indices fit in {}", a.ty),
                &[&a],
            ));
        }
        if !fits(dtype, on) || !fits(dtype, off) {
            return Err(shape_err(
                op,
                format!("on {on} / off {off} are not exact values of {dtype}"),
                &[&a],
            ));
        }
        let mut dims = a.dims.clone();
        dims.push(depth);
        let rank = a.rank() as i64;
        let iota = self.iota(&ArrayShape::new(a.ty, dims.clone()), rank)?;
        let idx = self.broadcast_in_dim(indices, &dims, &(0..rank).collect::<Vec<_>>())?;
        let hit = self.eq(idx, iota)?;
        let out = ArrayShape::new(dtype, dims);
        self.select(hit, self.full(&out, on)?, self.full(&out, off)?)
    }

    /// Index of the largest element along `axis` (removed from the shape), as `index_type`;
    /// ties and NaNs resolve to the first index (see the module docs).
    pub fn argmax(&self, x: Value, axis: i64, index_type: ElementType) -> Result<Value> {
        Ok(self.arg_extreme("argmax", x, axis, index_type, true)?.1)
    }

    /// `(max, argmax)` along `axis` from one variadic reduction (one pass over `x`): the value
    /// is what `reduce_max` gives (NaN when the row holds one), the index as [`Builder::argmax`].
    pub fn max_and_argmax(
        &self,
        x: Value,
        axis: i64,
        index_type: ElementType,
    ) -> Result<(Value, Value)> {
        self.arg_extreme("argmax", x, axis, index_type, true)
    }

    /// Index of the smallest element along `axis` (removed from the shape), as `index_type`;
    /// ties and NaNs resolve to the first index (see the module docs).
    pub fn argmin(&self, x: Value, axis: i64, index_type: ElementType) -> Result<Value> {
        Ok(self.arg_extreme("argmin", x, axis, index_type, false)?.1)
    }

    fn arg_extreme(
        &self,
        op: &'static str,
        x: Value,
        axis: i64,
        index_type: ElementType,
        is_max: bool,
    ) -> Result<(Value, Value)> {
        let a = self.array_shape(x, op)?;
        let ax = axis_index(op, axis, &a)?;
        let init = identity(a.ty, is_max).ok_or_else(|| {
            shape_err(op, format!("needs a numeric operand, got {}", a.ty), &[&a])
        })?;
        let n = a.dims[ax as usize];
        if n == 0 {
            return Err(shape_err(op, format!("axis {axis} has size 0"), &[&a]));
        }
        match int_bounds(index_type) {
            Some((_, hi)) if i128::from(n - 1) <= hi => {}
            _ => {
                return Err(shape_err(
                    op,
                    format!(
                        "index type {index_type} cannot hold index {} of axis {axis}",
                        n - 1
                    ),
                    &[&a],
                ))
            }
        }
        let iota = self.iota(&a.with_type(index_type), ax)?;
        let comp = self.arg_reducer(op, a.ty, index_type, is_max)?;
        // The init pairs the extreme value with index 0: it can only survive the reduction when
        // every element holds that same extreme, and then index 0 is the right answer.
        let inits = [self.constant(init)?, self.scalar_of(index_type, 0.0)?];
        let r = self.reduce(&[x, iota], &inits, &[ax], comp)?;
        Ok((self.get_tuple_element(r, 0)?, self.get_tuple_element(r, 1)?))
    }

    /// `(va, ia, vb, ib) -> (v, i)` picking the winner: the greater value (lesser for argmin),
    /// NaN beating any number, equal values (or two NaNs) going to the smaller index.
    fn arg_reducer(
        &self,
        op: &'static str,
        vt: ElementType,
        it: ElementType,
        is_max: bool,
    ) -> Result<CompId> {
        let c = self.module().builder(format!("{op}_{vt}_{it}"));
        let av = c.parameter(Shape::scalar(vt), "acc_value")?;
        let ai = c.parameter(Shape::scalar(it), "acc_index")?;
        let bv = c.parameter(Shape::scalar(vt), "value")?;
        let bi = c.parameter(Shape::scalar(it), "index")?;
        let better = if is_max { c.gt(av, bv)? } else { c.lt(av, bv)? };
        let a_first = c.lt(ai, bi)?;
        let tie = c.and(c.eq(av, bv)?, a_first)?;
        let a_wins_numbers = c.or(better, tie)?;
        let a_wins = if vt.is_float() {
            // a NaN: a wins unless b is a NaN of smaller index; a number: b must be a number too.
            let (a_nan, b_nan) = (c.ne(av, av)?, c.ne(bv, bv)?);
            let b_num = c.not(b_nan)?;
            let if_a_nan = c.or(b_num, a_first)?;
            let if_a_num = c.and(b_num, a_wins_numbers)?;
            c.select(a_nan, if_a_nan, if_a_num)?
        } else {
            a_wins_numbers
        };
        let v = c.select(a_wins, av, bv)?;
        let i = c.select(a_wins, ai, bi)?;
        c.finish(c.tuple(&[v, i])?)
    }
}

//! Rules of elementwise ops. `g` is the result's cotangent, `x`/`y` the operands, `z` the result.
//!
//! Conventions at kinks and ties (those of JAX):
//! - abs: d|x| = 1 at x = 0 (`select(x >= 0, g, -g)`); sign, floor, ceil, round: zero.
//! - max/min: when x == y each operand gets half of g.
//! - pow: d/dx is 0 where y == 0 (so 0^0 gives 0, not NaN); d/dy uses log(1) where x == 0.
//! - rem: x - y*trunc(x/y), so d/dx = g and d/dy = -g*trunc(x/y).
//! - clamp(lo, x, hi): x gets g where lo < x < hi; lo gets g where lo > x (and lo < hi); hi gets
//!   g where hi < x; at x == lo or x == hi nobody does. Scalar bounds sum their cotangent.
//! - select: the taken branch gets g, the other zeros; the predicate none.
//! - convert: the cotangent converted back to the operand's type (bf16 <-> f32 ...).
use super::Ctx;
use crate::builder::Value;
use crate::error::Result;
use crate::ir::{BinaryOp, UnaryOp};

pub(super) fn unary(c: &Ctx, u: UnaryOp, g: Value) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let (x, z) = (c.x[0], c.out);
    let ty = c.out_arr()?.ty;
    let k = |v: f64| b.scalar_of(ty, v);
    let d = match u {
        UnaryOp::Neg => b.neg(g)?,
        UnaryOp::Abs => b.select(b.ge(x, k(0.0)?)?, g, b.neg(g)?)?,
        UnaryOp::Exp => b.mul(g, z)?,
        UnaryOp::Expm1 => b.mul(g, b.add(z, k(1.0)?)?)?,
        UnaryOp::Log => b.div(g, x)?,
        UnaryOp::Log1p => b.div(g, b.add(x, k(1.0)?)?)?,
        // 1 - tanh^2, from the forward result.
        UnaryOp::Tanh => b.mul(g, b.sub(k(1.0)?, b.mul(z, z)?)?)?,
        UnaryOp::Logistic => b.mul(g, b.mul(z, b.sub(k(1.0)?, z)?)?)?,
        // d sqrt(x) = 1 / (2 sqrt(x)).
        UnaryOp::Sqrt => b.div(g, b.mul(z, k(2.0)?)?)?,
        // d x^-1/2 = -1/2 x^-3/2 = -1/2 rsqrt(x) / x.
        UnaryOp::Rsqrt => b.mul(b.mul(g, k(-0.5)?)?, b.div(z, x)?)?,
        UnaryOp::Erf => {
            let two_over_sqrt_pi = 2.0 / std::f64::consts::PI.sqrt();
            let e = b.exp(b.neg(b.mul(x, x)?)?)?;
            b.mul(g, b.mul(e, k(two_over_sqrt_pi)?)?)?
        }
        UnaryOp::Cos => b.neg(b.mul(g, b.sin(x)?)?)?,
        UnaryOp::Sin => b.mul(g, b.cos(x)?)?,
        UnaryOp::Copy => g,
        UnaryOp::Sign
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::RoundEven
        | UnaryOp::Not
        | UnaryOp::IsFinite => return Ok(vec![None]),
    };
    Ok(vec![Some(d)])
}

pub(super) fn binary(c: &Ctx, op: BinaryOp, g: Value) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let (x, y, z) = (c.x[0], c.x[1], c.out);
    let ty = c.out_arr()?.ty;
    let k = |v: f64| b.scalar_of(ty, v);
    let pair = |dx: &dyn Fn() -> Result<Value>, dy: &dyn Fn() -> Result<Value>| {
        Ok(vec![c.when(0, dx)?, c.when(1, dy)?])
    };
    match op {
        BinaryOp::Add => pair(&|| Ok(g), &|| Ok(g)),
        BinaryOp::Sub => pair(&|| Ok(g), &|| b.neg(g)),
        BinaryOp::Mul => pair(&|| b.mul(g, y), &|| b.mul(x, g)),
        // d(x/y)/dy = -x/y^2 = -z/y.
        BinaryOp::Div => pair(&|| b.div(g, y), &|| b.neg(b.div(b.mul(g, z)?, y)?)),
        BinaryOp::Pow => pair(
            &|| {
                // y x^(y-1), and 0 where y == 0.
                let y_is_0 = b.eq(y, k(0.0)?)?;
                let d = b.mul(y, b.pow(x, b.sub(y, k(1.0)?)?)?)?;
                b.mul(g, b.select(y_is_0, b.zeros_like(y)?, d)?)
            },
            &|| {
                // log(x) z, with log(1) = 0 where x == 0.
                let x_is_0 = b.eq(x, k(0.0)?)?;
                let safe_x = b.select(x_is_0, b.full(&c.arr(0)?, 1.0)?, x)?;
                b.mul(g, b.mul(b.log(safe_x)?, z)?)
            },
        ),
        BinaryOp::Atan2 => {
            // atan2(x, y): d/dx = y / (x^2 + y^2), d/dy = -x / (x^2 + y^2).
            let r2 = || -> Result<Value> { b.add(b.mul(x, x)?, b.mul(y, y)?) };
            pair(&|| b.div(b.mul(g, y)?, r2()?), &|| {
                b.neg(b.div(b.mul(g, x)?, r2()?)?)
            })
        }
        BinaryOp::Max | BinaryOp::Min => pair(&|| balanced(c, g, x, y), &|| balanced(c, g, y, x)),
        BinaryOp::Rem => pair(&|| Ok(g), &|| {
            let q = b.div(x, y)?;
            let trunc = b.mul(b.sign(q)?, b.floor(b.abs(q)?)?)?;
            b.neg(b.mul(g, trunc)?)
        }),
        BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Xor
        | BinaryOp::ShiftLeft
        | BinaryOp::ShiftRightArithmetic
        | BinaryOp::ShiftRightLogical => Ok(c.none()),
    }
}

/// The share of `g` that operand `me` of a max/min gets: all of it where it alone equals the
/// result, half where both do (JAX's `_balanced_eq`), none elsewhere.
fn balanced(c: &Ctx, g: Value, me: Value, other: Value) -> Result<Value> {
    let b = c.b;
    let a = c.out_arr()?;
    let z = c.out;
    let share = b.select(b.eq(other, z)?, b.full(&a, 0.5)?, b.full(&a, 1.0)?)?;
    let share = b.select(b.eq(me, z)?, share, b.full(&a, 0.0)?)?;
    b.mul(g, share)
}

pub(super) fn select(c: &Ctx, g: Value) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let p = c.x[0];
    let zeros = || b.zeros_like(g);
    Ok(vec![
        None,
        c.when(1, || b.select(p, g, zeros()?))?,
        c.when(2, || b.select(p, zeros()?, g))?,
    ])
}

pub(super) fn clamp(c: &Ctx, g: Value) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    let (lo, x, hi) = (c.x[0], c.x[1], c.x[2]);
    // Where `mask` holds, g; elsewhere 0; summed to a scalar for a scalar bound.
    let masked = |k: usize, mask: Value| -> Result<Value> {
        let d = b.select(mask, g, b.zeros_like(g)?)?;
        if c.arr(k)?.is_scalar() && !c.out_arr()?.is_scalar() {
            let all: Vec<i64> = (0..c.out_arr()?.rank() as i64).collect();
            b.reduce_sum(d, &all)
        } else {
            Ok(d)
        }
    };
    Ok(vec![
        c.when(0, || masked(0, b.and(b.gt(lo, x)?, b.lt(lo, hi)?)?))?,
        c.when(1, || masked(1, b.and(b.gt(x, lo)?, b.lt(x, hi)?)?))?,
        c.when(2, || masked(2, b.lt(hi, x)?))?,
    ])
}

pub(super) fn convert(c: &Ctx, g: Value) -> Result<Vec<Option<Value>>> {
    let ty = c.arr(0)?.ty;
    Ok(vec![c.when(0, || c.b.convert(g, ty))?])
}

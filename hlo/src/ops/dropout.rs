//! Dropout with an explicit RNG key (functional: the caller threads the key through steps).
//!
//!   bits, new_key = rng_bit_generator(ThreeFry, key, u32[x.dims])
//!   keep = bits < t,   t = round((1 - rate) * 2^32)   (an unsigned compare, clamped to u32::MAX)
//!   y    = keep ? x * (1 / (1 - rate)) : 0
//!
//! Each element is kept with probability t / 2^32 = 1 - rate (to within 2^-32), so E[y] = x up to
//! the rounding of the scale 1/(1 - rate) to x's type. `rate == 0` returns `(x, key)` untouched
//! and emits no RNG op.
use super::require_float;
use crate::builder::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::ir::RngAlgorithm;
use crate::shape::ArrayShape;

/// 2^32: the number of values of a u32 random draw.
const TWO_POW_32: f64 = 4_294_967_296.0;

impl Builder<'_> {
    /// Zeroes each element of `x` with probability `rate` (in [0, 1)) and scales the kept ones
    /// by 1/(1 - rate). `key` is the `u64[2]` ThreeFry state; returns `(y, new_key)`.
    pub fn dropout(&self, x: Value, rate: f64, key: Value) -> Result<(Value, Value)> {
        let op = "dropout";
        let a = self.array_shape(x, op)?;
        let k = self.array_shape(key, op)?;
        require_float(op, &a)?;
        if !(0.0..1.0).contains(&rate) {
            return Err(shape_err(
                op,
                format!("rate must be in [0, 1), got {rate}"),
                &[&a],
            ));
        }
        let key_shape = ArrayShape::new(ElementType::U64, vec![2]);
        if k != key_shape {
            return Err(shape_err(
                op,
                format!("key must be the ThreeFry state {key_shape}"),
                &[&a, &k],
            ));
        }
        if rate == 0.0 {
            return Ok((x, key));
        }
        let keep_prob = 1.0 - rate;
        let bits_shape = a.with_type(ElementType::U32);
        let r = self.rng_bit_generator(RngAlgorithm::ThreeFry, key, &bits_shape)?;
        let new_key = self.get_tuple_element(r, 0)?;
        let bits = self.get_tuple_element(r, 1)?;
        let threshold = (keep_prob * TWO_POW_32).round().min(f64::from(u32::MAX)) as u32;
        let keep = self.lt(bits, self.scalar(threshold)?)?;
        let scaled = self.mul(x, self.scalar_of(a.ty, 1.0 / keep_prob)?)?;
        let y = self.select(keep, scaled, self.zeros_like(x)?)?;
        Ok((y, new_key))
    }
}

//! Dropout with an explicit RNG key (functional: the caller threads the key through steps).
//!
//! The key is a `u64[2]` state: word 0 selects the stream, word 1 is a counter. Each element's
//! random word is a counter-based hash of (key, counter + its flat index):
//!
//!   s     = triple32(a ^ triple32(b ^ triple32(d)))      (a, b = key word 0's low/high halves,
//!                                                         d = word 1's high half; a scalar)
//!   r[i]  = triple32((c + i) ^ s)                        (c = word 1's low half, i = flat index)
//!   keep  = r[i] < t,   t = round((1 - rate) * 2^32)     (clamped to u32::MAX)
//!   y     = keep ? x * (1 / (1 - rate)) : 0
//!   new key = [word 0, word 1 + n]                       (n = x's element count)
//!
//! triple32 is Chris Wellons' 32-bit integer hash (hash-prospector: three xorshift-multiply
//! rounds, a bijection with near-ideal avalanche). The mask is a few integer ops per element on
//! an iota, so XLA fuses it into the select in the forward pass and recomputes it in the backward
//! pass: nothing of it goes through memory (rng-bit-generator's words, and the keep mask, did;
//! that cost ~7 ms of a 45 ms BERT-base seq-384 step on an H100, ThreeFry or Philox alike). It
//! is deterministic given the key and bit-identical on every backend. Each element is kept with
//! probability t / 2^32, 1 - rate to within 2^-32, so E[y] = x up to the rounding of the scale
//! 1/(1 - rate) to x's type. Streams of different word-0 keys are unrelated; keys that differ
//! only in the counter give shifted streams (as counter-based generators do), which the callers
//! avoid by threading the returned key. `rate == 0` returns `(x, key)` untouched.
//!
//! [`DropoutBits::Rng`] draws the words with XLA's rng-bit-generator instead (same keep rule).
use super::require_float;
use crate::builder::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::ir::RngAlgorithm;
use crate::shape::ArrayShape;

/// Where dropout's random words come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DropoutBits {
    /// The fused counter-based hash of the module docs.
    #[default]
    Hash,
    /// XLA's rng-bit-generator with this algorithm, one u32 per element.
    Rng(RngAlgorithm),
}

impl Builder<'_> {
    /// Zeroes each element of `x` with probability `rate` (in [0, 1)) and scales the kept ones
    /// by 1/(1 - rate). `key` is the `u64[2]` RNG state; returns `(y, new_key)`.
    pub fn dropout(&self, x: Value, rate: f64, key: Value) -> Result<(Value, Value)> {
        self.dropout_with(x, rate, key, DropoutBits::default())
    }

    /// [`Builder::dropout`] with the random words drawn as `how` says.
    pub fn dropout_with(
        &self,
        x: Value,
        rate: f64,
        key: Value,
        how: DropoutBits,
    ) -> Result<(Value, Value)> {
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
                format!("key must be the RNG state {key_shape}"),
                &[&a, &k],
            ));
        }
        if rate == 0.0 {
            return Ok((x, key));
        }
        let keep_prob = 1.0 - rate;
        let (words, new_key) = match how {
            DropoutBits::Hash => self.hash_words(&a, key)?,
            DropoutBits::Rng(alg) => {
                let r = self.rng_bit_generator(alg, key, &a.with_type(ElementType::U32))?;
                (self.get_tuple_element(r, 1)?, self.get_tuple_element(r, 0)?)
            }
        };
        let t = (keep_prob * 4_294_967_296.0)
            .round()
            .min(f64::from(u32::MAX)) as u32;
        let keep = self.lt(words, self.scalar(t)?)?;
        let scaled = self.mul(x, self.scalar_of(a.ty, 1.0 / keep_prob)?)?;
        let y = self.select(keep, scaled, self.zeros_like(x)?)?;
        Ok((y, new_key))
    }

    /// u32 words of x's shape, r[i] = triple32((c + i) ^ s), and the advanced key.
    fn hash_words(&self, a: &ArrayShape, key: Value) -> Result<(Value, Value)> {
        let n: i64 = a.dims.iter().product();
        if n > i64::from(u32::MAX) {
            return Err(shape_err(
                "dropout",
                "more than 2^32 - 1 elements: split x",
                &[a],
            ));
        }
        let (u32t, u64t) = (ElementType::U32, ElementType::U64);
        let word = |i: i64| -> Result<Value> {
            let w = self.slice_in_dim(key, i, i + 1, 0)?;
            self.reshape(w, &[])
        };
        let (w0, w1) = (word(0)?, word(1)?);
        let lo = |w: Value| self.convert(w, u32t);
        let hi = |w: Value| self.convert(self.shift_right_logical(w, self.scalar(32u64)?)?, u32t);
        let s = self.triple32(hi(w1)?)?;
        let s = self.triple32(self.xor(hi(w0)?, s)?)?;
        let s = self.triple32(self.xor(lo(w0)?, s)?)?;
        let flat = ArrayShape::new(u32t, vec![n.max(1)]);
        let i = self.reshape(self.iota(&flat, 0)?, &a.dims)?;
        let ctr = self.add(i, self.broadcast_in_dim(lo(w1)?, &a.dims, &[])?)?;
        let words = self.triple32(self.xor(ctr, self.broadcast_in_dim(s, &a.dims, &[])?)?)?;
        let w1_next = self.add(w1, self.scalar(n as u64)?)?;
        let new_key =
            self.concatenate(&[self.reshape(w0, &[1])?, self.reshape(w1_next, &[1])?], 0)?;
        debug_assert_eq!(self.element_type(new_key)?, u64t);
        Ok((words, new_key))
    }

    /// Chris Wellons' triple32 integer hash, elementwise on u32.
    fn triple32(&self, x: Value) -> Result<Value> {
        let xs = |x: Value, k: u32| -> Result<Value> {
            self.xor(x, self.shift_right_logical(x, self.scalar(k)?)?)
        };
        let mul = |x: Value, m: u32| self.mul(x, self.scalar(m)?);
        let x = mul(xs(x, 17)?, 0xed5a_d4bb)?;
        let x = mul(xs(x, 11)?, 0xac4c_1b51)?;
        let x = mul(xs(x, 15)?, 0x3184_8bab)?;
        xs(x, 14)
    }
}

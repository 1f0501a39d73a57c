//! softmax, log_softmax and logsumexp, numerically stable: the maximum m over the axis is
//! subtracted before `exp`, so the largest term is exp(0) = 1 and nothing overflows.
//!
//! With m = max(x) over the axis and m0 = (m == -inf ? 0 : m):
//!   softmax(x)     = exp(x - m0) / s,   s = sum(exp(x - m0))
//!   log_softmax(x) = (x - m0) - log(s)
//!   logsumexp(x)   = log(sum(exp(x - mf))) + mf,   mf = (m finite ? m : 0)   (as jax.nn.logsumexp)
//! Edge cases: when m is finite, s >= 1. A fully masked row (all -inf) has s = 0; s is then
//! replaced by 1, so softmax gives a row of zeros (no probability mass, as JAX's `where=` masked
//! softmax) and log_softmax a row of -inf; logsumexp of it is -inf. A NaN in a row makes that
//! row's result NaN (XLA's max propagates NaN); so does +inf for softmax/log_softmax (inf - inf),
//! while logsumexp of a row holding +inf is +inf.
//!
//! The plain forms compute in the input type; the `_f32_stats` forms compute in f32 for bf16/f16
//! inputs (max, exponentials, sums and the normalization) and round once to the input type.
use super::{axes_indices, axis_index, f32_stats_type, require_float};
use crate::builder::{Builder, Value};
use crate::error::Result;

impl Builder<'_> {
    /// exp(x - max) / sum(exp(x - max)) along `axis`, in x's type (see the module docs).
    pub fn softmax(&self, x: Value, axis: i64) -> Result<Value> {
        self.softmax_impl("softmax", x, axis, false, false)
    }

    /// [`Builder::softmax`] computed in f32 for bf16/f16 inputs; the result has x's type.
    pub fn softmax_f32_stats(&self, x: Value, axis: i64) -> Result<Value> {
        self.softmax_impl("softmax", x, axis, true, false)
    }

    /// (x - max) - log(sum(exp(x - max))) along `axis`, in x's type.
    pub fn log_softmax(&self, x: Value, axis: i64) -> Result<Value> {
        self.softmax_impl("log_softmax", x, axis, false, true)
    }

    /// [`Builder::log_softmax`] computed in f32 for bf16/f16 inputs; the result has x's type.
    pub fn log_softmax_f32_stats(&self, x: Value, axis: i64) -> Result<Value> {
        self.softmax_impl("log_softmax", x, axis, true, true)
    }

    /// log(sum(exp(x))) over `axes` (the reduced dims are removed), in x's type.
    pub fn logsumexp(&self, x: Value, axes: &[i64]) -> Result<Value> {
        self.logsumexp_impl(x, axes, false)
    }

    /// [`Builder::logsumexp`] computed in f32 for bf16/f16 inputs; the result has x's type.
    pub fn logsumexp_f32_stats(&self, x: Value, axes: &[i64]) -> Result<Value> {
        self.logsumexp_impl(x, axes, true)
    }

    fn softmax_impl(
        &self,
        op: &'static str,
        x: Value,
        axis: i64,
        f32_stats: bool,
        log: bool,
    ) -> Result<Value> {
        let a = self.array_shape(x, op)?;
        require_float(op, &a)?;
        let ax = [axis_index(op, axis, &a)?];
        let ct = if f32_stats {
            f32_stats_type(a.ty)
        } else {
            a.ty
        };
        let xc = self.convert(x, ct)?;
        let m = self.reduce_max(xc, &ax)?;
        let m0 = self.replace_value(m, f64::NEG_INFINITY, 0.0)?;
        let shifted = self.sub(xc, self.unreduce(m0, &a.dims, &ax)?)?;
        let e = self.exp(shifted)?;
        let s = self.reduce_sum(e, &ax)?;
        let s = self.replace_value(s, 0.0, 1.0)?;
        let y = if log {
            self.sub(shifted, self.unreduce(self.log(s)?, &a.dims, &ax)?)?
        } else {
            self.div(e, self.unreduce(s, &a.dims, &ax)?)?
        };
        self.convert(y, a.ty)
    }

    fn logsumexp_impl(&self, x: Value, axes: &[i64], f32_stats: bool) -> Result<Value> {
        let op = "logsumexp";
        let a = self.array_shape(x, op)?;
        require_float(op, &a)?;
        let ax = axes_indices(op, axes, &a)?;
        let ct = if f32_stats {
            f32_stats_type(a.ty)
        } else {
            a.ty
        };
        let xc = self.convert(x, ct)?;
        let m = self.reduce_max(xc, &ax)?;
        let zero = self.zeros_like(m)?;
        let mf = self.select(self.is_finite(m)?, m, zero)?;
        let e = self.exp(self.sub(xc, self.unreduce(mf, &a.dims, &ax)?)?)?;
        let lse = self.add(self.log(self.reduce_sum(e, &ax)?)?, mf)?;
        self.convert(lse, a.ty)
    }

    /// `v` with every element equal to `from` replaced by `to` (NaN never equals `from`).
    fn replace_value(&self, v: Value, from: f64, to: f64) -> Result<Value> {
        let a = self.array_shape(v, "select")?;
        let hit = self.eq(v, self.scalar_of(a.ty, from)?)?;
        self.select(hit, self.full(&a, to)?, v)
    }
}

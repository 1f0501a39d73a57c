//! mean, population variance and layer normalization.
//!
//!   mean(x, axes)     = sum(x over axes) / n,   n = product of the reduced dims
//!   variance(x, axes) = mean((x - mean(x))^2)   (population/biased, two-pass for stability)
//!   layer_norm(x)     = (x - mu) * rsqrt(var + eps) * gamma + beta   over the last dim
//!
//! mean and variance compute in x's type and remove the reduced dims; n is rounded to x's type
//! (an empty reduction divides 0 by 0 and gives NaN, as NumPy). layer_norm computes its
//! statistics in f32 when x is bf16/f16 and rounds once to x's type at the end.
use super::{axes_indices, f32_stats_type, require_float};
use crate::builder::{Builder, Value};
use crate::error::{shape_err, Result};

impl Builder<'_> {
    /// Arithmetic mean over `axes` (possibly negative; the reduced dims are removed).
    pub fn mean(&self, x: Value, axes: &[i64]) -> Result<Value> {
        let a = self.array_shape(x, "mean")?;
        require_float("mean", &a)?;
        let ax = axes_indices("mean", axes, &a)?;
        self.mean_unchecked(x, &ax)
    }

    /// Population variance mean((x - mean(x))^2) over `axes` (the reduced dims are removed).
    pub fn variance(&self, x: Value, axes: &[i64]) -> Result<Value> {
        let a = self.array_shape(x, "variance")?;
        require_float("variance", &a)?;
        let ax = axes_indices("variance", axes, &a)?;
        let mu = self.mean_unchecked(x, &ax)?;
        let xc = self.sub(x, self.unreduce(mu, &a.dims, &ax)?)?;
        self.mean_unchecked(self.mul(xc, xc)?, &ax)
    }

    /// Layer normalization over the last dimension:
    /// (x - mean) * rsqrt(var + eps) * gamma + beta, with population variance.
    ///
    /// `gamma` and `beta` have shape `[d]` (d = last dim of x) and x's element type, or f32 when
    /// x is bf16/f16 (master weights). Statistics are computed in f32 for bf16/f16 x; the
    /// result has x's shape and type. BERT uses `eps = 1e-12`.
    pub fn layer_norm(&self, x: Value, gamma: Value, beta: Value, eps: f64) -> Result<Value> {
        let op = "layer_norm";
        let a = self.array_shape(x, op)?;
        let g = self.array_shape(gamma, op)?;
        let bt = self.array_shape(beta, op)?;
        require_float(op, &a)?;
        let last = match a.dims.last() {
            Some(&d) => d,
            None => return Err(shape_err(op, "x must have rank >= 1", &[&a])),
        };
        let ct = f32_stats_type(a.ty);
        for p in [&g, &bt] {
            if p.dims != [last] || (p.ty != a.ty && p.ty != ct) {
                return Err(shape_err(
                    op,
                    format!("gamma and beta must be [{last}] of type {} or {ct}", a.ty),
                    &[&a, &g, &bt],
                ));
            }
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(shape_err(
                op,
                format!("eps must be finite and >= 0, got {eps}"),
                &[&a],
            ));
        }
        let ax = [a.rank() as i64 - 1];
        let xf = self.convert(x, ct)?;
        let mu = self.mean_unchecked(xf, &ax)?;
        let xc = self.sub(xf, self.unreduce(mu, &a.dims, &ax)?)?;
        let var = self.mean_unchecked(self.mul(xc, xc)?, &ax)?;
        let inv = self.rsqrt(self.add(var, self.scalar_of(ct, eps)?)?)?;
        let y = self.mul(xc, self.unreduce(inv, &a.dims, &ax)?)?;
        let g = self.broadcast_in_dim(self.convert(gamma, ct)?, &a.dims, &ax)?;
        let b = self.broadcast_in_dim(self.convert(beta, ct)?, &a.dims, &ax)?;
        let out = self.add(self.mul(y, g)?, b)?;
        self.convert(out, a.ty)
    }

    /// sum / n over `ax` (validated, sorted), in x's type.
    fn mean_unchecked(&self, x: Value, ax: &[i64]) -> Result<Value> {
        let a = self.array_shape(x, "mean")?;
        let n: i64 = ax.iter().map(|&d| a.dims[d as usize]).product();
        let s = self.reduce_sum(x, ax)?;
        self.div(s, self.scalar_of(a.ty, n as f64)?)
    }
}

//! Activations: GELU (exact erf form and tanh approximation) and ReLU, in the input type.
//!
//!   gelu_erf(x)  = 0.5 x (1 + erf(x / sqrt(2)))                           (HF "gelu")
//!   gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))        (BERT TF, HF "gelu_new")
//!   relu(x)      = max(x, 0)   (NaN stays NaN: XLA's max propagates NaN)
use super::require_float;
use crate::builder::{Builder, Value};
use crate::error::{shape_err, Result};

impl Builder<'_> {
    /// Exact GELU: 0.5 x (1 + erf(x / sqrt 2)).
    pub fn gelu_erf(&self, x: Value) -> Result<Value> {
        let a = self.array_shape(x, "gelu_erf")?;
        require_float("gelu_erf", &a)?;
        let c = |v: f64| self.scalar_of(a.ty, v);
        let half_x = self.mul(x, c(0.5)?)?;
        let e = self.erf(self.div(x, c(std::f64::consts::SQRT_2)?)?)?;
        self.mul(half_x, self.add(e, c(1.0)?)?)
    }

    /// Tanh-approximated GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    pub fn gelu_tanh(&self, x: Value) -> Result<Value> {
        let a = self.array_shape(x, "gelu_tanh")?;
        require_float("gelu_tanh", &a)?;
        let c = |v: f64| self.scalar_of(a.ty, v);
        let sqrt_2_over_pi = (2.0 / std::f64::consts::PI).sqrt();
        let x3 = self.mul(self.mul(x, x)?, x)?;
        let inner = self.add(x, self.mul(x3, c(0.044715)?)?)?;
        let t = self.tanh(self.mul(inner, c(sqrt_2_over_pi)?)?)?;
        let half_x = self.mul(x, c(0.5)?)?;
        self.mul(half_x, self.add(t, c(1.0)?)?)
    }

    /// max(x, 0), for any numeric type.
    pub fn relu(&self, x: Value) -> Result<Value> {
        let a = self.array_shape(x, "relu")?;
        if a.ty.is_pred() {
            return Err(shape_err(
                "relu",
                "needs a numeric operand, got pred",
                &[&a],
            ));
        }
        self.max(x, self.scalar_of(a.ty, 0.0)?)
    }
}

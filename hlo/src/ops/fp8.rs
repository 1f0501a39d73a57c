//! FP8 quantize-dequantize in the form XLA:GPU's GEMM rewriter turns into cuBLASLt FP8 matmuls
//! (the pattern of flax's `fp8_ops`): a dot whose operands are
//!
//! ```text
//!   multiply(convert(q: f8e4m3fn|f8e5m2 -> T), broadcast(d: T[]))     (then copy/reshape/...)
//! ```
//!
//! becomes `__cublas$lt$matmul$f8` reading `q` directly with `d` as its operand scale. Here
//!
//! ```text
//!   d = convert(1 / scale, T)                          the dequantization scale, in T
//!   q = convert(clamp(convert(x, f32) / convert(d, f32), -max, max), f8)
//! ```
//!
//! with `scale` Transformer Engine's per-tensor scale (f32 scalar, `fp8 = x * scale`) and `T`
//! the compute type (bf16 in training). Quantizing with the same rounded `d` the dequantization
//! multiplies by keeps `qdq(x)` an unbiased rounding of `x`. Clamping saturates (f8 `convert`
//! does not: it overflows to NaN or infinity).
//!
//! [`Builder::fp8_in_qdq`] quantizes a forward operand (e4m3fn) with a straight-through
//! gradient; [`Builder::fp8_out_qdq`] is the identity on a matmul's output whose backward
//! quantizes the incoming cotangent (e5m2) before it reaches the matmul's backward dots. Both
//! hand the step the amax it needs for delayed scaling as the cotangent of `scale` (flax's
//! trick: the "gradient" of the scale is not a derivative but the tensor's `max |x|`).
use crate::autodiff::CustomVjpArgs;
use crate::builder::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::f8::f8_max;

impl Builder<'_> {
    /// `max |x|` over every element, as an f32 scalar (exact: abs and max do not round).
    pub fn fp8_amax(&self, x: Value) -> Result<Value> {
        let a = self.array_shape(x, "fp8_amax")?;
        let all: Vec<i64> = (0..a.rank() as i64).collect();
        let m = self.reduce_max(self.abs(x)?, &all)?;
        self.convert(m, ElementType::F32)
    }

    /// `x` quantized to the f8 type `ty` with per-tensor `scale` and dequantized to `compute`
    /// (see the module docs for the exact ops).
    pub fn fp8_qdq(
        &self,
        x: Value,
        scale: Value,
        ty: ElementType,
        compute: ElementType,
    ) -> Result<Value> {
        let max = self.fp8_check("fp8_qdq", x, scale, ty, compute)?;
        let f32 = ElementType::F32;
        let d = self.div(self.scalar_of(f32, 1.0)?, scale)?;
        let d = self.convert(d, compute)?;
        let dims = self.dims(x)?;
        let d_f32 = self.broadcast_in_dim(self.convert(d, f32)?, &dims, &[])?;
        let scaled = self.div(self.convert(x, f32)?, d_f32)?;
        let clipped = self.clamp(
            self.scalar_of(f32, -max)?,
            scaled,
            self.scalar_of(f32, max)?,
        )?;
        let q = self.convert(clipped, ty)?;
        self.mul(
            self.convert(q, compute)?,
            self.broadcast_in_dim(d, &dims, &[])?,
        )
    }

    /// A forward matmul operand quantize-dequantized to `ty` (e4m3fn in training), result in
    /// `compute`. Gradient: straight through to `x` (converted to its type); the cotangent of
    /// `scale` is `max |x|` (computed in the forward pass), for the step's amax history.
    pub fn fp8_in_qdq(
        &self,
        x: Value,
        scale: Value,
        ty: ElementType,
        compute: ElementType,
    ) -> Result<Value> {
        let qdq = self.fp8_qdq(x, scale, ty, compute)?;
        let amax = self.fp8_amax(x)?;
        let x_ty = self.element_type(x)?;
        self.custom_vjp(
            &[x, scale, amax],
            qdq,
            move |b: &Builder, a: &CustomVjpArgs| {
                Ok(vec![
                    Some(b.convert(a.cotangent, x_ty)?),
                    Some(a.inputs[2]),
                    None,
                ])
            },
        )
    }

    /// The identity on `y` (a matmul's output) whose backward quantize-dequantizes the
    /// incoming cotangent to `ty` (e5m2 in training) with `scale`, in `y`'s type, so the
    /// matmul's backward dots take FP8 operands; the cotangent of `scale` is that
    /// cotangent's `max |g|`.
    pub fn fp8_out_qdq(&self, y: Value, scale: Value, ty: ElementType) -> Result<Value> {
        let y_ty = self.element_type(y)?;
        self.fp8_check("fp8_out_qdq", y, scale, ty, y_ty)?;
        self.custom_vjp(&[y, scale], y, move |b: &Builder, a: &CustomVjpArgs| {
            let g = a.cotangent;
            Ok(vec![
                Some(b.fp8_qdq(g, a.inputs[1], ty, y_ty)?),
                Some(b.fp8_amax(g)?),
            ])
        })
    }

    /// Checks the arguments of a qdq; returns the f8 type's largest finite value.
    fn fp8_check(
        &self,
        op: &'static str,
        x: Value,
        scale: Value,
        ty: ElementType,
        compute: ElementType,
    ) -> Result<f64> {
        let xa = self.array_shape(x, op)?;
        let sa = self.array_shape(scale, op)?;
        let Some(max) = f8_max(ty) else {
            return Err(shape_err(op, format!("{ty} is not an f8 type"), &[&xa]));
        };
        if !xa.ty.is_float() || xa.ty.is_f8() || !compute.is_float() || compute.is_f8() {
            return Err(shape_err(
                op,
                format!(
                    "quantizes a wider float and dequantizes to one, got {} -> {compute}",
                    xa.ty
                ),
                &[&xa],
            ));
        }
        if !sa.is_scalar() || sa.ty != ElementType::F32 {
            return Err(shape_err(op, "the scale must be an f32 scalar", &[&sa]));
        }
        Ok(max)
    }
}

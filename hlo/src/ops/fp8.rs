//! FP8 matmuls in the form XLA:GPU turns into cuBLASLt FP8 GEMMs (`__cublas$lt$matmul$f8`), with
//! Transformer Engine's per-tensor scales (`fp8 = x * scale`, an f32 scalar per tensor):
//!
//! ```text
//!   q = convert(clamp(convert(x, f32) * scale, -max, max), f8)          quantize (saturating)
//!   y = convert(divide(dot(qa, qb) -> f32, broadcast(sa * sb)), T)      [`Builder::fp8_scaled_dot`]
//! ```
//!
//! The dot reads the f8 tensors themselves and accumulates in f32; the scales are undone on its
//! result (cuBLASLt's `D = scale_a * scale_b * (A B)`). Why this form, and not flax's older
//! quantize-dequantize `dot(convert(q, T) * broadcast(1 / scale), ...)` (kept as
//! [`Builder::fp8_qdq`] for comparisons): in the optimized module XLA:GPU made of that form
//! (jax-cuda13-pjrt 0.11.2, BERT-base) no f8 value was left at all, because XLA's
//! `SimplifyFPConversions` (xla/hlo/transforms/simplifiers/simplify_fp_conversions.cc), run by
//! default (`xla_allow_excess_precision`) in every computation, folds any chain of float converts
//! `A -> B -> C` into `A -> C`, f8 included: the quantize/dequantize pair
//! `convert(convert(x, f8), bf16)` becomes `convert(x, bf16)`. With the dot on the f8 values there
//! is no such pair. The rest of the form follows what the GEMM rewriter
//! (xla/service/gpu/transforms/gemm_rewriter.cc) and the passes before it need:
//!
//! - `MatchFp8Param` takes an operand that "is FP8" directly; `CreateF8CustomCall` then wants
//!   one operand e4m3fn (e5m2 x e5m2 has no kernel), one contracting and one non-contracting
//!   dimension per operand, and a bf16, f16 or f32 result. It transposes and pads the operands
//!   into cuBLASLt's row-major A / column-major B, dims multiple of 16, itself.
//! - `HandleDivide` / `F8ScaleD` fold `divide(gemm, broadcast(scalar))` into the GEMM's scale.
//!   It is a divide, not a multiply, because `GemmFusion` (gemm_fusion.cc), which runs before the
//!   rewriter, hands a dot to Triton as soon as its fusion would hold more than parameters,
//!   bitcasts and reshapes (`CreateDotFusion`'s "pure matmul" test): output ops it fuses are
//!   those `legacy_triton::IsDistributiveOverAddition` lists (multiply, convert, copy, ...), and
//!   divide is not among them.
//!
//! [`Builder::fp8_matmul`] is the dense layer: e4m3fn input and weight, and a backward pass that
//! quantizes the output's gradient to e5m2 for its two dots. It hands the step each tensor's amax
//! for delayed scaling as the cotangent of that tensor's scale (flax's trick: the "gradient" of
//! a scale is not a derivative but the tensor's `max |x|`).
use crate::autodiff::CustomVjpArgs;
use crate::builder::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::f8::f8_max;
use crate::ir::{DotDims, Precision};

impl Builder<'_> {
    /// `max |x|` over every element, as an f32 scalar (exact: abs and max do not round).
    pub fn fp8_amax(&self, x: Value) -> Result<Value> {
        let a = self.array_shape(x, "fp8_amax")?;
        let all: Vec<i64> = (0..a.rank() as i64).collect();
        let m = self.reduce_max(self.abs(x)?, &all)?;
        self.convert(m, ElementType::F32)
    }

    /// `x` quantized to the f8 type `ty` with Transformer Engine's per-tensor `scale` (an f32
    /// scalar): `convert(clamp(convert(x, f32) * scale, -max, max), ty)`. Clamping saturates (an
    /// f8 `convert` does not: it overflows to NaN or infinity).
    pub fn fp8_quantize(&self, x: Value, scale: Value, ty: ElementType) -> Result<Value> {
        let max = self.fp8_check("fp8_quantize", x, scale, ty, ElementType::F32)?;
        let f32 = ElementType::F32;
        let dims = self.dims(x)?;
        let scaled = self.mul(
            self.convert(x, f32)?,
            self.broadcast_in_dim(scale, &dims, &[])?,
        )?;
        let clipped = self.clamp(
            self.scalar_of(f32, -max)?,
            scaled,
            self.scalar_of(f32, max)?,
        )?;
        self.convert(clipped, ty)
    }

    /// The matmul of two quantized tensors with the scales they were quantized with undone:
    /// `dot(qa, qb)` accumulated in `acc` (f32, or the result type to have the GEMM write it),
    /// divided by `broadcast(sa * sb)` (the product in f32, then in `acc`), converted to `out`.
    /// `dims` has one contracting dimension per operand and no batch dimensions.
    #[allow(clippy::too_many_arguments)]
    pub fn fp8_scaled_dot(
        &self,
        qa: Value,
        qb: Value,
        dims: DotDims,
        sa: Value,
        sb: Value,
        acc: ElementType,
        out: ElementType,
    ) -> Result<Value> {
        let (a, b) = (
            self.array_shape(qa, "fp8_scaled_dot")?,
            self.array_shape(qb, "fp8_scaled_dot")?,
        );
        let (ta, tb) = (
            self.array_shape(sa, "fp8_scaled_dot")?,
            self.array_shape(sb, "fp8_scaled_dot")?,
        );
        let f32 = ElementType::F32;
        if !a.ty.is_f8() || !b.ty.is_f8() {
            return Err(shape_err(
                "fp8_scaled_dot",
                "operands must be f8",
                &[&a, &b],
            ));
        }
        if a.ty == ElementType::F8E5M2 && b.ty == ElementType::F8E5M2 {
            return Err(shape_err(
                "fp8_scaled_dot",
                "one operand must be f8e4m3fn (cuBLASLt has no e5m2 x e5m2 GEMM)",
                &[&a, &b],
            ));
        }
        if a.rank() != 2 || b.rank() != 2 || dims.lhs_contracting.len() != 1 {
            return Err(shape_err(
                "fp8_scaled_dot",
                "2-D operands with one contracting dimension each",
                &[&a, &b],
            ));
        }
        if !ta.is_scalar() || ta.ty != f32 || !tb.is_scalar() || tb.ty != f32 {
            return Err(shape_err(
                "fp8_scaled_dot",
                "the scales must be f32 scalars",
                &[&ta, &tb],
            ));
        }
        if !matches!(acc, ElementType::F32 | ElementType::Bf16 | ElementType::F16)
            || !out.is_float()
            || out.is_f8()
        {
            return Err(shape_err(
                "fp8_scaled_dot",
                format!(
                    "accumulates in f32, bf16 or f16 and returns a wider float, got {acc} -> {out}"
                ),
                &[&a, &b],
            ));
        }
        let d = self.dot_general(qa, qb, dims, [Precision::Default; 2], Some(acc))?;
        let s = self.convert(self.mul(sa, sb)?, acc)?;
        let y = self.div(d, self.broadcast_in_dim(s, &self.dims(d)?, &[])?)?;
        self.convert(y, out)
    }

    /// The FP8 dense matmul `x[m, k] w[k, n]` with `scales` `[sx, sw, sg]` for x, w and the
    /// output's gradient: x and w quantized to e4m3fn, [`Builder::fp8_scaled_dot`] accumulating
    /// in `acc`, result in `out`. Its gradient quantizes the output's cotangent g to e5m2 and
    /// computes `dx = g w^T` (in x's type) and `dw = x^T g` (in w's type) as two more such dots on
    /// the forward pass's quantized x and w; the cotangents of the three scales are the amaxes
    /// of x, w and g.
    pub fn fp8_matmul(
        &self,
        x: Value,
        w: Value,
        scales: [Value; 3],
        acc: ElementType,
        out: ElementType,
    ) -> Result<Value> {
        let (xa, wa) = (
            self.array_shape(x, "fp8_matmul")?,
            self.array_shape(w, "fp8_matmul")?,
        );
        if xa.rank() != 2 || wa.rank() != 2 || xa.dims[1] != wa.dims[0] {
            return Err(shape_err(
                "fp8_matmul",
                "needs x [m, k] and w [k, n]",
                &[&xa, &wa],
            ));
        }
        let [sx, sw, sg] = scales;
        let (e4, e5) = (ElementType::F8E4M3FN, ElementType::F8E5M2);
        self.fp8_check("fp8_matmul", x, sg, e5, out)?;
        let qx = self.fp8_quantize(x, sx, e4)?;
        let qw = self.fp8_quantize(w, sw, e4)?;
        let (ax, aw) = (self.fp8_amax(x)?, self.fp8_amax(w)?);
        let contract = |l: i64, r: i64| DotDims {
            lhs_contracting: vec![l],
            rhs_contracting: vec![r],
            ..Default::default()
        };
        let y = self.fp8_scaled_dot(qx, qw, contract(1, 0), sx, sw, acc, out)?;
        let (x_ty, w_ty) = (xa.ty, wa.ty);
        self.custom_vjp(
            &[x, w, sx, sw, sg, ax, aw, qx, qw],
            y,
            move |b: &Builder, a: &CustomVjpArgs| {
                let [_, _, sx, sw, sg, ax, aw, qx, qw] = a.inputs else {
                    unreachable!("fp8_matmul declares nine inputs");
                };
                let g = a.cotangent;
                let qg = b.fp8_quantize(g, *sg, e5)?;
                // dx = g w^T: [m, n] x [k, n] contracting n; dw = x^T g: [m, k] x [m, n]
                // contracting m. Both e5m2 x e4m3fn in some order, as cuBLASLt allows.
                let dx = b.fp8_scaled_dot(qg, *qw, contract(1, 1), *sg, *sw, acc, x_ty)?;
                let dw = b.fp8_scaled_dot(*qx, qg, contract(0, 0), *sx, *sg, acc, w_ty)?;
                Ok(vec![
                    Some(dx),
                    Some(dw),
                    Some(*ax),
                    Some(*aw),
                    Some(b.fp8_amax(g)?),
                    None,
                    None,
                    None,
                    None,
                ])
            },
        )
    }

    /// `x` quantized to the f8 type `ty` with per-tensor `scale` and dequantized to `compute`,
    /// as flax's older fp8 ops and XLA's GEMM-rewriter tests write it:
    ///
    /// ```text
    ///   d = convert(1 / scale, compute)                          the dequantization scale
    ///   q = convert(clamp(convert(x, f32) / convert(d, f32), -max, max), ty)
    ///   result = convert(q, compute) * broadcast(d)
    /// ```
    ///
    /// A matmul on such operands does NOT stay FP8 on XLA:GPU (see the module docs: the convert
    /// pair around `q` is folded away); it is kept as the `qdq` form of the model's hidden
    /// `TPU_RUN_FP8_FORM` switch, to measure exactly that.
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
    /// `compute` (the `qdq` form, see [`Builder::fp8_qdq`]). Gradient: straight through to `x` (converted to its type); the cotangent of
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
    /// incoming cotangent to `ty` (e5m2 in training) with `scale`, in `y`'s type, for the
    /// matmul's backward dots (the `qdq` form, see [`Builder::fp8_qdq`]); the cotangent of `scale` is that
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

    /// Checks the arguments of a quantization of `x` to `ty` with `scale` (and of a result in
    /// `compute`); returns the f8 type's largest finite value.
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

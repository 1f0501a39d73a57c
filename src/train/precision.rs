//! Mixed precision: f32 master weights, a compute type the loss function sees (f32, bf16 or
//! f16), helpers that keep the numerically delicate parts in f32, and loss scaling.
//!
//! Under a bf16/f16 policy the step converts each f32 master parameter to the compute type before
//! the loss function runs; the gradient flows back through the convert, so it arrives in f32.
//! The helpers give the model the usual recipe: matmuls with 16-bit inputs and f32 accumulation
//! (dot_general's preferred type), layer-norm and softmax statistics in f32, the loss in f32.
//!
//! Loss scaling multiplies the loss by `scale` before differentiating (the backward pass then
//! runs on scaled values, which keeps small f16 gradients from flushing to zero) and divides the
//! gradients by `scale` in f32. Dynamic scaling (as Keras' `LossScaleOptimizer`): after
//! `growth_interval` consecutive steps with finite gradients the scale is multiplied by `factor`;
//! a step with a non-finite gradient is skipped (parameters, optimizer state and the step count
//! stay as they were) and the scale is divided by `factor` (not below `min`). All of it happens
//! inside the compiled step.
use anyhow::{bail, Result};
use hlo::ir::{DotDims, Precision};
use hlo::{ArrayShape, Builder, ElementType, Value};

/// What the loss function computes in, and how the loss is scaled.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// F32, Bf16 or F16.
    pub compute: ElementType,
    pub loss_scale: LossScale,
    /// Compute the helpers' dots as f32 x f32 from inputs rounded to the compute type, instead
    /// of compute-type dots with an f32 result. The forward numbers are the same (a product of
    /// two bf16/f16 values is exact in f32, and both accumulate in f32); the backward dots then
    /// also run in f32. For backends without mixed-precision dots: XLA:CPU's DotThunk has no
    /// bf16 x bf16 -> f32 kernel and fails at run time on some backward dots.
    pub upcast_dots: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LossScale {
    None,
    Static(f64),
    Dynamic(DynamicLossScale),
}

#[derive(Clone, Debug, PartialEq)]
pub struct DynamicLossScale {
    pub initial: f64,
    pub growth_interval: u32,
    pub factor: f64,
    pub min: f64,
}

impl Default for DynamicLossScale {
    /// Keras' defaults: 2^15, doubled every 2000 good steps, halved on overflow, at least 1.
    fn default() -> Self {
        Self {
            initial: 32768.0,
            growth_interval: 2000,
            factor: 2.0,
            min: 1.0,
        }
    }
}

/// One f32 or s32 scalar of loss-scale state carried between steps.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleState {
    pub name: &'static str,
    pub shape: ArrayShape,
    pub initial: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Self::f32()
    }
}

impl Policy {
    pub fn f32() -> Self {
        Self {
            compute: ElementType::F32,
            loss_scale: LossScale::None,
            upcast_dots: false,
        }
    }

    /// bf16 compute; bf16 has f32's exponent range, so no loss scaling is needed.
    pub fn bf16() -> Self {
        Self {
            compute: ElementType::Bf16,
            loss_scale: LossScale::None,
            upcast_dots: false,
        }
    }

    /// f16 compute with dynamic loss scaling.
    pub fn f16() -> Self {
        Self {
            compute: ElementType::F16,
            loss_scale: LossScale::Dynamic(DynamicLossScale::default()),
            upcast_dots: false,
        }
    }

    /// This policy with [`Policy::upcast_dots`] set (for XLA:CPU).
    pub fn with_upcast_dots(mut self) -> Self {
        self.upcast_dots = true;
        self
    }

    pub fn check(&self) -> Result<()> {
        if !matches!(
            self.compute,
            ElementType::F32 | ElementType::Bf16 | ElementType::F16
        ) {
            bail!(
                "precision policy: compute type must be f32, bf16 or f16, got {}",
                self.compute
            );
        }
        match &self.loss_scale {
            LossScale::None => {}
            LossScale::Static(s) => {
                if !(s.is_finite() && *s > 0.0) {
                    bail!("precision policy: a static loss scale must be finite and > 0, got {s}");
                }
            }
            LossScale::Dynamic(d) => {
                let ok = d.initial.is_finite()
                    && d.initial >= d.min
                    && d.min > 0.0
                    && d.factor.is_finite()
                    && d.factor > 1.0
                    && d.growth_interval > 0;
                if !ok {
                    bail!(
                        "precision policy: dynamic loss scale needs initial >= min > 0, factor > 1 \
                         and growth_interval > 0, got {d:?}"
                    );
                }
            }
        }
        Ok(())
    }

    /// `x` converted to the compute type when it is floating point; other types are unchanged.
    pub fn cast(&self, b: &Builder, x: Value) -> Result<Value> {
        if b.element_type(x)?.is_float() {
            Ok(b.convert(x, self.compute)?)
        } else {
            Ok(x)
        }
    }

    /// `x[..., k] @ w[k, n]` with inputs in the compute type, accumulated in f32 and rounded once
    /// to the compute type.
    pub fn matmul(&self, b: &Builder, x: Value, w: Value) -> Result<Value> {
        let y = self.matmul_f32(b, x, w)?;
        Ok(b.convert(y, self.compute)?)
    }

    /// `x[..., k] @ w[k, n]` with inputs in the compute type and an f32 result (for logits that
    /// feed the loss).
    pub fn matmul_f32(&self, b: &Builder, x: Value, w: Value) -> Result<Value> {
        let rank = b.dims(x)?.len() as i64;
        if rank < 1 || b.dims(w)?.len() != 2 {
            bail!(
                "precision matmul: needs x of rank >= 1 and a rank-2 w, got {:?} and {:?}",
                b.dims(x)?,
                b.dims(w)?
            );
        }
        let dims = DotDims {
            lhs_contracting: vec![rank - 1],
            rhs_contracting: vec![0],
            ..Default::default()
        };
        self.dot_general(b, x, w, dims)
    }

    /// A general dot of `x` and `y` rounded to the compute type, accumulated in f32, with an f32
    /// result (see [`Policy::upcast_dots`] for how it is emitted).
    pub fn dot_general(&self, b: &Builder, x: Value, y: Value, dims: DotDims) -> Result<Value> {
        let (x, y) = (self.cast(b, x)?, self.cast(b, y)?);
        let f32 = ElementType::F32;
        let p = [Precision::Default; 2];
        if self.upcast_dots || self.compute == f32 {
            let (x, y) = (b.convert(x, f32)?, b.convert(y, f32)?);
            Ok(b.dot_general(x, y, dims, p, None)?)
        } else {
            Ok(b.dot_general(x, y, dims, p, Some(f32))?)
        }
    }

    /// Layer norm over the last dim with f32 statistics; the result is in the compute type.
    pub fn layer_norm(
        &self,
        b: &Builder,
        x: Value,
        gamma: Value,
        beta: Value,
        eps: f64,
    ) -> Result<Value> {
        let x = self.cast(b, x)?;
        Ok(b.layer_norm(x, gamma, beta, eps)?)
    }

    /// Softmax with f32 max/exp/sum; the result is in the compute type.
    pub fn softmax(&self, b: &Builder, x: Value, axis: i64) -> Result<Value> {
        let x = self.cast(b, x)?;
        Ok(b.softmax_f32_stats(x, axis)?)
    }

    /// `x` in f32 (for the loss and for statistics).
    pub fn to_f32(&self, b: &Builder, x: Value) -> Result<Value> {
        Ok(b.convert(x, ElementType::F32)?)
    }
}

impl LossScale {
    /// The state this loss scale carries between steps (inputs and outputs of the step).
    pub fn state(&self) -> Vec<ScaleState> {
        match self {
            LossScale::Dynamic(d) => vec![
                ScaleState {
                    name: "loss_scale",
                    shape: ArrayShape::scalar(ElementType::F32),
                    initial: d.initial,
                },
                ScaleState {
                    name: "loss_scale_good_steps",
                    shape: ArrayShape::scalar(ElementType::S32),
                    initial: 0.0,
                },
            ],
            _ => vec![],
        }
    }

    /// The f32 scale of this step, from the state values (in [`LossScale::state`] order).
    pub fn scale(&self, b: &Builder, state: &[Value]) -> Result<Value> {
        match self {
            LossScale::None => Ok(b.scalar_of(ElementType::F32, 1.0)?),
            LossScale::Static(s) => Ok(b.scalar_of(ElementType::F32, *s)?),
            LossScale::Dynamic(_) => state
                .first()
                .copied()
                .ok_or_else(|| anyhow::anyhow!("dynamic loss scale: the state is missing")),
        }
    }

    /// The next state given whether this step's gradients were all finite.
    pub fn next_state(&self, b: &Builder, state: &[Value], finite: Value) -> Result<Vec<Value>> {
        let LossScale::Dynamic(d) = self else {
            return Ok(vec![]);
        };
        let [scale, good] = state else {
            bail!(
                "dynamic loss scale: expected 2 state values, got {}",
                state.len()
            );
        };
        let f = |v: f64| b.scalar_of(ElementType::F32, v);
        let i = |v: f64| b.scalar_of(ElementType::S32, v);
        let good1 = b.add(*good, i(1.0)?)?;
        let grow = b.ge(good1, i(f64::from(d.growth_interval))?)?;
        let grown = b.mul(*scale, f(d.factor)?)?;
        let grown = b.select(b.is_finite(grown)?, grown, *scale)?;
        let scale_ok = b.select(grow, grown, *scale)?;
        let good_ok = b.select(grow, i(0.0)?, good1)?;
        let shrunk = b.max(b.div(*scale, f(d.factor)?)?, f(d.min)?)?;
        Ok(vec![
            b.select(finite, scale_ok, shrunk)?,
            b.select(finite, good_ok, i(0.0)?)?,
        ])
    }

    pub fn is_dynamic(&self) -> bool {
        matches!(self, LossScale::Dynamic(_))
    }
}

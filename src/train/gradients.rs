//! Where a step's gradients come from: reverse-mode autodiff of a loss function
//! ([`autodiff`]), or a hand-written gradient ([`manual_gradients`], for models whose gradient
//! is known in closed form and for testing the step without the autodiff engine).
use super::{Batch, Params};
use anyhow::{bail, Result};
use hlo::{Builder, ElementType, Value};

/// The loss (a scalar), named scalar metrics and one gradient per parameter.
#[derive(Clone, Debug)]
pub struct LossAndGrads {
    pub loss: Value,
    pub metrics: Vec<(String, Value)>,
    pub grads: Vec<Value>,
}

/// Emits the loss, the metrics and the gradient of `seed * loss` with respect to each parameter.
pub trait GradientSource {
    /// `wrt` are the values to differentiate with respect to: the f32 master parameters (entry
    /// or loop values), then under FP8 the step's scales, whose "gradients" are the amaxes
    /// delayed scaling records (see [`super::fp8`]). `params` are the values the loss function
    /// sees: the masters cast to the compute type, in the same order, then the scales by name.
    /// `seed` is an f32 scalar (the loss scale, 1 without scaling). Gradients may come back in
    /// the compute type; the step converts them to f32.
    fn loss_and_grads(
        &self,
        b: &Builder,
        wrt: &[Value],
        params: &Params,
        batch: &Batch,
        seed: Value,
    ) -> Result<LossAndGrads>;
}

/// A hand-written gradient: `f(b, params, batch, seed)` returns the loss, the metrics and
/// d(seed * loss)/d(params) (gradients with respect to `params` as the function sees them).
pub struct ManualGradients<F>(F);

pub fn manual_gradients<F>(f: F) -> ManualGradients<F>
where
    F: Fn(&Builder, &Params, &Batch, Value) -> Result<LossAndGrads>,
{
    ManualGradients(f)
}

impl<F> GradientSource for ManualGradients<F>
where
    F: Fn(&Builder, &Params, &Batch, Value) -> Result<LossAndGrads>,
{
    fn loss_and_grads(
        &self,
        b: &Builder,
        _wrt: &[Value],
        params: &Params,
        batch: &Batch,
        seed: Value,
    ) -> Result<LossAndGrads> {
        (self.0)(b, params, batch, seed)
    }
}

/// The loss function's result: a float scalar loss and named float scalar metrics.
pub type LossAndMetrics = (Value, Vec<(String, Value)>);

/// Gradients by reverse-mode autodiff of a loss function `f(b, params, batch)`.
pub struct Autodiff<F>(F);

/// Differentiates `f` with [`Builder::vjp`]: the backward pass is appended to the same
/// computation, with respect to the f32 master parameters (so under a bf16/f16 policy the
/// gradient flows back through the casts and arrives in f32) and any FP8 scales, seeded with
/// the loss scale.
pub fn autodiff<F>(f: F) -> Autodiff<F>
where
    F: Fn(&Builder, &Params, &Batch) -> Result<LossAndMetrics>,
{
    Autodiff(f)
}

impl<F> GradientSource for Autodiff<F>
where
    F: Fn(&Builder, &Params, &Batch) -> Result<LossAndMetrics>,
{
    fn loss_and_grads(
        &self,
        b: &Builder,
        wrt: &[Value],
        params: &Params,
        batch: &Batch,
        seed: Value,
    ) -> Result<LossAndGrads> {
        let (loss, metrics) = (self.0)(b, params, batch)?;
        let a = b.array_shape(loss, "loss")?;
        if !a.is_scalar() || !a.ty.is_float() {
            bail!("the loss function must return a floating-point scalar loss, got {a}");
        }
        let loss = b.convert(loss, ElementType::F32)?;
        let grads = b.vjp(&[loss], &[seed], wrt)?;
        Ok(LossAndGrads {
            loss,
            metrics,
            grads,
        })
    }
}

//! Optimizers as HLO. Each emits the update of one parameter tensor from its gradient, its state
//! slots, the learning rate and the step; the step builder calls it once per parameter.
//!
//! All state slots are f32 arrays of the parameter's shape, zero at the start. `step` is the s32
//! number of updates applied before this one (0 on the first), so bias corrections use
//! `t = step + 1`, as PyTorch and optax count.
mod adam_weight_decay;
mod adamw;
mod kind;
mod lamb;
mod sgd;

pub use adam_weight_decay::AdamWeightDecay;
pub use adamw::AdamW;
pub use kind::OptimizerKind;
pub use lamb::Lamb;
pub use sgd::Sgd;

use anyhow::{bail, Result};
use hlo::{Builder, ElementType, Value};

/// The inputs of one parameter's update.
#[derive(Clone, Copy, Debug)]
pub struct UpdateInputs<'a> {
    /// The parameter's name (weight-decay exclusions match against it).
    pub name: &'a str,
    /// f32 master weights.
    pub param: Value,
    /// f32 gradient (already unscaled and clipped).
    pub grad: Value,
    /// The state slots, in [`Optimizer::slot_names`] order.
    pub slots: &'a [Value],
    /// f32 scalar learning rate.
    pub lr: Value,
    /// s32 scalar: updates applied before this one.
    pub step: Value,
}

/// A parameter's new value and new state slots.
#[derive(Clone, Debug)]
pub struct Updated {
    pub param: Value,
    pub slots: Vec<Value>,
}

/// An optimizer emitted as HLO, one parameter tensor at a time.
pub trait Optimizer: Send + Sync {
    /// A short name for errors and logs.
    fn name(&self) -> &'static str;
    /// Names of the per-parameter state slots (each f32, the parameter's shape, zero at start).
    fn slot_names(&self) -> &'static [&'static str];
    /// Emits the update of one parameter.
    fn update(&self, b: &Builder, u: &UpdateInputs) -> Result<Updated>;
}

/// Decoupled weight decay and the parameters it skips.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightDecay {
    pub rate: f64,
    /// Substrings of parameter names that get no decay (as `re.search` with plain words).
    pub exclude: Vec<String>,
}

impl WeightDecay {
    /// The exclusions of the original BERT: LayerNorm parameters and biases.
    pub fn bert(rate: f64) -> Self {
        Self {
            rate,
            exclude: ["LayerNorm", "layer_norm", "bias"]
                .map(String::from)
                .to_vec(),
        }
    }

    pub fn none() -> Self {
        Self {
            rate: 0.0,
            exclude: vec![],
        }
    }

    /// Whether parameter `name` is decayed (rate non-zero and no exclusion matches).
    pub fn applies_to(&self, name: &str) -> bool {
        self.rate != 0.0 && !self.exclude.iter().any(|e| name.contains(e.as_str()))
    }

    fn check(&self, optimizer: &str) -> Result<()> {
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            bail!(
                "{optimizer}: weight decay rate must be finite and >= 0, got {}",
                self.rate
            );
        }
        Ok(())
    }
}

/// An f32 scalar constant.
pub(crate) fn f32c(b: &Builder, v: f64) -> Result<Value> {
    Ok(b.scalar_of(ElementType::F32, v)?)
}

/// Checks that the slots handed in match the optimizer's.
pub(crate) fn check_slots(opt: &dyn Optimizer, u: &UpdateInputs) -> Result<()> {
    if u.slots.len() != opt.slot_names().len() {
        bail!(
            "{}: parameter '{}' has {} state slots, expected {} ({})",
            opt.name(),
            u.name,
            u.slots.len(),
            opt.slot_names().len(),
            opt.slot_names().join(", ")
        );
    }
    Ok(())
}

/// Checks beta in [0, 1) and eps >= 0, naming the optimizer.
pub(crate) fn check_betas(optimizer: &str, betas: &[f64], eps: f64) -> Result<()> {
    for &beta in betas {
        if !(0.0..1.0).contains(&beta) {
            bail!("{optimizer}: beta must be in [0, 1), got {beta}");
        }
    }
    if !(eps.is_finite() && eps >= 0.0) {
        bail!("{optimizer}: epsilon must be finite and >= 0, got {eps}");
    }
    Ok(())
}

/// The Adam moments `m' = b1 m + (1 - b1) g`, `v' = b2 v + (1 - b2) g^2`. `1 - beta` is
/// computed in f64 and rounded once: 0.999 is not an f32, and `1 - 0.999f32` is off by 1.3e-5.
pub(crate) fn adam_moments(
    b: &Builder,
    g: Value,
    m: Value,
    v: Value,
    beta1: f64,
    beta2: f64,
) -> Result<(Value, Value)> {
    let m2 = b.add(b.mul(m, f32c(b, beta1)?)?, b.mul(g, f32c(b, 1.0 - beta1)?)?)?;
    let v2 = b.add(
        b.mul(v, f32c(b, beta2)?)?,
        b.mul(b.mul(g, g)?, f32c(b, 1.0 - beta2)?)?,
    )?;
    Ok((m2, v2))
}

/// `1 - beta^t` for `t = step + 1`, as `-expm1(t ln beta)`: exact to f32 rounding even when
/// beta^t is close to 1 (beta = 0.999, small t), where `1 - pow(beta, t)` cancels.
pub(crate) fn bias_correction(b: &Builder, beta: f64, step: Value) -> Result<Value> {
    let t = b.add(b.convert(step, ElementType::F32)?, f32c(b, 1.0)?)?;
    let x = b.mul(t, f32c(b, beta.ln())?)?;
    Ok(b.neg(b.expm1(x)?)?)
}

/// The bias-corrected Adam direction `m_hat / (sqrt(v_hat) + eps)`.
pub(crate) fn corrected_adam_direction(
    b: &Builder,
    m: Value,
    v: Value,
    step: Value,
    beta1: f64,
    beta2: f64,
    eps: f64,
) -> Result<Value> {
    let m_hat = b.div(m, bias_correction(b, beta1, step)?)?;
    let v_hat = b.div(v, bias_correction(b, beta2, step)?)?;
    Ok(b.div(m_hat, b.add(b.sqrt(v_hat)?, f32c(b, eps)?)?)?)
}

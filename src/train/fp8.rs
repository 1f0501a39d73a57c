//! FP8 delayed scaling in the train step: Transformer Engine's `DelayedScaling` recipe (its
//! `amax_and_scale_update`, `amax_compute_algo = "max"`), as flax's fp8 ops carry it.
//!
//! Every FP8 matmul quantizes three tensors: its input `x` and weight `w` to e4m3fn in the
//! forward pass, and its output gradient `grad` to e5m2 in the backward pass. Each has a
//! per-tensor scale (`fp8 = value * scale`) and a history of its last `history_len` amaxes
//! (`max |value|` of a step), both step state like the optimizer's slots (donated, checkpointed,
//! restored exactly). A step
//!
//! 1. computes this step's scale from the state, before seeing the tensors (delayed scaling):
//!    `scale = min(fp8_max * 2^-margin / max(history), f32::MAX)` when `max(history)` is finite
//!    and > 0, else the previous scale (so the initial scale, 1, holds until a history exists).
//!    NaN amaxes in the history are ignored (TE's `fmaxf`). One deviation: an amax below f32's
//!    smallest normal value counts as none (TE would divide and clamp to f32::MAX); backends
//!    that flush subnormals (XLA:CPU) see zero there anyway, and the explicit test makes every
//!    backend agree;
//! 2. quantizes with it and measures each tensor's amax (the maximum over the micro-batches of
//!    gradient accumulation and over the data-parallel replicas, so every replica keeps the same
//!    state);
//! 3. writes back `scale` and the history shifted by one, newest first:
//!    `[amax, history[0], ..., history[len - 2]]`.
//!
//! The loss function finds the scales among the values it is given (named by [`scale_name`]);
//! the amaxes come back as the "gradients" of those scales (see `hlo`'s `fp8_matmul`). A step
//! skipped for non-finite gradients keeps the FP8 state too.
use super::step::StateSpec;
use anyhow::{bail, Result};
use hlo::{ArrayShape, Builder, ElementType, Value};

/// Transformer Engine's delayed-scaling recipe (amaxes reduced with max over the history).
#[derive(Clone, Debug, PartialEq)]
pub struct DelayedScaling {
    /// Steps of amax history each scale is computed from (TE's `amax_history_len`).
    pub history_len: usize,
    /// The scaled amax lands at `fp8_max * 2^-margin` (TE's `margin`).
    pub margin: f64,
}

impl Default for DelayedScaling {
    /// A 16-step history, no margin.
    fn default() -> Self {
        Self {
            history_len: 16,
            margin: 0.0,
        }
    }
}

/// The tensors an FP8 matmul quantizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fp8Tensor {
    /// The input activations (e4m3fn).
    X,
    /// The weight (e4m3fn).
    W,
    /// The gradient of the output (e5m2).
    Grad,
}

impl Fp8Tensor {
    pub const ALL: [Fp8Tensor; 3] = [Self::X, Self::W, Self::Grad];

    pub fn name(self) -> &'static str {
        match self {
            Self::X => "x",
            Self::W => "w",
            Self::Grad => "grad",
        }
    }

    /// The f8 type it is quantized to (TE's HYBRID format).
    pub fn format(self) -> ElementType {
        match self {
            Self::X | Self::W => ElementType::F8E4M3FN,
            Self::Grad => ElementType::F8E5M2,
        }
    }

    fn fp8_max(self) -> f64 {
        hlo::f8::f8_max(self.format()).unwrap_or(f64::NAN)
    }
}

/// The value the loss function looks up for the scale of `tensor` of FP8 matmul `layer`.
pub fn scale_name(layer: &str, tensor: Fp8Tensor) -> String {
    format!("fp8/{layer}/{}_scale", tensor.name())
}

fn history_name(layer: &str, tensor: Fp8Tensor) -> String {
    format!("fp8/{layer}/{}_amax_history", tensor.name())
}

/// The FP8 matmuls of a model (names the model uses for their scales) and the recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct Fp8Setup {
    pub recipe: DelayedScaling,
    pub layers: Vec<String>,
}

impl Fp8Setup {
    pub fn check(&self) -> Result<()> {
        let r = &self.recipe;
        if r.history_len == 0 {
            bail!("FP8 delayed scaling: the amax history needs at least one step");
        }
        if !r.margin.is_finite() || r.margin < 0.0 {
            bail!(
                "FP8 delayed scaling: the margin must be finite and >= 0, got {}",
                r.margin
            );
        }
        if self.layers.is_empty() {
            bail!("FP8 delayed scaling: no FP8 matmuls to scale");
        }
        super::check_names("FP8 matmul", self.layers.iter().map(String::as_str))
    }

    /// (layer, tensor) in state order: layer-major, then x, w, grad.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, Fp8Tensor)> {
        self.layers
            .iter()
            .flat_map(|l| Fp8Tensor::ALL.map(|t| (l.as_str(), t)))
    }

    /// The names under which the loss function finds the scales, in [`Fp8Setup::tensors`]
    /// order.
    pub fn scale_names(&self) -> Vec<String> {
        self.tensors().map(|(l, t)| scale_name(l, t)).collect()
    }

    /// The carried state: per tensor its amax history (f32[history_len], zeros) then its scale
    /// (f32 scalar, 1).
    pub fn state_specs(&self) -> Vec<StateSpec> {
        let f32 = ElementType::F32;
        self.tensors()
            .flat_map(|(l, t)| {
                [
                    StateSpec {
                        name: history_name(l, t),
                        shape: ArrayShape::new(f32, vec![self.recipe.history_len as i64]),
                        initial: 0.0,
                    },
                    StateSpec {
                        name: scale_name(l, t),
                        shape: ArrayShape::scalar(f32),
                        initial: 1.0,
                    },
                ]
            })
            .collect()
    }

    /// This step's scale of every tensor, from the state values (in [`Fp8Setup::state_specs`]
    /// order).
    pub fn scales(&self, b: &Builder, state: &[Value]) -> Result<Vec<Value>> {
        self.check_state(state)?;
        self.tensors()
            .zip(state.chunks_exact(2))
            .map(|((_, t), hs)| self.scale(b, t, hs[0], hs[1]))
            .collect()
    }

    /// TE's scale update for one tensor (see the module docs).
    fn scale(&self, b: &Builder, t: Fp8Tensor, history: Value, prev: Value) -> Result<Value> {
        let f32 = ElementType::F32;
        // NaN entries count as 0, as TE's fmaxf-from-0 reduction has it (XLA's max may or may
        // not propagate NaN, by backend).
        let zeros = b.zeros_like(history)?;
        let clean = b.select(b.ne(history, history)?, zeros, history)?;
        let amax = b.reduce_max(clean, &[0])?;
        let target = t.fp8_max() * (-self.recipe.margin).exp2();
        let fresh = b.div(b.scalar_of(f32, target)?, amax)?;
        // A tiny amax overflows the division; TE then uses f32's largest value.
        let fresh = b.min(fresh, b.scalar_of(f32, f64::from(f32::MAX))?)?;
        let smallest_normal = b.scalar_of(f32, f64::from(f32::MIN_POSITIVE))?;
        let usable = b.and(b.is_finite(amax)?, b.ge(amax, smallest_normal)?)?;
        Ok(b.select(usable, fresh, prev)?)
    }

    /// The state after this step: per tensor the history with `amax` in front, and `scale`.
    pub fn next_state(
        &self,
        b: &Builder,
        state: &[Value],
        scales: &[Value],
        amaxes: &[Value],
    ) -> Result<Vec<Value>> {
        self.check_state(state)?;
        let n = self.layers.len() * Fp8Tensor::ALL.len();
        if scales.len() != n || amaxes.len() != n {
            bail!(
                "FP8 state update: {} scales and {} amaxes for {n} tensors",
                scales.len(),
                amaxes.len()
            );
        }
        let len = self.recipe.history_len as i64;
        let mut out = Vec::with_capacity(2 * n);
        for ((hs, &scale), &amax) in state.chunks_exact(2).zip(scales).zip(amaxes) {
            let newest = b.reshape(amax, &[1])?;
            let history = if len == 1 {
                newest
            } else {
                let kept = b.slice(hs[0], &[0], &[len - 1], &[1])?;
                b.concatenate(&[newest, kept], 0)?
            };
            out.push(history);
            out.push(scale);
        }
        Ok(out)
    }

    fn check_state(&self, state: &[Value]) -> Result<()> {
        let want = 2 * self.layers.len() * Fp8Tensor::ALL.len();
        if state.len() != want {
            bail!(
                "FP8 state: {} values for {} matmuls (expected {want})",
                state.len(),
                self.layers.len()
            );
        }
        Ok(())
    }
}

/// This step's scales as the loss function sees them: named values (empty without FP8).
#[derive(Clone, Debug, Default)]
pub(crate) struct StepScales {
    pub names: Vec<String>,
    pub values: Vec<Value>,
}

//! LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in 76
//! minutes"), as TensorFlow Addons' `LAMB` and NVIDIA's BERT recipe compute it: Adam moments with
//! bias correction, decoupled weight decay inside the update, then a per-tensor trust ratio.
//!
//! ```text
//! t = step + 1
//! m' = b1 m + (1 - b1) g,   v' = b2 v + (1 - b2) g^2
//! r = (m' / (1 - b1^t)) / (sqrt(v' / (1 - b2^t)) + eps)
//! r += wd * param                                     # unless excluded by name
//! ratio = ||param|| > 0 and ||r|| > 0 ? ||param|| / ||r|| : 1   # unless excluded by name
//! param' = param - lr * ratio * r
//! ```
//! Defaults: b1 0.9, b2 0.999, eps 1e-6, wd 0.01; LayerNorm and bias parameters get neither
//! decay nor the trust ratio (TF Addons' `exclude_from_layer_adaptation` defaults to the decay
//! exclusions; NVIDIA's recipe likewise adapts only decayed tensors). The global gradient
//! pre-normalization of NVIDIA's recipe is the step's global-norm clipping.
use super::{adam_moments, check_betas, check_slots, corrected_adam_direction, f32c};
use super::{Optimizer, UpdateInputs, Updated, WeightDecay};
use anyhow::Result;
use hlo::{Builder, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct Lamb {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: WeightDecay,
    /// Substrings of parameter names that get no trust ratio.
    pub exclude_from_layer_adaptation: Vec<String>,
}

impl Default for Lamb {
    fn default() -> Self {
        let weight_decay = WeightDecay::bert(0.01);
        Self {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-6,
            exclude_from_layer_adaptation: weight_decay.exclude.clone(),
            weight_decay,
        }
    }
}

impl Lamb {
    fn adapts(&self, name: &str) -> bool {
        !self
            .exclude_from_layer_adaptation
            .iter()
            .any(|e| name.contains(e.as_str()))
    }
}

/// The L2 norm of a whole tensor, an f32 scalar.
fn l2_norm(b: &Builder, x: Value) -> Result<Value> {
    let rank = b.dims(x)?.len() as i64;
    let all: Vec<i64> = (0..rank).collect();
    Ok(b.sqrt(b.reduce_sum(b.mul(x, x)?, &all)?)?)
}

impl Optimizer for Lamb {
    fn name(&self) -> &'static str {
        "LAMB"
    }

    fn slot_names(&self) -> &'static [&'static str] {
        &["lamb_m", "lamb_v"]
    }

    fn update(&self, b: &Builder, u: &UpdateInputs) -> Result<Updated> {
        check_slots(self, u)?;
        check_betas(self.name(), &[self.beta1, self.beta2], self.epsilon)?;
        self.weight_decay.check(self.name())?;
        let (m, v) = adam_moments(b, u.grad, u.slots[0], u.slots[1], self.beta1, self.beta2)?;
        let mut r =
            corrected_adam_direction(b, m, v, u.step, self.beta1, self.beta2, self.epsilon)?;
        if self.weight_decay.applies_to(u.name) {
            r = b.add(r, b.mul(u.param, f32c(b, self.weight_decay.rate)?)?)?;
        }
        let mut step_size = u.lr;
        if self.adapts(u.name) {
            let w_norm = l2_norm(b, u.param)?;
            let r_norm = l2_norm(b, r)?;
            let zero = f32c(b, 0.0)?;
            let both_positive = b.and(b.gt(w_norm, zero)?, b.gt(r_norm, zero)?)?;
            let ratio = b.select(both_positive, b.div(w_norm, r_norm)?, f32c(b, 1.0)?)?;
            step_size = b.mul(step_size, ratio)?;
        }
        let param = b.sub(u.param, b.mul(r, step_size)?)?;
        Ok(Updated {
            param,
            slots: vec![m, v],
        })
    }
}

//! AdamWeightDecayOptimizer of the original BERT release (google-research/bert, optimization.py):
//!
//! ```text
//! m' = b1 m + (1 - b1) g
//! v' = b2 v + (1 - b2) g^2
//! update = m' / (sqrt(v') + eps)          # NO bias correction
//! update += weight_decay_rate * param      # unless the name contains LayerNorm, layer_norm, bias
//! param' = param - lr * update
//! ```
//! with b1 = 0.9, b2 = 0.999, eps = 1e-6, weight_decay_rate = 0.01.
use super::WeightDecay;
use super::{adam_moments, check_betas, check_slots, f32c, Optimizer, UpdateInputs, Updated};
use anyhow::Result;
use hlo::Builder;

#[derive(Clone, Debug, PartialEq)]
pub struct AdamWeightDecay {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: WeightDecay,
}

impl Default for AdamWeightDecay {
    /// The settings `create_optimizer` of the original BERT uses.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-6,
            weight_decay: WeightDecay::bert(0.01),
        }
    }
}

impl Optimizer for AdamWeightDecay {
    fn name(&self) -> &'static str {
        "AdamWeightDecay"
    }

    fn slot_names(&self) -> &'static [&'static str] {
        &["adam_m", "adam_v"]
    }

    fn update(&self, b: &Builder, u: &UpdateInputs) -> Result<Updated> {
        check_slots(self, u)?;
        check_betas(self.name(), &[self.beta1, self.beta2], self.epsilon)?;
        self.weight_decay.check(self.name())?;
        let (m, v) = adam_moments(b, u.grad, u.slots[0], u.slots[1], self.beta1, self.beta2)?;
        let mut update = b.div(m, b.add(b.sqrt(v)?, f32c(b, self.epsilon)?)?)?;
        if self.weight_decay.applies_to(u.name) {
            let decay = b.mul(u.param, f32c(b, self.weight_decay.rate)?)?;
            update = b.add(update, decay)?;
        }
        let param = b.sub(u.param, b.mul(update, u.lr)?)?;
        Ok(Updated {
            param,
            slots: vec![m, v],
        })
    }
}

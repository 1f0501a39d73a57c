//! AdamW with bias correction, as `torch.optim.AdamW` (and `optax.adamw`) compute it:
//!
//! ```text
//! t = step + 1
//! param_d = param * (1 - lr * wd)          # decoupled decay, unless excluded by name
//! m' = b1 m + (1 - b1) g,   v' = b2 v + (1 - b2) g^2
//! param' = param_d - lr * (m' / (1 - b1^t)) / (sqrt(v' / (1 - b2^t)) + eps)
//! ```
//! Defaults are PyTorch's (b1 0.9, b2 0.999, eps 1e-8, wd 0.01) with BERT's exclusions
//! (LayerNorm and bias parameters are not decayed).
use super::{adam_moments, check_betas, check_slots, corrected_adam_direction, f32c};
use super::{Optimizer, UpdateInputs, Updated, WeightDecay};
use anyhow::Result;
use hlo::Builder;

#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: WeightDecay,
}

impl Default for AdamW {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: WeightDecay::bert(0.01),
        }
    }
}

impl Optimizer for AdamW {
    fn name(&self) -> &'static str {
        "AdamW"
    }

    fn slot_names(&self) -> &'static [&'static str] {
        &["adam_m", "adam_v"]
    }

    fn update(&self, b: &Builder, u: &UpdateInputs) -> Result<Updated> {
        check_slots(self, u)?;
        check_betas(self.name(), &[self.beta1, self.beta2], self.epsilon)?;
        self.weight_decay.check(self.name())?;
        let mut param = u.param;
        if self.weight_decay.applies_to(u.name) {
            let keep = b.sub(
                f32c(b, 1.0)?,
                b.mul(u.lr, f32c(b, self.weight_decay.rate)?)?,
            )?;
            param = b.mul(param, keep)?;
        }
        let (m, v) = adam_moments(b, u.grad, u.slots[0], u.slots[1], self.beta1, self.beta2)?;
        let dir = corrected_adam_direction(b, m, v, u.step, self.beta1, self.beta2, self.epsilon)?;
        let param = b.sub(param, b.mul(dir, u.lr)?)?;
        Ok(Updated {
            param,
            slots: vec![m, v],
        })
    }
}

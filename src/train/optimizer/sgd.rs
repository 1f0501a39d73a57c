//! SGD with momentum, as `torch.optim.SGD` (dampening 0):
//!
//! ```text
//! g' = g + wd * param                  # coupled L2 decay, unless excluded by name
//! buf' = momentum * buf + g'
//! d = nesterov ? g' + momentum * buf' : buf'
//! param' = param - lr * d
//! ```
//! (PyTorch sets `buf = g'` on the first step; with `buf` starting at zero that is the same.)
use super::{check_slots, f32c, Optimizer, UpdateInputs, Updated, WeightDecay};
use anyhow::{bail, Result};
use hlo::Builder;

#[derive(Clone, Debug, PartialEq)]
pub struct Sgd {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: WeightDecay,
}

impl Default for Sgd {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            nesterov: false,
            weight_decay: WeightDecay::none(),
        }
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "SGD"
    }

    fn slot_names(&self) -> &'static [&'static str] {
        &["momentum"]
    }

    fn update(&self, b: &Builder, u: &UpdateInputs) -> Result<Updated> {
        check_slots(self, u)?;
        if !(self.momentum.is_finite() && self.momentum >= 0.0) {
            bail!(
                "SGD: momentum must be finite and >= 0, got {}",
                self.momentum
            );
        }
        self.weight_decay.check(self.name())?;
        let mut g = u.grad;
        if self.weight_decay.applies_to(u.name) {
            g = b.add(g, b.mul(u.param, f32c(b, self.weight_decay.rate)?)?)?;
        }
        let mu = f32c(b, self.momentum)?;
        let buf = b.add(b.mul(u.slots[0], mu)?, g)?;
        let d = if self.nesterov {
            b.add(g, b.mul(buf, mu)?)?
        } else {
            buf
        };
        let param = b.sub(u.param, b.mul(d, u.lr)?)?;
        Ok(Updated {
            param,
            slots: vec![buf],
        })
    }
}

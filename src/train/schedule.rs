//! Learning-rate schedules, computed in the program from the step (an s32 or f32 scalar: the
//! number of updates applied so far, as BERT's `global_step` before its increment).
//!
//! - [`Schedule::WarmupPolynomialDecay`] is the original BERT schedule (optimization.py):
//!   `tf.train.polynomial_decay(init_lr, step, total, end_lr, power, cycle=False)`, i.e.
//!   `(init_lr - end_lr) * (1 - min(step, total) / total)^power + end_lr`, replaced by
//!   `init_lr * step / warmup` while `step < warmup`.
//! - [`Schedule::Constant`].
//! - [`Schedule::WarmupCosine`]: the same linear warmup, then
//!   `end_lr + (init_lr - end_lr) * (1 + cos(pi * p)) / 2` with
//!   `p = min((step - warmup) / (total - warmup), 1)` (as optax's `warmup_cosine_decay_schedule`).
use anyhow::{bail, Result};
use hlo::{Builder, ElementType, Value};
use serde::{Deserialize, Serialize};

/// The schedules a run chooses by name (`train.schedule`); the run's learning rates and step
/// counts make it a [`Schedule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// BERT's: linear warmup, then linear decay to the end learning rate.
    #[serde(alias = "bert")]
    #[value(alias = "bert")]
    Linear,
    /// Linear warmup, then cosine decay to the end learning rate.
    Cosine,
    /// The learning rate throughout (no warmup).
    Constant,
}

impl ScheduleKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Cosine => "cosine",
            Self::Constant => "constant",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Constant {
        lr: f64,
    },
    WarmupPolynomialDecay {
        init_lr: f64,
        warmup_steps: u64,
        total_steps: u64,
        end_lr: f64,
        power: f64,
    },
    WarmupCosine {
        init_lr: f64,
        warmup_steps: u64,
        total_steps: u64,
        end_lr: f64,
    },
}

impl Schedule {
    /// The original BERT schedule: linear warmup, then linear decay to 0 at `total_steps`.
    pub fn bert(init_lr: f64, warmup_steps: u64, total_steps: u64) -> Self {
        Self::linear(init_lr, warmup_steps, total_steps, 0.0)
    }

    /// Linear warmup, then linear decay to `end_lr` at `total_steps` (BERT's polynomial_decay
    /// with power 1 and its `end_learning_rate`).
    pub fn linear(init_lr: f64, warmup_steps: u64, total_steps: u64, end_lr: f64) -> Self {
        Self::WarmupPolynomialDecay {
            init_lr,
            warmup_steps,
            total_steps,
            end_lr,
            power: 1.0,
        }
    }

    fn check(&self) -> Result<()> {
        let finite = |name: &str, v: f64| -> Result<()> {
            if !v.is_finite() {
                bail!("learning-rate schedule: {name} must be finite, got {v}");
            }
            Ok(())
        };
        match *self {
            Self::Constant { lr } => finite("lr", lr),
            Self::WarmupPolynomialDecay {
                init_lr,
                total_steps,
                end_lr,
                power,
                ..
            } => {
                finite("init_lr", init_lr)?;
                finite("end_lr", end_lr)?;
                finite("power", power)?;
                if total_steps == 0 {
                    bail!("learning-rate schedule: total_steps must be >= 1 (polynomial decay divides by it)");
                }
                Ok(())
            }
            Self::WarmupCosine {
                init_lr,
                warmup_steps,
                total_steps,
                end_lr,
            } => {
                finite("init_lr", init_lr)?;
                finite("end_lr", end_lr)?;
                if total_steps <= warmup_steps {
                    bail!(
                        "learning-rate schedule: cosine needs total_steps ({total_steps}) > warmup_steps ({warmup_steps})"
                    );
                }
                Ok(())
            }
        }
    }

    /// Emits the learning rate at `step` (an s32 or f32 scalar) as an f32 scalar.
    pub fn lr(&self, b: &Builder, step: Value) -> Result<Value> {
        self.check()?;
        let st = b.array_shape(step, "learning-rate schedule")?;
        if !st.is_scalar() || !(st.ty == ElementType::S32 || st.ty == ElementType::F32) {
            bail!("learning-rate schedule: the step must be an s32 or f32 scalar, got {st}");
        }
        let c = |v: f64| b.scalar_of(ElementType::F32, v);
        let s = b.convert(step, ElementType::F32)?;
        match *self {
            Self::Constant { lr } => Ok(c(lr)?),
            Self::WarmupPolynomialDecay {
                init_lr,
                warmup_steps,
                total_steps,
                end_lr,
                power,
            } => {
                // 1 - min(s, T) / T as (T - min(s, T)) / T: the numerator is exact for integer
                // steps, so the rate is exactly end_lr from T on (XLA turns the division by a
                // constant into a multiply by 1/T, and 1 - s * (1/T) is not exactly 0 at s = T).
                let total = c(total_steps as f64)?;
                let frac = b.div(b.sub(total, b.min(s, total)?)?, total)?;
                let frac = if power == 1.0 {
                    frac
                } else {
                    b.pow(frac, c(power)?)?
                };
                let decayed = b.add(b.mul(frac, c(init_lr - end_lr)?)?, c(end_lr)?)?;
                self.with_warmup(b, s, init_lr, warmup_steps, decayed)
            }
            Self::WarmupCosine {
                init_lr,
                warmup_steps,
                total_steps,
                end_lr,
            } => {
                let span = c((total_steps - warmup_steps) as f64)?;
                let p = b.div(b.sub(s, c(warmup_steps as f64)?)?, span)?;
                let p = b.clamp(c(0.0)?, p, c(1.0)?)?;
                let cos = b.cos(b.mul(p, c(std::f64::consts::PI)?)?)?;
                let half = b.mul(b.add(cos, c(1.0)?)?, c(0.5)?)?;
                let decayed = b.add(b.mul(half, c(init_lr - end_lr)?)?, c(end_lr)?)?;
                self.with_warmup(b, s, init_lr, warmup_steps, decayed)
            }
        }
    }

    /// `step < warmup ? init_lr * step / warmup : lr` (no warmup when `warmup == 0`).
    fn with_warmup(
        &self,
        b: &Builder,
        s: Value,
        init_lr: f64,
        warmup_steps: u64,
        lr: Value,
    ) -> Result<Value> {
        if warmup_steps == 0 {
            return Ok(lr);
        }
        let w = b.scalar_of(ElementType::F32, warmup_steps as f64)?;
        let warm = b.mul(b.div(s, w)?, b.scalar_of(ElementType::F32, init_lr)?)?;
        Ok(b.select(b.lt(s, w)?, warm, lr)?)
    }

    /// The learning rate at `step`, computed on the host (for logs); the program computes its own.
    pub fn value_at(&self, step: f64) -> f64 {
        let warmup = |init_lr: f64, w: u64, lr: f64| {
            if w > 0 && step < w as f64 {
                init_lr * step / w as f64
            } else {
                lr
            }
        };
        match *self {
            Self::Constant { lr } => lr,
            Self::WarmupPolynomialDecay {
                init_lr,
                warmup_steps,
                total_steps,
                end_lr,
                power,
            } => {
                let t = total_steps as f64;
                let lr = (init_lr - end_lr) * (1.0 - step.min(t) / t).powf(power) + end_lr;
                warmup(init_lr, warmup_steps, lr)
            }
            Self::WarmupCosine {
                init_lr,
                warmup_steps,
                total_steps,
                end_lr,
            } => {
                let p = ((step - warmup_steps as f64) / (total_steps - warmup_steps) as f64)
                    .clamp(0.0, 1.0);
                let lr =
                    end_lr + (init_lr - end_lr) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
                warmup(init_lr, warmup_steps, lr)
            }
        }
    }
}

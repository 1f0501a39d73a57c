//! The optimizers a run can choose by name (`--optimizer`, the run config's `train.optimizer`,
//! the name recorded in checkpoints).
use super::{AdamW, AdamWeightDecay, Lamb, Optimizer, Sgd, WeightDecay};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// The original BERT's AdamWeightDecay (no bias correction, decoupled weight decay).
    #[serde(alias = "adamweightdecay", alias = "bert_adam")]
    #[value(alias = "adamweightdecay", alias = "bert_adam")]
    AdamWeightDecay,
    /// Adam with bias correction and decoupled weight decay.
    Adamw,
    /// LAMB: Adam with a per-layer trust ratio.
    Lamb,
    /// Plain SGD with decoupled weight decay.
    Sgd,
}

impl OptimizerKind {
    /// The canonical name (what checkpoints record).
    pub fn name(self) -> &'static str {
        match self {
            Self::AdamWeightDecay => "adam_weight_decay",
            Self::Adamw => "adamw",
            Self::Lamb => "lamb",
            Self::Sgd => "sgd",
        }
    }

    /// A name or alias as the config takes it (checkpoints written before the names were typed
    /// may record an alias).
    pub fn parse(s: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(s, false).ok()
    }

    /// The optimizer with `decay` and Adam's `beta2` (ignored by SGD); the rest at its defaults.
    pub fn build(self, decay: WeightDecay, beta2: f64) -> Box<dyn Optimizer> {
        match self {
            Self::AdamWeightDecay => Box::new(AdamWeightDecay {
                weight_decay: decay,
                beta2,
                ..Default::default()
            }),
            Self::Adamw => Box::new(AdamW {
                weight_decay: decay,
                beta2,
                ..Default::default()
            }),
            Self::Lamb => Box::new(Lamb {
                exclude_from_layer_adaptation: decay.exclude.clone(),
                weight_decay: decay,
                beta2,
                ..Default::default()
            }),
            Self::Sgd => Box::new(Sgd {
                weight_decay: decay,
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_agree_with_serde_and_clap() {
        for k in OptimizerKind::value_variants() {
            assert_eq!(OptimizerKind::parse(k.name()), Some(*k));
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
        assert_eq!(
            OptimizerKind::parse("bert_adam"),
            Some(OptimizerKind::AdamWeightDecay)
        );
    }
}

//! google-research/bert TF checkpoint names against our parameter names.
//!
//! Our parameter -> TF variable is [`crate::model::params::tf_variable`]
//! (`bert.encoder.layer.3.attention.self.query.weight` ->
//! `bert/encoder/layer_3/attention/self/query/kernel`; TF kernels are `[in, out]` like ours, only
//! `cls/seq_relationship/output_weights` is `[2, hidden]`), extended here with run_squad.py's QA
//! head. [`TfNameMap`] turns that around for the parameters a model wants and sorts every other
//! checkpoint name into optimizer state (skipped) or names the model does not use.
use crate::model::params::{tf_variable as model_tf_variable, ParamSpec, TfVariable};
use std::collections::HashMap;

/// Our name of the QA head's `[hidden, 2]` matrix (Hugging Face `BertForQuestionAnswering`'s
/// `qa_outputs`; run_squad.py's `cls/squad/output_weights`, stored `[2, hidden]`).
pub const QA_WEIGHT: &str = "qa_outputs.weight";
/// Our name of the QA head's bias (`cls/squad/output_bias`).
pub const QA_BIAS: &str = "qa_outputs.bias";

/// Our name of the sentence classifier's `[hidden, num_labels]` matrix (Hugging Face
/// `BertForSequenceClassification`'s `classifier`, stored `[num_labels, hidden]`;
/// run_classifier.py's top-level `output_weights`, also `[num_labels, hidden]`).
pub const CLASSIFIER_WEIGHT: &str = "classifier.weight";
/// Our name of the classifier's bias (run_classifier.py's `output_bias`).
pub const CLASSIFIER_BIAS: &str = "classifier.bias";

/// The TF variable holding our parameter `name`, or `None` if no TF checkpoint has one.
pub fn tf_variable(name: &str) -> Option<TfVariable> {
    match name {
        CLASSIFIER_WEIGHT => Some(TfVariable {
            name: "output_weights".into(),
            transposed: true,
        }),
        CLASSIFIER_BIAS => Some(TfVariable {
            name: "output_bias".into(),
            transposed: false,
        }),
        QA_WEIGHT => Some(TfVariable {
            name: "cls/squad/output_weights".into(),
            transposed: true,
        }),
        QA_BIAS => Some(TfVariable {
            name: "cls/squad/output_bias".into(),
            transposed: false,
        }),
        _ => model_tf_variable(name),
    }
}

/// Optimizer state: google-research/bert's AdamWeightDecayOptimizer slots (`<var>/adam_m`,
/// `<var>/adam_v`), `tf.train.AdamOptimizer`'s (`<var>/Adam`, `<var>/Adam_1`, `beta1_power`,
/// `beta2_power`) and LAMB/momentum slots of the same shape.
pub fn is_optimizer_state(tf_name: &str) -> bool {
    let leaf = tf_name.rsplit('/').next().unwrap_or(tf_name);
    matches!(
        leaf,
        "adam_m" | "adam_v" | "Adam" | "Adam_1" | "Momentum" | "lamb_m" | "lamb_v"
    ) || matches!(tf_name, "beta1_power" | "beta2_power")
}

/// The training step counter.
pub fn is_step_counter(tf_name: &str) -> bool {
    tf_name == "global_step"
}

/// What a checkpoint name is to a model with a given parameter list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TfName {
    /// Our parameter `name`; `transposed` when the TF layout is the transpose of ours.
    Param {
        name: String,
        transposed: bool,
    },
    OptimizerState,
    StepCounter,
    /// Not a parameter of this model (another head, TF bookkeeping, ...).
    Unused,
}

/// TF variable name -> our parameter, for a parameter list.
#[derive(Clone, Debug, Default)]
pub struct TfNameMap {
    by_tf: HashMap<String, (String, bool)>,
}

impl TfNameMap {
    pub fn for_specs(specs: &[ParamSpec]) -> Self {
        let mut map = Self::default();
        for s in specs {
            if let Some(v) = tf_variable(&s.name) {
                map.by_tf.insert(v.name, (s.name.clone(), v.transposed));
            }
        }
        map
    }

    pub fn classify(&self, tf_name: &str) -> TfName {
        if let Some((name, transposed)) = self.by_tf.get(tf_name) {
            return TfName::Param {
                name: name.clone(),
                transposed: *transposed,
            };
        }
        if is_optimizer_state(tf_name) {
            TfName::OptimizerState
        } else if is_step_counter(tf_name) {
            TfName::StepCounter
        } else {
            TfName::Unused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{param_specs, BertConfig};

    #[test]
    fn google_research_names_of_bert_base() {
        let specs = param_specs(&BertConfig::preset("base").unwrap());
        let map = TfNameMap::for_specs(&specs);
        let param = |name: &str, transposed| TfName::Param {
            name: name.into(),
            transposed,
        };
        for (tf, want) in [
            (
                "bert/encoder/layer_11/attention/self/value/kernel",
                param("bert.encoder.layer.11.attention.self.value.weight", false),
            ),
            (
                "bert/encoder/layer_0/attention/output/LayerNorm/gamma",
                param(
                    "bert.encoder.layer.0.attention.output.LayerNorm.weight",
                    false,
                ),
            ),
            (
                "bert/encoder/layer_3/intermediate/dense/bias",
                param("bert.encoder.layer.3.intermediate.dense.bias", false),
            ),
            (
                "bert/embeddings/token_type_embeddings",
                param("bert.embeddings.token_type_embeddings.weight", false),
            ),
            (
                "cls/predictions/output_bias",
                param("cls.predictions.bias", false),
            ),
            (
                "cls/seq_relationship/output_weights",
                param("cls.seq_relationship.weight", true),
            ),
            (
                "bert/encoder/layer_3/intermediate/dense/kernel/adam_m",
                TfName::OptimizerState,
            ),
            ("bert/pooler/dense/bias/adam_v", TfName::OptimizerState),
            ("beta1_power", TfName::OptimizerState),
            ("global_step", TfName::StepCounter),
            // Not asked for: the QA head of run_squad.py, a layer past the config's 12.
            ("cls/squad/output_weights", TfName::Unused),
            ("bert/encoder/layer_12/output/dense/bias", TfName::Unused),
        ] {
            assert_eq!(map.classify(tf), want, "{tf}");
        }
        // Every parameter has a TF name, and no two share one.
        assert_eq!(map.by_tf.len(), specs.len());
    }

    #[test]
    fn classifier_is_run_classifiers_output_weights() {
        let v = tf_variable(CLASSIFIER_WEIGHT).unwrap();
        assert_eq!((v.name.as_str(), v.transposed), ("output_weights", true));
        let v = tf_variable(CLASSIFIER_BIAS).unwrap();
        assert_eq!((v.name.as_str(), v.transposed), ("output_bias", false));
    }

    #[test]
    fn qa_head_is_run_squads_output_weights() {
        let v = tf_variable(QA_WEIGHT).unwrap();
        assert_eq!(
            (v.name.as_str(), v.transposed),
            ("cls/squad/output_weights", true)
        );
        let v = tf_variable(QA_BIAS).unwrap();
        assert_eq!(
            (v.name.as_str(), v.transposed),
            ("cls/squad/output_bias", false)
        );
    }
}

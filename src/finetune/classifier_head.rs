//! The sentence (pair) classifier of run_classifier.py's `create_model`: the pooled `[CLS]`
//! output, dropout when training (the config's `hidden_dropout_prob`: 0.1 in BERT's configs, as
//! run_classifier's fixed 0.1 and Hugging Face's default), one dense layer to `num_outputs`
//! logits:
//!
//! ```text
//! pooled  = tanh(dense(sequence[:, 0]))                  the encoder's pooler
//! logits  = dropout(pooled) W + b                        W: [hidden, n], f32 result
//! loss    = mean_i nll(softmax(logits_i), label_i)       classification (n = labels)
//!         = mean_i (logits_i0 - score_i)^2               regression (STS-B: n = 1, MSE)
//! ```
//! Regression follows Hugging Face `BertForSequenceClassification` with `num_labels = 1` (the
//! GLUE convention for STS-B; run_classifier.py has no regression task).
use super::head_dense::head_dense_f32;
use crate::import::tf_names::{CLASSIFIER_BIAS, CLASSIFIER_WEIGHT};
use crate::model::loss::label_nll;
use crate::model::params::{encoder_param_specs, ParamInit};
use crate::model::{encoder_forward, BertConfig, EncoderInputs, Execution, ParamSpec, ParamValues};
use anyhow::{bail, Result};
use hlo::{Builder, Value};

/// The head's parameters: `classifier.weight` `[hidden, n]` (truncated normal, as
/// run_classifier's `output_weights`) and `classifier.bias` `[n]` (zeros).
pub fn classifier_head_specs(cfg: &BertConfig, num_outputs: usize) -> Vec<ParamSpec> {
    vec![
        ParamSpec {
            name: CLASSIFIER_WEIGHT.into(),
            dims: vec![cfg.hidden_size, num_outputs],
            init: ParamInit::TruncatedNormal,
            real_rows: cfg.hidden_size,
        },
        ParamSpec {
            name: CLASSIFIER_BIAS.into(),
            dims: vec![num_outputs],
            init: ParamInit::Zeros,
            real_rows: num_outputs,
        },
    ]
}

/// The fine-tuned model's parameters, in a fixed order: the encoder's (embeddings, layers,
/// pooler), then the head.
pub fn classifier_param_specs(cfg: &BertConfig, num_outputs: usize) -> Vec<ParamSpec> {
    let mut v = encoder_param_specs(cfg);
    v.extend(classifier_head_specs(cfg, num_outputs));
    v
}

/// The encoder (dropout when `train`, drawing from `key`), dropout on the pooled output, and
/// the head: f32 `[batch, n]`. `params` holds [`classifier_param_specs`]' names.
pub fn classifier_logits(
    b: &Builder,
    cfg: &BertConfig,
    exec: Execution,
    params: &ParamValues,
    inputs: &EncoderInputs,
    key: Value,
    train: bool,
) -> Result<Value> {
    let enc = encoder_forward(b, cfg, exec, params, inputs, key, train)?;
    let _scope = b.scope("classifier_head");
    let pooled = if train && cfg.hidden_dropout_prob > 0.0 {
        b.dropout(enc.pooled, cfg.hidden_dropout_prob, enc.key)?.0
    } else {
        enc.pooled
    };
    let weight = params.get(CLASSIFIER_WEIGHT)?;
    let bias = params.get(CLASSIFIER_BIAS)?;
    let x = b.array_shape(pooled, "classifier")?;
    let w = b.array_shape(weight, "classifier")?;
    if x.rank() != 2 || w.rank() != 2 || w.dims[0] != x.dims[1] || b.dims(bias)? != [w.dims[1]] {
        bail!(
            "classifier head: needs a [batch, hidden] pooled output, a [hidden, n] weight and an \
             [n] bias; got {x}, {w} and {}",
            b.array_shape(bias, "classifier")?
        );
    }
    head_dense_f32(b, pooled, weight, bias)
}

/// Mean softmax cross-entropy of `logits` (f32 `[batch, labels]`) at `labels` (s32 `[batch]`).
pub fn classification_loss(b: &Builder, logits: Value, labels: Value) -> Result<Value> {
    let n = b.dims(logits)?[0];
    let nll = label_nll(b, logits, labels)?;
    Ok(b.div(b.reduce_sum(nll, &[0])?, b.scalar(n as f32)?)?)
}

/// Mean squared error of `logits` (f32 `[batch, 1]`) against `scores` (f32 `[batch]`).
pub fn regression_loss(b: &Builder, logits: Value, scores: Value) -> Result<Value> {
    let n = b.dims(logits)?[0];
    let pred = b.reshape(logits, &[n])?;
    let diff = b.sub(pred, scores)?;
    let sq = b.mul(diff, diff)?;
    Ok(b.div(b.reduce_sum(sq, &[0])?, b.scalar(n as f32)?)?)
}

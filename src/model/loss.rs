//! Losses and metrics, in f32, as google-research/bert computes them:
//!
//!   mlm_loss = sum(w * nll) / (sum(w) + 1e-5)     nll = -log_softmax(logits)[label]
//!   nsp_loss = mean(nll)                          packed: sum(w * nll) / sum(w) over NSP slots
//!   loss     = mlm_loss + nsp_loss
//!
//! Accuracies are weighted like `tf.metrics.accuracy`: sum(w * [argmax == label]) / sum(w)
//! (0 when sum(w) = 0). The sums are also returned so an evaluation over many batches can
//! aggregate exactly. A label outside `0..classes` picks no logit (nll 0, never correct); the
//! data pipeline rejects such labels.
use super::Result;
use hlo::{Builder, ElementType, Value};

/// The scalar f32 metrics of a pretraining step.
#[derive(Clone, Copy, Debug)]
pub struct Metrics {
    pub mlm_loss: Value,
    pub nsp_loss: Value,
    /// sum(w * correct) / sum(w) over the masked positions.
    pub mlm_accuracy: Value,
    pub nsp_accuracy: Value,
    /// sum(masked_lm_weights).
    pub mlm_weight_sum: Value,
    /// sum(masked_lm_weights * correct).
    pub mlm_correct_sum: Value,
    /// The number of examples (packed: instances) whose NSP argmax is right.
    pub nsp_correct_sum: Value,
}

impl Metrics {
    /// Names of [`Metrics::values`], in order.
    pub const NAMES: [&'static str; 7] = [
        "mlm_loss",
        "nsp_loss",
        "mlm_accuracy",
        "nsp_accuracy",
        "mlm_weight_sum",
        "mlm_correct_sum",
        "nsp_correct_sum",
    ];

    pub fn values(&self) -> [Value; 7] {
        [
            self.mlm_loss,
            self.nsp_loss,
            self.mlm_accuracy,
            self.nsp_accuracy,
            self.mlm_weight_sum,
            self.mlm_correct_sum,
            self.nsp_correct_sum,
        ]
    }
}

/// Per-row negative log-likelihood of `labels: s32[n]` under `logits: f32[n, classes]`.
pub fn label_nll(b: &Builder, logits: Value, labels: Value) -> Result<Value> {
    Ok(b.softmax_cross_entropy(logits, labels)?.nll)
}

/// 1.0 where argmax(logits) == label, else 0.0: f32 `[n]`.
pub fn correct(b: &Builder, logits: Value, labels: Value) -> Result<Value> {
    let pred = b.argmax(logits, -1, ElementType::S32)?;
    Ok(b.convert(b.eq(pred, labels)?, ElementType::F32)?)
}

/// Per-row negative log-likelihood and correctness (1.0 where argmax(logits) == label, else
/// 0.0), both f32 `[n]`, sharing their passes over the logits.
pub fn nll_and_correct(b: &Builder, logits: Value, labels: Value) -> Result<(Value, Value)> {
    let ce = b.softmax_cross_entropy(logits, labels)?;
    Ok((ce.nll, b.convert(b.eq(ce.pred, labels)?, ElementType::F32)?))
}

/// MLM loss and metrics: `(loss, accuracy, weight_sum, correct_sum)` for `logits: f32[n, v]`,
/// `labels: s32[n]`, `weights: f32[n]`.
pub fn mlm_loss(
    b: &Builder,
    logits: Value,
    labels: Value,
    weights: Value,
) -> Result<(Value, Value, Value, Value)> {
    let (nll, correct) = nll_and_correct(b, logits, labels)?;
    let weight_sum = b.reduce_sum(weights, &[0])?;
    let num = b.reduce_sum(b.mul(weights, nll)?, &[0])?;
    let loss = b.div(num, b.add(weight_sum, b.scalar(1e-5f32)?)?)?;
    let correct_sum = b.reduce_sum(b.mul(weights, correct)?, &[0])?;
    let accuracy = b.div(
        correct_sum,
        b.max(weight_sum, b.scalar(f32::MIN_POSITIVE)?)?,
    )?;
    Ok((loss, accuracy, weight_sum, correct_sum))
}

/// NSP loss and metrics: `(loss, accuracy, correct_sum)` for `logits: f32[batch, 2]`,
/// `labels: s32[batch]`.
pub fn nsp_loss(b: &Builder, logits: Value, labels: Value) -> Result<(Value, Value, Value)> {
    let n = b.dims(logits)?[0];
    let count = b.scalar(n as f32)?;
    let (nll, correct) = nll_and_correct(b, logits, labels)?;
    let loss = b.div(b.reduce_sum(nll, &[0])?, count)?;
    let correct_sum = b.reduce_sum(correct, &[0])?;
    Ok((loss, b.div(correct_sum, count)?, correct_sum))
}

/// NSP loss and metrics over weighted slots (a packed batch's instances, weight 0 for unused
/// slots): `(loss, accuracy, correct_sum)` for `logits: f32[n, 2]`, `labels: s32[n]`,
/// `weights: f32[n]`. With every weight 1 this is [`nsp_loss`].
pub fn nsp_loss_weighted(
    b: &Builder,
    logits: Value,
    labels: Value,
    weights: Value,
) -> Result<(Value, Value, Value)> {
    let count = b.max(b.reduce_sum(weights, &[0])?, b.scalar(f32::MIN_POSITIVE)?)?;
    let (nll, correct) = nll_and_correct(b, logits, labels)?;
    let loss = b.div(b.reduce_sum(b.mul(weights, nll)?, &[0])?, count)?;
    let correct_sum = b.reduce_sum(b.mul(weights, correct)?, &[0])?;
    Ok((loss, b.div(correct_sum, count)?, correct_sum))
}

//! The SQuAD head of run_squad.py's `create_model`: one dense layer `[hidden, 2]` on the encoder's
//! sequence output gives a start and an end logit per token; the loss is the mean of the start
//! and end softmax cross-entropies over the sequence, positions as labels, nothing masked (as
//! run_squad and Hugging Face `BertForQuestionAnswering` compute it):
//!
//! ```text
//! logits          = sequence W + b                 W: [hidden, 2], f32 result
//! start, end      = logits[..., 0], logits[..., 1] [batch, seq]
//! loss            = (mean_i nll(start_i, s_i) + mean_i nll(end_i, e_i)) / 2
//! ```
//! The fine-tuned model is the encoder without its pooler (the QA head never reads the pooled
//! output; run_squad's optimizer gets no gradient for it either) plus `qa_outputs.*`.
use super::head_dense::head_dense_f32;
use crate::import::tf_names::{QA_BIAS, QA_WEIGHT};
use crate::model::loss::label_nll;
use crate::model::params::{encoder_param_specs, names, ParamInit};
use crate::model::{encoder_forward, BertConfig, EncoderInputs, Execution, ParamSpec, ParamValues};
use anyhow::{bail, Result};
use hlo::{ArrayShape, Builder, ElementType, Value};

/// The QA head's parameters: `qa_outputs.weight` `[hidden, 2]` (truncated normal, as
/// run_squad's `output_weights`) and `qa_outputs.bias` `[2]` (zeros).
pub fn qa_head_specs(cfg: &BertConfig) -> Vec<ParamSpec> {
    vec![
        ParamSpec {
            name: QA_WEIGHT.into(),
            dims: vec![cfg.hidden_size, 2],
            init: ParamInit::TruncatedNormal,
            real_rows: cfg.hidden_size,
        },
        ParamSpec {
            name: QA_BIAS.into(),
            dims: vec![2],
            init: ParamInit::Zeros,
            real_rows: 2,
        },
    ]
}

/// Whether a parameter belongs to the pooler (not part of the QA model).
fn is_pooler(name: &str) -> bool {
    name.starts_with(names::POOLER)
}

/// The fine-tuned model's parameters, in a fixed order: the encoder's (embeddings, layers; no
/// pooler), then the QA head.
pub fn squad_param_specs(cfg: &BertConfig) -> Vec<ParamSpec> {
    let mut v: Vec<ParamSpec> = encoder_param_specs(cfg)
        .into_iter()
        .filter(|s| !is_pooler(&s.name))
        .collect();
    v.extend(qa_head_specs(cfg));
    v
}

/// The start and end logits, f32 `[batch, seq]` each, from the sequence output
/// `[batch, seq, hidden]` (in the compute dtype). The matmul runs in the sequence's type with
/// f32 accumulation, as the encoder's dense layers do.
pub fn qa_logits(
    b: &Builder,
    sequence: Value,
    weight: Value,
    bias: Value,
) -> Result<(Value, Value)> {
    let s = b.array_shape(sequence, "qa_logits")?;
    let w = b.array_shape(weight, "qa_logits")?;
    if s.rank() != 3 || w.dims != [s.dims[2], 2] || b.dims(bias)? != [2] {
        bail!(
            "QA head: needs a [batch, seq, hidden] sequence, a [hidden, 2] weight and a [2] bias; \
             got {s}, {w} and {}",
            b.array_shape(bias, "qa_logits")?
        );
    }
    let logits = head_dense_f32(b, sequence, weight, bias)?;
    let out = b.dims(logits)?;
    let (batch, seq) = (out[0], out[1]);
    let pick = |i: i64| -> Result<Value> {
        Ok(b.reshape(b.slice_in_dim(logits, i, i + 1, 2)?, &[batch, seq])?)
    };
    Ok((pick(0)?, pick(1)?))
}

/// run_squad's `compute_loss`: mean over the batch of the softmax cross-entropy of `logits`
/// (f32 `[batch, seq]`) at `positions` (s32 `[batch]`).
pub fn position_loss(b: &Builder, logits: Value, positions: Value) -> Result<Value> {
    let n = b.dims(logits)?[0];
    let nll = label_nll(b, logits, positions)?;
    Ok(b.div(b.reduce_sum(nll, &[0])?, b.scalar(n as f32)?)?)
}

/// The QA loss and its two halves: `(loss, start_loss, end_loss)`, f32 scalars.
pub fn qa_loss(
    b: &Builder,
    start_logits: Value,
    end_logits: Value,
    start_positions: Value,
    end_positions: Value,
) -> Result<(Value, Value, Value)> {
    let start = position_loss(b, start_logits, start_positions)?;
    let end = position_loss(b, end_logits, end_positions)?;
    let loss = b.mul(b.add(start, end)?, b.scalar(0.5f32)?)?;
    Ok((loss, start, end))
}

/// The encoder (dropout when `train`, drawing from `key`) and the QA head: start and end logits,
/// f32 `[batch, seq]`. `params` holds [`squad_param_specs`]' names.
pub fn squad_logits(
    b: &Builder,
    cfg: &BertConfig,
    exec: Execution,
    params: &ParamValues,
    inputs: &EncoderInputs,
    key: Value,
    train: bool,
) -> Result<(Value, Value)> {
    // The encoder builds its pooler too; zeros stand in for the pooler's weights, whose output
    // nothing reads (dead code, removed by the compiler).
    let mut with_pooler = params.clone();
    let h = cfg.hidden_size as i64;
    for (name, dims) in [
        (names::weight(names::POOLER), vec![h, h]),
        (names::bias(names::POOLER), vec![h]),
    ] {
        if params.get(&name).is_err() {
            with_pooler.insert(name, b.full(&ArrayShape::new(ElementType::F32, dims), 0.0)?);
        }
    }
    let enc = encoder_forward(b, cfg, exec, &with_pooler, inputs, key, train)?;
    let _scope = b.scope("qa_head");
    qa_logits(
        b,
        enc.sequence,
        params.get(QA_WEIGHT)?,
        params.get(QA_BIAS)?,
    )
}

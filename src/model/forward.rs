//! The whole model: [`encoder_forward`] (embeddings, encoder layers, pooler; SQuAD builds on it),
//! [`encoder_layer_outputs`] (every layer's hidden states, no pooler; feature extraction) and
//! [`pretraining_forward`] / [`pretraining_loss`] (MLM + NSP heads, losses, metrics), on padded
//! or packed batches (see [`super::packed`]).
//!
//! Each takes the architecture `cfg` and the run's execution choices `exec` (compute dtype,
//! attention kernel; see [`super::execution`]). `train` turns dropout on; it draws from `key`
//! (the `u64[2]` dropout RNG state, see hlo's dropout), which advances at every dropout and
//! comes back as [`EncoderOutput::key`]. With `train == false` the key is not used and the
//! graph is deterministic.
use super::batch::{dims_of, BatchValues};
use super::embeddings::embeddings;
use super::encoder::{attention_bias, encoder_layer};
use super::heads::{mlm_logits, nsp_logits, pooler, pooler_at};
use super::layers::Ctx;
use super::loss::{mlm_loss, nsp_loss, nsp_loss_weighted, Metrics};
use super::packed::{instance_attention_bias, PackedValues};
use super::params::ParamValues;
use super::{BertConfig, Execution, ModelError, Result};
use hlo::{Builder, ElementType, Value};

/// The encoder's inputs: s32 `[batch, seq]` each (see [`super::batch`] for their meaning).
#[derive(Clone, Copy, Debug)]
pub struct EncoderInputs {
    pub input_ids: Value,
    pub segment_ids: Value,
    pub input_mask: Value,
}

#[derive(Clone, Copy, Debug)]
pub struct EncoderOutput {
    /// The last layer's hidden states, `[batch, seq, hidden]` in the compute dtype.
    pub sequence: Value,
    /// tanh(dense(first token)), `[batch, hidden]` in the compute dtype; for packed rows the
    /// first token of every NSP slot, `[batch * k, hidden]`.
    pub pooled: Value,
    /// The RNG key after the encoder's dropouts (the input key when none ran).
    pub key: Value,
}

#[derive(Clone, Copy, Debug)]
pub struct PretrainingOutput {
    /// mlm_loss + nsp_loss, f32 scalar.
    pub loss: Value,
    pub metrics: Metrics,
    pub encoder: EncoderOutput,
    /// f32 `[batch * max_predictions, padded_vocab]` (padded ids at the masked constant).
    pub mlm_logits: Value,
    /// f32 `[batch, 2]` (packed: `[batch * k, 2]`, one row per NSP slot).
    pub nsp_logits: Value,
    /// The RNG key after every dropout.
    pub key: Value,
}

/// BERT's encoder on `inputs`: sequence output and pooled output.
pub fn encoder_forward(
    b: &Builder,
    cfg: &BertConfig,
    exec: Execution,
    params: &ParamValues,
    inputs: &EncoderInputs,
    key: Value,
    train: bool,
) -> Result<EncoderOutput> {
    let ctx = Ctx::new(b, cfg, exec, params, key, train)?;
    encoder(&ctx, inputs, None)
}

/// The output of every encoder layer, first to last, `[batch, seq, hidden]` each in the compute
/// dtype: google-research/bert's `get_all_encoder_layers()` (the embeddings are not among them).
/// The pooler is not built, so `params` need not hold it.
pub fn encoder_layer_outputs(
    b: &Builder,
    cfg: &BertConfig,
    exec: Execution,
    params: &ParamValues,
    inputs: &EncoderInputs,
    key: Value,
    train: bool,
) -> Result<Vec<Value>> {
    let ctx = Ctx::new(b, cfg, exec, params, key, train)?;
    layer_outputs(&ctx, inputs, None)
}

/// The encoder and the pooler (at each instance's first token when `packed`).
fn encoder(
    ctx: &Ctx,
    inputs: &EncoderInputs,
    packed: Option<&PackedValues>,
) -> Result<EncoderOutput> {
    let layers = layer_outputs(ctx, inputs, packed)?;
    let Some(&x) = layers.last() else {
        return Err(ModelError::Config {
            field: "num_hidden_layers",
            msg: "must be at least 1".into(),
        });
    };
    let pooled = ctx.b.with_scope("pooler", |_| match packed {
        None => pooler(ctx, x),
        Some(p) => pooler_at(ctx, x, p.next_sentence_positions),
    })?;
    Ok(EncoderOutput {
        sequence: x,
        pooled,
        key: ctx.key(),
    })
}

/// Embeddings, then every layer; each layer's output, in order. Built in the name scopes
/// `embeddings` and `encoder/layer_{l}` (with `pooler`, `mlm_head`, `nsp_head` and `loss`
/// around them), which lowering writes into each op's `op_name` for XLA dumps and profiles.
/// Packed rows (`packed`, with instance numbers in `input_mask`) take their positions from
/// `position_ids` and attend within their instance only.
fn layer_outputs(
    ctx: &Ctx,
    inputs: &EncoderInputs,
    packed: Option<&PackedValues>,
) -> Result<Vec<Value>> {
    let b = ctx.b;
    let ids = dims_of(b, inputs.input_ids, "input_ids", ElementType::S32, 2)?;
    for (field, v) in [
        ("segment_ids", inputs.segment_ids),
        ("input_mask", inputs.input_mask),
    ] {
        if dims_of(b, v, field, ElementType::S32, 2)? != ids {
            return Err(ModelError::Batch {
                field,
                msg: format!("must have input_ids' dims {ids:?}"),
            });
        }
    }
    let position_ids = packed.map(|p| p.position_ids);
    if let Some(v) = position_ids {
        if dims_of(b, v, "position_ids", ElementType::S32, 2)? != ids {
            return Err(ModelError::Batch {
                field: "position_ids",
                msg: format!("must have input_ids' dims {ids:?}"),
            });
        }
    }
    let mut x = b.with_scope("embeddings", |_| {
        embeddings(ctx, inputs.input_ids, inputs.segment_ids, position_ids)
    })?;
    let _encoder = b.scope("encoder");
    let bias = match packed {
        None => attention_bias(ctx, inputs.input_mask)?,
        Some(_) => instance_attention_bias(ctx, inputs.input_mask)?,
    };
    let mut outputs = Vec::with_capacity(ctx.cfg.num_hidden_layers);
    for l in 0..ctx.cfg.num_hidden_layers {
        let _layer = b.scope(&format!("layer_{l}"));
        x = encoder_layer(ctx, x, bias, l)?;
        outputs.push(x);
    }
    Ok(outputs)
}

/// The pretraining graph: encoder, MLM and NSP heads, losses and metrics.
pub fn pretraining_forward(
    b: &Builder,
    cfg: &BertConfig,
    exec: Execution,
    params: &ParamValues,
    batch: &BatchValues,
    key: Value,
    train: bool,
) -> Result<PretrainingOutput> {
    batch.shapes(b)?;
    let ctx = Ctx::new(b, cfg, exec, params, key, train)?;
    let inputs = EncoderInputs {
        input_ids: batch.input_ids,
        segment_ids: batch.segment_ids,
        input_mask: batch.input_mask,
    };
    let enc = encoder(&ctx, &inputs, batch.packed.as_ref())?;
    let wide = b.with_scope("mlm_head", |_| {
        mlm_logits(&ctx, enc.sequence, batch.masked_lm_positions)
    })?;
    let nsp = b.with_scope("nsp_head", |_| nsp_logits(&ctx, enc.pooled))?;
    let _loss = b.scope("loss");
    let n = b.dims(wide)?[0];
    let labels = b.reshape(batch.masked_lm_ids, &[n])?;
    let weights = b.reshape(batch.masked_lm_weights, &[n])?;
    let (mlm_l, mlm_acc, weight_sum, mlm_correct) = mlm_loss(b, wide, labels, weights)?;
    // The output keeps the (padded) vocabulary's width; the step's wider columns were padding.
    let vp = cfg.padded_vocab_size() as i64;
    let mlm = if b.dims(wide)?[1] == vp {
        wide
    } else {
        b.slice_in_dim(wide, 0, vp, 1)?
    };
    let (nsp_l, nsp_acc, nsp_correct) = match batch.packed {
        None => nsp_loss(b, nsp, batch.next_sentence_labels)?,
        Some(p) => {
            let slots = b.dims(nsp)?[0];
            let labels = b.reshape(batch.next_sentence_labels, &[slots])?;
            let weights = b.reshape(p.next_sentence_weights, &[slots])?;
            nsp_loss_weighted(b, nsp, labels, weights)?
        }
    };
    Ok(PretrainingOutput {
        loss: b.add(mlm_l, nsp_l)?,
        metrics: Metrics {
            mlm_loss: mlm_l,
            nsp_loss: nsp_l,
            mlm_accuracy: mlm_acc,
            nsp_accuracy: nsp_acc,
            mlm_weight_sum: weight_sum,
            mlm_correct_sum: mlm_correct,
            nsp_correct_sum: nsp_correct,
        },
        encoder: enc,
        mlm_logits: mlm,
        nsp_logits: nsp,
        key: ctx.key(),
    })
}

/// The total pretraining loss (f32 scalar, MLM + NSP) and the metrics: the function the train
/// step differentiates with respect to the parameter values.
pub fn pretraining_loss(
    b: &Builder,
    cfg: &BertConfig,
    exec: Execution,
    params: &ParamValues,
    batch: &BatchValues,
    key: Value,
    train: bool,
) -> Result<(Value, Metrics)> {
    let out = pretraining_forward(b, cfg, exec, params, batch, key, train)?;
    Ok((out.loss, out.metrics))
}

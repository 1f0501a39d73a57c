//! Embeddings: word + position + token type, layer norm, dropout (google-research/bert's
//! `embedding_lookup` + `embedding_postprocessor`). Positions are `0..seq`, or a packed batch's
//! `position_ids` (restarting at each instance).
use super::layers::Ctx;
use super::params::names;
use super::{ModelError, Result};
use hlo::{ElementType, Value};

/// `[batch, seq]` ids and segment ids (and position ids, when given) to `[batch, seq, hidden]`
/// in the compute dtype.
pub(crate) fn embeddings(
    ctx: &Ctx,
    input_ids: Value,
    segment_ids: Value,
    position_ids: Option<Value>,
) -> Result<Value> {
    let (b, cfg) = (ctx.b, ctx.cfg);
    let h = cfg.hidden_size;
    let dims = b.dims(input_ids)?;
    let &[_, seq] = &dims[..] else {
        return Err(ModelError::Batch {
            field: "input_ids",
            msg: format!("must be [batch, seq], got dims {dims:?}"),
        });
    };
    if seq as usize > cfg.max_position_embeddings {
        return Err(ModelError::Batch {
            field: "input_ids",
            msg: format!(
                "sequence length {seq} exceeds max_position_embeddings {}",
                cfg.max_position_embeddings
            ),
        });
    }
    let f32 = |v: Value| b.convert(v, ElementType::F32);
    let word = ctx.param(names::WORD_EMBEDDINGS, &[cfg.padded_vocab_size(), h])?;
    let pos = ctx.param(
        names::POSITION_EMBEDDINGS,
        &[cfg.max_position_embeddings, h],
    )?;
    let types = ctx.param(names::TOKEN_TYPE_EMBEDDINGS, &[cfg.type_vocab_size, h])?;
    // Gather, then convert: a 16-bit table is never converted whole.
    let word = f32(b.take(word, input_ids, 0)?)?;
    let with_pos = match position_ids {
        Some(ids) => b.add(word, f32(b.take(pos, ids, 0)?)?)?,
        // The same positions in every row: their gradient is a sum over the batch, taken as a
        // dot (`add_batch_broadcast`) so that XLA:GPU keeps the default layouts.
        None => b.add_batch_broadcast(word, f32(b.slice_in_dim(pos, 0, seq, 0)?)?)?,
    };
    let types = f32(b.take(types, segment_ids, 0)?)?;
    let sum = b.add(with_pos, types)?;
    let x = ctx.layer_norm(sum, names::EMBEDDINGS_LN)?;
    let x = b.convert(x, ctx.ct)?;
    ctx.dropout(x, cfg.hidden_dropout_prob)
}

//! The packed batch layout: several pretraining instances per row, each computed as if it were
//! alone (src/data/packing.rs makes such rows; the layout is NVIDIA's and Graphcore's packed
//! BERT, Krell et al. 2021).
//!
//! Compared with the padded layout ([`super::batch`]), with `k` = `max_instances_per_row`:
//! - `input_mask` holds each token's instance number 1..=k (0 = padding): a padded row is a
//!   packed row with one instance.
//! - `position_ids` s32 `[batch, seq]` restart at 0 for each instance (the position embedding
//!   is gathered, not sliced).
//! - attention is block-diagonal: token i sees token j only when both belong to the same
//!   instance (`mask[b,i,j] = id[b,i] == id[b,j] && id[b,j] != 0`), as the padded model's
//!   `-10000` bias hides padding keys, so no instance sees another.
//! - NSP has `k` slots per row: `next_sentence_positions` s32 `[batch, k]` (each instance's
//!   `[CLS]`, where the pooler reads), `next_sentence_labels` s32 `[batch, k]` and
//!   `next_sentence_weights` f32 `[batch, k]` (1 = an instance, 0 = an unused slot).
//! - MLM fields keep their meaning; positions index the packed row.
//!
//! Losses are means over the batch's instances and predictions (NSP: sum(w * nll) / sum(w),
//! MLM as before), so a packed batch and the padded batch of the same instances have the same
//! loss and gradients (tests/packed_sequences.rs).
use super::layers::Ctx;
use super::Result;
use hlo::{ArrayShape, ElementType, Value};

/// The inputs only a packed batch has (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct PackedValues {
    /// s32 `[batch, seq]`.
    pub position_ids: Value,
    /// s32 `[batch, k]`.
    pub next_sentence_positions: Value,
    /// f32 `[batch, k]`.
    pub next_sentence_weights: Value,
}

/// The additive attention bias of packed rows, f32 `[batch, seq(query), seq(key)]`: 0 where the
/// key is a real token of the query's instance, -10000 (the padded model's constant)
/// elsewhere. `instance_ids` is the packed `input_mask`.
pub(crate) fn instance_attention_bias(ctx: &Ctx, instance_ids: Value) -> Result<Value> {
    let b = ctx.b;
    let dims = b.dims(instance_ids)?;
    let (batch, seq) = (dims[0], dims[1]);
    let out = [batch, seq, seq];
    let query = b.broadcast_in_dim(instance_ids, &out, &[0, 1])?;
    let key = b.broadcast_in_dim(instance_ids, &out, &[0, 2])?;
    let allowed = b.and(b.eq(query, key)?, b.ne(key, b.zeros_like(key)?)?)?;
    let shape = ArrayShape::new(ElementType::F32, out.to_vec());
    Ok(b.select(allowed, b.full(&shape, 0.0)?, b.full(&shape, -10000.0)?)?)
}

//! The pooler and the pretraining heads (google-research/bert's `get_masked_lm_output` and
//! `get_next_sentence_output`).
//!
//!   pooled     = tanh(dense(sequence[:, 0]))   (packed: at each instance's first token)
//!   mlm_logits = LN(act(dense(sequence at masked_lm_positions))) E^T + b   (E: word embeddings)
//!   nsp_logits = pooled W + b,  W: [hidden, 2]
//!
//! The MLM logits leave their matmul in the compute dtype (bf16 under bf16) and are widened to
//! f32 before the bias; the softmax, loss and argmax run in f32.
//!
//! With vocabulary padding the logits of the padded ids are set to [`PADDED_LOGIT`], so their
//! softmax weight is exactly 0 in f32 and they never win the argmax. Inside the step the logits
//! are wider still, [`logits_width`]: the table and the bias are padded with zero rows up to a
//! multiple of [`LOGITS_ALIGN`] (in the step only; the parameters keep their shapes), and those
//! columns are set to [`PADDED_LOGIT`] too. BERT's 30,522 is not a multiple of 8, and XLA:GPU
//! then ran the backward GEMM that contracts over the vocabulary as a Triton fusion at less than
//! half the forward's throughput (0.87 against 0.39 ms per BERT-base step on an H100).
use super::layers::Ctx;
use super::params::names;
use super::BertConfig;
use super::Result;
use hlo::ir::{DotDims, PadDim};
use hlo::{ArrayShape, ElementType, Value};

/// The logit of a padded vocabulary entry: exp(PADDED_LOGIT - max) underflows to 0 for any
/// realistic max, and unlike -inf it gives no NaN when multiplied by 0.
pub const PADDED_LOGIT: f64 = -1e9;

/// The MLM logits' width inside the step is a multiple of this.
pub const LOGITS_ALIGN: usize = 64;

/// The width of the MLM logits the step computes: the padded vocabulary rounded up to a
/// multiple of [`LOGITS_ALIGN`].
pub fn logits_width(cfg: &BertConfig) -> usize {
    cfg.padded_vocab_size().div_ceil(LOGITS_ALIGN) * LOGITS_ALIGN
}

/// Dense + tanh on the first token: `[batch, seq, hidden]` -> `[batch, hidden]`.
pub(crate) fn pooler(ctx: &Ctx, sequence: Value) -> Result<Value> {
    let b = ctx.b;
    let h = ctx.cfg.hidden_size;
    let dims = b.dims(sequence)?;
    let first = b.reshape(b.slice_in_dim(sequence, 0, 1, 1)?, &[dims[0], h as i64])?;
    Ok(b.tanh(ctx.dense(first, names::POOLER, h, h)?)?)
}

/// Dense + tanh on the tokens at `positions: s32[batch, k]` (each packed instance's `[CLS]`):
/// `[batch, seq, hidden]` -> `[batch * k, hidden]`.
pub(crate) fn pooler_at(ctx: &Ctx, sequence: Value, positions: Value) -> Result<Value> {
    let h = ctx.cfg.hidden_size;
    let first = gather_positions(ctx, sequence, positions)?;
    Ok(ctx.b.tanh(ctx.dense(first, names::POOLER, h, h)?)?)
}

/// The hidden states at `positions: s32[batch, p]`, as `[batch * p, hidden]` (the original's
/// `gather_indexes`: flat index = position + example * seq).
pub(crate) fn gather_positions(ctx: &Ctx, sequence: Value, positions: Value) -> Result<Value> {
    let b = ctx.b;
    let dims = b.dims(sequence)?;
    let (batch, seq, h) = (dims[0], dims[1], dims[2]);
    let pdims = b.dims(positions)?;
    let example = b.iota(&ArrayShape::new(ElementType::S32, pdims.clone()), 0)?;
    let flat = b.add(positions, b.mul(example, b.scalar(seq as i32)?)?)?;
    let flat = b.reshape(flat, &[pdims.iter().product()])?;
    let table = b.reshape(sequence, &[batch * seq, h])?;
    Ok(b.take(table, flat, 0)?)
}

/// MLM logits at `positions`: f32 `[batch * p, logits_width]`, every column from the real
/// vocabulary's size on at [`PADDED_LOGIT`].
pub(crate) fn mlm_logits(ctx: &Ctx, sequence: Value, positions: Value) -> Result<Value> {
    let (b, cfg) = (ctx.b, ctx.cfg);
    let (h, vp, width) = (cfg.hidden_size, cfg.padded_vocab_size(), logits_width(cfg));
    let x = gather_positions(ctx, sequence, positions)?;
    let x = ctx.act(ctx.dense(x, names::MLM_TRANSFORM, h, h)?)?;
    let x = ctx.layer_norm(x, names::MLM_TRANSFORM_LN)?;
    // Zero rows appended to the table [vp, h] and the bias [vp], up to `width`.
    let widen = |v: Value| -> Result<Value> {
        if width == vp {
            return Ok(v);
        }
        let a = b.array_shape(v, "pad")?;
        let rows = PadDim {
            low: 0,
            high: (width - vp) as i64,
            interior: 0,
        };
        let mut dims = vec![rows];
        dims.resize(a.rank(), PadDim::default());
        Ok(b.pad(v, b.scalar_of(a.ty, 0.0)?, &dims)?)
    };
    let table = widen(ctx.param(names::WORD_EMBEDDINGS, &[vp, h])?)?;
    let dims = DotDims {
        lhs_contracting: vec![1],
        rhs_contracting: vec![1],
        ..Default::default()
    };
    // Under bf16 the GEMM writes bf16 logits (as JAX's and autocast's heads do): the largest
    // tensor of the step at half the bytes, read again by every pass of the softmax and the
    // argmax, which widen it to f32 inside their fusions; its gradient goes back in bf16 too.
    let logits = b.convert(ctx.dot_ct(x, table, dims)?, ElementType::F32)?;
    let out = b.dims(logits)?;
    let bias = widen(ctx.param(names::MLM_BIAS, &[vp])?)?;
    let bias = b.convert(bias, ElementType::F32)?;
    let logits = b.add(logits, b.broadcast_in_dim(bias, &out, &[1])?)?;
    if width == cfg.vocab_size {
        return Ok(logits);
    }
    let id = b.iota(&ArrayShape::new(ElementType::S32, out.clone()), 1)?;
    let real = b.lt(id, b.scalar(cfg.vocab_size as i32)?)?;
    let padded = b.full(&ArrayShape::new(ElementType::F32, out), PADDED_LOGIT)?;
    Ok(b.select(real, logits, padded)?)
}

/// NSP logits: f32 `[batch, 2]` (index 0 = "is next").
pub(crate) fn nsp_logits(ctx: &Ctx, pooled: Value) -> Result<Value> {
    ctx.dense_f32(pooled, names::NSP, ctx.cfg.hidden_size, 2)
}

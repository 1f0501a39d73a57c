//! Post-LN transformer layers as google-research/bert's `transformer_model`:
//!
//!   a = LN(x + dropout(dense(attention(x))))
//!   y = LN(a + dropout(dense(act(dense(a)))))
//!
//! Attention: scores = q k^T / sqrt(head_size) + bias, with bias = (1 - input_mask) * -10000 on
//! padded keys (the original constant), softmax over keys in f32, dropout on the probabilities.
//! Packed rows (src/model/packed.rs) bring a `[batch, seq, seq]` bias instead, -10000 on every
//! key outside the query's instance; both kernels take either.
//! Under bf16 the q.k and probs.v matmuls output bf16 (f32 accumulation inside). Under fp8 the
//! six dense layers of a training graph are FP8 matmuls (`super::fp8`); attention stays bf16.
//!
//! With [`AttentionKernel::CudnnFused`] (CUDA, bf16) the scores-softmax-dropout-context chain is
//! one cuDNN flash-attention call instead, with the same mask bias (rounded to bf16: -9984) and
//! the same dropout rate; its dropout bits come from cuDNN's generator.
use super::layers::Ctx;
use super::params::names;
use super::{AttentionKernel, Result};
use hlo::ir::DotDims;
use hlo::ops::FusedAttention;
use hlo::{ElementType, Value};

/// The original's additive attention mask: (1 - mask) * -10000, f32 `[batch, seq]` over keys.
pub(crate) fn attention_bias(ctx: &Ctx, input_mask: Value) -> Result<Value> {
    let b = ctx.b;
    let m = b.convert(input_mask, ElementType::F32)?;
    let one_minus = b.sub(b.scalar(1.0f32)?, m)?;
    Ok(b.mul(one_minus, b.scalar(-10000.0f32)?)?)
}

/// Where `bias` (`[batch, key]`, or `[batch, query, key]` for packed rows) goes in the
/// `[batch, heads, query, key]` scores.
fn bias_dims(b: &hlo::Builder, bias: Value) -> Result<&'static [i64]> {
    Ok(if b.dims(bias)?.len() == 3 {
        &[0, 2, 3]
    } else {
        &[0, 3]
    })
}

/// One encoder layer `l` on `x: [batch, seq, hidden]` (compute dtype).
pub(crate) fn encoder_layer(ctx: &Ctx, x: Value, bias: Value, l: usize) -> Result<Value> {
    let (b, cfg) = (ctx.b, ctx.cfg);
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    // Name scopes (`encoder/layer_{l}/attention`, `.../ffn`) label XLA's dumps and profiles.
    let a = {
        let _attention = b.scope("attention");
        let context = self_attention(ctx, x, bias, l)?;
        let attn = ctx.encoder_dense(context, &names::layer(l, "attention.output.dense"), h, h)?;
        let attn = ctx.dropout(attn, cfg.hidden_dropout_prob)?;
        ctx.layer_norm(
            b.add(attn, x)?,
            &names::layer(l, "attention.output.LayerNorm"),
        )?
    };
    let _ffn = b.scope("ffn");
    let inter = ctx.act(ctx.encoder_dense(a, &names::layer(l, "intermediate.dense"), h, i)?)?;
    let out = ctx.encoder_dense(inter, &names::layer(l, "output.dense"), i, h)?;
    let out = ctx.dropout(out, cfg.hidden_dropout_prob)?;
    ctx.layer_norm(b.add(out, a)?, &names::layer(l, "output.LayerNorm"))
}

/// Multi-head self-attention of layer `l`: the per-head contexts, `[batch, seq, hidden]`.
fn self_attention(ctx: &Ctx, x: Value, bias: Value, l: usize) -> Result<Value> {
    let (b, cfg) = (ctx.b, ctx.cfg);
    let dims = b.dims(x)?;
    let (batch, seq) = (dims[0], dims[1]);
    let (h, heads, d) = (
        cfg.hidden_size as i64,
        cfg.num_attention_heads as i64,
        cfg.head_size() as i64,
    );
    // [batch, seq, heads, head_size]
    let project = |part: &str| -> Result<Value> {
        let name = names::layer(l, &format!("attention.self.{part}"));
        let y = ctx.encoder_dense(x, &name, h as usize, h as usize)?;
        Ok(b.reshape(y, &[batch, seq, heads, d])?)
    };
    let (q, k, v) = (project("query")?, project("key")?, project("value")?);
    let scale = 1.0 / (d as f64).sqrt();
    if let AttentionKernel::CudnnFused { seed } = ctx.exec.attention {
        let rate = if ctx.training() {
            cfg.attention_probs_dropout_prob
        } else {
            0.0
        };
        // One generator stream per layer: the same seed would repeat the mask across layers.
        let seed = seed.wrapping_add((l as i64).wrapping_mul(0x9E37_79B9));
        let bias = b.broadcast_in_dim(bias, &[batch, 1, seq, seq], bias_dims(b, bias)?)?;
        let bias = b.convert(bias, ctx.ct)?;
        let attn = FusedAttention {
            scale,
            dropout_rate: rate,
            seed,
        };
        let context = b.cudnn_attention(q, k, v, bias, attn)?;
        return Ok(b.reshape(context, &[batch, seq, h])?);
    }
    // scores[b, n, i, j] = sum_d q[b, i, n, d] k[b, j, n, d]
    let score_dims = DotDims {
        lhs_batch: vec![0, 2],
        rhs_batch: vec![0, 2],
        lhs_contracting: vec![3],
        rhs_contracting: vec![3],
    };
    // Under bf16 the scores leave the matmul in bf16 (the largest tensor of the layer, at half
    // the bytes); scale, mask and softmax then run in f32 inside one fusion.
    let scores = b.convert(ctx.dot_ct(q, k, score_dims)?, ElementType::F32)?;
    let scores = b.mul(scores, b.scalar_of(ElementType::F32, scale)?)?;
    let bias = b.broadcast_in_dim(bias, &[batch, heads, seq, seq], bias_dims(b, bias)?)?;
    let probs = b.softmax(b.add(scores, bias)?, -1)?;
    let probs = ctx.dropout(b.convert(probs, ctx.ct)?, cfg.attention_probs_dropout_prob)?;
    // context[b, n, i, d] = sum_j probs[b, n, i, j] v[b, j, n, d]
    let context_dims = DotDims {
        lhs_batch: vec![0, 1],
        rhs_batch: vec![0, 2],
        lhs_contracting: vec![3],
        rhs_contracting: vec![1],
    };
    let context = ctx.dot_ct(probs, v, context_dims)?;
    let context = b.transpose(context, &[0, 2, 1, 3])?;
    Ok(b.reshape(context, &[batch, seq, h])?)
}

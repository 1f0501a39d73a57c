//! Gradients of composite functions against central finite differences in f64 on the CPU
//! plugin (method and default tolerances in tests/autodiff_check: rtol 1e-6, atol 1e-8; up to
//! 24 random coordinates per input): softmax cross-entropy (composite and fused op), layer norm, both GELUs, masked
//! multi-head attention (batch 2, seq 4, heads 2, head dim 3, additive mask), an embedding
//! lookup with duplicate ids, and a transformer block (attention + FFN + layer norms).
mod autodiff_check;
mod common;
use autodiff_check::{check, input};
use common::lit;
use hlo::ir::DotDims;
use hlo::ElementType::F64;
use hlo::{Builder, Value};

type R = hlo::Result<Value>;

const B: i64 = 2;
const S: i64 = 4;
const HEADS: i64 = 2;
const HEAD_DIM: i64 = 3;
const HIDDEN: i64 = HEADS * HEAD_DIM;
const FFN: i64 = 8;

/// `x [.., k] @ w [k, n] + bias [n]`.
fn dense(b: &Builder, x: Value, w: Value, bias: Value) -> R {
    let y = b.matmul(x, w)?;
    let dims = b.dims(y)?;
    let last = dims.len() as i64 - 1;
    b.add(y, b.broadcast_in_dim(bias, &dims, &[last])?)
}

/// [B, S, HIDDEN] -> [B, HEADS, S, HEAD_DIM]
fn split_heads(b: &Builder, x: Value) -> R {
    b.transpose(b.reshape(x, &[B, S, HEADS, HEAD_DIM])?, &[0, 2, 1, 3])
}

/// BERT's self-attention: `p` = [wq, bq, wk, bk, wv, bv, wo, bo]; `mask` is [B, S] of 1 (attend)
/// and 0 (padding), turned into the additive -10000 mask.
fn attention(b: &Builder, x: Value, p: &[Value], mask: Value) -> R {
    let q = split_heads(b, dense(b, x, p[0], p[1])?)?;
    let k = split_heads(b, dense(b, x, p[2], p[3])?)?;
    let v = split_heads(b, dense(b, x, p[4], p[5])?)?;
    let qk = DotDims {
        lhs_batch: vec![0, 1],
        rhs_batch: vec![0, 1],
        lhs_contracting: vec![3],
        rhs_contracting: vec![3],
    };
    let scores = b.dot_general(q, k, qk, Default::default(), None)?; // [B, H, S, S]
    let scores = b.mul(scores, b.scalar((HEAD_DIM as f64).powf(-0.5))?)?;
    let add = b.mul(b.sub(b.scalar(1.0f64)?, mask)?, b.scalar(-10000.0f64)?)?;
    let add = b.broadcast_in_dim(add, &[B, HEADS, S, S], &[0, 3])?;
    let probs = b.softmax(b.add(scores, add)?, -1)?;
    let ctx = b.matmul(probs, v)?; // [B, H, S, D]
    let ctx = b.reshape(b.transpose(ctx, &[0, 2, 1, 3])?, &[B, S, HIDDEN])?;
    dense(b, ctx, p[6], p[7])
}

/// Attention parameters (seeded): 4 weights [HIDDEN, HIDDEN] of scale 0.5 and 4 biases.
fn attention_params(seed: u64) -> Vec<hlo::Literal> {
    (0..8)
        .map(|i| {
            if i % 2 == 0 {
                input(seed + i, &[HIDDEN, HIDDEN], 0.5, 0.0)
            } else {
                input(seed + i, &[HIDDEN], 0.1, 0.0)
            }
        })
        .collect()
}

/// Padding mask: batch 0 attends to all 4 positions, batch 1 to the first 3.
fn mask() -> hlo::Literal {
    lit(&[1.0f64, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0], &[B, S])
}

#[test]
fn softmax_cross_entropy() {
    let logits = input(1, &[4, 5], 2.0, 0.0);
    let labels = lit(&[3i32, 0, 4, 3], &[4]);
    check("softmax cross-entropy", &[logits, labels], &[0], &|b, p| {
        let onehot = b.one_hot(p[1], 5, F64, 1.0, 0.0)?;
        let nll = b.neg(b.reduce_sum(b.mul(onehot, b.log_softmax(p[0], -1)?)?, &[1])?)?;
        b.div(b.reduce_sum(nll, &[0])?, b.scalar(4.0f64)?)
    });
    // the fused op with its written-out gradient; labels -1 and 5 are out of range (gradient 0)
    let logits = input(3, &[5, 5], 2.0, 0.0);
    let labels = lit(&[3i32, 0, -1, 4, 5], &[5]);
    let grads = check("softmax_cross_entropy", &[logits, labels], &[0], &|b, p| {
        b.softmax_cross_entropy(p[0], p[1]).map(|ce| ce.nll)
    });
    for row in [2, 4] {
        let g = &grads[0][row * 5..row * 5 + 5];
        assert!(g.iter().all(|&v| v == 0.0), "row {row}: {g:?}");
    }
    // the softmax form (max subtraction, exp, sum, divide) on its own
    let x = input(2, &[3, 6], 1.5, 0.0);
    check("softmax", &[x], &[0], &|b, p| b.softmax(p[0], 1));
}

#[test]
fn add_batch_broadcast() {
    // 40 rows: the gradient of y is the dot-with-ones sum (x's is the cotangent itself)
    let x = input(60, &[40, 3, 2], 1.0, 0.0);
    let y = input(61, &[3, 2], 1.0, 0.0);
    check("add_batch_broadcast", &[x, y], &[0, 1], &|b, p| {
        b.add_batch_broadcast(p[0], p[1])
    });
}

#[test]
fn layer_norm() {
    let x = input(10, &[3, 6], 1.0, 0.5);
    let gamma = input(11, &[6], 0.2, 1.0);
    let beta = input(12, &[6], 0.2, 0.0);
    check("layer_norm", &[x, gamma, beta], &[0, 1, 2], &|b, p| {
        b.layer_norm(p[0], p[1], p[2], 1e-12)
    });
}

#[test]
fn gelu_both_forms() {
    let x = input(20, &[3, 4], 1.5, 0.0);
    check("gelu_erf", std::slice::from_ref(&x), &[0], &|b, p| {
        b.gelu_erf(p[0])
    });
    check("gelu_tanh", &[x], &[0], &|b, p| b.gelu_tanh(p[0]));
}

#[test]
fn masked_multi_head_attention() {
    let mut inputs = vec![input(30, &[B, S, HIDDEN], 1.0, 0.0), mask()];
    inputs.extend(attention_params(31));
    let wrt: Vec<usize> = (0..inputs.len()).filter(|&i| i != 1).collect();
    check("masked multi-head attention", &inputs, &wrt, &|b, p| {
        attention(b, p[0], &p[2..10], p[1])
    });
}

#[test]
fn embedding_lookup() {
    // word + position embeddings, then layer norm; id 3 appears three times, id 7 twice.
    let table = input(40, &[10, HIDDEN], 1.0, 0.0);
    let pos = input(41, &[S, HIDDEN], 0.5, 0.0);
    let ids = lit(&[3i32, 7, 3, 1, 3, 0, 7, 9], &[B, S]);
    let gamma = input(42, &[HIDDEN], 0.2, 1.0);
    let beta = input(43, &[HIDDEN], 0.2, 0.0);
    let g = check(
        "embedding lookup",
        &[table, ids, pos, gamma, beta],
        &[0, 2, 3, 4],
        &|b, p| {
            let e = b.take(p[0], p[1], 0)?; // [B, S, HIDDEN]
            let e = b.add(e, b.broadcast_in_dim(p[2], &[B, S, HIDDEN], &[1, 2])?)?;
            b.layer_norm(e, p[3], p[4], 1e-12)
        },
    );
    // rows never looked up (2, 4, 5, 6, 8) get exactly zero
    for row in [2, 4, 5, 6, 8] {
        let r = &g[0][row * HIDDEN as usize..(row + 1) * HIDDEN as usize];
        assert!(r.iter().all(|&v| v == 0.0), "row {row}: {r:?}");
    }
}

#[test]
fn transformer_block() {
    // post-LN BERT layer: h = LN(x + attn(x)); out = LN(h + W2 gelu(W1 h + b1) + b2)
    let mut inputs = vec![input(50, &[B, S, HIDDEN], 1.0, 0.0), mask()];
    inputs.extend(attention_params(51));
    inputs.extend([
        input(60, &[HIDDEN], 0.2, 1.0),
        input(61, &[HIDDEN], 0.2, 0.0),
        input(62, &[HIDDEN, FFN], 0.5, 0.0),
        input(63, &[FFN], 0.1, 0.0),
        input(64, &[FFN, HIDDEN], 0.5, 0.0),
        input(65, &[HIDDEN], 0.1, 0.0),
        input(66, &[HIDDEN], 0.2, 1.0),
        input(67, &[HIDDEN], 0.2, 0.0),
    ]);
    let wrt: Vec<usize> = (0..inputs.len()).filter(|&i| i != 1).collect();
    check("transformer block", &inputs, &wrt, &|b, p| {
        let a = attention(b, p[0], &p[2..10], p[1])?;
        let h = b.layer_norm(b.add(p[0], a)?, p[10], p[11], 1e-12)?;
        let f = b.gelu_erf(dense(b, h, p[12], p[13])?)?;
        let f = dense(b, f, p[14], p[15])?;
        b.layer_norm(b.add(h, f)?, p[16], p[17], 1e-12)
    });
}

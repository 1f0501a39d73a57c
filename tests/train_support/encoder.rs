//! A compact BERT-style transformer encoder (post-layer-norm, as BERT) with a token-level
//! softmax cross-entropy head, written against the train step's loss-function interface. Shared
//! by the train tests (a one-block model trained on CPU) and the train-step build bench (12
//! layers, 768 hidden); it does not depend on the full model in `src/model`.
#![allow(dead_code)]
use anyhow::Result;
use hlo::ir::DotDims;
use hlo::{Builder, ElementType, Literal, Value};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use tpu_run::train::{Batch, BatchSpec, LossAndMetrics, ParamSpec, Params, Policy};

#[derive(Clone, Copy, Debug)]
pub struct EncoderConfig {
    pub vocab: i64,
    pub hidden: i64,
    pub layers: usize,
    pub heads: i64,
    pub ffn: i64,
    pub seq: i64,
    pub batch: i64,
}

impl EncoderConfig {
    /// BERT-base's encoder shapes (12 layers, 768 hidden, 12 heads, 3072 FFN).
    pub fn bert_base(seq: i64, batch: i64) -> Self {
        Self {
            vocab: 30522,
            hidden: 768,
            layers: 12,
            heads: 12,
            ffn: 3072,
            seq,
            batch,
        }
    }
}

/// Parameters, named as in Google's BERT checkpoints (so LayerNorm and bias get no decay).
pub fn param_specs(c: &EncoderConfig) -> Vec<ParamSpec> {
    let h = c.hidden;
    let mut p = vec![
        ParamSpec::new("embeddings/word_embeddings", &[c.vocab, h]),
        ParamSpec::new("embeddings/position_embeddings", &[c.seq, h]),
        ParamSpec::new("embeddings/LayerNorm/gamma", &[h]),
        ParamSpec::new("embeddings/LayerNorm/beta", &[h]),
    ];
    for l in 0..c.layers {
        let pre = format!("encoder/layer_{l}");
        let dense = |p: &mut Vec<ParamSpec>, name: &str, i: i64, o: i64| {
            p.push(ParamSpec::new(format!("{pre}/{name}/kernel"), &[i, o]));
            p.push(ParamSpec::new(format!("{pre}/{name}/bias"), &[o]));
        };
        let norm = |p: &mut Vec<ParamSpec>, name: &str| {
            p.push(ParamSpec::new(
                format!("{pre}/{name}/LayerNorm/gamma"),
                &[h],
            ));
            p.push(ParamSpec::new(format!("{pre}/{name}/LayerNorm/beta"), &[h]));
        };
        dense(&mut p, "attention/self/query", h, h);
        dense(&mut p, "attention/self/key", h, h);
        dense(&mut p, "attention/self/value", h, h);
        dense(&mut p, "attention/output/dense", h, h);
        norm(&mut p, "attention/output");
        dense(&mut p, "intermediate/dense", h, c.ffn);
        dense(&mut p, "output/dense", c.ffn, h);
        norm(&mut p, "output");
    }
    p.push(ParamSpec::new("cls/output/kernel", &[h, c.vocab]));
    p.push(ParamSpec::new("cls/output/bias", &[c.vocab]));
    p
}

/// Token ids and one label per position.
pub fn batch_specs(c: &EncoderConfig) -> Vec<BatchSpec> {
    vec![
        BatchSpec::new("input_ids", ElementType::S32, &[c.batch, c.seq]),
        BatchSpec::new("labels", ElementType::S32, &[c.batch, c.seq]),
    ]
}

/// Truncated-normal-like init (normal, stddev 0.02, as BERT), LayerNorm gamma 1, biases 0.
pub fn init_params(c: &EncoderConfig, seed: u64) -> Vec<Literal> {
    let mut r = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 0.02).expect("valid stddev");
    param_specs(c)
        .iter()
        .map(|p| {
            let n = p.shape.num_elements() as usize;
            let v: Vec<f32> = if p.name.ends_with("gamma") {
                vec![1.0; n]
            } else if p.name.ends_with("bias") || p.name.ends_with("beta") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| normal.sample(&mut r)).collect()
            };
            Literal::from_slice(&v, &p.shape.dims).expect("values fill the shape")
        })
        .collect()
}

struct Ctx<'a, 'b> {
    b: &'a Builder<'b>,
    p: &'a Params,
    policy: &'a Policy,
}

impl Ctx<'_, '_> {
    /// x[..., i] @ kernel[i, o] + bias, f32 accumulation, result in the compute type.
    fn dense(&self, x: Value, name: &str) -> Result<Value> {
        let b = self.b;
        let y = self
            .policy
            .matmul(b, x, self.p.get(&format!("{name}/kernel"))?)?;
        let dims = b.dims(y)?;
        let bias = b.broadcast_in_dim(
            self.p.get(&format!("{name}/bias"))?,
            &dims,
            &[dims.len() as i64 - 1],
        )?;
        Ok(b.add(y, bias)?)
    }

    fn norm(&self, x: Value, name: &str) -> Result<Value> {
        let g = self.p.get(&format!("{name}/LayerNorm/gamma"))?;
        let beta = self.p.get(&format!("{name}/LayerNorm/beta"))?;
        self.policy.layer_norm(self.b, x, g, beta, 1e-12)
    }

    /// Multi-head self-attention over x [B, S, H] (no padding mask: every position is real).
    fn attention(&self, c: &EncoderConfig, x: Value, pre: &str) -> Result<Value> {
        let b = self.b;
        let (bs, s, nh) = (c.batch, c.seq, c.heads);
        let dh = c.hidden / nh;
        let split = |v: Value| b.reshape(v, &[bs, s, nh, dh]);
        let q = split(self.dense(x, &format!("{pre}/attention/self/query"))?)?;
        let k = split(self.dense(x, &format!("{pre}/attention/self/key"))?)?;
        let v = split(self.dense(x, &format!("{pre}/attention/self/value"))?)?;
        // scores[b, n, i, j] = q[b, i, n, :] . k[b, j, n, :], in f32.
        let qk = DotDims {
            lhs_batch: vec![0, 2],
            rhs_batch: vec![0, 2],
            lhs_contracting: vec![3],
            rhs_contracting: vec![3],
        };
        let scores = self.policy.dot_general(b, q, k, qk)?;
        let scores = b.mul(
            scores,
            b.scalar_of(ElementType::F32, 1.0 / (dh as f64).sqrt())?,
        )?;
        let probs = self.policy.softmax(b, scores, -1)?;
        // context[b, n, i, d] = sum_j probs[b, n, i, j] v[b, j, n, d]
        let pv = DotDims {
            lhs_batch: vec![0, 1],
            rhs_batch: vec![0, 2],
            lhs_contracting: vec![3],
            rhs_contracting: vec![1],
        };
        let ctx = self.policy.dot_general(b, probs, v, pv)?;
        let ctx = b.convert(ctx, self.policy.compute)?;
        let ctx = b.reshape(b.transpose(ctx, &[0, 2, 1, 3])?, &[bs, s, c.hidden])?;
        let out = self.dense(ctx, &format!("{pre}/attention/output/dense"))?;
        self.norm(b.add(out, x)?, &format!("{pre}/attention/output"))
    }

    fn layer(&self, c: &EncoderConfig, x: Value, l: usize) -> Result<Value> {
        let pre = format!("encoder/layer_{l}");
        let a = self.attention(c, x, &pre)?;
        let h = self
            .b
            .gelu_erf(self.dense(a, &format!("{pre}/intermediate/dense"))?)?;
        let o = self.dense(h, &format!("{pre}/output/dense"))?;
        self.norm(self.b.add(o, a)?, &format!("{pre}/output"))
    }
}

/// The loss function: mean token-level cross-entropy (f32), with accuracy as a metric.
pub fn loss_fn(
    c: EncoderConfig,
    policy: Policy,
) -> impl Fn(&Builder, &Params, &Batch) -> Result<LossAndMetrics> {
    move |b, p, batch| {
        let cx = Ctx {
            b,
            p,
            policy: &policy,
        };
        let ids = batch.get("input_ids")?;
        let labels = batch.get("labels")?;
        let (bs, s, h) = (c.batch, c.seq, c.hidden);
        let words = b.take(p.get("embeddings/word_embeddings")?, ids, 0)?;
        let pos = b.broadcast_in_dim(
            p.get("embeddings/position_embeddings")?,
            &[bs, s, h],
            &[1, 2],
        )?;
        let mut x = cx.norm(b.add(words, pos)?, "embeddings")?;
        for l in 0..c.layers {
            x = cx.layer(&c, x, l)?;
        }
        let logits = policy.matmul_f32(b, x, p.get("cls/output/kernel")?)?;
        let bias = b.convert(p.get("cls/output/bias")?, ElementType::F32)?;
        let logits = b.add(logits, b.broadcast_in_dim(bias, &[bs, s, c.vocab], &[2])?)?;
        let logp = b.log_softmax(logits, -1)?;
        let onehot = b.one_hot(labels, c.vocab, ElementType::F32, 1.0, 0.0)?;
        let nll = b.neg(b.reduce_sum(b.mul(logp, onehot)?, &[0, 1, 2])?)?;
        let n = b.scalar_of(ElementType::F32, (bs * s) as f64)?;
        let loss = b.div(nll, n)?;
        let hit = b.eq(b.argmax(logits, -1, ElementType::S32)?, labels)?;
        let hits = b.reduce_sum(b.convert(hit, ElementType::F32)?, &[0, 1])?;
        let accuracy = b.div(hits, n)?;
        Ok((loss, vec![("accuracy".to_string(), accuracy)]))
    }
}

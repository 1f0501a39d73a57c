//! Shared by the model tests: the small test config, random weights and batches, and an
//! independent f64 BERT written from google-research/bert's modeling.py and
//! run_pretraining.py (nothing here builds or runs HLO).
#![allow(dead_code)]

use hlo::Literal;
use ndarray::{s, Array1, Array2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;
use tpu_run::model::params::{param_specs, ParamInit};
use tpu_run::model::{BatchShapes, BertConfig, HiddenAct, HostTensor, ParamSet};

pub const BATCH: usize = 2;
pub const SEQ: usize = 16;
pub const PREDS: usize = 5;
pub const VOCAB: usize = 100;

/// The small test model: L2, H32, A2, I64, vocab 100.
pub fn small_config(act: HiddenAct) -> BertConfig {
    BertConfig {
        vocab_size: VOCAB,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 64,
        hidden_act: act,
        max_position_embeddings: 24,
        type_vocab_size: 2,
        ..BertConfig::preset("tiny").unwrap()
    }
}

pub fn shapes() -> BatchShapes {
    BatchShapes {
        batch_size: BATCH,
        seq_len: SEQ,
        max_predictions: PREDS,
        max_instances_per_row: None,
    }
}

pub fn normal(r: &mut StdRng) -> f64 {
    StandardNormal.sample(r)
}

/// Random weights that make every parameter matter (not BERT's 0.02 init, under which the
/// layers are nearly the identity): matrices N(0, 0.2), tables N(0, 0.5), layer-norm gains
/// 1 + N(0, 0.2), biases N(0, 0.1). Vocab-padding rows get large values too, to show they
/// never leak into the loss.
pub fn random_params(cfg: &BertConfig, seed: u64) -> ParamSet {
    let mut r = StdRng::seed_from_u64(seed);
    let mut set = ParamSet::new();
    for spec in param_specs(cfg) {
        let n = spec.num_elements();
        let (scale, offset) = match spec.init {
            ParamInit::TruncatedNormal if spec.name.contains("embeddings") => (0.5, 0.0),
            ParamInit::TruncatedNormal => (0.2, 0.0),
            ParamInit::Ones => (0.2, 1.0),
            ParamInit::Zeros if spec.name == "cls.predictions.bias" => (0.5, 0.0),
            ParamInit::Zeros => (0.1, 0.0),
        };
        let data = (0..n)
            .map(|_| (offset + scale * normal(&mut r)) as f32)
            .collect();
        set.insert(spec.name.clone(), HostTensor::new(spec.dims, data).unwrap());
    }
    set
}

/// One batch on the host, in google-research/bert's layout.
#[derive(Clone)]
pub struct HostBatch {
    pub input_ids: Vec<i32>,
    pub input_mask: Vec<i32>,
    pub segment_ids: Vec<i32>,
    pub positions: Vec<i32>,
    pub labels: Vec<i32>,
    pub weights: Vec<f32>,
    pub nsp_labels: Vec<i32>,
}

/// Example 0 fills the sequence; example 1 has 11 real tokens and padding (id 0, mask 0).
/// Masked positions are distinct real positions; example 1's last two predictions are padding
/// (position 0, id 0, weight 0) as create_pretraining_data writes them. Labels are filled in
/// later (see `with_labels`).
pub fn random_batch(seed: u64) -> HostBatch {
    let mut r = StdRng::seed_from_u64(seed);
    let lens = [SEQ, 11];
    let (mut ids, mut mask, mut seg) = (vec![], vec![], vec![]);
    let (mut pos, mut weights) = (vec![], vec![]);
    for (b, &len) in lens.iter().enumerate() {
        let split = r.gen_range(3..len - 2);
        for t in 0..SEQ {
            let real = t < len;
            ids.push(if real {
                r.gen_range(1..VOCAB as i32)
            } else {
                0
            });
            mask.push(real as i32);
            seg.push((real && t >= split) as i32);
        }
        let real_preds = if b == 0 { PREDS } else { PREDS - 2 };
        let mut chosen: Vec<i32> = vec![];
        while chosen.len() < real_preds {
            let p = r.gen_range(1..len as i32);
            if !chosen.contains(&p) {
                chosen.push(p);
            }
        }
        for k in 0..PREDS {
            pos.push(chosen.get(k).copied().unwrap_or(0));
            weights.push(if k < real_preds { 1.0 } else { 0.0 });
        }
    }
    HostBatch {
        input_ids: ids,
        input_mask: mask,
        segment_ids: seg,
        positions: pos,
        labels: vec![0; BATCH * PREDS],
        weights,
        nsp_labels: vec![0; BATCH],
    }
}

// ---------------------------------------------------------------------------------------------
// The f64 reference.

pub struct Reference {
    pub sequence: Vec<Array2<f64>>, // per example [seq, hidden]
    pub pooled: Array2<f64>,        // [batch, hidden]
    pub mlm_logits: Array2<f64>,    // [batch * preds, vocab] (real vocabulary only)
    pub nsp_logits: Array2<f64>,    // [batch, 2]
}

/// Parameters in f64 (so finite differences can perturb them exactly): name -> (dims, values).
#[derive(Clone)]
pub struct F64Params(pub HashMap<String, (Vec<usize>, Vec<f64>)>);

impl F64Params {
    pub fn from_set(set: &ParamSet) -> Self {
        Self(
            set.iter()
                .map(|(n, t)| {
                    let v = t.data.iter().map(|&x| f64::from(x)).collect();
                    (n.to_string(), (t.dims.clone(), v))
                })
                .collect(),
        )
    }
}

struct Weights<'a>(&'a F64Params);

impl Weights<'_> {
    fn tensor(&self, name: &str) -> &(Vec<usize>, Vec<f64>) {
        self.0
             .0
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"))
    }
    fn mat(&self, name: &str) -> Array2<f64> {
        let (dims, v) = self.tensor(name);
        Array2::from_shape_vec((dims[0], dims[1]), v.clone()).unwrap()
    }
    fn vec(&self, name: &str) -> Array1<f64> {
        Array1::from(self.tensor(name).1.clone())
    }
    /// x W + b with W stored [in, out].
    fn dense(&self, x: &Array2<f64>, prefix: &str) -> Array2<f64> {
        x.dot(&self.mat(&format!("{prefix}.weight"))) + &self.vec(&format!("{prefix}.bias"))
    }
    fn layer_norm(&self, x: &Array2<f64>, prefix: &str, eps: f64) -> Array2<f64> {
        let g = self.vec(&format!("{prefix}.weight"));
        let b = self.vec(&format!("{prefix}.bias"));
        let mut y = x.clone();
        for mut row in y.rows_mut() {
            let n = row.len() as f64;
            let mean = row.sum() / n;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            for (k, v) in row.iter_mut().enumerate() {
                *v = (*v - mean) * inv * g[k] + b[k];
            }
        }
        y
    }
}

pub fn activation(act: HiddenAct, x: f64) -> f64 {
    match act {
        HiddenAct::GeluErf => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        HiddenAct::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x.powi(3))).tanh())
        }
        HiddenAct::Relu => x.max(0.0),
    }
}

pub fn softmax_row(v: &[f64]) -> Vec<f64> {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

pub fn log_softmax_row(v: &[f64]) -> Vec<f64> {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = v.iter().map(|x| (x - m).exp()).sum::<f64>().ln() + m;
    v.iter().map(|x| x - lse).collect()
}

pub fn argmax_row(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// BERT (eval mode) in f64, example by example.
pub fn reference(cfg: &BertConfig, params: &F64Params, batch: &HostBatch) -> Reference {
    let w = Weights(params);
    let (h, heads) = (cfg.hidden_size, cfg.num_attention_heads);
    let d = h / heads;
    let eps = cfg.layer_norm_eps;
    let word = w.mat("bert.embeddings.word_embeddings.weight");
    let pos = w.mat("bert.embeddings.position_embeddings.weight");
    let types = w.mat("bert.embeddings.token_type_embeddings.weight");
    let mut sequence = vec![];
    let mut pooled = Array2::zeros((BATCH, h));
    for b in 0..BATCH {
        let tok = |t: usize| b * SEQ + t;
        let mut x = Array2::zeros((SEQ, h));
        for t in 0..SEQ {
            let id = batch.input_ids[tok(t)] as usize;
            let ty = batch.segment_ids[tok(t)] as usize;
            let row = &word.row(id) + &pos.row(t) + types.row(ty);
            x.row_mut(t).assign(&row);
        }
        x = w.layer_norm(&x, "bert.embeddings.LayerNorm", eps);
        for l in 0..cfg.num_hidden_layers {
            let p = |part: &str| format!("bert.encoder.layer.{l}.{part}");
            let q = w.dense(&x, &p("attention.self.query"));
            let k = w.dense(&x, &p("attention.self.key"));
            let v = w.dense(&x, &p("attention.self.value"));
            let mut context = Array2::zeros((SEQ, h));
            for n in 0..heads {
                let cols = s![.., n * d..(n + 1) * d];
                let (qn, kn, vn) = (q.slice(cols), k.slice(cols), v.slice(cols));
                for i in 0..SEQ {
                    let scores: Vec<f64> = (0..SEQ)
                        .map(|j| {
                            let masked = 1.0 - f64::from(batch.input_mask[tok(j)]);
                            qn.row(i).dot(&kn.row(j)) / (d as f64).sqrt() + masked * -10000.0
                        })
                        .collect();
                    let probs = softmax_row(&scores);
                    for (j, &pj) in probs.iter().enumerate() {
                        let mut out = context.slice_mut(s![i, n * d..(n + 1) * d]);
                        out.scaled_add(pj, &vn.row(j));
                    }
                }
            }
            let attn = w.dense(&context, &p("attention.output.dense"));
            let a = w.layer_norm(&(attn + &x), &p("attention.output.LayerNorm"), eps);
            let inter = w
                .dense(&a, &p("intermediate.dense"))
                .mapv(|v| activation(cfg.hidden_act, v));
            let out = w.dense(&inter, &p("output.dense"));
            x = w.layer_norm(&(out + &a), &p("output.LayerNorm"), eps);
        }
        let first = x.slice(s![0..1, ..]).to_owned();
        pooled
            .row_mut(b)
            .assign(&w.dense(&first, "bert.pooler.dense").mapv(f64::tanh).row(0));
        sequence.push(x);
    }
    // MLM: the hidden state at each masked position, transform, tied decoder.
    let mut gathered = Array2::zeros((BATCH * PREDS, h));
    for (b, x) in sequence.iter().enumerate() {
        for k in 0..PREDS {
            let p = batch.positions[b * PREDS + k] as usize;
            gathered.row_mut(b * PREDS + k).assign(&x.row(p));
        }
    }
    let t = w
        .dense(&gathered, "cls.predictions.transform.dense")
        .mapv(|v| activation(cfg.hidden_act, v));
    let t = w.layer_norm(&t, "cls.predictions.transform.LayerNorm", eps);
    let real_word = word.slice(s![0..cfg.vocab_size, ..]);
    let bias = w.vec("cls.predictions.bias");
    let mlm_logits = t.dot(&real_word.t()) + bias.slice(s![0..cfg.vocab_size]);
    let nsp_logits = w.dense(&pooled, "cls.seq_relationship");
    Reference {
        sequence,
        pooled,
        mlm_logits,
        nsp_logits,
    }
}

/// Losses and accuracies from logits, as run_pretraining.py.
pub struct Scores {
    pub loss: f64,
    pub mlm_loss: f64,
    pub nsp_loss: f64,
    pub mlm_accuracy: f64,
    pub nsp_accuracy: f64,
    pub mlm_weight_sum: f64,
    pub mlm_correct_sum: f64,
    pub nsp_correct_sum: f64,
}

pub fn scores(r: &Reference, batch: &HostBatch) -> Scores {
    let (mut num, mut den, mut correct) = (0.0, 0.0, 0.0);
    for (i, row) in r.mlm_logits.axis_iter(Axis(0)).enumerate() {
        let row = row.to_vec();
        let label = batch.labels[i] as usize;
        let w = f64::from(batch.weights[i]);
        num += w * -log_softmax_row(&row)[label];
        den += w;
        correct += w * f64::from(u8::from(argmax_row(&row) == label));
    }
    let mlm_loss = num / (den + 1e-5);
    let (mut nsp_nll, mut nsp_correct) = (0.0, 0.0);
    for (b, row) in r.nsp_logits.axis_iter(Axis(0)).enumerate() {
        let row = row.to_vec();
        let label = batch.nsp_labels[b] as usize;
        nsp_nll -= log_softmax_row(&row)[label];
        nsp_correct += f64::from(u8::from(argmax_row(&row) == label));
    }
    let nsp_loss = nsp_nll / BATCH as f64;
    Scores {
        loss: mlm_loss + nsp_loss,
        mlm_loss,
        nsp_loss,
        mlm_accuracy: correct / den,
        nsp_accuracy: nsp_correct / BATCH as f64,
        mlm_weight_sum: den,
        mlm_correct_sum: correct,
        nsp_correct_sum: nsp_correct,
    }
}

/// Labels that make the accuracies informative: every other MLM label (and NSP label 0) is the
/// reference's argmax (checked to win by a margin), the others random.
pub fn with_labels(mut batch: HostBatch, r: &Reference, seed: u64) -> HostBatch {
    let mut rng = StdRng::seed_from_u64(seed);
    let margin_argmax = |row: Vec<f64>| {
        let best = argmax_row(&row);
        let second = row
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != best)
            .map(|(_, &v)| v)
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(row[best] - second > 1e-3, "argmax too close to call");
        best as i32
    };
    for i in 0..BATCH * PREDS {
        batch.labels[i] = if i % 2 == 0 {
            margin_argmax(r.mlm_logits.row(i).to_vec())
        } else {
            rng.gen_range(0..VOCAB as i32)
        };
    }
    let nsp0 = margin_argmax(r.nsp_logits.row(0).to_vec());
    let nsp1 = margin_argmax(r.nsp_logits.row(1).to_vec());
    batch.nsp_labels = vec![nsp0, 1 - nsp1];
    batch
}

pub fn inputs(
    cfg: &BertConfig,
    params: &ParamSet,
    batch: &HostBatch,
    key: [u64; 2],
) -> Vec<Literal> {
    let mut v: Vec<Literal> = param_specs(cfg)
        .iter()
        .map(|s| {
            let t = params.get(&s.name).unwrap();
            let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
            Literal::from_slice(&t.data, &dims).unwrap()
        })
        .collect();
    let (b, s, p) = (BATCH as i64, SEQ as i64, PREDS as i64);
    v.push(lit_of(&batch.input_ids, &[b, s]));
    v.push(lit_of(&batch.input_mask, &[b, s]));
    v.push(lit_of(&batch.segment_ids, &[b, s]));
    v.push(lit_of(&batch.positions, &[b, p]));
    v.push(lit_of(&batch.labels, &[b, p]));
    v.push(lit_of(&batch.weights, &[b, p]));
    v.push(lit_of(&batch.nsp_labels, &[b]));
    v.push(lit_of(&key, &[2]));
    v
}

fn lit_of<T: hlo::NativeType>(v: &[T], dims: &[i64]) -> Literal {
    Literal::from_slice(v, dims).unwrap()
}

//! The TPU-shaped BERT train step (vocabulary padded to a multiple of 128 with the padded logits
//! masked out, bf16 matmuls with f32 accumulation, no f64) on the CPU plugin: padding changes
//! nothing the model computes. Two steps with and without padding, from the same real weights
//! (the padded rows random and large), give the same losses, metrics and updated parameters,
//! and the padded rows get exactly zero gradient (their Adam moments stay zero).
mod common;

use common::check::assert_close;
use hlo::ir::Op;
use hlo::{ElementType, Literal, Shape};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tpu_run::model::params::{names, param_specs};
use tpu_run::model::{BatchShapes, BertConfig, ComputeDtype, Execution, HiddenAct};
use tpu_run::pretrain::program::train_program;
use tpu_run::pretrain::PretrainConfig;
use tpu_run::tpu_target::{bert_program, element_types, tpu_shape, What};
use tpu_run::train::{AdamWeightDecay, Schedule, StepConfig, Trainer};

const VOCAB: usize = 100;
const SHAPES: BatchShapes = BatchShapes {
    batch_size: 2,
    seq_len: 8,
    max_predictions: 3,
    max_instances_per_row: None,
};

/// L1 H32 A2 I64, vocab 100 (128 padded), no dropout (the padded and unpadded runs must see
/// the same masks; dropout is tested with the model).
fn small_config() -> BertConfig {
    BertConfig {
        vocab_size: VOCAB,
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 64,
        hidden_act: HiddenAct::GeluErf,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        max_position_embeddings: 16,
        ..BertConfig::preset("tiny").unwrap()
    }
}

/// Random parameters for `cfg`, N(0, 0.3) so every weight matters (layer-norm gains 1 +
/// N(0, 0.3)). For a padded config the real rows are those of the unpadded one (same seed) and
/// the padding rows are N(0, 5).
fn params(cfg: &BertConfig, seed: u64) -> Vec<Literal> {
    let plain = BertConfig {
        pad_vocab_to: None,
        ..cfg.clone()
    };
    let mut r = StdRng::seed_from_u64(seed);
    let mut noise = StdRng::seed_from_u64(seed ^ 0x9e37);
    let real: Vec<(Vec<usize>, Vec<f32>)> = param_specs(&plain)
        .iter()
        .map(|s| {
            let offset = if s.name.contains("LayerNorm.weight") {
                1.0
            } else {
                0.0
            };
            let data = (0..s.num_elements())
                .map(|_| offset + 0.3 * r.gen_range(-1.7f32..1.7))
                .collect();
            (s.dims.clone(), data)
        })
        .collect();
    param_specs(cfg)
        .iter()
        .zip(real)
        .map(|(s, (dims, mut data))| {
            let extra = s.num_elements() - data.len();
            data.extend((0..extra).map(|_| 5.0 * noise.gen_range(-1.0f32..1.0)));
            let d: Vec<i64> = s.dims.iter().map(|&x| x as i64).collect();
            assert_eq!(s.dims[1..], dims[1..]);
            Literal::from_slice(&data, &d).unwrap()
        })
        .collect()
}

/// A batch in the step's layout: ids, mask (the second example padded after 5 tokens),
/// segments, distinct masked positions among the real tokens, their labels, weights (the last
/// prediction of example 1 is padding), NSP labels, the dropout key.
fn batch(seed: u64) -> Vec<Literal> {
    let mut r = StdRng::seed_from_u64(seed);
    let (b, s, p) = (SHAPES.batch_size, SHAPES.seq_len, SHAPES.max_predictions);
    let real = [s, 5];
    let mut ids = vec![0i32; b * s];
    let mut mask = vec![0i32; b * s];
    let mut seg = vec![0i32; b * s];
    let (mut pos, mut labels, mut weights) =
        (vec![0i32; b * p], vec![0i32; b * p], vec![0f32; b * p]);
    for e in 0..b {
        for t in 0..real[e] {
            ids[e * s + t] = r.gen_range(1..VOCAB as i32);
            mask[e * s + t] = 1;
            seg[e * s + t] = i32::from(t >= real[e] / 2);
        }
        let mut chosen: Vec<i32> = Vec::new();
        while chosen.len() < p {
            let t = r.gen_range(1..real[e] as i32);
            if !chosen.contains(&t) {
                chosen.push(t);
            }
        }
        for (j, t) in chosen.into_iter().enumerate() {
            pos[e * p + j] = t;
            labels[e * p + j] = r.gen_range(0..VOCAB as i32);
            weights[e * p + j] = if e == 1 && j == p - 1 { 0.0 } else { 1.0 };
        }
    }
    let (b, s, p) = (b as i64, s as i64, p as i64);
    vec![
        Literal::from_slice(&ids, &[b, s]).unwrap(),
        Literal::from_slice(&mask, &[b, s]).unwrap(),
        Literal::from_slice(&seg, &[b, s]).unwrap(),
        Literal::from_slice(&pos, &[b, p]).unwrap(),
        Literal::from_slice(&labels, &[b, p]).unwrap(),
        Literal::from_slice(&weights, &[b, p]).unwrap(),
        Literal::from_slice(&[0i32, 1], &[b]).unwrap(),
        Literal::from_slice(&[7u64, 11], &[2]).unwrap(),
    ]
}

fn f32s(l: &Literal) -> Vec<f64> {
    common::f64s(l)
}

/// Runs two steps; returns the (loss, metrics) of each, the parameters and optimizer state.
fn run(cfg: &BertConfig) -> (Vec<Vec<f64>>, Vec<Literal>, Vec<Literal>) {
    let config = StepConfig::new(AdamWeightDecay::default(), Schedule::Constant { lr: 1e-2 });
    let program = train_program(cfg, Execution::default(), &SHAPES, &config).unwrap();
    let mut t = Trainer::new(common::client(), &program, &params(cfg, 5)).unwrap();
    let mut history = Vec::new();
    for seed in [1, 2] {
        let m = t.step_host(&batch(seed)).unwrap();
        let mut row = vec![f64::from(m.loss)];
        row.extend(m.metrics.iter().map(|(_, v)| f64::from(*v)));
        history.push(row);
    }
    (history, t.params().unwrap(), t.opt_state().unwrap())
}

#[test]
fn vocab_padding_changes_neither_losses_nor_updates() {
    let plain = small_config();
    let padded = BertConfig {
        pad_vocab_to: Some(128),
        ..plain.clone()
    };
    assert_eq!(padded.padded_vocab_size(), 128);
    let (h_plain, p_plain, s_plain) = run(&plain);
    let (h_pad, p_pad, s_pad) = run(&padded);
    for (step, (a, b)) in h_plain.iter().zip(&h_pad).enumerate() {
        // loss, the four model metrics, learning rate, gradient norm (padded rows add nothing).
        assert_close(b, a, 1e-6, 1e-5, &format!("step {step} loss and metrics"));
    }
    assert!(
        h_plain[1][0] != h_plain[0][0],
        "the second batch has its own loss"
    );
    let specs = param_specs(&padded);
    for (i, spec) in specs.iter().enumerate() {
        let (a, b) = (f32s(&p_plain[i]), f32s(&p_pad[i]));
        let real = a.len();
        // The padded decoder's matmuls sum in another order, so gradients may differ in the last
        // bit; Adam's first steps (m / sqrt(v) ~ sign(g)) turn that into up to ~1e-5 for tiny
        // gradients. Each step moves a weight by ~lr = 1e-2, so a leak of the padding would show
        // at that scale.
        assert_close(&b[..real], &a, 2e-5, 1e-5, &spec.name);
        let vocab_padded = spec.name == names::WORD_EMBEDDINGS || spec.name == names::MLM_BIAS;
        assert_eq!(b.len() > real, vocab_padded, "{}", spec.name);
        if vocab_padded {
            // Adam's moments of the padding rows: their gradient was exactly zero.
            for slot in 0..2 {
                let m = f32s(&s_pad[2 * i + slot]);
                assert!(
                    m[real..].iter().all(|&x| x == 0.0),
                    "{} slot {slot}",
                    spec.name
                );
                assert!(
                    m[..real].iter().any(|&x| x != 0.0),
                    "{} slot {slot}",
                    spec.name
                );
            }
        }
    }
    // The optimizer state of the real rows matches too (first moments: gradients).
    for (i, spec) in specs.iter().enumerate() {
        let (a, b) = (f32s(&s_plain[2 * i]), f32s(&s_pad[2 * i]));
        assert_close(
            &b[..a.len()],
            &a,
            1e-7,
            1e-4,
            &format!("{} adam_m", spec.name),
        );
    }
}

#[test]
fn the_tpu_shaped_step_is_bf16_dots_into_f32_without_f64() {
    // The run settings `tpu-run compile --tpu-shaped` gives, on a TPU backend.
    let mut run = PretrainConfig::default();
    tpu_shape(&mut run);
    run.device.backend = tpu_run::backend::Backend::Tpu;
    run.train.batch_size = 8;
    let program = bert_program(&run, What::TrainStep, 1).unwrap();
    assert_eq!(program.exec.compute, ComputeDtype::Bf16);
    assert_eq!(program.model.padded_vocab_size(), 30592);
    assert_eq!(program.shapes.seq_len, 128);
    let program = program.program;
    let module = &program.module;
    let types = element_types(module);
    assert!(!types.contains(&ElementType::F64), "{types:?}");
    // Every parameter is static-shaped f32 (master weights) or an integer batch input.
    for s in module.param_shapes() {
        match s {
            Shape::Array(a) => assert!(a.dims.iter().all(|&d| d > 0), "{a}"),
            other => panic!("non-array parameter {other:?}"),
        }
    }
    // Every matmul of the model multiplies bf16 operands, accumulating in f32 (the MXU's and
    // the tensor cores' bf16 dot); its result is f32 or, where rounded anyway, bf16.
    let mut bf16_dots = 0;
    for c in &module.computations {
        for ins in &c.instrs {
            if let Op::Dot { .. } = ins.op {
                let ty = |id: hlo::ir::InstrId| match &c.instr(id).shape {
                    Shape::Array(a) => a.ty,
                    other => panic!("dot operand {other:?}"),
                };
                let (l, r) = (ty(ins.operands[0]), ty(ins.operands[1]));
                let out = match &ins.shape {
                    Shape::Array(a) => a.ty,
                    other => panic!("dot result {other:?}"),
                };
                if l == ElementType::Bf16 && r == ElementType::Bf16 {
                    bf16_dots += 1;
                    assert!(
                        matches!(out, ElementType::F32 | ElementType::Bf16),
                        "a bf16 dot gives {out}"
                    );
                } else {
                    assert_ne!(out, ElementType::F64);
                }
            }
        }
    }
    // Forward: 6 matmuls per layer plus attention (2), pooler, MLM transform and decoder, NSP.
    assert!(bf16_dots >= 2 * 8 + 4, "only {bf16_dots} bf16 dots");
}

//! The SQuAD head (src/finetune/qa_head.rs) on the CPU plugin against an independent f64
//! reference: start/end logits, the loss (mean of the start and end cross-entropies, nothing
//! masked) and its gradients with respect to the sequence output, the weight and the bias (by
//! reverse-mode autodiff), on random inputs; and the bf16 path (bf16 matmul inputs, f32 result).
mod common;

use common::{f64s, inputs, lit};
use hlo::{ArrayShape, ElementType, ModuleBuilder, Shape};
use tpu_run::finetune::qa_head::{qa_logits, qa_loss};

const B: usize = 3;
const S: usize = 7;
const H: usize = 5;

/// Logits `[2][B*S]` of `x [B,S,H] . w [H,2] + bias`.
fn ref_logits(x: &[f64], w: &[f64], bias: &[f64]) -> [Vec<f64>; 2] {
    let mut out = [vec![0.0; B * S], vec![0.0; B * S]];
    for r in 0..B * S {
        for (k, o) in out.iter_mut().enumerate() {
            o[r] = bias[k] + (0..H).map(|h| x[r * H + h] * w[h * 2 + k]).sum::<f64>();
        }
    }
    out
}

fn log_softmax_row(z: &[f64]) -> Vec<f64> {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

struct Reference {
    loss: f64,
    start_loss: f64,
    end_loss: f64,
    d_x: Vec<f64>,
    d_w: Vec<f64>,
    d_bias: Vec<f64>,
}

/// The loss and its gradients in closed form: d loss / d logit_k[b, s] =
/// (softmax_k[b, s] - [s == pos_k[b]]) / (2 B).
fn reference(x: &[f64], w: &[f64], bias: &[f64], pos: [&[i32]; 2]) -> Reference {
    let logits = ref_logits(x, w, bias);
    let mut losses = [0.0; 2];
    let mut d_logits = [vec![0.0; B * S], vec![0.0; B * S]];
    for k in 0..2 {
        for b in 0..B {
            let row = &logits[k][b * S..(b + 1) * S];
            let lp = log_softmax_row(row);
            let p = pos[k][b] as usize;
            losses[k] -= lp[p] / B as f64;
            for s in 0..S {
                let onehot = if s == p { 1.0 } else { 0.0 };
                d_logits[k][b * S + s] = (lp[s].exp() - onehot) / (2.0 * B as f64);
            }
        }
    }
    let mut d_x = vec![0.0; B * S * H];
    let mut d_w = vec![0.0; H * 2];
    let mut d_bias = vec![0.0; 2];
    for r in 0..B * S {
        for k in 0..2 {
            let g = d_logits[k][r];
            d_bias[k] += g;
            for h in 0..H {
                d_w[h * 2 + k] += x[r * H + h] * g;
                d_x[r * H + h] += w[h * 2 + k] * g;
            }
        }
    }
    Reference {
        loss: 0.5 * (losses[0] + losses[1]),
        start_loss: losses[0],
        end_loss: losses[1],
        d_x,
        d_w,
        d_bias,
    }
}

fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    common::check::assert_close(got, want, tol, tol, what);
}

#[test]
fn qa_loss_and_gradients_match_an_f64_reference() {
    let mut r = inputs::rng(11);
    let x = inputs::normal(&mut r, B * S * H);
    let w: Vec<f64> = inputs::normal(&mut r, H * 2)
        .iter()
        .map(|v| 0.7 * v)
        .collect();
    let bias = inputs::normal(&mut r, 2);
    let start: Vec<i32> = inputs::cast(&inputs::ints(&mut r, B, 0, S as i64 - 1));
    let end: Vec<i32> = inputs::cast(&inputs::ints(&mut r, B, 0, S as i64 - 1));

    let mb = ModuleBuilder::new("qa_head");
    let b = mb.builder("main");
    let f32s = |dims: &[i64]| Shape::array(ElementType::F32, dims.to_vec());
    let xs = b
        .parameter(f32s(&[B as i64, S as i64, H as i64]), "x")
        .unwrap();
    let ws = b.parameter(f32s(&[H as i64, 2]), "w").unwrap();
    let bs = b.parameter(f32s(&[2]), "bias").unwrap();
    let s32 = Shape::array(ElementType::S32, vec![B as i64]);
    let sp = b.parameter(s32.clone(), "start").unwrap();
    let ep = b.parameter(s32, "end").unwrap();
    let (sl, el) = qa_logits(&b, xs, ws, bs).unwrap();
    let (loss, start_loss, end_loss) = qa_loss(&b, sl, el, sp, ep).unwrap();
    let one = b.scalar(1.0f32).unwrap();
    let grads = b.vjp(&[loss], &[one], &[xs, ws, bs]).unwrap();
    let mut outs = vec![loss, start_loss, end_loss, sl, el];
    outs.extend(grads);
    let entry = b.finish(b.tuple(&outs).unwrap()).unwrap();
    let m = mb.build(entry).unwrap();

    let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<_>>();
    let got = common::run(
        &m,
        &[
            lit(&f(&x), &[B as i64, S as i64, H as i64]),
            lit(&f(&w), &[H as i64, 2]),
            lit(&f(&bias), &[2]),
            lit(&start, &[B as i64]),
            lit(&end, &[B as i64]),
        ],
    );
    // The reference sees the same f32-rounded inputs.
    let round = |v: &[f64]| v.iter().map(|&a| a as f32 as f64).collect::<Vec<_>>();
    let (x, w, bias) = (round(&x), round(&w), round(&bias));
    let want = reference(&x, &w, &bias, [&start, &end]);
    let logits = ref_logits(&x, &w, &bias);
    close(&f64s(&got[0]), &[want.loss], 1e-5, "loss");
    close(&f64s(&got[1]), &[want.start_loss], 1e-5, "start loss");
    close(&f64s(&got[2]), &[want.end_loss], 1e-5, "end loss");
    close(&f64s(&got[3]), &logits[0], 1e-5, "start logits");
    close(&f64s(&got[4]), &logits[1], 1e-5, "end logits");
    close(&f64s(&got[5]), &want.d_x, 1e-5, "d loss / d sequence");
    close(&f64s(&got[6]), &want.d_w, 1e-5, "d loss / d weight");
    close(&f64s(&got[7]), &want.d_bias, 1e-5, "d loss / d bias");
    assert!(want.loss > 0.5, "random logits give a sizeable loss");
    assert!(want.d_w.iter().any(|g| g.abs() > 1e-3));
}

#[test]
fn bf16_sequence_gives_f32_logits_of_bf16_rounded_inputs() {
    let mut r = inputs::rng(12);
    let x = inputs::normal(&mut r, B * S * H);
    let w = inputs::normal(&mut r, H * 2);
    let bias = inputs::normal(&mut r, 2);
    let mb = ModuleBuilder::new("qa_head_bf16");
    let b = mb.builder("main");
    let xs = b
        .parameter(
            ArrayShape::new(ElementType::Bf16, vec![B as i64, S as i64, H as i64]),
            "x",
        )
        .unwrap();
    let ws = b
        .parameter(ArrayShape::new(ElementType::F32, vec![H as i64, 2]), "w")
        .unwrap();
    let bs = b
        .parameter(ArrayShape::new(ElementType::F32, vec![2]), "bias")
        .unwrap();
    let (sl, el) = qa_logits(&b, xs, ws, bs).unwrap();
    assert_eq!(b.element_type(sl).unwrap(), ElementType::F32);
    let entry = b.finish(b.tuple(&[sl, el]).unwrap()).unwrap();
    let m = mb.build(entry).unwrap();
    let xb = inputs::to_bf16(&x);
    let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
    let bf: Vec<f32> = bias.iter().map(|&v| v as f32).collect();
    let got = common::run(
        &m,
        &[
            lit(&xb, &[B as i64, S as i64, H as i64]),
            lit(&wf, &[H as i64, 2]),
            lit(&bf, &[2]),
        ],
    );
    // The weight is rounded to bf16 for the matmul; products of bf16 values are exact in f32.
    let x64: Vec<f64> = xb.iter().map(|v| v.to_f64()).collect();
    let w64: Vec<f64> = inputs::to_bf16(&w).iter().map(|v| v.to_f64()).collect();
    let b64: Vec<f64> = bf.iter().map(|&v| v as f64).collect();
    let want = ref_logits(&x64, &w64, &b64);
    close(&f64s(&got[0]), &want[0], 1e-5, "bf16 start logits");
    close(&f64s(&got[1]), &want[1], 1e-5, "bf16 end logits");
}

#[test]
fn a_malformed_head_is_a_clear_error() {
    let mb = ModuleBuilder::new("bad");
    let b = mb.builder("main");
    let xs = b
        .parameter(ArrayShape::new(ElementType::F32, vec![2, 3, 4]), "x")
        .unwrap();
    let ws = b
        .parameter(ArrayShape::new(ElementType::F32, vec![5, 2]), "w")
        .unwrap();
    let bs = b
        .parameter(ArrayShape::new(ElementType::F32, vec![2]), "bias")
        .unwrap();
    let err = qa_logits(&b, xs, ws, bs).unwrap_err().to_string();
    assert!(err.contains("[hidden, 2] weight"), "{err}");
}

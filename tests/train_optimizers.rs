//! Each optimizer's HLO update against a direct f64 Rust reference of its formula: several
//! steps with random gradients; at every step the program and the reference start from the same
//! (f32) parameters and state, and every output must agree to a relative error of 1e-6
//! (max |got - want| / max |want| per tensor, in f32 mode).
mod common;
use common::inputs::{normal_f32, rng, uniform_f32};
use common::*;
use hlo::{ElementType, Literal, ModuleBuilder, Shape};
use tpu::CompileOptions;
use tpu_run::train::optimizer::{Optimizer, UpdateInputs};
use tpu_run::train::{AdamW, AdamWeightDecay, Lamb, Sgd, WeightDecay};

/// Tensors named so that BERT's exclusions hit some of them (no decay for LayerNorm and bias).
const TENSORS: [(&str, &[i64]); 4] = [
    ("encoder/layer_0/attention/query/kernel", &[6, 8]),
    ("encoder/layer_0/attention/query/bias", &[8]),
    ("encoder/layer_0/LayerNorm/gamma", &[8]),
    ("cls/predictions/output_layer_norm/beta", &[5]),
];

/// (param, grad, slots..., lr, step) -> (param', slots'...) for one named tensor.
fn update_module(opt: &dyn Optimizer, name: &str, dims: &[i64]) -> hlo::Module {
    let mb = ModuleBuilder::new("update");
    let b = mb.builder("main");
    let t = Shape::array(ElementType::F32, dims.to_vec());
    let param = b.parameter(t.clone(), "param").unwrap();
    let grad = b.parameter(t.clone(), "grad").unwrap();
    let slots: Vec<_> = opt
        .slot_names()
        .iter()
        .map(|s| b.parameter(t.clone(), s).unwrap())
        .collect();
    let lr = b.parameter(Shape::scalar(ElementType::F32), "lr").unwrap();
    let step = b
        .parameter(Shape::scalar(ElementType::S32), "step")
        .unwrap();
    let u = UpdateInputs {
        name,
        param,
        grad,
        slots: &slots,
        lr,
        step,
    };
    let up = opt.update(&b, &u).unwrap();
    let mut outs = vec![up.param];
    outs.extend(up.slots);
    let root = b.tuple(&outs).unwrap();
    let entry = b.finish(root).unwrap();
    mb.build(entry).unwrap()
}

/// f64 reference of one update: (param, grad, slots, lr, t = step + 1) -> (param', slots').
type Updated = (Vec<f64>, Vec<Vec<f64>>);
type Reference = dyn Fn(&str, &[f64], &[f64], &[Vec<f64>], f64, f64) -> Updated;

fn bert_decays(name: &str) -> bool {
    !["LayerNorm", "layer_norm", "bias"]
        .iter()
        .any(|e| name.contains(e))
}

fn moments(g: &[f64], m: &[f64], v: &[f64], b1: f64, b2: f64) -> (Vec<f64>, Vec<f64>) {
    let m2 = g
        .iter()
        .zip(m)
        .map(|(g, m)| b1 * m + (1.0 - b1) * g)
        .collect();
    let v2 = g
        .iter()
        .zip(v)
        .map(|(g, v)| b2 * v + (1.0 - b2) * g * g)
        .collect();
    (m2, v2)
}

fn adam_weight_decay_ref(
    name: &str,
    p: &[f64],
    g: &[f64],
    s: &[Vec<f64>],
    lr: f64,
    _t: f64,
) -> Updated {
    let (m, v) = moments(g, &s[0], &s[1], 0.9, 0.999);
    let decay = if bert_decays(name) { 0.01 } else { 0.0 };
    let p2 = (0..p.len())
        .map(|i| {
            let update = m[i] / (v[i].sqrt() + 1e-6) + decay * p[i];
            p[i] - lr * update
        })
        .collect();
    (p2, vec![m, v])
}

fn adamw_ref(name: &str, p: &[f64], g: &[f64], s: &[Vec<f64>], lr: f64, t: f64) -> Updated {
    // torch.optim.AdamW, weight_decay 0.01, eps 1e-8.
    let (m, v) = moments(g, &s[0], &s[1], 0.9, 0.999);
    let decay = if bert_decays(name) { 0.01 } else { 0.0 };
    let (bc1, bc2) = (1.0 - 0.9f64.powf(t), 1.0 - 0.999f64.powf(t));
    let p2 = (0..p.len())
        .map(|i| {
            let pd = p[i] * (1.0 - lr * decay);
            let denom = (v[i] / bc2).sqrt() + 1e-8;
            pd - lr * (m[i] / bc1) / denom
        })
        .collect();
    (p2, vec![m, v])
}

fn lamb_ref(name: &str, p: &[f64], g: &[f64], s: &[Vec<f64>], lr: f64, t: f64) -> Updated {
    let (m, v) = moments(g, &s[0], &s[1], 0.9, 0.999);
    let adapt = bert_decays(name);
    let decay = if adapt { 0.01 } else { 0.0 };
    let (bc1, bc2) = (1.0 - 0.9f64.powf(t), 1.0 - 0.999f64.powf(t));
    let r: Vec<f64> = (0..p.len())
        .map(|i| (m[i] / bc1) / ((v[i] / bc2).sqrt() + 1e-6) + decay * p[i])
        .collect();
    let norm = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>().sqrt();
    let (wn, rn) = (norm(p), norm(&r));
    let ratio = if adapt && wn > 0.0 && rn > 0.0 {
        wn / rn
    } else {
        1.0
    };
    let p2 = (0..p.len()).map(|i| p[i] - lr * ratio * r[i]).collect();
    (p2, vec![m, v])
}

fn sgd_ref(nesterov: bool, wd: f64) -> Box<Reference> {
    Box::new(
        move |name: &str, p: &[f64], g: &[f64], s: &[Vec<f64>], lr: f64, _t: f64| {
            let decay = if bert_decays(name) { wd } else { 0.0 };
            let gd: Vec<f64> = (0..p.len()).map(|i| g[i] + decay * p[i]).collect();
            let buf: Vec<f64> = (0..p.len()).map(|i| 0.9 * s[0][i] + gd[i]).collect();
            let p2 = (0..p.len())
                .map(|i| {
                    let d = if nesterov {
                        gd[i] + 0.9 * buf[i]
                    } else {
                        buf[i]
                    };
                    p[i] - lr * d
                })
                .collect();
            (p2, vec![buf])
        },
    )
}

fn f32_lit(v: &[f32], dims: &[i64]) -> Literal {
    lit(v, dims)
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// max |got - want| / max |want|.
fn rel_error(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |a, w| a.max(w.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |a, (g, w)| a.max((f64::from(*g) - w).abs()));
    err / scale
}

/// Runs `steps` updates of every tensor from `first_step` on, comparing each with `reference`.
fn check_optimizer(opt: &dyn Optimizer, reference: &Reference, seed: u64, first_step: i32) {
    let mut r = rng(seed);
    let steps = 6;
    let mut worst = 0.0f64;
    for (name, dims) in TENSORS {
        let exe = compile(&update_module(opt, name, dims), &CompileOptions::default());
        let n: usize = dims.iter().product::<i64>() as usize;
        let mut param = normal_f32(&mut r, n);
        // Non-zero starting state, as after earlier steps (v >= 0).
        let mut slots: Vec<Vec<f32>> = opt
            .slot_names()
            .iter()
            .enumerate()
            .map(|(k, _)| {
                if k == 1 {
                    uniform_f32(&mut r, n, 0.0, 0.1)
                } else {
                    normal_f32(&mut r, n).iter().map(|x| x * 0.1).collect()
                }
            })
            .collect();
        for k in 0..steps {
            let grad = normal_f32(&mut r, n);
            let lr = uniform_f32(&mut r, 1, 0.01, 0.1)[0];
            let step = first_step + k;
            let mut args = vec![f32_lit(&param, dims), f32_lit(&grad, dims)];
            args.extend(slots.iter().map(|s| f32_lit(s, dims)));
            args.push(lit(&[lr], &[]));
            args.push(Literal::scalar(step));
            let bufs: Vec<_> = args.iter().map(|l| upload(l, 0)).collect();
            let refs: Vec<_> = bufs.iter().collect();
            let outs = exe.execute(&refs).unwrap();
            let got: Vec<Vec<f32>> = outs.iter().map(|b| b.to_host::<f32>().unwrap()).collect();
            let wide_slots: Vec<Vec<f64>> = slots.iter().map(|s| widen(s)).collect();
            let (want_p, want_s) = reference(
                name,
                &widen(&param),
                &widen(&grad),
                &wide_slots,
                f64::from(lr),
                f64::from(step + 1),
            );
            let mut errs = vec![("param", rel_error(&got[0], &want_p))];
            for (j, ws) in want_s.iter().enumerate() {
                errs.push((opt.slot_names()[j], rel_error(&got[1 + j], ws)));
            }
            for (what, e) in errs {
                assert!(
                    e <= 1e-6,
                    "{}: {name} step {step}: {what} relative error {e:e} > 1e-6",
                    opt.name()
                );
                worst = worst.max(e);
            }
            param = got[0].clone();
            slots = got[1..].to_vec();
        }
    }
    eprintln!("{}: worst relative error {worst:e}", opt.name());
}

#[test]
fn adam_weight_decay_matches_original_bert_formula() {
    check_optimizer(&AdamWeightDecay::default(), &adam_weight_decay_ref, 1, 0);
}

#[test]
fn adam_weight_decay_has_no_bias_correction() {
    // The same update at step 0 and at step 5000: the step does not enter the formula.
    check_optimizer(&AdamWeightDecay::default(), &adam_weight_decay_ref, 1, 5000);
}

#[test]
fn adamw_matches_pytorch_formula() {
    check_optimizer(&AdamW::default(), &adamw_ref, 2, 0);
    check_optimizer(&AdamW::default(), &adamw_ref, 3, 1000);
}

#[test]
fn lamb_matches_its_formula() {
    check_optimizer(&Lamb::default(), &lamb_ref, 4, 0);
    check_optimizer(&Lamb::default(), &lamb_ref, 5, 300);
}

#[test]
fn sgd_momentum_matches_pytorch_formula() {
    check_optimizer(&Sgd::default(), &sgd_ref(false, 0.0), 6, 0);
    let nesterov = Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: WeightDecay::bert(0.01),
    };
    check_optimizer(&nesterov, &sgd_ref(true, 0.01), 7, 0);
}

#[test]
fn lamb_trust_ratio_is_one_for_zero_weights() {
    // ||w|| = 0: the ratio falls back to 1 (no division by zero), so the step is lr * r.
    let opt = Lamb::default();
    let name = "encoder/dense/kernel";
    let dims = [3i64, 4];
    let exe = compile(
        &update_module(&opt, name, &dims),
        &CompileOptions::default(),
    );
    let mut r = rng(8);
    let zero = vec![0f32; 12];
    let grad = normal_f32(&mut r, 12);
    let args = [
        f32_lit(&zero, &dims),
        f32_lit(&grad, &dims),
        f32_lit(&zero, &dims),
        f32_lit(&zero, &dims),
        lit(&[0.5f32], &[]),
        Literal::scalar(0i32),
    ];
    let bufs: Vec<_> = args.iter().map(|l| upload(l, 0)).collect();
    let refs: Vec<_> = bufs.iter().collect();
    let got = exe.execute(&refs).unwrap()[0].to_host::<f32>().unwrap();
    let (want, _) = lamb_ref(
        "no_adapt_bias",
        &[0.0; 12],
        &widen(&grad),
        &[vec![0.0; 12], vec![0.0; 12]],
        0.5,
        1.0,
    );
    assert!(got.iter().all(|x| x.is_finite()), "{got:?}");
    assert!(rel_error(&got, &want) <= 1e-6, "{got:?} vs {want:?}");
}

#[test]
fn bad_settings_are_clear_errors() {
    let opt = AdamW {
        beta2: 1.5,
        ..Default::default()
    };
    let mb = ModuleBuilder::new("bad");
    let b = mb.builder("main");
    let t = Shape::array(ElementType::F32, vec![2]);
    let p = b.parameter(t.clone(), "p").unwrap();
    let g = b.parameter(t.clone(), "g").unwrap();
    let lr = b.parameter(Shape::scalar(ElementType::F32), "lr").unwrap();
    let step = b.parameter(Shape::scalar(ElementType::S32), "s").unwrap();
    let u = UpdateInputs {
        name: "w",
        param: p,
        grad: g,
        slots: &[p, p],
        lr,
        step,
    };
    let e = opt.update(&b, &u).unwrap_err().to_string();
    assert!(
        e.contains("AdamW") && e.contains("beta") && e.contains("1.5"),
        "{e}"
    );
    let u = UpdateInputs { slots: &[p], ..u };
    let e = AdamW::default().update(&b, &u).unwrap_err().to_string();
    assert!(e.contains("'w'") && e.contains("1 state slots"), "{e}");
}

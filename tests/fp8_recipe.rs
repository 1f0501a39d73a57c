//! The delayed-scaling recipe of `train::fp8` on the CPU plugin against Transformer Engine's
//! `amax_and_scale_update` written here in Rust: this step's scale from the amax history and
//! the previous scale (zero, infinite, NaN and subnormal amaxes, margins), and the history
//! shifted by one with the new amax in front.
mod common;
use common::inputs::*;
use common::*;
use hlo::ElementType::F32;
use rand::Rng;
use tpu_run::train::{DelayedScaling, Fp8Setup, Fp8Tensor};

const LEN: usize = 4;

/// TE: `amax = fmaxf` over the history from 0 (NaN entries drop out); `scale = fp8_max *
/// 2^-margin / amax` when that is finite and > 0 (f32's largest value if the division
/// overflows), else the previous scale; a subnormal amax counts as none (the recipe's one
/// deviation, so that backends which flush subnormals agree).
fn te_scale(history: &[f32], prev: f32, fp8_max: f32, margin: f64) -> f32 {
    let amax = history.iter().copied().fold(0.0f32, f32::max);
    if amax.is_finite() && amax >= f32::MIN_POSITIVE {
        let target = (f64::from(fp8_max) * (-margin).exp2()) as f32;
        (target / amax).min(f32::MAX)
    } else {
        prev
    }
}

/// Histories covering the recipe's branches, then seeded random ones.
fn histories() -> Vec<[f32; LEN]> {
    let mut h = vec![
        [0.0; LEN],
        [0.0, 0.0, 0.0, 3.5],
        [1e-40, 0.0, 0.0, 0.0],
        [2e-38, 0.0, 0.0, 1e-39],
        [f32::INFINITY, 1.0, 2.0, 3.0],
        [f32::NAN, 1.0, 2.0, 3.0],
        [f32::NAN, f32::NAN, f32::NAN, f32::NAN],
        [1.0, 0.5, 0.25, 448.0],
        [f32::MAX, 0.0, 0.0, 0.0],
    ];
    let mut g = rng(31);
    for _ in 0..40 {
        let mut row = [0.0f32; LEN];
        for v in &mut row {
            *v = g.gen_range(-20.0f32..20.0).exp2() * g.gen_range(1.0f32..2.0);
        }
        h.push(row);
    }
    h
}

#[test]
fn scales_and_histories_follow_transformer_engine() {
    let hs = histories();
    let n = hs.len();
    for margin in [0.0, 1.0, 2.5] {
        // One "layer" per history, so every history is scaled as x, w and grad.
        let setup = Fp8Setup {
            recipe: DelayedScaling {
                history_len: LEN,
                margin,
            },
            layers: (0..n).map(|i| format!("l{i}")).collect(),
        };
        let mut g = rng(32);
        let prev: Vec<f32> = (0..3 * n).map(|_| g.gen_range(0.5f32..100.0)).collect();
        let amax: Vec<f32> = (0..3 * n).map(|_| g.gen_range(0.0f32..10.0)).collect();
        let mut shapes = vec![];
        let mut inputs = vec![];
        for (j, h) in hs.iter().flat_map(|h| [h, h, h]).enumerate() {
            shapes.push(arr_shape(F32, &[LEN as i64]));
            shapes.push(arr_shape(F32, &[]));
            inputs.push(lit(h, &[LEN as i64]));
            inputs.push(lit(&[prev[j]], &[]));
        }
        for a in &amax {
            shapes.push(arr_shape(F32, &[]));
            inputs.push(lit(&[*a], &[]));
        }
        let m = module(&shapes, |b, p| {
            let (state, amaxes) = p.split_at(6 * n);
            let scales = setup
                .scales(b, state)
                .map_err(|e| hlo::HloError::Literal(e.to_string()))?;
            let next = setup
                .next_state(b, state, &scales, amaxes)
                .map_err(|e| hlo::HloError::Literal(e.to_string()))?;
            Ok(next)
        });
        let out = run(&m, &inputs);
        for (j, ((layer, t), h)) in setup
            .tensors()
            .zip(hs.iter().flat_map(|h| [h, h, h]))
            .enumerate()
        {
            let fp8_max = if t == Fp8Tensor::Grad { 57344.0 } else { 448.0 };
            let want = te_scale(h, prev[j], fp8_max, margin);
            let got = vals::<f32>(&out[2 * j + 1])[0];
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "margin {margin}, {layer} {}: history {h:?}, previous {}",
                t.name(),
                prev[j]
            );
            let mut shifted = vec![amax[j]];
            shifted.extend(&h[..LEN - 1]);
            let got_h = vals::<f32>(&out[2 * j]);
            assert!(
                got_h
                    .iter()
                    .zip(&shifted)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{layer} {}: history {got_h:?}, want {shifted:?}",
                t.name()
            );
        }
    }
}

#[test]
fn a_one_step_history_is_the_latest_amax() {
    let setup = Fp8Setup {
        recipe: DelayedScaling {
            history_len: 1,
            margin: 0.0,
        },
        layers: vec!["only".into()],
    };
    let mut shapes = vec![];
    let mut inputs = vec![];
    for _ in 0..3 {
        shapes.extend([arr_shape(F32, &[1]), arr_shape(F32, &[])]);
        inputs.extend([lit(&[2.0f32], &[1]), lit(&[1.0f32], &[])]);
    }
    for a in [7.0f32, 8.0, 9.0] {
        shapes.push(arr_shape(F32, &[]));
        inputs.push(lit(&[a], &[]));
    }
    let m = module(&shapes, |b, p| {
        let (state, amaxes) = p.split_at(6);
        let scales = setup
            .scales(b, state)
            .map_err(|e| hlo::HloError::Literal(e.to_string()))?;
        setup
            .next_state(b, state, &scales, amaxes)
            .map_err(|e| hlo::HloError::Literal(e.to_string()))
    });
    let out = run(&m, &inputs);
    let got: Vec<f32> = out.iter().map(|l| vals::<f32>(l)[0]).collect();
    assert_eq!(got, vec![7.0, 224.0, 8.0, 224.0, 9.0, 28672.0]);
    let bad = Fp8Setup {
        recipe: DelayedScaling {
            history_len: 0,
            margin: 0.0,
        },
        layers: vec!["x".into()],
    };
    assert!(bad.check().unwrap_err().to_string().contains("history"));
}

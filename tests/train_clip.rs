//! Global-norm clipping (tf.clip_by_global_norm) and the all-finite test, against f64 references.
mod common;
use common::check::assert_close;
use common::inputs::{normal, rng};
use common::*;
use hlo::{ElementType, Literal, ModuleBuilder, Shape};
use tpu::CompileOptions;
use tpu_run::train::clip::{all_finite, clip_by_global_norm};

// Small tensors (and the scalar) are summed through one concatenation, [300, 256] on its own.
const DIMS: [&[i64]; 4] = [&[4, 5], &[300, 256], &[7], &[]];

/// Runs clip_by_global_norm on f32 tensors; returns the clipped tensors and the norm.
fn run_clip(tensors: &[Vec<f64>], clip: f64) -> (Vec<Vec<f64>>, f64) {
    let mb = ModuleBuilder::new("clip");
    let b = mb.builder("main");
    let ps: Vec<_> = DIMS
        .iter()
        .enumerate()
        .map(|(i, d)| {
            b.parameter(Shape::array(ElementType::F32, d.to_vec()), &format!("g{i}"))
                .unwrap()
        })
        .collect();
    let (clipped, norm) = clip_by_global_norm(&b, &ps, clip).unwrap();
    let mut outs = clipped;
    outs.push(norm);
    let entry = b.finish(b.tuple(&outs).unwrap()).unwrap();
    let m = mb.build(entry).unwrap();
    let args: Vec<Literal> = tensors
        .iter()
        .zip(DIMS)
        .map(|(t, d)| lit_as(ElementType::F32, t, d))
        .collect();
    let out = run(&m, &args);
    let mut vals: Vec<Vec<f64>> = out.iter().map(f64s).collect();
    let norm = vals.pop().unwrap()[0];
    (vals, norm)
}

/// f64 reference: t * clip / max(norm, clip).
fn reference(tensors: &[Vec<f64>], clip: f64) -> (Vec<Vec<f64>>, f64) {
    let norm = tensors.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    let s = clip / norm.max(clip);
    (
        tensors
            .iter()
            .map(|t| t.iter().map(|x| x * s).collect())
            .collect(),
        norm,
    )
}

/// f32-rounded random tensors scaled by `scale`.
fn tensors(seed: u64, scale: f64) -> Vec<Vec<f64>> {
    let mut r = rng(seed);
    DIMS.iter()
        .map(|d| {
            let n = d.iter().product::<i64>() as usize;
            normal(&mut r, n)
                .iter()
                .map(|x| f64::from((x * scale) as f32))
                .collect()
        })
        .collect()
}

#[test]
fn clips_when_the_global_norm_exceeds_the_threshold() {
    let t = tensors(1, 1.0); // norm about sqrt(28) > 1
    let (got, norm) = run_clip(&t, 1.0);
    let (want, want_norm) = reference(&t, 1.0);
    assert!(want_norm > 2.0);
    assert_close(&[norm], &[want_norm], 0.0, 1e-6, "global norm");
    for (g, w) in got.iter().zip(&want) {
        assert_close(g, w, 1e-7, 1e-6, "clipped");
    }
    let clipped_norm = got.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    assert!((clipped_norm - 1.0).abs() < 1e-6, "{clipped_norm}");
}

#[test]
fn leaves_small_gradients_unchanged() {
    let t = tensors(2, 0.001); // norm about 0.28 < 1 (76,828 values)
    let (got, norm) = run_clip(&t, 1.0);
    assert!(norm < 1.0);
    // clip * min(1/norm, 1/clip) is exactly 1 here, so the values pass through bit for bit.
    assert_eq!(got, t);
}

#[test]
fn other_thresholds() {
    let t = tensors(3, 1.0);
    for clip in [0.25, 5.0, 100.0] {
        let (got, _) = run_clip(&t, clip);
        let (want, _) = reference(&t, clip);
        for (g, w) in got.iter().zip(&want) {
            assert_close(g, w, 1e-7, 1e-6, &format!("clip {clip}"));
        }
    }
}

#[test]
fn non_finite_norm_gives_nan_as_tensorflow() {
    let mut t = tensors(4, 1.0);
    t[1][3] = f64::INFINITY;
    let (got, norm) = run_clip(&t, 1.0);
    assert!(norm.is_infinite());
    assert!(got.iter().flatten().all(|x| x.is_nan()));
}

#[test]
fn all_finite_detects_inf_and_nan() {
    let mb = ModuleBuilder::new("finite");
    let b = mb.builder("main");
    let ps: Vec<_> = DIMS
        .iter()
        .enumerate()
        .map(|(i, d)| {
            b.parameter(Shape::array(ElementType::F16, d.to_vec()), &format!("g{i}"))
                .unwrap()
        })
        .collect();
    let ok = all_finite(&b, &ps).unwrap();
    let entry = b.finish(ok).unwrap();
    let m = mb.build(entry).unwrap();
    let exe = compile(&m, &CompileOptions::default());
    let check = |t: &[Vec<f64>]| -> bool {
        let bufs: Vec<_> = t
            .iter()
            .zip(DIMS)
            .map(|(v, d)| upload(&lit_as(ElementType::F16, v, d), 0))
            .collect();
        let refs: Vec<_> = bufs.iter().collect();
        exe.execute(&refs).unwrap()[0].to_host::<bool>().unwrap()[0]
    };
    let t = tensors(5, 1.0);
    assert!(check(&t));
    for (i, j, bad) in [(0, 7, f64::NAN), (1, 0, f64::NEG_INFINITY), (2, 0, 1e6)] {
        let mut u = t.clone();
        u[i][j] = bad; // 1e6 overflows f16 to inf
        assert!(!check(&u), "tensor {i} holding {bad}");
    }
}

#[test]
fn bad_threshold_is_a_clear_error() {
    let mb = ModuleBuilder::new("clip");
    let b = mb.builder("main");
    let g = b
        .parameter(Shape::array(ElementType::F32, vec![2]), "g")
        .unwrap();
    let e = clip_by_global_norm(&b, &[g], 0.0).unwrap_err();
    assert!(e.to_string().contains("clip norm"), "{e}");
}

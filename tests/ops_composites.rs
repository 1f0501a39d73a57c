//! Composite helpers (hlo/src/ops) on the CPU plugin against f64 references: softmax family,
//! mean/variance, layer norm, GELU (erf and tanh forms), one_hot, argmax, softmax cross-entropy
//! with integer labels, dropout.
mod common;
use common::check::{assert_close, assert_exact};
use common::inputs::*;
use common::reference::{self as r, arr, flat};
use common::*;
use hlo::ElementType::{self, *};

fn input(ty: ElementType, seed: u64, dims: &[usize], scale: f64) -> (hlo::Literal, r::A) {
    let n = dims.iter().product();
    let v: Vec<f64> = normal(&mut rng(seed), n)
        .iter()
        .map(|x| x * scale)
        .collect();
    let d: Vec<i64> = dims.iter().map(|&x| x as i64).collect();
    let l = lit_as(ty, &v, &d);
    let a = arr(&l.to_f64_vec(), dims);
    (l, a)
}

fn shape(ty: ElementType, dims: &[usize]) -> hlo::Shape {
    arr_shape(ty, &dims.iter().map(|&x| x as i64).collect::<Vec<_>>())
}

#[test]
fn softmax_family_f32() {
    // Large logits (scale 20) check the max subtraction: a naive exp would overflow.
    let (xl, x) = input(F32, 1, &[3, 4, 6], 20.0);
    let m = module(&[shape(F32, &[3, 4, 6])], |b, p| {
        Ok(vec![
            b.softmax(p[0], 2)?,
            b.softmax(p[0], 0)?,
            b.log_softmax(p[0], 2)?,
            b.logsumexp(p[0], &[2])?,
            b.logsumexp(p[0], &[1])?,
        ])
    });
    let out = run(&m, &[xl]);
    let tol = 1e-5;
    assert_close(
        &f64s(&out[0]),
        &flat(&r::softmax(&x, 2)),
        tol,
        tol,
        "softmax last axis",
    );
    assert_close(
        &f64s(&out[1]),
        &flat(&r::softmax(&x, 0)),
        tol,
        tol,
        "softmax axis 0",
    );
    assert_close(
        &f64s(&out[2]),
        &flat(&r::log_softmax(&x, 2)),
        1e-4,
        tol,
        "log_softmax",
    );
    assert_close(
        &f64s(&out[3]),
        &flat(&r::logsumexp(&x, 2)),
        1e-4,
        tol,
        "logsumexp axis 2",
    );
    assert_close(
        &f64s(&out[4]),
        &flat(&r::logsumexp(&x, 1)),
        1e-4,
        tol,
        "logsumexp axis 1",
    );
}

#[test]
fn softmax_masked_rows() {
    // A row of -inf (fully masked) gives zeros; a partly masked row ignores the masked entries.
    let ninf = f32::NEG_INFINITY;
    let x = [ninf, ninf, ninf, 1.0, ninf, 3.0];
    let m = module(&[arr_shape(F32, &[2, 3])], |b, p| {
        Ok(vec![b.softmax(p[0], 1)?])
    });
    let out = run(&m, &[lit(&x, &[2, 3])]);
    let e = (-2f64).exp();
    let want = [0.0, 0.0, 0.0, e / (1.0 + e), 0.0, 1.0 / (1.0 + e)];
    assert_close(&f64s(&out[0]), &want, 1e-6, 1e-6, "masked softmax");
}

#[test]
fn softmax_bf16_with_f32_stats() {
    let (xl, x) = input(Bf16, 2, &[4, 16], 3.0);
    let m = module(&[shape(Bf16, &[4, 16])], |b, p| {
        Ok(vec![
            b.softmax_f32_stats(p[0], 1)?,
            b.softmax(p[0], 1)?,
            b.log_softmax_f32_stats(p[0], 1)?,
        ])
    });
    let out = run(&m, &[xl]);
    assert_eq!(out[0].element_type(), Bf16);
    // One rounding to bf16 of probabilities <= 1: ~2^-9 relative.
    assert_close(
        &f64s(&out[0]),
        &flat(&r::softmax(&x, 1)),
        1e-3,
        1e-2,
        "bf16 softmax f32 stats",
    );
    assert_close(
        &f64s(&out[1]),
        &flat(&r::softmax(&x, 1)),
        4e-3,
        3e-2,
        "bf16 softmax",
    );
    assert_close(
        &f64s(&out[2]),
        &flat(&r::log_softmax(&x, 1)),
        2e-2,
        1e-2,
        "bf16 log_softmax",
    );
}

#[test]
fn mean_variance_layer_norm_f32() {
    let dims = [2, 3, 32];
    let (_, x) = input(F32, 3, &dims, 2.0);
    let x = x.mapv(|v| v + 1.5); // a non-zero mean
    let xl = lit(
        &flat(&x).iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &[2, 3, 32],
    );
    let x = arr(&xl.to_f64_vec(), &dims);
    let gamma = uniform_f32(&mut rng(4), 32, 0.5, 1.5);
    let beta = normal_f32(&mut rng(5), 32);
    let m = module(
        &[shape(F32, &dims), shape(F32, &[32]), shape(F32, &[32])],
        |b, p| {
            Ok(vec![
                b.mean(p[0], &[2])?,
                b.variance(p[0], &[2])?,
                b.mean(p[0], &[0, 2])?,
                b.layer_norm(p[0], p[1], p[2], 1e-12)?,
                b.layer_norm(p[0], p[1], p[2], 0.5)?,
            ])
        },
    );
    let out = run(&m, &[xl, lit(&gamma, &[32]), lit(&beta, &[32])]);
    let lanes = |a: &r::A, f: fn(&[f64]) -> f64| -> Vec<f64> {
        a.lanes(ndarray::Axis(2))
            .into_iter()
            .map(|l| f(&l.iter().copied().collect::<Vec<_>>()))
            .collect()
    };
    assert_close(&f64s(&out[0]), &lanes(&x, r::mean), 1e-5, 1e-5, "mean");
    assert_close(
        &f64s(&out[1]),
        &lanes(&x, r::variance),
        1e-5,
        1e-5,
        "variance",
    );
    let want = r::reduce(&x, &[0, 2], 0.0, |a, b| a + b).mapv(|v| v / 64.0);
    assert_close(
        &f64s(&out[2]),
        &flat(&want),
        1e-5,
        1e-5,
        "mean over two axes",
    );
    let g: Vec<f64> = gamma.iter().map(|&v| f64::from(v)).collect();
    let bt: Vec<f64> = beta.iter().map(|&v| f64::from(v)).collect();
    let want = r::layer_norm(&x, &g, &bt, 1e-12);
    assert_close(
        &f64s(&out[3]),
        &flat(&want),
        1e-5,
        1e-5,
        "layer_norm eps 1e-12",
    );
    let want = r::layer_norm(&x, &g, &bt, 0.5);
    assert_close(
        &f64s(&out[4]),
        &flat(&want),
        1e-5,
        1e-5,
        "layer_norm eps 0.5",
    );
}

#[test]
fn layer_norm_bf16_with_f32_params() {
    let (xl, x) = input(Bf16, 6, &[4, 64], 3.0);
    let gamma = uniform_f32(&mut rng(7), 64, 0.5, 1.5);
    let beta = normal_f32(&mut rng(8), 64);
    let m = module(
        &[shape(Bf16, &[4, 64]), shape(F32, &[64]), shape(F32, &[64])],
        |b, p| Ok(vec![b.layer_norm(p[0], p[1], p[2], 1e-12)?]),
    );
    let out = run(&m, &[xl, lit(&gamma, &[64]), lit(&beta, &[64])]);
    assert_eq!(out[0].element_type(), Bf16);
    let g: Vec<f64> = gamma.iter().map(|&v| f64::from(v)).collect();
    let bt: Vec<f64> = beta.iter().map(|&v| f64::from(v)).collect();
    let want = r::layer_norm(&x, &g, &bt, 1e-12);
    // Statistics in f32, one rounding of outputs of magnitude up to ~4 to bf16.
    assert_close(&f64s(&out[0]), &flat(&want), 2e-2, 1e-2, "bf16 layer_norm");
}

#[test]
fn gelu_both_forms() {
    for (ty, atol, rtol) in [(F32, 2e-6, 2e-6), (F64, 1e-12, 1e-12), (Bf16, 1e-2, 1e-2)] {
        let (xl, x) = input(ty, 9, &[64], 2.5);
        let m = module(&[shape(ty, &[64])], |b, p| {
            Ok(vec![b.gelu_erf(p[0])?, b.gelu_tanh(p[0])?])
        });
        let out = run(&m, &[xl]);
        let want: Vec<f64> = x.iter().map(|&v| r::gelu_erf(v)).collect();
        assert_close(&f64s(&out[0]), &want, atol, rtol, &format!("{ty} gelu erf"));
        let want: Vec<f64> = x.iter().map(|&v| r::gelu_tanh(v)).collect();
        assert_close(
            &f64s(&out[1]),
            &want,
            atol,
            rtol,
            &format!("{ty} gelu tanh"),
        );
    }
    // The two forms differ by ~1e-4 near x = 2, 50x the f32 tolerance: a swap would fail.
    let d = (r::gelu_erf(2.0) - r::gelu_tanh(2.0)).abs();
    assert!(d > 5e-5, "{d}");
}

#[test]
fn one_hot_and_argmax() {
    let ids = [3i32, 0, 4, -1, 5, 2];
    let m = module(&[arr_shape(S32, &[2, 3])], |b, p| {
        Ok(vec![
            b.one_hot(p[0], 5, F32, 1.0, 0.0)?,
            b.one_hot(p[0], 5, S32, 7.0, -1.0)?,
        ])
    });
    let out = run(&m, &[lit(&ids, &[2, 3])]);
    let ids64: Vec<i64> = ids.iter().map(|&v| i64::from(v)).collect();
    let want = r::one_hot(&ids64, 5);
    assert_eq!(out[0].shape().dims, vec![2, 3, 5]);
    assert_close(
        &f64s(&out[0]),
        &want,
        0.0,
        0.0,
        "one_hot f32 (out-of-range rows are 0)",
    );
    let want: Vec<i32> = want
        .iter()
        .map(|&v| if v == 1.0 { 7 } else { -1 })
        .collect();
    assert_exact(&vals::<i32>(&out[1]), &want, "one_hot s32 on/off");

    let (xl, x) = input(Bf16, 10, &[6, 9], 1.0);
    let m = module(&[shape(Bf16, &[6, 9])], |b, p| {
        Ok(vec![b.argmax(p[0], 1, S32)?])
    });
    let out = run(&m, &[xl]);
    let want: Vec<i32> = r::argmax(&x, 1).into_iter().map(|v| v as i32).collect();
    assert_exact(&vals::<i32>(&out[0]), &want, "bf16 argmax");
}

#[test]
fn softmax_cross_entropy_matches_log_softmax_and_argmax() {
    // Scale 20 checks the max subtraction; rows 1 and 2 tie on purpose (first index wins);
    // labels -1 and 7 are out of range (nll 0, as the one-hot form).
    let (n, c) = (6, 7);
    let (_, mut x) = input(F64, 30, &[n, c], 20.0);
    let top = (0..c).map(|j| x[[1, j]]).fold(f64::MIN, f64::max) + 3.0;
    x[[1, 2]] = top;
    x[[1, 5]] = top;
    let labels = [3i32, 2, -1, 6, 7, 0];
    for ty in [F32, F64] {
        let xl = lit_as(ty, &flat(&x), &[n as i64, c as i64]);
        let m = module(
            &[shape(ty, &[n, c]), arr_shape(S32, &[n as i64])],
            |b, p| {
                let ce = b.softmax_cross_entropy(p[0], p[1])?;
                Ok(vec![ce.nll, ce.pred])
            },
        );
        let out = run(&m, &[xl, lit(&labels, &[n as i64])]);
        let logp = r::log_softmax(&x, 1);
        let want: Vec<f64> = (0..n)
            .map(|i| match usize::try_from(labels[i]) {
                Ok(k) if k < c => -logp[[i, k]],
                _ => 0.0,
            })
            .collect();
        let tol = if ty == F32 { 1e-5 } else { 1e-12 };
        assert_close(&f64s(&out[0]), &want, tol, tol, &format!("{ty} nll"));
        let pred: Vec<i32> = r::argmax(&x, 1).into_iter().map(|v| v as i32).collect();
        assert_eq!(pred[1], 2, "the tie resolves to the first index");
        assert_exact(&vals::<i32>(&out[1]), &pred, &format!("{ty} argmax"));
    }
}

/// Runs dropout(rate) on x with `key`; returns (y, new key).
fn dropout(x: &[f32], rate: f64, key: [u64; 2]) -> (Vec<f32>, Vec<u64>) {
    let n = x.len() as i64;
    let m = module(&[arr_shape(F32, &[n]), arr_shape(U64, &[2])], |b, p| {
        let (y, k) = b.dropout(p[0], rate, p[1])?;
        Ok(vec![y, k])
    });
    let out = run(&m, &[lit(x, &[n]), lit(&key, &[2])]);
    (vals::<f32>(&out[0]), vals::<u64>(&out[1]))
}

#[test]
fn dropout_masks_and_scales() {
    let x: Vec<f32> = uniform_f32(&mut rng(11), 4096, 0.5, 2.0);
    let rate = 0.25;
    let (y, k1) = dropout(&x, rate, [3, 4]);
    let mut kept = 0usize;
    for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
        if b != 0.0 {
            kept += 1;
            let want = f64::from(a) / (1.0 - rate);
            assert!(
                (f64::from(b) - want).abs() <= 1e-6 * want,
                "[{i}]: {b} vs {want}"
            );
        }
    }
    // Kept fraction 0.75 +- 0.0068 (1 sigma); allow 5 sigma.
    let frac = kept as f64 / 4096.0;
    assert!((frac - 0.75).abs() < 0.034, "kept fraction {frac}");
    assert_ne!(k1, vec![3, 4], "the key advances");
    let (y2, k2) = dropout(&x, rate, [3, 4]);
    assert_exact(&y2, &y, "same key, same mask");
    assert_eq!(k2, k1);
    let (y3, _) = dropout(&x, rate, [3, 5]);
    let same = y
        .iter()
        .zip(&y3)
        .filter(|(a, b)| (**a == 0.0) == (**b == 0.0))
        .count();
    assert!(
        same < 3500,
        "a different key gave {same} of 4096 equal mask bits"
    );
    let (y0, k0) = dropout(&x, 0.0, [3, 4]);
    assert_exact(&y0, &x, "rate 0 is the identity");
    assert_eq!(k0, vec![3, 4]);
}

/// Chris Wellons' triple32, the reference for the dropout hash.
fn triple32(mut x: u32) -> u32 {
    x ^= x >> 17;
    x = x.wrapping_mul(0xed5a_d4bb);
    x ^= x >> 11;
    x = x.wrapping_mul(0xac4c_1b51);
    x ^= x >> 15;
    x = x.wrapping_mul(0x3184_8bab);
    x ^ (x >> 14)
}

#[test]
fn dropout_mask_is_the_documented_hash_of_the_key() {
    // Keys with all four 32-bit halves set, a counter that wraps its low half mid-array.
    let key = [0x0123_4567_89ab_cdef_u64, 0x0fed_cba9_ffff_fff0];
    let x: Vec<f32> = uniform_f32(&mut rng(12), 1000, 0.5, 2.0);
    let rate = 0.3;
    let (y, k1) = dropout(&x, rate, key);
    let (a, b) = (key[0] as u32, (key[0] >> 32) as u32);
    let (c, d) = (key[1] as u32, (key[1] >> 32) as u32);
    let s = triple32(a ^ triple32(b ^ triple32(d)));
    let t = ((1.0 - rate) * 4_294_967_296.0_f64).round() as u32;
    for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
        let keep = triple32(c.wrapping_add(i as u32) ^ s) < t;
        let want = if keep {
            (f64::from(xi) / (1.0 - rate)) as f32
        } else {
            0.0
        };
        assert!(
            (yi - want).abs() <= 1e-6 * want.abs(),
            "[{i}]: {yi} vs {want}"
        );
    }
    assert_eq!(k1, vec![key[0], key[1] + 1000], "the counter advances by n");
}

#[test]
fn add_batch_broadcast_values_and_row_sum_gradient() {
    // 48 rows of [5, 3]: y's gradient under the cotangent c is c's row sum, taken by the op as
    // a dot with ones; bf16 accumulates in f32 and rounds once.
    let (n, d) = (48usize, [5usize, 3]);
    let cols: usize = d.iter().product();
    for ty in [F32, Bf16] {
        let (xl, x) = input(ty, 70, &[n, d[0], d[1]], 1.0);
        let (yl, y) = input(ty, 71, &d, 1.0);
        let (cl, c) = input(ty, 72, &[n, d[0], d[1]], 1.0);
        let m = module(
            &[
                shape(ty, &[n, d[0], d[1]]),
                shape(ty, &d),
                shape(ty, &[n, d[0], d[1]]),
            ],
            |b, p| {
                let out = b.add_batch_broadcast(p[0], p[1])?;
                let loss = b.reduce_sum(b.convert(b.mul(out, p[2])?, F32)?, &[0, 1, 2])?;
                let grads = b.grad(loss, &[p[1]])?;
                Ok(vec![out, grads[0]])
            },
        );
        let out = run(&m, &[xl, yl, cl]);
        let (xs, ys, cs) = (flat(&x), flat(&y), flat(&c));
        let want_out: Vec<f64> = (0..n * cols).map(|i| xs[i] + ys[i % cols]).collect();
        let want_dy: Vec<f64> = (0..cols)
            .map(|j| (0..n).map(|i| cs[i * cols + j]).sum())
            .collect();
        // bf16: the sum of two bf16 values rounds once (2^-8 relative); the gradient is a
        // 48-term f32 sum rounded once to bf16.
        let tol = if ty == F32 { 1e-6 } else { 1e-2 };
        assert_close(&f64s(&out[0]), &want_out, tol, tol, &format!("{ty} x + y"));
        assert_close(&f64s(&out[1]), &want_dy, tol, tol, &format!("{ty} dy"));
    }
}

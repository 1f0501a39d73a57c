//! The 8-bit float types on the CPU plugin: XLA's `convert` to and from f8e4m3fn and f8e5m2
//! agrees bit for bit with the host conversions of `hlo::f8` (themselves checked against a
//! brute-force reference in hlo/tests/f8_convert.rs), f8 arrays cross the PJRT boundary as
//! bytes, f8 constants lower, and autodiff goes through converts to f8 as JAX does (the
//! cotangent is converted back, so it is rounded to f8 on the way).
mod common;
use common::inputs::*;
use common::*;
use half::bf16;
use hlo::ElementType::{self, *};
use hlo::{Literal, F8E4M3FN, F8E5M2};
use rand::Rng;

/// Host conversion of an f64 to f8 bits, and back.
fn host_bits(ty: ElementType, x: f64) -> u8 {
    match ty {
        F8E4M3FN => hlo::F8E4M3FN::from_f64(x).to_bits(),
        _ => hlo::F8E5M2::from_f64(x).to_bits(),
    }
}

fn host_value(ty: ElementType, bits: u8) -> f64 {
    match ty {
        F8E4M3FN => hlo::F8E4M3FN::from_bits(bits).to_f64(),
        _ => hlo::F8E5M2::from_bits(bits).to_f64(),
    }
}

/// Seeded f32 values with magnitudes from below the smallest f8 subnormal to past the largest
/// finite f8 value, each format's exact ties (midpoints between neighbouring values), and the
/// specials.
fn wide_inputs(seed: u64) -> Vec<f32> {
    let mut g = rng(seed);
    let mut v: Vec<f32> = (0..4096)
        .map(|_| {
            let e: i32 = g.gen_range(-20..19);
            let m: f64 = g.gen_range(1.0..2.0);
            let s = if g.gen_bool(0.5) { -1.0 } else { 1.0 };
            (s * m * 2f64.powi(e)) as f32
        })
        .collect();
    for ty in [F8E4M3FN, F8E5M2] {
        for code in 0..0x7Eu8 {
            let (a, b) = (host_value(ty, code), host_value(ty, code + 1));
            if a.is_finite() && b.is_finite() {
                v.push(((a + b) / 2.0) as f32);
                v.push((-(a + b) / 2.0) as f32);
            }
        }
    }
    v.extend([
        0.0,
        -0.0,
        464.0,
        464.5,
        61440.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    v.push(f32::NAN);
    v
}

fn bits(l: &Literal) -> Vec<u8> {
    l.bytes().to_vec()
}

/// Equal bits, or NaN on both sides (XLA's NaN codes need not be ours).
fn assert_same_f8(ty: ElementType, got: &[u8], want: &[u8], inputs: &[f64], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let both_nan = host_value(ty, g).is_nan() && host_value(ty, w).is_nan();
        assert!(
            g == w || both_nan,
            "{what}: {ty} of {:e}: device {g:#04x} ({}), host {w:#04x} ({})",
            inputs[i],
            host_value(ty, g),
            host_value(ty, w)
        );
    }
}

#[test]
fn convert_from_f32_matches_the_host_bit_for_bit() {
    let x = wide_inputs(17);
    let n = x.len() as i64;
    let xs: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let m = module(&[arr_shape(F32, &[n])], |b, p| {
        Ok(vec![b.convert(p[0], F8E4M3FN)?, b.convert(p[0], F8E5M2)?])
    });
    let out = run(&m, &[lit(&x, &[n])]);
    for (o, ty) in out.iter().zip([F8E4M3FN, F8E5M2]) {
        assert_eq!(o.element_type(), ty);
        let want: Vec<u8> = xs.iter().map(|&v| host_bits(ty, v)).collect();
        assert_same_f8(ty, &bits(o), &want, &xs, "f32 -> f8");
    }
}

#[test]
fn convert_from_bf16_rounds_once() {
    let x: Vec<bf16> = wide_inputs(18).iter().map(|&v| bf16::from_f32(v)).collect();
    let n = x.len() as i64;
    let xs: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
    let m = module(&[arr_shape(Bf16, &[n])], |b, p| {
        Ok(vec![b.convert(p[0], F8E4M3FN)?, b.convert(p[0], F8E5M2)?])
    });
    let out = run(&m, &[lit(&x, &[n])]);
    for (o, ty) in out.iter().zip([F8E4M3FN, F8E5M2]) {
        let want: Vec<u8> = xs.iter().map(|&v| host_bits(ty, v)).collect();
        assert_same_f8(ty, &bits(o), &want, &xs, "bf16 -> f8");
    }
}

#[test]
fn every_code_widens_exactly_from_buffers_and_constants() {
    let codes: Vec<u8> = (0..=255).collect();
    let e4: Vec<F8E4M3FN> = codes.iter().map(|&c| F8E4M3FN::from_bits(c)).collect();
    let e5: Vec<F8E5M2> = codes.iter().map(|&c| F8E5M2::from_bits(c)).collect();
    let m = module(
        &[arr_shape(F8E4M3FN, &[256]), arr_shape(F8E5M2, &[256])],
        |b, p| {
            // The same codes once more as constants, to check the literal lowering.
            let c4 = b.constant_slice(&e4, &[256])?;
            let c5 = b.constant_slice(&e5, &[256])?;
            Ok(vec![
                b.convert(p[0], F32)?,
                b.convert(p[1], F32)?,
                b.convert(c4, F32)?,
                b.convert(c5, F32)?,
            ])
        },
    );
    let out = run(&m, &[lit(&e4, &[256]), lit(&e5, &[256])]);
    for (k, ty) in [F8E4M3FN, F8E5M2, F8E4M3FN, F8E5M2].into_iter().enumerate() {
        let got = f64s(&out[k]);
        for (c, g) in codes.iter().zip(got) {
            let want = host_value(ty, *c);
            assert!(
                g == want || (g.is_nan() && want.is_nan()),
                "{ty} code {c:#04x}: device {g}, host {want} (output {k})"
            );
        }
    }
}

#[test]
fn gradient_through_f8_is_the_cotangent_rounded_to_f8() {
    // loss = sum(c * f32(f8(x))): the convert rules send c back converted to f8 and to f32.
    let mut g = rng(19);
    let x = normal_f32(&mut g, 64);
    let c: Vec<f32> = normal_f32(&mut g, 64).iter().map(|v| v * 37.0).collect();
    for ty in [F8E4M3FN, F8E5M2] {
        let m = module(&[arr_shape(F32, &[64]), arr_shape(F32, &[64])], |b, p| {
            let q = b.convert(b.convert(p[0], ty)?, F32)?;
            let loss = b.reduce_sum(b.mul(q, p[1])?, &[0])?;
            b.grad(loss, &[p[0]])
        });
        let out = run(&m, &[lit(&x, &[64]), lit(&c, &[64])]);
        let want: Vec<f64> = c
            .iter()
            .map(|&v| host_value(ty, host_bits(ty, f64::from(v))))
            .collect();
        assert_eq!(f64s(&out[0]), want, "{ty}");
    }
}

//! FP8 quantization and the FP8 dense matmul on the CPU plugin, against Rust references written
//! here from the recipe: quantization bit for bit, the matmul forward and backward (dots of the
//! f8 tensors with the scales divided out) within the rounding of their results, the amaxes
//! handed back as the scales' gradients, and the lowered HLO in the form XLA:GPU turns into
//! cuBLASLt FP8 GEMMs (tests/fp8_support/pattern.rs), which the older quantize-dequantize form
//! (`fp8_qdq`, also checked here bit for bit with its gradients) is not.
mod common;
#[path = "fp8_support/pattern.rs"]
mod pattern;
use common::check::assert_close;
use common::inputs::*;
use common::*;
use half::bf16;
use hlo::proto::PrimitiveType;
use hlo::ElementType::{self, *};
use hlo::{F8E4M3FN as E4, F8E5M2 as E5};
use pattern::{entry, ty};
use rand::Rng;
use tpu_run::model::fp8::{fp8_matmul, fp8_matmul_as, Fp8Form};

/// Transformer Engine's quantization of one value: f8(clamp(x * scale, -max, max)), the
/// product in f32.
fn quantize(x: f32, scale: f32, ty: ElementType) -> f32 {
    let max = if ty == F8E4M3FN { 448.0 } else { 57344.0 };
    let v = (x * scale).clamp(-max, max);
    if ty == F8E4M3FN {
        E4::from_f32(v).to_f32()
    } else {
        E5::from_f32(v).to_f32()
    }
}

fn f8_bits(ty: ElementType, v: f32) -> u8 {
    if ty == F8E4M3FN {
        E4::from_f32(v).to_bits()
    } else {
        E5::from_f32(v).to_bits()
    }
}

/// The recipe's qdq of one value, in the ops' order: d = bf16(1 / scale);
/// q = f8(clamp(x / d, -max, max)); result bf16(q * d).
fn qdq(x: f32, scale: f32, ty: ElementType) -> bf16 {
    let d = bf16::from_f32(1.0 / scale).to_f32();
    let max = if ty == F8E4M3FN { 448.0 } else { 57344.0 };
    let v = (x / d).clamp(-max, max);
    let q = if ty == F8E4M3FN {
        E4::from_f32(v).to_f32()
    } else {
        E5::from_f32(v).to_f32()
    };
    bf16::from_f32(q * d)
}

fn amax(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// Seeded values of a few magnitudes (some clip at the scale used), plus specials.
fn spread(seed: u64, n: usize) -> Vec<f32> {
    let mut g = rng(seed);
    let mut v: Vec<f32> = (0..n)
        .map(|_| {
            let e: i32 = g.gen_range(-12..6);
            let m: f32 = g.gen_range(-2.0..2.0);
            m * 2f32.powi(e)
        })
        .collect();
    v.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
    v
}

fn bf16_bits(l: &hlo::Literal) -> Vec<u16> {
    vals::<bf16>(l).iter().map(|v| v.to_bits()).collect()
}

/// The bit-exact cases: an f8 type and a scale each, on random values spread over the type's
/// range, given as f32 and as bf16.
const CASES: [(u64, ElementType, f32); 4] = [
    (1, F8E4M3FN, 448.0 / 3.0),
    (2, F8E4M3FN, 1.0),
    (3, F8E5M2, 57344.0 / 7.5),
    (4, F8E5M2, 3.3e-3),
];

/// For each case, runs `op(builder, x, scale, f8 type)` on the f32 and the bf16 input and checks
/// each output element with `check(output, element index, input value as f32, scale, type)`.
fn each_case(
    op: impl Fn(&hlo::Builder, hlo::Value, hlo::Value, ElementType) -> Result<hlo::Value, hlo::HloError>,
    check: impl Fn(&hlo::Literal, &[f32], f32, ElementType),
) {
    for (seed, ty, scale) in CASES {
        let x = spread(seed, 2000);
        let n = x.len() as i64;
        let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        let m = module(
            &[
                arr_shape(F32, &[n]),
                arr_shape(Bf16, &[n]),
                arr_shape(F32, &[]),
            ],
            |b, p| Ok(vec![op(b, p[0], p[2], ty)?, op(b, p[1], p[2], ty)?]),
        );
        let out = run(&m, &[lit(&x, &[n]), lit(&xb, &[n]), lit(&[scale], &[])]);
        let widened: Vec<f32> = xb.iter().map(|v| v.to_f32()).collect();
        for (o, input) in out.iter().zip([&x, &widened]) {
            check(o, input, scale, ty);
        }
    }
}

#[test]
fn quantize_matches_the_reference_bit_for_bit() {
    each_case(
        |b, x, scale, ty| b.fp8_quantize(x, scale, ty),
        |o, input, scale, ty| {
            let nan = |b: u8| {
                if ty == F8E4M3FN {
                    E4::from_bits(b).is_nan()
                } else {
                    E5::from_bits(b).is_nan()
                }
            };
            for (i, &g) in o.bytes().iter().enumerate() {
                let want = f8_bits(ty, quantize(input[i], scale, ty));
                assert!(
                    g == want || (nan(g) && nan(want)),
                    "{ty} scale {scale}: quantize({:e}) = {g:#04x}, reference {want:#04x}",
                    input[i]
                );
            }
        },
    );
}

#[test]
fn qdq_matches_the_reference_bit_for_bit() {
    each_case(
        |b, x, scale, ty| b.fp8_qdq(x, scale, ty, Bf16),
        |o, input, scale, ty| {
            for (i, g) in bf16_bits(o).iter().enumerate() {
                let w = qdq(input[i], scale, ty).to_bits();
                let nan = bf16::from_bits(*g).is_nan() && bf16::from_bits(w).is_nan();
                assert!(
                    *g == w || nan,
                    "{ty} scale {scale}: qdq({:e}) = {}, reference {}",
                    input[i],
                    bf16::from_bits(*g),
                    bf16::from_bits(w)
                );
            }
        },
    );
}

#[test]
fn qdq_gradients_pass_straight_through_and_quantize_the_output_gradient() {
    let mut g = rng(5);
    let n = 256;
    let x: Vec<f32> = normal_f32(&mut g, n).iter().map(|v| v * 3.0).collect();
    let c: Vec<bf16> = normal(&mut g, n)
        .iter()
        .map(|v| bf16::from_f64(v * 1e-3))
        .collect();
    let (sx, sg) = (448.0 / amax(&x), 57344.0 / 4e-3f32);
    // loss = sum(c * in_qdq(x)) + sum(c * out_qdq(y)), y = bf16(x).
    let m = module(
        &[
            arr_shape(F32, &[n as i64]),
            arr_shape(Bf16, &[n as i64]),
            arr_shape(F32, &[]),
            arr_shape(F32, &[]),
        ],
        |b, p| {
            let (x, c, sx, sg) = (p[0], p[1], p[2], p[3]);
            let xq = b.fp8_in_qdq(x, sx, F8E4M3FN, Bf16)?;
            let y = b.fp8_out_qdq(b.convert(x, Bf16)?, sg, F8E5M2)?;
            let terms = b.add(b.mul(xq, c)?, b.mul(y, c)?)?;
            let loss = b.reduce_sum(b.convert(terms, F32)?, &[0])?;
            b.grad(loss, &[x, sx, sg])
        },
    );
    let out = run(
        &m,
        &[
            lit(&x, &[n as i64]),
            lit(&c, &[n as i64]),
            lit(&[sx], &[]),
            lit(&[sg], &[]),
        ],
    );
    // dx = c (straight through in_qdq) + f32(qdq_e5m2(c)) (through out_qdq, then the convert).
    // XLA may keep the dequantized product in f32 inside a fusion (excess precision) rather than
    // round it to bf16 as a materialized result is: half a bf16 ulp of slack, far below the
    // e5m2 steps the quantization makes (2^-3 relative).
    let want: Vec<f64> = c
        .iter()
        .map(|v| f64::from(v.to_f32()) + f64::from(qdq(v.to_f32(), sg, F8E5M2).to_f32()))
        .collect();
    assert_close(&f64s(&out[0]), &want, 0.0, 2f64.powi(-9), "dx");
    let unquantized: Vec<f64> = c.iter().map(|v| 2.0 * f64::from(v.to_f32())).collect();
    let worst = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) / y).abs())
            .fold(0.0, f64::max)
    };
    assert!(
        worst(&f64s(&out[0]), &unquantized) > 2f64.powi(-6),
        "the e5m2 step ran"
    );
    assert_eq!(f64s(&out[1]), vec![f64::from(amax(&x))], "x's amax");
    let c32: Vec<f32> = c.iter().map(|v| v.to_f32()).collect();
    assert_eq!(
        f64s(&out[2]),
        vec![f64::from(amax(&c32))],
        "the gradient's amax"
    );
}

/// `sum_k a[i,k] b[k,j]` in f64, with `sum_k |a b|` for the tolerance.
fn matmul_ref(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0.0; m * n];
    let mut mag = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for t in 0..k {
                out[i * n + j] += a[i * k + t] * b[t * n + j];
                mag[i * n + j] += (a[i * k + t] * b[t * n + j]).abs();
            }
        }
    }
    (out, mag)
}

fn transpose(a: &[f64], r: usize, c: usize) -> Vec<f64> {
    (0..c * r).map(|i| a[(i % r) * c + i / r]).collect()
}

/// Elementwise `|got - want| <= rel (|want| + sum|terms|)`.
fn assert_matmul(got: &[f64], want: &[f64], mag: &[f64], rel: f64, what: &str) {
    for (i, ((g, w), s)) in got.iter().zip(want).zip(mag).enumerate() {
        let tol = rel * (w.abs() + s);
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w} (tol {tol})"
        );
    }
}

/// The three dots of an FP8 matmul read f8 tensors exactly, so the references are exact sums of
/// products of the quantized values, divided by the two scales. Tolerances: y and dx are bf16,
/// one rounding of the result (2^-9) over f32 accumulation (2^-24 a term) and the scale
/// division, so 2^-8 of |want| + sum|terms|; dw stays f32 (the master weight's type), so
/// 2^-16 of the same, still far below the e5m2 steps (2^-3) the checks below tell apart.
#[test]
fn fp8_matmul_forward_and_backward_match_the_reference() {
    let (bsz, seq, k, n) = (2usize, 8usize, 48usize, 32usize);
    let rows = bsz * seq;
    let mut g = rng(6);
    let x: Vec<bf16> = normal(&mut g, rows * k)
        .iter()
        .map(|&v| bf16::from_f64(v))
        .collect();
    let w: Vec<f32> = normal_f32(&mut g, k * n).iter().map(|v| v * 0.05).collect();
    let c: Vec<bf16> = normal(&mut g, rows * n)
        .iter()
        .map(|&v| bf16::from_f64(v * 1e-2))
        .collect();
    let x32: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
    let c32: Vec<f32> = c.iter().map(|v| v.to_f32()).collect();
    // Scales as delayed scaling would set them from a history near these amaxes (x's clips).
    let (sx, sw, sg) = (
        448.0 / (0.8 * amax(&x32)),
        448.0 / amax(&w),
        57344.0 / (1.3 * amax(&c32)),
    );
    for form in [Fp8Form::Direct, Fp8Form::DirectBf16] {
        let m = module(
            &[
                arr_shape(Bf16, &[bsz as i64, seq as i64, k as i64]),
                arr_shape(F32, &[k as i64, n as i64]),
                arr_shape(F32, &[]),
                arr_shape(F32, &[]),
                arr_shape(F32, &[]),
                arr_shape(Bf16, &[bsz as i64, seq as i64, n as i64]),
            ],
            |b, p| {
                let y = fp8_matmul_as(b, p[0], p[1], [p[2], p[3], p[4]], form)
                    .map_err(|e| hlo::HloError::Literal(e.to_string()))?;
                let loss = b.reduce_sum(b.convert(b.mul(y, p[5])?, F32)?, &[0, 1, 2])?;
                let mut outs = vec![y];
                outs.extend(b.grad(loss, &[p[0], p[1], p[2], p[3], p[4]])?);
                Ok(outs)
            },
        );
        let dims3 = |d: usize| vec![bsz as i64, seq as i64, d as i64];
        let out = run(
            &m,
            &[
                lit(&x, &dims3(k)),
                lit(&w, &[k as i64, n as i64]),
                lit(&[sx], &[]),
                lit(&[sw], &[]),
                lit(&[sg], &[]),
                lit(&c, &dims3(n)),
            ],
        );
        // The bf16-accumulating form rounds the dot and the scale product to bf16 too.
        let (rel_y, rel_dw) = match form {
            Fp8Form::DirectBf16 => (2f64.powi(-7), 2f64.powi(-7)),
            _ => (2f64.powi(-8), 2f64.powi(-16)),
        };
        let q = |v: &[f32], s: f32, t: ElementType| -> Vec<f64> {
            v.iter().map(|&e| f64::from(quantize(e, s, t))).collect()
        };
        let (xq, wq, gq) = (
            q(&x32, sx, F8E4M3FN),
            q(&w, sw, F8E4M3FN),
            q(&c32, sg, F8E5M2),
        );
        let unscale = |v: Vec<f64>, s: f64| -> Vec<f64> { v.iter().map(|e| e / s).collect() };
        let (sx, sw, sg) = (f64::from(sx), f64::from(sw), f64::from(sg));
        let (y, ymag) = matmul_ref(&xq, &wq, rows, k, n);
        let (y, ymag) = (unscale(y, sx * sw), unscale(ymag, sx * sw));
        assert_matmul(&f64s(&out[0]), &y, &ymag, rel_y, "y");
        let off = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
        };
        // The e4m3 steps are in the graph: the unquantized product is much farther off.
        let x64: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
        let w64: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        let (y_plain, _) = matmul_ref(&x64, &w64, rows, k, n);
        assert!(off(&f64s(&out[0]), &y) * 4.0 < off(&f64s(&out[0]), &y_plain));
        // dx = gq wq^T (then straight through to x), dw = xq^T gq, each unscaled.
        let (dx, dxmag) = matmul_ref(&gq, &transpose(&wq, k, n), rows, n, k);
        let (dx, dxmag) = (unscale(dx, sg * sw), unscale(dxmag, sg * sw));
        assert_matmul(&f64s(&out[1]), &dx, &dxmag, rel_y, "dx");
        let (dw, dwmag) = matmul_ref(&transpose(&xq, rows, k), &gq, k, rows, n);
        let (dw, dwmag) = (unscale(dw, sx * sg), unscale(dwmag, sx * sg));
        assert_matmul(&f64s(&out[2]), &dw, &dwmag, rel_dw, "dw");
        // The scales' "gradients" are the amaxes of x, w and the output gradient.
        assert_eq!(f64s(&out[3]), vec![f64::from(amax(&x32))]);
        assert_eq!(f64s(&out[4]), vec![f64::from(amax(&w))]);
        assert_eq!(f64s(&out[5]), vec![f64::from(amax(&c32))]);
        // Without quantizing the gradient, dw would be visibly off: the e5m2 step is in the
        // graph.
        let c64: Vec<f64> = c32.iter().map(|&v| f64::from(v)).collect();
        let (dw_plain, _) = matmul_ref(&transpose(&xq, rows, k), &c64, k, rows, n);
        let dw_plain = unscale(dw_plain, sx);
        assert!(off(&f64s(&out[2]), &dw) * 4.0 < off(&f64s(&out[2]), &dw_plain));
    }
}

/// The lowered matmul (forward and backward) of a form, sorted by tests/fp8_support/pattern.rs.
fn lowered_dots(form: Fp8Form) -> (pattern::Dots, hlo::proto::HloModuleProto) {
    let m = module(
        &[
            arr_shape(Bf16, &[4, 8, 64]),
            arr_shape(F32, &[64, 32]),
            arr_shape(F32, &[]),
            arr_shape(F32, &[]),
            arr_shape(F32, &[]),
        ],
        |b, p| {
            let y = fp8_matmul_as(b, p[0], p[1], [p[2], p[3], p[4]], form)
                .map_err(|e| hlo::HloError::Literal(e.to_string()))?;
            let loss = b.reduce_sum(b.convert(y, F32)?, &[0, 1, 2])?;
            b.grad(loss, &[p[0], p[1]])
        },
    );
    let p = hlo::lower::to_proto(&m).unwrap();
    (pattern::dots(&p), p)
}

#[test]
fn lowered_fp8_matmul_has_the_fp8_gemm_form() {
    let (e4, e5) = (PrimitiveType::F8e4m3fn as i32, PrimitiveType::F8e5m2 as i32);
    for form in [Fp8Form::Direct, Fp8Form::DirectBf16] {
        let (dots, p) = lowered_dots(form);
        assert!(dots.broken.is_empty(), "{form:?}: {:#?}", dots.broken);
        assert_eq!(dots.other, 0);
        // Forward e4m3 x e4m3; backward dx = g w^T (e5m2 x e4m3), dw = x^T g (e4m3 x e5m2).
        let mut want = vec![(e4, e4), (e5, e4), (e4, e5)];
        want.sort();
        assert_eq!(dots.fp8, want, "{form:?}");
        // Every quantization saturates: convert-to-f8 of a clamp at the format's bounds.
        let ins = entry(&p);
        for c in ins
            .values()
            .filter(|i| i.opcode == "convert" && [e4, e5].contains(&ty(i)))
        {
            let clamp = &ins[&c.operand_ids[0]];
            assert_eq!(clamp.opcode, "clamp", "{}", c.name);
            let hi = &ins[&ins[&clamp.operand_ids[2]].operand_ids[0]];
            let bound = hi.literal.as_ref().unwrap().f32s[0];
            assert_eq!(bound, if ty(c) == e4 { 448.0 } else { 57344.0 });
        }
        // No f8 value is ever widened again (what SimplifyFPConversions would fold away).
        for i in ins.values().filter(|i| i.opcode == "convert") {
            assert!(
                !pattern::is_f8(ty(&ins[&i.operand_ids[0]])),
                "{form:?}: {} widens an f8 value",
                i.name
            );
        }
    }
}

/// The pattern check rejects flax's older quantize-dequantize form, whose dots XLA:GPU left in
/// bf16 (every one of BERT-base's 216, measured): each dot is computed from f8 values but reads
/// dequantized ones.
#[test]
fn the_quantize_dequantize_form_is_not_an_fp8_gemm() {
    let (dots, _) = lowered_dots(Fp8Form::Qdq);
    assert!(dots.fp8.is_empty(), "{:?}", dots.fp8);
    assert_eq!(dots.broken.len(), 3, "{:#?}", dots.broken);
    for (name, why) in &dots.broken {
        assert!(why.contains("SimplifyFPConversions"), "{name}: {why}");
    }
}

#[test]
fn the_model_matmul_defaults_to_the_direct_form() {
    // fp8_matmul reads the hidden TPU_RUN_FP8_FORM; unset, as in every test, it is `Direct`.
    assert_eq!(Fp8Form::from_env().unwrap(), Fp8Form::Direct);
    let m = module(
        &[
            arr_shape(Bf16, &[16, 32]),
            arr_shape(F32, &[32, 16]),
            arr_shape(F32, &[]),
            arr_shape(F32, &[]),
            arr_shape(F32, &[]),
        ],
        |b, p| {
            Ok(vec![fp8_matmul(b, p[0], p[1], [p[2], p[3], p[4]])
                .map_err(|e| hlo::HloError::Literal(e.to_string()))?])
        },
    );
    let d = pattern::dots(&hlo::lower::to_proto(&m).unwrap());
    assert_eq!(d.fp8.len(), 1);
    assert!(d.broken.is_empty());
}

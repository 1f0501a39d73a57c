//! FP8 quantize-dequantize and the FP8 dense matmul on the CPU plugin, against Rust references
//! written here from the recipe: qdq bit for bit, its straight-through and e5m2 gradients, the
//! amaxes handed back as the scales' gradients, the matmul forward and backward within the
//! rounding of their bf16 results, and the lowered HLO in the form XLA:GPU's FP8 GEMM rewriter
//! matches (every dot fed by `multiply(convert(f8), broadcast(scale))`).
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
use pattern::{dequantized_from, entry, ty};
use rand::Rng;
use tpu_run::model::fp8::fp8_matmul;

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

#[test]
fn qdq_matches_the_reference_bit_for_bit() {
    for (seed, ty, scale) in [
        (1, F8E4M3FN, 448.0 / 3.0f32),
        (2, F8E4M3FN, 1.0),
        (3, F8E5M2, 57344.0 / 7.5),
        (4, F8E5M2, 3.3e-3),
    ] {
        let x = spread(seed, 2000);
        let n = x.len() as i64;
        let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        let m = module(
            &[
                arr_shape(F32, &[n]),
                arr_shape(Bf16, &[n]),
                arr_shape(F32, &[]),
            ],
            |b, p| {
                Ok(vec![
                    b.fp8_qdq(p[0], p[2], ty, Bf16)?,
                    b.fp8_qdq(p[1], p[2], ty, Bf16)?,
                ])
            },
        );
        let out = run(&m, &[lit(&x, &[n]), lit(&xb, &[n]), lit(&[scale], &[])]);
        for (o, input) in out
            .iter()
            .zip([x.clone(), xb.iter().map(|v| v.to_f32()).collect::<Vec<_>>()])
        {
            let want: Vec<u16> = input.iter().map(|&v| qdq(v, scale, ty).to_bits()).collect();
            let got = bf16_bits(o);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let nan = bf16::from_bits(*g).is_nan() && bf16::from_bits(*w).is_nan();
                assert!(
                    g == w || nan,
                    "{ty} scale {scale}: qdq({:e}) = {}, reference {}",
                    input[i],
                    bf16::from_bits(*g),
                    bf16::from_bits(*w)
                );
            }
        }
    }
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

/// Elementwise `|got - want| <= 2^-8 (|want| + sum|terms|)`: one bf16 rounding of the result,
/// and of each dequantized operand, which XLA may or may not round to bf16 inside a fusion (f32
/// accumulation is far finer).
fn assert_matmul(got: &[f64], want: &[f64], mag: &[f64], what: &str) {
    for (i, ((g, w), s)) in got.iter().zip(want).zip(mag).enumerate() {
        let tol = 2f64.powi(-8) * (w.abs() + s);
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w} (tol {tol})"
        );
    }
}

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
    // Scales as delayed scaling would set them from a history near these amaxes.
    let (sx, sw, sg) = (
        448.0 / (1.3 * amax(&x32)),
        448.0 / amax(&w),
        57344.0 / (0.8 * amax(&c32)),
    );
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
            let y = fp8_matmul(b, p[0], p[1], [p[2], p[3], p[4]])
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
    let f = |v: bf16| f64::from(v.to_f32());
    let xq: Vec<f64> = x32.iter().map(|&v| f(qdq(v, sx, F8E4M3FN))).collect();
    let wq: Vec<f64> = w.iter().map(|&v| f(qdq(v, sw, F8E4M3FN))).collect();
    let gq: Vec<f64> = c32.iter().map(|&v| f(qdq(v, sg, F8E5M2))).collect();
    let (y, ymag) = matmul_ref(&xq, &wq, rows, k, n);
    assert_matmul(&f64s(&out[0]), &y, &ymag, "y");
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
    // dx = gq wq^T (then straight through to x), dw = xq^T gq.
    let (dx, dxmag) = matmul_ref(&gq, &transpose(&wq, k, n), rows, n, k);
    assert_matmul(&f64s(&out[1]), &dx, &dxmag, "dx");
    let (dw, dwmag) = matmul_ref(&transpose(&xq, rows, k), &gq, k, rows, n);
    assert_matmul(&f64s(&out[2]), &dw, &dwmag, "dw");
    // The scales' "gradients" are the amaxes of x, w and the output gradient.
    assert_eq!(f64s(&out[3]), vec![f64::from(amax(&x32))]);
    assert_eq!(f64s(&out[4]), vec![f64::from(amax(&w))]);
    assert_eq!(f64s(&out[5]), vec![f64::from(amax(&c32))]);
    // Without quantizing the gradient, dw would be visibly off: the e5m2 step is in the graph.
    let c64: Vec<f64> = c32.iter().map(|&v| f64::from(v)).collect();
    let (dw_plain, _) = matmul_ref(&transpose(&xq, rows, k), &c64, k, rows, n);
    assert!(off(&f64s(&out[2]), &dw) * 4.0 < off(&f64s(&out[2]), &dw_plain));
}

#[test]
fn lowered_fp8_matmul_has_the_gemm_rewriter_pattern() {
    let m = module(
        &[
            arr_shape(Bf16, &[4, 8, 64]),
            arr_shape(F32, &[64, 32]),
            arr_shape(F32, &[]),
            arr_shape(F32, &[]),
            arr_shape(F32, &[]),
        ],
        |b, p| {
            let y = fp8_matmul(b, p[0], p[1], [p[2], p[3], p[4]])
                .map_err(|e| hlo::HloError::Literal(e.to_string()))?;
            let loss = b.reduce_sum(b.convert(y, F32)?, &[0, 1, 2])?;
            b.grad(loss, &[p[0], p[1]])
        },
    );
    let p = hlo::lower::to_proto(&m).unwrap();
    let ins = entry(&p);
    let (e4, e5) = (PrimitiveType::F8e4m3fn as i32, PrimitiveType::F8e5m2 as i32);
    let mut dots: Vec<(i32, i32)> = ins
        .values()
        .filter(|i| i.opcode == "dot")
        .map(|d| {
            let out = ty(d);
            assert_eq!(out, PrimitiveType::Bf16 as i32, "the GEMM writes bf16");
            let dn = d.dot_dimension_numbers.as_ref().unwrap();
            assert_eq!(
                (
                    dn.lhs_contracting_dimensions.len(),
                    dn.lhs_batch_dimensions.len()
                ),
                (1, 0),
                "one contracting, one free dim per operand"
            );
            for &o in &d.operand_ids {
                let rank = ins[&o].shape.as_ref().unwrap().dimensions.len();
                assert_eq!(rank, 2, "2-D operands");
            }
            let q = |k: usize| {
                dequantized_from(&ins, d.operand_ids[k])
                    .unwrap_or_else(|| panic!("dot {} operand {k} is not a dequantized f8", d.name))
            };
            (q(0), q(1))
        })
        .collect();
    dots.sort();
    // Forward e4m3 x e4m3; backward dx and dw each e5m2 (gradient) x e4m3.
    let mut want = vec![(e4, e4), (e5, e4), (e5, e4)];
    want.sort();
    assert_eq!(dots, want);
    // Every quantization saturates: convert-to-f8 of a clamp at the format's bounds.
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
}

//! Elementwise ops on the CPU plugin against f64 / exact Rust references: unary, binary, compare,
//! select, clamp, integer arithmetic and bit ops, convert and bitcast-convert.
mod common;
use common::check::{assert_close, assert_exact};
use common::inputs::*;
use common::reference::{logistic, round_afz, round_even, sign};
use common::*;
use half::{bf16, f16};
use hlo::ir::{BinaryOp, CompareDir, UnaryOp};
use hlo::ElementType::{self, *};

/// (atol, rtol) for results of type `ty` against an f64 reference computed from the same
/// (already rounded) inputs: a few ulps of the type.
fn tol(ty: ElementType) -> (f64, f64) {
    match ty {
        F64 => (1e-12, 1e-12),
        F32 => (2e-6, 2e-6),
        F16 => (1e-3, 1e-3),
        Bf16 => (1e-2, 1e-2),
        _ => (0.0, 0.0),
    }
}

/// (op, needs a positive input, f64 reference).
type UnaryCase = (UnaryOp, bool, fn(f64) -> f64);
type BinaryCase = (BinaryOp, fn(f64, f64) -> f64);
type CompareCase = (CompareDir, fn(f64, f64) -> bool);

const DIMS: [i64; 2] = [4, 8];
const N: usize = 32;

/// Unary float ops, each with the input domain it needs and its f64 reference.
fn unary_cases() -> Vec<UnaryCase> {
    vec![
        (UnaryOp::Neg, false, |x| -x),
        (UnaryOp::Abs, false, f64::abs),
        (UnaryOp::Sign, false, sign),
        (UnaryOp::Exp, false, f64::exp),
        (UnaryOp::Expm1, false, f64::exp_m1),
        (UnaryOp::Log, true, f64::ln),
        (UnaryOp::Log1p, true, f64::ln_1p),
        (UnaryOp::Tanh, false, f64::tanh),
        (UnaryOp::Logistic, false, logistic),
        (UnaryOp::Sqrt, true, f64::sqrt),
        (UnaryOp::Rsqrt, true, |x| 1.0 / x.sqrt()),
        (UnaryOp::Erf, false, common::reference::erf),
        (UnaryOp::Floor, false, f64::floor),
        (UnaryOp::Ceil, false, f64::ceil),
        (UnaryOp::Round, false, round_afz),
        (UnaryOp::RoundEven, false, round_even),
        (UnaryOp::Cos, false, f64::cos),
        (UnaryOp::Sin, false, f64::sin),
        (UnaryOp::Copy, false, |x| x),
    ]
}

/// Signed inputs spread over [-3, 3] with exact halves (to tell the two roundings apart), and
/// positive inputs in [0.05, 4].
fn float_inputs(seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut r = rng(seed);
    let mut x: Vec<f64> = uniform(&mut r, N, -3.0, 3.0);
    x[..6].copy_from_slice(&[0.5, -0.5, 1.5, 2.5, -2.5, 0.0]);
    let pos = uniform(&mut r, N, 0.05, 4.0);
    (x, pos)
}

fn check_unary(ty: ElementType, cases: &[UnaryCase], seed: u64) {
    let (x, pos) = float_inputs(seed);
    let (xl, pl) = (lit_as(ty, &x, &DIMS), lit_as(ty, &pos, &DIMS));
    let shape = arr_shape(ty, &DIMS);
    let m = module(&[shape.clone(), shape], |b, p| {
        cases
            .iter()
            .map(|&(op, positive, _)| b.unary(op, if positive { p[1] } else { p[0] }))
            .collect()
    });
    let out = run(&m, &[xl.clone(), pl.clone()]);
    let (xv, pv) = (xl.to_f64_vec(), pl.to_f64_vec());
    let (atol, rtol) = tol(ty);
    for (o, &(op, positive, f)) in out.iter().zip(cases) {
        assert_eq!(o.element_type(), ty);
        let src = if positive { &pv } else { &xv };
        let want: Vec<f64> = src.iter().map(|&v| f(v)).collect();
        assert_close(
            &f64s(o),
            &want,
            atol,
            rtol,
            &format!("{ty} {}", op.opcode()),
        );
    }
}

#[test]
fn unary_f32() {
    check_unary(F32, &unary_cases(), 1);
}

#[test]
fn unary_f64() {
    check_unary(F64, &unary_cases(), 2);
}

/// A representative subset on the 16-bit floats.
fn half_unary_cases() -> Vec<UnaryCase> {
    unary_cases()
        .into_iter()
        .filter(|(op, _, _)| {
            matches!(
                op,
                UnaryOp::Neg
                    | UnaryOp::Abs
                    | UnaryOp::Exp
                    | UnaryOp::Log
                    | UnaryOp::Tanh
                    | UnaryOp::Logistic
                    | UnaryOp::Sqrt
                    | UnaryOp::Rsqrt
                    | UnaryOp::Erf
                    | UnaryOp::Floor
                    | UnaryOp::RoundEven
            )
        })
        .collect()
}

#[test]
fn unary_bf16() {
    check_unary(Bf16, &half_unary_cases(), 3);
}

#[test]
fn unary_f16() {
    check_unary(F16, &half_unary_cases(), 4);
}

#[test]
fn is_finite_and_not() {
    let x = [
        1.0f32,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        0.0,
        -3.5,
    ];
    let p = [true, false, true, true, false, false];
    let m = module(&[arr_shape(F32, &[6]), arr_shape(Pred, &[6])], |b, a| {
        Ok(vec![b.is_finite(a[0])?, b.not(a[1])?])
    });
    let out = run(&m, &[lit(&x, &[6]), lit(&p, &[6])]);
    let want: Vec<bool> = x.iter().map(|v| v.is_finite()).collect();
    assert_exact(&vals::<bool>(&out[0]), &want, "is-finite");
    let want: Vec<bool> = p.iter().map(|v| !v).collect();
    assert_exact(&vals::<bool>(&out[1]), &want, "not pred");
}

fn binary_cases() -> Vec<BinaryCase> {
    vec![
        (BinaryOp::Add, |a, b| a + b),
        (BinaryOp::Sub, |a, b| a - b),
        (BinaryOp::Mul, |a, b| a * b),
        (BinaryOp::Div, |a, b| a / b),
        // C fmod: the result has the dividend's sign, as Rust's `%` on floats.
        (BinaryOp::Rem, |a, b| a % b),
        (BinaryOp::Max, f64::max),
        (BinaryOp::Min, f64::min),
        (BinaryOp::Pow, f64::powf),
        (BinaryOp::Atan2, f64::atan2),
    ]
}

fn check_binary(ty: ElementType, cases: &[BinaryCase], seed: u64) {
    let mut r = rng(seed);
    // x in [0.25, 3] (pow needs a positive base), y of either sign away from zero (div, rem).
    let x = uniform(&mut r, N, 0.25, 3.0);
    let mut y = uniform(&mut r, N, 0.3, 2.0);
    for (i, v) in y.iter_mut().enumerate() {
        if i % 3 == 0 {
            *v = -*v;
        }
    }
    let mut xs = x.clone();
    // Negative dividends for rem/atan2/max too: a second operand set with signs flipped.
    for (i, v) in xs.iter_mut().enumerate() {
        if i % 2 == 1 {
            *v = -*v;
        }
    }
    let (pl, sl, yl) = (
        lit_as(ty, &x, &DIMS),
        lit_as(ty, &xs, &DIMS),
        lit_as(ty, &y, &DIMS),
    );
    let shape = arr_shape(ty, &DIMS);
    let m = module(&[shape.clone(), shape.clone(), shape], |b, p| {
        cases
            .iter()
            .map(|&(op, _)| {
                let lhs = if op == BinaryOp::Pow { p[0] } else { p[1] };
                b.binary(op, lhs, p[2])
            })
            .collect()
    });
    let out = run(&m, &[pl.clone(), sl.clone(), yl.clone()]);
    let (pv, sv, yv) = (pl.to_f64_vec(), sl.to_f64_vec(), yl.to_f64_vec());
    let (atol, rtol) = tol(ty);
    for (o, &(op, f)) in out.iter().zip(cases) {
        let lhs = if op == BinaryOp::Pow { &pv } else { &sv };
        let want: Vec<f64> = lhs.iter().zip(&yv).map(|(&a, &b)| f(a, b)).collect();
        assert_close(
            &f64s(o),
            &want,
            atol,
            rtol,
            &format!("{ty} {}", op.opcode()),
        );
    }
}

#[test]
fn binary_f32() {
    check_binary(F32, &binary_cases(), 11);
}

#[test]
fn binary_f64() {
    check_binary(F64, &binary_cases(), 12);
}

#[test]
fn binary_bf16_f16() {
    let subset: Vec<_> = binary_cases()
        .into_iter()
        .filter(|(op, _)| {
            matches!(
                op,
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Max
            )
        })
        .collect();
    check_binary(Bf16, &subset, 13);
    check_binary(F16, &subset, 14);
}

#[test]
fn binary_scalar_operand_broadcasts() {
    let mut r = rng(15);
    let x = normal_f32(&mut r, N);
    let m = module(&[arr_shape(F32, &DIMS)], |b, p| {
        let two = b.scalar(2.5f32)?;
        Ok(vec![b.mul(p[0], two)?, b.sub(two, p[0])?])
    });
    let out = run(&m, &[lit(&x, &DIMS)]);
    let want: Vec<f64> = x.iter().map(|&v| f64::from(v) * 2.5).collect();
    assert_close(&f64s(&out[0]), &want, 1e-6, 1e-6, "x * 2.5");
    let want: Vec<f64> = x.iter().map(|&v| 2.5 - f64::from(v)).collect();
    assert_close(&f64s(&out[1]), &want, 1e-6, 1e-6, "2.5 - x");
}

const DIRS: [CompareCase; 6] = [
    (CompareDir::Eq, |a, b| a == b),
    (CompareDir::Ne, |a, b| a != b),
    (CompareDir::Lt, |a, b| a < b),
    (CompareDir::Le, |a, b| a <= b),
    (CompareDir::Gt, |a, b| a > b),
    (CompareDir::Ge, |a, b| a >= b),
];

/// Every comparison direction on `x` and `y` (of type `ty`), checked against f64 comparisons.
fn check_compare(ty: ElementType, x: &[f64], y: &[f64]) {
    let dims = [x.len() as i64];
    let (xl, yl) = (lit_as(ty, x, &dims), lit_as(ty, y, &dims));
    let shape = arr_shape(ty, &dims);
    let m = module(&[shape.clone(), shape], |b, p| {
        DIRS.iter()
            .map(|&(d, _)| b.compare(d, p[0], p[1]))
            .collect()
    });
    let out = run(&m, &[xl.clone(), yl.clone()]);
    let (xv, yv) = (xl.to_f64_vec(), yl.to_f64_vec());
    for (o, (d, f)) in out.iter().zip(DIRS) {
        let want: Vec<bool> = xv.iter().zip(&yv).map(|(&a, &b)| f(a, b)).collect();
        assert_exact(
            &vals::<bool>(o),
            &want,
            &format!("{ty} compare {}", d.name()),
        );
    }
}

#[test]
fn compare_all_types() {
    let mut r = rng(21);
    // Half of y equals x, so EQ/LE/GE see ties.
    let x = uniform(&mut r, 16, -4.0, 4.0);
    let mut y = uniform(&mut r, 16, -4.0, 4.0);
    y[..8].copy_from_slice(&x[..8]);
    for ty in [F32, F64, Bf16, F16] {
        check_compare(ty, &x, &y);
    }
    let xi: Vec<f64> = ints(&mut r, 16, -100, 100)
        .into_iter()
        .map(|v| v as f64)
        .collect();
    let mut yi: Vec<f64> = ints(&mut r, 16, -100, 100)
        .into_iter()
        .map(|v| v as f64)
        .collect();
    yi[..5].copy_from_slice(&xi[..5]);
    for ty in [S32, S64, S8] {
        check_compare(ty, &xi, &yi);
    }
    let xu: Vec<f64> = xi.iter().map(|v| v.abs()).collect();
    let yu: Vec<f64> = yi.iter().map(|v| v.abs()).collect();
    for ty in [U32, U8] {
        check_compare(ty, &xu, &yu);
    }
    // Unsigned compare must not be signed: 0xFFFFFFFF > 1.
    check_compare(U32, &[4294967295.0, 1.0], &[1.0, 4294967295.0]);
}

#[test]
fn compare_float_nan_and_inf() {
    let x = [f64::NAN, 1.0, f64::INFINITY, f64::NEG_INFINITY, -0.0];
    let y = [f64::NAN, f64::NAN, f64::INFINITY, 0.0, 0.0];
    check_compare(F32, &x, &y);
}

#[test]
fn select_and_clamp() {
    let mut r = rng(31);
    let x = normal_f32(&mut r, N);
    let y = normal_f32(&mut r, N);
    let pred: Vec<bool> = x.iter().zip(&y).map(|(a, b)| a > b).collect();
    let lo = uniform_f32(&mut r, N, -1.0, 0.0);
    let m = module(
        &[
            arr_shape(Pred, &DIMS),
            arr_shape(F32, &DIMS),
            arr_shape(F32, &DIMS),
            arr_shape(F32, &DIMS),
        ],
        |b, p| {
            let hi = b.scalar(0.5f32)?;
            let scalar_pred = b.scalar(false)?;
            Ok(vec![
                b.select(p[0], p[1], p[2])?,
                b.clamp(p[3], p[1], b.broadcast_in_dim(hi, &DIMS, &[])?)?,
                b.select(scalar_pred, p[1], p[2])?,
                b.clamp(b.scalar(-0.5f32)?, p[2], hi)?,
            ])
        },
    );
    let out = run(
        &m,
        &[
            lit(&pred, &DIMS),
            lit(&x, &DIMS),
            lit(&y, &DIMS),
            lit(&lo, &DIMS),
        ],
    );
    let want: Vec<f32> = (0..N).map(|i| if pred[i] { x[i] } else { y[i] }).collect();
    assert_exact(&vals::<f32>(&out[0]), &want, "select");
    let want: Vec<f32> = (0..N).map(|i| x[i].max(lo[i]).min(0.5)).collect();
    assert_exact(&vals::<f32>(&out[1]), &want, "clamp with array lo");
    assert_exact(&vals::<f32>(&out[2]), &y, "select with scalar pred");
    let want: Vec<f32> = y.iter().map(|v| v.clamp(-0.5, 0.5)).collect();
    assert_exact(&vals::<f32>(&out[3]), &want, "clamp with scalar bounds");
}

/// Integer binary ops with wrapping arithmetic (XLA integers wrap), truncating division and a
/// remainder with the dividend's sign. Divisors are never zero; shift amounts stay below the
/// bit width.
macro_rules! int_ops_test {
    ($name:ident, $t:ty, $lo:expr, $hi:expr, $seed:expr) => {
        #[test]
        fn $name() {
            let mut r = rng($seed);
            let n = 64usize;
            let x: Vec<$t> = cast(&ints(&mut r, n, $lo, $hi));
            let mut y: Vec<$t> = cast(&ints(&mut r, n, $lo, $hi));
            for v in y.iter_mut() {
                if *v == 0 {
                    *v = 3 as $t;
                }
            }
            let bits = (std::mem::size_of::<$t>() * 8) as i64;
            let s: Vec<$t> = cast(&ints(&mut r, n, 0, bits - 1));
            let ty = <$t as hlo::NativeType>::TYPE;
            let d = [n as i64];
            let shape = arr_shape(ty, &d);
            let ops = [
                BinaryOp::Add,
                BinaryOp::Sub,
                BinaryOp::Mul,
                BinaryOp::Div,
                BinaryOp::Rem,
                BinaryOp::Max,
                BinaryOp::Min,
                BinaryOp::And,
                BinaryOp::Or,
                BinaryOp::Xor,
            ];
            let shifts = [
                BinaryOp::ShiftLeft,
                BinaryOp::ShiftRightArithmetic,
                BinaryOp::ShiftRightLogical,
            ];
            let m = module(&[shape.clone(), shape.clone(), shape], |b, p| {
                let mut outs = ops
                    .iter()
                    .map(|&op| b.binary(op, p[0], p[1]))
                    .collect::<hlo::Result<Vec<_>>>()?;
                for &op in &shifts {
                    outs.push(b.binary(op, p[0], p[2])?);
                }
                outs.push(b.not(p[0])?);
                outs.push(b.neg(p[0])?);
                Ok(outs)
            });
            let out = run(&m, &[lit(&x, &d), lit(&y, &d), lit(&s, &d)]);
            let f = |i: usize, g: &dyn Fn($t, $t) -> $t, what: &str| {
                let want: Vec<$t> = (0..n).map(|k| g(x[k], y[k])).collect();
                assert_exact(&vals::<$t>(&out[i]), &want, &format!("{ty} {what}"));
            };
            f(0, &|a, b| a.wrapping_add(b), "add");
            f(1, &|a, b| a.wrapping_sub(b), "subtract");
            f(2, &|a, b| a.wrapping_mul(b), "multiply");
            f(3, &|a, b| a.wrapping_div(b), "divide");
            f(4, &|a, b| a.wrapping_rem(b), "remainder");
            f(5, &|a, b| a.max(b), "maximum");
            f(6, &|a, b| a.min(b), "minimum");
            f(7, &|a, b| a & b, "and");
            f(8, &|a, b| a | b, "or");
            f(9, &|a, b| a ^ b, "xor");
            let sh = |i: usize, g: &dyn Fn($t, u32) -> $t, what: &str| {
                let want: Vec<$t> = (0..n).map(|k| g(x[k], s[k] as u32)).collect();
                assert_exact(&vals::<$t>(&out[i]), &want, &format!("{ty} {what}"));
            };
            sh(10, &|a, k| a.wrapping_shl(k), "shift-left");
            // Arithmetic shift fills with the top bit, for unsigned types too (XLA shifts the
            // bits as a signed integer of the same width).
            sh(
                11,
                &|a, k| {
                    let bits = std::mem::size_of::<$t>() * 8;
                    let u = (a as i128) & ((1i128 << bits) - 1);
                    let signed = if u >> (bits - 1) == 1 {
                        u - (1i128 << bits)
                    } else {
                        u
                    };
                    (signed >> k) as $t
                },
                "shift-right-arithmetic",
            );
            sh(
                12,
                &|a, k| {
                    let bits = std::mem::size_of::<$t>() * 8;
                    let u = (a as i128) & ((1i128 << bits) - 1);
                    (u >> k) as $t
                },
                "shift-right-logical",
            );
            let want: Vec<$t> = x.iter().map(|&a| !a).collect();
            assert_exact(&vals::<$t>(&out[13]), &want, &format!("{ty} not"));
            let want: Vec<$t> = x.iter().map(|&a| (0 as $t).wrapping_sub(a)).collect();
            assert_exact(&vals::<$t>(&out[14]), &want, &format!("{ty} negate"));
        }
    };
}

int_ops_test!(int_ops_s32, i32, -100_000, 100_000, 41);
int_ops_test!(int_ops_s8, i8, -128, 127, 42);
int_ops_test!(int_ops_s64, i64, -(1 << 40), 1 << 40, 43);
int_ops_test!(int_ops_u32, u32, 0, 4_294_967_295, 44);
int_ops_test!(int_ops_u8, u8, 0, 255, 45);

#[test]
fn signed_abs_sign_with_negatives() {
    let x = [-7i32, 0, 5, -1, i32::MAX, -100];
    let m = module(&[arr_shape(S32, &[6])], |b, p| {
        Ok(vec![b.abs(p[0])?, b.sign(p[0])?])
    });
    let out = run(&m, &[lit(&x, &[6])]);
    let want: Vec<i32> = x.iter().map(|v| v.abs()).collect();
    assert_exact(&vals::<i32>(&out[0]), &want, "s32 abs");
    let want: Vec<i32> = x.iter().map(|v| v.signum()).collect();
    assert_exact(&vals::<i32>(&out[1]), &want, "s32 sign");
}

#[test]
fn convert_between_types() {
    let mut r = rng(51);
    let mut x = uniform(&mut r, N, -100.0, 100.0);
    x[..4].copy_from_slice(&[2.9, -2.9, 0.5, -0.5]);
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let i: Vec<i32> = cast(&ints(&mut r, N, -300, 300));
    let m = module(&[arr_shape(F32, &DIMS), arr_shape(S32, &DIMS)], |b, p| {
        Ok(vec![
            b.convert(p[0], S32)?,
            b.convert(p[0], Bf16)?,
            b.convert(p[0], F16)?,
            b.convert(p[0], F64)?,
            b.convert(p[1], F32)?,
            b.convert(p[1], S8)?,
            b.convert(p[1], Pred)?,
            b.convert(b.convert(p[0], Bf16)?, F32)?,
            b.convert(p[1], S64)?,
            b.convert(p[1], U8)?,
        ])
    });
    let out = run(&m, &[lit(&xf, &DIMS), lit(&i, &DIMS)]);
    // float -> int truncates toward zero.
    let want: Vec<i32> = xf.iter().map(|&v| v as i32).collect();
    assert_exact(&vals::<i32>(&out[0]), &want, "f32 -> s32");
    // f32 -> bf16/f16 round to nearest even (what `half` does).
    let want: Vec<bf16> = xf.iter().map(|&v| bf16::from_f32(v)).collect();
    assert_exact(&vals::<bf16>(&out[1]), &want, "f32 -> bf16");
    let want: Vec<f16> = xf.iter().map(|&v| f16::from_f32(v)).collect();
    assert_exact(&vals::<f16>(&out[2]), &want, "f32 -> f16");
    let want: Vec<f64> = xf.iter().map(|&v| f64::from(v)).collect();
    assert_exact(&vals::<f64>(&out[3]), &want, "f32 -> f64");
    let want: Vec<f32> = i.iter().map(|&v| v as f32).collect();
    assert_exact(&vals::<f32>(&out[4]), &want, "s32 -> f32");
    // Narrowing integer converts keep the low bits (two's complement wrap).
    let want: Vec<i8> = i.iter().map(|&v| v as i8).collect();
    assert_exact(&vals::<i8>(&out[5]), &want, "s32 -> s8");
    let want: Vec<bool> = i.iter().map(|&v| v != 0).collect();
    assert_exact(&vals::<bool>(&out[6]), &want, "s32 -> pred");
    let want: Vec<f32> = xf.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
    assert_exact(&vals::<f32>(&out[7]), &want, "f32 -> bf16 -> f32");
    let want: Vec<i64> = i.iter().map(|&v| i64::from(v)).collect();
    assert_exact(&vals::<i64>(&out[8]), &want, "s32 -> s64");
    let want: Vec<u8> = i.iter().map(|&v| v as u8).collect();
    assert_exact(&vals::<u8>(&out[9]), &want, "s32 -> u8");
}

#[test]
fn bf16_rounding_is_to_nearest_even() {
    // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties go to the even mantissa (1.0);
    // 1 + 3*2^-8 is halfway between 1.0078125 and 1.015625: to 1.015625.
    let x = [
        1.0 + 2f32.powi(-8),
        1.0 + 3.0 * 2f32.powi(-8),
        1.0 + 2f32.powi(-8) + 2f32.powi(-20),
    ];
    let m = module(&[arr_shape(F32, &[3])], |b, p| {
        Ok(vec![b.convert(p[0], Bf16)?])
    });
    let out = run(&m, &[lit(&x, &[3])]);
    let got: Vec<f32> = vals::<bf16>(&out[0]).iter().map(|v| v.to_f32()).collect();
    assert_exact(&got, &[1.0, 1.015625, 1.0078125], "f32 -> bf16 ties");
}

#[test]
fn bitcast_convert_f32_u32() {
    let mut r = rng(61);
    let x = normal_f32(&mut r, N);
    let bits: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
    let si: Vec<i32> = cast(&ints(&mut r, N, -1_000_000, 1_000_000));
    let m = module(
        &[
            arr_shape(F32, &DIMS),
            arr_shape(U32, &DIMS),
            arr_shape(S32, &DIMS),
        ],
        |b, p| {
            Ok(vec![
                b.bitcast_convert(p[0], U32)?,
                b.bitcast_convert(p[1], F32)?,
                b.bitcast_convert(p[2], U32)?,
            ])
        },
    );
    let out = run(&m, &[lit(&x, &DIMS), lit(&bits, &DIMS), lit(&si, &DIMS)]);
    assert_exact(&vals::<u32>(&out[0]), &bits, "f32 -> u32 bits");
    let back: Vec<u32> = vals::<f32>(&out[1]).iter().map(|v| v.to_bits()).collect();
    assert_exact(&back, &bits, "u32 bits -> f32");
    let want: Vec<u32> = si.iter().map(|&v| v as u32).collect();
    assert_exact(&vals::<u32>(&out[2]), &want, "s32 -> u32 bits");
    // Width mismatch is a build-time error naming the op.
    let e = build(&[arr_shape(F32, &[2])], |b, p| {
        Ok(vec![b.bitcast_convert(p[0], F64)?])
    });
    assert!(e.unwrap_err().to_string().contains("bitcast-convert"));
}

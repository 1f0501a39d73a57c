//! dot_general and matmul on the CPU plugin against the ndarray reference: batch dims in any
//! position, several contracting dims, f32/f64/bf16/f16/s32, and f32 results from bf16 inputs.
mod common;
use common::check::{assert_close, assert_exact};
use common::inputs::*;
use common::reference::{self as r, arr, flat};
use common::*;
use hlo::ir::{DotDims, Precision};
use hlo::ElementType::{self, *};

/// A random input of `dims` as (literal of `ty`, f64 array of the values the literal holds).
fn input(ty: ElementType, seed: u64, dims: &[usize]) -> (hlo::Literal, r::A) {
    let n = dims.iter().product();
    let v = normal(&mut rng(seed), n);
    let d: Vec<i64> = dims.iter().map(|&x| x as i64).collect();
    let l = lit_as(ty, &v, &d);
    let a = arr(&l.to_f64_vec(), dims);
    (l, a)
}

fn shape(ty: ElementType, dims: &[usize]) -> hlo::Shape {
    arr_shape(ty, &dims.iter().map(|&x| x as i64).collect::<Vec<_>>())
}

struct Case {
    lhs: Vec<usize>,
    rhs: Vec<usize>,
    lb: Vec<usize>,
    rb: Vec<usize>,
    lc: Vec<usize>,
    rc: Vec<usize>,
}

fn case(
    lhs: &[usize],
    rhs: &[usize],
    lb: &[usize],
    rb: &[usize],
    lc: &[usize],
    rc: &[usize],
) -> Case {
    Case {
        lhs: lhs.to_vec(),
        rhs: rhs.to_vec(),
        lb: lb.to_vec(),
        rb: rb.to_vec(),
        lc: lc.to_vec(),
        rc: rc.to_vec(),
    }
}

fn dims_of(c: &Case) -> DotDims {
    let v = |x: &[usize]| x.iter().map(|&d| d as i64).collect::<Vec<_>>();
    DotDims {
        lhs_batch: v(&c.lb),
        rhs_batch: v(&c.rb),
        lhs_contracting: v(&c.lc),
        rhs_contracting: v(&c.rc),
    }
}

fn cases() -> Vec<Case> {
    vec![
        // Plain matmul.
        case(&[3, 4], &[4, 5], &[], &[], &[1], &[0]),
        // Contracting the lhs's first dim (a transposed lhs).
        case(&[4, 3], &[4, 5], &[], &[], &[0], &[0]),
        // Leading batch dim.
        case(&[2, 3, 4], &[2, 4, 5], &[0], &[0], &[2], &[1]),
        // Batch dims in the middle / at the end.
        case(&[3, 2, 4], &[4, 5, 2], &[1], &[2], &[2], &[0]),
        // Two contracting dims, in a different order on each side.
        case(&[2, 3, 4, 5], &[4, 3, 6], &[], &[], &[1, 2], &[1, 0]),
        // Two batch dims and two contracting dims.
        case(
            &[2, 3, 4, 5],
            &[3, 5, 2, 4, 2],
            &[0, 1],
            &[2, 0],
            &[2, 3],
            &[3, 1],
        ),
        // Matrix-vector and a full contraction to a scalar.
        case(&[3, 4], &[4], &[], &[], &[1], &[0]),
        case(&[3, 4], &[3, 4], &[], &[], &[0, 1], &[0, 1]),
    ]
}

fn check_cases(ty: ElementType, preferred: Option<ElementType>, atol: f64, rtol: f64, seed: u64) {
    let cs = cases();
    let mut params = vec![];
    let mut inputs = vec![];
    let mut refs = vec![];
    for (k, c) in cs.iter().enumerate() {
        let (ll, la) = input(ty, seed + 2 * k as u64, &c.lhs);
        let (rl, ra) = input(ty, seed + 2 * k as u64 + 1, &c.rhs);
        params.push(shape(ty, &c.lhs));
        params.push(shape(ty, &c.rhs));
        inputs.push(ll);
        inputs.push(rl);
        refs.push(r::dot_general(&la, &ra, &c.lb, &c.rb, &c.lc, &c.rc));
    }
    let m = module(&params, |b, p| {
        cs.iter()
            .enumerate()
            .map(|(k, c)| {
                b.dot_general(
                    p[2 * k],
                    p[2 * k + 1],
                    dims_of(c),
                    Default::default(),
                    preferred,
                )
            })
            .collect()
    });
    let out = run(&m, &inputs);
    for (k, (o, want)) in out.iter().zip(&refs).enumerate() {
        let want_dims: Vec<i64> = want.shape().iter().map(|&x| x as i64).collect();
        let what = format!("{ty}->{} dot case {k}", o.element_type());
        assert_eq!(o.shape().dims, want_dims, "{what}: dims");
        assert_eq!(o.element_type(), preferred.unwrap_or(ty), "{what}: type");
        assert_close(&f64s(o), &flat(want), atol, rtol, &what);
    }
}

#[test]
fn dot_general_f32() {
    check_cases(F32, None, 1e-5, 1e-5, 100);
}

#[test]
fn dot_general_f64() {
    check_cases(F64, None, 1e-12, 1e-12, 200);
}

#[test]
fn dot_general_bf16_with_f32_result() {
    // bf16 products are exact in f32; only f32 accumulation rounding remains.
    check_cases(Bf16, Some(F32), 1e-5, 1e-5, 300);
}

#[test]
fn dot_general_bf16_and_f16() {
    // The result is rounded to the 16-bit type (and may accumulate in it): a few ulps of the
    // result magnitude, which for sums of up to 60 unit-normal products is around 1..10.
    check_cases(Bf16, None, 5e-2, 2e-2, 400);
    check_cases(F16, None, 5e-3, 2e-3, 500);
}

#[test]
fn matmul_conveniences_and_precision() {
    let (al, a) = input(F32, 1, &[2, 3, 4]);
    let (bl, bm) = input(F32, 2, &[2, 4, 5]);
    let (wl, w) = input(F32, 3, &[4, 6]);
    let m = module(
        &[
            shape(F32, &[2, 3, 4]),
            shape(F32, &[2, 4, 5]),
            shape(F32, &[4, 6]),
        ],
        |b, p| {
            let dims = DotDims {
                lhs_contracting: vec![2],
                rhs_contracting: vec![0],
                ..Default::default()
            };
            Ok(vec![
                b.matmul(p[0], p[1])?,
                b.matmul(p[0], p[2])?,
                b.dot_general(p[0], p[2], dims, [Precision::Highest; 2], None)?,
            ])
        },
    );
    let out = run(&m, &[al, bl, wl]);
    let want = r::dot_general(&a, &bm, &[0], &[0], &[2], &[1]);
    assert_close(&f64s(&out[0]), &flat(&want), 1e-5, 1e-5, "batched matmul");
    let want = r::dot_general(&a, &w, &[], &[], &[2], &[0]);
    assert_close(
        &f64s(&out[1]),
        &flat(&want),
        1e-5,
        1e-5,
        "matmul with a rank-2 rhs",
    );
    assert_close(
        &f64s(&out[2]),
        &flat(&want),
        1e-5,
        1e-5,
        "precision highest",
    );
}

#[test]
fn dot_s32_exact() {
    let mut g = rng(7);
    let a: Vec<i32> = cast(&ints(&mut g, 12, -50, 50));
    let bv: Vec<i32> = cast(&ints(&mut g, 20, -50, 50));
    let m = module(
        &[arr_shape(S32, &[3, 4]), arr_shape(S32, &[4, 5])],
        |b, p| Ok(vec![b.matmul(p[0], p[1])?]),
    );
    let out = run(&m, &[lit(&a, &[3, 4]), lit(&bv, &[4, 5])]);
    let want: Vec<i32> = (0..15)
        .map(|k| (0..4).map(|j| a[(k / 5) * 4 + j] * bv[j * 5 + k % 5]).sum())
        .collect();
    assert_exact(&vals::<i32>(&out[0]), &want, "s32 matmul");
}

#[test]
fn dot_shape_mismatch_is_a_build_error() {
    let e = build(
        &[arr_shape(F32, &[3, 4]), arr_shape(F32, &[5, 6])],
        |b, p| Ok(vec![b.matmul(p[0], p[1])?]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("dot:") && e.contains("f32[3,4]") && e.contains("f32[5,6]"),
        "{e}"
    );
}

//! Data-movement ops on the CPU plugin against ndarray references: iota, broadcast_in_dim,
//! reshape, transpose, reverse, strided slice, dynamic slice/update (with start clamping),
//! concatenate, pad (negative and interior), tuples.
mod common;
use common::check::{assert_close, assert_exact};
use common::inputs::*;
use common::reference::{self as r, arr, flat};
use common::*;
use hlo::ir::PadDim;
use hlo::ElementType::*;

/// A random f32 input of `dims` as (literal, f64 reference array).
fn input(seed: u64, dims: &[usize]) -> (hlo::Literal, r::A) {
    let n = dims.iter().product();
    let v = normal_f32(&mut rng(seed), n);
    let d: Vec<i64> = dims.iter().map(|&x| x as i64).collect();
    let f: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
    (lit(&v, &d), arr(&f, dims))
}

fn shape_of(dims: &[usize]) -> hlo::Shape {
    arr_shape(F32, &dims.iter().map(|&x| x as i64).collect::<Vec<_>>())
}

#[track_caller]
fn check(out: &hlo::Literal, want: &r::A, what: &str) {
    let want_dims: Vec<i64> = want.shape().iter().map(|&x| x as i64).collect();
    assert_eq!(out.shape().dims, want_dims, "{what}: dims");
    // Pure data movement: exact.
    assert_close(&f64s(out), &flat(want), 0.0, 0.0, what);
}

#[test]
fn iota_along_each_dim() {
    let m = module(&[], |b, _| {
        Ok(vec![
            b.iota(&hlo::ArrayShape::new(S32, vec![3, 4]), 0)?,
            b.iota(&hlo::ArrayShape::new(S32, vec![3, 4]), 1)?,
            b.iota(&hlo::ArrayShape::new(F32, vec![2, 5]), 1)?,
            b.iota(&hlo::ArrayShape::new(S64, vec![6]), 0)?,
        ])
    });
    let out = run(&m, &[]);
    let want: Vec<i32> = (0..12).map(|k| k / 4).collect();
    assert_exact(&vals::<i32>(&out[0]), &want, "iota dim 0");
    let want: Vec<i32> = (0..12).map(|k| k % 4).collect();
    assert_exact(&vals::<i32>(&out[1]), &want, "iota dim 1");
    let want: Vec<f32> = (0..10).map(|k| (k % 5) as f32).collect();
    assert_exact(&vals::<f32>(&out[2]), &want, "f32 iota");
    assert_exact(&vals::<i64>(&out[3]), &[0, 1, 2, 3, 4, 5], "s64 iota");
}

#[test]
fn broadcast_reshape_transpose_reverse() {
    let (xl, x) = input(1, &[2, 3, 4]);
    let (vl, v) = input(2, &[3]);
    let (ol, o) = input(3, &[1, 4]);
    let m = module(
        &[shape_of(&[2, 3, 4]), shape_of(&[3]), shape_of(&[1, 4])],
        |b, p| {
            Ok(vec![
                b.broadcast_in_dim(p[1], &[2, 3, 5], &[1])?,
                // A size-1 dimension that grows.
                b.broadcast_in_dim(p[2], &[3, 2, 4], &[1, 2])?,
                b.reshape(p[0], &[4, 6])?,
                b.transpose(p[0], &[2, 0, 1])?,
                b.reverse(p[0], &[0, 2])?,
                b.broadcast_to(p[1], &[4, 3])?,
            ])
        },
    );
    let out = run(&m, &[xl, vl, ol]);
    check(
        &out[0],
        &r::broadcast_in_dim(&v, &[2, 3, 5], &[1]),
        "broadcast_in_dim",
    );
    check(
        &out[1],
        &r::broadcast_in_dim(&o, &[3, 2, 4], &[1, 2]),
        "broadcast size-1 dim",
    );
    check(&out[2], &r::reshape(&x, &[4, 6]), "reshape");
    check(&out[3], &r::transpose(&x, &[2, 0, 1]), "transpose");
    check(&out[4], &r::reverse(&x, &[0, 2]), "reverse");
    check(
        &out[5],
        &r::broadcast_in_dim(&v, &[4, 3], &[1]),
        "broadcast_to",
    );
}

#[test]
fn slice_with_strides() {
    let (xl, x) = input(4, &[5, 7]);
    let m = module(&[shape_of(&[5, 7])], |b, p| {
        Ok(vec![
            b.slice(p[0], &[1, 0], &[5, 7], &[2, 3])?,
            b.slice(p[0], &[0, 2], &[5, 6], &[1, 1])?,
            b.slice_in_dim(p[0], 3, 5, 0)?,
        ])
    });
    let out = run(&m, &[xl]);
    check(
        &out[0],
        &r::slice(&x, &[1, 0], &[5, 7], &[2, 3]),
        "strided slice",
    );
    check(&out[1], &r::slice(&x, &[0, 2], &[5, 6], &[1, 1]), "slice");
    check(
        &out[2],
        &r::slice(&x, &[3, 0], &[5, 7], &[1, 1]),
        "slice_in_dim",
    );
}

#[test]
fn dynamic_slice_and_update_clamp_starts() {
    let (xl, x) = input(5, &[6, 5]);
    let (ul, u) = input(6, &[2, 3]);
    let s = arr_shape(S32, &[]);
    let m = module(
        &[shape_of(&[6, 5]), shape_of(&[2, 3]), s.clone(), s],
        |b, p| {
            Ok(vec![
                b.dynamic_slice(p[0], &[p[2], p[3]], &[2, 3])?,
                b.dynamic_update_slice(p[0], p[1], &[p[2], p[3]])?,
            ])
        },
    );
    let exe_cases: [(i32, i32); 5] = [(1, 2), (4, 2), (5, 4), (-3, 1), (100, -100)];
    for (i, j) in exe_cases {
        let out = run(
            &m,
            &[xl.clone(), ul.clone(), lit(&[i], &[]), lit(&[j], &[])],
        );
        let starts = [i64::from(i), i64::from(j)];
        check(
            &out[0],
            &r::dynamic_slice(&x, &starts, &[2, 3]),
            &format!("dynamic-slice at {starts:?}"),
        );
        check(
            &out[1],
            &r::dynamic_update_slice(&x, &u, &starts),
            &format!("dynamic-update-slice at {starts:?}"),
        );
    }
}

#[test]
fn dynamic_slice_s64_indices() {
    let (xl, x) = input(7, &[8]);
    let m = module(&[shape_of(&[8]), arr_shape(S64, &[])], |b, p| {
        Ok(vec![b.dynamic_slice(p[0], &[p[1]], &[3])?])
    });
    for start in [0i64, 3, 7] {
        let out = run(&m, &[xl.clone(), lit(&[start], &[])]);
        check(
            &out[0],
            &r::dynamic_slice(&x, &[start], &[3]),
            &format!("s64 start {start}"),
        );
    }
}

#[test]
fn concatenate_three() {
    let (al, a) = input(8, &[2, 3]);
    let (bl, bb) = input(9, &[2, 1]);
    let (cl, c) = input(10, &[2, 4]);
    let m = module(
        &[shape_of(&[2, 3]), shape_of(&[2, 1]), shape_of(&[2, 4])],
        |b, p| {
            Ok(vec![
                b.concatenate(&[p[0], p[1], p[2]], 1)?,
                b.concatenate(&[p[0], p[0]], 0)?,
            ])
        },
    );
    let out = run(&m, &[al, bl, cl]);
    check(
        &out[0],
        &r::concatenate(&[&a, &bb, &c], 1),
        "concatenate dim 1",
    );
    check(&out[1], &r::concatenate(&[&a, &a], 0), "concatenate dim 0");
}

#[test]
fn pad_negative_and_interior() {
    let (xl, x) = input(11, &[4, 5]);
    let cfgs: [[(i64, i64, i64); 2]; 3] = [
        [(1, 2, 0), (0, 1, 1)],
        [(-1, 1, 2), (2, -2, 0)],
        [(-2, -1, 1), (-3, 3, 1)],
    ];
    let m = module(&[shape_of(&[4, 5])], |b, p| {
        let v = b.scalar(-7.5f32)?;
        cfgs.iter()
            .map(|c| {
                let dims: Vec<PadDim> = c
                    .iter()
                    .map(|&(low, high, interior)| PadDim {
                        low,
                        high,
                        interior,
                    })
                    .collect();
                b.pad(p[0], v, &dims)
            })
            .collect()
    });
    let out = run(&m, &[xl]);
    for (o, c) in out.iter().zip(&cfgs) {
        check(o, &r::pad(&x, -7.5, c), &format!("pad {c:?}"));
    }
}

#[test]
fn int_and_bf16_data_movement() {
    let mut g = rng(12);
    let xi: Vec<i32> = cast(&ints(&mut g, 12, -1000, 1000));
    let xb = to_bf16(&normal(&mut g, 12));
    let m = module(
        &[arr_shape(S32, &[3, 4]), arr_shape(Bf16, &[3, 4])],
        |b, p| {
            Ok(vec![
                b.transpose(p[0], &[1, 0])?,
                b.reverse(p[1], &[1])?,
                b.pad(
                    p[0],
                    b.scalar(9i32)?,
                    &[PadDim {
                        low: 1,
                        high: 0,
                        interior: 1,
                    }; 2],
                )?,
            ])
        },
    );
    let out = run(&m, &[lit(&xi, &[3, 4]), lit(&xb, &[3, 4])]);
    let xa = arr(
        &xi.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        &[3, 4],
    );
    let xba = arr(&xb.iter().map(|v| v.to_f64()).collect::<Vec<_>>(), &[3, 4]);
    check(&out[0], &r::transpose(&xa, &[1, 0]), "s32 transpose");
    check(&out[1], &r::reverse(&xba, &[1]), "bf16 reverse");
    check(
        &out[2],
        &r::pad(&xa, 9.0, &[(1, 0, 1), (1, 0, 1)]),
        "s32 pad",
    );
}

#[test]
fn tuple_and_get_tuple_element() {
    let (xl, x) = input(13, &[3]);
    let m = module(&[shape_of(&[3])], |b, p| {
        let t = b.tuple(&[p[0], b.neg(p[0])?])?;
        Ok(vec![b.get_tuple_element(t, 1)?, b.get_tuple_element(t, 0)?])
    });
    let out = run(&m, &[xl]);
    check(&out[0], &x.mapv(|v| -v), "gte 1");
    check(&out[1], &x, "gte 0");
}

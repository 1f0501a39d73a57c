//! Reductions on the CPU plugin against the ndarray reference: reduce (sum/max/min over several
//! dims, every float type, integers), variadic reduce (argmax/argmin composites) and
//! reduce-window (max pool, strided and padded sums, dilations).
mod common;
use common::check::{assert_close, assert_exact};
use common::inputs::*;
use common::reference::{self as r, arr, flat, Win};
use common::*;
use hlo::ir::{BinaryOp, WindowDim};
use hlo::ElementType::{self, *};

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

fn check_reduce(ty: ElementType, atol: f64, rtol: f64, seed: u64) {
    let dims = [3, 4, 5];
    let (xl, x) = input(ty, seed, &dims);
    let m = module(&[shape(ty, &dims)], |b, p| {
        Ok(vec![
            b.reduce_sum(p[0], &[0, 2])?,
            b.reduce_max(p[0], &[1])?,
            b.reduce_min(p[0], &[2, 0])?,
            b.reduce_sum(p[0], &[0, 1, 2])?,
            b.reduce_sum(p[0], &[])?,
        ])
    });
    let out = run(&m, &[xl]);
    let add = |a: f64, b: f64| a + b;
    let wants = [
        r::reduce(&x, &[0, 2], 0.0, add),
        r::reduce(&x, &[1], f64::NEG_INFINITY, f64::max),
        r::reduce(&x, &[0, 2], f64::INFINITY, f64::min),
        r::reduce(&x, &[0, 1, 2], 0.0, add),
        x.clone(),
    ];
    let names = ["sum [0,2]", "max [1]", "min [2,0]", "sum all", "sum none"];
    for ((o, w), n) in out.iter().zip(&wants).zip(names) {
        let wd: Vec<i64> = w.shape().iter().map(|&v| v as i64).collect();
        assert_eq!(o.shape().dims, wd, "{ty} {n}: dims");
        assert_close(&f64s(o), &flat(w), atol, rtol, &format!("{ty} reduce {n}"));
    }
}

#[test]
fn reduce_f32() {
    check_reduce(F32, 1e-5, 1e-5, 1);
}

#[test]
fn reduce_f64() {
    check_reduce(F64, 1e-12, 1e-12, 2);
}

#[test]
fn reduce_bf16_f16() {
    // Sums of up to 60 unit normals (magnitude ~8), rounded to (and maybe accumulated in) the
    // 16-bit type; max/min are exact.
    check_reduce(Bf16, 0.1, 2e-2, 3);
    check_reduce(F16, 1e-2, 2e-3, 4);
}

#[test]
fn reduce_integers() {
    let mut g = rng(5);
    let x: Vec<i32> = cast(&ints(&mut g, 24, -1000, 1000));
    let u: Vec<u8> = cast(&ints(&mut g, 24, 0, 255));
    let m = module(
        &[arr_shape(S32, &[4, 6]), arr_shape(U8, &[4, 6])],
        |b, p| {
            Ok(vec![
                b.reduce_sum(p[0], &[1])?,
                b.reduce_with(p[0], BinaryOp::Max, f64::from(i32::MIN), &[0])?,
                b.reduce_with(p[1], BinaryOp::Max, 0.0, &[1])?,
                b.reduce_with(p[0], BinaryOp::Mul, 1.0, &[0])?,
            ])
        },
    );
    let out = run(&m, &[lit(&x, &[4, 6]), lit(&u, &[4, 6])]);
    let want: Vec<i32> = (0..4).map(|i| x[i * 6..i * 6 + 6].iter().sum()).collect();
    assert_exact(&vals::<i32>(&out[0]), &want, "s32 sum");
    let want: Vec<i32> = (0..6)
        .map(|j| (0..4).map(|i| x[i * 6 + j]).max().unwrap())
        .collect();
    assert_exact(&vals::<i32>(&out[1]), &want, "s32 max");
    let want: Vec<u8> = (0..4)
        .map(|i| *u[i * 6..i * 6 + 6].iter().max().unwrap())
        .collect();
    assert_exact(&vals::<u8>(&out[2]), &want, "u8 max");
    let want: Vec<i32> = (0..6)
        .map(|j| (0..4).fold(1i32, |a, i| a.wrapping_mul(x[i * 6 + j])))
        .collect();
    assert_exact(&vals::<i32>(&out[3]), &want, "s32 product (wrapping)");
}

#[test]
fn variadic_reduce_argmax_argmin() {
    let mut g = rng(6);
    // Small integers as floats so ties are common: the first index must win.
    let x: Vec<f64> = ints(&mut g, 5 * 7, -3, 3)
        .into_iter()
        .map(|v| v as f64)
        .collect();
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let a = arr(&x, &[5, 7]);
    let m = module(&[arr_shape(F32, &[5, 7])], |b, p| {
        Ok(vec![
            b.argmax(p[0], 1, S32)?,
            b.argmax(p[0], 0, S64)?,
            b.argmin(p[0], 1, S32)?,
        ])
    });
    let out = run(&m, &[lit(&xf, &[5, 7])]);
    let want: Vec<i32> = r::argmax(&a, 1).into_iter().map(|v| v as i32).collect();
    assert_exact(&vals::<i32>(&out[0]), &want, "argmax axis 1");
    assert_exact(&vals::<i64>(&out[1]), &r::argmax(&a, 0), "argmax axis 0");
    let want: Vec<i32> = r::argmax(&a.mapv(|v| -v), 1)
        .into_iter()
        .map(|v| v as i32)
        .collect();
    assert_exact(&vals::<i32>(&out[2]), &want, "argmin axis 1");
}

#[test]
fn argmax_nan_and_integers() {
    let x = [1.0f32, f32::NAN, 5.0, f32::NAN, -1.0, 2.0, 2.0, 0.0];
    let xi = [3i32, -7, 9, 9, -100, 4, 4, 8];
    let m = module(
        &[arr_shape(F32, &[2, 4]), arr_shape(S32, &[2, 4])],
        |b, p| {
            Ok(vec![
                b.argmax(p[0], 1, S32)?,
                b.argmax(p[1], 1, S32)?,
                b.argmin(p[1], 1, S32)?,
            ])
        },
    );
    let out = run(&m, &[lit(&x, &[2, 4]), lit(&xi, &[2, 4])]);
    // NaN counts as the largest value: the first NaN's index.
    assert_exact(&vals::<i32>(&out[0]), &[1, 1], "argmax with NaN / ties");
    assert_exact(&vals::<i32>(&out[1]), &[2, 3], "s32 argmax");
    assert_exact(&vals::<i32>(&out[2]), &[1, 0], "s32 argmin");
}

fn wdim(w: Win) -> WindowDim {
    WindowDim {
        size: w.size,
        stride: w.stride,
        padding_low: w.lo,
        padding_high: w.hi,
        window_dilation: w.wdil,
        base_dilation: w.bdil,
    }
}

#[test]
fn reduce_window_pools() {
    // NHWC [2, 7, 6, 3].
    let dims = [2, 7, 6, 3];
    let (xl, x) = input(F32, 7, &dims);
    let one = Win::new(1, 1, 0, 0);
    let maxpool = [one, Win::new(2, 2, 0, 1), Win::new(2, 2, 0, 0), one];
    let sumwin = [
        one,
        Win::new(3, 2, 1, 1),
        Win::new(3, 1, 1, 1),
        Win::new(2, 1, 0, 0),
    ];
    let dilated = [
        one,
        Win {
            wdil: 2,
            ..Win::new(2, 1, 0, 0)
        },
        Win {
            bdil: 2,
            ..Win::new(3, 2, 1, 0)
        },
        one,
    ];
    let m = module(&[shape(F32, &dims)], |b, p| {
        let mb = b.module();
        let max = mb.scalar_reducer(BinaryOp::Max, F32)?;
        let add = mb.scalar_reducer(BinaryOp::Add, F32)?;
        let ninf = b.scalar(f32::NEG_INFINITY)?;
        let zero = b.scalar(0f32)?;
        let w = |ws: &[Win]| ws.iter().map(|&v| wdim(v)).collect::<Vec<_>>();
        Ok(vec![
            b.reduce_window(&[p[0]], &[ninf], &w(&maxpool), max)?,
            b.reduce_window(&[p[0]], &[zero], &w(&sumwin), add)?,
            b.reduce_window(&[p[0]], &[zero], &w(&dilated), add)?,
        ])
    });
    let out = run(&m, &[xl]);
    let add = |a: f64, b: f64| a + b;
    let wants = [
        r::reduce_window(&x, &maxpool, f64::NEG_INFINITY, f64::max),
        r::reduce_window(&x, &sumwin, 0.0, add),
        r::reduce_window(&x, &dilated, 0.0, add),
    ];
    for (k, (o, w)) in out.iter().zip(&wants).enumerate() {
        let wd: Vec<i64> = w.shape().iter().map(|&v| v as i64).collect();
        assert_eq!(o.shape().dims, wd, "window {k}: dims");
        assert_close(
            &f64s(o),
            &flat(w),
            1e-5,
            1e-5,
            &format!("reduce-window {k}"),
        );
    }
}

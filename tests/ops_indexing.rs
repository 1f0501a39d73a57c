//! Gather and scatter on the CPU plugin against the reference written from XLA's operational
//! semantics: embedding lookups (`take`), general dimension numbers, clamped starts, batching
//! dims, scatter-add with duplicate indices, replacing scatters and skipped out-of-bounds windows.
mod common;
use common::check::{assert_close, assert_exact};
use common::inputs::*;
use common::reference::{self as r, arr, flat};
use common::*;
use hlo::ir::{GatherDims, ScatterDims};
use hlo::ElementType::*;
use hlo::{Builder, Shape};

fn input(seed: u64, dims: &[usize]) -> (hlo::Literal, r::A) {
    let n = dims.iter().product();
    let v = normal_f32(&mut rng(seed), n);
    let d: Vec<i64> = dims.iter().map(|&x| x as i64).collect();
    let a = arr(&v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), dims);
    (lit(&v, &d), a)
}

/// An s32 index literal and its f64 array.
fn index_input(values: &[i64], dims: &[usize]) -> (hlo::Literal, r::A) {
    let d: Vec<i64> = dims.iter().map(|&x| x as i64).collect();
    let v: Vec<i32> = cast(values);
    (
        lit(&v, &d),
        arr(&values.iter().map(|&x| x as f64).collect::<Vec<_>>(), dims),
    )
}

fn f32s(dims: &[usize]) -> Shape {
    arr_shape(F32, &dims.iter().map(|&x| x as i64).collect::<Vec<_>>())
}

fn s32s(dims: &[usize]) -> Shape {
    arr_shape(S32, &dims.iter().map(|&x| x as i64).collect::<Vec<_>>())
}

#[track_caller]
fn check(out: &hlo::Literal, want: &r::A, atol: f64, what: &str) {
    let wd: Vec<i64> = want.shape().iter().map(|&x| x as i64).collect();
    assert_eq!(out.shape().dims, wd, "{what}: dims");
    assert_close(&f64s(out), &flat(want), atol, atol, what);
}

#[test]
fn take_is_an_embedding_lookup() {
    let (tl, t) = input(1, &[10, 4]);
    let ids = ints(&mut rng(2), 6, 0, 9);
    let (il, _) = index_input(&ids, &[2, 3]);
    let (cl, _) = index_input(&[3, 0, 3], &[3]);
    let m = module(&[f32s(&[10, 4]), s32s(&[2, 3]), s32s(&[3])], |b, p| {
        Ok(vec![b.take(p[0], p[1], 0)?, b.take(p[0], p[2], 1)?])
    });
    let out = run(&m, &[tl, il, cl]);
    // Row ids[k] of the table for each index, in index order.
    let want: Vec<f64> = ids
        .iter()
        .flat_map(|&i| (0..4).map(move |j| (i as usize, j)))
        .map(|(i, j)| t[[i, j]])
        .collect();
    assert_eq!(out[0].shape().dims, vec![2, 3, 4]);
    assert_close(&f64s(&out[0]), &want, 0.0, 0.0, "take axis 0");
    let want: Vec<f64> = (0..10)
        .flat_map(|i| [3usize, 0, 3].map(|j| (i, j)))
        .map(|(i, j)| t[[i, j]])
        .collect();
    assert_eq!(out[1].shape().dims, vec![10, 3]);
    assert_close(&f64s(&out[1]), &want, 0.0, 0.0, "take axis 1");
}

#[test]
fn gather_general_dims_and_clamping() {
    let (xl, x) = input(3, &[5, 6, 4]);
    // 2-d windows [2, 3, 4] at (row, col) starts; some starts out of range (clamped).
    let starts = [1, 2, 4, 5, -2, 1, 0, 0];
    let (il, ia) = index_input(&starts, &[4, 2]);
    let g1 = GatherDims {
        offset_dims: vec![1, 2, 3],
        start_index_map: vec![0, 1],
        index_vector_dim: 1,
        ..Default::default()
    };
    // index_vector_dim 0 (the index vectors are columns) and collapsed dims 0, 1: [4, 4] out.
    let (jl, ja) = index_input(&[1, 4, 0, 3, 2, 5, 1, 0], &[2, 4]);
    let g2 = GatherDims {
        offset_dims: vec![1],
        collapsed_slice_dims: vec![0, 1],
        start_index_map: vec![1, 0],
        index_vector_dim: 0,
        ..Default::default()
    };
    let m = module(&[f32s(&[5, 6, 4]), s32s(&[4, 2]), s32s(&[2, 4])], |b, p| {
        Ok(vec![
            b.gather(p[0], p[1], g1.clone(), &[2, 3, 4], false)?,
            b.gather(p[0], p[2], g2.clone(), &[1, 1, 4], false)?,
        ])
    });
    let out = run(&m, &[xl, il, jl]);
    check(
        &out[0],
        &r::gather(&x, &ia, &g1, &[2, 3, 4]),
        0.0,
        "gather 2-d windows",
    );
    check(
        &out[1],
        &r::gather(&x, &ja, &g2, &[1, 1, 4]),
        0.0,
        "gather ivd 0, collapsed",
    );
}

#[test]
fn gather_with_batching_dims() {
    // Per-batch lookups: operand [3, 5, 4] batched on dim 0, indices [3, 2] batched on dim 0.
    let (xl, x) = input(4, &[3, 5, 4]);
    let (il, ia) = index_input(&[4, 0, 2, 2, 1, 3], &[3, 2]);
    let g = GatherDims {
        offset_dims: vec![2],
        collapsed_slice_dims: vec![1],
        start_index_map: vec![1],
        index_vector_dim: 2,
        operand_batching_dims: vec![0],
        start_indices_batching_dims: vec![0],
    };
    let m = module(&[f32s(&[3, 5, 4]), s32s(&[3, 2])], |b, p| {
        Ok(vec![b.gather(p[0], p[1], g.clone(), &[1, 1, 4], false)?])
    });
    let out = run(&m, &[xl, il]);
    check(
        &out[0],
        &r::gather(&x, &ia, &g, &[1, 1, 4]),
        0.0,
        "batched gather",
    );
}

/// `(a, b) -> b`: a scatter that overwrites.
fn replace_comp(b: &Builder) -> hlo::Result<hlo::CompId> {
    let c = b.module().builder("replace");
    let _old = c.parameter(Shape::scalar(F32), "old")?;
    let new = c.parameter(Shape::scalar(F32), "new")?;
    c.finish(new)
}

#[test]
fn scatter_add_with_duplicate_indices() {
    // The embedding gradient: rows of `updates` added into a [6, 4] table, ids repeat.
    let ids = [2, 0, 2, 5, 2, 0, 1];
    let (il, ia) = index_input(&ids, &[7]);
    let (ul, u) = input(5, &[7, 4]);
    let (xl, x) = input(6, &[6, 4]);
    let sd = ScatterDims {
        update_window_dims: vec![1],
        inserted_window_dims: vec![0],
        scatter_dims_to_operand_dims: vec![0],
        index_vector_dim: 1,
        ..Default::default()
    };
    let m = module(&[f32s(&[6, 4]), s32s(&[7]), f32s(&[7, 4])], |b, p| {
        Ok(vec![
            b.scatter_add(p[0], p[1], p[2], sd.clone())?,
            b.scatter_add(b.zeros_like(p[0])?, p[1], p[2], sd.clone())?,
        ])
    });
    let out = run(&m, &[xl, il, ul]);
    let add = |a: f64, b: f64| a + b;
    check(
        &out[0],
        &r::scatter(&x, &ia, &u, &sd, add),
        1e-6,
        "scatter-add",
    );
    let zeros = x.mapv(|_| 0.0);
    check(
        &out[1],
        &r::scatter(&zeros, &ia, &u, &sd, add),
        1e-6,
        "scatter-add into zeros",
    );
}

#[test]
fn scatter_windows_replace_and_out_of_bounds() {
    let (xl, x) = input(7, &[5, 6]);
    // 2x3 windows at (1,2), (3,0) and (4,5): the last does not fit and is skipped.
    let (il, ia) = index_input(&[1, 2, 3, 0, 4, 5], &[3, 2]);
    let (ul, u) = input(8, &[3, 2, 3]);
    let sd = ScatterDims {
        update_window_dims: vec![1, 2],
        scatter_dims_to_operand_dims: vec![0, 1],
        index_vector_dim: 1,
        ..Default::default()
    };
    let m = module(&[f32s(&[5, 6]), s32s(&[3, 2]), f32s(&[3, 2, 3])], |b, p| {
        let rep = replace_comp(b)?;
        Ok(vec![
            b.scatter(p[0], p[1], p[2], sd.clone(), rep, false, true)?,
            b.scatter_add(p[0], p[1], p[2], sd.clone())?,
        ])
    });
    let out = run(&m, &[xl, il, ul]);
    check(
        &out[0],
        &r::scatter(&x, &ia, &u, &sd, |_, b| b),
        0.0,
        "scatter replace",
    );
    check(
        &out[1],
        &r::scatter(&x, &ia, &u, &sd, |a, b| a + b),
        1e-6,
        "scatter-add windows",
    );
}

#[test]
fn scatter_with_batching_dims() {
    let (xl, x) = input(9, &[3, 5, 4]);
    let (il, ia) = index_input(&[4, 4, 2, 0, 1, 1], &[3, 2]);
    let (ul, u) = input(10, &[3, 2, 4]);
    let sd = ScatterDims {
        update_window_dims: vec![2],
        inserted_window_dims: vec![1],
        scatter_dims_to_operand_dims: vec![1],
        index_vector_dim: 2,
        input_batching_dims: vec![0],
        scatter_indices_batching_dims: vec![0],
    };
    let m = module(
        &[f32s(&[3, 5, 4]), s32s(&[3, 2]), f32s(&[3, 2, 4])],
        |b, p| Ok(vec![b.scatter_add(p[0], p[1], p[2], sd.clone())?]),
    );
    let out = run(&m, &[xl, il, ul]);
    check(
        &out[0],
        &r::scatter(&x, &ia, &u, &sd, |a, b| a + b),
        1e-6,
        "batched scatter-add",
    );
}

#[test]
fn gather_s64_indices_and_int_operand() {
    let table: Vec<i32> = cast(&ints(&mut rng(11), 12, -99, 99));
    let ids = [2i64, 0, 1, 2];
    let m = module(&[arr_shape(S32, &[3, 4]), arr_shape(S64, &[4])], |b, p| {
        Ok(vec![b.take(p[0], p[1], 0)?])
    });
    let out = run(&m, &[lit(&table, &[3, 4]), lit(&ids, &[4])]);
    let want: Vec<i32> = ids
        .iter()
        .flat_map(|&i| table[i as usize * 4..i as usize * 4 + 4].to_vec())
        .collect();
    assert_exact(&vals::<i32>(&out[0]), &want, "s32 table, s64 ids");
}

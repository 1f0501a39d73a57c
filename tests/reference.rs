//! Self-checks of the test references in tests/common/reference.rs against hand-computed values,
//! so an op test failure points at the op, not at its oracle.
mod common;
use common::check::assert_close;
use common::reference::*;
use hlo::ir::{GatherDims, ScatterDims};

#[test]
fn dot_general_matches_hand_values() {
    // [2,3] x [3,2]
    let l = arr(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let r = arr(&[7., 8., 9., 10., 11., 12.], &[3, 2]);
    let o = dot_general(&l, &r, &[], &[], &[1], &[0]);
    assert_eq!(o.shape(), &[2, 2]);
    assert_eq!(flat(&o), vec![58., 64., 139., 154.]);
    // Batch dim 0 on both, lhs [2,1,2], rhs [2,2,1]: per-batch inner products.
    let l = arr(&[1., 2., 3., 4.], &[2, 1, 2]);
    let r = arr(&[5., 6., 7., 8.], &[2, 2, 1]);
    let o = dot_general(&l, &r, &[0], &[0], &[2], &[1]);
    assert_eq!(o.shape(), &[2, 1, 1]);
    assert_eq!(flat(&o), vec![17., 53.]);
    // Two contracting dims: full contraction is the Frobenius inner product.
    let a = arr(&[1., 2., 3., 4.], &[2, 2]);
    let o = dot_general(&a, &a, &[], &[], &[0, 1], &[0, 1]);
    assert_eq!(flat(&o), vec![30.]);
}

#[test]
fn reductions_and_windows() {
    let x = arr(&[1., 5., 2., 4., 3., 6.], &[2, 3]);
    assert_eq!(flat(&reduce(&x, &[1], 0.0, |a, b| a + b)), vec![8., 13.]);
    assert_eq!(flat(&reduce(&x, &[0, 1], f64::MIN, f64::max)), vec![6.]);
    // 1-d max pool, size 2 stride 2 with one pad each side: [-inf,1,5,2,4,3,6,-inf]... (row 0 only)
    let r = arr(&[1., 5., 2., 4.], &[4]);
    let o = reduce_window(&r, &[Win::new(2, 2, 1, 1)], f64::NEG_INFINITY, f64::max);
    assert_eq!(flat(&o), vec![1., 5., 4.]);
    let o = reduce_window(&r, &[Win::new(3, 1, 0, 0)], 0.0, |a, b| a + b);
    assert_eq!(flat(&o), vec![8., 11.]);
    // Base dilation 2: [1,_,5] window 2 stride 1 -> sums 1, 5.
    let r = arr(&[1., 5.], &[2]);
    let w = Win {
        bdil: 2,
        ..Win::new(2, 1, 0, 0)
    };
    assert_eq!(
        flat(&reduce_window(&r, &[w], 0.0, |a, b| a + b)),
        vec![1., 5.]
    );
}

#[test]
fn data_movement() {
    let x = arr(&[0., 1., 2., 3., 4., 5.], &[2, 3]);
    assert_eq!(flat(&transpose(&x, &[1, 0])), vec![0., 3., 1., 4., 2., 5.]);
    assert_eq!(flat(&reverse(&x, &[1])), vec![2., 1., 0., 5., 4., 3.]);
    assert_eq!(
        flat(&slice(&x, &[0, 0], &[2, 3], &[1, 2])),
        vec![0., 2., 3., 5.]
    );
    let b = broadcast_in_dim(&arr(&[7., 8.], &[2]), &[2, 2], &[0]);
    assert_eq!(flat(&b), vec![7., 7., 8., 8.]);
    let c = concatenate(&[&x, &x], 0);
    assert_eq!(c.shape(), &[4, 3]);
    // pad: low 1, high -1, interior 1 on [1,2,3] -> [p,1,p,2,p,3] minus the last = [p,1,p,2,p]
    let p = pad(&arr(&[1., 2., 3.], &[3]), 9., &[(1, -1, 1)]);
    assert_eq!(flat(&p), vec![9., 1., 9., 2., 9.]);
    let p = pad(&arr(&[1., 2., 3.], &[3]), 9., &[(-2, 1, 0)]);
    assert_eq!(flat(&p), vec![3., 9.]);
    // Out-of-range starts clamp to dim - size.
    let r = arr(&[0., 1., 2., 3., 4.], &[5]);
    assert_eq!(flat(&dynamic_slice(&r, &[4], &[2])), vec![3., 4.]);
    assert_eq!(flat(&dynamic_slice(&r, &[-3], &[2])), vec![0., 1.]);
    let u = dynamic_update_slice(&r, &arr(&[8., 9.], &[2]), &[7]);
    assert_eq!(flat(&u), vec![0., 1., 2., 8., 9.]);
}

#[test]
fn gather_and_scatter() {
    // Embedding lookup: table [4,2], ids [3] -> [3,2].
    let t = arr(&[0., 1., 10., 11., 20., 21., 30., 31.], &[4, 2]);
    let ids = arr(&[2., 0., 2.], &[3]);
    let dn = GatherDims {
        offset_dims: vec![1],
        collapsed_slice_dims: vec![0],
        start_index_map: vec![0],
        index_vector_dim: 1,
        ..Default::default()
    };
    let g = gather(&t, &ids, &dn, &[1, 2]);
    assert_eq!(flat(&g), vec![20., 21., 0., 1., 20., 21.]);
    // 2-d start indices with a clamp: a 2x2 window at (3, 1) of a 4x3 operand clamps to (2, 1).
    let x = arr(&(0..12).map(f64::from).collect::<Vec<_>>(), &[4, 3]);
    let idx = arr(&[3., 1.], &[1, 2]);
    let dn = GatherDims {
        offset_dims: vec![1, 2],
        start_index_map: vec![0, 1],
        index_vector_dim: 1,
        ..Default::default()
    };
    assert_eq!(
        flat(&gather(&x, &idx, &dn, &[2, 2])),
        vec![7., 8., 10., 11.]
    );
    // Scatter-add rows with a duplicate index.
    let sd = ScatterDims {
        update_window_dims: vec![1],
        inserted_window_dims: vec![0],
        scatter_dims_to_operand_dims: vec![0],
        index_vector_dim: 1,
        ..Default::default()
    };
    let upd = arr(&[1., 2., 3., 4., 5., 6.], &[3, 2]);
    let s = scatter(&t, &ids, &upd, &sd, |a, b| a + b);
    assert_eq!(flat(&s), vec![3., 5., 10., 11., 26., 29., 30., 31.]);
}

#[test]
fn sort_softmax_norm_gelu() {
    let k = arr(&[3., 1., 2., 1.], &[4]);
    let v = arr(&[0., 1., 2., 3.], &[4]);
    let o = sort_by_key(&[&k, &v], 0, |a, b| a < b);
    assert_eq!(flat(&o[0]), vec![1., 1., 2., 3.]);
    assert_eq!(
        flat(&o[1]),
        vec![1., 3., 2., 0.],
        "stable: equal keys keep order"
    );
    let s = softmax(&arr(&[0., 0., f64::ln(2.0)], &[1, 3]), 1);
    assert_close(&flat(&s), &[0.25, 0.25, 0.5], 1e-15, 0.0, "softmax");
    let l = logsumexp(&arr(&[0., f64::ln(3.0)], &[2]), 0);
    assert_close(&flat(&l), &[f64::ln(4.0)], 1e-15, 0.0, "logsumexp");
    let n = layer_norm(&arr(&[1., 3.], &[1, 2]), &[2., 1.], &[0., 1.], 0.0);
    assert_close(&flat(&n), &[-2., 2.], 1e-12, 0.0, "layer_norm");
    assert_close(&[erf(1.0)], &[0.842_700_792_949_714_9], 1e-15, 0.0, "erf");
    assert_close(
        &[gelu_erf(1.0)],
        &[0.841_344_746_068_542_9],
        1e-15,
        0.0,
        "gelu",
    );
    assert_close(
        &[gelu_tanh(1.0)],
        &[0.841_191_990_607_477_2],
        1e-12,
        0.0,
        "gelu tanh",
    );
    assert_eq!(argmax(&arr(&[1., 7., 7., 2.], &[1, 4]), 1), vec![1]);
    assert_eq!(one_hot(&[2, 0], 3), vec![0., 0., 1., 1., 0., 0.]);
    assert_eq!(round_even(2.5), 2.0);
    assert_eq!(round_afz(2.5), 3.0);
    assert_eq!(round_even(-3.5), -4.0);
}

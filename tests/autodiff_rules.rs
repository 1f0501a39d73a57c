//! Every autodiff rule against central finite differences in f64 on the CPU plugin (see
//! tests/autodiff_check for the method and the default tolerances: rtol 1e-6, atol 1e-8).
//! Inputs are random and kept away from kinks (log/sqrt/rsqrt on [0.5, 3), divisors away from 0);
//! the conventions at kinks and ties (max/min ties, clamp at its bounds, pow at 0, reduce-max
//! ties) are checked exactly in tests/autodiff_conventions.rs.
mod autodiff_check;
mod common;
use autodiff_check::{check, check_with, input, uniform_input, Tol};
use common::lit;
use hlo::ir::{DotDims, GatherDims, PadDim, ScatterDims, UnaryOp};
use hlo::{Builder, Value};

type R = hlo::Result<Value>;

#[test]
fn unary_rules() {
    let normal = input(1, &[2, 5], 1.0, 0.0);
    let positive = uniform_input(2, &[2, 5], 0.5, 3.0);
    let above_minus_one = uniform_input(3, &[2, 5], -0.5, 2.0);
    let cases: &[(UnaryOp, &hlo::Literal)] = &[
        (UnaryOp::Neg, &normal),
        (UnaryOp::Abs, &normal),
        (UnaryOp::Exp, &normal),
        (UnaryOp::Expm1, &normal),
        (UnaryOp::Log, &positive),
        (UnaryOp::Log1p, &above_minus_one),
        (UnaryOp::Tanh, &normal),
        (UnaryOp::Logistic, &normal),
        (UnaryOp::Sqrt, &positive),
        (UnaryOp::Rsqrt, &positive),
        (UnaryOp::Erf, &normal),
        (UnaryOp::Cos, &normal),
        (UnaryOp::Sin, &normal),
        (UnaryOp::Copy, &normal),
    ];
    for &(op, x) in cases {
        check(op.opcode(), std::slice::from_ref(x), &[0], &|b, p| {
            b.unary(op, p[0])
        });
    }
}

#[test]
fn piecewise_constant_unary_rules_give_zero() {
    // x * step(x) has derivative step(x) away from the jumps, so the step's own rule must be 0.
    let x = input(4, &[3, 4], 2.0, 0.3);
    for op in [
        UnaryOp::Sign,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
        UnaryOp::RoundEven,
    ] {
        check(op.opcode(), std::slice::from_ref(&x), &[0], &|b, p| {
            b.mul(p[0], b.unary(op, p[0])?)
        });
    }
}

#[test]
fn binary_rules() {
    let x = input(10, &[3, 4], 1.0, 0.0);
    let y = input(11, &[3, 4], 1.0, 0.0);
    let pos_x = uniform_input(12, &[3, 4], 0.5, 2.0);
    // divisors away from zero: |y| in [0.5, 2)
    let signs = input(13, &[3, 4], 1.0, 0.0).to_f64_vec();
    let mag = uniform_input(14, &[3, 4], 0.5, 2.0).to_f64_vec();
    let away: Vec<f64> = mag
        .iter()
        .zip(&signs)
        .map(|(m, s)| m * s.signum())
        .collect();
    let away = lit(&away, &[3, 4]);
    let big_x = input(15, &[3, 4], 3.0, 0.0);
    let both = [0, 1];
    check("add", &[x.clone(), y.clone()], &both, &|b, p| {
        b.add(p[0], p[1])
    });
    check("subtract", &[x.clone(), y.clone()], &both, &|b, p| {
        b.sub(p[0], p[1])
    });
    check("multiply", &[x.clone(), y.clone()], &both, &|b, p| {
        b.mul(p[0], p[1])
    });
    check("divide", &[x.clone(), away.clone()], &both, &|b, p| {
        b.div(p[0], p[1])
    });
    check("power", &[pos_x.clone(), y.clone()], &both, &|b, p| {
        b.pow(p[0], p[1])
    });
    check("atan2", &[x.clone(), y.clone()], &both, &|b, p| {
        b.atan2(p[0], p[1])
    });
    check("maximum", &[x.clone(), y.clone()], &both, &|b, p| {
        b.max(p[0], p[1])
    });
    check("minimum", &[x.clone(), y.clone()], &both, &|b, p| {
        b.min(p[0], p[1])
    });
    check("remainder", &[big_x, away], &both, &|b, p| {
        b.rem(p[0], p[1])
    });
    // the same operand twice: cotangents accumulate
    check("x*x + x", std::slice::from_ref(&x), &[0], &|b, p| {
        b.add(b.mul(p[0], p[0])?, p[0])
    });
    // a scalar operand (broadcast by the builder) gets the sum of its cotangent
    let s = input(16, &[], 1.0, 0.5);
    check("scalar * x", &[s, x], &both, &|b, p| b.mul(p[0], p[1]));
}

#[test]
fn select_and_clamp_rules() {
    let x = input(20, &[4, 3], 1.0, 0.0);
    let y = input(21, &[4, 3], 1.0, 0.0);
    let z = input(22, &[4, 3], 1.0, 0.0);
    check("select", &[x.clone(), y.clone(), z], &[0, 1], &|b, p| {
        let pred = b.gt(p[2], b.scalar(0.0f64)?)?;
        b.select(pred, b.mul(p[0], p[1])?, b.sin(p[0])?)
    });
    // Array bounds: lo ~ -0.5, hi ~ +0.5, so all three cases occur.
    let lo = input(23, &[4, 3], 0.1, -0.5);
    let hi = input(24, &[4, 3], 0.1, 0.5);
    check(
        "clamp (array bounds)",
        &[lo, x.clone(), hi],
        &[0, 1, 2],
        &|b, p| b.clamp(p[0], p[1], p[2]),
    );
    let slo = input(25, &[], 0.1, -0.4);
    let shi = input(26, &[], 0.1, 0.4);
    check(
        "clamp (scalar bounds)",
        &[slo, x, shi],
        &[0, 1, 2],
        &|b, p| b.clamp(p[0], p[1], p[2]),
    );
}

#[test]
fn convert_rule_through_f32() {
    // f64 -> f32 -> f64: the f32 rounding (~6e-8 relative) limits the difference quotient, so
    // a larger step and a looser tolerance.
    let x = input(30, &[3, 4], 1.0, 0.0);
    let tol = Tol {
        step: 1e-3,
        rtol: 2e-3,
        atol: 1e-4,
        ..Tol::default()
    };
    check_with(
        "convert f64->f32->f64",
        &[x],
        &[0],
        &|b, p| {
            let f = b.convert(p[0], hlo::ElementType::F32)?;
            let f = b.mul(b.tanh(f)?, f)?;
            b.convert(f, hlo::ElementType::F64)
        },
        tol,
    );
}

#[test]
fn broadcast_and_reduce_sum_rules() {
    let v = input(40, &[3], 1.0, 0.0);
    check(
        "broadcast middle dim",
        std::slice::from_ref(&v),
        &[0],
        &|b, p| b.broadcast_in_dim(p[0], &[2, 3, 4], &[1]),
    );
    let c = input(41, &[3, 1], 1.0, 0.0);
    check("broadcast size-1 dim", &[c], &[0], &|b, p| {
        b.broadcast_in_dim(p[0], &[2, 3, 5], &[1, 2])
    });
    let s = input(42, &[], 1.0, 0.0);
    check("broadcast scalar", &[s], &[0], &|b, p| {
        b.broadcast_in_dim(p[0], &[2, 3], &[])
    });
    let x = input(43, &[2, 3, 4], 1.0, 0.0);
    check(
        "reduce-sum dims 0,2",
        std::slice::from_ref(&x),
        &[0],
        &|b, p| b.reduce_sum(p[0], &[0, 2]),
    );
    check("reduce-sum all", &[x], &[0], &|b, p| {
        b.reduce_sum(p[0], &[0, 1, 2])
    });
}

#[test]
fn layout_rules() {
    let x = input(50, &[2, 3, 4], 1.0, 0.0);
    check("reshape", std::slice::from_ref(&x), &[0], &|b, p| {
        b.reshape(p[0], &[6, 4])
    });
    check("transpose", std::slice::from_ref(&x), &[0], &|b, p| {
        b.transpose(p[0], &[2, 0, 1])
    });
    check("reverse", std::slice::from_ref(&x), &[0], &|b, p| {
        b.reverse(p[0], &[0, 2])
    });
    let y = input(51, &[7, 6], 1.0, 0.0);
    check("strided slice", std::slice::from_ref(&y), &[0], &|b, p| {
        b.slice(p[0], &[1, 0], &[7, 5], &[2, 3])
    });
    check("slice", &[y], &[0], &|b, p| {
        b.slice(p[0], &[2, 1], &[5, 6], &[1, 1])
    });
    let a = input(52, &[2, 3], 1.0, 0.0);
    let c = input(53, &[2, 1], 1.0, 0.0);
    let d = input(54, &[2, 4], 1.0, 0.0);
    check("concatenate", &[a, c, d], &[0, 1, 2], &|b, p| {
        b.concatenate(&[p[0], p[1], p[2]], 1)
    });
}

#[test]
fn pad_rule() {
    let x = input(60, &[4, 3], 1.0, 0.0);
    let v = input(61, &[], 1.0, 0.0);
    let dims = [
        PadDim {
            low: -1,
            high: 2,
            interior: 1,
        },
        PadDim {
            low: 2,
            high: -1,
            interior: 0,
        },
    ];
    check(
        "pad (negative, interior)",
        &[x.clone(), v.clone()],
        &[0, 1],
        &|b, p| b.pad(p[0], p[1], &dims),
    );
    let dims = [
        PadDim {
            low: 1,
            high: 0,
            interior: 2,
        },
        PadDim {
            low: -2,
            high: 1,
            interior: 1,
        },
    ];
    check("pad (interior, crop)", &[x, v], &[0, 1], &|b, p| {
        b.pad(p[0], p[1], &dims)
    });
}

#[test]
fn dynamic_slice_rules() {
    let x = input(70, &[5, 6], 1.0, 0.0);
    let u = input(71, &[2, 3], 1.0, 0.0);
    // (1, 2) is in range; (4, 5) is clamped to (3, 3) by both dynamic ops.
    for (i, j) in [(1, 2), (4, 5)] {
        let si = lit(&[i], &[]);
        let sj = lit(&[j], &[]);
        let name = format!("dynamic-slice at ({i},{j})");
        check(
            &name,
            &[x.clone(), si.clone(), sj.clone()],
            &[0],
            &|b, p| b.dynamic_slice(p[0], &[p[1], p[2]], &[2, 3]),
        );
        let name = format!("dynamic-update-slice at ({i},{j})");
        check(&name, &[x.clone(), u.clone(), si, sj], &[0, 1], &|b, p| {
            b.dynamic_update_slice(p[0], p[1], &[p[2], p[3]])
        });
    }
}

#[test]
fn dot_general_rules() {
    let dot = |dims: DotDims| {
        move |b: &Builder, p: &[Value]| -> R {
            b.dot_general(p[0], p[1], dims.clone(), Default::default(), None)
        }
    };
    let d = |lb: &[i64], rb: &[i64], lc: &[i64], rc: &[i64]| DotDims {
        lhs_batch: lb.to_vec(),
        rhs_batch: rb.to_vec(),
        lhs_contracting: lc.to_vec(),
        rhs_contracting: rc.to_vec(),
    };
    let cases: Vec<(&str, Vec<i64>, Vec<i64>, DotDims)> = vec![
        ("matmul", vec![3, 4], vec![4, 5], d(&[], &[], &[1], &[0])),
        (
            "matmul rhs transposed",
            vec![3, 4],
            vec![5, 4],
            d(&[], &[], &[1], &[1]),
        ),
        ("outer product", vec![3], vec![2, 2], d(&[], &[], &[], &[])),
        (
            "batch dims not leading",
            vec![4, 2, 3],
            vec![3, 5, 2],
            d(&[1], &[2], &[2], &[0]),
        ),
        (
            "two contracting dims crossed",
            vec![2, 3, 4],
            vec![4, 5, 3],
            d(&[], &[], &[1, 2], &[2, 0]),
        ),
        (
            "two batch dims",
            vec![2, 3, 4, 2],
            vec![3, 2, 2, 5],
            d(&[0, 1], &[1, 0], &[3], &[2]),
        ),
        ("vector dot", vec![6], vec![6], d(&[], &[], &[0], &[0])),
    ];
    for (k, (name, ld, rd, dims)) in cases.into_iter().enumerate() {
        let l = input(80 + 2 * k as u64, &ld, 1.0, 0.0);
        let r = input(81 + 2 * k as u64, &rd, 1.0, 0.0);
        check(name, &[l, r], &[0, 1], &dot(dims));
    }
}

#[test]
fn reduce_max_min_rules() {
    let x = input(90, &[3, 5], 1.0, 0.0);
    check(
        "reduce-max dim 1",
        std::slice::from_ref(&x),
        &[0],
        &|b, p| b.reduce_max(p[0], &[1]),
    );
    check("reduce-max all", std::slice::from_ref(&x), &[0], &|b, p| {
        b.reduce_max(p[0], &[0, 1])
    });
    check("reduce-min dim 0", &[x], &[0], &|b, p| {
        b.reduce_min(p[0], &[0])
    });
}

#[test]
fn gather_rules() {
    let table = input(100, &[5, 3], 1.0, 0.0);
    // 7 and -1 are out of range: gather clamps them to 4 and 0, and so must the gradient.
    let ids = lit(&[2i32, 0, 2, 7, -1, 4], &[2, 3]);
    check(
        "take (embedding lookup)",
        &[table.clone(), ids],
        &[0],
        &|b, p| b.take(p[0], p[1], 0),
    );
    let cols = lit(&[1i32, 2], &[2]);
    check("take along axis 1", &[table, cols], &[0], &|b, p| {
        b.take(p[0], p[1], 1)
    });
    // 2-component starts with [2,3] windows; (4, 5) is clamped to (3, 3).
    let x = input(101, &[5, 6], 1.0, 0.0);
    let starts = lit(&[0i32, 1, 4, 5, 2, 2], &[3, 2]);
    let dims = GatherDims {
        offset_dims: vec![1, 2],
        collapsed_slice_dims: vec![],
        start_index_map: vec![0, 1],
        index_vector_dim: 1,
        ..Default::default()
    };
    check("gather 2-d windows", &[x, starts], &[0], &|b, p| {
        b.gather(p[0], p[1], dims.clone(), &[2, 3], false)
    });
    // batching dims: operand [2,4,3], per-batch row indices [2,2]
    let x = input(102, &[2, 4, 3], 1.0, 0.0);
    let idx = lit(&[3i32, 0, 1, 1], &[2, 2]);
    let dims = GatherDims {
        offset_dims: vec![2],
        collapsed_slice_dims: vec![1],
        start_index_map: vec![1],
        index_vector_dim: 2,
        operand_batching_dims: vec![0],
        start_indices_batching_dims: vec![0],
    };
    check("gather with batching dims", &[x, idx], &[0], &|b, p| {
        b.gather(p[0], p[1], dims.clone(), &[1, 1, 3], false)
    });
}

#[test]
fn scatter_add_rule() {
    let operand = input(110, &[6, 3], 1.0, 0.0);
    let updates = input(111, &[5, 3], 1.0, 0.0);
    // duplicates (1 twice) accumulate; 7 and -2 are out of range, so XLA skips those windows.
    let idx = lit(&[1i32, 4, 1, 7, -2], &[5, 1]);
    let dims = ScatterDims {
        update_window_dims: vec![1],
        inserted_window_dims: vec![0],
        scatter_dims_to_operand_dims: vec![0],
        index_vector_dim: 1,
        ..Default::default()
    };
    let g = check("scatter-add", &[operand, idx, updates], &[0, 2], &|b, p| {
        let s = b.scatter_add(p[0], p[1], p[2], dims.clone())?;
        b.mul(s, s)
    });
    // the skipped windows' updates get exactly zero
    assert!(
        g[1][9..15].iter().all(|&v| v == 0.0),
        "skipped updates: {:?}",
        &g[1][9..15]
    );
    // windows of 2 along dim 1 with 2-component indices: (0, 2) does not fit in 3 columns
    let operand = input(112, &[4, 3], 1.0, 0.0);
    let updates = input(113, &[3, 2], 1.0, 0.0);
    let idx = lit(&[1i32, 0, 3, 1, 0, 2], &[3, 2]);
    let dims = ScatterDims {
        update_window_dims: vec![1],
        inserted_window_dims: vec![0],
        scatter_dims_to_operand_dims: vec![0, 1],
        index_vector_dim: 1,
        ..Default::default()
    };
    let g = check(
        "scatter-add 2-d starts",
        &[operand, idx, updates],
        &[0, 2],
        &|b, p| {
            let s = b.scatter_add(p[0], p[1], p[2], dims.clone())?;
            b.sin(s)
        },
    );
    assert_eq!(&g[1][4..6], &[0.0, 0.0], "the window at (0, 2) is skipped");
}

#[test]
fn tuple_rules() {
    let x = input(120, &[2, 3], 1.0, 0.0);
    let y = input(121, &[2, 3], 1.0, 0.0);
    check(
        "tuple / get-tuple-element",
        &[x.clone(), y.clone()],
        &[0, 1],
        &|b, p| {
            let t = b.tuple(&[b.mul(p[0], p[1])?, b.sin(p[0])?, p[1]])?;
            let u = b.add(b.get_tuple_element(t, 0)?, b.get_tuple_element(t, 1)?)?;
            // the same element read twice accumulates
            b.mul(u, b.get_tuple_element(t, 0)?)
        },
    );
    check("opt-barrier", &[x, y], &[0, 1], &|b, p| {
        let t = b.optimization_barrier(b.tuple(&[b.mul(p[0], p[1])?, p[1]])?)?;
        b.mul(b.get_tuple_element(t, 0)?, b.get_tuple_element(t, 1)?)
    });
}

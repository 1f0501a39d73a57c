//! The autodiff conventions that finite differences cannot check, with exact expected values:
//! tie rules (max/min, reduce-max/min), clamp at its bounds, pow and abs at 0, stop_gradient,
//! integer and unreachable `wrt` values, gradients at intermediate values, vjp with several
//! outputs, cotangent types (bf16 <-> f32 convert, bf16 dot with f32 result), the issue's
//! `grad_computation` form, and all-reduce sum on 2 devices.
mod autodiff_check;
mod common;
use common::check::{assert_close, assert_exact};
use common::inputs::{normal, rng};
use common::*;
use hlo::ElementType::{Bf16, F32, F64, S32};
use hlo::{ModuleBuilder, Value};
use tpu::CompileOptions;

/// Runs `vjp(f(params), cotangent = last param, wrt = params[..n_wrt])` and returns
/// the gradients' values.
fn vjp_values(
    inputs: &[hlo::Literal],
    n_wrt: usize,
    f: impl Fn(&hlo::Builder, &[Value]) -> hlo::Result<Value>,
) -> Vec<Vec<f64>> {
    let shapes: Vec<hlo::Shape> = inputs
        .iter()
        .map(|l| hlo::Shape::Array(l.shape().clone()))
        .collect();
    let m = module(&shapes, |b, p| {
        let (ct, xs) = p.split_last().expect("a cotangent parameter");
        let y = f(b, xs)?;
        b.vjp(&[y], &[*ct], &xs[..n_wrt])
    });
    run(&m, inputs).iter().map(f64s).collect()
}

#[test]
fn max_min_ties_split_evenly() {
    let x = lit(&[1.0f64, 2.0, 3.0, -1.0], &[4]);
    let y = lit(&[1.0f64, 0.0, 5.0, -1.0], &[4]);
    let g = [0.3, -1.7, 2.5, 4.0];
    let gl = lit(&g, &[4]);
    let inputs = [x, y, gl];
    let d = vjp_values(&inputs, 2, |b, p| b.max(p[0], p[1]));
    assert_exact(&d[0], &[g[0] / 2.0, g[1], 0.0, g[3] / 2.0], "d max / dx");
    assert_exact(&d[1], &[g[0] / 2.0, 0.0, g[2], g[3] / 2.0], "d max / dy");
    let d = vjp_values(&inputs, 2, |b, p| b.min(p[0], p[1]));
    assert_exact(&d[0], &[g[0] / 2.0, 0.0, g[2], g[3] / 2.0], "d min / dx");
    assert_exact(&d[1], &[g[0] / 2.0, g[1], 0.0, g[3] / 2.0], "d min / dy");
}

#[test]
fn reduce_max_min_ties_split_evenly() {
    let x = lit(&[1.0f64, 3.0, 3.0, 2.0, 2.0, 2.0, -1.0, 5.0, 0.0], &[3, 3]);
    let g = [0.6, -0.9, 1.5];
    let inputs = [x, lit(&g, &[3])];
    let d = vjp_values(&inputs, 1, |b, p| b.reduce_max(p[0], &[1]));
    let t = g[1] / 3.0;
    let want = [0.0, g[0] / 2.0, g[0] / 2.0, t, t, t, 0.0, g[2], 0.0];
    assert_exact(&d[0], &want, "reduce-max ties");
    let d = vjp_values(&inputs, 1, |b, p| b.reduce_min(p[0], &[1]));
    let want = [g[0], 0.0, 0.0, t, t, t, g[2], 0.0, 0.0];
    assert_exact(&d[0], &want, "reduce-min ties");
}

#[test]
fn clamp_at_and_beyond_its_bounds() {
    // lo = 0, hi = 1; x below, at lo, inside, at hi, above.
    let inputs = [
        lit(&[0.0f64], &[]),
        lit(&[-0.5f64, 0.0, 0.5, 1.0, 1.5], &[5]),
        lit(&[1.0f64], &[]),
        lit(&[1.0f64, 2.0, 3.0, 4.0, 5.0], &[5]),
    ];
    let d = vjp_values(&inputs, 3, |b, p| b.clamp(p[0], p[1], p[2]));
    assert_exact(&d[0], &[1.0], "d/dlo: only where lo > x");
    assert_exact(
        &d[1],
        &[0.0, 0.0, 3.0, 0.0, 0.0],
        "d/dx: only where lo < x < hi",
    );
    assert_exact(&d[2], &[5.0], "d/dhi: only where hi < x");
}

#[test]
fn pow_and_abs_at_zero() {
    // x^y at (0, 2), (2, 0), (0, 0): no NaN, d/dx = 0 where y == 0, d/dy uses log(1) at x == 0.
    let inputs = [
        lit(&[0.0f64, 2.0, 0.0], &[3]),
        lit(&[2.0f64, 0.0, 0.0], &[3]),
        lit(&[1.0f64, 1.0, 1.0], &[3]),
    ];
    let d = vjp_values(&inputs, 2, |b, p| b.pow(p[0], p[1]));
    assert_exact(&d[0], &[0.0, 0.0, 0.0], "d pow / dx");
    assert_close(&d[1], &[0.0, 2f64.ln(), 0.0], 0.0, 1e-15, "d pow / dy");
    let inputs = [
        lit(&[0.0f64, -1.0, 2.0], &[3]),
        lit(&[0.5f64, 0.5, 0.5], &[3]),
    ];
    let d = vjp_values(&inputs, 1, |b, p| b.abs(p[0]));
    assert_exact(&d[0], &[0.5, -0.5, 0.5], "d|x| (1 at 0, as JAX)");
    let d = vjp_values(&inputs, 1, |b, p| b.mul(b.sign(p[0])?, p[0]));
    assert_exact(&d[0], &[0.0, -0.5, 0.5], "d sign = 0");
}

#[test]
fn select_sends_the_cotangent_to_the_taken_branch() {
    let inputs = [
        lit(&[1.0f64, -1.0, 2.0], &[3]),
        lit(&[10.0f64, 20.0, 30.0], &[3]),
        lit(&[100.0f64, 200.0, 300.0], &[3]),
        lit(&[1.0f64, 2.0, 3.0], &[3]),
    ];
    let d = vjp_values(&inputs, 3, |b, p| {
        let pred = b.gt(p[0], b.scalar(0.0f64)?)?;
        b.select(pred, p[1], p[2])
    });
    assert_exact(&d[0], &[0.0, 0.0, 0.0], "the predicate's source");
    assert_exact(&d[1], &[1.0, 0.0, 3.0], "on_true");
    assert_exact(&d[2], &[0.0, 2.0, 0.0], "on_false");
}

#[test]
fn stop_gradient_integer_and_unreachable_wrt() {
    let x = vec![0.5f64, -1.25, 2.0];
    let m = module(
        &[
            arr_shape(F64, &[3]),
            arr_shape(S32, &[3]),
            arr_shape(F64, &[3]),
        ],
        |b, p| {
            // loss = sum(x * stop_gradient(x)) + sum(convert(i) * x): d/dx = x + i
            let sx = b.stop_gradient(p[0])?;
            let fi = b.convert(p[1], F64)?;
            let y = b.add(b.mul(p[0], sx)?, b.mul(fi, p[0])?)?;
            let loss = b.reduce_sum(y, &[0])?;
            // p[2] does not reach the loss; p[1] is an integer
            b.grad(loss, &[p[0], p[1], p[2]])
        },
    );
    let out = run(
        &m,
        &[lit(&x, &[3]), lit(&[1i32, 2, 3], &[3]), lit(&x, &[3])],
    );
    assert_exact(
        &f64s(&out[0]),
        &[1.5, 0.75, 5.0],
        "d/dx with x stopped once",
    );
    assert_exact(
        &vals::<i32>(&out[1]),
        &[0, 0, 0],
        "integer input: zeros of its type",
    );
    assert_exact(&f64s(&out[2]), &[0.0, 0.0, 0.0], "unreachable input: zeros");
}

#[test]
fn gradients_at_intermediate_values_and_several_outputs() {
    let x = normal(&mut rng(7), 4);
    let w = normal(&mut rng(8), 4);
    let c1 = normal(&mut rng(9), 4);
    let c2 = normal(&mut rng(10), 4);
    let s = arr_shape(F64, &[4]);
    let m = module(&[s.clone(), s.clone(), s.clone(), s.clone()], |b, p| {
        // y1 = h * w, y2 = sin(x) with h = 2x: vjp at x and at h, both in one call.
        let h = b.mul(p[0], b.scalar(2.0f64)?)?;
        let y1 = b.mul(h, p[1])?;
        let y2 = b.sin(p[0])?;
        b.vjp(&[y1, y2], &[p[2], p[3]], &[p[0], h])
    });
    let out = run(
        &m,
        &[lit(&x, &[4]), lit(&w, &[4]), lit(&c1, &[4]), lit(&c2, &[4])],
    );
    let dx: Vec<f64> = (0..4)
        .map(|i| 2.0 * w[i] * c1[i] + x[i].cos() * c2[i])
        .collect();
    let dh: Vec<f64> = (0..4).map(|i| w[i] * c1[i]).collect();
    assert_close(&f64s(&out[0]), &dx, 1e-15, 1e-14, "d/dx");
    assert_close(&f64s(&out[1]), &dh, 1e-15, 1e-14, "d/dh");
}

#[test]
fn convert_cotangents_change_type() {
    // y = convert(x: f32 -> bf16): the f32 cotangent of x is the bf16 cotangent, converted.
    let x = normal(&mut rng(11), 6);
    let c = normal(&mut rng(12), 6);
    let cb = inputs::to_bf16(&c);
    let m = module(&[arr_shape(F32, &[6]), arr_shape(Bf16, &[6])], |b, p| {
        let y = b.convert(p[0], Bf16)?;
        b.vjp(&[y], &[p[1]], &[p[0]])
    });
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let out = run(&m, &[lit(&x32, &[6]), lit(&cb, &[6])]);
    assert_eq!(out[0].element_type(), F32);
    let want: Vec<f32> = cb.iter().map(|v| v.to_f32()).collect();
    assert_exact(&vals::<f32>(&out[0]), &want, "convert cotangent");
}

#[test]
fn bf16_dot_with_f32_result_gives_bf16_cotangents() {
    let (xv, yv, cv) = (
        normal(&mut rng(13), 12),
        normal(&mut rng(14), 20),
        normal(&mut rng(15), 15),
    );
    let (xb, yb) = (inputs::to_bf16(&xv), inputs::to_bf16(&yv));
    let m = module(
        &[
            arr_shape(Bf16, &[3, 4]),
            arr_shape(Bf16, &[4, 5]),
            arr_shape(F32, &[3, 5]),
        ],
        |b, p| {
            let dims = hlo::ir::DotDims {
                lhs_contracting: vec![1],
                rhs_contracting: vec![0],
                ..Default::default()
            };
            let z = b.dot_general(p[0], p[1], dims, Default::default(), Some(F32))?;
            b.vjp(&[z], &[p[2]], &[p[0], p[1]])
        },
    );
    let c32: Vec<f32> = cv.iter().map(|&v| v as f32).collect();
    let out = run(
        &m,
        &[lit(&xb, &[3, 4]), lit(&yb, &[4, 5]), lit(&c32, &[3, 5])],
    );
    assert_eq!((out[0].element_type(), out[1].element_type()), (Bf16, Bf16));
    let x: Vec<f64> = xb.iter().map(|v| v.to_f64()).collect();
    let y: Vec<f64> = yb.iter().map(|v| v.to_f64()).collect();
    // g is rounded to bf16 before the backward dots.
    let g: Vec<f64> = inputs::to_bf16(&cv).iter().map(|v| v.to_f64()).collect();
    let dx: Vec<f64> = (0..12)
        .map(|k| {
            (0..5)
                .map(|j| g[(k / 4) * 5 + j] * y[(k % 4) * 5 + j])
                .sum()
        })
        .collect();
    let dy: Vec<f64> = (0..20)
        .map(|k| (0..3).map(|i| x[i * 4 + k / 5] * g[i * 5 + k % 5]).sum())
        .collect();
    // one bf16 rounding of the result (2^-8 relative)
    assert_close(&f64s(&out[0]), &dx, 1e-6, 8e-3, "dx (bf16)");
    assert_close(&f64s(&out[1]), &dy, 1e-6, 8e-3, "dy (bf16)");
}

#[test]
fn grad_computation_returns_outputs_and_gradients() {
    // f(x, w, ids) = (loss, metric): loss = sum(tanh(take(w, ids) @ x) * stop_gradient(x0)),
    // metric = max(x); grad wrt x and w, against the in-draft grad of the same function.
    let mb = ModuleBuilder::new("t");
    let f = |b: &hlo::Builder, x: Value, w: Value, ids: Value| -> hlo::Result<(Value, Value)> {
        let e = b.take(w, ids, 0)?; // [3, 4]
        let h = b.tanh(b.matmul(e, x)?)?; // [3, 2]
        let s = b.stop_gradient(b.slice(x, &[0, 0], &[1, 2], &[1, 1])?)?; // [1, 2]
        let s = b.broadcast_in_dim(b.reshape(s, &[2])?, &[3, 2], &[1])?;
        let loss = b.reduce_sum(b.mul(h, s)?, &[0, 1])?;
        Ok((loss, b.reduce_max(x, &[0, 1])?))
    };
    let shapes = [
        arr_shape(F64, &[4, 2]),
        arr_shape(F64, &[5, 4]),
        arr_shape(S32, &[3]),
    ];
    let fb = mb.builder("f");
    let p: Vec<Value> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| fb.parameter(s.clone(), &format!("p{i}")).unwrap())
        .collect();
    let (loss, metric) = f(&fb, p[0], p[1], p[2]).unwrap();
    let fc = fb.finish(fb.tuple(&[loss, metric]).unwrap()).unwrap();
    let gc = hlo::autodiff::grad_computation(&mb, fc, &[0, 1]).unwrap();
    let (params, result) = mb.signature(gc).unwrap();
    assert_eq!(params, shapes.to_vec());
    assert_eq!(
        result,
        hlo::Shape::Tuple(vec![
            hlo::Shape::scalar(F64),
            hlo::Shape::scalar(F64),
            shapes[0].clone(),
            shapes[1].clone()
        ])
    );
    let gm = mb.build(gc).unwrap();
    let inputs = [
        autodiff_check::input(16, &[4, 2], 1.0, 0.0),
        autodiff_check::input(17, &[5, 4], 1.0, 0.0),
        lit(&[4i32, 0, 4], &[3]),
    ];
    let got = run(&gm, &inputs);
    let want_m = module(&shapes, |b, p| {
        let (loss, metric) = f(b, p[0], p[1], p[2])?;
        let mut outs = vec![loss, metric];
        outs.extend(b.grad(loss, &[p[0], p[1]])?);
        Ok(outs)
    });
    let want = run(&want_m, &inputs);
    // Equal gradients also show the stop_gradient mark survived inlining: without it, dx
    // would have an extra term from the stopped slice of x.
    for k in 0..4 {
        assert_close(
            &f64s(&got[k]),
            &f64s(&want[k]),
            1e-14,
            1e-13,
            &format!("output {k}"),
        );
    }
    // row 1..3 of w are never looked up; rows 0 and 4 are
    let dw = f64s(&got[3]);
    assert!(dw[4..16].iter().all(|&v| v == 0.0) && dw[..4].iter().any(|&v| v != 0.0));
}

#[test]
fn all_reduce_sum_cotangent_is_all_reduced() {
    // Replica r computes L_r = sum(all_reduce_sum(x_r) * w_r). The gradient of sum_r L_r with
    // respect to x_r is sum_r w_r, on every replica.
    let m = module(&[arr_shape(F32, &[3]), arr_shape(F32, &[3])], |b, p| {
        let s = b.all_reduce_sum(p[0], &[])?;
        let loss = b.reduce_sum(b.mul(s, p[1])?, &[0])?;
        b.grad(loss, &[p[0]])
    });
    let w: Vec<Vec<f32>> = (0..2)
        .map(|r| {
            normal(&mut rng(20 + r), 3)
                .iter()
                .map(|&v| v as f32)
                .collect()
        })
        .collect();
    let x: Vec<f32> = vec![1.0, 2.0, 3.0];
    let inputs: Vec<Vec<hlo::Literal>> = w
        .iter()
        .map(|w| vec![lit(&x, &[3]), lit(w, &[3])])
        .collect();
    let out = run_devices(&m, &CompileOptions::replicas(2), &inputs);
    let want: Vec<f64> = (0..3)
        .map(|i| f64::from(w[0][i]) + f64::from(w[1][i]))
        .collect();
    for (r, o) in out.iter().enumerate() {
        assert_close(&f64s(&o[0]), &want, 1e-6, 1e-6, &format!("replica {r}"));
    }
}

#[test]
fn second_order_gradients() {
    // The backward is made of ordinary ops, so it can be differentiated again:
    // d/dx sum(d/dx sum(x^3 + tanh(x))) = 6x - 2 tanh(x) (1 - tanh(x)^2).
    let x = normal(&mut rng(30), 5);
    let m = module(&[arr_shape(F64, &[5])], |b, p| {
        let y = b.add(b.mul(b.mul(p[0], p[0])?, p[0])?, b.tanh(p[0])?)?;
        let g1 = b.grad(b.reduce_sum(y, &[0])?, &[p[0]])?[0];
        b.grad(b.reduce_sum(g1, &[0])?, &[p[0]])
    });
    let out = run(&m, &[lit(&x, &[5])]);
    let want: Vec<f64> = x
        .iter()
        .map(|&v| 6.0 * v - 2.0 * v.tanh() * (1.0 - v.tanh() * v.tanh()))
        .collect();
    assert_close(&f64s(&out[0]), &want, 1e-14, 1e-13, "second derivative");
}

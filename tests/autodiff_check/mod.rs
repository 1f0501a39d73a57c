//! Gradient checks for the autodiff tests: the gradient program that `Builder::grad` builds,
//! run on the CPU plugin, against central finite differences of the same function, also run on
//! the CPU plugin.
//!
//! A function `f(params) -> y` (any float array) is turned into the scalar loss
//! `L = sum(y * w)` with `w` a fixed random array, so every element of y matters. For each
//! checked coordinate j of a `wrt` input, `(L(x + h e_j) - L(x - h e_j)) / 2h` (h = 1e-5 scaled
//! by |x_j|, in f64) must match the analytic gradient within `atol + rtol * |fd|`. With f64 the
//! difference quotient is accurate to about 1e-9 relative, so the default tolerance is
//! rtol 1e-6, atol 1e-8.
#![allow(dead_code)]
use crate::common::check::assert_close;
use crate::common::inputs::{normal, rng};
use crate::common::{compile, download, lit_as, upload};
use hlo::{Builder, Literal, ModuleBuilder, Shape, Value};
use rand::seq::index::sample;
use tpu::{Buffer, CompileOptions};

/// Tolerances and sampling of one check.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub rtol: f64,
    pub atol: f64,
    /// Relative step: h = step * max(1, |x_j|).
    pub step: f64,
    /// Coordinates checked per input: all when the input is no larger, else a random sample.
    pub max_coords: usize,
}

impl Default for Tol {
    fn default() -> Self {
        Self {
            rtol: 1e-6,
            atol: 1e-8,
            step: 1e-5,
            max_coords: 24,
        }
    }
}

pub type F<'a> = &'a dyn Fn(&Builder, &[Value]) -> hlo::Result<Value>;

fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf29ce484222325u64, |h, c| {
        (h ^ c as u64).wrapping_mul(0x100000001b3)
    })
}

/// `sum(f(params) * w)`, with `w` a random array of the output's shape seeded by `seed`.
pub fn weighted_loss(b: &Builder, ps: &[Value], f: F, seed: u64) -> hlo::Result<Value> {
    let y = f(b, ps)?;
    let a = b.array_shape(y, "loss")?;
    let w = normal(&mut rng(seed), a.num_elements() as usize);
    let w = b.constant(lit_as(a.ty, &w, &a.dims))?;
    let all: Vec<i64> = (0..a.rank() as i64).collect();
    b.reduce_sum(b.mul(y, w)?, &all)
}

/// A module with one parameter per input whose root is `body`'s values (a tuple when several).
pub fn module_of(
    inputs: &[Literal],
    body: impl FnOnce(&Builder, &[Value]) -> hlo::Result<Vec<Value>>,
) -> hlo::Result<hlo::Module> {
    let m = ModuleBuilder::new("grad_check");
    let b = m.builder("main");
    let ps = inputs
        .iter()
        .enumerate()
        .map(|(i, l)| b.parameter(Shape::Array(l.shape().clone()), &format!("p{i}")))
        .collect::<hlo::Result<Vec<_>>>()?;
    let outs = body(&b, &ps)?;
    let root = if outs.len() == 1 {
        outs[0]
    } else {
        b.tuple(&outs)?
    };
    let e = b.finish(root)?;
    m.build(e)
}

/// Runs a compiled program on literals, returning its flattened outputs.
pub fn run_exe(exe: &tpu::Executable, bufs: &[Buffer]) -> Vec<Literal> {
    let args: Vec<&Buffer> = bufs.iter().collect();
    exe.execute(&args)
        .unwrap_or_else(|e| panic!("execute failed: {e}"))
        .iter()
        .map(download)
        .collect()
}

/// The analytic gradients of `sum(f * w)` with respect to `wrt` (as f64 values).
pub fn analytic(name: &str, inputs: &[Literal], wrt: &[usize], f: F) -> Vec<Vec<f64>> {
    let seed = seed_of(name);
    let m = module_of(inputs, |b, ps| {
        let loss = weighted_loss(b, ps, f, seed)?;
        let w: Vec<Value> = wrt.iter().map(|&i| ps[i]).collect();
        let mut outs = vec![loss];
        outs.extend(b.grad(loss, &w)?);
        Ok(outs)
    })
    .unwrap_or_else(|e| panic!("{name}: building the gradient program failed: {e}"));
    let exe = compile(&m, &CompileOptions::default());
    let bufs: Vec<Buffer> = inputs.iter().map(|l| upload(l, 0)).collect();
    let out = run_exe(&exe, &bufs);
    for (k, &i) in wrt.iter().enumerate() {
        assert_eq!(
            out[k + 1].shape(),
            inputs[i].shape(),
            "{name}: gradient {k} has the wrong shape or type"
        );
    }
    out[1..].iter().map(|l| l.to_f64_vec()).collect()
}

/// Checks the gradient of `sum(f * w)` against central differences; returns the analytic
/// gradients.
#[track_caller]
pub fn check_with(name: &str, inputs: &[Literal], wrt: &[usize], f: F, tol: Tol) -> Vec<Vec<f64>> {
    let grads = analytic(name, inputs, wrt, f);
    let seed = seed_of(name);
    let m = module_of(inputs, |b, ps| Ok(vec![weighted_loss(b, ps, f, seed)?]))
        .unwrap_or_else(|e| panic!("{name}: building the loss program failed: {e}"));
    let exe = compile(&m, &CompileOptions::default());
    let mut bufs: Vec<Buffer> = inputs.iter().map(|l| upload(l, 0)).collect();
    let mut largest = 0f64;
    for (k, &i) in wrt.iter().enumerate() {
        let x = inputs[i].to_f64_vec();
        let (ty, dims) = (inputs[i].element_type(), inputs[i].shape().dims.clone());
        let coords: Vec<usize> = if x.len() <= tol.max_coords {
            (0..x.len()).collect()
        } else {
            let mut r = rng(seed ^ k as u64);
            let mut c = sample(&mut r, x.len(), tol.max_coords).into_vec();
            c.sort_unstable();
            c
        };
        let mut fd = Vec::with_capacity(coords.len());
        for &j in &coords {
            let h = tol.step * x[j].abs().max(1.0);
            let mut at = |v: f64| {
                let mut xs = x.clone();
                xs[j] = v;
                bufs[i] = upload(&lit_as(ty, &xs, &dims), 0);
                run_exe(&exe, &bufs)[0].to_f64_vec()[0]
            };
            let (plus, minus) = (at(x[j] + h), at(x[j] - h));
            fd.push((plus - minus) / (2.0 * h));
        }
        bufs[i] = upload(&inputs[i], 0);
        largest = fd.iter().fold(largest, |m, v| m.max(v.abs()));
        let got: Vec<f64> = coords.iter().map(|&j| grads[k][j]).collect();
        assert_close(
            &got,
            &fd,
            tol.atol,
            tol.rtol,
            &format!("{name}: d/d(input {i}) at coordinates {coords:?}"),
        );
    }
    assert!(
        largest > 1e-4,
        "{name}: every checked finite difference is ~0 ({largest}); the check would be vacuous"
    );
    grads
}

#[track_caller]
pub fn check(name: &str, inputs: &[Literal], wrt: &[usize], f: F) -> Vec<Vec<f64>> {
    check_with(name, inputs, wrt, f, Tol::default())
}

/// Random f64 input of `dims`: normal values times `scale` plus `shift`.
pub fn input(seed: u64, dims: &[i64], scale: f64, shift: f64) -> Literal {
    let n = dims.iter().product::<i64>() as usize;
    let v: Vec<f64> = normal(&mut rng(seed), n)
        .iter()
        .map(|x| x * scale + shift)
        .collect();
    lit_as(hlo::ElementType::F64, &v, dims)
}

/// Random f64 input of `dims` uniform in `[lo, hi)`.
pub fn uniform_input(seed: u64, dims: &[i64], lo: f64, hi: f64) -> Literal {
    let n = dims.iter().product::<i64>() as usize;
    let v = crate::common::inputs::uniform(&mut rng(seed), n, lo, hi);
    lit_as(hlo::ElementType::F64, &v, dims)
}

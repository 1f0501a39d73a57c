//! Small example programs with independent Rust references, used by `tpu-run demo`,
//! `tpu-run hlo dump` and `tpu-run selftest` (the GPU smoke run compares them across backends).
use anyhow::{anyhow, Result};
use half::bf16;
use hlo::ir::{DotDims, Precision};
use hlo::{ElementType, Module, ModuleBuilder, Shape};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Host data for one argument: f32 values (converted to the parameter's type on upload).
#[derive(Clone, Debug)]
pub struct HostArray {
    pub ty: ElementType,
    pub dims: Vec<i64>,
    pub values: Vec<f64>,
}

/// One example: a program, its inputs and the expected outputs with a tolerance.
pub struct Example {
    pub name: &'static str,
    pub about: &'static str,
    pub module: Module,
    pub inputs: Vec<HostArray>,
    /// Expected outputs, flattened, in output order, computed in f64 by plain Rust.
    pub expected: Vec<Vec<f64>>,
    /// Max allowed |got - want| / (1 + |want|).
    pub tolerance: f64,
}

pub const NAMES: [&str; 5] = ["mlp", "softmax", "embedding", "bf16-dot", "while"];

fn uniform(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

fn f32_round(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x as f32)).collect()
}

/// Builds example `name` with inputs drawn from `seed`.
pub fn example(name: &str, seed: u64) -> Result<Example> {
    let mut rng = StdRng::seed_from_u64(seed);
    match name {
        "mlp" => mlp(&mut rng),
        "softmax" => softmax(&mut rng),
        "embedding" => embedding(&mut rng),
        "bf16-dot" => bf16_dot(&mut rng),
        "while" => while_loop(&mut rng),
        other => Err(anyhow!(
            "unknown example '{other}'; choose one of {}",
            NAMES.join(", ")
        )),
    }
}

/// tanh(x @ w + b) and its row sums: dot, broadcast, add, tanh, reduce, tuple.
fn mlp(rng: &mut StdRng) -> Result<Example> {
    let (n, k, m) = (4usize, 8usize, 16usize);
    let mb = ModuleBuilder::new("mlp");
    let b = mb.builder("main");
    let x = b.parameter(
        Shape::array(ElementType::F32, vec![n as i64, k as i64]),
        "x",
    )?;
    let w = b.parameter(
        Shape::array(ElementType::F32, vec![k as i64, m as i64]),
        "w",
    )?;
    let bias = b.parameter(Shape::array(ElementType::F32, vec![m as i64]), "b")?;
    // Highest precision: full f32 products (GPUs otherwise use TF32 for f32 dots, ~1e-3 error).
    let dims = DotDims {
        lhs_contracting: vec![1],
        rhs_contracting: vec![0],
        ..Default::default()
    };
    let xw = b.dot_general(x, w, dims, [Precision::Highest; 2], None)?;
    let h = b.tanh(b.add(xw, b.broadcast_in_dim(bias, &[n as i64, m as i64], &[1])?)?)?;
    let s = b.reduce_sum(h, &[1])?;
    let root = b.tuple(&[h, s])?;
    let entry = b.finish(root)?;
    let module = mb.build(entry)?;

    let xv = f32_round(&uniform(rng, n * k, -1.0, 1.0));
    let wv = f32_round(&uniform(rng, k * m, -0.5, 0.5));
    let bv = f32_round(&uniform(rng, m, -0.5, 0.5));
    let mut hv = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            let dot: f64 = (0..k).map(|t| xv[i * k + t] * wv[t * m + j]).sum();
            hv[i * m + j] = (dot + bv[j]).tanh();
        }
    }
    let sv = (0..n)
        .map(|i| hv[i * m..(i + 1) * m].iter().sum())
        .collect();
    Ok(Example {
        name: "mlp",
        about: "tanh(x @ w + b) and its row sums",
        module,
        inputs: vec![
            HostArray {
                ty: ElementType::F32,
                dims: vec![n as i64, k as i64],
                values: xv,
            },
            HostArray {
                ty: ElementType::F32,
                dims: vec![k as i64, m as i64],
                values: wv,
            },
            HostArray {
                ty: ElementType::F32,
                dims: vec![m as i64],
                values: bv,
            },
        ],
        expected: vec![hv, sv],
        tolerance: 1e-5,
    })
}

/// A numerically stable softmax over the last axis, from primitives.
fn softmax(rng: &mut StdRng) -> Result<Example> {
    let (r, c) = (3usize, 10usize);
    let mb = ModuleBuilder::new("softmax");
    let b = mb.builder("main");
    let dims = [r as i64, c as i64];
    let x = b.parameter(Shape::array(ElementType::F32, dims.to_vec()), "x")?;
    let mx = b.broadcast_in_dim(b.reduce_max(x, &[1])?, &dims, &[0])?;
    let e = b.exp(b.sub(x, mx)?)?;
    let sum = b.broadcast_in_dim(b.reduce_sum(e, &[1])?, &dims, &[0])?;
    let entry = b.finish(b.div(e, sum)?)?;
    let module = mb.build(entry)?;
    let xv = f32_round(&uniform(rng, r * c, -4.0, 4.0));
    let mut want = vec![0.0; r * c];
    for i in 0..r {
        let row = &xv[i * c..(i + 1) * c];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
        for j in 0..c {
            want[i * c + j] = (row[j] - m).exp() / z;
        }
    }
    Ok(Example {
        name: "softmax",
        about: "softmax over the last axis (reduce-max, exp, reduce-sum, divide)",
        module,
        inputs: vec![HostArray {
            ty: ElementType::F32,
            dims: dims.to_vec(),
            values: xv,
        }],
        expected: vec![want],
        tolerance: 1e-6,
    })
}

/// Embedding lookup (gather) of token ids into a table, as BERT's first layer does.
fn embedding(rng: &mut StdRng) -> Result<Example> {
    let (vocab, width, tokens) = (20usize, 6usize, 7usize);
    let mb = ModuleBuilder::new("embedding");
    let b = mb.builder("main");
    let table = b.parameter(
        Shape::array(ElementType::F32, vec![vocab as i64, width as i64]),
        "table",
    )?;
    let ids = b.parameter(Shape::array(ElementType::S32, vec![tokens as i64]), "ids")?;
    let entry = b.finish(b.take(table, ids, 0)?)?;
    let module = mb.build(entry)?;
    let tv = f32_round(&uniform(rng, vocab * width, -1.0, 1.0));
    let idv: Vec<f64> = (0..tokens)
        .map(|_| f64::from(rng.gen_range(0..vocab as i32)))
        .collect();
    let want = idv
        .iter()
        .flat_map(|&i| tv[i as usize * width..(i as usize + 1) * width].to_vec())
        .collect();
    Ok(Example {
        name: "embedding",
        about: "gather rows of an embedding table by token id",
        module,
        inputs: vec![
            HostArray {
                ty: ElementType::F32,
                dims: vec![vocab as i64, width as i64],
                values: tv,
            },
            HostArray {
                ty: ElementType::S32,
                dims: vec![tokens as i64],
                values: idv,
            },
        ],
        expected: vec![want],
        tolerance: 0.0,
    })
}

/// bf16 inputs, f32 accumulation (the mixed-precision matmul BERT uses on accelerators).
fn bf16_dot(rng: &mut StdRng) -> Result<Example> {
    let (n, k, m) = (16usize, 64usize, 8usize);
    let mb = ModuleBuilder::new("bf16_dot");
    let b = mb.builder("main");
    let x = b.parameter(
        Shape::array(ElementType::Bf16, vec![n as i64, k as i64]),
        "x",
    )?;
    let w = b.parameter(
        Shape::array(ElementType::Bf16, vec![k as i64, m as i64]),
        "w",
    )?;
    let dims = DotDims {
        lhs_contracting: vec![1],
        rhs_contracting: vec![0],
        ..Default::default()
    };
    let y = b.dot_general(x, w, dims, [Precision::Default; 2], Some(ElementType::F32))?;
    let entry = b.finish(y)?;
    let module = mb.build(entry)?;
    let round = |v: Vec<f64>| {
        v.into_iter()
            .map(|x| bf16::from_f64(x).to_f64())
            .collect::<Vec<_>>()
    };
    let xv = round(uniform(rng, n * k, -1.0, 1.0));
    let wv = round(uniform(rng, k * m, -1.0, 1.0));
    let want = (0..n * m)
        .map(|ij| {
            (0..k)
                .map(|t| xv[ij / m * k + t] * wv[t * m + ij % m])
                .sum()
        })
        .collect();
    Ok(Example {
        name: "bf16-dot",
        about: "bf16 x bf16 matmul accumulated in f32",
        module,
        inputs: vec![
            HostArray {
                ty: ElementType::Bf16,
                dims: vec![n as i64, k as i64],
                values: xv,
            },
            HostArray {
                ty: ElementType::Bf16,
                dims: vec![k as i64, m as i64],
                values: wv,
            },
        ],
        expected: vec![want],
        tolerance: 1e-4,
    })
}

/// acc <- 0.5 * acc + x, ten times, in a while loop with an s32 counter.
fn while_loop(rng: &mut StdRng) -> Result<Example> {
    let n = 5usize;
    let trips = 10;
    let mb = ModuleBuilder::new("while");
    let state = Shape::Tuple(vec![
        Shape::scalar(ElementType::S32),
        Shape::array(ElementType::F32, vec![n as i64]),
        Shape::array(ElementType::F32, vec![n as i64]),
    ]);
    let cond = {
        let c = mb.builder("cond");
        let s = c.parameter(state.clone(), "state")?;
        let i = c.get_tuple_element(s, 0)?;
        c.finish(c.lt(i, c.scalar(trips)?)?)?
    };
    let body = {
        let c = mb.builder("body");
        let s = c.parameter(state.clone(), "state")?;
        let i = c.get_tuple_element(s, 0)?;
        let acc = c.get_tuple_element(s, 1)?;
        let x = c.get_tuple_element(s, 2)?;
        let next = c.add(c.mul(acc, c.scalar(0.5f32)?)?, x)?;
        c.finish(c.tuple(&[c.add(i, c.scalar(1i32)?)?, next, x])?)?
    };
    let b = mb.builder("main");
    let x = b.parameter(Shape::array(ElementType::F32, vec![n as i64]), "x")?;
    let init = b.tuple(&[b.scalar(0i32)?, b.zeros_like(x)?, x])?;
    let out = b.while_loop(cond, body, init)?;
    let entry = b.finish(b.get_tuple_element(out, 1)?)?;
    let module = mb.build(entry)?;
    let xv = f32_round(&uniform(rng, n, -2.0, 2.0));
    // Closed form: acc_T = x * (1 - 0.5^T) / (1 - 0.5).
    let want = xv
        .iter()
        .map(|v| v * (1.0 - 0.5f64.powi(trips)) / 0.5)
        .collect();
    Ok(Example {
        name: "while",
        about: "a counted while loop: acc = 0.5 * acc + x, ten times",
        module,
        inputs: vec![HostArray {
            ty: ElementType::F32,
            dims: vec![n as i64],
            values: xv,
        }],
        expected: vec![want],
        tolerance: 1e-5,
    })
}

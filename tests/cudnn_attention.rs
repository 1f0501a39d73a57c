//! cuDNN fused attention (hlo's `Builder::cudnn_attention`) on a CUDA device against an f64
//! reference: forward and gradients with a padding bias, and dropout whose backward sees the
//! forward's mask. XLA:CPU has no such kernel, so without a CUDA plugin and GPU these tests skip
//! (CI has neither); they run on the GPU machines (see BENCHMARKS.md).
mod common;

use common::check::assert_close;
use common::inputs::{normal, rng, to_bf16};
use half::bf16;
use hlo::ops::FusedAttention;
use hlo::{ElementType, Literal, Module, ModuleBuilder, Shape};
use tpu::plugin::{Plugin, PluginKind};
use tpu::{Buffer, Client, ClientOptions, CompileOptions, OptionOverride};

/// A client on the first CUDA device, or `None` (with the reason printed) where there is none.
fn cuda() -> Option<Client> {
    let plugin = match Plugin::discover(PluginKind::Cuda, None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipped: no CUDA PJRT plugin ({e})");
            return None;
        }
    };
    match Client::new(&plugin, &ClientOptions::default()) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("skipped: no CUDA device ({e})");
            None
        }
    }
}

fn run(client: &Client, m: &Module, inputs: &[Literal], times: usize) -> Vec<Vec<Vec<f64>>> {
    // As tpu_run::backend::compile_options_for does for the model: no cuDNN calls in command
    // buffers (recording one with dropout aborts XLA:GPU).
    let mut options = CompileOptions::default();
    options.env_option_overrides.insert(
        "xla_gpu_enable_command_buffer".into(),
        OptionOverride::Str("FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL".into()),
    );
    let exe = client
        .compile(&m.to_proto_bytes().expect("lowering"), &options)
        .unwrap_or_else(|e| panic!("compile failed: {e}"));
    let dev = client.addressable_devices().expect("devices")[0].clone();
    let bufs: Vec<Buffer> = inputs
        .iter()
        .map(|l| {
            client
                .buffer_from_host_bytes(l.element_type(), l.bytes(), &l.shape().dims, &dev)
                .expect("upload")
        })
        .collect();
    let args: Vec<&Buffer> = bufs.iter().collect();
    (0..times)
        .map(|_| {
            let outs = exe.execute(&args).expect("execute");
            outs.iter()
                .map(|b| {
                    let bytes = b.to_host_bytes().expect("download");
                    let shape = hlo::ArrayShape::new(b.element_type(), b.dims().to_vec());
                    Literal::from_bytes(shape, bytes)
                        .expect("bytes")
                        .to_f64_vec()
                })
                .collect()
        })
        .collect()
}

/// The program: context = attention(q, k, v, bias) and the gradients of sum(context * g).
fn attention_program(dims: [i64; 4], bias_dims: [i64; 4], attn: FusedAttention) -> Module {
    let [b_, t, n, h] = dims;
    let m = ModuleBuilder::new("attn");
    let b = m.builder("main");
    let bf = |d: &[i64]| Shape::array(ElementType::Bf16, d.to_vec());
    let q = b.parameter(bf(&dims), "q").unwrap();
    let k = b.parameter(bf(&dims), "k").unwrap();
    let v = b.parameter(bf(&dims), "v").unwrap();
    let bias = b.parameter(bf(&bias_dims), "bias").unwrap();
    let g = b
        .parameter(Shape::array(ElementType::F32, vec![b_, t, n, h]), "g")
        .unwrap();
    let ctx = b.cudnn_attention(q, k, v, bias, attn).unwrap();
    let weighted = b.mul(b.convert(ctx, ElementType::F32).unwrap(), g).unwrap();
    let loss = b.reduce_sum(weighted, &[0, 1, 2, 3]).unwrap();
    let grads = b.grad(loss, &[q, k, v]).unwrap();
    let root = b.tuple(&[ctx, grads[0], grads[1], grads[2]]).unwrap();
    let e = b.finish(root).unwrap();
    m.build(e).unwrap()
}

fn bf16_lit(v: &[f64], dims: &[i64]) -> Literal {
    Literal::from_slice(&to_bf16(v), dims).unwrap()
}

/// The arguments of [`attention_program`]: q, k, v and the bias in bf16, g in f32.
fn program_inputs(
    qkv: [&[f64]; 3],
    (bias, bias_dims): (&[f64], &[i64]),
    g: &[f64],
    dims: &[i64],
) -> Vec<Literal> {
    let mut inputs: Vec<Literal> = qkv.iter().map(|x| bf16_lit(x, dims)).collect();
    inputs.push(bf16_lit(bias, bias_dims));
    let g32: Vec<f32> = g.iter().map(|&x| x as f32).collect();
    inputs.push(Literal::from_slice(&g32, dims).unwrap());
    inputs
}

fn rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(bf16::from_f64(x))).collect()
}

/// f64 attention forward and gradients of sum(out * g), BTNH layout, bias `[B, 1, T, S]`.
#[allow(clippy::type_complexity)]
fn reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bias: &[f64],
    g: &[f64],
    [nb, t, n, h]: [usize; 4],
    scale: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let s = t;
    let at = |b: usize, i: usize, hd: usize, d: usize| ((b * t + i) * n + hd) * h + d;
    let (mut out, mut dq, mut dk, mut dv) = (
        vec![0.0; q.len()],
        vec![0.0; q.len()],
        vec![0.0; q.len()],
        vec![0.0; q.len()],
    );
    for b in 0..nb {
        for hd in 0..n {
            for i in 0..t {
                let mut p: Vec<f64> = (0..s)
                    .map(|j| {
                        let dot: f64 = (0..h)
                            .map(|d| q[at(b, i, hd, d)] * k[at(b, j, hd, d)])
                            .sum();
                        dot * scale + bias[(b * t + i) * s + j]
                    })
                    .collect();
                let max = p.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = p.iter().map(|x| (x - max).exp()).sum();
                p.iter_mut().for_each(|x| *x = (*x - max).exp() / z);
                for d in 0..h {
                    out[at(b, i, hd, d)] = (0..s).map(|j| p[j] * v[at(b, j, hd, d)]).sum();
                }
                // dP = g v^T, dS = P (dP - sum(P dP)).
                let dp: Vec<f64> = (0..s)
                    .map(|j| {
                        (0..h)
                            .map(|d| g[at(b, i, hd, d)] * v[at(b, j, hd, d)])
                            .sum()
                    })
                    .collect();
                let row: f64 = (0..s).map(|j| p[j] * dp[j]).sum();
                for j in 0..s {
                    let ds = p[j] * (dp[j] - row) * scale;
                    for d in 0..h {
                        dq[at(b, i, hd, d)] += ds * k[at(b, j, hd, d)];
                        dk[at(b, j, hd, d)] += ds * q[at(b, i, hd, d)];
                        dv[at(b, j, hd, d)] += p[j] * g[at(b, i, hd, d)];
                    }
                }
            }
        }
    }
    (out, dq, dk, dv)
}

#[test]
fn forward_and_gradients_match_an_f64_reference() {
    let Some(client) = cuda() else { return };
    let (nb, t, n, h) = (2usize, 128usize, 2usize, 64usize);
    let dims = [nb as i64, t as i64, n as i64, h as i64];
    let count = nb * t * n * h;
    let mut r = rng(5);
    let q = rounded(&normal(&mut r, count));
    let k = rounded(&normal(&mut r, count));
    let v = rounded(&normal(&mut r, count));
    let g = normal(&mut r, count);
    // BERT's padding bias: batch 0 sees all keys, batch 1 its first 77.
    let mut bias = vec![0.0; nb * t * t];
    for i in 0..t {
        for j in 77..t {
            bias[(t + i) * t + j] = -10000.0;
        }
    }
    let bias = rounded(&bias);
    let scale = 1.0 / (h as f64).sqrt();
    let attn = FusedAttention {
        scale,
        dropout_rate: 0.0,
        seed: 1,
    };
    let m = attention_program(dims, [nb as i64, 1, t as i64, t as i64], attn);
    let bias_dims = [nb as i64, 1, t as i64, t as i64];
    let inputs = program_inputs([&q, &k, &v], (&bias, &bias_dims), &g, &dims);
    let got = run(&client, &m, &inputs, 1).remove(0);
    let want = reference(&q, &k, &v, &bias, &g, [nb, t, n, h], scale);
    for (name, got, want) in [
        ("context", &got[0], &want.0),
        ("dq", &got[1], &want.1),
        ("dk", &got[2], &want.2),
        ("dv", &got[3], &want.3),
    ] {
        let top = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        // bf16 inputs/outputs (8 bits of mantissa) and bf16 probabilities inside the kernel.
        assert_close(got, want, 2e-2 * top, 2e-2, name);
    }
}

#[test]
fn dropout_masks_agree_between_forward_and_backward() {
    let Some(client) = cuda() else { return };
    // v = identity (S = H), so the context IS the dropped, rescaled probability matrix D(P),
    // and dv = D(P)^T g must equal context^T g if the backward regenerated the same mask.
    let (nb, t, n, h) = (2usize, 64usize, 1usize, 64usize);
    let dims = [nb as i64, t as i64, n as i64, h as i64];
    let count = nb * t * n * h;
    let mut r = rng(9);
    let q = rounded(&normal(&mut r, count));
    let k = rounded(&normal(&mut r, count));
    let v: Vec<f64> = (0..count)
        .map(|i| f64::from(u8::from((i / h) % t == i % h)))
        .collect();
    let g = normal(&mut r, count);
    let rate = 0.2;
    let attn = FusedAttention {
        scale: 0.125,
        dropout_rate: rate,
        seed: 1234,
    };
    let m = attention_program(dims, [1, 1, t as i64, t as i64], attn);
    let zero_bias = vec![0.0; t * t];
    let inputs = program_inputs(
        [&q, &k, &v],
        (&zero_bias, &[1, 1, t as i64, t as i64]),
        &g,
        &dims,
    );
    let runs = run(&client, &m, &inputs, 2);
    let (ctx, dv) = (&runs[0][0], &runs[0][3]);
    let dropped = ctx.iter().filter(|&&x| x == 0.0).count() as f64 / ctx.len() as f64;
    assert!(
        (dropped - rate).abs() < 0.03,
        "fraction dropped {dropped}, rate {rate}"
    );
    // ctx[b, i, 0, j] = D(P)[b, i, j]; dv[b, j, 0, d] = sum_i D(P)[b, i, j] g[b, i, 0, d].
    let mut want = vec![0.0; count];
    for b in 0..nb {
        for j in 0..t {
            for d in 0..h {
                want[(b * t + j) * h + d] = (0..t)
                    .map(|i| ctx[(b * t + i) * h + j] * g[(b * t + i) * h + d])
                    .sum();
            }
        }
    }
    let top = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert_close(dv, &want, 2e-2 * top, 2e-2, "dv vs context^T g");
    assert_ne!(
        runs[0][0], runs[1][0],
        "a second execution draws a new dropout mask"
    );
}

//! Compiler-stage benches: building + lowering a 1,000-op graph, and compiling a small MLP
//! through the CPU plugin.
use criterion::{criterion_group, criterion_main, Criterion};
use hlo::{ElementType, Module, ModuleBuilder, Shape};
use std::hint::black_box;
use tpu::{Client, ClientOptions, CompileOptions};

/// A chain of 1,000 elementwise/broadcast/reduce ops over f32[64,64].
fn thousand_ops() -> hlo::Result<Module> {
    let mb = ModuleBuilder::new("thousand");
    let b = mb.builder("main");
    let x = b.parameter(Shape::array(ElementType::F32, vec![64, 64]), "x")?;
    let mut v = x;
    let mut count = 1;
    while count < 1000 {
        let t = b.tanh(v)?;
        let s = b.reduce_sum(t, &[1])?;
        let bs = b.broadcast_in_dim(s, &[64, 64], &[0])?;
        v = b.add(b.mul(t, bs)?, x)?;
        count += 5;
    }
    let entry = b.finish(v)?;
    mb.build(entry)
}

fn mlp() -> hlo::Result<Module> {
    let mb = ModuleBuilder::new("mlp");
    let b = mb.builder("main");
    let x = b.parameter(Shape::array(ElementType::F32, vec![32, 256]), "x")?;
    let mut h = x;
    for i in 0..3 {
        let w = b.parameter(
            Shape::array(ElementType::F32, vec![256, 256]),
            &format!("w{i}"),
        )?;
        h = b.tanh(b.matmul(h, w)?)?;
    }
    let out = b.reduce_sum(h, &[0, 1])?;
    let entry = b.finish(out)?;
    mb.build(entry)
}

fn bench(c: &mut Criterion) {
    c.bench_function("build_and_lower_1000_ops", |bch| {
        bch.iter(|| {
            let m = thousand_ops().expect("build");
            black_box(m.to_proto_bytes().expect("lower"))
        })
    });
    let client = Client::cpu(&ClientOptions::cpu(1)).expect("CPU plugin");
    let bytes = mlp().expect("build").to_proto_bytes().expect("lower");
    let mut g = c.benchmark_group("xla_cpu");
    g.sample_size(10);
    g.bench_function("compile_mlp_3x256", |bch| {
        bch.iter(|| {
            black_box(
                client
                    .compile(&bytes, &CompileOptions::default())
                    .expect("compile"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

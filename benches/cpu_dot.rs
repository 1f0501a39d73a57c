//! A 1024^3 f32 dot through the CPU plugin; criterion reports time, GFLOP/s = 2*1024^3 / time.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hlo::{ElementType, ModuleBuilder, Shape};
use rand::{Rng, SeedableRng};
use tpu::{Client, ClientOptions, CompileOptions};

const N: i64 = 1024;

fn bench(c: &mut Criterion) {
    let mb = ModuleBuilder::new("dot1024");
    let b = mb.builder("main");
    let shape = Shape::array(ElementType::F32, vec![N, N]);
    let x = b.parameter(shape.clone(), "x").expect("param");
    let y = b.parameter(shape, "y").expect("param");
    let entry = b.finish(b.matmul(x, y).expect("dot")).expect("finish");
    let bytes = mb
        .build(entry)
        .expect("build")
        .to_proto_bytes()
        .expect("lower");

    let client = Client::cpu(&ClientOptions::cpu(1)).expect("CPU plugin");
    let dev = client.addressable_devices().expect("devices").remove(0);
    let exe = client
        .compile(&bytes, &CompileOptions::default())
        .expect("compile");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let data: Vec<f32> = (0..N * N).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let a = client
        .buffer_from_host(&data, &[N, N], &dev)
        .expect("upload");
    let bb = client
        .buffer_from_host(&data, &[N, N], &dev)
        .expect("upload");

    let mut g = c.benchmark_group("xla_cpu");
    g.sample_size(20);
    // Elements = flops, so criterion's "elem/s" reads as FLOP/s.
    g.throughput(Throughput::Elements((2 * N * N * N) as u64));
    g.bench_function("dot_f32_1024", |bch| {
        bch.iter(|| {
            let out = exe.execute(&[&a, &bb]).expect("execute");
            out[0].block_until_ready().expect("ready");
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

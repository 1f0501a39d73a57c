//! Building + differentiating + lowering the train step of a 12-layer, 768-hidden transformer
//! encoder (BERT-base shapes, seq 128, batch 8): the forward, the backward by autodiff,
//! clipping, the BERT schedule and AdamWeightDecay for ~200 parameter tensors, lowered to
//! HloModuleProto bytes. Target: under 1 s on one core (this work is single-threaded).
//!
//! The XLA compile of the same program is timed once, outside criterion, when
//! `TRAIN_BENCH_COMPILE=1` (it takes far longer than the build and is reported separately).
#[path = "../tests/train_support/encoder.rs"]
mod encoder;
use criterion::{criterion_group, criterion_main, Criterion};
use encoder::EncoderConfig;
use std::hint::black_box;
use std::time::Instant;
use tpu::{Client, ClientOptions, CompileOptions};
use tpu_run::train::{
    autodiff, build_train_step, AdamWeightDecay, Policy, Schedule, StepConfig, TrainProgram,
};

fn build(policy: Policy) -> TrainProgram {
    let c = EncoderConfig::bert_base(128, 8);
    let config = StepConfig::new(
        AdamWeightDecay::default(),
        Schedule::bert(1e-4, 10_000, 1_000_000),
    )
    .with_policy(policy.clone());
    build_train_step(
        "bert_base_train_step",
        &encoder::param_specs(&c),
        &encoder::batch_specs(&c),
        &config,
        &autodiff(encoder::loss_fn(c, policy)),
    )
    .expect("build the train step")
}

fn bench(c: &mut Criterion) {
    let p = build(Policy::f32());
    let bytes = p.module.to_proto_bytes().expect("lower");
    eprintln!(
        "train step: {} parameter tensors, {} instructions, {} computations, {:.1} MB of HloModuleProto",
        p.layout.params.len(),
        p.module.instruction_count(),
        p.module.computations.len(),
        bytes.len() as f64 / 1e6
    );
    let mut g = c.benchmark_group("train_step_12x768");
    g.sample_size(20);
    g.bench_function("build_and_differentiate_f32", |bch| {
        bch.iter(|| black_box(build(Policy::f32())))
    });
    g.bench_function("build_differentiate_lower_f32", |bch| {
        bch.iter(|| black_box(build(Policy::f32()).module.to_proto_bytes().expect("lower")))
    });
    g.bench_function("build_differentiate_lower_bf16", |bch| {
        bch.iter(|| {
            black_box(
                build(Policy::bf16())
                    .module
                    .to_proto_bytes()
                    .expect("lower"),
            )
        })
    });
    g.bench_function("lower_only_f32", |bch| {
        bch.iter(|| black_box(p.module.to_proto_bytes().expect("lower")))
    });
    g.finish();

    if std::env::var("TRAIN_BENCH_COMPILE").as_deref() == Ok("1") {
        let client = Client::cpu(&ClientOptions::cpu(1)).expect("CPU plugin");
        let t = Instant::now();
        let exe = client
            .compile(&bytes, &CompileOptions::default())
            .expect("XLA compile");
        eprintln!(
            "XLA CPU compile of the f32 train step: {:.1} s",
            t.elapsed().as_secs_f64()
        );
        drop(exe);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

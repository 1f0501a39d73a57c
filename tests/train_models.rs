//! Models trained end to end with autodiff gradients on the CPU plugin: a 2-layer MLP and a
//! one-block transformer encoder, on synthetic tasks with known solutions, to stated losses;
//! the same seed gives bit-identical losses.
mod common;
#[path = "train_support/encoder.rs"]
mod encoder;
use common::client;
use common::inputs::{normal, rng};
use encoder::EncoderConfig;
use hlo::{Builder, ElementType, Literal};
use rand::Rng;
use tpu_run::train::{
    autodiff, build_train_step, AdamW, AdamWeightDecay, Batch, BatchSpec, LossAndMetrics,
    ParamSpec, Params, Policy, Schedule, StepConfig, Trainer,
};

// ---- 2-layer MLP: 8 features -> 32 tanh -> 4 classes; labels from a fixed linear teacher ----

const FEATURES: i64 = 8;
const HIDDEN: i64 = 32;
const CLASSES: i64 = 4;
const MLP_BATCH: i64 = 64;

fn mlp_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("hidden/kernel", &[FEATURES, HIDDEN]),
        ParamSpec::new("hidden/bias", &[HIDDEN]),
        ParamSpec::new("logits/kernel", &[HIDDEN, CLASSES]),
        ParamSpec::new("logits/bias", &[CLASSES]),
    ]
}

fn mlp_loss(
    policy: Policy,
) -> impl Fn(&Builder, &Params, &Batch) -> anyhow::Result<LossAndMetrics> {
    move |b, p, batch| {
        let x = policy.cast(b, batch.get("x")?)?;
        let labels = batch.get("labels")?;
        let dense = |x, name: &str, n: i64| -> anyhow::Result<hlo::Value> {
            let y = policy.matmul_f32(b, x, p.get(&format!("{name}/kernel"))?)?;
            let bias = b.convert(p.get(&format!("{name}/bias"))?, ElementType::F32)?;
            Ok(b.add(y, b.broadcast_in_dim(bias, &[MLP_BATCH, n], &[1])?)?)
        };
        let h = policy.cast(b, b.tanh(dense(x, "hidden", HIDDEN)?)?)?;
        let logits = dense(h, "logits", CLASSES)?;
        let logp = b.log_softmax(logits, 1)?;
        let onehot = b.one_hot(labels, CLASSES, ElementType::F32, 1.0, 0.0)?;
        let n = b.scalar_of(ElementType::F32, MLP_BATCH as f64)?;
        let loss = b.div(b.neg(b.reduce_sum(b.mul(logp, onehot)?, &[0, 1])?)?, n)?;
        let hit = b.eq(b.argmax(logits, 1, ElementType::S32)?, labels)?;
        let acc = b.div(b.reduce_sum(b.convert(hit, ElementType::F32)?, &[0])?, n)?;
        Ok((loss, vec![("accuracy".to_string(), acc)]))
    }
}

fn mlp_init(seed: u64) -> Vec<Literal> {
    let mut r = rng(seed);
    mlp_params()
        .iter()
        .map(|p| {
            let n = p.shape.num_elements() as usize;
            let fan_in = p.shape.dims[0] as f64;
            let v: Vec<f32> = if p.name.ends_with("bias") {
                vec![0.0; n]
            } else {
                normal(&mut r, n)
                    .iter()
                    .map(|x| (x / fan_in.sqrt()) as f32)
                    .collect()
            };
            Literal::from_slice(&v, &p.shape.dims).unwrap()
        })
        .collect()
}

/// Batch `k` of the teacher task: x ~ N(0, 1), label = argmax(x @ T).
fn mlp_batch(k: u64) -> Vec<Literal> {
    let teacher = normal(&mut rng(99), (FEATURES * CLASSES) as usize);
    let x = normal(&mut rng(1000 + k), (MLP_BATCH * FEATURES) as usize);
    let labels: Vec<i32> = (0..MLP_BATCH as usize)
        .map(|i| {
            let score = |c: usize| -> f64 {
                (0..FEATURES as usize)
                    .map(|f| x[i * FEATURES as usize + f] * teacher[f * CLASSES as usize + c])
                    .sum()
            };
            (0..CLASSES as usize)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                .unwrap() as i32
        })
        .collect();
    let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    vec![
        Literal::from_slice(&x, &[MLP_BATCH, FEATURES]).unwrap(),
        Literal::from_slice(&labels, &[MLP_BATCH]).unwrap(),
    ]
}

/// Trains the MLP for `steps` steps; returns the losses and the final accuracy.
fn train_mlp(policy: Policy, steps: u64) -> (Vec<f32>, f32) {
    let batch = [
        BatchSpec::new("x", ElementType::F32, &[MLP_BATCH, FEATURES]),
        BatchSpec::new("labels", ElementType::S32, &[MLP_BATCH]),
    ];
    let config = StepConfig::new(AdamW::default(), Schedule::bert(0.02, 20, steps))
        .with_policy(policy.clone());
    let program = build_train_step(
        "mlp",
        &mlp_params(),
        &batch,
        &config,
        &autodiff(mlp_loss(policy)),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let mut t = Trainer::new(client(), &program, &mlp_init(1)).unwrap();
    let mut losses = vec![];
    let mut acc = 0.0;
    for k in 0..steps {
        let m = t.step_host(&mlp_batch(k)).unwrap();
        losses.push(m.loss);
        acc = m.get("accuracy").unwrap();
    }
    (losses, acc)
}

fn tail_mean(v: &[f32], n: usize) -> f32 {
    v[v.len() - n..].iter().sum::<f32>() / n as f32
}

#[test]
fn mlp_learns_the_teacher_task() {
    let (losses, acc) = train_mlp(Policy::f32(), 300);
    let (first, last) = (losses[0], tail_mean(&losses, 20));
    eprintln!("MLP f32: loss {first} -> {last} (mean of the last 20), accuracy {acc}");
    assert!((first - 4f32.ln()).abs() < 0.3, "starts near ln 4: {first}");
    assert!(last < 0.15, "mean loss of the last 20 steps: {last}");
    let (again, _) = train_mlp(Policy::f32(), 300);
    assert_eq!(losses, again, "the same seed gives bit-identical losses");
}

#[test]
fn mlp_learns_in_bf16() {
    let (losses, acc) = train_mlp(Policy::bf16(), 300);
    let last = tail_mean(&losses, 20);
    eprintln!("MLP bf16: loss {} -> {last}, accuracy {acc}", losses[0]);
    assert!(last < 0.15, "mean loss of the last 20 steps: {last}");
}

// ---- one transformer block: predict the previous token ----

fn block_config() -> EncoderConfig {
    EncoderConfig {
        vocab: 16,
        hidden: 32,
        layers: 1,
        heads: 2,
        ffn: 64,
        seq: 8,
        batch: 16,
    }
}

/// Random tokens; the label at position i is the token at i - 1 (position 0: itself).
fn copy_batch(c: &EncoderConfig, k: u64) -> Vec<Literal> {
    let mut r = rng(5000 + k);
    let n = (c.batch * c.seq) as usize;
    let ids: Vec<i32> = (0..n).map(|_| r.gen_range(0..c.vocab as i32)).collect();
    let labels: Vec<i32> = (0..n)
        .map(|i| {
            if i as i64 % c.seq == 0 {
                ids[i]
            } else {
                ids[i - 1]
            }
        })
        .collect();
    let dims = [c.batch, c.seq];
    vec![
        Literal::from_slice(&ids, &dims).unwrap(),
        Literal::from_slice(&labels, &dims).unwrap(),
    ]
}

fn train_block(c: EncoderConfig, policy: Policy, steps: u64, accumulate: u32) -> (Vec<f32>, f32) {
    let config = StepConfig::new(AdamWeightDecay::default(), Schedule::bert(3e-3, 30, steps))
        .with_policy(policy.clone())
        .with_accumulation(accumulate);
    let micro = EncoderConfig {
        batch: c.batch / i64::from(accumulate),
        ..c
    };
    let program = build_train_step(
        "block",
        &encoder::param_specs(&micro),
        &encoder::batch_specs(&micro),
        &config,
        &autodiff(encoder::loss_fn(micro, policy)),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let mut t = Trainer::new(client(), &program, &encoder::init_params(&c, 3)).unwrap();
    let mut losses = vec![];
    let mut acc = 0.0;
    for k in 0..steps {
        let mut batch = copy_batch(&c, k);
        if accumulate > 1 {
            batch = batch
                .iter()
                .map(|l| {
                    let dims = [i64::from(accumulate), micro.batch, c.seq];
                    Literal::from_bytes(
                        hlo::ArrayShape::new(l.element_type(), dims.to_vec()),
                        l.bytes().to_vec(),
                    )
                    .unwrap()
                })
                .collect();
        }
        let m = t.step_host(&batch).unwrap();
        losses.push(m.loss);
        acc = m.get("accuracy").unwrap();
    }
    (losses, acc)
}

#[test]
fn transformer_block_learns_to_copy_the_previous_token() {
    let (losses, acc) = train_block(block_config(), Policy::f32(), 200, 1);
    let last = tail_mean(&losses, 20);
    eprintln!("block f32: loss {} -> {last}, accuracy {acc}", losses[0]);
    assert!(
        (losses[0] - 16f32.ln()).abs() < 0.3,
        "starts near ln 16: {}",
        losses[0]
    );
    assert!(last < 0.05, "mean loss of the last 20 steps: {last}");
    let (again, _) = train_block(block_config(), Policy::f32(), 200, 1);
    assert_eq!(losses, again, "the same seed gives bit-identical losses");
}

#[test]
fn transformer_block_learns_in_bf16() {
    // XLA:CPU has no bf16 x bf16 -> f32 dot kernel for some of the backward dots, so the dots
    // take the bf16-rounded inputs in f32 (the same forward numbers).
    let policy = Policy::bf16().with_upcast_dots();
    let (losses, acc) = train_block(block_config(), policy, 200, 1);
    let last = tail_mean(&losses, 20);
    eprintln!("block bf16: loss {} -> {last}, accuracy {acc}", losses[0]);
    assert!(last < 0.1, "mean loss of the last 20 steps: {last}");
}

#[test]
fn accumulated_micro_batches_follow_the_big_batch_run() {
    // 4 steps of 16 sequences, as one batch and as 4 accumulated micro-batches of 4.
    let (big, _) = train_block(block_config(), Policy::f32(), 4, 1);
    let (acc, _) = train_block(block_config(), Policy::f32(), 4, 4);
    eprintln!("big batch {big:?}\naccumulated {acc:?}");
    for (a, b) in acc.iter().zip(&big) {
        assert!((a - b).abs() <= 2e-5 * b.abs(), "{acc:?} vs {big:?}");
    }
}

/// (lhs type, rhs type, result type) of every dot in the module.
fn dot_types(m: &hlo::Module) -> Vec<(ElementType, ElementType, ElementType)> {
    let ty = |s: &hlo::Shape| s.as_array().map(|a| a.ty).unwrap_or(ElementType::Pred);
    let mut out = vec![];
    for c in &m.computations {
        for i in &c.instrs {
            if let hlo::ir::Op::Dot { .. } = i.op {
                let (l, r) = (c.instr(i.operands[0]), c.instr(i.operands[1]));
                out.push((ty(&l.shape), ty(&r.shape), ty(&i.shape)));
            }
        }
    }
    out
}

#[test]
fn bf16_policy_runs_dots_on_bf16_inputs_with_f32_results() {
    let c = block_config();
    let build = |policy: Policy| {
        let config = StepConfig::new(AdamWeightDecay::default(), Schedule::Constant { lr: 1e-3 })
            .with_policy(policy.clone());
        build_train_step(
            "block",
            &encoder::param_specs(&c),
            &encoder::batch_specs(&c),
            &config,
            &autodiff(encoder::loss_fn(c, policy)),
        )
        .unwrap()
    };
    use ElementType::{Bf16, F32};
    let native = build(Policy::bf16());
    let dots = dot_types(&native.module);
    // 9 forward dots (q, k, v, scores, context, attention output, 2 FFN, logits) and up to two
    // backward dots for each.
    assert!(dots.len() >= 20, "{dots:?}");
    assert!(dots.iter().all(|&d| d == (Bf16, Bf16, F32)), "{dots:?}");
    let upcast = build(Policy::bf16().with_upcast_dots());
    assert!(dot_types(&upcast.module)
        .iter()
        .all(|&d| d == (F32, F32, F32)));
    // Master weights and optimizer state stay f32.
    for s in &native.layout.opt_state {
        assert_eq!(s.shape.ty, F32, "{}", s.name);
    }
    for p in &native.layout.params {
        assert_eq!(p.shape.ty, F32);
    }
}

//! The whole step program (gradients, clipping, schedule, optimizer, donation) with a
//! hand-written gradient for a linear model, against an f64 host reference of the same step.
mod common;
use common::check::assert_close;
use common::inputs::{normal, rng};
use common::*;
use hlo::{Builder, ElementType, Literal, Value};
use tpu::{Buffer, CompileOptions};
use tpu_run::train::session::{run_steps, SessionSteps, Staged};
use tpu_run::train::{
    build_train_step, manual_gradients, AdamWeightDecay, Batch, BatchSpec, DynamicLossScale,
    LossAndGrads, LossScale, ParamSpec, Params, Policy, Schedule, StepConfig, TrainProgram,
    Trainer,
};

const D: i64 = 6; // features
const O: i64 = 3; // outputs

fn param_specs() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("dense/kernel", &[D, O]),
        ParamSpec::new("dense/bias", &[O]),
    ]
}

fn batch_specs(n: i64) -> Vec<BatchSpec> {
    vec![
        BatchSpec::new("x", ElementType::F32, &[n, D]),
        BatchSpec::new("y", ElementType::F32, &[n, O]),
    ]
}

/// loss = 0.5 * mean((x W + b - y)^2), computed in the type of the parameters it is given;
/// its gradient written out by hand: r = (xW + b - y) / (n O), dW = x^T r, db = sum_rows r.
fn linear_loss_and_grads(
    b: &Builder,
    p: &Params,
    batch: &Batch,
    seed: Value,
) -> anyhow::Result<LossAndGrads> {
    let w = p.get("dense/kernel")?;
    let bias = p.get("dense/bias")?;
    let ty = b.element_type(w)?;
    let x = b.convert(batch.get("x")?, ty)?;
    let y = b.convert(batch.get("y")?, ty)?;
    let dims = b.dims(y)?;
    let count = (dims[0] * dims[1]) as f64;
    let pred = b.add(b.matmul(x, w)?, b.broadcast_in_dim(bias, &dims, &[1])?)?;
    let r = b.sub(pred, y)?;
    let r32 = b.convert(r, ElementType::F32)?;
    let sq = b.reduce_sum(b.mul(r32, r32)?, &[0, 1])?;
    let mse = b.div(sq, b.scalar_of(ElementType::F32, count)?)?;
    let loss = b.mul(mse, b.scalar_of(ElementType::F32, 0.5)?)?;
    // d(seed * loss)/d(pred) = seed * r / count, in the compute type.
    let scale = b.div(b.convert(seed, ty)?, b.scalar_of(ty, count)?)?;
    let dpred = b.mul(r, scale)?;
    let dw = b.matmul(b.transpose(x, &[1, 0])?, dpred)?;
    let db = b.reduce_sum(dpred, &[0])?;
    Ok(LossAndGrads {
        loss,
        metrics: vec![("mse".into(), mse)],
        grads: vec![dw, db],
    })
}

fn build(config: &StepConfig, n: i64) -> TrainProgram {
    let source = manual_gradients(linear_loss_and_grads);
    build_train_step("linear", &param_specs(), &batch_specs(n), config, &source)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Random initial parameters, f32.
fn init_params(seed: u64) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    param_specs()
        .iter()
        .map(|p| {
            let n = p.shape.num_elements() as usize;
            normal(&mut r, n).iter().map(|x| (x * 0.3) as f32).collect()
        })
        .collect()
}

fn param_literals(v: &[Vec<f32>]) -> Vec<Literal> {
    v.iter()
        .zip(param_specs())
        .map(|(v, p)| lit(v, &p.shape.dims))
        .collect()
}

/// A synthetic regression batch: y = x W* + b* + noise.
fn batch(seed: u64, n: i64) -> (Vec<f32>, Vec<f32>) {
    let mut r = rng(1000 + seed);
    let x = normal(&mut r, (n * D) as usize);
    let wstar: Vec<f64> = (0..D * O).map(|i| ((i % 5) as f64 - 2.0) * 0.5).collect();
    let noise = normal(&mut r, (n * O) as usize);
    let mut y = vec![0.0; (n * O) as usize];
    for i in 0..n as usize {
        for o in 0..O as usize {
            let mut s = 0.2 * o as f64 + 0.01 * noise[i * O as usize + o];
            for d in 0..D as usize {
                s += x[i * D as usize + d] * wstar[d * O as usize + o];
            }
            y[i * O as usize + o] = s;
        }
    }
    let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect();
    (f(&x), f(&y))
}

fn batch_literals(seed: u64, n: i64) -> Vec<Literal> {
    let (x, y) = batch(seed, n);
    vec![lit(&x, &[n, D]), lit(&y, &[n, O])]
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// f64 reference of one step: (W, b, m/v slots, step, x, y) -> (W', b', slots', loss, norm, lr).
struct RefStep {
    params: Vec<Vec<f64>>,
    slots: Vec<Vec<f64>>,
    loss: f64,
    norm: f64,
    lr: f64,
}

fn reference_step(
    params: &[Vec<f64>],
    slots: &[Vec<f64>],
    step: i32,
    x: &[f64],
    y: &[f64],
    n: usize,
) -> RefStep {
    let (d, o) = (D as usize, O as usize);
    let (w, bias) = (&params[0], &params[1]);
    let mut r = vec![0.0; n * o];
    for i in 0..n {
        for j in 0..o {
            let mut s = bias[j];
            for k in 0..d {
                s += x[i * d + k] * w[k * o + j];
            }
            r[i * o + j] = s - y[i * o + j];
        }
    }
    let count = (n * o) as f64;
    let loss = 0.5 * r.iter().map(|a| a * a).sum::<f64>() / count;
    let mut gw = vec![0.0; d * o];
    let mut gb = vec![0.0; o];
    for i in 0..n {
        for j in 0..o {
            let dr = r[i * o + j] / count;
            gb[j] += dr;
            for k in 0..d {
                gw[k * o + j] += x[i * d + k] * dr;
            }
        }
    }
    // tf.clip_by_global_norm(grads, 1.0)
    let norm = gw.iter().chain(&gb).map(|g| g * g).sum::<f64>().sqrt();
    let s = 1.0 / norm.max(1.0);
    let grads = [gw, gb].map(|g| g.iter().map(|v| v * s).collect::<Vec<f64>>());
    // BERT schedule: init 0.05, warmup 3, total 20.
    let st = f64::from(step);
    let lr = if st < 3.0 {
        0.05 * st / 3.0
    } else {
        0.05 * (1.0 - st.min(20.0) / 20.0)
    };
    // AdamWeightDecay; the bias is not decayed.
    let mut new_params = vec![];
    let mut new_slots = vec![];
    for (i, (p, g)) in params.iter().zip(&grads).enumerate() {
        let decay = if i == 0 { 0.01 } else { 0.0 };
        let (m, v) = (&slots[2 * i], &slots[2 * i + 1]);
        let m2: Vec<f64> = (0..p.len()).map(|k| 0.9 * m[k] + 0.1 * g[k]).collect();
        let v2: Vec<f64> = (0..p.len())
            .map(|k| 0.999 * v[k] + 0.001 * g[k] * g[k])
            .collect();
        let p2 = (0..p.len())
            .map(|k| p[k] - lr * (m2[k] / (v2[k].sqrt() + 1e-6) + decay * p[k]))
            .collect();
        new_params.push(p2);
        new_slots.push(m2);
        new_slots.push(v2);
    }
    RefStep {
        params: new_params,
        slots: new_slots,
        loss,
        norm,
        lr,
    }
}

fn bert_config() -> StepConfig {
    StepConfig::new(AdamWeightDecay::default(), Schedule::bert(0.05, 3, 20))
}

fn f64s_of(l: &[Literal]) -> Vec<Vec<f64>> {
    l.iter().map(|l| l.to_f64_vec()).collect()
}

#[test]
fn steps_match_the_f64_reference() {
    let n = 16;
    let program = build(&bert_config(), n);
    assert_eq!(
        program.layout.metric_names,
        ["mse", "learning_rate", "grad_norm"]
    );
    let mut t = Trainer::new(client(), &program, &param_literals(&init_params(1))).unwrap();
    for k in 0..8 {
        let params = f64s_of(&t.params().unwrap());
        let slots = f64s_of(&t.opt_state().unwrap());
        let (x, y) = batch(k, n);
        let step = t.step_count().unwrap();
        assert_eq!(step, k as i32);
        let want = reference_step(&params, &slots, step, &widen(&x), &widen(&y), n as usize);
        let m = t.step_host(&batch_literals(k, n)).unwrap();
        let what = |s: &str| format!("step {k}: {s}");
        assert_close(&[f64::from(m.loss)], &[want.loss], 0.0, 1e-5, &what("loss"));
        let mse = f64::from(m.get("mse").unwrap());
        assert_close(&[mse], &[2.0 * want.loss], 0.0, 1e-5, &what("mse"));
        let lr = f64::from(m.get("learning_rate").unwrap());
        assert_close(&[lr], &[want.lr], 1e-12, 1e-6, &what("lr"));
        let norm = f64::from(m.get("grad_norm").unwrap());
        assert_close(&[norm], &[want.norm], 0.0, 1e-5, &what("grad norm"));
        for (g, w) in f64s_of(&t.params().unwrap()).iter().zip(&want.params) {
            assert_close(g, w, 1e-6, 1e-5, &what("params"));
        }
        for (g, w) in f64s_of(&t.opt_state().unwrap()).iter().zip(&want.slots) {
            assert_close(g, w, 1e-9, 1e-5, &what("optimizer state"));
        }
    }
    assert_eq!(t.step_count().unwrap(), 8);
}

#[test]
fn training_reduces_the_loss_and_is_deterministic() {
    let n = 32;
    let config = StepConfig::new(
        AdamWeightDecay {
            weight_decay: tpu_run::train::WeightDecay::none(),
            ..Default::default()
        },
        Schedule::Constant { lr: 0.05 },
    );
    let program = build(&config, n);
    let run = || {
        let mut t = Trainer::new(client(), &program, &param_literals(&init_params(2))).unwrap();
        let losses: Vec<f32> = (0..150)
            .map(|k| t.step_host(&batch_literals(k % 10, n)).unwrap().loss)
            .collect();
        (losses, t.params().unwrap())
    };
    let (a, pa) = run();
    let (b, pb) = run();
    assert_eq!(a, b, "losses are identical across runs");
    assert_eq!(pa, pb, "parameters are identical across runs");
    // The noise floor is 0.5 * 0.01^2 = 5e-5; from about 1.3 at the start.
    assert!(a[0] > 0.5, "first loss {}", a[0]);
    let last = a[140..].iter().fold(0f32, |m, &l| m.max(l));
    eprintln!(
        "linear model: loss {} -> {last} (max of the last 10 steps)",
        a[0]
    );
    assert!(last < 3e-4, "loss after 140 steps: {last}");
}

#[test]
fn state_inputs_are_donated() {
    let n = 4;
    let program = build(&bert_config(), n);
    let layout = &program.layout;
    assert_eq!(layout.num_state(), 6); // W, b, and m, v for each
    let mut aliased: Vec<(i64, u32)> = program
        .module
        .aliases
        .iter()
        .map(|a| (a.output_index[0], a.param_number))
        .collect();
    aliased.sort();
    let want: Vec<(i64, u32)> = (0..6)
        .map(|i| (i, i as u32))
        .chain([(6, layout.step_input() as u32)])
        .collect();
    assert_eq!(aliased, want);

    let exe = compile(&program.module, &CompileOptions::default());
    let mut args: Vec<Literal> = param_literals(&init_params(3));
    args.extend(layout.initial_opt_state().unwrap());
    args.extend(batch_literals(0, n));
    args.push(Literal::scalar(0i32));
    let bufs: Vec<Buffer> = args.iter().map(|l| upload(l, 0)).collect();
    let refs: Vec<&Buffer> = bufs.iter().collect();
    let outs = exe.execute(&refs).unwrap();
    assert_eq!(outs.len(), layout.num_outputs());
    for (i, b) in bufs.iter().enumerate() {
        let is_batch = (6..8).contains(&i);
        assert_eq!(
            b.is_deleted().unwrap(),
            !is_batch,
            "input {i}: state and step are donated, the batch is not"
        );
    }
    assert_eq!(outs[layout.step_output()].to_host::<i32>().unwrap(), [1]);
}

#[test]
fn dynamic_loss_scaling_skips_overflowing_steps() {
    let n = 8;
    let config = StepConfig::new(AdamWeightDecay::default(), Schedule::Constant { lr: 0.01 })
        .with_policy(Policy {
            compute: ElementType::F16,
            loss_scale: LossScale::Dynamic(DynamicLossScale {
                initial: 65536.0,
                growth_interval: 2,
                factor: 2.0,
                min: 1.0,
            }),
            upcast_dots: false,
        });
    let program = build(&config, n);
    assert_eq!(
        program.layout.metric_names,
        [
            "mse",
            "learning_rate",
            "grad_norm",
            "loss_scale",
            "grads_finite"
        ]
    );
    let init = param_literals(&init_params(4));
    let mut t = Trainer::new(client(), &program, &init).unwrap();
    let (x, y) = batch(0, n);
    // y scaled by 100: residuals ~100, so dW * 65536 overflows f16 (max 65504).
    let y: Vec<f32> = y.iter().map(|v| v * 100.0).collect();
    let big = vec![lit(&x, &[n, D]), lit(&y, &[n, O])];
    let state0 = t.opt_state().unwrap();
    let m = t.step_host(&big).unwrap();
    assert_eq!(m.get("grads_finite"), Some(0.0));
    assert_eq!(m.get("loss_scale"), Some(65536.0));
    assert_eq!(
        t.params().unwrap(),
        init,
        "a skipped step leaves the parameters"
    );
    let state1 = t.opt_state().unwrap();
    assert_eq!(state1[..4], state0[..4], "and the optimizer slots");
    assert_eq!(state1[4].to_f64_vec(), [32768.0], "the scale is halved");
    assert_eq!(state1[5].to_f64_vec(), [0.0]);
    assert_eq!(t.step_count().unwrap(), 0, "skipped steps do not count");
    // Halving continues until the scaled gradients fit, then updates happen.
    let mut scales = vec![];
    let mut finite = vec![];
    for _ in 0..12 {
        let m = t.step_host(&big).unwrap();
        scales.push(m.get("loss_scale").unwrap());
        finite.push(m.get("grads_finite").unwrap());
    }
    eprintln!("loss scales {scales:?}, finite {finite:?}");
    let first_good = finite
        .iter()
        .position(|&f| f == 1.0)
        .expect("a finite step");
    assert!(first_good > 0, "the first steps overflow too: {scales:?}");
    for w in scales[..first_good].windows(2) {
        assert_eq!(w[1], w[0] / 2.0, "halved after each overflow: {scales:?}");
    }
    assert_ne!(t.params().unwrap(), init, "good steps update");
    let good = finite.iter().filter(|&&f| f == 1.0).count() as i32;
    assert_eq!(t.step_count().unwrap(), good);
}

#[test]
fn dynamic_loss_scale_grows_after_good_steps() {
    let n = 8;
    let config = StepConfig::new(AdamWeightDecay::default(), Schedule::Constant { lr: 0.01 })
        .with_policy(Policy {
            compute: ElementType::F16,
            loss_scale: LossScale::Dynamic(DynamicLossScale {
                initial: 4.0,
                growth_interval: 2,
                factor: 2.0,
                min: 1.0,
            }),
            upcast_dots: false,
        });
    let program = build(&config, n);
    let mut t = Trainer::new(client(), &program, &param_literals(&init_params(5))).unwrap();
    let scales: Vec<f32> = (0..6)
        .map(|k| {
            let m = t.step_host(&batch_literals(k, n)).unwrap();
            assert_eq!(m.get("grads_finite"), Some(1.0));
            m.get("loss_scale").unwrap()
        })
        .collect();
    assert_eq!(scales, [4.0, 4.0, 8.0, 8.0, 16.0, 16.0]);
    assert_eq!(t.step_count().unwrap(), 6);
}

#[test]
fn f16_step_with_loss_scale_matches_the_f32_step() {
    // The scaled f16 gradient, unscaled in f32, gives nearly the f32 update.
    let n = 8;
    let base = || StepConfig::new(AdamWeightDecay::default(), Schedule::Constant { lr: 0.01 });
    let f32_prog = build(&base(), n);
    let f16_prog = build(
        &base().with_policy(Policy {
            compute: ElementType::F16,
            loss_scale: LossScale::Static(1024.0),
            upcast_dots: false,
        }),
        n,
    );
    let init = param_literals(&init_params(6));
    let mut a = Trainer::new(client(), &f32_prog, &init).unwrap();
    let mut b = Trainer::new(client(), &f16_prog, &init).unwrap();
    let ma = a.step_host(&batch_literals(0, n)).unwrap();
    let mb = b.step_host(&batch_literals(0, n)).unwrap();
    assert_close(
        &[f64::from(mb.loss)],
        &[f64::from(ma.loss)],
        0.0,
        2e-2,
        "f16 loss",
    );
    let (ga, gb) = (ma.get("grad_norm").unwrap(), mb.get("grad_norm").unwrap());
    assert_close(&[f64::from(gb)], &[f64::from(ga)], 0.0, 2e-2, "grad norm");
    for (pa, pb) in f64s_of(&a.params().unwrap())
        .iter()
        .zip(f64s_of(&b.params().unwrap()))
    {
        assert_close(&pb, pa, 1e-3, 1e-2, "params after an f16 step");
    }
}

#[test]
fn accumulation_equals_the_big_batch_step() {
    let (k, micro) = (4u32, 4i64);
    let big = build(&bert_config(), micro * i64::from(k));
    let acc = build(&bert_config().with_accumulation(k), micro);
    assert_eq!(acc.layout.batch[0].shape.dims, [4, micro, D]);
    let init = param_literals(&init_params(7));
    let mut a = Trainer::new(client(), &big, &init).unwrap();
    let mut b = Trainer::new(client(), &acc, &init).unwrap();
    for s in 0..3 {
        // The same examples: the big batch's rows, split into k micro-batches in order (the
        // stacked [k, micro, ...] layout is the [k * micro, ...] layout reshaped).
        let lits = batch_literals(s, micro * i64::from(k));
        let stacked: Vec<Literal> = lits
            .iter()
            .map(|l| {
                let mut dims = vec![i64::from(k), micro];
                dims.extend(&l.shape().dims[1..]);
                Literal::from_bytes(
                    hlo::ArrayShape::new(l.element_type(), dims),
                    l.bytes().to_vec(),
                )
                .unwrap()
            })
            .collect();
        let ma = a.step_host(&lits).unwrap();
        let mb = b.step_host(&stacked).unwrap();
        let what = format!("step {s}");
        assert_close(
            &[f64::from(mb.loss)],
            &[f64::from(ma.loss)],
            0.0,
            1e-5,
            &what,
        );
        let (na, nb) = (ma.get("grad_norm").unwrap(), mb.get("grad_norm").unwrap());
        assert_close(&[f64::from(nb)], &[f64::from(na)], 0.0, 1e-5, &what);
        for (pa, pb) in f64s_of(&a.params().unwrap())
            .iter()
            .zip(f64s_of(&b.params().unwrap()))
        {
            assert_close(&pb, pa, 1e-7, 1e-5, &what);
        }
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let n = 4;
    let program = build(&bert_config(), n);
    let mut t = Trainer::new(client(), &program, &param_literals(&init_params(8))).unwrap();
    // A batch of the wrong size names the input.
    let e = t
        .step_host(&batch_literals(0, n + 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'x'") && e.contains("f32[4,6]"), "{e}");
    let e = t
        .step_host(&batch_literals(0, n)[..1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 batch inputs") && e.contains("x, y"), "{e}");
    // The state is intact after a rejected batch.
    t.step_host(&batch_literals(0, n)).unwrap();
    // Wrong parameter shapes at start.
    let mut bad = param_literals(&init_params(8));
    bad.swap(0, 1);
    let e = Trainer::new(client(), &program, &bad)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("dense/kernel"), "{e}");

    // A loss function naming a metric like a built-in one, or a missing parameter.
    let clash = manual_gradients(|b: &Builder, p: &Params, batch: &Batch, seed: Value| {
        let mut lg = linear_loss_and_grads(b, p, batch, seed)?;
        lg.metrics[0].0 = "learning_rate".into();
        Ok(lg)
    });
    let e = build_train_step("x", &param_specs(), &batch_specs(n), &bert_config(), &clash)
        .unwrap_err()
        .to_string();
    assert!(e.contains("learning_rate"), "{e}");
    let missing = manual_gradients(|_: &Builder, p: &Params, _: &Batch, _: Value| {
        p.get("dense/kernal")?;
        unreachable!()
    });
    let e = build_train_step(
        "x",
        &param_specs(),
        &batch_specs(n),
        &bert_config(),
        &missing,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("dense/kernal") && e.contains("dense/kernel, dense/bias"),
        "{e}"
    );
    let wrong_grads = manual_gradients(|b: &Builder, p: &Params, batch: &Batch, seed: Value| {
        let mut lg = linear_loss_and_grads(b, p, batch, seed)?;
        lg.grads.swap(0, 1);
        Ok(lg)
    });
    let e = build_train_step(
        "x",
        &param_specs(),
        &batch_specs(n),
        &bert_config(),
        &wrong_grads,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("gradient of parameter 'dense/kernel'"), "{e}");
    let mut f16_params = param_specs();
    f16_params[1].shape.ty = ElementType::F16;
    let e = build_train_step(
        "x",
        &f16_params,
        &batch_specs(n),
        &bert_config(),
        &manual_gradients(linear_loss_and_grads),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'dense/bias'") && e.contains("f32"), "{e}");
}

#[test]
fn autodiff_gradients_give_the_hand_written_step() {
    let n = 16;
    let manual = build(&bert_config(), n);
    let loss_only = |b: &Builder, p: &Params, batch: &Batch| {
        let one = b.scalar_of(ElementType::F32, 1.0)?;
        let lg = linear_loss_and_grads(b, p, batch, one)?;
        Ok((lg.loss, lg.metrics))
    };
    let auto = build_train_step(
        "linear",
        &param_specs(),
        &batch_specs(n),
        &bert_config(),
        &tpu_run::train::autodiff(loss_only),
    )
    .unwrap();
    let init = param_literals(&init_params(9));
    let mut a = Trainer::new(client(), &manual, &init).unwrap();
    let mut b = Trainer::new(client(), &auto, &init).unwrap();
    for k in 0..4 {
        let ma = a.step_host(&batch_literals(k, n)).unwrap();
        let mb = b.step_host(&batch_literals(k, n)).unwrap();
        let what = format!("step {k}");
        assert_eq!(ma.loss, mb.loss, "{what}: same forward");
        let (na, nb) = (ma.get("grad_norm").unwrap(), mb.get("grad_norm").unwrap());
        assert_close(&[f64::from(nb)], &[f64::from(na)], 0.0, 1e-6, &what);
        for (pa, pb) in f64s_of(&a.params().unwrap())
            .iter()
            .zip(f64s_of(&b.params().unwrap()))
        {
            assert_close(&pb, pa, 1e-7, 1e-5, &what);
        }
    }
}

/// A run on the session loop that records what the loop asked of it: the batches staged, the
/// results read (in order) and, at each hook, the step and the parameters it saw.
struct Recorder {
    trainer: Trainer,
    n: i64,
    every: u64,
    /// The loop asks for a stop after the launch of this step (1-based), if any.
    stop_at: Option<u64>,
    /// Calls of `stop_requested`: one after each launch.
    launches: std::cell::Cell<u64>,
    staged: Vec<u64>,
    losses: Vec<(u64, f32)>,
    hooks: Vec<(u64, bool, Vec<Literal>)>,
}

impl SessionSteps for Recorder {
    type Meta = u64;

    fn trainer(&mut self) -> &mut Trainer {
        &mut self.trainer
    }

    fn stage(&mut self, step: u64) -> anyhow::Result<Staged<u64>> {
        self.staged.push(step);
        Ok(Staged {
            batch: self
                .trainer
                .upload_shards(0, &batch_literals(step % 10, self.n))?,
            meta: step,
        })
    }

    fn finish(&mut self, done: u64, outputs: &[Buffer], meta: &u64) -> anyhow::Result<()> {
        assert_eq!(
            *meta + 1,
            done,
            "a step's results come with its own batch's meta"
        );
        let loss = outputs[0].to_host::<f32>()?[0];
        self.losses.push((done, loss));
        Ok(())
    }

    fn stop_requested(&self) -> Option<&'static str> {
        self.launches.set(self.launches.get() + 1);
        (self.stop_at == Some(self.launches.get())).then_some("SIGTERM")
    }

    fn hooks_due(&self, done: u64) -> bool {
        done.is_multiple_of(self.every)
    }

    fn after(
        &mut self,
        done: u64,
        _: &u64,
        last: bool,
        stop: Option<&'static str>,
    ) -> anyhow::Result<()> {
        assert_eq!(
            self.losses.last().map(|l| l.0),
            Some(done),
            "a hook runs after its step's results are read"
        );
        self.hooks.push((done, last, self.trainer.params()?));
        match stop {
            Some(sig) => anyhow::bail!("stopped by {sig} after step {done}"),
            None => Ok(()),
        }
    }
}

#[test]
fn the_session_loop_reads_results_in_order_and_runs_hooks_on_the_state_after_their_step() {
    let n = 8;
    let program = build(&bert_config(), n);
    let init = param_literals(&init_params(3));
    // The reference: one waited step at a time.
    let mut t = Trainer::new(client(), &program, &init).unwrap();
    let mut want_losses = vec![];
    let mut want_params = vec![];
    for k in 0..7u64 {
        want_losses.push((k + 1, t.step_host(&batch_literals(k % 10, n)).unwrap().loss));
        want_params.push(t.params().unwrap());
    }
    let recorder = |stop_at| Recorder {
        trainer: Trainer::new(client(), &program, &init).unwrap(),
        n,
        every: 3,
        stop_at,
        launches: Default::default(),
        staged: vec![],
        losses: vec![],
        hooks: vec![],
    };
    for lockstep in [false, true] {
        let mut r = recorder(None);
        run_steps(&mut r, 0, 7, lockstep).unwrap();
        assert_eq!(r.staged, (0..7).collect::<Vec<_>>(), "lockstep {lockstep}");
        assert_eq!(r.losses, want_losses, "lockstep {lockstep}: bit for bit");
        let hooks: Vec<(u64, bool)> = r.hooks.iter().map(|h| (h.0, h.1)).collect();
        assert_eq!(
            hooks,
            [(3, false), (6, false), (7, true)],
            "lockstep {lockstep}"
        );
        for (done, _, params) in &r.hooks {
            assert_eq!(
                params,
                &want_params[*done as usize - 1],
                "the state after step {done}"
            );
        }
    }
    // A stop asked for after step 4's launch: step 4 is the last, its hook sees the stop.
    let mut r = recorder(Some(4));
    let err = run_steps(&mut r, 0, 7, false).unwrap_err();
    assert_eq!(format!("{err:#}"), "stopped by SIGTERM after step 4");
    assert_eq!(
        r.losses,
        want_losses[..4],
        "every launched step before the stop is read"
    );
    assert_eq!(
        r.hooks.iter().map(|h| (h.0, h.1)).collect::<Vec<_>>(),
        [(3, false), (4, true)]
    );
    assert_eq!(r.hooks[1].2, want_params[3]);
    // A run resumed at step 2 continues the reference's steps.
    let mut r = recorder(None);
    let mut t = Trainer::new(client(), &program, &init).unwrap();
    for k in 0..2 {
        t.step_host(&batch_literals(k, n)).unwrap();
    }
    r.trainer = t;
    run_steps(&mut r, 2, 7, false).unwrap();
    assert_eq!(r.losses, want_losses[2..]);
}

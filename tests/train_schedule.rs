//! Learning-rate schedules computed in the program, at chosen steps, against closed forms.
mod common;
use common::check::assert_close;
use common::*;
use hlo::{ElementType, Literal, ModuleBuilder, Shape};
use std::f64::consts::PI;
use tpu::CompileOptions;
use tpu_run::train::Schedule;

/// Runs `schedule.lr(step)` for each step, with the step fed as an s32 and as an f32 scalar.
fn lrs(schedule: &Schedule, steps: &[i32]) -> Vec<f64> {
    let mut per_type = vec![];
    for ty in [ElementType::S32, ElementType::F32] {
        let mb = ModuleBuilder::new("lr");
        let b = mb.builder("main");
        let step = b.parameter(Shape::scalar(ty), "step").unwrap();
        let lr = schedule.lr(&b, step).unwrap();
        let entry = b.finish(lr).unwrap();
        let m = mb.build(entry).unwrap();
        let exe = compile(&m, &CompileOptions::default());
        let got: Vec<f64> = steps
            .iter()
            .map(|&s| {
                let arg = match ty {
                    ElementType::S32 => Literal::scalar(s),
                    _ => Literal::scalar(s as f32),
                };
                let buf = upload(&arg, 0);
                f64::from(exe.execute(&[&buf]).unwrap()[0].to_host::<f32>().unwrap()[0])
            })
            .collect();
        per_type.push(got);
    }
    assert_eq!(
        per_type[0], per_type[1],
        "s32 and f32 steps give the same rates"
    );
    per_type.swap_remove(0)
}

#[test]
fn bert_warmup_then_linear_decay() {
    // optimization.py: init_lr 1e-4, 100 warmup steps, 1000 train steps.
    let s = Schedule::bert(1e-4, 100, 1000);
    let steps = [0, 1, 50, 99, 100, 101, 550, 999, 1000, 1500];
    // Warmup: init_lr * step / warmup; after: init_lr * (1 - min(step, total) / total).
    let want = [
        0.0,
        1e-4 * 1.0 / 100.0,
        1e-4 * 50.0 / 100.0,
        1e-4 * 99.0 / 100.0,
        1e-4 * (1.0 - 100.0 / 1000.0),
        1e-4 * (1.0 - 101.0 / 1000.0),
        1e-4 * (1.0 - 550.0 / 1000.0),
        1e-4 * (1.0 - 999.0 / 1000.0),
        0.0,
        0.0,
    ];
    let got = lrs(&s, &steps);
    assert_close(&got, &want, 1e-12, 1e-6, "BERT schedule");
    // Exactly zero (never slightly negative) from the last step on.
    assert_eq!(&got[8..], &[0.0, 0.0]);
    // The host formula used for logs agrees.
    let host: Vec<f64> = steps.iter().map(|&k| s.value_at(f64::from(k))).collect();
    assert_close(&host, &want, 1e-15, 1e-12, "value_at");
    // The jump at the warmup end: warmup reaches 0.99 init_lr, decay resumes at 0.9 init_lr.
    assert!(got[3] > got[4]);
}

#[test]
fn polynomial_decay_with_power_and_end_lr() {
    let s = Schedule::WarmupPolynomialDecay {
        init_lr: 2e-3,
        warmup_steps: 0,
        total_steps: 400,
        end_lr: 1e-5,
        power: 2.0,
    };
    let steps = [0, 100, 200, 399, 400, 800];
    let want: Vec<f64> = steps
        .iter()
        .map(|&k| {
            let p = f64::from(k).min(400.0) / 400.0;
            (2e-3 - 1e-5) * (1.0 - p).powi(2) + 1e-5
        })
        .collect();
    assert_close(&lrs(&s, &steps), &want, 1e-12, 1e-6, "polynomial decay");
}

#[test]
fn constant() {
    let s = Schedule::Constant { lr: 3e-4 };
    let got = lrs(&s, &[0, 7, 100_000]);
    assert_close(&got, &[3e-4; 3], 0.0, 1e-7, "constant");
}

#[test]
fn cosine_with_warmup() {
    let s = Schedule::WarmupCosine {
        init_lr: 5e-4,
        warmup_steps: 10,
        total_steps: 110,
        end_lr: 1e-5,
    };
    let steps = [0, 5, 10, 35, 60, 85, 110, 200];
    let want: Vec<f64> = steps
        .iter()
        .map(|&k| {
            let k = f64::from(k);
            if k < 10.0 {
                5e-4 * k / 10.0
            } else {
                let p = ((k - 10.0) / 100.0).min(1.0);
                1e-5 + (5e-4 - 1e-5) * 0.5 * (1.0 + (PI * p).cos())
            }
        })
        .collect();
    // Mid-decay (step 60) is the mean of init and end.
    assert!((want[4] - (5e-4 + 1e-5) / 2.0).abs() < 1e-15);
    assert_close(&lrs(&s, &steps), &want, 1e-11, 1e-6, "cosine");
}

#[test]
fn bad_schedules_are_clear_errors() {
    let mb = ModuleBuilder::new("lr");
    let b = mb.builder("main");
    let step = b
        .parameter(Shape::scalar(ElementType::S32), "step")
        .unwrap();
    let e = Schedule::bert(1e-4, 10, 0).lr(&b, step).unwrap_err();
    assert!(e.to_string().contains("total_steps"), "{e}");
    let cos = Schedule::WarmupCosine {
        init_lr: 1.0,
        warmup_steps: 10,
        total_steps: 10,
        end_lr: 0.0,
    };
    let e = cos.lr(&b, step).unwrap_err();
    assert!(e.to_string().contains("warmup_steps"), "{e}");
    let v = b
        .parameter(Shape::array(ElementType::S32, vec![2]), "v")
        .unwrap();
    let e = Schedule::Constant { lr: 1.0 }.lr(&b, v).unwrap_err();
    assert!(e.to_string().contains("scalar"), "{e}");
}

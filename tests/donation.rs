//! Donation: an output aliased to a parameter (`alias_output_to_param`) reuses the donated
//! input buffer; the result is correct, the input is gone, and reusing it is a clean error.
mod common;
use common::check::assert_exact;
use common::inputs::*;
use common::*;
use hlo::ElementType::*;
use tpu::{CompileOptions, Error, ExecuteOptions};

/// (w, g) -> (w - 0.5 g, sum(g)), with output 0 aliased to parameter 0: an SGD-like step.
fn step_module() -> hlo::Module {
    let mut m = module(&[arr_shape(F32, &[16]), arr_shape(F32, &[16])], |b, p| {
        let w = b.sub(p[0], b.mul(p[1], b.scalar(0.5f32)?)?)?;
        Ok(vec![w, b.reduce_sum(p[1], &[0])?])
    });
    m.alias_output_to_param(0, 0);
    m
}

fn step_ref(w: &[f32], g: &[f32]) -> Vec<f32> {
    w.iter().zip(g).map(|(a, b)| a - b * 0.5).collect()
}

#[test]
fn donated_input_gives_correct_output_and_is_consumed() {
    let exe = compile(&step_module(), &CompileOptions::default());
    let mut r = rng(1);
    let (w, g) = (normal_f32(&mut r, 16), normal_f32(&mut r, 16));
    let wb = upload(&lit(&w, &[16]), 0);
    let gb = upload(&lit(&g, &[16]), 0);
    let out = exe.execute(&[&wb, &gb]).unwrap();
    assert_exact(
        &out[0].to_host::<f32>().unwrap(),
        &step_ref(&w, &g),
        "updated w",
    );
    let gsum = out[1].to_host::<f32>().unwrap()[0];
    let want: f32 = g.iter().sum();
    assert!((gsum - want).abs() < 1e-5, "{gsum} vs {want}");
    // The donated parameter is deleted; the other one is not.
    assert!(wb.is_deleted().unwrap(), "the donated buffer is deleted");
    assert!(!gb.is_deleted().unwrap(), "a non-aliased parameter is kept");
    // Reusing the donated buffer is a clean error.
    let e = exe.execute(&[&wb, &gb]).unwrap_err();
    assert!(matches!(e, Error::Deleted { index: 0, .. }), "{e:?}");
    assert!(e.to_string().contains("donated"), "{e}");
    // Reading it back is an error too, not a crash.
    assert!(wb.to_host::<f32>().is_err());
}

#[test]
fn the_output_feeds_the_next_step() {
    // The training-loop pattern: each step donates the previous step's output.
    let exe = compile(&step_module(), &CompileOptions::default());
    let mut r = rng(2);
    let mut w = normal_f32(&mut r, 16);
    let mut wb = upload(&lit(&w, &[16]), 0);
    for k in 0..4 {
        let g = normal_f32(&mut r, 16);
        let gb = upload(&lit(&g, &[16]), 0);
        let mut out = exe.execute(&[&wb, &gb]).unwrap();
        w = step_ref(&w, &g);
        wb = out.swap_remove(0);
        assert_exact(&wb.to_host::<f32>().unwrap(), &w, &format!("step {k}"));
    }
}

#[test]
fn non_donatable_inputs_are_kept() {
    let exe = compile(&step_module(), &CompileOptions::default());
    let mut r = rng(3);
    let (w, g) = (normal_f32(&mut r, 16), normal_f32(&mut r, 16));
    let wb = upload(&lit(&w, &[16]), 0);
    let gb = upload(&lit(&g, &[16]), 0);
    let opts = ExecuteOptions {
        non_donatable_input_indices: vec![0],
        ..Default::default()
    };
    let out = exe.execute_with(&[&wb, &gb], &opts).unwrap();
    assert_exact(
        &out[0].to_host::<f32>().unwrap(),
        &step_ref(&w, &g),
        "updated w",
    );
    assert!(!wb.is_deleted().unwrap(), "not donated");
    assert_exact(&wb.to_host::<f32>().unwrap(), &w, "input unchanged");
}

/// A bigger step, so that the device is still busy when the host launches the next one:
/// (w, g) -> (w - 0.5 tanh(g w^T w-ish mixing), sum(g)), donated like `step_module`.
fn busy_step_module(n: i64) -> hlo::Module {
    let mut m = module(
        &[arr_shape(F32, &[n, n]), arr_shape(F32, &[n, n])],
        |b, p| {
            let dims = hlo::ir::DotDims {
                lhs_contracting: vec![1],
                rhs_contracting: vec![0],
                ..Default::default()
            };
            let mixed = b.dot_general(p[1], p[0], dims, [hlo::ir::Precision::Highest; 2], None)?;
            let w = b.sub(p[0], b.mul(b.tanh(mixed)?, b.scalar(0.5f32)?)?)?;
            Ok(vec![w, b.reduce_sum(p[1], &[0, 1])?])
        },
    );
    m.alias_output_to_param(0, 0);
    m
}

#[test]
fn steps_launched_back_to_back_equal_steps_waited_for() {
    // The asynchronous pattern: each step is launched on the previous step's (perhaps still
    // unfinished) output and nothing is waited for until the end; PJRT orders the steps by
    // their buffers. The result must equal launching and waiting one step at a time.
    let n = 192;
    let exe = compile(&busy_step_module(n), &CompileOptions::default());
    let mut r = rng(3);
    let w0 = normal_f32(&mut r, (n * n) as usize);
    let grads: Vec<Vec<f32>> = (0..12)
        .map(|_| normal_f32(&mut r, (n * n) as usize))
        .collect();
    let run = |wait_each: bool| -> Vec<f32> {
        let mut wb = upload(&lit(&w0, &[n, n]), 0);
        let mut pending = vec![];
        for g in &grads {
            let gb = upload(&lit(g, &[n, n]), 0);
            let (mut out, execution) = exe.launch(&[&wb, &gb]).unwrap();
            if wait_each {
                execution.wait().unwrap();
            } else {
                // Keep the inputs and the handle alive; wait for all at the end.
                pending.push((execution, gb));
            }
            wb = out.swap_remove(0);
        }
        for (execution, _) in pending {
            execution.wait().unwrap();
        }
        wb.to_host::<f32>().unwrap()
    };
    let waited = run(true);
    let launched = run(false);
    assert_exact(&launched, &waited, "w after 12 steps");
}

#[test]
fn an_execution_can_be_polled_and_dropped_unwaited() {
    let exe = compile(&busy_step_module(64), &CompileOptions::default());
    let mut r = rng(4);
    let w = upload(&lit(&normal_f32(&mut r, 64 * 64), &[64, 64]), 0);
    let g = upload(&lit(&normal_f32(&mut r, 64 * 64), &[64, 64]), 0);
    let (out, execution) = exe.launch(&[&w, &g]).unwrap();
    // Reading an output waits for it; the execution reports done soon after (its completion
    // event may fire a moment after the outputs are ready), polled with a bound.
    let sum = out[1].to_host::<f32>().unwrap()[0];
    assert!(sum.is_finite());
    let start = std::time::Instant::now();
    while !execution.is_done().unwrap() {
        assert!(start.elapsed().as_secs() < 30, "never done");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Dropping a finished (or unfinished) execution waits for it and loses nothing.
    drop(execution);
    assert!(w.is_deleted().unwrap(), "donated at launch");
}

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

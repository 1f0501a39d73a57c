//! Executable serialize -> deserialize round trip: the loaded copy computes the same results.
mod common;
use common::check::assert_exact;
use common::inputs::*;
use common::*;
use hlo::ElementType::*;
use tpu::CompileOptions;

/// tanh(x @ w) summed over rows, plus an s32 output: a small multi-output program.
fn program() -> hlo::Module {
    module(
        &[
            arr_shape(F32, &[4, 8]),
            arr_shape(F32, &[8, 3]),
            arr_shape(S32, &[5]),
        ],
        |b, p| {
            let h = b.tanh(b.matmul(p[0], p[1])?)?;
            Ok(vec![h, b.reduce_sum(h, &[0])?, b.mul(p[2], p[2])?])
        },
    )
}

#[test]
fn round_trip_gives_the_same_results() {
    let exe = compile(&program(), &CompileOptions::default());
    let bytes = exe.serialize().unwrap();
    assert!(!bytes.is_empty());
    let loaded = client().deserialize_executable(&bytes).unwrap();
    assert_eq!(loaded.num_outputs(), exe.num_outputs());
    assert_eq!(
        loaded.output_shapes().unwrap(),
        exe.output_shapes().unwrap()
    );
    let mut r = rng(1);
    let x = lit(&normal_f32(&mut r, 32), &[4, 8]);
    let w = lit(&normal_f32(&mut r, 24), &[8, 3]);
    let n = lit(&[-3i32, 0, 7, 46340, -9], &[5]);
    let bufs = [upload(&x, 0), upload(&w, 0), upload(&n, 0)];
    let args: Vec<&tpu::Buffer> = bufs.iter().collect();
    let a = exe.execute(&args).unwrap();
    let b = loaded.execute(&args).unwrap();
    assert_eq!(a.len(), 3);
    for (k, (oa, ob)) in a.iter().zip(&b).enumerate() {
        let (la, lb) = (download(oa), download(ob));
        assert_eq!(la.shape(), lb.shape(), "output {k}");
        assert_exact(la.bytes(), lb.bytes(), &format!("output {k} bytes"));
    }
    // And the results are right (not merely equal to each other).
    assert_exact(
        &vals::<i32>(&download(&b[2])),
        &[9, 0, 49, 2147395600, 81],
        "s32 squares",
    );
    let xv = vals::<f32>(&x);
    let wv = vals::<f32>(&w);
    let want: Vec<f64> = (0..12)
        .map(|k| {
            let (i, j) = (k / 3, k % 3);
            (0..8)
                .map(|t| f64::from(xv[i * 8 + t]) * f64::from(wv[t * 3 + j]))
                .sum::<f64>()
                .tanh()
        })
        .collect();
    common::check::assert_close(&f64s(&download(&b[0])), &want, 1e-5, 1e-5, "tanh(x w)");
    // Argument checks still apply to the loaded executable.
    assert!(loaded.execute(&args[..2]).is_err());
}

#[test]
fn garbage_is_not_an_executable() {
    let e = client()
        .deserialize_executable(b"definitely not an executable")
        .unwrap_err();
    assert!(matches!(e, tpu::Error::Pjrt { .. }), "{e:?}");
}

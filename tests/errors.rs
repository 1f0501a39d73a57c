//! Errors are values with clear messages, never aborts: shape mismatches at build time, wrong
//! buffers at execute, a missing or broken plugin file, modules the plugin rejects.
mod common;
use common::*;
use hlo::ElementType::*;
use hlo::{HloError, ModuleBuilder, Shape};
use prost::Message;
use tpu::{CompileOptions, Error, Plugin};

/// The error of building `f` over parameters of `params`.
fn build_err(
    params: &[Shape],
    f: impl FnOnce(&hlo::Builder, &[hlo::Value]) -> hlo::Result<Vec<hlo::Value>>,
) -> HloError {
    build(params, f).expect_err("the builder must reject this")
}

#[track_caller]
fn assert_shape_err(e: HloError, op: &str, mentions: &[&str]) {
    let msg = e.to_string();
    match &e {
        HloError::Shape { op: o, .. } => assert_eq!(*o, op, "{msg}"),
        other => panic!("expected a {op} shape error, got {other:?}"),
    }
    for m in mentions {
        assert!(msg.contains(m), "{msg:?} should mention {m:?}");
    }
}

#[test]
fn shape_mismatches_are_build_errors_naming_the_op() {
    let (a, b) = (arr_shape(F32, &[2, 3]), arr_shape(F32, &[3, 2]));
    let e = build_err(&[a.clone(), b.clone()], |bl, p| {
        Ok(vec![bl.add(p[0], p[1])?])
    });
    assert_shape_err(e, "add", &["f32[2,3]", "f32[3,2]"]);
    let e = build_err(&[a.clone(), arr_shape(S32, &[2, 3])], |bl, p| {
        Ok(vec![bl.mul(p[0], p[1])?])
    });
    assert_shape_err(e, "multiply", &["element types", "s32[2,3]"]);
    let e = build_err(&[a.clone(), a.clone()], |bl, p| {
        Ok(vec![bl.matmul(p[0], p[1])?])
    });
    assert_shape_err(e, "dot", &["f32[2,3]"]);
    let e = build_err(&[a.clone(), b.clone()], |bl, p| {
        Ok(vec![bl.concatenate(&[p[0], p[1]], 0)?])
    });
    assert_shape_err(e, "concatenate", &[]);
    let e = build_err(std::slice::from_ref(&a), |bl, p| {
        Ok(vec![bl.reduce_sum(p[0], &[2])?])
    });
    assert_shape_err(e, "reduce", &["[2]"]);
    let e = build_err(std::slice::from_ref(&a), |bl, p| {
        Ok(vec![bl.reshape(p[0], &[4, 2])?])
    });
    assert_shape_err(e, "reshape", &["f32[4,2]"]);
    let e = build_err(std::slice::from_ref(&a), |bl, p| {
        Ok(vec![bl.transpose(p[0], &[0, 0])?])
    });
    assert_shape_err(e, "transpose", &[]);
    let e = build_err(std::slice::from_ref(&a), |bl, p| {
        Ok(vec![bl.slice(p[0], &[0, 0], &[3, 3], &[1, 1])?])
    });
    assert_shape_err(e, "slice", &[]);
    let e = build_err(&[a], |bl, p| Ok(vec![bl.exp(bl.convert(p[0], S32)?)?]));
    assert_shape_err(e, "exponential", &["s32"]);
}

#[test]
fn a_value_from_another_computation_is_rejected() {
    let m = ModuleBuilder::new("t");
    let sub = m.builder("sub");
    let x = sub.parameter(arr_shape(F32, &[2]), "x").unwrap();
    let main = m.builder("main");
    let y = main.parameter(arr_shape(F32, &[2]), "y").unwrap();
    let e = main.add(x, y).unwrap_err();
    assert!(
        matches!(e, HloError::ForeignValue { op: "add", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("another computation"), "{e}");
}

/// An executable taking (f32[2,3], s32[]) and returning 2x with the scalar added.
fn two_param_exe() -> tpu::Executable {
    let m = module(&[arr_shape(F32, &[2, 3]), arr_shape(S32, &[])], |b, p| {
        Ok(vec![b.add(p[0], p[0])?, b.neg(p[1])?])
    });
    compile(&m, &CompileOptions::default())
}

#[test]
fn wrong_buffers_at_execute_are_clear_errors() {
    let exe = two_param_exe();
    let x = upload(&lit(&[1f32, 2., 3., 4., 5., 6.], &[2, 3]), 0);
    let s = upload(&lit(&[4i32], &[]), 0);
    // Wrong dtype: s32[2,3] where f32[2,3] is expected (same byte size: the plugin would take it).
    let xi = upload(&lit(&[1i32, 2, 3, 4, 5, 6], &[2, 3]), 0);
    match exe.execute(&[&xi, &s]) {
        Err(Error::ArgDtype {
            index: 0,
            expected: F32,
            got: S32,
        }) => {}
        other => panic!("expected ArgDtype, got {other:?}"),
    }
    // Wrong dims with the same element count (the plugin checks byte sizes only).
    let xt = upload(&lit(&[1f32, 2., 3., 4., 5., 6.], &[3, 2]), 0);
    let e = exe.execute(&[&xt, &s]).unwrap_err();
    assert!(matches!(&e, Error::ArgDims { index: 0, .. }), "{e:?}");
    assert!(
        e.to_string().contains("[2, 3]") && e.to_string().contains("[3, 2]"),
        "{e}"
    );
    // Wrong count.
    let e = exe.execute(&[&x]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ArgCount {
                expected: 2,
                got: 1
            }
        ),
        "{e:?}"
    );
    let e = exe.execute(&[&x, &s, &s]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ArgCount {
                expected: 2,
                got: 3
            }
        ),
        "{e:?}"
    );
    // Wrong number of device argument lists.
    let e = exe
        .execute_sharded(&[vec![&x, &s], vec![&x, &s]])
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::DeviceCount {
                expected: 1,
                got: 2
            }
        ),
        "{e:?}"
    );
    // After all that, the executable still runs.
    let out = exe.execute(&[&x, &s]).unwrap();
    assert_eq!(
        out[0].to_host::<f32>().unwrap(),
        vec![2., 4., 6., 8., 10., 12.]
    );
    assert_eq!(out[1].to_host::<i32>().unwrap(), vec![-4]);
}

#[test]
fn wrong_host_transfers_are_clear_errors() {
    let dev = device(0);
    let e = client()
        .buffer_from_host(&[1f32, 2., 3.], &[2, 2], &dev)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::HostSize {
                expected: 16,
                got: 12,
                ..
            }
        ),
        "{e:?}"
    );
    let e = client()
        .buffer_from_host(&[1f32; 4], &[-1, -4], &dev)
        .unwrap_err();
    assert!(e.to_string().contains("-1"), "{e}");
    let b = client().buffer_from_host(&[1f32, 2.], &[2], &dev).unwrap();
    let e = b.to_host::<i32>().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Dtype {
                buffer: F32,
                asked: S32
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_missing_plugin_says_how_to_install() {
    let e = Plugin::load("/nonexistent/tpu-run-test/xla_cpu_pjrt.so").unwrap_err();
    assert!(matches!(e, Error::PluginNotFound { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("tpu-run plugin install cpu"), "{msg}");
    assert!(msg.contains("/nonexistent/tpu-run-test"), "{msg}");
}

#[test]
fn a_file_that_is_not_a_plugin_is_a_load_error() {
    let dir = std::env::temp_dir().join(format!("tpu-run-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("xla_cpu_pjrt.so");
    std::fs::write(&path, b"this is not an ELF file").unwrap();
    let e = Plugin::load(&path).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(e, Error::Load { .. }), "{e:?}");
    assert!(e.to_string().contains("xla_cpu_pjrt.so"), "{e}");
}

#[test]
fn invalid_modules_are_rejected_by_the_plugin_as_errors() {
    // Bytes that are not an HloModuleProto.
    let e = client()
        .compile(b"\xff\xff\xff\xff not a proto", &CompileOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::Pjrt { .. }), "{e:?}");
    // A well-formed proto whose add claims a wrong result shape: XLA's verifier rejects it.
    let m = module(&[arr_shape(F32, &[2, 3])], |b, p| {
        Ok(vec![b.add(p[0], p[0])?])
    });
    let mut proto = hlo::lower::to_proto(&m).unwrap();
    let entry = proto.computations.last_mut().unwrap();
    let add = entry
        .instructions
        .iter_mut()
        .find(|i| i.opcode == "add")
        .unwrap();
    add.shape.as_mut().unwrap().dimensions = vec![3, 2];
    let e = client()
        .compile(&proto.encode_to_vec(), &CompileOptions::default())
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Pjrt { .. }), "{e:?}");
    assert!(msg.contains("add"), "{msg}");
    // An operand id that does not exist.
    let mut proto = hlo::lower::to_proto(&m).unwrap();
    let entry = proto.computations.last_mut().unwrap();
    let add = entry
        .instructions
        .iter_mut()
        .find(|i| i.opcode == "add")
        .unwrap();
    add.operand_ids = vec![999, 999];
    let e = client()
        .compile(&proto.encode_to_vec(), &CompileOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::Pjrt { .. }), "{e:?}");
    // Zero replicas are refused on our side, before the plugin (which would abort).
    let e = client()
        .compile(
            &m.to_proto_bytes().unwrap(),
            &CompileOptions {
                num_replicas: 0,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::Option(_)), "{e:?}");
    // The client is still usable.
    let out = run(&m, &[lit(&[1f32, 2., 3., 4., 5., 6.], &[2, 3])]);
    assert_eq!(vals::<f32>(&out[0]), vec![2., 4., 6., 8., 10., 12.]);
}

//! The PJRT runtime against the real XLA CPU plugin (found by discovery, installed if missing).
//! Modules are built by hand with `hlo::proto`, so these tests depend only on the proto types.
use half::{bf16, f16};
use hlo::proto::{self, PrimitiveType as P};
use hlo::ElementType;
use prost::Message;
use rand::{Rng, SeedableRng};
use tpu::{
    Buffer, Client, ClientOptions, CompileOptions, Error, ExecuteOptions, HostArray, Plugin,
    PluginKind,
};

// ------------------------------------------------------------ module helpers

fn shape(t: P, dims: &[i64]) -> proto::ShapeProto {
    proto::ShapeProto {
        element_type: t as i32,
        dimensions: dims.to_vec(),
        layout: Some(proto::LayoutProto {
            minor_to_major: (0..dims.len() as i64).rev().collect(),
        }),
        is_dynamic_dimension: vec![false; dims.len()],
        ..Default::default()
    }
}

fn tuple_shape(elems: Vec<proto::ShapeProto>) -> proto::ShapeProto {
    proto::ShapeProto {
        element_type: P::Tuple as i32,
        tuple_shapes: elems,
        ..Default::default()
    }
}

fn inst(id: i64, op: &str, s: &proto::ShapeProto, operands: &[i64]) -> proto::HloInstructionProto {
    proto::HloInstructionProto {
        name: format!("{op}.{id}"),
        opcode: op.into(),
        shape: Some(s.clone()),
        id,
        operand_ids: operands.to_vec(),
        ..Default::default()
    }
}

fn param(id: i64, n: i64, s: &proto::ShapeProto) -> proto::HloInstructionProto {
    proto::HloInstructionProto {
        parameter_number: n,
        name: format!("p{n}"),
        ..inst(id, "parameter", s, &[])
    }
}

/// One-computation module; parameters are the instructions with opcode "parameter".
fn module(
    instrs: Vec<proto::HloInstructionProto>,
    root: i64,
    alias: Option<proto::HloInputOutputAliasProto>,
) -> Vec<u8> {
    let params: Vec<proto::ShapeProto> = instrs
        .iter()
        .filter(|i| i.opcode == "parameter")
        .map(|i| i.shape.clone().unwrap())
        .collect();
    let result = instrs.iter().find(|i| i.id == root).unwrap().shape.clone();
    let ps = proto::ProgramShapeProto {
        parameters: params.clone(),
        result,
        parameter_names: (0..params.len()).map(|i| format!("p{i}")).collect(),
    };
    proto::HloModuleProto {
        name: "test_module".into(),
        entry_computation_name: "main".into(),
        entry_computation_id: 1,
        id: 1,
        computations: vec![proto::HloComputationProto {
            name: "main".into(),
            instructions: instrs,
            program_shape: Some(ps.clone()),
            id: 1,
            root_id: root,
        }],
        host_program_shape: Some(ps),
        input_output_alias: alias,
        ..Default::default()
    }
    .encode_to_vec()
}

/// f32[2,3] add of two parameters.
fn add_module(alias_p0: bool) -> Vec<u8> {
    let s = shape(P::F32, &[2, 3]);
    let alias = alias_p0.then(|| proto::HloInputOutputAliasProto {
        entries: vec![proto::hlo_input_output_alias_proto::AliasEntryProto {
            output_shape_index: vec![],
            parameter_number: 0,
            parameter_shape_index: vec![],
            kind: proto::Kind::MayAlias as i32,
        }],
    });
    module(
        vec![
            param(1, 0, &s),
            param(2, 1, &s),
            inst(3, "add", &s, &[1, 2]),
        ],
        3,
        alias,
    )
}

fn client(n: i64) -> Client {
    Client::cpu(&ClientOptions::cpu(n)).expect("CPU client")
}

fn rand_f32(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-4.0f32..4.0)).collect()
}

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(7)
}

// ------------------------------------------------------------------- tests

#[test]
fn plugin_is_found_and_describes_itself() {
    let p = Plugin::cpu_default().unwrap();
    assert_eq!(p.kind(), Some(PluginKind::Cpu));
    let (major, minor) = p.api_version();
    assert_eq!(major, 0);
    assert!(minor >= 81, "C API {major}.{minor}");
    let attrs = p.attributes().unwrap();
    assert!(attrs.iter().any(|(k, _)| k == "xla_version"), "{attrs:?}");
    // Loaded once per path.
    let again = Plugin::load(p.path()).unwrap();
    assert_eq!(again.path(), p.path());
    let listed = tpu::plugin::list();
    assert!(
        listed.iter().any(|i| i.kind == PluginKind::Cpu),
        "{listed:?}"
    );
}

#[test]
fn client_with_four_devices() {
    let c = client(4);
    assert_eq!(c.platform_name().unwrap(), "cpu");
    let _ = c.platform_version().unwrap();
    let devs = c.addressable_devices().unwrap();
    assert_eq!(devs.len(), 4);
    assert_eq!(c.devices().unwrap().len(), 4);
    let ids: Vec<i32> = devs.iter().map(|d| d.id()).collect();
    assert_eq!(ids, vec![0, 1, 2, 3]);
    for d in &devs {
        assert!(!d.kind().is_empty());
        assert_eq!(d.process_index(), 0);
        assert!(d.is_addressable());
        // The CPU plugin may or may not report stats; it must not fail.
        let _ = d.memory_stats().unwrap();
    }
}

fn round_trip<T: hlo::NativeType>(c: &Client, data: Vec<T>, dims: &[i64]) {
    let dev = &c.addressable_devices().unwrap()[0];
    let b = c.buffer_from_host(&data, dims, dev).unwrap();
    assert_eq!(b.element_type(), T::TYPE);
    assert_eq!(b.dims(), dims);
    assert_eq!(b.to_host::<T>().unwrap(), data, "{}", T::TYPE);
    assert!(b.on_device_size().unwrap() >= data.len() * T::TYPE.byte_size());
    // Untyped variant.
    let bytes = hlo::dtype::to_le_bytes(&data);
    let b2 = c
        .buffer_from_host_bytes(T::TYPE, &bytes, dims, dev)
        .unwrap();
    assert_eq!(b2.to_host_bytes().unwrap(), bytes);
}

#[test]
fn buffer_round_trip_every_type() {
    let c = client(1);
    let mut r = rng();
    let dims = [2i64, 3];
    let n = 6;
    round_trip(&c, rand_f32(&mut r, n), &dims);
    round_trip(
        &c,
        (0..n).map(|_| r.gen::<f64>() - 0.5).collect::<Vec<_>>(),
        &dims,
    );
    round_trip(
        &c,
        (0..n)
            .map(|_| f16::from_f32(r.gen_range(-8.0..8.0)))
            .collect::<Vec<_>>(),
        &dims,
    );
    round_trip(
        &c,
        (0..n)
            .map(|_| bf16::from_f32(r.gen_range(-8.0..8.0)))
            .collect::<Vec<_>>(),
        &dims,
    );
    round_trip(&c, (0..n).map(|_| r.gen::<i8>()).collect::<Vec<_>>(), &dims);
    round_trip(
        &c,
        (0..n).map(|_| r.gen::<i32>()).collect::<Vec<_>>(),
        &dims,
    );
    round_trip(
        &c,
        (0..n).map(|_| r.gen::<i64>()).collect::<Vec<_>>(),
        &dims,
    );
    round_trip(&c, (0..n).map(|_| r.gen::<u8>()).collect::<Vec<_>>(), &dims);
    round_trip(
        &c,
        (0..n).map(|_| r.gen::<u32>()).collect::<Vec<_>>(),
        &dims,
    );
    round_trip(
        &c,
        (0..n).map(|_| r.gen::<u64>()).collect::<Vec<_>>(),
        &dims,
    );
    round_trip(&c, vec![true, false, true, true, false, false], &dims);
    round_trip(&c, vec![1.5f32], &[]);
}

#[test]
fn many_buffers_in_flight_together() {
    // Sizes from empty to 4 MiB and three types; every transfer is awaited before the call
    // returns, so the host bytes may be dropped right after.
    let c = client(1);
    let dev = &c.addressable_devices().unwrap()[0];
    let mut r = rng();
    let f = hlo::dtype::to_le_bytes(&rand_f32(&mut r, 1 << 20));
    let i = hlo::dtype::to_le_bytes(&(0..5).map(|_| r.gen::<i32>()).collect::<Vec<_>>());
    let h = hlo::dtype::to_le_bytes(
        &(0..12)
            .map(|_| bf16::from_f32(r.gen_range(-8.0..8.0)))
            .collect::<Vec<_>>(),
    );
    let arrays = [
        HostArray {
            dtype: ElementType::F32,
            bytes: &f,
            dims: &[1024, 1024],
        },
        HostArray {
            dtype: ElementType::S32,
            bytes: &i,
            dims: &[5],
        },
        HostArray {
            dtype: ElementType::F32,
            bytes: &[],
            dims: &[0, 3],
        },
        HostArray {
            dtype: ElementType::Bf16,
            bytes: &h,
            dims: &[3, 4],
        },
    ];
    let bufs = c.buffers_from_host_bytes(&arrays, dev).unwrap();
    assert_eq!(bufs.len(), arrays.len());
    for (b, a) in bufs.iter().zip(&arrays) {
        assert_eq!((b.element_type(), b.dims()), (a.dtype, a.dims));
        assert_eq!(b.to_host_bytes().unwrap(), a.bytes);
    }
    // A wrong size is reported (and what was started before it is awaited, not leaked).
    let bad = [
        arrays[0],
        HostArray {
            dtype: ElementType::S32,
            bytes: &i,
            dims: &[6],
        },
    ];
    let err = c.buffers_from_host_bytes(&bad, dev).unwrap_err();
    assert!(matches!(err, Error::HostSize { .. }), "{err}");
}

#[test]
fn buffer_errors_are_clear() {
    let c = client(1);
    let dev = &c.addressable_devices().unwrap()[0];
    let b = c.buffer_from_host(&[1.0f32, 2.0, 3.0], &[3], dev).unwrap();
    let err = b.to_host::<i32>().unwrap_err();
    assert!(matches!(err, Error::Dtype { .. }), "{err}");
    let err = c.buffer_from_host(&[1.0f32, 2.0], &[3], dev).unwrap_err();
    assert!(matches!(err, Error::HostSize { .. }), "{err}");
    let err = c.buffer_from_host(&[1.0f32], &[-1], dev).unwrap_err();
    assert!(matches!(err, Error::BadDims(_)), "{err}");
}

#[test]
fn add_compiles_and_runs() {
    let c = client(1);
    let dev = &c.addressable_devices().unwrap()[0];
    let mut r = rng();
    let (x, y) = (rand_f32(&mut r, 6), rand_f32(&mut r, 6));
    let exe = c
        .compile(&add_module(false), &CompileOptions::default())
        .unwrap();
    assert_eq!(exe.num_outputs(), 1);
    assert_eq!(exe.addressable_devices().len(), 1);
    assert_eq!(
        exe.parameter_shapes().unwrap(),
        &[
            Some((ElementType::F32, vec![2, 3])),
            Some((ElementType::F32, vec![2, 3]))
        ]
    );
    assert_eq!(
        exe.output_shapes().unwrap(),
        vec![(ElementType::F32, vec![2, 3])]
    );
    let bx = c.buffer_from_host(&x, &[2, 3], dev).unwrap();
    let by = c.buffer_from_host(&y, &[2, 3], dev).unwrap();
    let out = exe.execute(&[&bx, &by]).unwrap();
    assert_eq!(out.len(), 1);
    let got: Vec<f32> = out[0].to_host().unwrap();
    let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
    assert_eq!(got, want);
    // Inputs are not donated by a module without aliasing.
    assert!(!bx.is_deleted().unwrap());
    // Metadata where offered; these must not fail on an old plugin.
    let _ = exe.memory_stats().unwrap();
    let _ = exe.cost_analysis().unwrap();
    let _ = exe.fingerprint().unwrap();
    assert_eq!(exe.num_replicas().unwrap(), 1);
}

#[test]
fn dot_matches_reference() {
    let c = client(1);
    let dev = &c.addressable_devices().unwrap()[0];
    let (sa, sb, so) = (
        shape(P::F32, &[2, 3]),
        shape(P::F32, &[3, 4]),
        shape(P::F32, &[2, 4]),
    );
    let mut dot = inst(3, "dot", &so, &[1, 2]);
    dot.dot_dimension_numbers = Some(proto::DotDimensionNumbers {
        lhs_contracting_dimensions: vec![1],
        rhs_contracting_dimensions: vec![0],
        ..Default::default()
    });
    let m = module(vec![param(1, 0, &sa), param(2, 1, &sb), dot], 3, None);
    let exe = c.compile(&m, &CompileOptions::default()).unwrap();
    let mut r = rng();
    let (a, b) = (rand_f32(&mut r, 6), rand_f32(&mut r, 12));
    let ba = c.buffer_from_host(&a, &[2, 3], dev).unwrap();
    let bb = c.buffer_from_host(&b, &[3, 4], dev).unwrap();
    let out: Vec<f32> = exe.execute(&[&ba, &bb]).unwrap()[0].to_host().unwrap();
    for i in 0..2 {
        for j in 0..4 {
            let want: f64 = (0..3)
                .map(|k| a[i * 3 + k] as f64 * b[k * 4 + j] as f64)
                .sum();
            assert!((out[i * 4 + j] as f64 - want).abs() < 1e-5, "{i},{j}");
        }
    }
}

#[test]
fn tuple_root_gives_separate_outputs() {
    let c = client(1);
    let dev = &c.addressable_devices().unwrap()[0];
    let s = shape(P::F32, &[2, 3]);
    let t = tuple_shape(vec![s.clone(), s.clone()]);
    let m = module(
        vec![
            param(1, 0, &s),
            param(2, 1, &s),
            inst(3, "add", &s, &[1, 2]),
            inst(4, "multiply", &s, &[1, 2]),
            inst(5, "tuple", &t, &[3, 4]),
        ],
        5,
        None,
    );
    let exe = c.compile(&m, &CompileOptions::default()).unwrap();
    assert_eq!(exe.num_outputs(), 2);
    let mut r = rng();
    let (x, y) = (rand_f32(&mut r, 6), rand_f32(&mut r, 6));
    let bx = c.buffer_from_host(&x, &[2, 3], dev).unwrap();
    let by = c.buffer_from_host(&y, &[2, 3], dev).unwrap();
    let out = exe.execute(&[&bx, &by]).unwrap();
    assert_eq!(out.len(), 2);
    let sum: Vec<f32> = out[0].to_host().unwrap();
    let prod: Vec<f32> = out[1].to_host().unwrap();
    for i in 0..6 {
        assert_eq!(sum[i], x[i] + y[i]);
        assert_eq!(prod[i], x[i] * y[i]);
    }
}

#[test]
fn bad_arguments_are_rejected_before_execute() {
    let c = client(1);
    let dev = &c.addressable_devices().unwrap()[0];
    let exe = c
        .compile(&add_module(false), &CompileOptions::default())
        .unwrap();
    let good = c.buffer_from_host(&[1.0f32; 6], &[2, 3], dev).unwrap();
    let wrong_type = c.buffer_from_host(&[1i32; 6], &[2, 3], dev).unwrap();
    let wrong_dims = c.buffer_from_host(&[1.0f32; 6], &[3, 2], dev).unwrap();

    let err = exe.execute(&[&good, &wrong_type]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ArgDtype {
                index: 1,
                expected: ElementType::F32,
                got: ElementType::S32
            }
        ),
        "{err}"
    );
    let err = exe.execute(&[&good, &wrong_dims]).unwrap_err();
    assert!(matches!(err, Error::ArgDims { index: 1, .. }), "{err}");
    assert!(
        err.to_string().contains("[2, 3]") && err.to_string().contains("[3, 2]"),
        "{err}"
    );
    let err = exe.execute(&[&good]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ArgCount {
                expected: 2,
                got: 1
            }
        ),
        "{err}"
    );
    let err = exe
        .execute_sharded(&[vec![&good, &good], vec![&good, &good]])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::DeviceCount {
                expected: 1,
                got: 2
            }
        ),
        "{err}"
    );
    // Still usable afterwards.
    let out: Vec<f32> = exe.execute(&[&good, &good]).unwrap()[0].to_host().unwrap();
    assert_eq!(out, vec![2.0; 6]);
}

#[test]
fn invalid_modules_are_rejected_with_an_error() {
    let c = client(1);
    // Shape mismatch: add of f32[2,3] and f32[3,2].
    let (a, b) = (shape(P::F32, &[2, 3]), shape(P::F32, &[3, 2]));
    let m = module(
        vec![
            param(1, 0, &a),
            param(2, 1, &b),
            inst(3, "add", &a, &[1, 2]),
        ],
        3,
        None,
    );
    let err = c.compile(&m, &CompileOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Pjrt {
                call: "PJRT_Client_Compile",
                ..
            }
        ),
        "{err}"
    );
    // Not a module at all.
    let err = c
        .compile(b"\xff\xffnot a proto", &CompileOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::Pjrt { .. }), "{err}");
    // Invalid options are caught on our side (PJRT would abort on zero replicas).
    let err = c
        .compile(&add_module(false), &CompileOptions::replicas(0))
        .unwrap_err();
    assert!(matches!(err, Error::Option(_)), "{err}");
}

#[test]
fn missing_plugin_says_how_to_install() {
    let err = Plugin::load("/nonexistent/dir/xla_cpu_pjrt.so").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("tpu-run plugin install cpu"), "{msg}");
    let err = Plugin::load("/nonexistent/libtpu/libtpu.so").unwrap_err();
    assert!(
        err.to_string().contains("tpu-run plugin install tpu"),
        "{err}"
    );
}

#[test]
fn donation_deletes_the_aliased_input() {
    let c = client(1);
    let dev = &c.addressable_devices().unwrap()[0];
    let exe = c
        .compile(&add_module(true), &CompileOptions::default())
        .unwrap();
    let mut r = rng();
    let (x, y) = (rand_f32(&mut r, 6), rand_f32(&mut r, 6));
    let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();

    // Not donated when listed as non-donatable.
    let bx = c.buffer_from_host(&x, &[2, 3], dev).unwrap();
    let by = c.buffer_from_host(&y, &[2, 3], dev).unwrap();
    let keep = ExecuteOptions {
        non_donatable_input_indices: vec![0],
        ..Default::default()
    };
    let out = exe.execute_with(&[&bx, &by], &keep).unwrap();
    assert_eq!(out[0].to_host::<f32>().unwrap(), want);
    assert!(!bx.is_deleted().unwrap());

    // Donated by default.
    let out = exe.execute(&[&bx, &by]).unwrap();
    assert_eq!(out[0].to_host::<f32>().unwrap(), want);
    assert!(bx.is_deleted().unwrap());
    assert!(!by.is_deleted().unwrap());
    let err = exe.execute(&[&bx, &by]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Deleted {
                device: 0,
                index: 0
            }
        ),
        "{err}"
    );
    // Reading a donated buffer is an error, not a crash.
    assert!(bx.to_host::<f32>().is_err());
}

#[test]
fn serialize_and_load_back() {
    let c = client(1);
    let dev = &c.addressable_devices().unwrap()[0];
    let exe = c
        .compile(&add_module(false), &CompileOptions::default())
        .unwrap();
    let bytes = exe.serialize().unwrap();
    assert!(!bytes.is_empty());
    let back = c.deserialize_executable(&bytes).unwrap();
    // Shapes of a loaded executable come from the plugin's optimized program.
    assert!(back.parameter_shapes().is_some());
    assert_eq!(back.parameter_shapes(), exe.parameter_shapes());
    let mut r = rng();
    let (x, y) = (rand_f32(&mut r, 6), rand_f32(&mut r, 6));
    let bx = c.buffer_from_host(&x, &[2, 3], dev).unwrap();
    let by = c.buffer_from_host(&y, &[2, 3], dev).unwrap();
    let a: Vec<f32> = exe.execute(&[&bx, &by]).unwrap()[0].to_host().unwrap();
    let b: Vec<f32> = back.execute(&[&bx, &by]).unwrap()[0].to_host().unwrap();
    assert_eq!(a, b);
    assert!(c.deserialize_executable(b"garbage").is_err());
}

#[test]
fn execute_sharded_on_two_devices() {
    let c = client(2);
    let devs = c.addressable_devices().unwrap();
    let mut opts = CompileOptions::replicas(2);
    opts.device_assignment = Some(vec![vec![0, 1]]);
    let exe = c.compile(&add_module(false), &opts).unwrap();
    assert_eq!(exe.addressable_devices().len(), 2);
    let mut r = rng();
    let inputs: Vec<(Vec<f32>, Vec<f32>)> = (0..2)
        .map(|_| (rand_f32(&mut r, 6), rand_f32(&mut r, 6)))
        .collect();
    let bufs: Vec<(Buffer, Buffer)> = inputs
        .iter()
        .zip(exe.addressable_devices())
        .map(|((x, y), d)| {
            (
                c.buffer_from_host(x, &[2, 3], d).unwrap(),
                c.buffer_from_host(y, &[2, 3], d).unwrap(),
            )
        })
        .collect();
    let lists: Vec<Vec<&Buffer>> = bufs.iter().map(|(x, y)| vec![x, y]).collect();
    let out = exe.execute_sharded(&lists).unwrap();
    assert_eq!(out.len(), 2);
    for (k, ((x, y), outs)) in inputs.iter().zip(&out).enumerate() {
        let got: Vec<f32> = outs[0].to_host().unwrap();
        let want: Vec<f32> = x.iter().zip(y).map(|(a, b)| a + b).collect();
        assert_eq!(got, want, "device {k}");
        assert_eq!(outs[0].device().unwrap(), devs[k]);
    }
}

#[test]
fn handles_cross_threads() {
    let c = client(1);
    let dev = c.addressable_devices().unwrap()[0].clone();
    let exe = std::sync::Arc::new(
        c.compile(&add_module(false), &CompileOptions::default())
            .unwrap(),
    );
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (c, dev, exe) = (c.clone(), dev.clone(), exe.clone());
            std::thread::spawn(move || {
                let x = vec![t as f32; 6];
                let b = c.buffer_from_host(&x, &[2, 3], &dev).unwrap();
                let out: Vec<f32> = exe.execute(&[&b, &b]).unwrap()[0].to_host().unwrap();
                assert_eq!(out, vec![2.0 * t as f32; 6]);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

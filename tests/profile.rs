//! `tpu_run::profile`: a synthetic XSpace whose device events name the instructions of a module
//! really compiled on the CPU plugin (GPU-style `hlo_op` stats, a TPU-style `XLA Ops` line, a
//! host plane), written as xplane.pb, trace.json and layers.tsv and checked against sums made
//! here from the optimized module's own metadata; the fallback for fusions without metadata on
//! a hand-built module; and the CPU plugin's "no profiler" answer.
mod common;
use common::client;
use hlo::proto::{
    HloComputationProto, HloInstructionProto, HloModuleProto, OpMetadata, ShapeProto,
};
use hlo::{ElementType::F32, Shape};
use prost::Message;
use std::collections::BTreeMap;
use tpu::CompileOptions;
use tpu_run::profile::scopes::{scope_of, OpScopes};
use tpu_run::profile::xplane::{
    x_event, x_stat, XEvent, XEventMetadata, XLine, XPlane, XSpace, XStat, XStatMetadata,
};
use tpu_run::profile::{capture, write_report};

/// A two-block "layer" and a pooler, each in its name scope, compiled on the CPU plugin.
fn optimized_module() -> HloModuleProto {
    let m = hlo::ModuleBuilder::new("profiled");
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![8, 16]), "x").unwrap();
    let w1 = b.parameter(Shape::array(F32, vec![16, 16]), "w1").unwrap();
    let w2 = b.parameter(Shape::array(F32, vec![16, 16]), "w2").unwrap();
    let _enc = b.scope("encoder");
    let _layer = b.scope("layer_0");
    let h = b
        .with_scope("attention", |b| {
            let s = b.matmul(x, w1)?;
            let t = b.tanh(s)?;
            b.mul(t, b.exp(t)?)
        })
        .unwrap();
    let y = b
        .with_scope("ffn", |b| {
            let s = b.matmul(h, w2)?;
            b.add(b.logistic(s)?, h)
        })
        .unwrap();
    drop(_layer);
    drop(_enc);
    let z = b.with_scope("pooler", |b| b.tanh(b.mul(y, y)?)).unwrap();
    let entry = b.finish(z).unwrap();
    let module = m.build(entry).unwrap();
    let exe = client()
        .compile(
            &module.to_proto_bytes().unwrap(),
            &CompileOptions::default(),
        )
        .unwrap();
    HloModuleProto::decode(exe.optimized_module().unwrap().as_slice()).unwrap()
}

/// The scope this test expects for an op name, written out by hand.
fn expected_scope(op_name: &str) -> Option<&'static str> {
    ["encoder/layer_0/attention", "encoder/layer_0/ffn", "pooler"]
        .into_iter()
        .find(|s| op_name.starts_with(&format!("{s}/")))
}

fn entry(m: &HloModuleProto) -> &HloComputationProto {
    m.computations
        .iter()
        .find(|c| c.id == m.entry_computation_id)
        .unwrap()
}

fn stat_meta(id: i64, name: &str) -> (i64, XStatMetadata) {
    (
        id,
        XStatMetadata {
            id,
            name: name.into(),
            ..Default::default()
        },
    )
}

fn stat(id: i64, v: x_stat::Value) -> XStat {
    XStat {
        metadata_id: id,
        value: Some(v),
    }
}

fn event(meta: i64, offset_ps: i64, duration_ps: i64, stats: Vec<XStat>) -> XEvent {
    XEvent {
        metadata_id: meta,
        data: Some(x_event::Data::OffsetPs(offset_ps)),
        duration_ps,
        stats,
    }
}

fn event_meta(id: i64, name: &str) -> (i64, XEventMetadata) {
    (
        id,
        XEventMetadata {
            id,
            name: name.into(),
            ..Default::default()
        },
    )
}

const T_NS: i64 = 1_790_000_000_000_000_000;
const HLO_OP: i64 = 1;
const HLO_MODULE: i64 = 2;
const CORRELATION: i64 = 3;

/// Kernels of the GPU plane: (instruction, expected scope, duration ps).
type Kernel = (String, &'static str, i64);

/// A GPU plane (CUPTI style: kernel names, `hlo_op` as a reference stat, `hlo_module` as a
/// string), a TPU plane (`XLA Ops` names the instruction, `XLA Modules` spans it) and a host.
fn space(module: &HloModuleProto, kernels: &[Kernel]) -> XSpace {
    let mut gpu = XPlane {
        id: 7,
        name: "/device:GPU:0".into(),
        stat_metadata: [
            stat_meta(HLO_OP, "hlo_op"),
            stat_meta(HLO_MODULE, "hlo_module"),
            stat_meta(CORRELATION, "correlation_id"),
        ]
        .into(),
        ..Default::default()
    };
    let mut stream = XLine {
        id: 12,
        name: "Stream #12(compute)".into(),
        timestamp_ns: T_NS,
        ..Default::default()
    };
    for (i, (inst, _, dur)) in kernels.iter().enumerate() {
        let i = i as i64;
        // The instruction name lives in a stat metadata, referred to by ref_value.
        gpu.stat_metadata.extend([stat_meta(100 + i, inst)]);
        gpu.event_metadata
            .extend([event_meta(10 + i, &format!("loop_kernel_{i}"))]);
        stream.events.push(event(
            10 + i,
            i * 10_000_000,
            *dur,
            vec![
                stat(HLO_OP, x_stat::Value::RefValue(100 + i as u64)),
                stat(HLO_MODULE, x_stat::Value::StrValue(module.name.clone())),
                stat(CORRELATION, x_stat::Value::Int64Value(500 + i)),
            ],
        ));
    }
    // A kernel of another module naming an instruction of the same name, and a copy.
    gpu.event_metadata
        .extend([event_meta(1, "other_kernel"), event_meta(2, "MemcpyH2D")]);
    stream.events.push(event(
        1,
        900_000_000,
        7_000_001,
        vec![
            stat(HLO_OP, x_stat::Value::RefValue(100)),
            stat(HLO_MODULE, x_stat::Value::StrValue("jit_other".into())),
        ],
    ));
    stream.events.push(event(2, 950_000_000, 3_000_000, vec![]));
    gpu.lines.push(stream);

    let (first, _, _) = &kernels[0];
    let tpu = XPlane {
        id: 8,
        name: "/device:TPU:0".into(),
        event_metadata: [event_meta(1, &module.name), event_meta(2, first)].into(),
        lines: vec![
            XLine {
                id: 1,
                name: "XLA Modules".into(),
                timestamp_ns: T_NS,
                events: vec![event(1, 0, 50_000_000, vec![])],
                ..Default::default()
            },
            XLine {
                id: 2,
                name: "XLA Ops".into(),
                timestamp_ns: T_NS,
                events: vec![event(2, 1_000, 4_500_000, vec![])],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let host = XPlane {
        id: 1,
        name: "/host:CPU".into(),
        event_metadata: [event_meta(1, "ExecuteHelper")].into(),
        lines: vec![XLine {
            id: 99,
            name: "python3".into(),
            display_name: "main thread".into(),
            timestamp_ns: T_NS - 1_000,
            events: vec![event(1, 0, 1_000_000_000, vec![])],
            ..Default::default()
        }],
        ..Default::default()
    };
    XSpace {
        planes: vec![host, gpu, tpu],
        hostnames: vec!["test-host".into()],
        ..Default::default()
    }
}

#[test]
fn device_time_is_summed_per_scope_and_per_kernel_and_written_out() {
    let module = optimized_module();
    // Every entry instruction XLA left with an op name of ours becomes a kernel.
    let kernels: Vec<Kernel> = entry(&module)
        .instructions
        .iter()
        .filter_map(|i| {
            let op = i.metadata.as_ref()?.op_name.as_str();
            Some((i.name.clone(), expected_scope(op)?))
        })
        .enumerate()
        .map(|(k, (name, scope))| (name, scope, 1_000_000 * (k as i64 + 1) + 123))
        .collect();
    let fusions = entry(&module)
        .instructions
        .iter()
        .filter(|i| i.opcode == "fusion" && kernels.iter().any(|k| k.0 == i.name))
        .count();
    assert!(fusions >= 1, "XLA carried no op name onto a fusion");
    let scopes_seen: std::collections::BTreeSet<_> = kernels.iter().map(|k| k.1).collect();
    assert!(scopes_seen.len() >= 2, "{kernels:?}");

    // The sums expected: every kernel, plus the TPU op (the first kernel's instruction).
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, scope, dur) in &kernels {
        *expected.entry(scope).or_default() += dur;
    }
    *expected.entry(kernels[0].1).or_default() += 4_500_000;

    let sp = space(&module, &kernels);
    let bytes = sp.encode_to_vec();
    let dir = tempfile::tempdir().unwrap();
    let scopes = OpScopes::from_module(&module);
    let report = write_report(dir.path(), &bytes, Some(&scopes)).unwrap();

    let mut want: Vec<(String, f64)> = expected
        .iter()
        .map(|(s, ps)| (s.to_string(), *ps as f64 / 1e9))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(report.per_scope_ms, want);
    // The other module's kernel and the copy.
    assert_eq!(report.unmapped_events, 2);

    // The raw XSpace, where TensorBoard looks for it.
    let rel = report.xplane.strip_prefix(dir.path()).unwrap();
    let parts: Vec<_> = rel
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    assert_eq!(parts[..2], ["plugins", "profile"]);
    assert_eq!(parts[3], "test-host.xplane.pb");
    let run = parts[2].as_bytes();
    assert!(
        run.len() == 19
            && run.iter().enumerate().all(|(i, c)| match i {
                4 | 7 | 10 | 13 | 16 => *c == b'_',
                _ => c.is_ascii_digit(),
            }),
        "{}",
        parts[2]
    );
    assert_eq!(std::fs::read(&report.xplane).unwrap(), bytes);
    // A second capture into the same folder gets its own run.
    let again = write_report(dir.path(), &bytes, Some(&scopes)).unwrap();
    assert_ne!(again.xplane, report.xplane);
    assert!(report.xplane.exists());

    // layers.tsv: the same sums, then the unmapped row.
    let tsv = std::fs::read_to_string(&report.layers_tsv).unwrap();
    let mut rows = tsv.lines();
    assert_eq!(rows.next(), Some("scope\tdevice_ms\tevents"));
    for (scope, ms) in &want {
        let n =
            kernels.iter().filter(|k| k.1 == scope).count() + usize::from(*scope == kernels[0].1);
        assert_eq!(rows.next(), Some(format!("{scope}\t{ms:.6}\t{n}").as_str()));
    }
    assert_eq!(rows.next(), Some("(unmapped)\t0.010000\t2"));
    assert_eq!(rows.next(), None);

    // unmapped.tsv: the same two events by kind, their times adding up to the unmapped row.
    let unmapped =
        std::fs::read_to_string(report.layers_tsv.with_file_name("unmapped.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = unmapped
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let events: usize = rows.iter().map(|r| r[2].parse::<usize>().unwrap()).sum();
    let ms: f64 = rows.iter().map(|r| r[1].parse::<f64>().unwrap()).sum();
    assert_eq!(events, 2, "{unmapped}");
    assert!((ms - 0.01).abs() < 1e-9, "{unmapped}");
    assert!(rows.iter().all(|r| r[0].contains("hlo_op=")), "{unmapped}");

    // kernels.tsv: every mapped event once, by folded scope and kernel name.
    let by_kernel =
        std::fs::read_to_string(report.layers_tsv.with_file_name("kernels.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = by_kernel
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let events: usize = rows.iter().map(|r| r[3].parse::<usize>().unwrap()).sum();
    let ms: f64 = rows.iter().map(|r| r[2].parse::<f64>().unwrap()).sum();
    let want_ms: f64 = want.iter().map(|w| w.1).sum();
    assert_eq!(events, kernels.len() + 1, "{by_kernel}");
    assert!(
        (ms - want_ms).abs() < 1e-5,
        "{ms} vs {want_ms}: {by_kernel}"
    );
    assert!(
        rows.iter().all(|r| !r[0].contains("layer_0")),
        "{by_kernel}"
    );

    check_trace(&report.trace_json, &kernels);
}

/// One process per plane, one thread per line, an X event per event; times in microseconds from
/// the earliest event (the host's, 1 us before the device lines start).
fn check_trace(path: &std::path::Path, kernels: &[Kernel]) {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let named = |what: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == what)
            .map(|e| e["args"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        named("process_name"),
        ["/host:CPU", "/device:GPU:0", "/device:TPU:0"]
    );
    assert_eq!(
        named("thread_name"),
        [
            "main thread",
            "Stream #12(compute)",
            "XLA Modules",
            "XLA Ops"
        ]
    );
    let xs: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(xs.len(), 1 + kernels.len() + 2 + 2);
    assert_eq!(xs[0]["name"], "ExecuteHelper");
    assert_eq!(xs[0]["ts"], 0.0);
    assert_eq!(xs[0]["dur"], 1000.0);
    for (i, (inst, scope, dur)) in kernels.iter().enumerate() {
        let e = xs[1 + i];
        assert_eq!(e["name"], format!("loop_kernel_{i}"));
        assert_eq!((e["pid"].as_u64(), e["tid"].as_u64()), (Some(1), Some(0)));
        assert_eq!(e["ts"].as_f64().unwrap(), 1.0 + 10.0 * i as f64);
        assert_eq!(e["dur"].as_f64().unwrap(), *dur as f64 / 1e6);
        assert_eq!(e["args"]["hlo_op"], inst.as_str());
        assert_eq!(e["args"]["scope"], *scope);
        assert_eq!(e["args"]["correlation_id"], 500 + i as i64);
    }
    let other = xs[1 + kernels.len()];
    assert_eq!(other["args"]["hlo_module"], "jit_other");
    assert!(other["args"].get("scope").is_none());
    // The TPU op names its instruction through the event name.
    let op = xs[xs.len() - 1];
    assert_eq!(op["name"], kernels[0].0.as_str());
    assert_eq!(op["args"]["scope"], kernels[0].1);
    assert_eq!(op["ts"].as_f64().unwrap(), 1.001);
}

fn inst(id: i64, name: &str, opcode: &str, op_name: &str, calls: &[i64]) -> HloInstructionProto {
    HloInstructionProto {
        id,
        name: name.into(),
        opcode: opcode.into(),
        shape: Some(ShapeProto::default()),
        metadata: (!op_name.is_empty()).then(|| OpMetadata {
            op_name: op_name.into(),
            ..Default::default()
        }),
        called_computation_ids: calls.to_vec(),
        ..Default::default()
    }
}

#[test]
fn fusions_sharing_a_deduplicated_computation_take_their_neighbours_scope() {
    // XLA's GPU compiler keeps one copy of identical fused computations: both layers' GELU
    // fusions call computation 1, whose op names are layer 0's.
    let shared = HloComputationProto {
        id: 1,
        name: "fused_gelu".into(),
        root_id: 2,
        instructions: vec![
            inst(1, "param_0", "parameter", "", &[]),
            inst(2, "tanh.2", "tanh", "encoder/layer_0/ffn/gelu/tanh", &[]),
        ],
        ..Default::default()
    };
    let with_operands = |mut i: HloInstructionProto, ops: &[i64]| {
        i.operand_ids = ops.to_vec();
        i
    };
    let main = HloComputationProto {
        id: 2,
        name: "main".into(),
        root_id: 16,
        instructions: vec![
            inst(10, "p0", "parameter", "", &[]),
            with_operands(
                inst(
                    11,
                    "gemm.1",
                    "custom-call",
                    "encoder/layer_0/ffn/intermediate/dot",
                    &[],
                ),
                &[10],
            ),
            with_operands(inst(12, "fusion.1", "fusion", "", &[1]), &[11]),
            with_operands(
                inst(
                    13,
                    "gemm.2",
                    "custom-call",
                    "encoder/layer_0/ffn/output/dot",
                    &[],
                ),
                &[12],
            ),
            with_operands(
                inst(
                    14,
                    "gemm.3",
                    "custom-call",
                    "encoder/layer_1/ffn/intermediate/dot",
                    &[],
                ),
                &[13],
            ),
            with_operands(inst(15, "fusion.2", "fusion", "", &[1]), &[14]),
            with_operands(
                inst(
                    16,
                    "gemm.4",
                    "custom-call",
                    "encoder/layer_1/ffn/output/dot",
                    &[],
                ),
                &[15],
            ),
            // Called from one place only: its computation's op name stands.
            inst(17, "fusion.3", "fusion", "", &[3]),
        ],
        ..Default::default()
    };
    let single = HloComputationProto {
        id: 3,
        name: "fused_other".into(),
        root_id: 20,
        instructions: vec![inst(
            20,
            "exp.1",
            "exponential",
            "encoder/layer_5/attention/exp",
            &[],
        )],
        ..Default::default()
    };
    let m = HloModuleProto {
        name: "m".into(),
        entry_computation_id: 2,
        computations: vec![shared, main, single],
        ..Default::default()
    };
    let s = OpScopes::from_module(&m);
    let scope = |name: &str| s.op_name(name).map(scope_of);
    assert_eq!(scope("fusion.1").as_deref(), Some("encoder/layer_0/ffn"));
    assert_eq!(scope("fusion.2").as_deref(), Some("encoder/layer_1/ffn"));
    assert_eq!(
        scope("fusion.3").as_deref(),
        Some("encoder/layer_5/attention")
    );
}

#[test]
fn a_fusion_without_metadata_takes_its_root_op_name() {
    let fused = HloComputationProto {
        id: 1,
        name: "fused_computation".into(),
        root_id: 2,
        instructions: vec![
            inst(1, "param_0.1", "parameter", "encoder/layer_1/ffn/dot", &[]),
            inst(2, "tanh.2", "tanh", "encoder/layer_1/ffn/tanh", &[]),
        ],
        ..Default::default()
    };
    // A wrapper whose own computation has no names: the name comes from one level deeper.
    let wrapper = HloComputationProto {
        id: 3,
        name: "wrapped".into(),
        root_id: 5,
        instructions: vec![inst(5, "fusion.5", "fusion", "", &[1])],
        ..Default::default()
    };
    let main = HloComputationProto {
        id: 2,
        name: "main".into(),
        root_id: 9,
        instructions: vec![
            inst(6, "fusion.7", "fusion", "", &[1]),
            inst(7, "dot.3", "dot", "encoder/layer_1/attention/dot", &[]),
            inst(8, "copy.1", "copy", "", &[]),
            inst(9, "call.4", "call", "", &[3]),
        ],
        ..Default::default()
    };
    let m = HloModuleProto {
        name: "m".into(),
        entry_computation_id: 2,
        computations: vec![fused, wrapper, main],
        ..Default::default()
    };
    let s = OpScopes::from_module_bytes(&m.encode_to_vec()).unwrap();
    assert_eq!(s.module_name, "m");
    assert_eq!(s.op_name("fusion.7"), Some("encoder/layer_1/ffn/tanh"));
    assert_eq!(s.op_name("call.4"), Some("encoder/layer_1/ffn/tanh"));
    assert_eq!(s.op_name("dot.3"), Some("encoder/layer_1/attention/dot"));
    assert_eq!(s.op_name("copy.1"), None);
    assert_eq!(s.op_name("nonexistent"), None);
    let e = OpScopes::from_module_bytes(b"\xff\xff").unwrap_err();
    assert!(format!("{e:#}").contains("not an HloModuleProto"), "{e:#}");
}

#[test]
fn without_a_module_or_a_valid_trace() {
    let module = HloModuleProto {
        name: "m".into(),
        ..Default::default()
    };
    let kernels = vec![("fusion.1".to_string(), "encoder/layer_0/ffn", 5_000_000)];
    let dir = tempfile::tempdir().unwrap();
    let bytes = space(&module, &kernels).encode_to_vec();
    let r = write_report(dir.path(), &bytes, None).unwrap();
    assert!(r.per_scope_ms.is_empty());
    // The kernel, the other module's kernel, the copy and the TPU op.
    assert_eq!(r.unmapped_events, 4);
    let e = write_report(dir.path(), b"\x0a\xff", None).unwrap_err();
    assert!(format!("{e:#}").contains("not an XSpace"), "{e:#}");
}

#[test]
fn the_cpu_plugin_has_no_profiler_and_the_steps_do_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut ran = false;
    let r = capture(client(), None, dir.path(), || {
        ran = true;
        Ok(())
    })
    .unwrap();
    assert!(r.is_none());
    assert!(!ran);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

//! libtpu with no TPU: the plugin's version and attributes, topologies by name with their device
//! descriptions, and ahead-of-time compilation (`PJRT_Compile`) of a small program and of the
//! tiny BERT train step for Cloud TPU topologies, with the compiler's memory report checked
//! against sizes computed here.
//!
//! Safety: libtpu never runs in this (networked) process. Each test re-runs itself alone under
//! `unshare --net --map-root-user` (only a down loopback interface) and does its work there; the
//! tpu crate also refuses to run libtpu with network up. libtpu is installed from PyPI (`libtpu`
//! wheel, about 140 MB) on first use, like the CPU plugin, so CI exercises the real compiler;
//! set `TPU_RUN_SKIP_LIBTPU=1` to skip these tests instead. They also skip, with a message,
//! where `unshare` cannot create the namespace.
use hlo::ir::{DotDims, Precision};
use hlo::{ElementType, ModuleBuilder, Shape};
use std::path::PathBuf;
use std::sync::Mutex;
use tpu::{CompileOptions, Plugin, PluginKind, Topology, Value};
use tpu_run::model::params::param_specs;
use tpu_run::pretrain::PretrainConfig;
use tpu_run::tpu_target::{bert_program, tpu_shape, What};

const CHILD_ENV: &str = "TPU_RUN_LIBTPU_TEST_CHILD";

/// libtpu's path, installing it when absent (parent process only: this downloads, it never loads
/// the library). `None`: skipped by `TPU_RUN_SKIP_LIBTPU`.
fn libtpu_path() -> Option<PathBuf> {
    if std::env::var_os("TPU_RUN_SKIP_LIBTPU").is_some() {
        eprintln!("skipped: TPU_RUN_SKIP_LIBTPU is set");
        return None;
    }
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = tpu::plugin::find(PluginKind::Tpu, None).filter(|p| p.is_file()) {
        return Some(p);
    }
    eprintln!("libtpu not found; installing it from PyPI (once)");
    let installed = tpu::plugin::install(PluginKind::Tpu).unwrap_or_else(|e| {
        panic!("installing libtpu failed ({e}); set TPU_RUN_SKIP_LIBTPU=1 to skip")
    });
    Some(installed.path)
}

/// In the test process: re-runs test `name` alone in a new network namespace and returns `None`
/// (its result is the child's). In that child: loads libtpu and returns it.
fn in_network_namespace(name: &str) -> Option<Plugin> {
    if std::env::var_os(CHILD_ENV).is_some() {
        assert!(
            tpu::tpu_safety::non_loopback_interfaces_up().is_empty(),
            "the child must have no network"
        );
        let path = tpu::plugin::find(PluginKind::Tpu, None).expect("libtpu path in the child");
        return Some(Plugin::load(path).expect("loading libtpu without network"));
    }
    let path = libtpu_path()?;
    let probe = std::process::Command::new("unshare")
        .args(["--net", "--map-root-user", "true"])
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        eprintln!("skipped: cannot create a network namespace with unshare: {probe:?}");
        return None;
    }
    // One libtpu process at a time: on a machine with a TPU, libtpu's /tmp/libtpu_lockfile
    // admits only one (without a TPU the tpu crate lifts that lock).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::process::Command::new("unshare")
        .args(["--net", "--map-root-user"])
        .arg(std::env::current_exe().expect("test executable"))
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, "1")
        .env(tpu::plugin::TPU_LIBRARY_PATH_ENV, &path)
        .output()
        .expect("running the test under unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed without network ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{stdout}");
    None
}

#[test]
fn libtpu_reports_version_and_attributes() {
    let Some(plugin) = in_network_namespace("libtpu_reports_version_and_attributes") else {
        return;
    };
    let (major, minor) = plugin.api_version();
    assert_eq!(major, 0);
    // libtpu 0.0.52 is C API 0.117; our table is laid out from 0.113.
    assert!(minor >= 113, "C API 0.{minor}");
    assert!(plugin.api_struct_size() >= tpu::ffi::PJRT_API_STRUCT_SIZE);
    let attrs = plugin.attributes().unwrap();
    let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert!(
        matches!(get("xla_version"), Some(Value::Int64(v)) if v >= 1),
        "{attrs:?}"
    );
    assert!(
        matches!(get("stablehlo_current_version"), Some(Value::Int64List(v)) if v.len() == 3),
        "{attrs:?}"
    );
    assert_eq!(std::env::var("TPU_SKIP_MDS_QUERY").as_deref(), Ok("1"));
}

fn coords(d: &tpu::DeviceDescription) -> Vec<i64> {
    match d.attribute("coords") {
        Some(Value::Int64List(c)) => c.clone(),
        other => panic!("device {} has no coords: {other:?}", d.id),
    }
}

#[test]
fn topologies_describe_their_devices() {
    let Some(plugin) = in_network_namespace("topologies_describe_their_devices") else {
        return;
    };
    // v5e 2x2: four single-core chips on a 2x2 grid, 16 GiB each.
    let t = Topology::create(&plugin, "v5e:2x2", &[]).unwrap();
    assert_eq!(t.platform_name().unwrap(), "tpu");
    assert!(t.platform_version().unwrap().contains("v5 lite"));
    let devs = t.device_descriptions().unwrap();
    assert_eq!(devs.len(), 4);
    let mut grid: Vec<Vec<i64>> = devs.iter().map(coords).collect();
    grid.sort();
    assert_eq!(
        grid,
        vec![vec![0, 0, 0], vec![0, 1, 0], vec![1, 0, 0], vec![1, 1, 0]]
    );
    for d in &devs {
        assert_eq!(d.kind, "TPU v5 lite");
        assert_eq!(d.process_index, 0);
        assert_eq!(d.attribute("num_cores"), Some(&Value::Int64(1)));
        assert!(matches!(
            d.attribute("device_memory_bytes_limit"),
            Some(Value::Int64(b)) if *b > 15 << 30 && *b <= 16 << 30
        ));
    }
    assert!(!t.serialize().unwrap().is_empty());
    let attrs = t.attributes().unwrap();
    assert!(attrs.iter().any(|(n, _)| n == "wrap"), "{attrs:?}");

    // v4 2x2x1: libtpu's default is one device per TensorCore (8); megacore gives one per chip.
    let split = Topology::create(&plugin, "v4:2x2x1", &[]).unwrap();
    assert_eq!(split.device_descriptions().unwrap().len(), 8);
    let mega = [(
        "chip_config_name".to_string(),
        Value::Str("megacore".into()),
    )];
    let mega = Topology::create(&plugin, "v4:2x2x1", &mega).unwrap();
    let devs = mega.device_descriptions().unwrap();
    assert_eq!(devs.len(), 4);
    assert!(devs
        .iter()
        .all(|d| d.attribute("num_cores") == Some(&Value::Int64(2))));

    // Two slices: devices carry their slice index.
    let two = [("num_slices".to_string(), Value::Int64(2))];
    let multi = Topology::create(&plugin, "v5e:2x2", &two).unwrap();
    let devs = multi.device_descriptions().unwrap();
    assert_eq!(devs.len(), 8);
    let mut slices: Vec<i64> = devs
        .iter()
        .map(|d| match d.attribute("slice_index") {
            Some(Value::Int64(s)) => *s,
            other => panic!("no slice_index: {other:?}"),
        })
        .collect();
    slices.dedup();
    assert_eq!(slices, vec![0, 1]);

    // libtpu's own errors come back as PJRT errors naming the problem.
    let err = Topology::create(&plugin, "v5e-2x2", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match regex"), "{err}");
    let err = Topology::create(&plugin, "v9:2x2", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Invalid TPU"), "{err}");
    let bad = [("frobnicate".to_string(), Value::Int64(1))];
    let err = Topology::create(&plugin, "v5e:2x2", &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("frobnicate"), "{err}");
}

#[test]
fn a_small_program_compiles_without_a_tpu() {
    let Some(plugin) = in_network_namespace("a_small_program_compiles_without_a_tpu") else {
        return;
    };
    // y = tanh(x @ w) in bf16 with f32 accumulation, and its row sums.
    let (m, k, n) = (128i64, 256i64, 512i64);
    let mb = ModuleBuilder::new("small");
    let b = mb.builder("main");
    let x = b
        .parameter(Shape::array(ElementType::Bf16, vec![m, k]), "x")
        .unwrap();
    let w = b
        .parameter(Shape::array(ElementType::Bf16, vec![k, n]), "w")
        .unwrap();
    let dims = DotDims {
        lhs_contracting: vec![1],
        rhs_contracting: vec![0],
        ..Default::default()
    };
    let y = b
        .dot_general(x, w, dims, [Precision::Default; 2], Some(ElementType::F32))
        .unwrap();
    let h = b.tanh(y).unwrap();
    let s = b.reduce_sum(h, &[1]).unwrap();
    let root = b.tuple(&[h, s]).unwrap();
    let entry = b.finish(root).unwrap();
    let module = mb.build(entry).unwrap();

    for name in ["v5e:2x2", "v4:2x2x1", "v5p:2x2x1", "v6e:2x2"] {
        let t = Topology::create(&plugin, name, &[]).unwrap();
        let exe = t
            .compile_module(&module, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(exe.name().unwrap(), "small");
        assert_eq!(exe.num_outputs().unwrap(), 2);
        let mem = exe.memory_stats().unwrap().expect("libtpu reports memory");
        // Arguments: two bf16 matrices whose dims are multiples of the TPU tiles.
        assert_eq!(mem.argument_size_in_bytes, 2 * (m * k + k * n), "{name}");
        // Outputs: f32 [m, n] and f32 [m] (libtpu pads the vector to whole tiles).
        let exact = 4 * (m * n + m);
        assert!(
            (exact..exact + 4096).contains(&mem.output_size_in_bytes),
            "{name}: outputs {} vs {exact}",
            mem.output_size_in_bytes
        );
        assert_eq!(mem.alias_size_in_bytes, 0);
        assert!(mem.generated_code_size_in_bytes > 0);
        let cost = exe.cost_analysis().unwrap().expect("libtpu reports costs");
        let prop = |n: &str| match cost.iter().find(|(k, _)| k == n) {
            Some((_, Value::Float(v))) => *v as f64,
            other => panic!("{name}: cost {n}: {other:?}"),
        };
        // 2mkn for the dot, m(n - 1) adds for the row sums; one tanh per element.
        assert_eq!(
            prop("flops"),
            (2 * m * k * n + m * (n - 1)) as f64,
            "{name}"
        );
        assert_eq!(prop("transcendentals"), (m * n) as f64, "{name}");
        let bytes = exe.serialize().unwrap();
        assert!(
            bytes.len() > 1000,
            "{name}: serialized {} bytes",
            bytes.len()
        );
    }
}

/// The TPU-shaped tiny BERT run (`tpu-run compile --tpu-shaped`), global batch `batch`, seq
/// 128, 20 predictions.
fn tpu_run_config(batch: usize) -> PretrainConfig {
    let mut run = PretrainConfig::default();
    tpu_shape(&mut run);
    run.device.backend = tpu_run::backend::Backend::Tpu;
    run.train.batch_size = batch;
    run
}

#[test]
fn the_tiny_bert_train_step_compiles_for_v5e() {
    let Some(plugin) = in_network_namespace("the_tiny_bert_train_step_compiles_for_v5e") else {
        return;
    };
    let run = tpu_run_config(8);
    let topo = Topology::create(&plugin, "v5e:2x2", &[]).unwrap();
    for what in [What::TrainStep, What::Forward] {
        let built = bert_program(&run, what, 1).unwrap();
        let (cfg, program) = (&built.model, &built.program);
        let exe = topo
            .compile(&program.proto, &program.options)
            .unwrap_or_else(|e| panic!("{what:?}: {e}"));
        let mem = exe.memory_stats().unwrap().expect("memory stats");
        let est = &program.estimate;

        // The arguments are exactly what the sizes say, up to tile padding of small vectors.
        let params: i64 = param_specs(cfg)
            .iter()
            .map(|s| 4 * s.num_elements() as i64)
            .sum();
        let (b, s, p) = (8i64, 128i64, 20i64);
        let batch = 4 * (3 * b * s + 3 * b * p + b);
        let args = match what {
            // params, Adam's m and v, the batch, the dropout key and the step counter.
            What::TrainStep => 3 * params + batch + 16 + 4,
            What::Forward => params + batch,
        };
        let got = mem.argument_size_in_bytes;
        assert!(
            got >= args && (got as f64) < args as f64 * 1.02,
            "{what:?}: arguments {got} vs {args} from the sizes"
        );
        if what == What::TrainStep {
            // Parameters and optimizer state are donated: their outputs reuse the inputs.
            assert!(mem.alias_size_in_bytes >= 3 * params, "{mem:?}");
        }
        let total = mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
            + mem.temp_size_in_bytes;
        let ratio = total as f64 / est.total() as f64;
        eprintln!(
            "{what:?}: compiler {total} B, estimate {} B, ratio {ratio:.2}",
            est.total()
        );
        assert!(
            (0.5..=2.0).contains(&ratio),
            "{what:?}: compiler total {total} vs estimate {est:?} (ratio {ratio:.2})"
        );
        let cost = exe.cost_analysis().unwrap().expect("cost analysis");
        let flops = cost
            .iter()
            .find(|(k, _)| k == "flops")
            .and_then(|(_, v)| match v {
                Value::Float(f) => Some(*f as f64),
                _ => None,
            })
            .expect("flops");
        // At least the MLM logits matmul: 2 x (batch x predictions) x hidden x padded vocab.
        let mlm = 2.0 * (b * p) as f64 * 128.0 * cfg.padded_vocab_size() as f64;
        assert!(flops > mlm, "{what:?}: flops {flops} < {mlm}");
    }
}

#[test]
fn the_tiny_bert_train_step_compiles_data_parallel_for_v5e() {
    let Some(plugin) =
        in_network_namespace("the_tiny_bert_train_step_compiles_data_parallel_for_v5e")
    else {
        return;
    };
    // 4 replicas, one per chip of v5e:2x2, each with batch 8 (a global batch of 32).
    let run = tpu_run_config(32);
    let topo = Topology::create(&plugin, "v5e:2x2", &[]).unwrap();
    let built = bert_program(&run, What::TrainStep, 4).unwrap();
    let (cfg, program) = (&built.model, &built.program);
    assert_eq!(built.shapes.batch_size, 8);
    let text = hlo::text::to_text(&program.module);
    assert!(
        text.contains("all-reduce("),
        "the step averages gradients across replicas"
    );
    assert!(
        text.contains("replica-id("),
        "dropout keys differ per replica"
    );
    assert_eq!(program.options.num_replicas, 4);
    let exe = topo
        .compile(&program.proto, &program.options)
        .unwrap_or_else(|e| panic!("4 replicas: {e}"));
    let mem = exe.memory_stats().unwrap().expect("memory stats");
    // Per device: the parameters, Adam's m and v, one replica's batch, the key and the step.
    let params: i64 = param_specs(cfg)
        .iter()
        .map(|s| 4 * s.num_elements() as i64)
        .sum();
    let (b, s, p) = (8i64, 128i64, 20i64);
    let args = 3 * params + 4 * (3 * b * s + 3 * b * p + b) + 16 + 4;
    let got = mem.argument_size_in_bytes;
    assert!(
        got >= args && (got as f64) < args as f64 * 1.02,
        "arguments {got} vs {args} from the sizes"
    );
    assert!(mem.alias_size_in_bytes >= 3 * params, "{mem:?}");
    // More replicas than the slice has devices: libtpu refuses.
    let program = bert_program(&run, What::TrainStep, 8).unwrap().program;
    let e = topo
        .compile(&program.proto, &program.options)
        .err()
        .expect("8 replicas on 4 devices");
    eprintln!("8 replicas on v5e:2x2: {e}");
}

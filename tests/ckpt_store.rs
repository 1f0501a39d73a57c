//! Checkpoints on disk: bit-exact round trips of every element type, the safetensors bytes read
//! by hand, the manifest, atomic writes (leftovers of a crash are ignored), keep-last-N, and
//! every kind of damage reported with the file and tensor named.
mod common;

use common::inputs::rng;
use hlo::{ArrayShape, ElementType, Literal};
use rand::rngs::StdRng;
use rand::{Rng, RngCore};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tpu_run::ckpt::{
    manifest, Checkpoint, CkptError, NamedTensors, OptimizerInfo, RngState, Spec, State, Store,
    TensorSpec,
};

/// Random bytes for any element type (floats get arbitrary bit patterns: NaN payloads,
/// infinities, subnormals, -0), never all zero; pred is 0 or 1.
fn random_literal(r: &mut StdRng, ty: ElementType, dims: &[i64]) -> Literal {
    let shape = ArrayShape::new(ty, dims.to_vec());
    let n = shape.byte_size() as usize;
    let bytes = loop {
        let mut b = vec![0u8; n];
        if ty == ElementType::Pred {
            b.iter_mut().for_each(|x| *x = r.gen_range(0..=1));
        } else {
            r.fill_bytes(&mut b);
        }
        if n == 0 || b.iter().any(|&x| x != 0) {
            break b;
        }
    };
    Literal::from_bytes(shape, bytes).unwrap()
}

/// A small training-like state: f32 parameters plus one tensor of each other element type,
/// Adam-like slots and loss-scale state.
fn sample_state(seed: u64, step: u64) -> State {
    let r = &mut rng(seed);
    let mut params: NamedTensors = vec![
        (
            "bert.embeddings.word_embeddings.weight".into(),
            random_literal(r, ElementType::F32, &[11, 4]),
        ),
        (
            "bert.encoder.layer.0.output.dense.weight".into(),
            random_literal(r, ElementType::F32, &[4, 6]),
        ),
        (
            "bert.encoder.layer.0.output.dense.bias".into(),
            random_literal(r, ElementType::F32, &[6]),
        ),
        ("scalar".into(), random_literal(r, ElementType::F32, &[])),
    ];
    for (i, ty) in ElementType::ALL.into_iter().enumerate() {
        params.push((
            format!("typed.{ty}"),
            random_literal(r, ty, &[2, i as i64 + 1, 3]),
        ));
    }
    let mut opt_state: NamedTensors = vec![];
    for (name, lit) in params.iter().take(3) {
        for slot in ["m", "v"] {
            let dims = lit.shape().dims.clone();
            opt_state.push((
                format!("{name}/{slot}"),
                random_literal(r, ElementType::F32, &dims),
            ));
        }
    }
    opt_state.push(("loss_scale".into(), Literal::scalar(32768.0f32)));
    opt_state.push(("loss_scale_good_steps".into(), Literal::scalar(417i32)));
    let mut s = State::new(step, params, opt_state);
    s.model_config = json!({"hidden_size": 4, "vocab_size": 11, "hidden_act": "gelu"});
    s.optimizer = OptimizerInfo {
        name: "adam_weight_decay".into(),
        hyperparameters: json!({"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-6, "weight_decay": 0.01}),
    };
    s.rng = RngState {
        dropout_key: vec![u64::MAX - 1, r.next_u64()],
        host_seed: Some(12345),
        host_state: vec![r.next_u64(), 0, 1 << 63],
    };
    s.data_position = json!({"shards": [{"file": "a.tfrecord", "offset": 9_007_199_254_740_993u64}, {"file": "b.tfrecord", "offset": 17}], "epoch": 2});
    s.extra = json!({"note": "anything"});
    s
}

fn assert_same_state(a: &State, b: &State) {
    assert_eq!(a.step, b.step);
    for (x, y) in [(&a.params, &b.params), (&a.opt_state, &b.opt_state)] {
        assert_eq!(x.len(), y.len());
        for ((na, la), (nb, lb)) in x.iter().zip(y) {
            assert_eq!(na, nb);
            assert_eq!(la.shape(), lb.shape(), "{na}");
            assert_eq!(la.bytes(), lb.bytes(), "{na}: bytes differ");
        }
    }
    assert_eq!(a.model_config, b.model_config);
    assert_eq!(a.optimizer, b.optimizer);
    assert_eq!(a.rng, b.rng);
    assert_eq!(a.data_position, b.data_position);
    assert_eq!(a.extra, b.extra);
}

fn step_dir(root: &Path, step: u64) -> PathBuf {
    root.join(format!("step-{step:08}"))
}

fn names_in(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Runs `f` with tracing output captured as text.
fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || SharedWriter(sink.clone()))
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    (out, text)
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn round_trip_every_dtype_bit_exact_in_spec_order() {
    let tmp = tempfile::tempdir().unwrap();
    let state = sample_state(1, 1234);
    let saved = Checkpoint::save(tmp.path(), &state).unwrap();
    assert_eq!(saved.path(), step_dir(tmp.path(), 1234));
    assert_eq!(names_in(tmp.path()), ["step-00001234"]);
    assert_eq!(
        names_in(saved.path()),
        [
            "manifest.json",
            "opt_state.safetensors",
            "params.safetensors"
        ]
    );

    let spec = Spec::of_state(&state);
    let loaded = Checkpoint::load_latest(tmp.path(), &spec).unwrap().unwrap();
    assert_same_state(&state, &loaded);

    // The run's order wins over the file's: reverse the expected order.
    let mut reversed = spec.clone();
    reversed.params.reverse();
    reversed.opt_state.reverse();
    let loaded = Checkpoint::load_latest(tmp.path(), &reversed)
        .unwrap()
        .unwrap();
    let names: Vec<&str> = loaded.params.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<&str> = reversed.params.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, want);

    // Without a spec, tensors come back in the saved order.
    let again = Checkpoint::open(saved.path()).unwrap().load(None).unwrap();
    assert_same_state(&state, &again);
}

#[test]
fn safetensors_bytes_read_by_hand_match() {
    // Parse params.safetensors with no library: u64 header length, JSON header, raw data.
    let tmp = tempfile::tempdir().unwrap();
    let state = sample_state(2, 7);
    let ckpt = Checkpoint::save(tmp.path(), &state).unwrap();
    let bytes = std::fs::read(ckpt.path().join("params.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let dtype_names = [
        (ElementType::Pred, "BOOL"),
        (ElementType::S8, "I8"),
        (ElementType::S32, "I32"),
        (ElementType::S64, "I64"),
        (ElementType::U8, "U8"),
        (ElementType::U32, "U32"),
        (ElementType::U64, "U64"),
        (ElementType::F16, "F16"),
        (ElementType::Bf16, "BF16"),
        (ElementType::F32, "F32"),
        (ElementType::F64, "F64"),
        (ElementType::F8E4M3FN, "F8_E4M3"),
        (ElementType::F8E5M2, "F8_E5M2"),
    ];
    let mut covered = 0;
    for (name, lit) in &state.params {
        let info = &header[name];
        let want_dtype = dtype_names
            .iter()
            .find(|(t, _)| *t == lit.element_type())
            .unwrap()
            .1;
        assert_eq!(info["dtype"], want_dtype, "{name}");
        let shape: Vec<i64> = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_i64().unwrap())
            .collect();
        assert_eq!(shape, lit.shape().dims, "{name}");
        let off = info["data_offsets"].as_array().unwrap();
        let (s, e) = (
            off[0].as_u64().unwrap() as usize,
            off[1].as_u64().unwrap() as usize,
        );
        assert_eq!(&data[s..e], lit.bytes(), "{name}");
        covered += e - s;
    }
    assert_eq!(covered, data.len(), "every data byte belongs to a tensor");
    assert_eq!(header.as_object().unwrap().len(), state.params.len());
}

#[test]
fn manifest_records_state_sizes_and_checksums() {
    let tmp = tempfile::tempdir().unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let state = sample_state(3, 42);
    let ckpt = Checkpoint::save(tmp.path(), &state).unwrap();
    let text = std::fs::read_to_string(ckpt.path().join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["format"], "tpu-run-checkpoint");
    assert_eq!(m["format_version"], 1);
    assert_eq!(m["step"], 42);
    assert_eq!(m["optimizer"]["name"], "adam_weight_decay");
    assert_eq!(m["optimizer"]["hyperparameters"]["beta2"], 0.999);
    // u64 words survive JSON exactly (no f64 rounding).
    assert_eq!(m["rng"]["dropout_key"][0].as_u64(), Some(u64::MAX - 1));
    assert_eq!(m["rng"]["host_state"][2].as_u64(), Some(1 << 63));
    assert_eq!(
        m["data_position"]["shards"][0]["offset"].as_u64(),
        Some(9_007_199_254_740_993)
    );
    let wall = m["wall_time_unix_s"].as_f64().unwrap();
    assert!(
        wall >= before.floor() && wall < before + 600.0,
        "{wall} vs {before}"
    );
    for f in m["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let bytes = std::fs::read(ckpt.path().join(name)).unwrap();
        assert_eq!(f["bytes"].as_u64(), Some(bytes.len() as u64), "{name}");
        // CRC-32C computed here bit by bit (reflected polynomial 0x82F63B78).
        let mut crc = !0u32;
        for &b in &bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        assert_eq!(f["crc32c"].as_u64(), Some(u64::from(!crc)), "{name}");
        let listed: Vec<&str> = f["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let src = if name == "params.safetensors" {
            &state.params
        } else {
            &state.opt_state
        };
        let want: Vec<&str> = src.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(listed, want);
    }
    assert_eq!(ckpt.manifest().step, 42);
}

#[test]
fn empty_optimizer_state_round_trips() {
    // Plain SGD has no slots: an empty opt_state file is still a valid checkpoint.
    let tmp = tempfile::tempdir().unwrap();
    let mut state = sample_state(4, 5);
    state.opt_state.clear();
    Checkpoint::save(tmp.path(), &state).unwrap();
    let loaded = Checkpoint::load_latest(tmp.path(), &Spec::of_state(&state))
        .unwrap()
        .unwrap();
    assert_same_state(&state, &loaded);
}

#[test]
fn no_checkpoint_is_none() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec::default();
    assert!(Checkpoint::load_latest(&tmp.path().join("absent"), &spec)
        .unwrap()
        .is_none());
    assert!(Checkpoint::load_latest(tmp.path(), &spec)
        .unwrap()
        .is_none());
}

#[test]
fn crash_leftovers_are_ignored_then_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let s100 = sample_state(5, 100);
    let s200 = sample_state(6, 200);
    Checkpoint::save(root, &s100).unwrap();
    Checkpoint::save(root, &s200).unwrap();

    // A save of step 300 killed mid-write by a process that no longer runs: a hidden temp dir
    // with a partial tensor file and no manifest.
    let dead = root.join(".tmp-step-00000300-999999999-1");
    std::fs::create_dir(&dead).unwrap();
    let full = std::fs::read(step_dir(root, 200).join("params.safetensors")).unwrap();
    std::fs::write(dead.join("params.safetensors"), &full[..full.len() / 2]).unwrap();
    // A non-atomic copy of step 400 interrupted before its manifest arrived.
    let partial = step_dir(root, 400);
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(
        step_dir(root, 200).join("params.safetensors"),
        partial.join("params.safetensors"),
    )
    .unwrap();
    // Step 500 whose manifest lists a file that is not there.
    let missing_file = step_dir(root, 500);
    std::fs::create_dir(&missing_file).unwrap();
    std::fs::copy(
        step_dir(root, 200).join("manifest.json"),
        missing_file.join("manifest.json"),
    )
    .unwrap();
    rewrite_manifest(&missing_file, |m| m["step"] = serde_json::json!(500));

    let store = Store::new(root);
    let ((latest, skipped), logs) = capture_logs(|| store.latest_with_skipped().unwrap());
    assert_eq!(latest.unwrap().step(), 200);
    let skipped_paths: Vec<&Path> = skipped.iter().map(|s| s.path.as_path()).collect();
    assert_eq!(skipped_paths, [missing_file.as_path(), partial.as_path()]);
    assert!(
        skipped[0].reason.contains("params.safetensors"),
        "{}",
        skipped[0].reason
    );
    assert!(
        skipped[1].reason.contains("no manifest.json"),
        "{}",
        skipped[1].reason
    );
    assert!(logs.contains("WARN"), "{logs}");
    assert!(
        logs.contains("step-00000400") && logs.contains("no manifest.json"),
        "{logs}"
    );
    assert!(logs.contains("step-00000500"), "{logs}");

    let loaded = Checkpoint::load_latest(root, &Spec::of_state(&s200))
        .unwrap()
        .unwrap();
    assert_same_state(&s200, &loaded);

    // The next save removes the dead process's temp dir; retention (3) counts step dirs.
    let s300 = sample_state(7, 300);
    Store::new(root)
        .with_keep_last(10)
        .unwrap()
        .save(&s300)
        .unwrap();
    assert!(!dead.exists());
    assert_eq!(
        names_in(root),
        [
            "step-00000100",
            "step-00000200",
            "step-00000300",
            "step-00000400",
            "step-00000500"
        ]
    );
}

#[test]
fn keep_last_n_and_the_newest_write_is_never_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let store = Store::new(root).with_keep_last(2).unwrap();
    for step in 1..=5 {
        store.save(&sample_state(10 + step, step)).unwrap();
    }
    assert_eq!(names_in(root), ["step-00000004", "step-00000005"]);

    // A run resumed from an earlier step writes step 3: it stays, with the newest other one.
    let s3 = sample_state(20, 3);
    store.save(&s3).unwrap();
    assert_eq!(names_in(root), ["step-00000003", "step-00000005"]);

    // keep_last 1: only what was just written.
    let s6 = sample_state(21, 6);
    Store::new(root)
        .with_keep_last(1)
        .unwrap()
        .save(&s6)
        .unwrap();
    assert_eq!(names_in(root), ["step-00000006"]);

    // Saving an existing step replaces it (no leftovers).
    let s6b = sample_state(22, 6);
    store.save(&s6b).unwrap();
    assert_eq!(names_in(root), ["step-00000006"]);
    let loaded = Checkpoint::load_latest(root, &Spec::of_state(&s6b))
        .unwrap()
        .unwrap();
    assert_same_state(&s6b, &loaded);

    let err = Store::new(root).with_keep_last(0).unwrap_err();
    assert!(err.to_string().contains("at least 1"), "{err}");
}

/// Saves steps 10 and 20 and returns the root and the state of step 20.
fn two_checkpoints(tmp: &Path) -> State {
    Checkpoint::save(tmp, &sample_state(30, 10)).unwrap();
    let s = sample_state(31, 20);
    Checkpoint::save(tmp, &s).unwrap();
    s
}

/// Edits the manifest as JSON and writes it without its checksum line (as tpu-run wrote
/// manifests before the line existed), so the check behind the checksum is what is tested.
fn rewrite_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m.as_object_mut().unwrap().remove("manifest_crc32c");
    f(&mut m);
    std::fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Makes the manifest's size and checksum of `file` agree with its current bytes, so that the
/// structure checks behind the checksum are what is tested.
fn reseal(dir: &Path, file: &str) {
    let bytes = std::fs::read(dir.join(file)).unwrap();
    rewrite_manifest(dir, |m| {
        for f in m["files"].as_array_mut().unwrap() {
            if f["name"] == file {
                f["bytes"] = json!(bytes.len());
                f["crc32c"] = json!(crc32c::crc32c(&bytes));
            }
        }
    });
}

fn load_err(root: &Path, spec: &Spec) -> CkptError {
    Checkpoint::load_latest(root, spec).unwrap_err()
}

#[test]
fn flipped_byte_is_a_checksum_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = two_checkpoints(tmp.path());
    let file = step_dir(tmp.path(), 20).join("params.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 3; // inside the tensor data
    bytes[last] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();

    let err = load_err(tmp.path(), &Spec::of_state(&s));
    let msg = err.to_string();
    assert!(
        msg.contains(&file.display().to_string()) && msg.contains("CRC-32C"),
        "{msg}"
    );
    // It names the earlier checkpoint to fall back to instead of loading it silently.
    assert!(msg.contains("step-00000010"), "{msg}");
    let CkptError::Latest { source, .. } = err else {
        panic!("{msg}")
    };
    assert!(matches!(*source, CkptError::Corrupt { ref path, .. } if *path == file));
    // verify() finds the same.
    let ckpt = Checkpoint::open(&step_dir(tmp.path(), 20)).unwrap();
    assert!(matches!(ckpt.verify(), Err(CkptError::Corrupt { .. })));
}

#[test]
fn truncated_file_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = two_checkpoints(tmp.path());
    let dir = step_dir(tmp.path(), 20);
    let file = dir.join("opt_state.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    let msg = load_err(tmp.path(), &Spec::of_state(&s)).to_string();
    assert!(
        msg.contains("opt_state.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{} bytes", bytes.len() - 100)),
        "{msg}"
    );

    // Truncated and the manifest made to agree: the safetensors structure check catches it.
    reseal(&dir, "opt_state.safetensors");
    let err = Checkpoint::open(&dir).unwrap().load(None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CkptError::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains("opt_state.safetensors") && msg.contains("not a valid safetensors file"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_in_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let s = two_checkpoints(tmp.path());
    let dir = step_dir(tmp.path(), 20);
    // Rewrite params.safetensors without one tensor, with a consistent size and checksum.
    let dropped = "bert.encoder.layer.0.output.dense.bias";
    let kept: NamedTensors = s
        .params
        .iter()
        .filter(|(n, _)| n != dropped)
        .cloned()
        .collect();
    tpu_run::ckpt::tensors::write_file(&dir.join("params.safetensors"), &kept, None).unwrap();
    reseal(&dir, "params.safetensors");
    let err = load_err(tmp.path(), &Spec::of_state(&s));
    let CkptError::Latest { source, .. } = &err else {
        panic!("{err}")
    };
    match source.as_ref() {
        CkptError::Tensor { path, tensor, msg } => {
            assert!(path.ends_with("params.safetensors"));
            assert_eq!(tensor, dropped);
            assert!(msg.contains("missing"), "{msg}");
        }
        other => panic!("{other}"),
    }
}

/// Saves steps 10 and 20, applies `damage` to step 20's directory, and checks that loading the
/// latest gives step 10's state back; returns the log lines.
fn falls_back_to_step_10(root: &Path, damage: impl FnOnce(&Path)) -> String {
    let _ = two_checkpoints(root);
    let s10 = Checkpoint::open(&step_dir(root, 10))
        .unwrap()
        .load(None)
        .unwrap();
    damage(&step_dir(root, 20));
    let (loaded, logs) = capture_logs(|| Checkpoint::load_latest(root, &Spec::of_state(&s10)));
    assert_same_state(&s10, &loaded.unwrap().unwrap());
    assert!(
        logs.contains("WARN") && logs.contains("step-00000020"),
        "{logs}"
    );
    logs
}

#[test]
fn a_manifest_changed_after_writing_is_skipped_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    // One byte of the step-20 manifest changed, the JSON still valid: "step": 20 -> 21 would
    // be caught by the directory name, so change a digit of the write time instead.
    let logs = falls_back_to_step_10(tmp.path(), |dir| {
        let p = dir.join("manifest.json");
        let text = std::fs::read_to_string(&p).unwrap();
        let at = text.find("\"wall_time_unix_s\": ").unwrap() + 21;
        let mut bytes = text.into_bytes();
        bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
        std::fs::write(&p, &bytes).unwrap();
    });
    assert!(logs.contains("edited or damaged"), "{logs}");
    let msg = Checkpoint::open(&step_dir(tmp.path(), 20))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("CRC-32C") && msg.contains("edited or damaged"),
        "{msg}"
    );
}

#[test]
fn a_file_named_like_a_checkpoint_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    Checkpoint::save(root, &sample_state(30, 10)).unwrap();
    let squatter = step_dir(root, 20);
    std::fs::write(&squatter, b"not a checkpoint").unwrap();
    let store = Store::new(root);
    let before = store.check_step_names_free().unwrap_err().to_string();
    assert!(
        before.contains("step-00000020") && before.contains("not a directory"),
        "{before}"
    );
    let err = store.save(&sample_state(31, 20)).unwrap_err().to_string();
    assert!(
        err.contains("step-00000020") && err.contains("move it out"),
        "{err}"
    );
    // Nothing replaced, nothing left behind; the earlier checkpoint is still the latest.
    assert_eq!(std::fs::read(&squatter).unwrap(), b"not a checkpoint");
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["step-00000010", "step-00000020"]);
    assert_eq!(store.latest().unwrap().unwrap().step(), 10);
}

#[test]
fn missing_manifest_is_skipped_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = falls_back_to_step_10(tmp.path(), |dir| {
        std::fs::remove_file(dir.join("manifest.json")).unwrap();
    });
    assert!(logs.contains("no manifest.json"), "{logs}");
    // Opening it directly says what is missing.
    let msg = Checkpoint::open(&step_dir(tmp.path(), 20))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("incomplete checkpoint: no manifest.json"),
        "{msg}"
    );
}

#[test]
fn wrong_expected_shape_or_dtype_is_an_error_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let s = two_checkpoints(tmp.path());
    let name = "bert.encoder.layer.0.output.dense.weight";
    let with = |f: &dyn Fn(&mut Spec)| {
        let mut spec = Spec::of_state(&s);
        f(&mut spec);
        let err = load_err(tmp.path(), &spec);
        let CkptError::Latest { source, .. } = err else {
            panic!("{err}")
        };
        *source
    };
    let set_shape = |spec: &mut Spec, shape: ArrayShape| {
        spec.params
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap()
            .shape = shape;
    };

    let err = with(&|sp| set_shape(sp, ArrayShape::new(ElementType::F32, vec![6, 4])));
    let msg = err.to_string();
    assert!(
        matches!(&err, CkptError::Tensor { tensor, .. } if tensor == name),
        "{msg}"
    );
    assert!(
        msg.contains("params.safetensors")
            && msg.contains("is f32[4,6] in the checkpoint, the run expects f32[6,4]"),
        "{msg}"
    );

    let msg = with(&|sp| set_shape(sp, ArrayShape::new(ElementType::Bf16, vec![4, 6]))).to_string();
    assert!(
        msg.contains(name) && msg.contains("the run expects bf16[4,6]"),
        "{msg}"
    );

    let msg = with(&|sp| {
        sp.opt_state.push(TensorSpec::new(
            "extra/slot",
            ArrayShape::scalar(ElementType::F32),
        ))
    })
    .to_string();
    assert!(
        msg.contains("opt_state.safetensors")
            && msg.contains("'extra/slot'")
            && msg.contains("does not have it"),
        "{msg}"
    );

    let msg = with(&|sp| sp.params.retain(|t| t.name != name)).to_string();
    assert!(
        msg.contains(name) && msg.contains("does not expect it"),
        "{msg}"
    );
}

#[test]
fn manifest_problems_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let s = two_checkpoints(tmp.path());
    let dir = step_dir(tmp.path(), 20);
    let spec = Spec::of_state(&s);

    rewrite_manifest(&dir, |m| {
        m["format_version"] = json!(manifest::FORMAT_VERSION + 1)
    });
    let msg = load_err(tmp.path(), &spec).to_string();
    assert!(
        msg.contains("manifest.json") && msg.contains("newer tpu-run"),
        "{msg}"
    );

    rewrite_manifest(&dir, |m| {
        m["format_version"] = json!(1);
        m["step"] = json!(21);
    });
    let msg = load_err(tmp.path(), &spec).to_string();
    assert!(
        msg.contains("records step 21 but the directory is named for step 20"),
        "{msg}"
    );

    rewrite_manifest(&dir, |m| {
        m["step"] = json!(20);
        m["files"][0]["name"] = json!("../escape.safetensors");
    });
    let msg = load_err(tmp.path(), &spec).to_string();
    assert!(msg.contains("not a plain data file name"), "{msg}");
}

#[test]
fn invalid_state_is_rejected_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sample_state(40, 1);
    let dup = s.params[0].clone();
    s.params.push(dup);
    let msg = Checkpoint::save(tmp.path(), &s).unwrap_err().to_string();
    assert!(
        msg.contains("two tensors are named 'bert.embeddings.word_embeddings.weight'"),
        "{msg}"
    );
    assert!(names_in(tmp.path()).is_empty());
}

#[test]
fn from_parts_names_trainer_tensors_after_the_spec() {
    let s = sample_state(50, 9);
    let spec = Spec::of_state(&s);
    let rebuilt = State::from_parts(9, &spec, s.param_literals(), s.opt_state_literals()).unwrap();
    assert_eq!(rebuilt.params, s.params);
    assert_eq!(rebuilt.opt_state, s.opt_state);

    let mut short = s.param_literals();
    short.pop();
    let msg = State::from_parts(9, &spec, short, s.opt_state_literals())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("parameters: got 16 tensors, the spec names 17"),
        "{msg}"
    );

    let mut swapped = s.param_literals();
    swapped.swap(0, 1);
    let msg = State::from_parts(9, &spec, swapped, s.opt_state_literals())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(
            "'bert.embeddings.word_embeddings.weight' is f32[4,6], the spec says f32[11,4]"
        ),
        "{msg}"
    );
}

#[test]
fn spec_from_the_train_step_layout() {
    use tpu_run::train::step::{StateSpec, StepLayout};
    use tpu_run::train::ParamSpec;
    let layout = StepLayout {
        params: vec![ParamSpec::new("w", &[3, 2]), ParamSpec::new("b", &[2])],
        opt_state: vec![
            StateSpec {
                name: "w/m".into(),
                shape: ArrayShape::new(ElementType::F32, vec![3, 2]),
                initial: 0.0,
            },
            StateSpec {
                name: "loss_scale_good_steps".into(),
                shape: ArrayShape::scalar(ElementType::S32),
                initial: 0.0,
            },
        ],
        batch: vec![],
        metric_names: vec![],
        accumulation_steps: 1,
        replicas: 1,
    };
    let spec = Spec::from_layout(&layout);
    let names = |v: &[TensorSpec]| v.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&spec.params), ["w", "b"]);
    assert_eq!(names(&spec.opt_state), ["w/m", "loss_scale_good_steps"]);
    assert_eq!(
        spec.params[0].shape,
        ArrayShape::new(ElementType::F32, vec![3, 2])
    );
    assert_eq!(
        spec.opt_state[1].shape,
        ArrayShape::scalar(ElementType::S32)
    );
}

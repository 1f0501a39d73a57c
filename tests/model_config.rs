//! BERT config parsing (google-research and Hugging Face JSON), validation errors, presets and
//! their parameter counts, initialization statistics, and the HF / TF name and layout mapping.
use tpu_run::model::config::{BertConfig, ConfigFlavor, HiddenAct, PRESETS};
use tpu_run::model::init::{init_params, truncated_normal};
use tpu_run::model::params::{
    canonical_hf_name, encoder_param_specs, from_hf, param_specs, tf_variable, to_hf, HostTensor,
    ParamInit,
};
use tpu_run::model::{AttentionKernel, ComputeDtype, Execution, ModelError};

/// google-research/bert's uncased_L-12_H-768_A-12/bert_config.json, verbatim.
const GOOGLE_BASE: &str = r#"{
  "attention_probs_dropout_prob": 0.1,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 768,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 512,
  "num_attention_heads": 12,
  "num_hidden_layers": 12,
  "type_vocab_size": 2,
  "vocab_size": 30522
}"#;

/// Hugging Face bert-base-uncased/config.json, verbatim.
const HF_BASE: &str = r#"{
  "architectures": ["BertForMaskedLM"],
  "attention_probs_dropout_prob": 0.1,
  "gradient_checkpointing": false,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 768,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512,
  "model_type": "bert",
  "num_attention_heads": 12,
  "num_hidden_layers": 12,
  "pad_token_id": 0,
  "position_embedding_type": "absolute",
  "transformers_version": "4.6.0.dev0",
  "type_vocab_size": 2,
  "use_cache": true,
  "vocab_size": 30522
}"#;

/// sentence-transformers/all-MiniLM-L6-v2/config.json, verbatim.
const HF_MINILM: &str = r#"{
  "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
  "architectures": ["BertModel"],
  "attention_probs_dropout_prob": 0.1,
  "gradient_checkpointing": false,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 384,
  "initializer_range": 0.02,
  "intermediate_size": 1536,
  "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512,
  "model_type": "bert",
  "num_attention_heads": 12,
  "num_hidden_layers": 6,
  "pad_token_id": 0,
  "position_embedding_type": "absolute",
  "transformers_version": "4.8.2",
  "type_vocab_size": 2,
  "use_cache": true,
  "vocab_size": 30522
}"#;

fn config_err(json: &str) -> (String, String) {
    match BertConfig::from_json_str(json, ConfigFlavor::HuggingFace) {
        Err(ModelError::Config { field, msg }) => (field.to_string(), msg),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn google_and_hf_configs_parse_to_the_base_preset() {
    let base = BertConfig::preset("base").unwrap();
    let hf = BertConfig::from_json_str(HF_BASE, ConfigFlavor::HuggingFace).unwrap();
    assert_eq!(
        hf, base,
        "HF bert-base-uncased is the base preset (erf GELU)"
    );
    assert_eq!(hf.hidden_act, HiddenAct::GeluErf);

    let tf = BertConfig::from_json_str(GOOGLE_BASE, ConfigFlavor::GoogleResearch).unwrap();
    assert_eq!(
        tf.hidden_act,
        HiddenAct::GeluTanh,
        "google-research's gelu is the tanh form"
    );
    assert_eq!(tf.layer_norm_eps, 1e-12);
    assert_eq!(
        BertConfig {
            hidden_act: HiddenAct::GeluErf,
            ..tf
        },
        base
    );

    let mini = BertConfig::from_json_str(HF_MINILM, ConfigFlavor::HuggingFace).unwrap();
    assert_eq!(
        (
            mini.num_hidden_layers,
            mini.hidden_size,
            mini.num_attention_heads,
            mini.intermediate_size,
            mini.head_size()
        ),
        (6, 384, 12, 1536, 32)
    );
}

#[test]
fn activation_spellings() {
    use ConfigFlavor::*;
    for (s, flavor, want) in [
        ("gelu", HuggingFace, HiddenAct::GeluErf),
        ("gelu", GoogleResearch, HiddenAct::GeluTanh),
        ("gelu_new", HuggingFace, HiddenAct::GeluTanh),
        ("gelu_new", GoogleResearch, HiddenAct::GeluTanh),
        ("gelu_pytorch_tanh", HuggingFace, HiddenAct::GeluTanh),
        ("relu", GoogleResearch, HiddenAct::Relu),
    ] {
        assert_eq!(HiddenAct::parse(s, flavor), Some(want), "{s} as {flavor:?}");
    }
    assert_eq!(HiddenAct::parse("swish", HuggingFace), None);
}

#[test]
fn config_files_pick_their_flavor_by_name() {
    let dir = std::env::temp_dir().join(format!("tpu-run-model-config-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tf")).unwrap();
    std::fs::create_dir_all(dir.join("hf")).unwrap();
    let tf_path = dir.join("tf/bert_config.json");
    let hf_path = dir.join("hf/config.json");
    std::fs::write(&tf_path, GOOGLE_BASE).unwrap();
    std::fs::write(&hf_path, GOOGLE_BASE).unwrap();
    let tf = BertConfig::from_file(&tf_path).unwrap();
    let hf = BertConfig::from_file(&hf_path).unwrap();
    assert_eq!(tf.hidden_act, HiddenAct::GeluTanh);
    assert_eq!(hf.hidden_act, HiddenAct::GeluErf);
    let forced = BertConfig::from_file_with(&hf_path, ConfigFlavor::GoogleResearch).unwrap();
    assert_eq!(forced.hidden_act, HiddenAct::GeluTanh);

    let missing = dir.join("nope/config.json");
    let err = BertConfig::from_file(&missing).unwrap_err().to_string();
    assert!(err.contains("nope/config.json"), "{err}");
    std::fs::write(&hf_path, "{ \"hidden_size\": 12").unwrap();
    let err = BertConfig::from_file(&hf_path).unwrap_err().to_string();
    assert!(err.contains("hf/config.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn our_json_round_trips_with_padding() {
    let mut cfg = BertConfig::preset("tiny").unwrap();
    cfg.pad_vocab_to = Some(128);
    cfg.hidden_act = HiddenAct::GeluTanh;
    let json = cfg.to_json();
    assert!(json.contains("\"gelu_new\""), "{json}");
    assert!(!json.contains("compute_dtype"), "{json}");
    let back: BertConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
    assert_eq!(back.padded_vocab_size(), 30592);
    // Hugging Face can read it back too: the same keys, HF activation spellings.
    let hf = BertConfig::from_json_str(&json, ConfigFlavor::HuggingFace).unwrap();
    assert_eq!(hf, cfg);
}

#[test]
fn invalid_configs_name_the_field() {
    let with = |k: &str, v: &str| {
        let mut j: serde_json::Value = serde_json::from_str(HF_BASE).unwrap();
        j[k] = serde_json::from_str(v).unwrap();
        j.to_string()
    };
    let (f, m) = config_err(&with("num_attention_heads", "7"));
    assert_eq!(f, "num_attention_heads");
    assert!(m.contains("768") && m.contains('7'), "{m}");
    let (f, m) = config_err(&with("hidden_act", "\"swish\""));
    assert_eq!(f, "hidden_act");
    assert!(m.contains("swish"), "{m}");
    let (f, _) = config_err(&with("hidden_dropout_prob", "1.0"));
    assert_eq!(f, "hidden_dropout_prob");
    let (f, _) = config_err(&with("num_hidden_layers", "0"));
    assert_eq!(f, "num_hidden_layers");
    let (f, _) = config_err(&with("initializer_range", "-0.02"));
    assert_eq!(f, "initializer_range");
    let (f, m) = config_err(&with("model_type", "\"roberta\""));
    assert_eq!(f, "model_type");
    assert!(m.contains("roberta"), "{m}");
    let (f, _) = config_err(&with("position_embedding_type", "\"relative_key\""));
    assert_eq!(f, "position_embedding_type");
    let (f, _) = config_err(&with("pad_vocab_to", "0"));
    assert_eq!(f, "pad_vocab_to");
    let mut j: serde_json::Value = serde_json::from_str(HF_BASE).unwrap();
    j.as_object_mut().unwrap().remove("hidden_size");
    let (f, m) = config_err(&j.to_string());
    assert_eq!(f, "json");
    assert!(m.contains("hidden_size"), "{m}");
    let err = BertConfig::preset("huge").unwrap_err().to_string();
    assert!(err.contains("huge") && err.contains("tiny"), "{err}");
}

#[test]
fn presets_have_the_published_shapes() {
    let want = [
        ("tiny", 2, 128, 2),
        ("mini", 4, 256, 4),
        ("small", 4, 512, 8),
        ("medium", 8, 512, 8),
        ("base", 12, 768, 12),
        ("large", 24, 1024, 16),
    ];
    assert_eq!(PRESETS.len(), want.len());
    for (name, l, h, a) in want {
        let c = BertConfig::preset(name).unwrap();
        assert_eq!(
            (
                c.num_hidden_layers,
                c.hidden_size,
                c.num_attention_heads,
                c.intermediate_size
            ),
            (l, h, a, 4 * h),
            "{name}"
        );
        assert_eq!(
            (c.vocab_size, c.max_position_embeddings, c.type_vocab_size),
            (30522, 512, 2)
        );
        assert_eq!((c.initializer_range, c.layer_norm_eps), (0.02, 1e-12));
    }
}

/// Parameter counts by hand: embeddings, per layer, pooler; then the pretraining heads.
fn hand_count(v: usize, h: usize, l: usize, i: usize, p: usize, t: usize) -> (usize, usize) {
    let embeddings = v * h + p * h + t * h + 2 * h;
    let attention = 4 * (h * h + h) + 2 * h;
    let ffn = (h * i + i) + (i * h + h) + 2 * h;
    let pooler = h * h + h;
    let encoder = embeddings + l * (attention + ffn) + pooler;
    let heads = (h * h + h) + 2 * h + v + (2 * h + 2);
    (encoder, encoder + heads)
}

#[test]
fn parameter_counts_match_the_hand_count_and_bert_base() {
    let count =
        |specs: &[tpu_run::model::ParamSpec]| specs.iter().map(|s| s.num_elements()).sum::<usize>();
    for name in PRESETS {
        let c = BertConfig::preset(name).unwrap();
        let (enc, total) = hand_count(
            c.vocab_size,
            c.hidden_size,
            c.num_hidden_layers,
            c.intermediate_size,
            c.max_position_embeddings,
            c.type_vocab_size,
        );
        assert_eq!(count(&encoder_param_specs(&c)), enc, "{name} encoder");
        assert_eq!(count(&param_specs(&c)), total, "{name} with heads");
    }
    let base = BertConfig::preset("base").unwrap();
    // BertModel (bert-base-uncased): the published 109,482,240; BertForPreTraining adds the
    // MLM transform + LayerNorm + output bias (622,650) and the NSP classifier (1,538).
    assert_eq!(count(&encoder_param_specs(&base)), 109_482_240);
    assert_eq!(count(&param_specs(&base)), 110_106_428);
    // 5 embedding tensors, 16 per layer, 2 pooler; 7 head tensors.
    assert_eq!(param_specs(&base).len(), 5 + 16 * 12 + 2 + 7);

    let mut padded = base.clone();
    padded.pad_vocab_to = Some(128);
    assert_eq!(padded.padded_vocab_size(), 30592);
    let extra = (30592 - 30522) * (768 + 1);
    assert_eq!(count(&param_specs(&padded)), 110_106_428 + extra);
}

#[test]
fn names_are_unique_and_in_hf_spelling() {
    let c = BertConfig::preset("mini").unwrap();
    let specs = param_specs(&c);
    let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names[0], "bert.embeddings.word_embeddings.weight");
    assert!(names.contains(&"bert.encoder.layer.3.attention.self.query.weight"));
    assert!(names.contains(&"bert.encoder.layer.0.output.LayerNorm.bias"));
    assert!(names.contains(&"cls.predictions.transform.LayerNorm.weight"));
    assert!(names.contains(&"cls.seq_relationship.weight"));
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), specs.len());
}

#[test]
fn init_statistics_follow_the_truncated_normal() {
    let cfg = BertConfig::preset("tiny").unwrap();
    let sigma = cfg.initializer_range;
    let params = init_params(&cfg, 7);
    let specs = param_specs(&cfg);
    assert_eq!(params.len(), specs.len());
    params.check(&specs).unwrap();
    let mut normal = vec![];
    for s in &specs {
        let t = params.get(&s.name).unwrap();
        match s.init {
            ParamInit::TruncatedNormal => normal.extend(t.data.iter().map(|&x| f64::from(x))),
            ParamInit::Zeros => assert!(t.data.iter().all(|&x| x == 0.0), "{}", s.name),
            ParamInit::Ones => assert!(t.data.iter().all(|&x| x == 1.0), "{}", s.name),
        }
    }
    let n = normal.len() as f64;
    assert!(n > 4.0e6, "tiny has ~4.4M normal values, got {n}");
    let mean = normal.iter().sum::<f64>() / n;
    let std = (normal.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let max = normal.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    // A normal truncated at 2 sigma has std sigma * sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)).
    let phi2 = (-2.0f64).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let mass = libm::erf(2.0 / std::f64::consts::SQRT_2);
    let want_std = sigma * (1.0 - 4.0 * phi2 / mass).sqrt();
    assert!((want_std / sigma - 0.8796).abs() < 1e-3);
    assert!(mean.abs() < 3.0 * want_std / n.sqrt() + 1e-6, "mean {mean}");
    assert!(
        (std / want_std - 1.0).abs() < 2e-3,
        "std {std}, want {want_std}"
    );
    assert!(
        max <= 2.0 * sigma * (1.0 + 1e-6),
        "max |x| {max} beyond 2 sigma"
    );
    assert!(
        max > 1.99 * sigma,
        "the tails are used up to 2 sigma ({max})"
    );

    // Deterministic by seed.
    assert_eq!(init_params(&cfg, 7), params);
    let other = init_params(&cfg, 8);
    let w = "bert.encoder.layer.1.attention.self.key.weight";
    assert_ne!(other.get(w).unwrap().data, params.get(w).unwrap().data);
}

#[test]
fn padded_init_equals_unpadded_plus_zero_rows() {
    let mut cfg = BertConfig::preset("tiny").unwrap();
    cfg.vocab_size = 1000;
    cfg.max_position_embeddings = 64;
    let plain = init_params(&cfg, 3);
    cfg.pad_vocab_to = Some(128);
    let padded = init_params(&cfg, 3);
    assert_eq!(cfg.padded_vocab_size(), 1024);
    for (name, t) in plain.iter() {
        let p = padded.get(name).unwrap();
        assert_eq!(&p.data[..t.data.len()], &t.data[..], "{name}");
        assert!(p.data[t.data.len()..].iter().all(|&x| x == 0.0), "{name}");
    }
}

#[test]
fn truncated_normal_redraws_beyond_two_sigma() {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let xs: Vec<f64> = (0..200_000)
        .map(|_| truncated_normal(&mut rng, 1.0))
        .collect();
    assert!(xs.iter().all(|x| x.abs() <= 2.0));
    // About 4.6% of a normal lies beyond 2 sigma: without re-drawing, clipping would pile mass
    // at +-2; re-drawing keeps the density there at phi(2) / mass (~0.057 per unit).
    let near_edge = xs.iter().filter(|x| x.abs() > 1.99).count() as f64 / xs.len() as f64;
    assert!(near_edge < 0.002, "{near_edge}");
}

#[test]
fn hf_layout_transposes_dense_weights_and_crops_padding() {
    let mut cfg = BertConfig::preset("tiny").unwrap();
    cfg.vocab_size = 300;
    cfg.pad_vocab_to = Some(128);
    let params = init_params(&cfg, 5);
    let specs = param_specs(&cfg);
    for s in &specs {
        let ours = params.get(&s.name).unwrap();
        let hf = to_hf(s, ours).unwrap();
        assert_eq!(from_hf(s, &hf).unwrap(), *ours, "{} round trip", s.name);
    }
    let spec = |n: &str| specs.iter().find(|s| s.name == n).unwrap().clone();
    // A dense weight: ours [in, out], HF [out, in].
    let q = spec("bert.encoder.layer.0.intermediate.dense.weight");
    let ours = params.get(&q.name).unwrap();
    let hf = to_hf(&q, ours).unwrap();
    assert_eq!(hf.dims, vec![512, 128]);
    assert_eq!(hf.data[5 * 128 + 3], ours.data[3 * 512 + 5]);
    let nsp = spec("cls.seq_relationship.weight");
    assert_eq!(
        to_hf(&nsp, params.get(&nsp.name).unwrap()).unwrap().dims,
        vec![2, 128]
    );
    // Vocab-padded tensors: HF sees the real 300 rows.
    let word = spec("bert.embeddings.word_embeddings.weight");
    assert_eq!(word.dims, vec![384, 128]);
    assert_eq!(
        to_hf(&word, params.get(&word.name).unwrap()).unwrap().dims,
        vec![300, 128]
    );
    let bias = spec("cls.predictions.bias");
    let hf_bias = HostTensor::new(vec![300], (0..300).map(|i| i as f32).collect()).unwrap();
    let padded = from_hf(&bias, &hf_bias).unwrap();
    assert_eq!(padded.dims, vec![384]);
    assert_eq!(padded.data[299], 299.0);
    assert!(padded.data[300..].iter().all(|&x| x == 0.0));
    // A wrong shape is an error naming the parameter.
    let err = from_hf(&word, &hf_bias).unwrap_err().to_string();
    assert!(err.contains("word_embeddings"), "{err}");
}

#[test]
fn hf_and_tf_names_map_to_ours() {
    assert_eq!(
        canonical_hf_name("encoder.layer.2.attention.output.LayerNorm.gamma").as_deref(),
        Some("bert.encoder.layer.2.attention.output.LayerNorm.weight")
    );
    assert_eq!(
        canonical_hf_name("cls.predictions.decoder.bias").as_deref(),
        Some("cls.predictions.bias")
    );
    assert_eq!(canonical_hf_name("cls.predictions.decoder.weight"), None);
    assert_eq!(canonical_hf_name("bert.embeddings.position_ids"), None);

    let cfg = BertConfig::preset("mini").unwrap();
    let mut tf_names = vec![];
    for s in param_specs(&cfg) {
        let v = tf_variable(&s.name).unwrap_or_else(|| panic!("no TF name for {}", s.name));
        assert_eq!(v.transposed, s.name == "cls.seq_relationship.weight");
        tf_names.push(v.name);
    }
    for want in [
        "bert/embeddings/word_embeddings",
        "bert/embeddings/LayerNorm/gamma",
        "bert/encoder/layer_3/attention/self/query/kernel",
        "bert/encoder/layer_0/attention/output/LayerNorm/beta",
        "bert/encoder/layer_1/intermediate/dense/bias",
        "bert/pooler/dense/kernel",
        "cls/predictions/transform/dense/kernel",
        "cls/predictions/transform/LayerNorm/gamma",
        "cls/predictions/output_bias",
        "cls/seq_relationship/output_weights",
        "cls/seq_relationship/output_bias",
    ] {
        assert!(tf_names.iter().any(|n| n == want), "missing {want}");
    }
}

/// Our model JSON as tpu-run wrote it into checkpoints before the execution choices left the
/// config: with `compute_dtype`.
const OLD_OURS: &str = r#"{
  "vocab_size": 30522,
  "hidden_size": 256,
  "num_hidden_layers": 4,
  "num_attention_heads": 4,
  "intermediate_size": 1024,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "attention_probs_dropout_prob": 0.1,
  "max_position_embeddings": 512,
  "type_vocab_size": 2,
  "initializer_range": 0.02,
  "layer_norm_eps": 1e-12,
  "pad_vocab_to": 128,
  "compute_dtype": "bf16"
}"#;

#[test]
fn old_json_with_compute_dtype_still_loads() {
    let want = BertConfig {
        pad_vocab_to: Some(128),
        ..BertConfig::preset("mini").unwrap()
    };
    let old: BertConfig = serde_json::from_str(OLD_OURS).unwrap();
    assert_eq!(old, want);
    let hf = BertConfig::from_json_str(OLD_OURS, ConfigFlavor::HuggingFace).unwrap();
    assert_eq!(hf, want);
    // Written back, it is the architecture alone.
    assert!(!old.to_json().contains("compute_dtype"));
}

#[test]
fn execution_is_not_part_of_the_model() {
    // The config serializes no precision or kernel, and equal configs are the same model
    // whatever a run computes them in; anything else differing is another model.
    let mini = BertConfig::preset("mini").unwrap();
    let json = serde_json::to_value(&mini).unwrap();
    for key in ["attention", "compute_dtype", "precision"] {
        assert!(json.get(key).is_none(), "{key} in {json}");
    }
    let saved: BertConfig = serde_json::from_value(json).unwrap();
    assert_eq!(saved, mini);
    let other = BertConfig {
        attention_probs_dropout_prob: 0.2,
        ..mini.clone()
    };
    assert_ne!(saved, other);
    assert_eq!(Execution::default(), Execution::new(ComputeDtype::F32));
    assert_eq!(Execution::default().attention, AttentionKernel::Graph);
}

#[test]
fn cudnn_attention_is_checked_against_the_model() {
    let fused = AttentionKernel::CudnnFused { seed: 3 };
    let mini = BertConfig::preset("mini").unwrap(); // head size 64
    for dtype in [ComputeDtype::Bf16, ComputeDtype::Fp8] {
        Execution::new(dtype)
            .with_attention(fused)
            .check(&mini)
            .unwrap();
    }
    let e = Execution::new(ComputeDtype::F32)
        .with_attention(fused)
        .check(&mini)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cuDNN fused attention needs bf16 compute; use the graph kernel for f32"),
        "{e}"
    );
    let odd = BertConfig {
        hidden_size: 8,
        num_attention_heads: 2,
        intermediate_size: 32,
        ..mini.clone()
    };
    let e = Execution::new(ComputeDtype::Bf16)
        .with_attention(fused)
        .check(&odd)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("head size that is a multiple of 8 and at most 128, this model has 4"),
        "{e}"
    );
    // The graph kernel runs any model in any precision.
    for dtype in [ComputeDtype::F32, ComputeDtype::Bf16, ComputeDtype::Fp8] {
        Execution::new(dtype).check(&odd).unwrap();
    }
}

//! Hugging Face `BertForPreTraining` export and import: the exported names and shapes are
//! checked against HF's layout written out here (nn.Linear stores [out, in]), values element
//! by element, config.json's keys, and the round trip back bit for bit (vocab padding included);
//! import also takes the spellings real HF files use (LayerNorm.gamma/beta, tied decoder copies,
//! position_ids buffers, bf16 tensors).
mod common;

use common::inputs::{normal_f32, rng};
use hlo::{ElementType, Literal};
use std::collections::BTreeMap;
use tpu_run::ckpt::tensors::{write_file, TensorFile};
use tpu_run::ckpt::{export_hf, import_hf, import_hf_params, CkptError};
use tpu_run::model::params::encoder_param_specs;
use tpu_run::model::{param_specs, BertConfig, ConfigFlavor, HostTensor, ParamSet};

const V: usize = 50; // real vocabulary
const H: usize = 8;
const I: usize = 12;
const P: usize = 16;
const L: usize = 2;

fn config(pad_vocab_to: Option<usize>) -> BertConfig {
    let mut json = serde_json::json!({
        "vocab_size": V, "hidden_size": H, "num_hidden_layers": L, "num_attention_heads": 2,
        "intermediate_size": I, "max_position_embeddings": P, "type_vocab_size": 2,
        "hidden_act": "gelu",
    });
    if let Some(p) = pad_vocab_to {
        json["pad_vocab_to"] = p.into();
    }
    BertConfig::from_json_str(&json.to_string(), ConfigFlavor::HuggingFace).unwrap()
}

/// Random values in every tensor (padding rows of vocab-padded tensors left zero).
fn random_params(cfg: &BertConfig, seed: u64) -> ParamSet {
    let r = &mut rng(seed);
    let mut set = ParamSet::new();
    for spec in param_specs(cfg) {
        let row: usize = spec.dims.iter().skip(1).product();
        let mut data = normal_f32(r, spec.real_rows * row);
        data.resize(spec.num_elements(), 0.0);
        set.insert(
            spec.name.clone(),
            HostTensor::new(spec.dims.clone(), data).unwrap(),
        );
    }
    set
}

/// Every tensor Hugging Face's BertForPreTraining saves (tied decoder copies excluded) with its
/// shape in HF's layout.
fn hf_layout() -> BTreeMap<String, Vec<usize>> {
    let mut m = BTreeMap::new();
    let mut add = |n: String, d: Vec<usize>| assert!(m.insert(n, d).is_none());
    add("bert.embeddings.word_embeddings.weight".into(), vec![V, H]);
    add(
        "bert.embeddings.position_embeddings.weight".into(),
        vec![P, H],
    );
    add(
        "bert.embeddings.token_type_embeddings.weight".into(),
        vec![2, H],
    );
    for p in [
        "bert.embeddings.LayerNorm",
        "cls.predictions.transform.LayerNorm",
    ] {
        add(format!("{p}.weight"), vec![H]);
        add(format!("{p}.bias"), vec![H]);
    }
    for l in 0..L {
        let pre = format!("bert.encoder.layer.{l}");
        for d in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            add(format!("{pre}.{d}.weight"), vec![H, H]);
            add(format!("{pre}.{d}.bias"), vec![H]);
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(format!("{pre}.{ln}.weight"), vec![H]);
            add(format!("{pre}.{ln}.bias"), vec![H]);
        }
        add(format!("{pre}.intermediate.dense.weight"), vec![I, H]);
        add(format!("{pre}.intermediate.dense.bias"), vec![I]);
        add(format!("{pre}.output.dense.weight"), vec![H, I]);
        add(format!("{pre}.output.dense.bias"), vec![H]);
    }
    add("bert.pooler.dense.weight".into(), vec![H, H]);
    add("bert.pooler.dense.bias".into(), vec![H]);
    add("cls.predictions.transform.dense.weight".into(), vec![H, H]);
    add("cls.predictions.transform.dense.bias".into(), vec![H]);
    add("cls.predictions.bias".into(), vec![V]);
    add("cls.seq_relationship.weight".into(), vec![2, H]);
    add("cls.seq_relationship.bias".into(), vec![2]);
    m
}

fn f32s(l: &Literal) -> Vec<f32> {
    l.to_vec::<f32>().unwrap()
}

#[test]
fn export_uses_hf_names_layouts_and_config() {
    let cfg = config(Some(16)); // 50 -> 64 rows here, 50 in the HF file
    let params = random_params(&cfg, 1);
    let tmp = tempfile::tempdir().unwrap();
    export_hf(tmp.path(), &cfg, &params).unwrap();

    let file = TensorFile::read(&tmp.path().join("model.safetensors")).unwrap();
    assert_eq!(file.metadata.get("format").map(String::as_str), Some("pt"));
    let got: BTreeMap<String, Vec<usize>> = file
        .tensors
        .iter()
        .map(|(n, l)| {
            (
                n.clone(),
                l.shape().dims.iter().map(|&d| d as usize).collect(),
            )
        })
        .collect();
    assert_eq!(got, hf_layout());
    assert!(file
        .tensors
        .values()
        .all(|l| l.element_type() == ElementType::F32));

    // Dense weights: HF[o][i] == ours[i][o].
    for name in [
        "bert.encoder.layer.1.intermediate.dense.weight",
        "bert.encoder.layer.0.output.dense.weight",
        "cls.seq_relationship.weight",
        "bert.pooler.dense.weight",
    ] {
        let ours = params.get(name).unwrap();
        let (n_in, n_out) = (ours.dims[0], ours.dims[1]);
        let hf = f32s(&file.tensors[name]);
        for i in 0..n_in {
            for o in 0..n_out {
                assert_eq!(
                    hf[o * n_in + i].to_bits(),
                    ours.data[i * n_out + o].to_bits(),
                    "{name}[{o}][{i}]"
                );
            }
        }
    }
    // Vocab-padded tensors: the first V rows, unchanged.
    let word = params
        .get("bert.embeddings.word_embeddings.weight")
        .unwrap();
    assert_eq!(
        f32s(&file.tensors["bert.embeddings.word_embeddings.weight"]),
        word.data[..V * H]
    );
    let bias = params.get("cls.predictions.bias").unwrap();
    assert_eq!(f32s(&file.tensors["cls.predictions.bias"]), bias.data[..V]);
    // Everything else as is.
    let ln = "bert.encoder.layer.1.attention.output.LayerNorm.weight";
    assert_eq!(f32s(&file.tensors[ln]), params.get(ln).unwrap().data);

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["architectures"],
        serde_json::json!(["BertForPreTraining"])
    );
    assert_eq!(config["model_type"], "bert");
    assert_eq!(config["vocab_size"], V);
    assert_eq!(config["hidden_size"], H);
    assert_eq!(config["intermediate_size"], I);
    assert_eq!(config["hidden_act"], "gelu");
    assert_eq!(config["layer_norm_eps"], 1e-12);
    assert!(config.get("pad_vocab_to").is_none() && config.get("compute_dtype").is_none());
}

#[test]
fn export_import_round_trip_is_bit_exact() {
    let padded = config(Some(16));
    let params = random_params(&padded, 2);
    let tmp = tempfile::tempdir().unwrap();
    export_hf(tmp.path(), &padded, &params).unwrap();

    // import_hf reads config.json: the HF config has no padding.
    let (cfg, imported) = import_hf(tmp.path()).unwrap();
    assert_eq!(cfg, config(None));
    for spec in param_specs(&cfg) {
        let ours = params.get(&spec.name).unwrap();
        let row: usize = spec.dims.iter().skip(1).product();
        let got = imported.get(&spec.name).unwrap();
        assert_eq!(got.dims, spec.dims, "{}", spec.name);
        assert_eq!(got.data, ours.data[..spec.dims[0] * row], "{}", spec.name);
    }
    // Into the padded layout: identical to what was exported, padding rows zero.
    let back =
        import_hf_params(&tmp.path().join("model.safetensors"), &param_specs(&padded)).unwrap();
    assert_eq!(back, params);
    // Encoder-only import ignores the heads.
    let enc = import_hf_params(
        &tmp.path().join("model.safetensors"),
        &encoder_param_specs(&padded),
    )
    .unwrap();
    assert_eq!(enc.len(), encoder_param_specs(&padded).len());
}

#[test]
fn import_accepts_real_hf_spellings_and_half_precision() {
    let cfg = config(None);
    let params = random_params(&cfg, 3);
    let tmp = tempfile::tempdir().unwrap();
    export_hf(tmp.path(), &cfg, &params).unwrap();
    let path = tmp.path().join("model.safetensors");
    let file = TensorFile::read(&path).unwrap();

    // Rewrite as old HF files look: bf16, LayerNorm.gamma/beta, the tied decoder copies and the
    // position_ids buffer present.
    let mut rewritten = vec![];
    for (name, lit) in &file.tensors {
        let vals: Vec<half::bf16> = f32s(lit).iter().map(|&x| half::bf16::from_f32(x)).collect();
        let new = Literal::from_slice(&vals, &lit.shape().dims).unwrap();
        let renamed = name
            .replace("LayerNorm.weight", "LayerNorm.gamma")
            .replace("LayerNorm.bias", "LayerNorm.beta");
        rewritten.push((renamed, new));
    }
    let word = rewritten
        .iter()
        .find(|(n, _)| n == "bert.embeddings.word_embeddings.weight")
        .unwrap()
        .1
        .clone();
    rewritten.push(("cls.predictions.decoder.weight".into(), word));
    // A decoder bias that differs from cls.predictions.bias: the canonical key must win.
    let sevens = Literal::from_slice(&[half::bf16::from_f32(7.0); V], &[V as i64]).unwrap();
    rewritten.push(("cls.predictions.decoder.bias".into(), sevens));
    let ids: Vec<i64> = (0..P as i64).collect();
    rewritten.push((
        "bert.embeddings.position_ids".into(),
        Literal::from_slice(&ids, &[1, P as i64]).unwrap(),
    ));
    write_file(&path, &rewritten, None).unwrap();

    let (_, imported) = import_hf(tmp.path()).unwrap();
    for (name, t) in params.iter() {
        let want: Vec<f32> = t
            .data
            .iter()
            .map(|&x| half::bf16::from_f32(x).to_f32())
            .collect();
        assert_eq!(imported.get(name).unwrap().data, want, "{name}");
    }
}

#[test]
fn import_errors_name_the_file_and_tensor() {
    let cfg = config(None);
    let params = random_params(&cfg, 4);
    let tmp = tempfile::tempdir().unwrap();
    export_hf(tmp.path(), &cfg, &params).unwrap();
    let path = tmp.path().join("model.safetensors");
    let file = TensorFile::read(&path).unwrap();
    let missing = "bert.encoder.layer.1.output.dense.bias";
    let kept: Vec<(String, Literal)> = file
        .tensors
        .iter()
        .filter(|(n, _)| *n != missing)
        .map(|(n, l)| (n.clone(), l.clone()))
        .collect();
    write_file(&path, &kept, None).unwrap();
    let err = import_hf(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, CkptError::Tensor { tensor, path: p, .. } if tensor == missing && *p == path),
        "{err}"
    );

    // A transposed-wrong tensor: HF [I, H] stored as [H, I].
    let bad: Vec<(String, Literal)> = file
        .tensors
        .iter()
        .map(|(n, l)| {
            if n == "bert.encoder.layer.0.intermediate.dense.weight" {
                (
                    n.clone(),
                    Literal::from_slice(&f32s(l), &[H as i64, I as i64]).unwrap(),
                )
            } else {
                (n.clone(), l.clone())
            }
        })
        .collect();
    write_file(&path, &bad, None).unwrap();
    let msg = import_hf(tmp.path()).unwrap_err().to_string();
    assert!(
        msg.contains("model.safetensors")
            && msg.contains("bert.encoder.layer.0.intermediate.dense.weight"),
        "{msg}"
    );

    std::fs::remove_file(&path).unwrap();
    std::fs::write(tmp.path().join("pytorch_model.bin"), b"not read").unwrap();
    let msg = import_hf(tmp.path()).unwrap_err().to_string();
    assert!(
        msg.contains("only pytorch_model.bin") && msg.contains("model.safetensors"),
        "{msg}"
    );

    // Export refuses a parameter set that does not match the config.
    let mut short = params.clone();
    short.insert(
        "bert.pooler.dense.bias",
        HostTensor::new(vec![3], vec![1.0, 2.0, 3.0]).unwrap(),
    );
    let msg = export_hf(&tmp.path().join("out"), &cfg, &short)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bert.pooler.dense.bias"), "{msg}");
}

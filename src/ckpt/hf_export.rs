//! Hugging Face `BertForPreTraining` checkpoints: `model.safetensors` + `config.json`.
//!
//! Names and layouts come from [`crate::model::params`]: our names are HF's, dense weights are
//! transposed (`[in, out]` here, `nn.Linear`'s `[out, in]` there) and vocabulary padding is
//! cropped on export and zero-filled on import. Export writes only the untied tensors (the MLM
//! decoder's weight and bias are tied to `bert.embeddings.word_embeddings.weight` and
//! `cls.predictions.bias`, which is what `save_pretrained` writes too), with the
//! `{"format": "pt"}` header metadata `from_pretrained` requires. Import accepts the tied
//! copies, `BertModel` keys without the `bert.` prefix, `LayerNorm.gamma/beta` spellings and
//! f16/bf16/f64 files (converted to f32).
use super::error::{CkptError, Result};
use super::tensors::{write_file, TensorFile};
use crate::model::params::{canonical_hf_name, from_hf, param_specs, to_hf};
use crate::model::{BertConfig, ConfigFlavor, HostTensor, ParamSet, ParamSpec};
use hlo::{ElementType, Literal};
use std::collections::HashMap;
use std::path::Path;

pub const HF_WEIGHTS_FILE: &str = "model.safetensors";
pub const HF_CONFIG_FILE: &str = "config.json";

/// Writes `dir/model.safetensors` and `dir/config.json` for `params` (every tensor of
/// [`param_specs`]`(cfg)`, in our layout).
pub fn export_hf(dir: &Path, cfg: &BertConfig, params: &ParamSet) -> Result<()> {
    let hf_err = |msg: String| CkptError::HuggingFace {
        path: dir.to_path_buf(),
        msg,
    };
    let specs = param_specs(cfg);
    params
        .check(&specs)
        .map_err(|e| hf_err(format!("cannot export: {e}")))?;
    let mut tensors = Vec::with_capacity(specs.len());
    for spec in &specs {
        let ours = params.get(&spec.name).ok_or_else(|| {
            hf_err(format!(
                "cannot export: parameter '{}' is missing",
                spec.name
            ))
        })?;
        let hf = to_hf(spec, ours).map_err(|e| hf_err(format!("cannot export: {e}")))?;
        tensors.push((spec.name.clone(), to_literal(&spec.name, &hf)?));
    }
    std::fs::create_dir_all(dir).map_err(CkptError::io("creating", dir))?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_file(&dir.join(HF_WEIGHTS_FILE), &tensors, Some(metadata))?;
    write_config(dir, cfg)
}

/// Hugging Face's `config.json` for `cfg`: our JSON (HF spellings) without our own keys, plus
/// the keys `from_pretrained` uses to pick the class.
pub fn hf_config_json(cfg: &BertConfig) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(cfg)
        .map_err(|e| CkptError::Invalid(format!("serializing the BERT config: {e}")))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| CkptError::Invalid("the BERT config is not a JSON object".into()))?;
    obj.remove("pad_vocab_to");
    obj.remove("compute_dtype");
    obj.insert(
        "architectures".into(),
        serde_json::json!(["BertForPreTraining"]),
    );
    obj.insert("model_type".into(), "bert".into());
    obj.insert("position_embedding_type".into(), "absolute".into());
    obj.insert("pad_token_id".into(), 0.into());
    obj.insert("torch_dtype".into(), "float32".into());
    Ok(v)
}

fn write_config(dir: &Path, cfg: &BertConfig) -> Result<()> {
    let path = dir.join(HF_CONFIG_FILE);
    let json = serde_json::to_vec_pretty(&hf_config_json(cfg)?)
        .map_err(|e| CkptError::Invalid(format!("serializing {}: {e}", path.display())))?;
    // Written beside and renamed, so a reader never sees half a config.
    let tmp = dir.join(format!(".{HF_CONFIG_FILE}.tmp"));
    std::fs::write(&tmp, json).map_err(CkptError::io("writing", &tmp))?;
    super::tensors::sync_file(&tmp)?;
    std::fs::rename(&tmp, &path).map_err(CkptError::io("renaming into place", &path))
}

/// Reads `dir/config.json` (Hugging Face flavor) and every `BertForPreTraining` parameter
/// from `dir/model.safetensors`.
pub fn import_hf(dir: &Path) -> Result<(BertConfig, ParamSet)> {
    let cfg_path = dir.join(HF_CONFIG_FILE);
    let cfg = BertConfig::from_file_with(&cfg_path, ConfigFlavor::HuggingFace).map_err(|e| {
        CkptError::HuggingFace {
            path: cfg_path.clone(),
            msg: e.to_string(),
        }
    })?;
    let weights = weights_file(dir)?;
    let params = import_hf_params(&weights, &param_specs(&cfg))?;
    Ok((cfg, params))
}

/// `dir/model.safetensors`, or an error saying what the directory has instead.
fn weights_file(dir: &Path) -> Result<std::path::PathBuf> {
    let path = dir.join(HF_WEIGHTS_FILE);
    if path.is_file() {
        return Ok(path);
    }
    let msg = if dir.join("model.safetensors.index.json").is_file() {
        "holds a sharded checkpoint (model.safetensors.index.json), which is not read yet; \
         save it unsharded (save_pretrained(..., max_shard_size=\"10GB\"))"
    } else if dir.join("pytorch_model.bin").is_file() {
        "holds pytorch_model.bin only; convert it to model.safetensors \
         (save_pretrained(..., safe_serialization=True))"
    } else {
        "has no model.safetensors"
    };
    Err(CkptError::HuggingFace {
        path: dir.to_path_buf(),
        msg: msg.into(),
    })
}

/// The parameters `specs` from a Hugging Face safetensors file, in our layout (encoder-only
/// callers pass `encoder_param_specs`). Tensors the specs do not name are ignored.
pub fn import_hf_params(path: &Path, specs: &[ParamSpec]) -> Result<ParamSet> {
    let file = TensorFile::read(path)?;
    // Canonical name -> (HF key, tensor); a canonical key itself wins over an alias of it.
    let mut by_name: HashMap<String, (&str, &Literal)> = HashMap::new();
    for (key, lit) in &file.tensors {
        let Some(name) = canonical_hf_name(key) else {
            continue;
        };
        let exact = name == *key;
        match by_name.get(&name) {
            Some((prev, _)) if !exact || *prev == name => {}
            _ => {
                by_name.insert(name, (key.as_str(), lit));
            }
        }
    }
    let mut out = ParamSet::new();
    for spec in specs {
        let (key, lit) = by_name.get(&spec.name).ok_or_else(|| {
            CkptError::tensor(path, &spec.name, "missing (the BERT config needs it)")
        })?;
        let hf = to_host_f32(path, key, lit)?;
        let ours = from_hf(spec, &hf).map_err(|e| CkptError::tensor(path, key, e.to_string()))?;
        out.insert(spec.name.clone(), ours);
    }
    Ok(out)
}

fn to_literal(name: &str, t: &HostTensor) -> Result<Literal> {
    let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
    Literal::from_slice(&t.data, &dims)
        .map_err(|e| CkptError::Invalid(format!("parameter '{name}': {e}")))
}

/// A float tensor of the file as f32 (f16/bf16 exactly, f64 rounded to nearest).
fn to_host_f32(path: &Path, key: &str, lit: &Literal) -> Result<HostTensor> {
    let data = match lit.element_type() {
        ElementType::F32 => lit.to_vec::<f32>().unwrap_or_default(),
        ElementType::F16 | ElementType::Bf16 | ElementType::F64 => {
            lit.to_f64_vec().into_iter().map(|x| x as f32).collect()
        }
        other => {
            return Err(CkptError::tensor(
                path,
                key,
                format!("is {other}; parameters must be f32, f16, bf16 or f64"),
            ))
        }
    };
    let dims = lit.shape().dims.iter().map(|&d| d as usize).collect();
    HostTensor::new(dims, data).map_err(|e| CkptError::tensor(path, key, e.to_string()))
}

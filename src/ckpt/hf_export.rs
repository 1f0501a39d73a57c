//! Hugging Face `BertForPreTraining` checkpoints: `model.safetensors` + `config.json`.
//!
//! Names and layouts come from [`crate::model::params`]: our names are HF's, dense weights are
//! transposed (`[in, out]` here, `nn.Linear`'s `[out, in]` there) and vocabulary padding is
//! cropped on export and zero-filled on import. Export writes only the untied tensors (the MLM
//! decoder's weight and bias are tied to `bert.embeddings.word_embeddings.weight` and
//! `cls.predictions.bias`, which is what `save_pretrained` writes too), with the
//! `{"format": "pt"}` header metadata `from_pretrained` requires. Import accepts the tied
//! copies, `BertModel` keys without the `bert.` prefix, `LayerNorm.gamma/beta` spellings,
//! sharded checkpoints and f16/bf16/f64 files (converted to f32): files are found and read by
//! the importer's reader ([`crate::import::hf`]), which `finetune --init` uses too.
use super::checkpoint::Checkpoint;
use super::error::{CkptError, Result};
use super::manifest::MANIFEST_FILE;
use super::tensors::write_file;
use crate::import::{hf, ImportError};
use crate::model::params::{canonical_hf_name, from_hf, param_specs, to_hf};
use crate::model::{BertConfig, ConfigFlavor, HostTensor, ParamSet, ParamSpec};
use hlo::{ElementType, Literal};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const HF_WEIGHTS_FILE: &str = hf::SAFETENSORS_FILE;
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

/// The model config and the `BertForPreTraining` parameters of one of our checkpoints (as
/// `tpu-run pretrain` writes them), in our layout, for [`export_hf`]. Every file is read with
/// the checkpoint's checks; tensors the model does not have (optimizer state, a task head) are
/// left out; a missing one is an error naming it.
pub fn checkpoint_weights(ckpt: &Checkpoint) -> Result<(BertConfig, ParamSet)> {
    let state = ckpt.load(None)?;
    let manifest = ckpt.path().join(MANIFEST_FILE);
    let cfg: BertConfig = serde_json::from_value(state.model_config.clone()).map_err(|e| {
        CkptError::manifest(
            &manifest,
            format!("model_config is not a BERT config ({e}); was it written by tpu-run?"),
        )
    })?;
    let by_name: HashMap<&str, &Literal> =
        state.params.iter().map(|(n, l)| (n.as_str(), l)).collect();
    let params_file = ckpt.path().join(super::manifest::PARAMS_FILE);
    let mut params = ParamSet::new();
    for spec in param_specs(&cfg) {
        let lit = by_name.get(spec.name.as_str()).ok_or_else(|| {
            CkptError::tensor(
                &params_file,
                &spec.name,
                "missing: a BertForPreTraining export needs it (is this a pretraining \
                 checkpoint? fine-tuning checkpoints lack the MLM and NSP heads)",
            )
        })?;
        let data = lit
            .to_vec::<f32>()
            .filter(|_| lit.element_type() == ElementType::F32)
            .ok_or_else(|| {
                CkptError::tensor(
                    &params_file,
                    &spec.name,
                    format!("is {}, expected f32 master weights", lit.shape()),
                )
            })?;
        let dims: Vec<usize> = lit.shape().dims.iter().map(|&d| d as usize).collect();
        let t = HostTensor::new(dims, data)
            .map_err(|e| CkptError::tensor(&params_file, &spec.name, e.to_string()))?;
        params.insert(spec.name.clone(), t);
    }
    Ok((cfg, params))
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
/// from `dir/model.safetensors` (or the shards its `model.safetensors.index.json` lists).
pub fn import_hf(dir: &Path) -> Result<(BertConfig, ParamSet)> {
    let cfg_path = dir.join(HF_CONFIG_FILE);
    let cfg = BertConfig::from_file_with(&cfg_path, ConfigFlavor::HuggingFace).map_err(|e| {
        CkptError::HuggingFace {
            path: cfg_path.clone(),
            msg: e.to_string(),
        }
    })?;
    let files = hf::weight_files(dir).map_err(|e| from_import(dir, e))?;
    let params = params_from_files(&files, &param_specs(&cfg))?;
    Ok((cfg, params))
}

/// The parameters `specs` from a Hugging Face safetensors file, in our layout (encoder-only
/// callers pass `encoder_param_specs`). Tensors the specs do not name are ignored.
pub fn import_hf_params(path: &Path, specs: &[ParamSpec]) -> Result<ParamSet> {
    params_from_files(&[path.to_path_buf()], specs)
}

/// The parameters `specs` from safetensors `files` (one checkpoint, possibly sharded), read by
/// the importer's reader (f16/bf16/f64 converted to f32).
fn params_from_files(files: &[PathBuf], specs: &[ParamSpec]) -> Result<ParamSet> {
    let mut read = Vec::with_capacity(files.len());
    for path in files {
        let dir = path.parent().unwrap_or(Path::new("."));
        read.push((
            path,
            hf::read_safetensors(path).map_err(|e| from_import(dir, e))?,
        ));
    }
    // Canonical name -> (file, HF key, tensor); a canonical key itself wins over an alias of it.
    let mut by_name: HashMap<String, (&Path, &str, &HostTensor)> = HashMap::new();
    for (path, file) in &read {
        for (key, tensor) in &file.tensors {
            let Some(name) = canonical_hf_name(key) else {
                continue;
            };
            let exact = name == *key;
            match by_name.get(&name) {
                Some((_, prev, _)) if !exact || *prev == name => {}
                _ => {
                    by_name.insert(name, (path.as_path(), key.as_str(), tensor));
                }
            }
        }
    }
    let mut out = ParamSet::new();
    for spec in specs {
        let (path, key, hf_tensor) = by_name.get(&spec.name).ok_or_else(|| {
            let shown = files.first().map_or(Path::new(""), |f| f.as_path());
            CkptError::tensor(shown, &spec.name, "missing (the BERT config needs it)")
        })?;
        let ours =
            from_hf(spec, hf_tensor).map_err(|e| CkptError::tensor(path, key, e.to_string()))?;
        out.insert(spec.name.clone(), ours);
    }
    Ok(out)
}

/// An importer error as a checkpoint error: a tensor's names file and tensor, a missing
/// weight file the directory, anything else keeps the importer's message (with its file).
fn from_import(dir: &Path, e: ImportError) -> CkptError {
    match e {
        ImportError::Tensor { path, name, msg } => CkptError::tensor(&path, &name, msg),
        ImportError::NotFound { path, msg } => CkptError::HuggingFace { path, msg },
        other => CkptError::HuggingFace {
            path: dir.to_path_buf(),
            msg: other.to_string(),
        },
    }
}

fn to_literal(name: &str, t: &HostTensor) -> Result<Literal> {
    let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
    Literal::from_slice(&t.data, &dims)
        .map_err(|e| CkptError::Invalid(format!("parameter '{name}': {e}")))
}

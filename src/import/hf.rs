//! Hugging Face BERT weights: `model.safetensors` (or the shards listed in
//! `model.safetensors.index.json`) of `BertModel`, `BertForPreTraining`,
//! `BertForQuestionAnswering`, ..., including sentence-transformers checkpoints whose keys lack
//! the `bert.` prefix (all-MiniLM-L6-v2: `embeddings.word_embeddings.weight`, `encoder.layer.0...`).
//!
//! Key -> our name is [`crate::model::params::canonical_hf_name`] (prefix, old `gamma`/`beta`
//! spellings, the tied decoder bias), plus the QA head `qa_outputs.*` and the sentence classifier
//! `classifier.*`, which have no `bert.` prefix in any checkpoint. Layouts (HF `nn.Linear` is `[out, in]`) are converted by
//! [`crate::model::params::from_hf`].
use super::tf_names::{CLASSIFIER_BIAS, CLASSIFIER_WEIGHT, QA_BIAS, QA_WEIGHT};
use super::ImportError;
use crate::model::params::{canonical_hf_name, names};
use crate::model::HostTensor;
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

/// Weight file of a Hugging Face model directory.
pub const SAFETENSORS_FILE: &str = "model.safetensors";
/// Index of a sharded safetensors checkpoint.
pub const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";

/// What a state-dict key is to an importer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HfName {
    /// Our parameter name.
    Param(String),
    /// `cls.predictions.decoder.weight`: the word embeddings again (tied).
    TiedCopy,
    /// A buffer, not a parameter (`embeddings.position_ids`).
    Buffer,
}

pub fn classify(key: &str) -> HfName {
    if key.ends_with("position_ids") || key.ends_with("token_type_ids") {
        return HfName::Buffer;
    }
    if key == "cls.predictions.decoder.weight" {
        return HfName::TiedCopy;
    }
    if [QA_WEIGHT, QA_BIAS, CLASSIFIER_WEIGHT, CLASSIFIER_BIAS].contains(&key) {
        return HfName::Param(key.into());
    }
    match canonical_hf_name(key) {
        Some(n) => HfName::Param(n),
        // canonical_hf_name drops only the tied matrix and buffers, handled above.
        None => HfName::TiedCopy,
    }
}

/// True for `cls.predictions.decoder.bias`, which Hugging Face stores besides (and equal to)
/// `cls.predictions.bias`.
pub fn is_tied_bias(key: &str, ours: &str) -> bool {
    ours == names::MLM_BIAS && key != names::MLM_BIAS
}

/// The safetensors files of a Hugging Face model directory.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let single = dir.join(SAFETENSORS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(SAFETENSORS_INDEX);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| ImportError::io(&index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ImportError::corrupt(&index, format!("not JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ImportError::corrupt(&index, "no \"weight_map\" object".into()))?;
        let mut files: Vec<PathBuf> = vec![];
        for v in map.values() {
            let f = v.as_str().ok_or_else(|| {
                ImportError::corrupt(&index, "a weight_map value is not a file name".into())
            })?;
            let p = dir.join(f);
            if !files.contains(&p) {
                files.push(p);
            }
        }
        return Ok(files);
    }
    let hint = if dir.join("pytorch_model.bin").is_file() {
        "only pytorch_model.bin is here: PyTorch pickles are not read; convert it with \
         `python3 -c \"import torch, safetensors.torch as s; s.save_file(torch.load('pytorch_model.bin'), 'model.safetensors')\"`"
    } else {
        "expected model.safetensors (or model.safetensors.index.json with its shards)"
    };
    Err(ImportError::NotFound {
        path: dir.to_path_buf(),
        msg: hint.into(),
    })
}

/// The tensors of one safetensors file.
#[derive(Clone, Debug, Default)]
pub struct HfTensors {
    /// Floating-point tensors as f32, in the file's order.
    pub tensors: Vec<(String, HostTensor)>,
    /// Integer buffers (`position_ids`), by name only.
    pub buffers: Vec<String>,
}

/// Every tensor of the safetensors file at `path`: floating-point ones (f32, f64, f16, bf16)
/// as f32; integer buffers by name; any other integer tensor is an error.
pub fn read_safetensors(path: &Path) -> Result<HfTensors, ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportError::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        ImportError::corrupt(
            path,
            format!("not a readable safetensors file ({e}); download it again"),
        )
    })?;
    let mut tensors = st.tensors();
    // The header is a JSON map; keep a stable order (safetensors sorts by offset when writing).
    tensors.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    let mut out = HfTensors::default();
    for (name, view) in tensors {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a) as f32
                })
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            // Integer buffers (position_ids) are not parameters; keep them out of the f32 list.
            _ if classify(&name) == HfName::Buffer => {
                out.buffers.push(name);
                continue;
            }
            d => {
                return Err(ImportError::Tensor {
                    path: path.to_path_buf(),
                    name,
                    msg: format!("dtype {d:?} is not a floating-point type"),
                })
            }
        };
        let t =
            HostTensor::new(view.shape().to_vec(), values).map_err(|e| ImportError::Tensor {
                path: path.to_path_buf(),
                name: name.clone(),
                msg: e.to_string(),
            })?;
        out.tensors.push((name, t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_bert_for_pretraining_and_of_sentence_transformers_agree() {
        for (key, ours) in [
            (
                "bert.embeddings.word_embeddings.weight",
                "bert.embeddings.word_embeddings.weight",
            ),
            (
                "embeddings.word_embeddings.weight",
                "bert.embeddings.word_embeddings.weight",
            ),
            (
                "encoder.layer.5.output.LayerNorm.weight",
                "bert.encoder.layer.5.output.LayerNorm.weight",
            ),
            (
                "bert.encoder.layer.0.attention.output.LayerNorm.gamma",
                "bert.encoder.layer.0.attention.output.LayerNorm.weight",
            ),
            ("pooler.dense.bias", "bert.pooler.dense.bias"),
            ("cls.predictions.decoder.bias", "cls.predictions.bias"),
            ("cls.seq_relationship.weight", "cls.seq_relationship.weight"),
            ("qa_outputs.weight", "qa_outputs.weight"),
        ] {
            assert_eq!(classify(key), HfName::Param(ours.into()), "{key}");
        }
        assert_eq!(classify("embeddings.position_ids"), HfName::Buffer);
        assert_eq!(classify("bert.embeddings.position_ids"), HfName::Buffer);
        assert_eq!(classify("cls.predictions.decoder.weight"), HfName::TiedCopy);
        assert!(is_tied_bias(
            "cls.predictions.decoder.bias",
            "cls.predictions.bias"
        ));
        assert!(!is_tied_bias(
            "cls.predictions.bias",
            "cls.predictions.bias"
        ));
    }
}

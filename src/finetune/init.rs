//! Where fine-tuning starts: a Hugging Face BERT directory, a google-research TF checkpoint (both
//! through [`crate::import::Pretrained`]) or one of our own checkpoints (`tpu-run pretrain` or an
//! earlier `finetune`: a checkpoint directory with `manifest.json`, or a directory of
//! `step-*` checkpoints, whose latest complete one is used).
//!
//! The encoder must come from the checkpoint; an absent QA head is initialized (truncated
//! normal / zeros, from the seed) and reported, and every checkpoint tensor the QA model does not
//! use (pooler, pretraining heads, optimizer state) is listed in the report, never dropped
//! silently.
use super::qa_head::squad_param_specs;
use crate::ckpt::{Checkpoint, Store};
use crate::import::Pretrained;
use crate::model::init::init_tensor;
use crate::model::{BertConfig, HostTensor, ParamSet, ParamSpec};
use anyhow::{anyhow, bail, Context, Result};
use hlo::ElementType;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// The starting point of a fine-tuning run.
#[derive(Clone, Debug)]
pub struct InitWeights {
    pub config: BertConfig,
    /// Every parameter of the specs for `config` ([`squad_param_specs`] for [`load_init`]), in
    /// that order.
    pub params: ParamSet,
    /// The checkpoint's `vocab.txt`, when it has one.
    pub vocab: Option<PathBuf>,
    /// What was loaded, initialized and left out, for the user.
    pub report: String,
}

/// Whether `path` is one of our checkpoints (a step directory or a store of them).
fn our_checkpoint(path: &Path) -> Result<Option<Checkpoint>> {
    if !path.is_dir() {
        return Ok(None);
    }
    if path.join(crate::ckpt::manifest::MANIFEST_FILE).is_file() {
        return Ok(Some(Checkpoint::open(path)?));
    }
    let store = Store::new(path);
    if store.list()?.is_empty() {
        return Ok(None);
    }
    match store.latest()? {
        Some(c) => Ok(Some(c)),
        None => bail!(
            "{}: holds step-* checkpoint directories but none is complete",
            path.display()
        ),
    }
}

/// Whether `path` is the prefix of a TF checkpoint (`.../bert_model.ckpt`, the form Google's
/// scripts take), which names no file itself: `{path}.index` does.
fn is_tf_prefix(path: &Path) -> bool {
    let mut index = path.as_os_str().to_owned();
    index.push(".index");
    Path::new(&index).is_file()
}

/// Opens `path` (see the module docs) and reads the QA model's parameters; absent head
/// parameters are initialized from `seed`.
pub fn load_init(path: &Path, seed: u64) -> Result<InitWeights> {
    load_init_with(path, squad_param_specs, seed)
}

/// [`load_init`] for another model over the same encoder: `specs` lists its parameters for the
/// checkpoint's config (`bert.*` ones must be in the checkpoint, others are initialized).
pub fn load_init_with(
    path: &Path,
    specs: fn(&BertConfig) -> Vec<ParamSpec>,
    seed: u64,
) -> Result<InitWeights> {
    if !path.exists() && !is_tf_prefix(path) {
        bail!(
            "--init {}: no such file or directory, nor a TF checkpoint prefix ({0}.index) (give \
             a Hugging Face model directory, a TF checkpoint directory or prefix, or a tpu-run \
             checkpoint directory)",
            path.display()
        );
    }
    if let Some(ckpt) = our_checkpoint(path)? {
        return load_ours(&ckpt, specs, seed);
    }
    let src = Pretrained::open(path)?;
    let (params, report) = src.load(&specs(&src.config), seed)?;
    Ok(InitWeights {
        config: src.config.clone(),
        params,
        vocab: src.vocab.clone(),
        report: report.to_string(),
    })
}

fn load_ours(
    ckpt: &Checkpoint,
    specs: fn(&BertConfig) -> Vec<ParamSpec>,
    seed: u64,
) -> Result<InitWeights> {
    let dir = ckpt.path();
    let state = ckpt
        .load(None)
        .with_context(|| format!("loading checkpoint {}", dir.display()))?;
    let config: BertConfig = serde_json::from_value(state.model_config.clone()).map_err(|e| {
        anyhow!(
            "checkpoint {}: model_config is not a BERT config ({e}); was it written by tpu-run \
             pretrain or finetune?",
            dir.display()
        )
    })?;
    let specs = specs(&config);
    let mut by_name: std::collections::HashMap<&str, &hlo::Literal> =
        state.params.iter().map(|(n, l)| (n.as_str(), l)).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut params = ParamSet::new();
    let (mut loaded, mut initialized) = (vec![], vec![]);
    for spec in &specs {
        match by_name.remove(spec.name.as_str()) {
            Some(lit) => {
                let dims: Vec<usize> = lit.shape().dims.iter().map(|&d| d as usize).collect();
                let data = lit
                    .to_vec::<f32>()
                    .filter(|_| lit.element_type() == ElementType::F32)
                    .ok_or_else(|| {
                        anyhow!(
                            "checkpoint {}: parameter '{}' is {}, expected f32",
                            dir.display(),
                            spec.name,
                            lit.shape()
                        )
                    })?;
                if dims != spec.dims {
                    bail!(
                        "checkpoint {}: parameter '{}' has dims {dims:?}, its model config needs {:?}",
                        dir.display(),
                        spec.name,
                        spec.dims
                    );
                }
                params.insert(spec.name.clone(), HostTensor::new(dims, data)?);
                loaded.push(spec.name.clone());
            }
            None if spec.name.starts_with("bert.") => bail!(
                "checkpoint {}: has no parameter '{}'; is it a BERT checkpoint?",
                dir.display(),
                spec.name
            ),
            None => {
                params.insert(
                    spec.name.clone(),
                    init_tensor(spec, config.initializer_range, &mut rng),
                );
                initialized.push(spec.name.clone());
            }
        }
    }
    let mut unused: Vec<&str> = by_name.into_keys().collect();
    unused.sort_unstable();
    let mut report = format!(
        "imported {} parameters from {} (tpu-run checkpoint, step {})",
        loaded.len(),
        dir.display(),
        state.step
    );
    if !initialized.is_empty() {
        report += &format!(
            "\ninitialized {} parameters absent from the checkpoint: {}",
            initialized.len(),
            initialized.join(", ")
        );
    }
    if !state.opt_state.is_empty() {
        report += &format!(
            "\nskipped tensors: {} optimizer state",
            state.opt_state.len()
        );
    }
    if !unused.is_empty() {
        report += &format!("\nnot used by this model: {}", unused.join(", "));
    }
    Ok(InitWeights {
        config,
        params,
        vocab: None,
        report,
    })
}

//! Where fine-tuning starts: a Hugging Face BERT directory, a google-research TF checkpoint (both
//! through [`crate::import::Pretrained`]) or one of our own checkpoints (`tpu-run pretrain` or an
//! earlier `finetune`: a checkpoint directory with `manifest.json`, or a directory of
//! `step-*` checkpoints, whose latest complete one is used). Our checkpoints may also be in a
//! bucket (`gs://` / `s3://`, see src/storage).
//!
//! The encoder must come from the checkpoint; an absent task head (QA, classifier) or pooler is
//! initialized (truncated normal / zeros, from the seed) and reported, and every checkpoint
//! tensor the task's model does not use (the pooler for QA, pretraining heads, optimizer state)
//! is listed in the report, never dropped silently.
use super::qa_head::squad_param_specs;
use crate::ckpt::{Checkpoint, Store};
use crate::import::{required, Pretrained};
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
    /// Every parameter of the model (e.g. [`squad_param_specs`]) for `config`, in that order.
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
    latest_in_store(path)
}

/// The latest complete checkpoint of the store `path`; `None` when it holds no `step-*`.
fn latest_in_store(path: &Path) -> Result<Option<Checkpoint>> {
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

/// `--init gs://…` / `s3://…`: a tpu-run checkpoint in a bucket (a `step-*` prefix with its
/// manifest, or a prefix of them). Hugging Face and TF checkpoints are read from local disk.
fn our_checkpoint_in_bucket(path: &Path) -> Result<Checkpoint> {
    let manifest = path.join(crate::ckpt::manifest::MANIFEST_FILE);
    if crate::storage::exists(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?
    {
        return Ok(Checkpoint::open(path)?);
    }
    latest_in_store(path)?.ok_or_else(|| {
        anyhow!(
            "--init {}: no tpu-run checkpoint there (no {} and no step-* prefixes); from a \
             bucket --init reads tpu-run checkpoints only: copy a Hugging Face or TF checkpoint \
             to local disk first (gcloud storage cp -r / aws s3 cp --recursive)",
            path.display(),
            crate::ckpt::manifest::MANIFEST_FILE
        )
    })
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
    load_init_for(path, seed, &squad_param_specs)
}

/// [`load_init`] for the model whose parameters `specs_of` lists for a config (the encoder
/// with a task's head).
pub fn load_init_for(
    path: &Path,
    seed: u64,
    specs_of: &dyn Fn(&BertConfig) -> Vec<ParamSpec>,
) -> Result<InitWeights> {
    if crate::storage::is_object(path) {
        return load_ours(&our_checkpoint_in_bucket(path)?, seed, specs_of);
    }
    crate::storage::check(path).map_err(|e| anyhow!("--init: {e}"))?;
    if !path.exists() && !is_tf_prefix(path) {
        bail!(
            "--init {}: no such file or directory, nor a TF checkpoint prefix ({0}.index) (give \
             a Hugging Face model directory, a TF checkpoint directory or prefix, or a tpu-run \
             checkpoint directory)",
            path.display()
        );
    }
    if let Some(ckpt) = our_checkpoint(path)? {
        return load_ours(&ckpt, seed, specs_of);
    }
    let src = Pretrained::open(path)?;
    let specs = specs_of(&src.config);
    let (params, report) = src.load(&specs, seed)?;
    Ok(InitWeights {
        config: src.config.clone(),
        params,
        vocab: src.vocab.clone(),
        report: report.to_string(),
    })
}

fn load_ours(
    ckpt: &Checkpoint,
    seed: u64,
    specs_of: &dyn Fn(&BertConfig) -> Vec<ParamSpec>,
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
    let specs = specs_of(&config);
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
            None if required(spec) => bail!(
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

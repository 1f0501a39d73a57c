//! Pre-trained BERT weights from other programs, as our named parameters:
//!
//! - Hugging Face model directories (`config.json`, `vocab.txt`, `model.safetensors`), e.g.
//!   all-MiniLM-L6-v2 ([`hf`]);
//! - Google's TF checkpoints (`bert_config.json`, `vocab.txt`, `bert_model.ckpt.index`,
//!   `bert_model.ckpt.data-00000-of-00001`), read by our own tensor-bundle reader
//!   ([`tf_bundle`] over [`sstable`]) with google-research/bert's variable names ([`tf_names`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tpu_run::import::Pretrained;
//! use tpu_run::model::param_specs;
//! let src = Pretrained::open("uncased_L-12_H-768_A-12".as_ref())?;
//! let mut cfg = src.config.clone();
//! cfg.pad_vocab_to = Some(128); // our own settings may change before the specs are made
//! let (params, report) = src.load(&param_specs(&cfg), 42)?;
//! println!("{report}"); // loaded, initialized (absent heads) and skipped names
//! # Ok(()) }
//! ```
//! [`Pretrained::load`] fills exactly the parameters asked for: the encoder must be in the
//! checkpoint (its absence means a wrong file or config, an error); absent heads (pooler, MLM,
//! NSP, QA) are initialized as google-research/bert does and listed in
//! [`ImportReport::initialized`]. Optimizer slots, step counters, buffers and tied copies are
//! skipped and listed too; nothing is dropped silently.
mod bundle_proto;
pub mod hf;
pub mod sstable;
pub mod tf_bundle;
pub mod tf_names;

use crate::model::init::init_tensor;
use crate::model::params::{from_hf, ParamSpec};
use crate::model::{BertConfig, ConfigFlavor, HostTensor, ModelError, ParamSet};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use tf_bundle::{checkpoint_prefix, TfBundle};
use tf_names::{TfName, TfNameMap};
use thiserror::Error;

/// Every error names the file it comes from.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: corrupt: {msg}", path.display())]
    Corrupt { path: PathBuf, msg: String },
    #[error("{}: unsupported: {msg}", path.display())]
    Unsupported { path: PathBuf, msg: String },
    #[error("{}: tensor '{name}': {msg}", path.display())]
    Tensor {
        path: PathBuf,
        name: String,
        msg: String,
    },
    #[error("{}: {msg}", path.display())]
    NotFound { path: PathBuf, msg: String },
    #[error("{}: {source}", path.display())]
    Model {
        path: PathBuf,
        #[source]
        source: ModelError,
    },
}

impl ImportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, msg: String) -> Self {
        Self::Corrupt {
            path: path.to_path_buf(),
            msg,
        }
    }

    pub(crate) fn unsupported(path: &Path, msg: String) -> Self {
        Self::Unsupported {
            path: path.to_path_buf(),
            msg,
        }
    }

    fn model(path: &Path, source: ModelError) -> Self {
        Self::Model {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = ImportError> = std::result::Result<T, E>;

/// Which program wrote the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    HuggingFace,
    TensorFlow,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HuggingFace => "Hugging Face safetensors",
            Self::TensorFlow => "TensorFlow checkpoint",
        })
    }
}

#[derive(Clone, Debug)]
enum Weights {
    Hf(Vec<PathBuf>),
    Tf(TfBundle),
}

/// An opened pre-trained model: its config and vocabulary, weights read by [`Pretrained::load`].
#[derive(Clone, Debug)]
pub struct Pretrained {
    pub format: Format,
    /// The directory holding the files.
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub config: BertConfig,
    /// `vocab.txt` when the directory has one.
    pub vocab: Option<PathBuf>,
    weights: Weights,
}

/// Why a checkpoint tensor was not imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Adam/LAMB/momentum slots and power accumulators.
    OptimizerState,
    /// `global_step`.
    StepCounter,
    /// A buffer such as `position_ids`.
    Buffer,
    /// A copy of another tensor (the tied MLM decoder weight and bias).
    TiedCopy,
    /// A parameter the requested model does not have (another head, ...).
    NotInModel,
}

/// What [`Pretrained::load`] did with every name.
#[derive(Clone, Debug)]
pub struct ImportReport {
    pub format: Format,
    /// The weight files read.
    pub sources: Vec<PathBuf>,
    /// Our parameters read from the checkpoint, in parameter-list order.
    pub loaded: Vec<String>,
    /// Our parameters absent from the checkpoint, initialized (truncated normal / zeros / ones).
    pub initialized: Vec<String>,
    /// Checkpoint names not imported, with the reason.
    pub skipped: Vec<(String, SkipReason)>,
    /// The checkpoint's `global_step`, when it has one.
    pub global_step: Option<i64>,
}

impl ImportReport {
    pub fn skipped_for(&self, reason: SkipReason) -> impl Iterator<Item = &str> {
        self.skipped
            .iter()
            .filter(move |(_, r)| *r == reason)
            .map(|(n, _)| n.as_str())
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        write!(
            f,
            "imported {} parameters from {} ({})",
            self.loaded.len(),
            files.join(", "),
            self.format
        )?;
        if let Some(s) = self.global_step {
            write!(f, " at global_step {s}")?;
        }
        if !self.initialized.is_empty() {
            write!(
                f,
                "\ninitialized {} parameters absent from the checkpoint: {}",
                self.initialized.len(),
                self.initialized.join(", ")
            )?;
        }
        let counts: Vec<String> = [
            (SkipReason::OptimizerState, "optimizer state"),
            (SkipReason::StepCounter, "step counter"),
            (SkipReason::Buffer, "buffer"),
            (SkipReason::TiedCopy, "tied copy"),
        ]
        .iter()
        .map(|&(reason, what)| (self.skipped_for(reason).count(), what))
        .filter(|&(n, _)| n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if !counts.is_empty() {
            write!(f, "\nskipped tensors: {}", counts.join(", "))?;
        }
        let unused: Vec<&str> = self.skipped_for(SkipReason::NotInModel).collect();
        if !unused.is_empty() {
            write!(f, "\nnot used by this model: {}", unused.join(", "))?;
        }
        Ok(())
    }
}

/// Parameters that must come from the checkpoint: the embeddings and the layers. Anything else
/// (pooler, heads) may be initialized when absent.
/// Whether a checkpoint must hold `spec` (the encoder); heads and the pooler may be initialized.
pub fn required(spec: &ParamSpec) -> bool {
    spec.name.starts_with("bert.embeddings.") || spec.name.starts_with("bert.encoder.")
}

impl Pretrained {
    /// Opens a Hugging Face model directory, a directory with a TF checkpoint, or a TF
    /// checkpoint prefix / `.index` file; reads its config.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            if path.join("config.json").is_file() && !path.join("bert_config.json").is_file() {
                return Self::open_hf(path);
            }
            if let Some(prefix) = find_tf_prefix(path)? {
                return Self::open_tf(&prefix);
            }
            return Err(ImportError::NotFound {
                path: path.to_path_buf(),
                msg: "neither a Hugging Face model directory (config.json, model.safetensors) \
                      nor a TF checkpoint (bert_config.json, *.ckpt.index, *.ckpt.data-*)"
                    .into(),
            });
        }
        Self::open_tf(&checkpoint_prefix(path))
    }

    fn open_hf(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = BertConfig::from_file_with(&config_path, ConfigFlavor::HuggingFace)
            .map_err(|e| ImportError::model(&config_path, e))?;
        let files = hf::weight_files(dir)?;
        Ok(Self {
            format: Format::HuggingFace,
            dir: dir.to_path_buf(),
            config_path,
            config,
            vocab: vocab_in(dir),
            weights: Weights::Hf(files),
        })
    }

    fn open_tf(prefix: &Path) -> Result<Self> {
        let bundle = TfBundle::open(prefix)?;
        let dir = match prefix.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let config_path = dir.join("bert_config.json");
        if !config_path.is_file() {
            return Err(ImportError::NotFound {
                path: config_path,
                msg: "a TF checkpoint needs its bert_config.json next to it".into(),
            });
        }
        let config = BertConfig::from_file_with(&config_path, ConfigFlavor::GoogleResearch)
            .map_err(|e| ImportError::model(&config_path, e))?;
        Ok(Self {
            format: Format::TensorFlow,
            vocab: vocab_in(&dir),
            dir,
            config_path,
            config,
            weights: Weights::Tf(bundle),
        })
    }

    /// The TF bundle, for a TF checkpoint.
    pub fn tf_bundle(&self) -> Option<&TfBundle> {
        match &self.weights {
            Weights::Tf(b) => Some(b),
            Weights::Hf(_) => None,
        }
    }

    /// The files holding the weights.
    pub fn weight_files(&self) -> Vec<PathBuf> {
        match &self.weights {
            Weights::Hf(files) => files.clone(),
            Weights::Tf(b) => std::iter::once(b.index_path().to_path_buf())
                .chain((0..b.num_shards()).map(|s| b.data_path(s)))
                .collect(),
        }
    }

    /// The parameters of `specs` (in that order): read from the checkpoint, converted to our
    /// layout (and padded to `pad_vocab_to`), or, for absent pooler/heads, initialized from
    /// `seed` with the checkpoint config's `initializer_range`.
    pub fn load(&self, specs: &[ParamSpec], seed: u64) -> Result<(ParamSet, ImportReport)> {
        let mut found: HashMap<String, HostTensor> = HashMap::new();
        let mut report = ImportReport {
            format: self.format,
            sources: self.weight_files(),
            loaded: vec![],
            initialized: vec![],
            skipped: vec![],
            global_step: None,
        };
        match &self.weights {
            Weights::Hf(files) => {
                for f in files {
                    load_hf_file(f, specs, &mut found, &mut report)?;
                }
            }
            Weights::Tf(bundle) => load_tf(bundle, specs, &mut found, &mut report)?,
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut set = ParamSet::new();
        for spec in specs {
            if let Some(t) = found.remove(&spec.name) {
                set.insert(spec.name.clone(), t);
                report.loaded.push(spec.name.clone());
            } else if required(spec) {
                return Err(ImportError::model(
                    &report.sources[0],
                    ModelError::Param {
                        name: spec.name.clone(),
                        msg: "is not in the checkpoint; is it a BERT checkpoint for this config?"
                            .into(),
                    },
                ));
            } else {
                let t = init_tensor(spec, self.config.initializer_range, &mut rng);
                set.insert(spec.name.clone(), t);
                report.initialized.push(spec.name.clone());
            }
        }
        Ok((set, report))
    }
}

fn vocab_in(dir: &Path) -> Option<PathBuf> {
    Some(dir.join("vocab.txt")).filter(|p| p.is_file())
}

/// The checkpoint prefix in `dir`: the one the TF `checkpoint` state file names, else
/// `bert_model.ckpt`, else the only `*.index` file.
fn find_tf_prefix(dir: &Path) -> Result<Option<PathBuf>> {
    let state = dir.join("checkpoint");
    if let Ok(text) = std::fs::read_to_string(&state) {
        let latest = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("model_checkpoint_path:")
                .map(|v| v.trim().trim_matches('"').to_string())
        });
        if let Some(p) = latest {
            let p = dir.join(p);
            if checkpoint_index(&p).is_file() {
                return Ok(Some(p));
            }
        }
    }
    let bert = dir.join("bert_model.ckpt");
    if checkpoint_index(&bert).is_file() {
        return Ok(Some(bert));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| ImportError::io(dir, e))?;
    let mut indexes: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "index"))
        .collect();
    indexes.sort();
    match indexes.len() {
        0 => Ok(None),
        1 => Ok(Some(checkpoint_prefix(&indexes[0]))),
        _ => Err(ImportError::NotFound {
            path: dir.to_path_buf(),
            msg: format!(
                "several checkpoints ({}); name one by its prefix",
                indexes
                    .iter()
                    .map(|p| checkpoint_prefix(p).display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

fn checkpoint_index(prefix: &Path) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(".index");
    PathBuf::from(s)
}

fn load_hf_file(
    file: &Path,
    specs: &[ParamSpec],
    found: &mut HashMap<String, HostTensor>,
    report: &mut ImportReport,
) -> Result<()> {
    let wanted: HashMap<&str, &ParamSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
    let read = hf::read_safetensors(file)?;
    for b in read.buffers {
        report.skipped.push((b, SkipReason::Buffer));
    }
    for (key, t) in read.tensors {
        let ours = match hf::classify(&key) {
            hf::HfName::Buffer => {
                report.skipped.push((key, SkipReason::Buffer));
                continue;
            }
            hf::HfName::TiedCopy => {
                report.skipped.push((key, SkipReason::TiedCopy));
                continue;
            }
            hf::HfName::Param(n) => n,
        };
        let Some(spec) = wanted.get(ours.as_str()) else {
            report.skipped.push((key, SkipReason::NotInModel));
            continue;
        };
        if found.contains_key(&ours) {
            if hf::is_tied_bias(&key, &ours) {
                report.skipped.push((key, SkipReason::TiedCopy));
                continue;
            }
            return Err(ImportError::Tensor {
                path: file.to_path_buf(),
                name: key,
                msg: format!("a second tensor for parameter '{ours}'"),
            });
        }
        let t = from_hf(spec, &t).map_err(|e| ImportError::model(file, e))?;
        found.insert(ours, t);
    }
    Ok(())
}

fn load_tf(
    bundle: &TfBundle,
    specs: &[ParamSpec],
    found: &mut HashMap<String, HostTensor>,
    report: &mut ImportReport,
) -> Result<()> {
    let wanted: HashMap<&str, &ParamSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
    let map = TfNameMap::for_specs(specs);
    for tf_name in bundle.names() {
        match map.classify(tf_name) {
            TfName::Param { name, transposed } => {
                let Some(spec) = wanted.get(name.as_str()) else {
                    continue;
                };
                let t = bundle.read_f32(tf_name)?;
                let tensor_err = |msg: String| ImportError::Tensor {
                    path: bundle.index_path().to_path_buf(),
                    name: tf_name.into(),
                    msg,
                };
                let t = if transposed {
                    t.transposed().map_err(|e| tensor_err(e.to_string()))?
                } else {
                    t
                };
                let t = fit_rows(spec, t)
                    .map_err(|m| tensor_err(format!("for parameter '{name}': {m}")))?;
                found.insert(name, t);
            }
            TfName::OptimizerState => {
                report
                    .skipped
                    .push((tf_name.into(), SkipReason::OptimizerState));
            }
            TfName::StepCounter => {
                report.global_step = bundle.read_i64(tf_name)?.first().copied();
                report
                    .skipped
                    .push((tf_name.into(), SkipReason::StepCounter));
            }
            TfName::Unused => report
                .skipped
                .push((tf_name.into(), SkipReason::NotInModel)),
        }
    }
    Ok(())
}

/// `t` in the spec's dims: as is, or with zero rows appended up to a padded vocabulary.
fn fit_rows(spec: &ParamSpec, t: HostTensor) -> std::result::Result<HostTensor, String> {
    if t.dims == spec.dims {
        return Ok(t);
    }
    let mut real = spec.dims.clone();
    if let Some(r) = real.first_mut() {
        *r = spec.real_rows;
    }
    if t.dims != real {
        return Err(format!(
            "has dims {:?} (in our layout), the config needs {real:?}",
            t.dims
        ));
    }
    let mut data = t.data;
    data.resize(spec.num_elements(), 0.0);
    Ok(HostTensor {
        dims: spec.dims.clone(),
        data,
    })
}

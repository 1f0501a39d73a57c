//! One checkpoint directory: open it (manifest read, files present), load it with every check
//! (sizes, CRC-32C, safetensors structure, tensor list, the run's expected dtypes and dims).
use super::checksum::FileDigest;
use super::error::{CkptError, Result};
use super::manifest::{Manifest, MANIFEST_FILE, OPT_STATE_FILE, PARAMS_FILE};
use super::state::{match_spec, Spec, State};
use super::store::{parse_dir_name, Store};
use super::tensors::{NamedTensors, TensorFile};
use std::path::{Path, PathBuf};

/// A complete checkpoint directory: its manifest was read and every file it lists exists.
/// Nothing is verified until [`Checkpoint::load`] / [`Checkpoint::verify`].
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    path: PathBuf,
    manifest: Manifest,
}

/// What [`Checkpoint::probe`] finds in a directory.
#[derive(Debug)]
pub(crate) enum Probe {
    Complete(Box<Checkpoint>),
    /// Not a complete checkpoint (no manifest, unreadable manifest JSON, a listed file absent):
    /// what an interrupted copy leaves. The reason says what is missing.
    Incomplete(String),
}

impl Checkpoint {
    /// Saves `state` as a new checkpoint under `dir` (atomically, keeping the last
    /// [`super::DEFAULT_KEEP_LAST`]); see [`Store::save`].
    pub fn save(dir: &Path, state: &State) -> Result<Checkpoint> {
        Store::new(dir).save(state)
    }

    /// Loads the newest complete checkpoint under `dir`, checked against `expected`;
    /// `Ok(None)` when there is none. See [`Store::load_latest`].
    pub fn load_latest(dir: &Path, expected: &Spec) -> Result<Option<State>> {
        Store::new(dir).load_latest(expected)
    }

    /// Opens the checkpoint directory `path`; an incomplete one is an error saying what is
    /// missing.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        match Self::probe(path)? {
            Probe::Complete(c) => Ok(*c),
            Probe::Incomplete(reason) => Err(CkptError::manifest(
                &path.join(MANIFEST_FILE),
                format!("incomplete checkpoint: {reason}"),
            )),
        }
    }

    pub(crate) fn probe(path: &Path) -> Result<Probe> {
        let mpath = path.join(MANIFEST_FILE);
        // Read first: a checkpoint without its manifest does not exist (on object storage the
        // manifest is written last and deleted first).
        let text = match crate::storage::read(&mpath) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Probe::Incomplete(format!("no {MANIFEST_FILE}")))
            }
            Err(e) => return Err(CkptError::io("reading", &mpath)(e)),
        };
        let manifest = match Manifest::parse(&text) {
            Ok(m) => m,
            Err(why) => return Ok(Probe::Incomplete(format!("{MANIFEST_FILE}: {why}"))),
        };
        manifest.check(&mpath)?;
        for required in [PARAMS_FILE, OPT_STATE_FILE] {
            if manifest.file(required).is_none() {
                return Err(CkptError::manifest(
                    &mpath,
                    format!("lists no '{required}'"),
                ));
            }
        }
        let dir_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(step) = parse_dir_name(dir_name) {
            if step != manifest.step {
                return Err(CkptError::manifest(
                    &mpath,
                    format!(
                        "records step {} but the directory is named for step {step}",
                        manifest.step
                    ),
                ));
            }
        }
        for f in &manifest.files {
            let file = path.join(&f.name);
            if !crate::storage::exists(&file).map_err(CkptError::io("reading", &file))? {
                return Ok(Probe::Incomplete(format!(
                    "'{}' (listed in the manifest) is missing",
                    f.name
                )));
            }
        }
        Ok(Probe::Complete(Box::new(Checkpoint {
            path: path.to_path_buf(),
            manifest,
        })))
    }

    pub(crate) fn from_parts(path: PathBuf, manifest: Manifest) -> Self {
        Self { path, manifest }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn step(&self) -> u64 {
        self.manifest.step
    }

    /// Reads every file, checks sizes, CRC-32C, safetensors structure and tensor lists against
    /// the manifest, and (when given) names, dtypes and dims against `expected`, whose order the
    /// returned tensors follow.
    pub fn load(&self, expected: Option<&Spec>) -> Result<State> {
        let mut params = self.read_tensors(PARAMS_FILE)?;
        let mut opt_state = self.read_tensors(OPT_STATE_FILE)?;
        if let Some(spec) = expected {
            params = match_spec(&self.path.join(PARAMS_FILE), params, &spec.params)?;
            opt_state = match_spec(&self.path.join(OPT_STATE_FILE), opt_state, &spec.opt_state)?;
        }
        let m = &self.manifest;
        Ok(State {
            step: m.step,
            params,
            opt_state,
            model_config: m.model_config.clone(),
            optimizer: m.optimizer.clone(),
            rng: m.rng.clone(),
            data_position: m.data_position.clone(),
            extra: m.extra.clone(),
        })
    }

    /// Every check of [`Checkpoint::load`] without an expected spec.
    pub fn verify(&self) -> Result<()> {
        self.load(None).map(|_| ())
    }

    /// The tensors of file `name`, in manifest order, after the size and checksum checks.
    fn read_tensors(&self, name: &str) -> Result<NamedTensors> {
        let entry = self.manifest.file(name).ok_or_else(|| {
            CkptError::manifest(&self.path.join(MANIFEST_FILE), format!("lists no '{name}'"))
        })?;
        let path = self.path.join(name);
        let len = crate::storage::size(&path).map_err(CkptError::io("reading", &path))?;
        if len != entry.bytes {
            return Err(CkptError::corrupt(
                &path,
                format!(
                    "is {len} bytes, the manifest records {} (truncated or overwritten)",
                    entry.bytes
                ),
            ));
        }
        let bytes = crate::storage::read(&path).map_err(CkptError::io("reading", &path))?;
        let digest = FileDigest::of_bytes(&bytes);
        if digest != entry.digest() {
            return Err(CkptError::corrupt(
                &path,
                format!(
                    "CRC-32C is {:#010x}, the manifest records {:#010x}: the file is damaged",
                    digest.crc32c, entry.crc32c
                ),
            ));
        }
        let mut file = TensorFile::parse(&path, &bytes)?;
        let tensors = file.take_in_order(&path, entry.tensors.iter().map(String::as_str))?;
        if let Some(extra) = file.tensors.keys().next() {
            return Err(CkptError::tensor(
                &path,
                extra,
                "is in the file but not listed in the manifest",
            ));
        }
        Ok(tensors)
    }
}

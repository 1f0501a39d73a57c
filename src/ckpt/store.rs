//! A directory of checkpoints, one subdirectory per step (`step-00001234`).
//!
//! **Atomic writes.** [`Store::save`] writes every file into a hidden temporary directory
//! (`.tmp-step-00001234-<pid>-<nanos>`), fsyncs each file, writes the manifest last, fsyncs the
//! temporary directory, renames it to `step-00001234` and fsyncs the parent. A crash at any
//! point leaves either no `step-*` directory or a complete one; hidden leftovers of dead
//! processes are removed by the next save. Saving a step that already exists swaps the new
//! directory in by renames and then deletes the old one.
//!
//! **Retention.** After a save, the newest `keep_last` step directories are kept, counting the
//! one just written whatever its step, so the checkpoint just written (complete and checked) is
//! never deleted. One writer per directory is assumed (the chief process).
//!
//! **Finding the latest.** [`Store::latest`] walks step directories from the highest step down
//! and returns the first complete one, skipping incomplete ones (no manifest, unreadable
//! manifest, a listed file missing) with a warning naming each. Damage inside a complete one
//! (size, checksum, structure, tensors) is found by [`Checkpoint::load`] and is an error, never
//! a silent fallback to older state.
use super::checkpoint::{Checkpoint, Probe};
use super::checksum::FileDigest;
use super::error::{CkptError, Result};
use super::manifest::{FileEntry, Manifest, FORMAT, FORMAT_VERSION, OPT_STATE_FILE, PARAMS_FILE};
use super::state::{Spec, State};
use super::tensors::{check_tensors, write_file, NamedTensors};
use crate::storage::{Location, ObjectUrl};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Checkpoints kept by default.
pub const DEFAULT_KEEP_LAST: usize = 3;

const TEMP_PREFIX: &str = ".tmp-";
const OLD_PREFIX: &str = ".old-";

/// `step-00001234` (at least 8 digits, more when the step needs them).
pub fn dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// The step of a `step-<digits>` directory name.
pub fn parse_dir_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A step directory that [`Store::latest`] or [`Store::scan`] passed over, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Every step directory, sorted by step: complete checkpoints and incomplete directories.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    pub complete: Vec<Checkpoint>,
    pub incomplete: Vec<Skipped>,
}

/// A directory of checkpoints with a retention policy.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    keep_last: usize,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            keep_last: DEFAULT_KEEP_LAST,
        }
    }

    /// Keeps the newest `n` checkpoints (at least 1: the newest is never deleted).
    pub fn with_keep_last(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(CkptError::Invalid(
                "keep_last must be at least 1 (the newest checkpoint is always kept)".into(),
            ));
        }
        self.keep_last = n;
        Ok(self)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn keep_last(&self) -> usize {
        self.keep_last
    }

    /// The bucket prefix of an object-storage store (`gs://` / `s3://`), `None` for a local
    /// directory; an unsupported scheme is an error.
    fn remote(&self) -> Result<Option<ObjectUrl>> {
        match Location::parse(&self.root).map_err(CkptError::io("opening", &self.root))? {
            Location::Local(_) => Ok(None),
            Location::Object(url) => Ok(Some(url)),
        }
    }

    /// Every entry of the root named like a step directory, whatever it is (empty when the
    /// root does not exist).
    fn step_entries(&self) -> Result<Vec<(u64, std::fs::DirEntry)>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(CkptError::io("listing", &self.root)(e)),
        };
        let mut out = vec![];
        for entry in entries {
            let entry = entry.map_err(CkptError::io("listing", &self.root))?;
            if let Some(step) = entry.file_name().to_str().and_then(parse_dir_name) {
                out.push((step, entry));
            }
        }
        Ok(out)
    }

    /// The `step-*` directories (or bucket prefixes), sorted by step (empty when the root
    /// does not exist).
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>> {
        if let Some(url) = self.remote()? {
            return super::remote::list(&url);
        }
        let mut out: Vec<(u64, PathBuf)> = self
            .step_entries()?
            .into_iter()
            .map(|(step, entry)| (step, entry.path()))
            .filter(|(_, path)| path.is_dir())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Refuses a checkpoint root holding something other than a directory under a step name
    /// (`step-00000008` as a regular file or a link): a save of that step would have to replace
    /// what is not ours. Run it before training, so the run does not fail at its first save.
    pub fn check_step_names_free(&self) -> Result<()> {
        if let Some(url) = self.remote()? {
            return super::remote::check_step_names_free(&url);
        }
        for (_, entry) in self.step_entries()? {
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if !is_dir {
                return Err(foreign_entry(&entry.path()));
            }
        }
        Ok(())
    }

    /// Opens every step directory (manifests only; no tensor data is read).
    pub fn scan(&self) -> Result<Scan> {
        let mut scan = Scan::default();
        for (_, path) in self.list()? {
            match Checkpoint::probe(&path)? {
                Probe::Complete(c) => scan.complete.push(*c),
                Probe::Incomplete(reason) => scan.incomplete.push(Skipped { path, reason }),
            }
        }
        Ok(scan)
    }

    /// The complete checkpoint of the highest step, and the incomplete directories above it
    /// that were skipped (each also logged as a warning).
    pub fn latest_with_skipped(&self) -> Result<(Option<Checkpoint>, Vec<Skipped>)> {
        let mut skipped = vec![];
        for (_, path) in self.list()?.into_iter().rev() {
            match Checkpoint::probe(&path)? {
                Probe::Complete(c) => return Ok((Some(*c), skipped)),
                Probe::Incomplete(reason) => {
                    tracing::warn!(
                        "skipping incomplete checkpoint {}: {reason}",
                        path.display()
                    );
                    skipped.push(Skipped { path, reason });
                }
            }
        }
        Ok((None, skipped))
    }

    /// The complete checkpoint of the highest step (incomplete ones skipped with a warning).
    pub fn latest(&self) -> Result<Option<Checkpoint>> {
        Ok(self.latest_with_skipped()?.0)
    }

    /// Loads [`Store::latest`] checked against `expected`; `Ok(None)` when there is no
    /// checkpoint. Damage in it is an error (saying which earlier checkpoint exists), not a
    /// fallback.
    pub fn load_latest(&self, expected: &Spec) -> Result<Option<State>> {
        let Some(ckpt) = self.latest()? else {
            return Ok(None);
        };
        self.load_newest(&ckpt, expected).map(Some)
    }

    /// Loads `ckpt`, the newest complete checkpoint of this store (from [`Store::latest`] or
    /// [`Store::latest_with_skipped`]), checked against `expected`; damage in it is an error
    /// saying which earlier checkpoint exists, as [`Store::load_latest`].
    pub fn load_newest(&self, ckpt: &Checkpoint, expected: &Spec) -> Result<State> {
        ckpt.load(Some(expected)).map_err(|source| {
            let earlier = self
                .list()
                .ok()
                .and_then(|l| l.into_iter().rev().find(|(s, _)| *s < ckpt.step()))
                .map(|(_, p)| p);
            CkptError::Latest {
                path: ckpt.path().to_path_buf(),
                earlier,
                source: Box::new(source),
            }
        })
    }

    /// Writes `state` as `step-<step>` atomically, then applies the retention policy (on
    /// object storage: see src/ckpt/remote.rs).
    pub fn save(&self, state: &State) -> Result<Checkpoint> {
        check_tensors("parameters", &state.params)?;
        check_tensors("optimizer state", &state.opt_state)?;
        if let Some(url) = self.remote()? {
            return super::remote::save(&url, state, self.keep_last);
        }
        std::fs::create_dir_all(&self.root).map_err(CkptError::io("creating", &self.root))?;
        let name = dir_name(state.step);
        let final_dir = self.root.join(&name);
        let occupied_by_other = std::fs::symlink_metadata(&final_dir)
            .map(|m| !m.is_dir())
            .unwrap_or(false);
        if occupied_by_other {
            return Err(foreign_entry(&final_dir));
        }
        let tmp = self.root.join(unique_hidden(TEMP_PREFIX, &name));
        std::fs::create_dir(&tmp).map_err(CkptError::io("creating", &tmp))?;
        let manifest = match write_contents(&tmp, state) {
            Ok(m) => m,
            Err(e) => {
                // Best effort: the error being returned is the one that matters.
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        self.install(&tmp, &final_dir, &name)?;
        if let Err(e) = self.prune(&final_dir) {
            tracing::warn!(
                "checkpoint {} saved, but pruning old ones failed: {e}",
                final_dir.display()
            );
        }
        Ok(Checkpoint::from_parts(final_dir, manifest))
    }

    /// Renames the finished temporary directory to its step name (swapping out an existing one)
    /// and makes the rename durable.
    fn install(&self, tmp: &Path, final_dir: &Path, name: &str) -> Result<()> {
        let rename = |from: &Path, to: &Path| {
            std::fs::rename(from, to).map_err(CkptError::io("renaming into place", to))
        };
        if final_dir.exists() {
            let old = self.root.join(unique_hidden(OLD_PREFIX, name));
            rename(final_dir, &old)?;
            rename(tmp, final_dir)?;
            sync_dir(&self.root)?;
            std::fs::remove_dir_all(&old).map_err(CkptError::io("removing", &old))?;
        } else {
            rename(tmp, final_dir)?;
            sync_dir(&self.root)?;
        }
        Ok(())
    }

    /// Deletes step directories beyond the newest `keep_last` (counting `keep`, which stays)
    /// and hidden leftovers of dead processes. Returns what was deleted.
    fn prune(&self, keep: &Path) -> Result<Vec<PathBuf>> {
        let mut others: Vec<(u64, PathBuf)> = self
            .list()?
            .into_iter()
            .filter(|(_, p)| p != keep)
            .collect();
        others.sort_by(|a, b| b.cmp(a));
        let mut removed = vec![];
        for (_, path) in others.into_iter().skip(self.keep_last - 1) {
            std::fs::remove_dir_all(&path).map_err(CkptError::io("removing", &path))?;
            tracing::info!("removed old checkpoint {}", path.display());
            removed.push(path);
        }
        removed.extend(self.remove_dead_leftovers()?);
        Ok(removed)
    }

    /// Removes `.tmp-*` / `.old-*` directories whose writing process no longer runs (Linux
    /// only: elsewhere liveness cannot be told and they are left alone).
    fn remove_dead_leftovers(&self) -> Result<Vec<PathBuf>> {
        if !Path::new("/proc/self").exists() {
            return Ok(vec![]);
        }
        let mut removed = vec![];
        let entries =
            std::fs::read_dir(&self.root).map_err(CkptError::io("listing", &self.root))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(leftover_pid) else {
                continue;
            };
            if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
                continue;
            }
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(CkptError::io("removing", &path))?;
            tracing::info!(
                "removed a leftover of an interrupted save: {}",
                path.display()
            );
            removed.push(path);
        }
        Ok(removed)
    }
}

/// The tensor files of a checkpoint: (file name, tensors), in the order they are written.
pub(super) fn state_files(state: &State) -> [(&'static str, &NamedTensors); 2] {
    [
        (PARAMS_FILE, &state.params),
        (OPT_STATE_FILE, &state.opt_state),
    ]
}

/// The manifest of `state` whose tensor files are `files`, stamped now.
pub(super) fn manifest_of(state: &State, files: Vec<FileEntry>) -> Manifest {
    Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        step: state.step,
        wall_time_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        model_config: state.model_config.clone(),
        optimizer: state.optimizer.clone(),
        rng: state.rng.clone(),
        data_position: state.data_position.clone(),
        extra: state.extra.clone(),
        files,
    }
}

/// Writes the tensor files and, last, the manifest into `dir`, and fsyncs `dir`.
fn write_contents(dir: &Path, state: &State) -> Result<Manifest> {
    let mut files = vec![];
    for (name, tensors) in state_files(state) {
        let path = dir.join(name);
        write_file(&path, tensors, None)?;
        // Digest what is on disk (from the page cache), not what we meant to write.
        let digest = FileDigest::of_file(&path)?;
        let names = tensors.iter().map(|(n, _)| n.clone()).collect();
        files.push(FileEntry::new(name, digest, names));
    }
    let manifest = manifest_of(state, files);
    manifest.write(dir)?;
    sync_dir(dir)?;
    Ok(manifest)
}

fn foreign_entry(path: &Path) -> CkptError {
    CkptError::Invalid(format!(
        "{} is named like a checkpoint directory but is not a directory; tpu-run will not \
         replace it: move it out of the checkpoint directory",
        path.display()
    ))
}

/// `<prefix><name>-<pid>-<nanos>`: hidden, unique, and tells which process made it.
fn unique_hidden(prefix: &str, name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}{name}-{}-{nanos}", std::process::id())
}

/// The pid in a `.tmp-…-<pid>-<nanos>` / `.old-…-<pid>-<nanos>` name.
fn leftover_pid(name: &str) -> Option<u32> {
    if !name.starts_with(TEMP_PREFIX) && !name.starts_with(OLD_PREFIX) {
        return None;
    }
    let mut parts = name.rsplitn(3, '-');
    let _nanos = parts.next()?;
    parts.next()?.parse().ok()
}

/// Makes a directory's entries (creations, renames) durable.
fn sync_dir(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(CkptError::io("syncing directory", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip_and_sort_by_number() {
        assert_eq!(dir_name(1234), "step-00001234");
        assert_eq!(dir_name(123_456_789), "step-123456789");
        assert_eq!(parse_dir_name("step-00001234"), Some(1234));
        assert_eq!(parse_dir_name("step-123456789"), Some(123_456_789));
        for bad in [
            "step-",
            "step-12a",
            "step--1",
            "steps-1",
            ".tmp-step-00000001-1-2",
        ] {
            assert_eq!(parse_dir_name(bad), None, "{bad}");
        }
        assert_eq!(
            leftover_pid(".tmp-step-00000300-4242-1795000000"),
            Some(4242)
        );
        assert_eq!(leftover_pid(".old-step-00000300-77-1"), Some(77));
        assert_eq!(leftover_pid("step-00000300"), None);
    }
}

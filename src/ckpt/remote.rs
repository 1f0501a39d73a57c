//! A checkpoint store under a bucket prefix (`gs://…` / `s3://…`), with the guarantee local
//! stores get from renames built from what object stores do offer: a PUT appears whole or
//! not at all, and a listing shows what was PUT.
//!
//! **The manifest is the commit.** A save PUTs the tensor files under `<root>/step-N/`, then
//! `manifest.json` last, holding each file's size and CRC-32C. Readers fetch the manifest
//! first ([`Checkpoint::probe`]): a prefix without one is incomplete and skipped like a local
//! directory without one, and every file is checked against it on load, so objects left by a
//! save that died midway are never taken for a checkpoint. Saving a step that already has a
//! checkpoint deletes its manifest before overwriting its files: from that moment the old one
//! no longer exists, and a crash before the new manifest leaves the step incomplete (the
//! run resumes from the one before), never a mix of old and new files.
//!
//! **Retention** deletes an old checkpoint's manifest first, then its other objects, so a
//! deletion cut short leaves an incomplete prefix, not a damaged checkpoint. A later save's
//! pruning removes such leftovers with the rest beyond `keep_last`.
use super::checkpoint::Checkpoint;
use super::checksum::FileDigest;
use super::error::{CkptError, Result};
use super::manifest::{FileEntry, MANIFEST_FILE};
use super::state::State;
use super::store::{dir_name, parse_dir_name};
use super::tensors::serialize;
use crate::storage::{self, ObjectUrl};
use std::path::PathBuf;

fn as_path(url: &ObjectUrl) -> PathBuf {
    PathBuf::from(url.to_string())
}

/// The `step-*` prefixes under `root` (step, name), sorted by step.
fn list_names(root: &ObjectUrl) -> Result<Vec<(u64, String)>> {
    let listing = storage::list_dir(root).map_err(CkptError::io("listing", &as_path(root)))?;
    let mut out: Vec<(u64, String)> = listing
        .dirs
        .into_iter()
        .filter_map(|name| parse_dir_name(&name).map(|step| (step, name)))
        .collect();
    out.sort();
    Ok(out)
}

/// The `step-*` prefixes under `root`, sorted by step.
pub(super) fn list(root: &ObjectUrl) -> Result<Vec<(u64, PathBuf)>> {
    Ok(list_names(root)?
        .into_iter()
        .map(|(step, name)| (step, as_path(&root.join(&name))))
        .collect())
}

/// An object named exactly like a step prefix (`<root>/step-00000008`) would shadow a
/// checkpoint's listing in some tools; refuse it as a local store refuses a file there.
pub(super) fn check_step_names_free(root: &ObjectUrl) -> Result<()> {
    let listing = storage::list_dir(root).map_err(CkptError::io("listing", &as_path(root)))?;
    match listing.objects.iter().find(|n| parse_dir_name(n).is_some()) {
        Some(name) => Err(CkptError::Invalid(format!(
            "{} is an object named like a checkpoint prefix; tpu-run will not write beside it: \
             move it out of the checkpoint prefix",
            root.join(name)
        ))),
        None => Ok(()),
    }
}

/// Writes `state` as `<root>/step-N/` (files, then the manifest), then keeps the newest
/// `keep_last` checkpoints.
pub(super) fn save(root: &ObjectUrl, state: &State, keep_last: usize) -> Result<Checkpoint> {
    let dir = root.join(&dir_name(state.step));
    let dir_path = as_path(&dir);
    let manifest_url = dir.join(MANIFEST_FILE);
    storage::objects::delete(&manifest_url)
        .map_err(CkptError::io("removing", &as_path(&manifest_url)))?;
    let mut files = vec![];
    for (name, tensors) in super::store::state_files(state) {
        let path = dir_path.join(name);
        let bytes = serialize(&path, tensors)?;
        let digest = FileDigest::of_bytes(&bytes);
        storage::objects::put(&dir.join(name), bytes).map_err(CkptError::io("writing", &path))?;
        files.push(FileEntry::new(
            name,
            digest,
            tensors.iter().map(|(n, _)| n.clone()).collect(),
        ));
    }
    let manifest = super::store::manifest_of(state, files);
    storage::objects::put(&manifest_url, manifest.to_bytes()?)
        .map_err(CkptError::io("writing", &as_path(&manifest_url)))?;
    if let Err(e) = prune(root, state.step, keep_last) {
        tracing::warn!("checkpoint {dir} saved, but pruning old ones failed: {e}");
    }
    Ok(Checkpoint::from_parts(dir_path, manifest))
}

/// Deletes step prefixes beyond the newest `keep_last`, counting `keep` (just written), each
/// manifest first. Returns what was deleted.
fn prune(root: &ObjectUrl, keep: u64, keep_last: usize) -> Result<Vec<PathBuf>> {
    let mut others: Vec<(u64, String)> = list_names(root)?
        .into_iter()
        .filter(|(step, _)| *step != keep)
        .collect();
    others.sort_by(|a, b| b.cmp(a));
    let mut removed = vec![];
    for (_, name) in others.into_iter().skip(keep_last.saturating_sub(1)) {
        let dir = root.join(&name);
        let path = as_path(&dir);
        storage::remove_prefix(&dir, MANIFEST_FILE).map_err(CkptError::io("removing", &path))?;
        tracing::info!("removed old checkpoint {}", path.display());
        removed.push(path);
    }
    Ok(removed)
}

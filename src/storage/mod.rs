//! Where tpu-run's data, checkpoints and outputs live: a local path, or an object in a bucket
//! (`gs://BUCKET/KEY` on Google Cloud Storage, `s3://BUCKET/KEY` on S3 or an S3-compatible
//! server), through the `object_store` crate.
//!
//! Paths stay `Path`/`PathBuf` through the program (a URL is a valid Unix path string, and
//! `Path::join` appends `/name` to it), so configs, checkpoint records and messages carry
//! either form unchanged; [`Location::parse`] tells them apart where I/O happens. Any other
//! `scheme://` is refused with an error naming it.
//!
//! The interface is small on purpose: whole-object [`read`] / [`write`], [`size`],
//! [`exists`], [`Input`] (a streaming reader for TFRecord shards), [`glob`] over listings,
//! directory listing and removal for checkpoint stores ([`list_dir`], [`remove_prefix`]), and
//! [`OutputDir`] for files that grow during a run. Object stores have no rename and no
//! append; what needs atomicity (checkpoints) builds it from "a PUT appears whole or not at
//! all" plus a manifest written last (src/ckpt/remote.rs).
//!
//! Credentials and endpoints come from the environment as `object_store` reads it: for
//! `s3://`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! and for S3-compatible servers `AWS_ENDPOINT_URL` (+ `AWS_ALLOW_HTTP=true` for plain
//! http); else the instance's metadata. For `gs://`, `GOOGLE_APPLICATION_CREDENTIALS` (or
//! `GOOGLE_SERVICE_ACCOUNT_PATH`), else the VM's service account through the metadata server.
mod glob;
mod input;
mod mirror;
pub mod objects;
mod reader;
mod runtime;
pub mod url;

pub use input::Input;
pub use mirror::OutputDir;
pub use objects::Listing;
pub use reader::ObjectReader;
pub use url::{ObjectUrl, Scheme, UrlError};

use std::io;
use std::path::{Path, PathBuf};

/// A path as tpu-run uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Object(ObjectUrl),
}

impl Location {
    /// A local path, or a `gs://` / `s3://` URL; other schemes are an `InvalidInput` error
    /// naming the scheme.
    pub fn parse(path: &Path) -> io::Result<Location> {
        let Some(text) = path.to_str() else {
            return Ok(Location::Local(path.to_path_buf()));
        };
        match ObjectUrl::parse(text) {
            Ok(Some(url)) => Ok(Location::Object(url)),
            Ok(None) => Ok(Location::Local(path.to_path_buf())),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
        }
    }
}

/// Whether `path` is a `gs://` or `s3://` URL.
pub fn is_object(path: &Path) -> bool {
    matches!(Location::parse(path), Ok(Location::Object(_)))
}

/// Refuses a path with an unsupported scheme or a malformed bucket or key (for config checks
/// before anything runs).
pub fn check(path: &Path) -> Result<(), UrlError> {
    match path.to_str() {
        Some(text) => ObjectUrl::parse(text).map(|_| ()),
        None => Ok(()),
    }
}

/// `path` when it is local; a bucket URL (or a bad scheme) is an error naming `flag`, for the
/// paths that must be local directories (fine-tuning outputs): without this a `gs://` path
/// would silently become a local directory named `gs:`.
pub fn local_only(path: &Path, flag: &str) -> anyhow::Result<PathBuf> {
    match Location::parse(path).map_err(|e| anyhow::anyhow!("{flag}: {e}"))? {
        Location::Local(p) => Ok(p),
        Location::Object(url) => Err(anyhow::anyhow!(
            "{flag} {url}: this flag takes a local directory; write there and copy the result \
             to the bucket (gcloud storage cp -r / aws s3 cp --recursive)"
        )),
    }
}

/// The whole file or object.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    match Location::parse(path)? {
        Location::Local(p) => std::fs::read(p),
        Location::Object(url) => objects::get(&url),
    }
}

/// Writes the whole file or object (an object appears whole or not at all; a local file is
/// written in place: callers needing atomic local writes keep their own rename dance).
pub fn write(path: &Path, data: Vec<u8>) -> io::Result<()> {
    match Location::parse(path)? {
        Location::Local(p) => std::fs::write(p, data),
        Location::Object(url) => objects::put(&url, data),
    }
}

/// The size in bytes of a file or object.
pub fn size(path: &Path) -> io::Result<u64> {
    match Location::parse(path)? {
        Location::Local(p) => std::fs::metadata(p).map(|m| m.len()),
        Location::Object(url) => objects::size(&url),
    }
}

/// Whether a regular file or an object exists at `path`.
pub fn exists(path: &Path) -> io::Result<bool> {
    match Location::parse(path)? {
        Location::Local(p) => Ok(p.is_file()),
        Location::Object(url) => match objects::size(&url) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
    }
}

/// The entries directly under a bucket prefix taken as a directory (see [`Listing`]).
pub fn list_dir(url: &ObjectUrl) -> io::Result<Listing> {
    objects::list_dir(url)
}

/// Deletes the object `first` names under `url` (when present), then every other object
/// under the prefix: a reader that finds `first` missing treats the rest as not there.
pub fn remove_prefix(url: &ObjectUrl, first: &str) -> io::Result<()> {
    objects::delete(&url.join(first))?;
    for (key, _) in objects::list_all(url)? {
        objects::delete(&ObjectUrl { key, ..url.clone() })?;
    }
    Ok(())
}

/// The objects a `gs://` / `s3://` pattern matches (glob characters allowed), sorted; empty
/// when none does.
pub fn glob(pattern: &ObjectUrl) -> io::Result<Vec<PathBuf>> {
    glob::expand(pattern)
}

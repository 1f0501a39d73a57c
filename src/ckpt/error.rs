//! Checkpoint errors: each names the file (and tensor) that is wrong and what to do about it.
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CkptError {
    /// An I/O call failed on `path`.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The manifest is missing, unreadable or inconsistent.
    #[error("checkpoint manifest {}: {msg}", path.display())]
    Manifest { path: PathBuf, msg: String },
    /// A file has another size or checksum than its manifest records, or cannot be parsed.
    #[error("checkpoint file {}: {msg}", path.display())]
    Corrupt { path: PathBuf, msg: String },
    /// One tensor is missing, unexpected, or has the wrong dtype or shape.
    #[error("checkpoint file {}: tensor '{tensor}': {msg}", path.display())]
    Tensor {
        path: PathBuf,
        tensor: String,
        msg: String,
    },
    /// The newest complete checkpoint failed its checks.
    #[error("the newest checkpoint {} cannot be loaded: {source}; {}", path.display(), match earlier {
        Some(e) => format!("move it out of the way to resume from {}", e.display()),
        None => "there is no earlier checkpoint; delete it to start over".to_string(),
    })]
    Latest {
        path: PathBuf,
        earlier: Option<PathBuf>,
        source: Box<CkptError>,
    },
    /// The caller's state or arguments cannot be saved (duplicate names, bad dims, ...).
    #[error("checkpoint: {0}")]
    Invalid(String),
    /// A Hugging Face checkpoint directory that cannot be exported to or imported from.
    #[error("Hugging Face checkpoint {}: {msg}", path.display())]
    HuggingFace { path: PathBuf, msg: String },
}

pub type Result<T, E = CkptError> = std::result::Result<T, E>;

impl CkptError {
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { op, path, source }
    }

    pub(crate) fn corrupt(path: &Path, msg: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }

    pub(crate) fn tensor(path: &Path, tensor: &str, msg: impl Into<String>) -> Self {
        Self::Tensor {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            msg: msg.into(),
        }
    }

    pub(crate) fn manifest(path: &Path, msg: impl Into<String>) -> Self {
        Self::Manifest {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

//! Errors of the data pipeline that callers may want to tell apart (corrupt records name the file
//! and byte offset, so a user can find or drop the bad shard).
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: I/O error at byte {offset}: {source}")]
    Io {
        path: PathBuf,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: corrupt TFRecord length at byte {offset} (length CRC mismatch); the shard is \
         damaged from here on: regenerate it or read with --skip-corrupt"
    )]
    CorruptLength { path: PathBuf, offset: u64 },
    #[error(
        "{path}: corrupt TFRecord data at byte {offset} ({len} bytes, data CRC mismatch); \
         regenerate the shard or read with --skip-corrupt"
    )]
    CorruptData {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    #[error(
        "{path}: truncated TFRecord at byte {offset}: {what} needs {needed} bytes but the file \
         ends after {available}; the file was cut short (interrupted copy or write?)"
    )]
    Truncated {
        path: PathBuf,
        offset: u64,
        what: &'static str,
        needed: u64,
        available: u64,
    },
    #[error("{path}: record at byte {offset} is not a BERT pretraining example: {reason}")]
    BadExample {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

impl DataError {
    /// True for damage in a shard (bad length/CRC, truncation, undecodable record), the errors that
    /// skip-corrupt reading counts and steps over.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            DataError::CorruptLength { .. }
                | DataError::CorruptData { .. }
                | DataError::Truncated { .. }
                | DataError::BadExample { .. }
        )
    }
}

pub type Result<T> = std::result::Result<T, DataError>;

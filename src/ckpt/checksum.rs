//! File checksums: CRC-32C (Castagnoli) over the whole file, streamed.
//!
//! CRC-32C catches the corruption checkpoints meet (flipped bits, truncation, a half-copied
//! file) at memory speed with the SSE4.2/ARMv8 instruction, is already a dependency (TFRecord
//! framing uses it), and is the checksum GCS records for every object, so a checkpoint copied to
//! a bucket can be compared without reading it back. It is not a defence against tampering.
use super::error::{CkptError, Result};
use std::io::Read;
use std::path::Path;

/// The size in bytes and CRC-32C of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileDigest {
    pub bytes: u64,
    pub crc32c: u32,
}

impl FileDigest {
    pub fn of_bytes(data: &[u8]) -> Self {
        Self {
            bytes: data.len() as u64,
            crc32c: crc32c::crc32c(data),
        }
    }

    /// Reads `path` in 4 MiB chunks.
    pub fn of_file(path: &Path) -> Result<Self> {
        let mut f = std::fs::File::open(path).map_err(CkptError::io("opening", path))?;
        let mut buf = vec![0u8; 4 << 20];
        let (mut bytes, mut crc) = (0u64, 0u32);
        loop {
            let n = match f.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CkptError::io("reading", path)(e)),
            };
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            bytes += n as u64;
        }
        Ok(Self { bytes, crc32c: crc })
    }
}

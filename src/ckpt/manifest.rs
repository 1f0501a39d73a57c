//! `manifest.json`: what a checkpoint directory holds and everything needed to resume that is
//! not a tensor. It is written last, so a directory with a readable manifest has all its files.
//!
//! ```json
//! { "format": "tpu-run-checkpoint", "format_version": 1, "step": 1234,
//!   "wall_time_unix_s": 1795000000.25,
//!   "model_config": {...}, "optimizer": {"name": "adam_weight_decay", "hyperparameters": {...}},
//!   "rng": {"dropout_key": [1, 2], "host_seed": 12345, "host_state": []},
//!   "data_position": {...}, "extra": null,
//!   "files": [{"name": "params.safetensors", "bytes": 4096, "crc32c": 305419896,
//!              "tensors": ["bert.embeddings.word_embeddings.weight", ...]}, ...] }
//! ```
//! `model_config`, optimizer hyperparameters, `data_position` and `extra` are opaque JSON from
//! their owners (the model config, the optimizer, the data reader's `state()`); integers in them
//! stay exact (serde_json keeps u64/i64 apart from f64).
//!
//! The file opens with `"manifest_crc32c": "0x…"`, the CRC-32C of the rest as if that line were
//! absent (`{` followed by what comes after it), so a manifest changed after writing (one byte of
//! a reader position edited, a flipped bit) is caught like a damaged tensor file. A manifest
//! without the line (written before it existed) is read unchecked.
use super::checksum::FileDigest;
use super::error::{CkptError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::{Component, Path};

pub const FORMAT: &str = "tpu-run-checkpoint";
/// Bumped when a reader of the previous version would misread a new checkpoint.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const PARAMS_FILE: &str = "params.safetensors";
pub const OPT_STATE_FILE: &str = "opt_state.safetensors";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// Optimizer updates applied before this checkpoint.
    pub step: u64,
    /// When the checkpoint was written (seconds since the Unix epoch).
    pub wall_time_unix_s: f64,
    pub model_config: Value,
    pub optimizer: OptimizerInfo,
    pub rng: RngState,
    /// Where each data shard's reader stands (the reader's own JSON).
    pub data_position: Value,
    /// Anything else the training loop wants back on resume.
    #[serde(default)]
    pub extra: Value,
    pub files: Vec<FileEntry>,
}

/// The optimizer's name and hyperparameters (its own JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizerInfo {
    pub name: String,
    #[serde(default)]
    pub hyperparameters: Value,
}

/// Random-number state: the dropout key (`u64` words of the device dropout key) and, when the
/// host draws random numbers too, its seed and generator state words.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub dropout_key: Vec<u64>,
    #[serde(default)]
    pub host_seed: Option<u64>,
    #[serde(default)]
    pub host_state: Vec<u64>,
}

/// One file of the checkpoint: size, checksum and the tensors it holds, in state order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub crc32c: u32,
    pub tensors: Vec<String>,
}

impl FileEntry {
    pub fn new(name: &str, digest: FileDigest, tensors: Vec<String>) -> Self {
        Self {
            name: name.to_string(),
            bytes: digest.bytes,
            crc32c: digest.crc32c,
            tensors,
        }
    }

    pub fn digest(&self) -> FileDigest {
        FileDigest {
            bytes: self.bytes,
            crc32c: self.crc32c,
        }
    }
}

impl Manifest {
    /// The entry of file `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Reads and checks `dir/manifest.json` (format, version, file names).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read(&path).map_err(CkptError::io("reading", &path))?;
        let m = Manifest::parse(&text).map_err(|msg| CkptError::manifest(&path, msg))?;
        m.check(&path)?;
        Ok(m)
    }

    /// Verifies the checksum line (when present) and parses the JSON; the error says which.
    pub fn parse(text: &[u8]) -> std::result::Result<Manifest, String> {
        if let Some((recorded, body)) = split_checksum(text)? {
            let actual = crc32c::crc32c(&body);
            if actual != recorded {
                return Err(format!(
                    "its CRC-32C is {actual:#010x} but it records {recorded:#010x}: the manifest \
                     was edited or damaged after it was written"
                ));
            }
        }
        serde_json::from_slice(text).map_err(|e| format!("not valid manifest JSON: {e}"))
    }

    /// Format, version, plain and unique file names, unique tensor names per file.
    pub fn check(&self, path: &Path) -> Result<()> {
        if self.format != FORMAT {
            return Err(CkptError::manifest(
                path,
                format!("format is '{}', expected '{FORMAT}'", self.format),
            ));
        }
        if self.format_version > FORMAT_VERSION {
            return Err(CkptError::manifest(
                path,
                format!(
                    "format version {} was written by a newer tpu-run (this build reads up to {FORMAT_VERSION}); upgrade tpu-run",
                    self.format_version
                ),
            ));
        }
        for f in &self.files {
            let mut parts = Path::new(&f.name).components();
            let plain =
                matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none();
            if !plain || f.name == MANIFEST_FILE {
                return Err(CkptError::manifest(
                    path,
                    format!("file entry '{}' is not a plain data file name", f.name),
                ));
            }
            if self.files.iter().filter(|g| g.name == f.name).count() > 1 {
                return Err(CkptError::manifest(
                    path,
                    format!("lists file '{}' twice", f.name),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = f.tensors.iter().find(|t| !seen.insert(t.as_str())) {
                return Err(CkptError::manifest(
                    path,
                    format!("lists tensor '{dup}' twice in '{}'", f.name),
                ));
            }
        }
        Ok(())
    }

    /// The manifest file's bytes: pretty JSON with its checksum line.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_vec_pretty(self)
            .map_err(|e| CkptError::Invalid(format!("serializing the manifest: {e}")))?;
        Ok(with_checksum(&body))
    }

    /// Writes `dir/manifest.json` and fsyncs it.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let json = self.to_bytes()?;
        let mut f = std::fs::File::create(&path).map_err(CkptError::io("creating", &path))?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(CkptError::io("writing", &path))
    }
}

/// The checksum line as written after the opening `{`, with the CRC's 8 hex digits at `HEX_AT`.
const CRC_LINE: &[u8] = b"\n  \"manifest_crc32c\": \"0x00000000\",";
const CRC_KEY: &[u8] = b"\"manifest_crc32c\"";
const HEX_AT: usize = 25;

/// `body` (pretty JSON of the manifest, starting with `{`) with the checksum line inserted.
fn with_checksum(body: &[u8]) -> Vec<u8> {
    let crc = format!("{:08x}", crc32c::crc32c(body));
    let mut line = CRC_LINE.to_vec();
    line[HEX_AT..HEX_AT + 8].copy_from_slice(crc.as_bytes());
    let mut out = Vec::with_capacity(body.len() + line.len());
    out.extend_from_slice(&body[..1]);
    out.extend_from_slice(&line);
    out.extend_from_slice(&body[1..]);
    out
}

/// The recorded CRC and the text it covers, or `None` for a manifest without the line. The line
/// anywhere but where it is written (a reformatted file) is an error, not an unchecked manifest.
fn split_checksum(text: &[u8]) -> std::result::Result<Option<(u32, Vec<u8>)>, String> {
    let has_key = text.windows(CRC_KEY.len()).any(|w| w == CRC_KEY);
    if !has_key {
        return Ok(None);
    }
    let line_end = 1 + CRC_LINE.len();
    let shape_ok = text.len() > line_end
        && text[0] == b'{'
        && text[1..1 + HEX_AT] == CRC_LINE[..HEX_AT]
        && text[1 + HEX_AT + 8..line_end] == CRC_LINE[HEX_AT + 8..];
    let hex = text.get(1 + HEX_AT..1 + HEX_AT + 8).unwrap_or_default();
    let recorded = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok());
    match (shape_ok, recorded) {
        (true, Some(crc)) => {
            let mut body = vec![b'{'];
            body.extend_from_slice(&text[line_end..]);
            Ok(Some((crc, body)))
        }
        _ => Err(
            "its manifest_crc32c line is not where tpu-run writes it (the file was \
                  reformatted or damaged), so its contents cannot be checked"
                .into(),
        ),
    }
}

#[cfg(test)]
mod checksum_tests {
    use super::{split_checksum, with_checksum};

    #[test]
    fn the_checksum_line_round_trips_and_catches_one_changed_byte() {
        let body = b"{\n  \"step\": 48,\n  \"taken\": 48\n}".to_vec();
        let text = with_checksum(&body);
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["taken"], 48);
        assert!(v["manifest_crc32c"].as_str().unwrap().starts_with("0x"));
        let (crc, covered) = split_checksum(&text).unwrap().unwrap();
        assert_eq!(
            (crc, covered.as_slice()),
            (crc32c::crc32c(&body), &body[..])
        );

        let edited = String::from_utf8(text.clone())
            .unwrap()
            .replace("\"taken\": 48", "\"taken\": 40");
        let (crc, covered) = split_checksum(edited.as_bytes()).unwrap().unwrap();
        assert_ne!(crc, crc32c::crc32c(&covered));

        assert_eq!(
            split_checksum(&body).unwrap(),
            None,
            "an older manifest has no line"
        );
        let reformatted =
            serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&text).unwrap())
                .unwrap();
        assert!(split_checksum(&reformatted).is_err());
    }
}

//! Where the features go, one example at a time, in input order:
//! - `jsonl`: extract_features.py's output file, byte for byte: one `json.dumps` line per input
//!   line, `{"linex_index": i, "features": [{"token": t, "layers": [{"index": -1, "values":
//!   [...]}, ...]}, ...]}` over the real tokens (`[CLS]` to the last `[SEP]`), values rounded to
//!   6 decimals.
//! - `npy`: a directory with `layer_<index>.npy` per requested layer (f32
//!   `[num_examples, max_seq_length, hidden]`, exact values, zeros past each example's tokens)
//!   and `tokens.jsonl` (`{"linex_index": i, "tokens": [...]}` per example).
//!
//! Files are written under a `.partial` name and renamed when complete, so a failed run never
//! leaves a file that looks finished.
use super::layout::Feature;
use super::npy::npy_header;
use super::pyjson::{push_json_str, push_rounded6};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Npy,
}

/// A file written under `<path>.partial`, renamed to `path` by [`PartialFile::finish`] and
/// removed when dropped unfinished (a run that failed).
struct PartialFile {
    path: PathBuf,
    partial: PathBuf,
    /// `None` once finished.
    out: Option<BufWriter<File>>,
}

impl PartialFile {
    fn create(path: &Path) -> Result<Self> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file =
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            partial,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(out) = self.out.as_mut() else {
            bail!("{} is already complete", self.path.display());
        };
        out.write_all(bytes)
            .with_context(|| format!("writing {}", self.partial.display()))
    }

    fn finish(mut self) -> Result<PathBuf> {
        let Some(out) = self.out.take() else {
            bail!("{} is already complete", self.path.display());
        };
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", self.partial.display()))?;
        file.sync_all()
            .with_context(|| format!("writing {}", self.partial.display()))?;
        std::fs::rename(&self.partial, &self.path).with_context(|| {
            format!(
                "renaming {} to {}",
                self.partial.display(),
                self.path.display()
            )
        })?;
        Ok(self.path.clone())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Best effort: the error that ended the run is what the user needs to see.
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Receives each example's requested layers: `layers[j]` is output `j`'s `seq x hidden` values
/// of this example (all positions, padding included).
pub enum FeatureSink {
    Jsonl(JsonlSink),
    Npy(NpySink),
}

impl FeatureSink {
    /// `indexes`: the layer indexes as requested, one per output.
    pub fn create(
        format: OutputFormat,
        path: &Path,
        indexes: &[i64],
        num_examples: usize,
        seq: usize,
        hidden: usize,
    ) -> Result<Self> {
        let sink = match format {
            OutputFormat::Jsonl => PartialFile::create(path).map(|file| {
                FeatureSink::Jsonl(JsonlSink {
                    file,
                    indexes: indexes.to_vec(),
                    hidden,
                    line: String::new(),
                })
            }),
            OutputFormat::Npy => {
                NpySink::create(path, indexes, num_examples, seq, hidden).map(FeatureSink::Npy)
            }
        };
        sink.with_context(|| format!("--output {}", path.display()))
    }

    pub fn write(&mut self, index: usize, feature: &Feature, layers: &[&[f32]]) -> Result<()> {
        match self {
            FeatureSink::Jsonl(s) => s.write(index, feature, layers),
            FeatureSink::Npy(s) => s.write(index, feature, layers),
        }
    }

    /// Completes every file; returns their paths.
    pub fn finish(self) -> Result<Vec<PathBuf>> {
        match self {
            FeatureSink::Jsonl(s) => Ok(vec![s.file.finish()?]),
            FeatureSink::Npy(s) => s.finish(),
        }
    }
}

pub struct JsonlSink {
    file: PartialFile,
    indexes: Vec<i64>,
    hidden: usize,
    line: String,
}

impl JsonlSink {
    fn write(&mut self, index: usize, feature: &Feature, layers: &[&[f32]]) -> Result<()> {
        let line = &mut self.line;
        line.clear();
        line.push_str(&format!("{{\"linex_index\": {index}, \"features\": ["));
        let h = self.hidden;
        for (i, token) in feature.tokens.iter().enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            line.push_str("{\"token\": ");
            push_json_str(line, token);
            line.push_str(", \"layers\": [");
            for (j, (&layer_index, values)) in self.indexes.iter().zip(layers).enumerate() {
                if j > 0 {
                    line.push_str(", ");
                }
                line.push_str(&format!("{{\"index\": {layer_index}, \"values\": ["));
                let Some(row) = values.get(i * h..(i + 1) * h) else {
                    bail!("example {index}: layer {layer_index} has no values at token {i}");
                };
                for (k, &x) in row.iter().enumerate() {
                    if k > 0 {
                        line.push_str(", ");
                    }
                    push_rounded6(line, x);
                }
                line.push_str("]}");
            }
            line.push_str("]}");
        }
        line.push_str("]}\n");
        self.file.write(self.line.as_bytes())
    }
}

pub struct NpySink {
    /// One file per distinct requested index (a repeated index is written once).
    layers: Vec<(usize, PartialFile)>,
    tokens: PartialFile,
    num_examples: usize,
    written: usize,
    seq: usize,
    hidden: usize,
}

impl NpySink {
    fn create(
        dir: &Path,
        indexes: &[i64],
        num_examples: usize,
        seq: usize,
        hidden: usize,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the output directory {}", dir.display()))?;
        let header = npy_header(&[num_examples, seq, hidden])?;
        let mut layers = vec![];
        for (j, index) in indexes.iter().enumerate() {
            if indexes[..j].contains(index) {
                continue;
            }
            let mut file = PartialFile::create(&dir.join(format!("layer_{index}.npy")))?;
            file.write(&header)?;
            layers.push((j, file));
        }
        Ok(Self {
            layers,
            tokens: PartialFile::create(&dir.join("tokens.jsonl"))?,
            num_examples,
            written: 0,
            seq,
            hidden,
        })
    }

    fn write(&mut self, index: usize, feature: &Feature, layers: &[&[f32]]) -> Result<()> {
        let row = self.seq * self.hidden;
        let real = feature.tokens.len() * self.hidden;
        let mut bytes = Vec::with_capacity(row * 4);
        for (j, file) in &mut self.layers {
            let Some(values) = layers.get(*j).filter(|v| v.len() == row && real <= row) else {
                bail!(
                    "example {index}: output {j} is not {} x {}",
                    self.seq,
                    self.hidden
                );
            };
            bytes.clear();
            for (k, x) in values.iter().enumerate() {
                let x = if k < real { *x } else { 0.0 };
                bytes.extend(x.to_le_bytes());
            }
            file.write(&bytes)?;
        }
        let mut line = format!("{{\"linex_index\": {index}, \"tokens\": [");
        for (i, t) in feature.tokens.iter().enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            push_json_str(&mut line, t);
        }
        line.push_str("]}\n");
        self.tokens.write(line.as_bytes())?;
        self.written += 1;
        Ok(())
    }

    fn finish(self) -> Result<Vec<PathBuf>> {
        if self.written != self.num_examples {
            bail!(
                "{} examples written of the {} the .npy headers announce",
                self.written,
                self.num_examples
            );
        }
        let mut paths = vec![];
        for (_, f) in self.layers {
            paths.push(f.finish()?);
        }
        paths.push(self.tokens.finish()?);
        Ok(paths)
    }
}

//! Reading input text into documents of tokenized sentences, as create_pretraining_data.py's
//! `create_training_instances` does: lines are stripped, an empty line starts a new document
//! (documents continue across files unless an empty line separates them), a line whose tokens
//! are empty is dropped, empty documents are removed. In paragraph layout each line is first
//! split into sentences.
//!
//! Lines are what TensorFlow's `GFile.readline` gives the original: split at `\n`, the file's
//! final newline ends its last line rather than adding an empty one (so a document goes on into
//! the next file), and every `\r` is dropped (TF's buffered reader never returns one, so
//! `over\rwritten` reads as `overwritten`; a `\r\n` ending is a plain line end). Bytes that
//! are not UTF-8 are dropped (tokenization.py decodes with "ignore"), counted per file with the
//! line of the first, and reported.
use super::normalizer::is_python_space;
use super::sentences::{detect_format, split_sentences, InputFormat};
use super::tokenize::BertTokenizer;
use anyhow::{anyhow, Context, Result};
use indicatif::ProgressBar;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// A document: its sentences (segments), each a list of token ids.
pub type Document = Vec<Vec<u32>>;

#[derive(Clone, Debug, Default)]
pub struct ReadStats {
    pub files: Vec<(PathBuf, InputFormat)>,
    pub bytes: u64,
    pub sentences: u64,
    pub tokens: u64,
    /// Files that were not valid UTF-8 (bad bytes dropped, like tokenization.py's "ignore").
    pub lossy_files: Vec<InvalidUtf8>,
}

/// A file's invalid UTF-8: how many bad byte sequences were dropped, and where the first was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidUtf8 {
    pub path: PathBuf,
    pub sequences: u64,
    /// 1-based line of the first bad sequence.
    pub first_line: u64,
}

/// The text of `bytes` with invalid UTF-8 sequences dropped, and (when there were any) how many
/// and the 1-based line of the first.
pub fn decode_dropping_invalid(bytes: &[u8]) -> (String, Option<(u64, u64)>) {
    let mut text = String::with_capacity(bytes.len());
    let (mut bad, mut first_line) = (0u64, 0u64);
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            if bad == 0 {
                first_line = 1 + text.bytes().filter(|&b| b == b'\n').count() as u64;
            }
            bad += 1;
        }
    }
    (text, (bad > 0).then_some((bad, first_line)))
}

/// The file's lines as TF's `GFile.readline` returns them (see the module doc); a line is
/// copied only when it holds a `\r` to drop.
fn tf_lines(text: &str) -> Vec<Cow<'_, str>> {
    if text.is_empty() {
        return vec![];
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n')
        .map(|l| {
            if l.contains('\r') {
                Cow::Owned(l.replace('\r', ""))
            } else {
                Cow::Borrowed(l)
            }
        })
        .collect()
}

/// Expands comma-separated paths and glob patterns, each pattern's matches sorted, in the order
/// given. A pattern matching nothing is an error (a typo should not silently shrink the data).
pub fn expand_inputs(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for pattern in patterns.iter().flat_map(|p| p.split(',')) {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            continue;
        }
        let mut matched: Vec<PathBuf> = glob::glob(pattern)
            .with_context(|| format!("bad input pattern {pattern:?}"))?
            .filter_map(|r| r.ok())
            .filter(|p| p.is_file())
            .collect();
        if matched.is_empty() {
            return Err(anyhow!("input {pattern:?} matches no file"));
        }
        matched.sort();
        out.extend(matched);
    }
    if out.is_empty() {
        return Err(anyhow!("no input files given (--input FILE|GLOB[,...])"));
    }
    Ok(out)
}

/// Lines tokenized per parallel batch.
const LINES_PER_BATCH: usize = 8192;

/// Reads and tokenizes `files` into documents (empty ones removed, in input order).
pub fn read_documents(
    files: &[PathBuf],
    tokenizer: &BertTokenizer,
    format: InputFormat,
    progress: &ProgressBar,
) -> Result<(Vec<Document>, ReadStats)> {
    let mut docs: Vec<Document> = vec![Vec::new()];
    let mut stats = ReadStats::default();
    for path in files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        stats.bytes += bytes.len() as u64;
        let (text, invalid) = decode_dropping_invalid(&bytes);
        if let Some((sequences, first_line)) = invalid {
            tracing::warn!(
                "{}: {sequences} invalid UTF-8 byte sequence(s) dropped, the first on line \
                 {first_line}",
                path.display()
            );
            stats.lossy_files.push(InvalidUtf8 {
                path: path.clone(),
                sequences,
                first_line,
            });
        }
        let file_format = match format {
            InputFormat::Auto => detect_format(text.split('\n')),
            f => f,
        };
        stats.files.push((path.clone(), file_format));
        add_file(
            &text,
            file_format,
            tokenizer,
            &mut docs,
            &mut stats,
            progress,
            path,
        )?;
    }
    docs.retain(|d| !d.is_empty());
    Ok((docs, stats))
}

/// One entry per input line: `None` for an empty line (document break), else the sentences.
fn add_file(
    text: &str,
    format: InputFormat,
    tokenizer: &BertTokenizer,
    docs: &mut Vec<Document>,
    stats: &mut ReadStats,
    progress: &ProgressBar,
    path: &Path,
) -> Result<()> {
    let lines = tf_lines(text);
    for chunk in lines.chunks(LINES_PER_BATCH) {
        let mut layout: Vec<Option<usize>> = Vec::with_capacity(chunk.len());
        let mut segments: Vec<&str> = Vec::with_capacity(chunk.len());
        for line in chunk {
            let line = line.trim_matches(is_python_space);
            if line.is_empty() {
                layout.push(None);
                continue;
            }
            let before = segments.len();
            match format {
                InputFormat::Paragraphs => segments.extend(split_sentences(line)),
                _ => segments.push(line),
            }
            layout.push(Some(segments.len() - before));
        }
        let encoded = tokenizer
            .encode_batch(&segments)
            .with_context(|| format!("tokenizing {}", path.display()))?;
        let mut next = encoded.into_iter();
        for entry in layout {
            match entry {
                None => docs.push(Vec::new()),
                Some(n) => {
                    for ids in next.by_ref().take(n) {
                        if !ids.is_empty() {
                            stats.sentences += 1;
                            stats.tokens += ids.len() as u64;
                            if let Some(doc) = docs.last_mut() {
                                doc.push(ids);
                            }
                        }
                    }
                }
            }
        }
        // +1 per line for the '\n' the split removed.
        progress.inc(chunk.iter().map(|l| l.len() as u64 + 1).sum());
    }
    Ok(())
}

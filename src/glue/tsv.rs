//! GLUE's tab-separated files as run_classifier.py's `_read_tsv` reads them: Python's
//! `csv.reader(f, delimiter="\t", quotechar=None)`, which (with no quote character) splits each
//! line at every tab and keeps quotes as text. Lines end at `\n` (a `\r` before it is dropped, as
//! Python's universal newlines do); a UTF-8 byte-order mark at the start is dropped (GLUE's MRPC
//! files begin with one). Bytes that are not UTF-8 are an error naming the line: the original
//! would stop there too (`UnicodeDecodeError`).
use anyhow::{bail, Context, Result};
use std::path::Path;

/// One line of a TSV file: its 1-based number in the file and its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsvLine {
    pub number: usize,
    pub fields: Vec<String>,
}

impl TsvLine {
    /// Field `i`, or an error naming `file`, the line and what the column holds.
    pub fn field(&self, i: usize, file: &Path, what: &str) -> Result<&str> {
        match self.fields.get(i) {
            Some(f) => Ok(f),
            None => bail!(
                "{} line {}: has {} tab-separated column(s); the {what} is column {} (1-based)",
                file.display(),
                self.number,
                self.fields.len(),
                i + 1
            ),
        }
    }

    /// The last field (an empty line has none).
    pub fn last(&self, file: &Path, what: &str) -> Result<&str> {
        match self.fields.last() {
            Some(f) if !(self.fields.len() == 1 && f.is_empty()) => Ok(f),
            _ => bail!(
                "{} line {}: is empty; expected the {what} in its last column",
                file.display(),
                self.number
            ),
        }
    }
}

/// Reads every line of `path` (see the module docs).
pub fn read_tsv(path: &Path) -> Result<Vec<TsvLine>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_tsv(&bytes, path)
}

/// [`read_tsv`] of bytes already read; `path` names them in errors.
pub fn parse_tsv(bytes: &[u8], path: &Path) -> Result<Vec<TsvLine>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(vec![]);
    }
    // A final newline ends the last line; it does not start an empty one.
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut out = Vec::new();
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => bail!(
                "{} line {}: is not UTF-8 (invalid byte at column {}); GLUE files are UTF-8",
                path.display(),
                i + 1,
                e.valid_up_to() + 1
            ),
        };
        out.push(TsvLine {
            number: i + 1,
            fields: text.split('\t').map(str::to_string).collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Vec<Vec<String>> {
        parse_tsv(b, Path::new("t.tsv"))
            .unwrap()
            .into_iter()
            .map(|l| l.fields)
            .collect()
    }

    #[test]
    fn splits_at_tabs_and_keeps_quotes() {
        let rows = parse(b"\xEF\xBB\xBFa\tb\r\n\"x\ty\" z\t\n");
        assert_eq!(rows, vec![vec!["a", "b"], vec!["\"x", "y\" z", ""]]);
    }

    #[test]
    fn no_final_newline_and_empty_lines() {
        assert_eq!(parse(b"a\n\nb"), vec![vec!["a"], vec![""], vec!["b"]]);
        assert!(parse(b"").is_empty());
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let e = parse_tsv(b"ok\nbad \xff here\n", Path::new("d.tsv")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.tsv line 2: is not UTF-8 (invalid byte at column 5); GLUE files are UTF-8"
        );
    }
}

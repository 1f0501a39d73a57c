//! extract_features.py's `read_examples`: one example per line of the input file, stripped;
//! `text_a ||| text_b` (the regex `^(.*) \|\|\| (.*)$`, so the last ` ||| ` splits) is a pair.
//!
//! Lines are read as TF's `GFile.readline` gives them: split at `\n`, every `\r` dropped, no
//! extra line after a final newline. An empty (or all-whitespace) line is still an example, as
//! in the original: its tokens are `[CLS] [SEP]`. Invalid UTF-8 is an error naming the file and
//! line (the original's strict decode fails on it too).
use anyhow::{bail, Context, Result};
use std::path::Path;

/// One input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputExample {
    pub text_a: String,
    /// The part after ` ||| `, when the line has one.
    pub text_b: Option<String>,
}

/// The examples of a file, with what the user should hear about.
#[derive(Clone, Debug, Default)]
pub struct InputLines {
    pub examples: Vec<InputExample>,
    /// Lines that are empty after stripping (their example is `[CLS] [SEP]`).
    pub empty_lines: usize,
    pub pairs: usize,
}

/// Reads `path` (see the module docs).
pub fn read_input_file(path: &Path) -> Result<InputLines> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading --input {}", path.display()))?;
    parse_lines(&bytes).with_context(|| format!("--input {}", path.display()))
}

/// The examples of a whole file's bytes; errors name the line (1-based).
pub fn parse_lines(bytes: &[u8]) -> Result<InputLines> {
    let mut out = InputLines::default();
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(out);
    }
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = match std::str::from_utf8(raw) {
            Ok(l) => l,
            Err(e) => bail!(
                "line {}: invalid UTF-8 at byte {} of the line; the input must be UTF-8 text",
                i + 1,
                e.valid_up_to() + 1
            ),
        };
        let example = parse_line(&line.replace('\r', ""));
        if example.text_a.is_empty() && example.text_b.is_none() {
            out.empty_lines += 1;
        }
        if example.text_b.is_some() {
            out.pairs += 1;
        }
        out.examples.push(example);
    }
    Ok(out)
}

/// One line: stripped as Python's `str.strip()`, then split at the last ` ||| `.
pub fn parse_line(line: &str) -> InputExample {
    let line = line.trim_matches(crate::data::normalizer::is_python_space);
    match line.rsplit_once(" ||| ") {
        // `if example.text_b:` in the original: an empty second part is no pair.
        Some((a, b)) if !b.is_empty() => InputExample {
            text_a: a.to_string(),
            text_b: Some(b.to_string()),
        },
        Some((a, _)) => InputExample {
            text_a: a.to_string(),
            text_b: None,
        },
        None => InputExample {
            text_a: line.to_string(),
            text_b: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(a: &str, b: Option<&str>) -> InputExample {
        InputExample {
            text_a: a.into(),
            text_b: b.map(Into::into),
        }
    }

    #[test]
    fn lines_split_into_single_texts_and_pairs_as_the_regex_does() {
        assert_eq!(parse_line("  Hello there.\t"), ex("Hello there.", None));
        assert_eq!(parse_line("a ||| b"), ex("a", Some("b")));
        // Greedy first group: the last separator splits.
        assert_eq!(parse_line("a ||| b ||| c"), ex("a ||| b", Some("c")));
        assert_eq!(parse_line("a ||| ||| b"), ex("a |||", Some("b")));
        // The separator needs its spaces; stripping removes a trailing one.
        assert_eq!(parse_line("a|||b"), ex("a|||b", None));
        assert_eq!(parse_line("a ||| "), ex("a |||", None));
        assert_eq!(parse_line("\u{a0}x\u{1f}"), ex("x", None));
        assert_eq!(parse_line(""), ex("", None));
    }

    #[test]
    fn files_read_as_gfile_lines() {
        let got = parse_lines(b"one\r\n\ntwo ||| three\n  \nfour").unwrap();
        assert_eq!(
            got.examples,
            [
                ex("one", None),
                ex("", None),
                ex("two", Some("three")),
                ex("", None),
                ex("four", None)
            ]
        );
        assert_eq!((got.empty_lines, got.pairs), (2, 1));
        // No extra line after the final newline; an empty file has no lines.
        assert_eq!(parse_lines(b"a\n").unwrap().examples.len(), 1);
        assert_eq!(parse_lines(b"\n").unwrap().examples, [ex("", None)]);
        assert!(parse_lines(b"").unwrap().examples.is_empty());
        // A lone \r inside a line is dropped, as TF's reader does.
        assert_eq!(parse_lines(b"ov\rer").unwrap().examples, [ex("over", None)]);
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = parse_lines(b"fine\nbad \xff here\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("line 2: invalid UTF-8 at byte 5"), "{msg}");
    }
}

//! The demo's corpus: the same English text on every machine, from a pinned source.
//!
//! The docstrings of sympy 1.14.0 (BSD; the wheel `sympy-1.14.0-py3-none-any.whl`, fetched once
//! with pip by exact version and checked against its SHA-256, [`tpu::pinned::SYMPY`]): every
//! triple-quoted string of every module outside its test folders, dedented as `inspect.cleandoc`
//! does, read in file-name order; one document per module.
//!
//! Prose only: blank-line separated blocks that are mostly plain words ([`is_prose`]), of at least
//! 8 words, ending a sentence, backticks removed; code, doctests, tables, LaTeX and rule lines
//! are dropped (~290,000 words are left).
//! The output is create-data's one-paragraph-per-line layout, an empty line between documents.
use anyhow::{anyhow, Context, Result};
use std::io::Read;
use std::path::Path;

/// One document: its name and its paragraphs (each one line of prose).
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub name: String,
    pub paragraphs: Vec<String>,
}

impl Document {
    pub fn words(&self) -> usize {
        self.paragraphs
            .iter()
            .map(|p| p.split_whitespace().count())
            .sum()
    }
}

/// Whether a block reads as prose: at least 70% of its whitespace-separated tokens are plain
/// words (letters, optionally capitalized, with surrounding punctuation), and it holds no
/// grammar rule (`::=`) or interpreter prompt (`>>>`).
pub fn is_prose(block: &str) -> bool {
    if block.contains("::=") || block.contains(">>>") {
        return false;
    }
    let word = |t: &str| {
        let t = t.trim_start_matches(['(', '"', '\'']);
        let t = t.trim_end_matches(['.', ',', ';', ':', ')', '"', '\'', '?', '!']);
        let mut chars = t.chars();
        chars.next().is_some_and(|c| c.is_alphabetic()) && chars.all(|c| c.is_lowercase())
    };
    let tokens: Vec<&str> = block.split_whitespace().collect();
    !tokens.is_empty() && tokens.iter().filter(|t| word(t)).count() * 10 >= tokens.len() * 7
}

/// Paragraphs of plain text or Markdown: blank-line separated blocks that are prose
/// ([`is_prose`]), each joined into one line; fenced code, tables, heading and bullet markers
/// and rule lines removed; paragraphs of fewer than `min_words` words dropped.
pub fn prose_paragraphs(text: &str, min_words: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut in_fence = false;
    let mut table = false;
    let flush = |current: &mut Vec<&str>, table: bool, out: &mut Vec<String>| {
        if !table && !current.is_empty() {
            let p = current.join(" ");
            if p.split_whitespace().count() >= min_words && is_prose(&p) {
                out.push(p);
            }
        }
        current.clear();
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
            flush(&mut current, table, &mut out);
            table = false;
            continue;
        }
        if in_fence {
            continue;
        }
        if trimmed.is_empty() {
            flush(&mut current, table, &mut out);
            table = false;
            continue;
        }
        let rule = trimmed.len() >= 3
            && trimmed
                .chars()
                .all(|c| matches!(c, '*' | '=' | '-' | '~' | '^' | '+' | '|' | ':'));
        if rule {
            continue;
        }
        table |= trimmed.starts_with('|');
        let body = trimmed.trim_start_matches('#').trim_start();
        let body = body
            .strip_prefix("- ")
            .or_else(|| body.strip_prefix("* "))
            .unwrap_or(body);
        current.push(body);
    }
    flush(&mut current, table, &mut out);
    out
}

/// Paragraphs a demo document keeps: prose of at least this many words ending with a full stop.
const MIN_SENTENCE_WORDS: usize = 8;

/// The contents of every triple-quoted string literal in Python `source`, in order.
pub fn triple_quoted_strings(source: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = source;
    loop {
        let next = ["\"\"\"", "'''"]
            .iter()
            .filter_map(|q| rest.find(q).map(|i| (i, *q)))
            .min();
        let Some((start, quote)) = next else {
            break;
        };
        let body = &rest[start + 3..];
        let Some(end) = body.find(quote) else {
            break;
        };
        out.push(&body[..end]);
        rest = &body[end + 3..];
    }
    out
}

/// A docstring as `inspect.cleandoc` gives it: the first line stripped, the common indentation
/// of the others removed, blank lines at both ends dropped.
pub fn cleandoc(doc: &str) -> String {
    let lines: Vec<&str> = doc.lines().collect();
    let indent = lines
        .iter()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if i == 0 {
            out.push(l.trim().to_string());
        } else {
            out.push(l.get(indent..).unwrap_or("").trim_end().to_string());
        }
    }
    while out.first().is_some_and(|l| l.is_empty()) {
        out.remove(0);
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

/// Prose paragraphs of sentence form: [`prose_paragraphs`] of at least `MIN_SENTENCE_WORDS`
/// words that end with a full stop, with reStructuredText's backticks removed (``x`` reads as
/// x; otherwise "`" would be the corpus's most frequent token) and no LaTeX (`$`, backslashes).
fn sentence_paragraphs(text: &str) -> Vec<String> {
    prose_paragraphs(&text.replace('`', ""), MIN_SENTENCE_WORDS)
        .into_iter()
        .filter(|p| p.ends_with('.') && !p.contains(['$', '\\']))
        .collect()
}

/// One document per module of the wheel (`.py` files outside `tests/` folders, sorted by path)
/// that has prose in its docstrings.
pub fn wheel_docstring_documents(wheel: &Path) -> Result<Vec<Document>> {
    let f = std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(f)
        .with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    let mut names: Vec<String> = zip
        .file_names()
        .filter(|n| n.ends_with(".py") && !n.contains("/tests/"))
        .map(str::to_string)
        .collect();
    names.sort();
    let mut docs = Vec::new();
    for name in names {
        let mut source = String::new();
        zip.by_name(&name)
            .with_context(|| format!("reading {name} in {}", wheel.display()))?
            .read_to_string(&mut source)
            .with_context(|| format!("{name} in {} is not UTF-8 text", wheel.display()))?;
        let paragraphs: Vec<String> = triple_quoted_strings(&source)
            .into_iter()
            .flat_map(|s| sentence_paragraphs(&cleandoc(s)))
            .collect();
        if !paragraphs.is_empty() {
            docs.push(Document {
                name: name.trim_end_matches(".py").replace('/', "."),
                paragraphs,
            });
        }
    }
    Ok(docs)
}

/// The demo corpus: sympy 1.14.0's docstrings, from the pinned wheel (fetched once).
pub fn demo_documents() -> Result<Vec<Document>> {
    let wheel = crate::data::assets::cached_wheel(&tpu::pinned::SYMPY)?;
    let docs = wheel_docstring_documents(&wheel)?;
    if docs.len() < 20 {
        return Err(anyhow!(
            "{} gave only {} documents of prose; the file is not the expected sympy wheel",
            wheel.display(),
            docs.len()
        ));
    }
    Ok(docs)
}

/// Writes `docs` in create-data's paragraph layout.
pub fn write_corpus(path: &Path, docs: &[&Document]) -> Result<()> {
    let mut text = String::new();
    for d in docs {
        for p in &d.paragraphs {
            text.push_str(p);
            text.push('\n');
        }
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_prose_and_drops_code_tables_and_rules() {
        let text = "Title\n*****\n\nFirst line of prose\ncontinues here with words.\n\n   \
                    code = block(x, y)\n   more_code(z)\n\n| a table | of words |\n|---|---|\n\n\
                    ```sh\ncargo run\n```\n## A heading with four words\n\n- a bullet item of \
                    prose\n\n   >>> print(1)\n\n   An indented note that is prose.\n\nshort\n";
        let p = prose_paragraphs(text, 3);
        assert_eq!(
            p,
            vec![
                "First line of prose continues here with words.",
                "A heading with four words",
                "a bullet item of prose",
                "An indented note that is prose.",
            ]
        );
    }

    #[test]
    fn docstrings_are_found_and_dedented_as_cleandoc() {
        let src = "def f():\n    \"\"\"Summary line.\n\n    Body text here.\n      indented more\n    \"\"\"\n    x = 'a'\n    return r'''raw\n    two'''\n";
        let s = triple_quoted_strings(src);
        assert_eq!(s.len(), 2);
        assert_eq!(
            cleandoc(s[0]),
            "Summary line.\n\nBody text here.\n  indented more"
        );
        assert_eq!(cleandoc(s[1]), "raw\ntwo");
        assert!(triple_quoted_strings("x = \"\"\"unterminated").is_empty());
    }

    #[test]
    fn only_sentences_of_eight_words_are_kept() {
        let text = "This short one ends.\n\nThis paragraph has more than eight plain words in it.\n\nThis paragraph has more than eight plain words but no stop\n\nThis paragraph has eight plain words and ``markup`` in it.\n\nThis paragraph has eight plain words and $x^2$ in it.";
        assert_eq!(
            sentence_paragraphs(text),
            vec![
                "This paragraph has more than eight plain words in it.",
                "This paragraph has eight plain words and markup in it.",
            ]
        );
    }
}

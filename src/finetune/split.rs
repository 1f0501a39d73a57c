//! `tpu-run squad-split`: an article-level validation split of a SQuAD file. Whole articles go
//! to one side (questions about one article never straddle the split); which ones is decided by
//! a SplitMix64 shuffle of the article indices from the seed, so the split is the same on every
//! machine and version. Both outputs keep the input's article order and its JSON values as they
//! are (the `version` key included).
use crate::rng::{domain, SplitMix64};
use crate::squad::{SquadDataset, Warnings};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What a split put where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitSummary {
    /// Indices (in the input) of the validation articles, ascending.
    pub val_articles: Vec<usize>,
    pub val_titles: Vec<String>,
    pub train_articles: usize,
    pub train_questions: usize,
    pub val_questions: usize,
}

/// The indices of `n_val` validation articles out of `n_articles`, ascending: the first `n_val`
/// of a seeded shuffle.
pub fn choose_val_articles(n_articles: usize, n_val: usize, seed: u64) -> Result<Vec<usize>> {
    if n_val == 0 || n_val >= n_articles {
        bail!(
            "--val-articles {n_val}: must be between 1 and {} (the file has {n_articles} \
             articles; both sides need at least one)",
            n_articles.saturating_sub(1)
        );
    }
    let mut order: Vec<usize> = (0..n_articles).collect();
    SplitMix64::new(seed ^ domain::FINETUNE_SPLIT).shuffle(&mut order);
    let mut val = order[..n_val].to_vec();
    val.sort_unstable();
    Ok(val)
}

fn count_questions(article: &Value) -> usize {
    article
        .get("paragraphs")
        .and_then(Value::as_array)
        .map_or(0, |ps| {
            ps.iter()
                .map(|p| p.get("qas").and_then(Value::as_array).map_or(0, Vec::len))
                .sum()
        })
}

/// `path` made absolute with symlinks resolved, also when the file does not exist yet (its
/// directory is resolved instead), so two spellings of one file compare equal.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    match (dir.canonicalize(), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => path.to_path_buf(),
    }
}

/// The two outputs must be two files, neither of them the input: writing both into one file
/// would keep only the second side, and writing over the input would lose it.
fn refuse_clashing_paths(input: &Path, out_train: &Path, out_val: &Path) -> Result<()> {
    let (i, t, v) = (resolved(input), resolved(out_train), resolved(out_val));
    if t == v {
        bail!(
            "--out-train and --out-val are the same file ({}): give two different paths",
            out_train.display()
        );
    }
    for (flag, out, path) in [("--out-train", &t, out_train), ("--out-val", &v, out_val)] {
        if *out == i {
            bail!(
                "{flag} {} is the input file: it would be overwritten; write the split elsewhere",
                path.display()
            );
        }
    }
    Ok(())
}

/// Splits the SQuAD file `input` into `out_train` and `out_val` (see the module docs).
pub fn split_file(
    input: &Path,
    n_val: usize,
    seed: u64,
    out_train: &Path,
    out_val: &Path,
) -> Result<SplitSummary> {
    refuse_clashing_paths(input, out_train, out_val)?;
    // Read once with every check of the SQuAD reader, so a broken file fails here, naming the
    // place, rather than in training.
    let mut warnings = Warnings::new();
    SquadDataset::read(input, &mut warnings)?;
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let mut root: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", input.display()))?;
    let data = root
        .get_mut("data")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| anyhow!("{}: no \"data\" array", input.display()))?;
    let articles = std::mem::take(data);
    let val_idx = choose_val_articles(articles.len(), n_val, seed)
        .with_context(|| format!("splitting {}", input.display()))?;
    let mut summary = SplitSummary {
        val_articles: val_idx.clone(),
        val_titles: vec![],
        train_articles: articles.len() - n_val,
        train_questions: 0,
        val_questions: 0,
    };
    let (mut train, mut val) = (vec![], vec![]);
    for (i, article) in articles.into_iter().enumerate() {
        if val_idx.binary_search(&i).is_ok() {
            summary.val_questions += count_questions(&article);
            let title = article.get("title").and_then(Value::as_str).unwrap_or("");
            summary.val_titles.push(title.to_string());
            val.push(article);
        } else {
            summary.train_questions += count_questions(&article);
            train.push(article);
        }
    }
    for (path, part) in [(out_train, train), (out_val, val)] {
        root["data"] = Value::Array(part);
        let json = serde_json::to_string(&root)
            .with_context(|| format!("serializing {}", path.display()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(summary)
}

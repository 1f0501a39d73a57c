//! Legend names for runs: short, and distinct when two runs would otherwise share one.
use crate::pretrain::metrics::METRICS_FILE;
use std::path::{Component, Path, PathBuf};

/// One name per input: the run directory's name (for a directory, or for a file called
/// `metrics.jsonl`), else the file's name without its extension. Where names collide, the
/// colliding ones take in parent directories until they differ (`a/run`, `b/run`); the same path
/// given twice is told apart by ` #2`, ` #3`.
pub fn run_labels(inputs: &[PathBuf]) -> Vec<String> {
    let parts: Vec<Vec<String>> = inputs.iter().map(|p| name_parts(p)).collect();
    let mut depth = vec![1usize; inputs.len()];
    let label = |i: usize, d: usize| -> String {
        let p = &parts[i];
        let d = d.min(p.len());
        p[..d].iter().rev().cloned().collect::<Vec<_>>().join("/")
    };
    // Deepen each collision with a different path until it is gone or the paths run out; each
    // pass deepens something or stops, and depth is bounded by the path length.
    loop {
        let labels: Vec<String> = (0..inputs.len()).map(|i| label(i, depth[i])).collect();
        let mut grew = false;
        for i in 0..inputs.len() {
            let clash = labels
                .iter()
                .enumerate()
                .any(|(j, l)| *l == labels[i] && parts[j] != parts[i]);
            if clash && depth[i] < parts[i].len() {
                depth[i] += 1;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(inputs.len());
    for (i, &d) in depth.iter().enumerate() {
        let base = label(i, d);
        let before = out
            .iter()
            .filter(|l| **l == base || l.starts_with(&format!("{base} #")))
            .count();
        out.push(if before == 0 {
            base
        } else {
            format!("{base} #{}", before + 1)
        });
    }
    out
}

/// The path's names from the last to the first, the run's own name first.
fn name_parts(input: &Path) -> Vec<String> {
    let path = std::path::absolute(input).unwrap_or_else(|_| input.to_path_buf());
    let mut names: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if !input.is_dir() {
        if path.file_name().is_some_and(|n| n == METRICS_FILE) && names.len() > 1 {
            names.pop();
        } else if let (Some(last), Some(stem)) = (names.last_mut(), path.file_stem()) {
            *last = stem.to_string_lossy().into_owned();
        }
    }
    names.reverse();
    if names.is_empty() {
        names.push(input.display().to_string());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_named_by_directory_or_file_and_collisions_take_parents() {
        let dir = tempfile::tempdir().unwrap();
        let run = |p: &str| {
            let d = dir.path().join(p);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let inputs = vec![
            run("x/base"),
            run("y/base"),
            run("x/large").join(METRICS_FILE),
            dir.path().join("x/lr-sweep.jsonl"),
            run("x/base"),
        ];
        assert_eq!(
            run_labels(&inputs),
            ["x/base", "y/base", "large", "lr-sweep", "x/base #2"]
        );
        assert_eq!(run_labels(&[PathBuf::from("/")]), ["/"]);
    }
}

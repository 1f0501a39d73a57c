//! A run's `metrics.jsonl` as the curves need it: the train and eval records, each a step, the
//! wall time since the run started (`elapsed_s`, when written) and its numeric fields.
//!
//! The file is written by [`crate::pretrain::metrics::MetricsSink`], one JSON object per line
//! with `kind` and `step`. A line that is not a JSON object with an integer `step` (a line cut
//! short by a crash, a note pasted in by hand) is skipped and counted, never fatal: the rest of
//! the run is still worth a look. Blank lines are not counted. Records of other kinds
//! (`summary`, `stopped`) hold totals or events, not points of a curve, and are left out.
use crate::pretrain::metrics::METRICS_FILE;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Fields that are positions or bookkeeping, not values to plot.
const NOT_VALUES: [&str; 3] = ["kind", "step", "elapsed_s"];

/// One train or eval record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub step: u64,
    /// Seconds since the run started, where the record has them.
    pub elapsed_s: Option<f64>,
    /// Every numeric field but the step and the time.
    pub values: BTreeMap<String, f64>,
}

/// The records of one metrics file, in step order.
#[derive(Clone, Debug, Default)]
pub struct RunLog {
    /// The metrics file read.
    pub path: PathBuf,
    pub train: Vec<Record>,
    pub eval: Vec<Record>,
    /// Lines that were not a JSON object with an integer step.
    pub skipped: usize,
}

impl RunLog {
    /// The numeric fields present in any train or eval record.
    pub fn value_names(&self) -> impl Iterator<Item = &str> {
        self.train
            .iter()
            .chain(&self.eval)
            .flat_map(|r| r.values.keys().map(String::as_str))
    }
}

/// The metrics file of `input`: `<input>/metrics.jsonl` for a run directory, else `input`.
pub fn metrics_file(input: &Path) -> Result<PathBuf> {
    if input.is_dir() {
        let file = input.join(METRICS_FILE);
        if !file.is_file() {
            bail!(
                "{} is a directory without a {METRICS_FILE}; pass a run directory \
                 (output.dir of tpu-run pretrain) or a metrics JSONL file",
                input.display()
            );
        }
        return Ok(file);
    }
    if !input.exists() {
        bail!(
            "{}: no such file or directory; pass a run directory or its {METRICS_FILE}",
            input.display()
        );
    }
    Ok(input.to_path_buf())
}

/// Reads the run at `input` (a run directory or a metrics file); an error when it has no train
/// or eval record at all.
pub fn read_run(input: &Path) -> Result<RunLog> {
    let path = metrics_file(input)?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (is it a text file?)", path.display()))?;
    let mut log = parse(&text);
    log.path = path;
    if log.train.is_empty() && log.eval.is_empty() {
        bail!(
            "{}: no usable records ({} line(s) skipped: not a JSON object with a step); \
             expected the metrics.jsonl of a tpu-run pretrain run, with \"kind\": \"train\" \
             or \"eval\" lines",
            log.path.display(),
            log.skipped
        );
    }
    Ok(log)
}

/// Parses the lines of a metrics file (the path is left empty).
pub fn parse(text: &str) -> RunLog {
    let mut log = RunLog::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((kind, record)) = parse_line(line) else {
            log.skipped += 1;
            continue;
        };
        match kind.as_deref() {
            Some("train") => log.train.push(record),
            Some("eval") => log.eval.push(record),
            _ => {}
        }
    }
    // A log is written in step order, but files joined by hand may not be; curves need it.
    log.train.sort_by_key(|r| r.step);
    log.eval.sort_by_key(|r| r.step);
    log
}

/// The kind and record of one line; `None` for a line that is not an object with a step.
fn parse_line(line: &str) -> Option<(Option<String>, Record)> {
    let Value::Object(obj) = serde_json::from_str::<Value>(line).ok()? else {
        return None;
    };
    let step = obj.get("step")?.as_u64()?;
    let kind = obj.get("kind").and_then(Value::as_str).map(str::to_string);
    let elapsed_s = obj
        .get("elapsed_s")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite());
    let values = obj
        .iter()
        .filter(|(k, _)| !NOT_VALUES.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64().filter(|x| x.is_finite())?)))
        .collect();
    Some((
        kind,
        Record {
            step,
            elapsed_s,
            values,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_and_eval_records_are_kept_and_bad_lines_counted() {
        let text = [
            r#"{"kind":"train","step":20,"loss":2.5,"learning_rate":1e-4,"elapsed_s":3.5}"#,
            r#"{"kind":"train","step":10,"loss":3.25,"note":"text is not a value"}"#,
            "",
            "{\"kind\":\"train\",\"step\":30,\"lo", // cut short by a crash
            r#"{"kind":"eval","step":20,"mlm_accuracy":0.375}"#,
            r#"{"kind":"train","loss":1.0}"#,         // no step
            r#"{"kind":"train","step":-1,"loss":1}"#, // not a step
            r#"[1, 2]"#,
            r#"{"kind":"summary","step":20,"loss":2.5}"#,
            r#"{"kind":"stopped","step":20,"signal":"SIGTERM"}"#,
        ]
        .join("\n");
        let log = parse(&text);
        assert_eq!(log.skipped, 4);
        assert_eq!(
            log.train.iter().map(|r| r.step).collect::<Vec<_>>(),
            [10, 20]
        );
        assert_eq!(log.train[0].values.get("loss"), Some(&3.25));
        assert!(!log.train[0].values.contains_key("note"));
        assert_eq!(log.train[0].elapsed_s, None);
        assert_eq!(log.train[1].elapsed_s, Some(3.5));
        assert!(!log.train[1].values.contains_key("elapsed_s"));
        assert_eq!(log.eval.len(), 1);
        assert_eq!(log.eval[0].values.get("mlm_accuracy"), Some(&0.375));
        let mut names: Vec<&str> = log.value_names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names, ["learning_rate", "loss", "mlm_accuracy"]);
    }

    #[test]
    fn a_file_without_records_or_a_missing_one_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.jsonl");
        std::fs::write(&junk, "hello\n{\"kind\":\"summary\",\"step\":3}\n").unwrap();
        let e = read_run(&junk).unwrap_err().to_string();
        assert!(
            e.contains("junk.jsonl") && e.contains("no usable records"),
            "{e}"
        );
        assert!(e.contains("1 line(s) skipped"), "{e}");

        let e = read_run(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent: no such file"), "{e}");
        let e = read_run(dir.path()).unwrap_err().to_string();
        assert!(e.contains("without a metrics.jsonl"), "{e}");

        std::fs::write(
            dir.path().join(METRICS_FILE),
            "{\"kind\":\"train\",\"step\":1,\"loss\":2}\n",
        )
        .unwrap();
        let log = read_run(dir.path()).unwrap();
        assert_eq!(log.path, dir.path().join(METRICS_FILE));
        assert_eq!(log.train.len(), 1);
    }
}

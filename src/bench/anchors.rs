//! `--anchors`: the same shapes through the frameworks people compare with, run in the same
//! invocation: ../shared/bench/jax_bert.py (XLA's attention and cuDNN's, pretraining only) and
//! torch_bert.py (eager and torch.compile, pretraining and SQuAD). Each anchor runs in its own
//! Python process, after tpu-run's client for the configuration is gone, so the two never share
//! the device. A missing Python, script or package is reported in the record, never fatal.
use super::matrix::{BenchConfig, Task};
use super::record::AnchorResult;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Python with PyTorch and JAX on the GPU machines.
pub const DEFAULT_PYTHON: &str = "/opt/torch/.venv/bin/python";

/// The model sizes the anchor scripts define.
const ANCHOR_MODELS: [&str; 2] = ["base", "large"];

/// Where the anchors are and how long one may take.
#[derive(Clone, Debug)]
pub struct Anchors {
    pub python: PathBuf,
    pub dir: PathBuf,
    pub timeout: Duration,
}

impl Anchors {
    /// The Python (`python`, else [`DEFAULT_PYTHON`], else `python3` on PATH) and the scripts'
    /// directory (`dir`, else `shared/bench` in the working directory or one of its parents);
    /// Err says what is missing.
    pub fn find(
        python: Option<&Path>,
        dir: Option<&Path>,
        timeout: Duration,
    ) -> Result<Anchors, String> {
        let python = match python {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_PYTHON).exists() => PathBuf::from(DEFAULT_PYTHON),
            None => on_path("python3").ok_or_else(|| {
                format!(
                    "no Python found ({DEFAULT_PYTHON} or python3 on PATH; give --anchors-python)"
                )
            })?,
        };
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => find_scripts_dir().ok_or_else(|| {
                "the anchor scripts (shared/bench/jax_bert.py) were not found in this directory \
                 or a parent; give --anchors-dir"
                    .to_string()
            })?,
        };
        for script in ["jax_bert.py", "torch_bert.py"] {
            if !dir.join(script).is_file() {
                return Err(format!("{} is missing", dir.join(script).display()));
            }
        }
        Ok(Anchors {
            python,
            dir,
            timeout,
        })
    }

    /// Every anchor of `c`'s task and shapes (precision and attention are the anchors' own:
    /// bf16 autocast, their attention variants).
    pub fn run(&self, c: &BenchConfig) -> Vec<AnchorResult> {
        if !ANCHOR_MODELS.contains(&c.model.as_str()) {
            return vec![AnchorResult::unavailable(
                "anchors",
                format!(
                    "the anchor scripts define BERT {ANCHOR_MODELS:?} only, not {:?}",
                    c.model
                ),
            )];
        }
        let (size, b, s) = (c.model.as_str(), c.batch, c.seq);
        let mut runs: Vec<(&str, Vec<String>)> = vec![];
        if c.task == Task::Pretrain {
            for attn in ["xla", "cudnn"] {
                let args = [attn, size, &b.to_string(), &s.to_string()].map(String::from);
                let mut a = vec![self.dir.join("jax_bert.py").display().to_string()];
                a.extend(args);
                runs.push((
                    if attn == "xla" {
                        "jax xla"
                    } else {
                        "jax cudnn"
                    },
                    a,
                ));
            }
        }
        for (name, compiled) in [("torch eager", "False"), ("torch.compile", "True")] {
            let code = format!(
                "import sys; sys.path.insert(0, {dir:?}); import torch_bert; \
                 torch_bert.bench({task:?}, {size:?}, {b}, {s}, {compiled})",
                dir = self.dir.display().to_string(),
                task = c.task.name(),
            );
            runs.push((name, vec!["-c".into(), code]));
        }
        runs.into_iter()
            .map(|(name, args)| match self.run_one(&args) {
                Ok(figures) => AnchorResult {
                    name: name.into(),
                    seq_per_s: Some(figures.seq_per_s),
                    ratio: None,
                    first_step_incl_compile_s: figures.first_step_incl_compile_s,
                    error: None,
                },
                Err(e) => AnchorResult::unavailable(name, e),
            })
            .collect()
    }

    /// Runs one anchor and reads its figures from its JSON line.
    fn run_one(&self, args: &[String]) -> Result<AnchorFigures, String> {
        let mut child = Command::new(&self.python)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.python.display()))?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("timed out after {:?}", self.timeout));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => return Err(format!("waiting for the anchor: {e}")),
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        parse_output(&stdout).map_err(|why| {
            let tail: String = stderr
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("{why} (exit {status}); stderr ends: {}", tail.trim())
        })
    }
}

/// Reads a pipe to its end on a thread (so neither pipe can fill up and stall the child).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let mut bytes = vec![];
            let _ = p.read_to_end(&mut bytes);
            s = String::from_utf8_lossy(&bytes).into_owned();
        }
        s
    })
}

/// What an anchor's result line reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnchorFigures {
    pub seq_per_s: f64,
    pub first_step_incl_compile_s: Option<f64>,
}

/// The figures of the anchor's result line, or its error line.
pub fn parse_output(stdout: &str) -> Result<AnchorFigures, String> {
    for line in stdout.lines().rev() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("anchor").is_none() {
            continue;
        }
        if let Some(x) = v.get("seq_per_s").and_then(|x| x.as_f64()) {
            return Ok(AnchorFigures {
                seq_per_s: x,
                first_step_incl_compile_s: v
                    .get("first_step_incl_compile_s")
                    .and_then(|x| x.as_f64()),
            });
        }
        if let Some(e) = v.get("error") {
            return Err(format!("the anchor failed: {e}"));
        }
    }
    Err("the anchor printed no result line".into())
}

/// Sets each anchor's ratio: `ours` seq/s over the anchor's.
pub fn set_ratios(anchors: &mut [AnchorResult], ours: f64) {
    for a in anchors {
        a.ratio = a.seq_per_s.filter(|&x| x > 0.0).map(|x| ours / x);
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn find_scripts_dir() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join("shared").join("bench"))
        .find(|d| d.join("jax_bert.py").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_result_line_or_the_error() {
        let ok = "{\"jax\": \"0.11\"}\nnoise\n{\"anchor\": \"jax\", \"seq_per_s\": 4428.5, \
                  \"first_step_incl_compile_s\": 16.2}\n";
        let want = AnchorFigures {
            seq_per_s: 4428.5,
            first_step_incl_compile_s: Some(16.2),
        };
        assert_eq!(parse_output(ok), Ok(want));
        let torch = "{\"anchor\": \"torch\", \"seq_per_s\": 3973.3}";
        assert_eq!(parse_output(torch).unwrap().first_step_incl_compile_s, None);
        let err = "{\"anchor\": \"torch\", \"cfg\": [1], \"error\": \"CUDA out of memory\"}";
        assert!(parse_output(err).unwrap_err().contains("out of memory"));
        assert!(parse_output("Traceback ...").is_err());
    }

    #[test]
    fn ratios_are_ours_over_theirs() {
        let mut a = vec![
            AnchorResult {
                name: "jax".into(),
                seq_per_s: Some(200.0),
                ratio: None,
                first_step_incl_compile_s: None,
                error: None,
            },
            AnchorResult {
                name: "torch".into(),
                seq_per_s: None,
                ratio: None,
                first_step_incl_compile_s: None,
                error: Some("absent".into()),
            },
        ];
        set_ratios(&mut a, 300.0);
        assert_eq!(a[0].ratio, Some(1.5));
        assert_eq!(a[1].ratio, None);
    }
}

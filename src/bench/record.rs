//! One JSON line per configuration of `tpu-run bench`: what ran (configuration and
//! environment), what it cost, what XLA made of it and how it compares with the anchors and a
//! baseline. `--baseline` reads these lines back, so the format is versioned by `schema`.
use super::flops::{peak_flops, train_step_flops};
use super::matrix::{BenchConfig, Task};
use super::measure::{Measurement, ProfileOutcome};
use super::optimized::OptimizedStats;
use super::stats::{quantile, Verdict};
use crate::model::BertConfig;
use serde::{Deserialize, Serialize};

/// The `schema` of every line; a reader refuses other values.
pub const SCHEMA: &str = "tpu-run-bench/1";

/// Where a benchmark ran: enough to tell two result files apart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub backend: String,
    /// The plugin's platform name and version ("cuda", "12.8" ...), from the first measured run.
    pub platform: Option<String>,
    pub platform_version: Option<String>,
    /// The first device's kind, e.g. "NVIDIA H100 80GB HBM3".
    pub device_kind: Option<String>,
    /// The first line of /proc/driver/nvidia/version, where present.
    pub driver: Option<String>,
    pub plugin_path: Option<String>,
    /// The plugin package's version (e.g. "jax-cuda13-pjrt 0.11.2"), where it can be told.
    pub plugin_version: Option<String>,
    /// The PJRT C API version the plugin implements, "major.minor".
    pub c_api: Option<String>,
    pub tpu_run_version: String,
    /// The commit tpu-run was built from ("unknown" outside a git checkout).
    pub git_commit: String,
    /// `--xla-flag` overrides, NAME=VALUE.
    pub xla_flags: Vec<String>,
    /// Seconds since the Unix epoch when the invocation started.
    pub unix_time: u64,
}

/// One run of a configuration (each `--repeat` builds and compiles afresh).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepeatResult {
    pub build_s: f64,
    pub compile_s: f64,
    pub time_to_first_step_s: f64,
    pub median_step_s: f64,
    pub last_loss: f32,
}

/// Our side of the program: the IR we built and what lowering it cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RustSide {
    /// Build + autodiff + lowering to proto bytes, seconds.
    pub build_s: f64,
    pub ir_instructions: usize,
    pub proto_bytes: usize,
}

/// XLA's side: compile time, the optimized module, cost analysis and memory sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct XlaSide {
    pub compile_s: f64,
    pub optimized: Option<OptimizedStats>,
    /// XLA's cost analysis of one execution (every op counted).
    pub cost_flops: Option<f64>,
    pub cost_bytes_accessed: Option<f64>,
    pub argument_bytes: Option<i64>,
    pub output_bytes: Option<i64>,
    pub alias_bytes: Option<i64>,
    pub temp_bytes: Option<i64>,
    pub generated_code_bytes: Option<i64>,
    /// What the plugin did not offer, and why.
    pub notes: Vec<String>,
}

/// The timed steps, over every repeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Runtime {
    /// Of the first repeat (later ones may profit from warm caches of the driver).
    pub time_to_first_step_s: f64,
    pub median_step_s: f64,
    pub p10_step_s: f64,
    pub p90_step_s: f64,
    pub steps_timed: usize,
    pub seq_per_s: f64,
    pub tokens_per_s: f64,
    /// Model FLOPs per step by the anchors' formula ([`train_step_flops`]).
    pub model_flops: f64,
    pub model_tflops_per_s: f64,
    /// The device's dense peak at this precision, where known.
    pub peak_tflops_per_s: Option<f64>,
    /// Model FLOP utilization in [0, 1], against the peak of every device used.
    pub mfu: Option<f64>,
    /// The devices' peak memory in use (largest over devices), where reported.
    pub device_peak_bytes: Option<i64>,
    pub last_loss: f32,
}

/// An anchor's figure for the same shapes, measured in the same invocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnchorResult {
    /// "jax xla", "jax cudnn", "torch eager", "torch.compile".
    pub name: String,
    pub seq_per_s: Option<f64>,
    /// tpu-run seq/s over the anchor's.
    pub ratio: Option<f64>,
    /// The anchor's first step including its compile, as it reports it (jax_bert.py's
    /// `first_step_incl_compile_s`: from the first call of the jitted step, after the
    /// framework's start, the initialization and the batch; no persistent cache). `None` when
    /// the anchor does not report one (torch_bert.py).
    #[serde(default)]
    pub first_step_incl_compile_s: Option<f64>,
    /// Why there is no figure (missing Python or package, a failed or timed-out run).
    pub error: Option<String>,
}

impl AnchorResult {
    /// An anchor that gave no figure, and why.
    pub fn unavailable(name: &str, why: String) -> Self {
        AnchorResult {
            name: name.into(),
            seq_per_s: None,
            ratio: None,
            first_step_incl_compile_s: None,
            error: Some(why),
        }
    }
}

/// The comparison with the same configuration in a `--baseline` file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    /// "regression", "improvement", "unchanged", "not judged" or "absent".
    pub verdict: String,
    pub reason: Option<String>,
    pub baseline_median_step_s: Option<f64>,
    /// New median over the baseline's, minus one, in percent.
    pub change_percent: Option<f64>,
    /// Set when the baseline ran on another device kind.
    pub device_kind_differs: Option<String>,
}

/// The profile `--profile` took of this configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileSummary {
    pub trace_json: Option<String>,
    pub xplane: Option<String>,
    pub layers_tsv: Option<String>,
    /// The scopes with the most device time: (scope, milliseconds).
    pub top_scopes_ms: Vec<(String, f64)>,
    pub unmapped_events: usize,
    /// Set when no trace was taken (the plugin offers no profiler).
    pub not_offered: Option<String>,
}

/// One line of the JSONL output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRecord {
    pub schema: String,
    /// `config.key()`: the name in the table and what a baseline is matched by.
    pub key: String,
    pub config: BenchConfig,
    pub env: Environment,
    /// Why the configuration was not run; every other result is then absent.
    pub skipped: Option<String>,
    /// Why the configuration failed, when it did.
    pub error: Option<String>,
    pub rust: Option<RustSide>,
    pub xla: Option<XlaSide>,
    pub runtime: Option<Runtime>,
    pub repeats: Vec<RepeatResult>,
    /// Every timed step of every repeat, seconds.
    pub step_times_s: Vec<f64>,
    pub anchors: Vec<AnchorResult>,
    pub baseline: Option<BaselineComparison>,
    pub profile: Option<ProfileSummary>,
}

impl BenchRecord {
    /// A record with only the configuration: skipped, failed or about to be filled in.
    pub fn new(config: BenchConfig, env: Environment) -> Self {
        BenchRecord {
            schema: SCHEMA.into(),
            key: config.key(),
            config,
            env,
            skipped: None,
            error: None,
            rust: None,
            xla: None,
            runtime: None,
            repeats: vec![],
            step_times_s: vec![],
            anchors: vec![],
            baseline: None,
            profile: None,
        }
    }

    /// Fills in the results of `runs` (one per repeat, at least one) of `model`.
    pub fn fill(&mut self, model: &BertConfig, runs: &[Measurement]) {
        let Some(first) = runs.first() else { return };
        self.env.platform = Some(first.platform.clone());
        self.env.platform_version = Some(first.platform_version.clone());
        self.env.device_kind = Some(first.device_kind.clone());
        self.repeats = runs
            .iter()
            .map(|m| RepeatResult {
                build_s: m.build.build_s,
                compile_s: m.compile_s,
                time_to_first_step_s: m.time_to_first_step_s,
                median_step_s: quantile(&m.step_times_s, 0.5).unwrap_or(0.0),
                last_loss: m.last_loss,
            })
            .collect();
        self.step_times_s = runs.iter().flat_map(|m| m.step_times_s.clone()).collect();
        self.rust = Some(RustSide {
            build_s: first.build.build_s,
            ir_instructions: first.build.ir_instructions,
            proto_bytes: first.build.proto_bytes,
        });
        let memory = first.xla.memory.as_ref();
        self.xla = Some(XlaSide {
            compile_s: first.compile_s,
            optimized: first.xla.optimized.clone(),
            cost_flops: first.xla.flops,
            cost_bytes_accessed: first.xla.bytes_accessed,
            argument_bytes: memory.map(|m| m.argument_size_in_bytes),
            output_bytes: memory.map(|m| m.output_size_in_bytes),
            alias_bytes: memory.map(|m| m.alias_size_in_bytes),
            temp_bytes: memory.map(|m| m.temp_size_in_bytes),
            generated_code_bytes: memory.map(|m| m.generated_code_size_in_bytes),
            notes: first.xla.notes.clone(),
        });
        self.runtime = Some(self.runtime_of(model, first, runs));
        self.profile = runs.iter().find_map(|m| m.profile.as_ref()).map(summary);
    }

    fn runtime_of(&self, model: &BertConfig, first: &Measurement, runs: &[Measurement]) -> Runtime {
        let c = &self.config;
        let times = &self.step_times_s;
        let median = quantile(times, 0.5).unwrap_or(0.0);
        let per_s = |x: f64| if median > 0.0 { x / median } else { 0.0 };
        let predictions = match c.task {
            Task::Pretrain => c.max_predictions,
            Task::Squad => 0,
        };
        let model_flops = train_step_flops(model, c.batch, c.seq, predictions);
        let tflops = per_s(model_flops) / 1e12;
        let peak = peak_flops(&first.device_kind, c.precision).map(|p| p / 1e12);
        Runtime {
            time_to_first_step_s: first.time_to_first_step_s,
            median_step_s: median,
            p10_step_s: quantile(times, 0.1).unwrap_or(0.0),
            p90_step_s: quantile(times, 0.9).unwrap_or(0.0),
            steps_timed: times.len(),
            seq_per_s: per_s(c.batch as f64),
            tokens_per_s: per_s((c.batch * c.seq) as f64),
            model_flops,
            model_tflops_per_s: tflops,
            peak_tflops_per_s: peak,
            mfu: peak.map(|p| tflops / (p * first.devices as f64)),
            device_peak_bytes: runs.iter().filter_map(|m| m.device_peak_bytes).max(),
            last_loss: runs.last().map_or(f32::NAN, |m| m.last_loss),
        }
    }

    /// The per-repeat median step times (what a baseline comparison judges).
    pub fn repeat_medians(&self) -> Vec<f64> {
        self.repeats.iter().map(|r| r.median_step_s).collect()
    }

    /// Sets the comparison with `old` (the same key in the baseline file), or marks it absent.
    pub fn compare_with(&mut self, old: Option<&BenchRecord>) {
        let Some(old) = old.filter(|o| !o.repeats.is_empty()) else {
            self.baseline = Some(BaselineComparison {
                verdict: "absent".into(),
                reason: Some("the baseline has no measured run of this configuration".into()),
                baseline_median_step_s: None,
                change_percent: None,
                device_kind_differs: None,
            });
            return;
        };
        let (new, before) = (self.repeat_medians(), old.repeat_medians());
        let verdict = super::stats::compare(&new, &before);
        let mean = |xs: &[f64]| super::stats::mean_sd(xs).map_or(0.0, |(m, _)| m);
        let old_mean = mean(&before);
        self.baseline = Some(BaselineComparison {
            verdict: verdict.name().into(),
            reason: match verdict {
                Verdict::NotJudged(why) => Some(why),
                _ => None,
            },
            baseline_median_step_s: Some(old_mean),
            change_percent: (old_mean > 0.0).then(|| (mean(&new) / old_mean - 1.0) * 100.0),
            device_kind_differs: (old.env.device_kind != self.env.device_kind).then(|| {
                format!(
                    "baseline ran on {:?}, this run on {:?}",
                    old.env.device_kind, self.env.device_kind
                )
            }),
        });
    }
}

/// The profile of one run, for the record: files and the ten scopes with the most device time.
fn summary(p: &ProfileOutcome) -> ProfileSummary {
    match p {
        ProfileOutcome::Captured(r) => ProfileSummary {
            trace_json: Some(r.trace_json.display().to_string()),
            xplane: Some(r.xplane.display().to_string()),
            layers_tsv: Some(r.layers_tsv.display().to_string()),
            top_scopes_ms: r.per_scope_ms.iter().take(10).cloned().collect(),
            unmapped_events: r.unmapped_events,
            not_offered: None,
        },
        ProfileOutcome::NotOffered(why) => ProfileSummary {
            trace_json: None,
            xplane: None,
            layers_tsv: None,
            top_scopes_ms: vec![],
            unmapped_events: 0,
            not_offered: Some(why.clone()),
        },
    }
}

/// Reads a JSONL file of records, keyed by `key`; lines of another schema are refused with
/// the line number.
pub fn read_jsonl(
    path: &std::path::Path,
) -> anyhow::Result<std::collections::BTreeMap<String, BenchRecord>> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: BenchRecord = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a tpu-run bench record ({SCHEMA})",
                path.display(),
                i + 1
            )
        })?;
        if r.schema != SCHEMA {
            anyhow::bail!(
                "{} line {}: schema {:?}, this tpu-run reads {SCHEMA:?}",
                path.display(),
                i + 1,
                r.schema
            );
        }
        out.insert(r.key.clone(), r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::AttentionChoice;
    use crate::bench::matrix::{max_predictions, BenchConfig, Task};
    use crate::model::ComputeDtype;

    fn record(medians: &[f64], kind: &str) -> BenchRecord {
        let config = BenchConfig {
            model: "base".into(),
            task: Task::Pretrain,
            seq: 128,
            batch: 256,
            precision: ComputeDtype::Bf16,
            attention: AttentionChoice::Cudnn,
            devices: 1,
            max_predictions: max_predictions(128),
            dropout: None,
        };
        let env = Environment {
            device_kind: Some(kind.into()),
            ..Default::default()
        };
        let mut r = BenchRecord::new(config, env);
        r.repeats = medians
            .iter()
            .map(|&m| RepeatResult {
                build_s: 1.0,
                compile_s: 20.0,
                time_to_first_step_s: 25.0,
                median_step_s: m,
                last_loss: 7.0,
            })
            .collect();
        r
    }

    #[test]
    fn a_baseline_is_judged_by_the_repeats_noise() {
        let old = record(&[0.0650, 0.0652, 0.0648], "H100");
        let mut slower = record(&[0.0700, 0.0702, 0.0698], "H100");
        slower.compare_with(Some(&old));
        let b = slower.baseline.as_ref().unwrap();
        assert_eq!(b.verdict, "regression");
        assert!((b.change_percent.unwrap() - (0.07 / 0.065 - 1.0) * 100.0).abs() < 1e-9);
        assert_eq!(b.device_kind_differs, None);

        let mut same = record(&[0.0651, 0.0649, 0.0650], "H200");
        same.compare_with(Some(&old));
        let b = same.baseline.as_ref().unwrap();
        assert_eq!(b.verdict, "unchanged");
        assert!(b.device_kind_differs.as_ref().unwrap().contains("H200"));

        let mut once = record(&[0.0600], "H100");
        once.compare_with(Some(&old));
        let b = once.baseline.as_ref().unwrap();
        assert_eq!(b.verdict, "not judged");
        assert!(b.reason.as_ref().unwrap().contains("--repeat"));

        let mut new = record(&[0.06, 0.061], "H100");
        new.compare_with(None);
        assert_eq!(new.baseline.as_ref().unwrap().verdict, "absent");
    }

    #[test]
    fn records_round_trip_through_json() {
        let r = record(&[0.1, 0.2], "cpu");
        let line = serde_json::to_string(&r).unwrap();
        let back: BenchRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
        assert!(line.starts_with(&format!("{{\"schema\":\"{SCHEMA}\"")));
    }
}

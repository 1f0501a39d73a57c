//! The configurations of a `tpu-run bench` invocation: the cross product of its axes, each
//! either run or skipped with the reason a user would want to read.
use crate::backend::{AttentionChoice, Backend};
use crate::model::{BertConfig, ComputeDtype};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// What a configuration trains.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Task {
    /// MLM + NSP pretraining on synthetic batches.
    Pretrain,
    /// SQuAD v1.1 fine-tuning (start/end logits) on synthetic features.
    Squad,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Pretrain => "pretrain",
            Task::Squad => "squad",
        }
    }
}

/// The shortest SQuAD sequence worth running: [CLS], a question, [SEP], some context, [SEP].
pub const SQUAD_MIN_SEQ: usize = 20;

/// The axes a user gave; every combination is one configuration.
#[derive(Clone, Debug)]
pub struct Axes {
    pub models: Vec<String>,
    pub tasks: Vec<Task>,
    pub seqs: Vec<usize>,
    pub batches: Vec<usize>,
    pub precisions: Vec<ComputeDtype>,
    pub attentions: Vec<AttentionChoice>,
}

/// One point of the cross product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    pub model: String,
    pub task: Task,
    pub seq: usize,
    /// The global batch (split over `devices` for pretraining).
    pub batch: usize,
    pub precision: ComputeDtype,
    pub attention: AttentionChoice,
    pub devices: usize,
    /// Masked positions per sequence (pretraining): 15% of the sequence rounded up to a
    /// multiple of 10, as the anchors use (20 at seq 128, 80 at seq 512).
    pub max_predictions: usize,
    /// Hidden and attention dropout; `None` keeps the model's own (0.1 for the BERT presets).
    pub dropout: Option<f64>,
}

impl BenchConfig {
    /// The label that identifies the configuration in the table, the plot and a baseline.
    pub fn key(&self) -> String {
        let mut k = format!(
            "{} {} s{} b{} {} {}",
            self.model,
            self.task.name(),
            self.seq,
            self.batch,
            self.precision.name(),
            self.attention.name()
        );
        if self.devices != 1 {
            k.push_str(&format!(" x{}", self.devices));
        }
        if let Some(p) = self.dropout {
            k.push_str(&format!(" dropout{p}"));
        }
        k
    }
}

/// A configuration to run, or one skipped and why.
#[derive(Clone, Debug, PartialEq)]
pub enum Planned {
    Run(BenchConfig),
    Skip(BenchConfig, String),
}

/// 15% of `seq` rounded up to a multiple of 10.
pub fn max_predictions(seq: usize) -> usize {
    (seq * 15).div_ceil(1000) * 10
}

/// Every combination of `axes` in the order given (model, task, seq, batch, precision,
/// attention), each checked against what `backend` with `devices` devices can run.
pub fn plan(
    axes: &Axes,
    backend: Backend,
    devices: usize,
    dropout: Option<f64>,
) -> Result<Vec<Planned>> {
    let mut out = vec![];
    for model in &axes.models {
        let base = BertConfig::preset(model)?;
        for &task in &axes.tasks {
            for &seq in &axes.seqs {
                for &batch in &axes.batches {
                    for &precision in &axes.precisions {
                        for &attention in &axes.attentions {
                            let c = BenchConfig {
                                model: model.clone(),
                                task,
                                seq,
                                batch,
                                precision,
                                attention,
                                devices,
                                max_predictions: max_predictions(seq),
                                dropout,
                            };
                            out.push(
                                match skip_reason(&c, &base, backend, precision, attention) {
                                    Some(why) => Planned::Skip(c, why),
                                    None => Planned::Run(c),
                                },
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Why `c` cannot run, if it cannot.
fn skip_reason(
    c: &BenchConfig,
    model: &BertConfig,
    backend: Backend,
    precision: ComputeDtype,
    attention: AttentionChoice,
) -> Option<String> {
    if c.seq > model.max_position_embeddings {
        return Some(format!(
            "seq {} exceeds the model's {} position embeddings",
            c.seq, model.max_position_embeddings
        ));
    }
    if c.seq == 0 || c.batch == 0 {
        return Some("seq and batch must be at least 1".into());
    }
    if c.task == Task::Squad && c.seq < SQUAD_MIN_SEQ {
        return Some(format!(
            "SQuAD needs seq >= {SQUAD_MIN_SEQ} (question and context)"
        ));
    }
    if c.task == Task::Squad && c.devices != 1 {
        return Some("the SQuAD bench runs on one device".into());
    }
    if !c.batch.is_multiple_of(c.devices) {
        return Some(format!(
            "batch {} does not split over {} devices",
            c.batch, c.devices
        ));
    }
    if attention == AttentionChoice::Cudnn {
        if backend != Backend::Cuda {
            return Some("cudnn attention needs --backend cuda".into());
        }
        if precision == ComputeDtype::F32 {
            return Some("cudnn attention needs bf16 (or fp8, bf16 outside the matmuls)".into());
        }
        let fused = crate::model::Execution::new(precision)
            .with_attention(crate::model::AttentionKernel::CudnnFused { seed: 0 });
        if let Err(e) = fused.check(model) {
            return Some(format!("cudnn attention: {e:#}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axes() -> Axes {
        Axes {
            models: vec!["tiny".into(), "base".into()],
            tasks: vec![Task::Pretrain, Task::Squad],
            seqs: vec![16, 128, 1024],
            batches: vec![4, 6],
            precisions: vec![ComputeDtype::F32, ComputeDtype::Bf16],
            attentions: vec![AttentionChoice::Graph, AttentionChoice::Cudnn],
        }
    }

    #[test]
    fn predictions_follow_the_anchors() {
        assert_eq!(max_predictions(128), 20);
        assert_eq!(max_predictions(512), 80);
        assert_eq!(max_predictions(384), 60);
        assert_eq!(max_predictions(8), 10);
    }

    #[test]
    fn every_combination_is_planned_and_impossible_ones_say_why() {
        let planned = plan(&axes(), Backend::Cpu, 4, None).unwrap();
        assert_eq!(planned.len(), 2 * 2 * 3 * 2 * 2 * 2);
        let reason = |model: &str, task, seq, batch, prec: &str, attn: &str| {
            let (prec, attn) = (ComputeDtype::parse(prec), Some(attn));
            planned
                .iter()
                .find_map(|p| {
                    let (c, why) = match p {
                        Planned::Run(c) => (c, None),
                        Planned::Skip(c, w) => (c, Some(w.clone())),
                    };
                    (c.model == model
                        && c.task == task
                        && c.seq == seq
                        && c.batch == batch
                        && Some(c.precision) == prec
                        && Some(c.attention.name()) == attn)
                        .then_some(why)
                })
                .expect("planned")
        };
        assert_eq!(reason("tiny", Task::Pretrain, 128, 4, "f32", "graph"), None);
        assert!(reason("tiny", Task::Pretrain, 1024, 4, "f32", "graph")
            .unwrap()
            .contains("position embeddings"));
        assert!(reason("tiny", Task::Pretrain, 128, 6, "f32", "graph")
            .unwrap()
            .contains("does not split over 4 devices"));
        assert!(reason("tiny", Task::Squad, 16, 4, "f32", "graph")
            .unwrap()
            .contains("SQuAD needs seq"));
        assert!(reason("base", Task::Squad, 128, 4, "f32", "graph")
            .unwrap()
            .contains("one device"));
        assert!(reason("base", Task::Pretrain, 128, 4, "bf16", "cudnn")
            .unwrap()
            .contains("--backend cuda"));
        let cuda = plan(&axes(), Backend::Cuda, 1, Some(0.0)).unwrap();
        let runs: Vec<_> = cuda
            .iter()
            .filter_map(|p| match p {
                Planned::Run(c) => Some(c),
                _ => None,
            })
            .collect();
        assert!(runs
            .iter()
            .any(|c| c.attention == AttentionChoice::Cudnn && c.precision == ComputeDtype::Bf16));
        assert!(runs
            .iter()
            .all(|c| c.attention != AttentionChoice::Cudnn || c.precision == ComputeDtype::Bf16));
        assert!(cuda.iter().any(|p| matches!(p,
            Planned::Skip(c, w) if c.attention == AttentionChoice::Cudnn && c.precision == ComputeDtype::F32 && w.contains("bf16"))));
        assert!(runs[0].key().ends_with("dropout0"));
    }
}

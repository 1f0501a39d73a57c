//! `tpu-run finetune glue`: run_classifier.py's fine-tuning, evaluation and prediction for the
//! GLUE tasks.
use crate::backend::{AttentionChoice, Backend};
use crate::finetune::default_precision;
use crate::finetune::glue_run::{run_glue, GlueSettings};
use crate::finetune::progress::{Console, Output};
use crate::glue::Task;
use crate::model::ComputeDtype;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
pub struct GlueArgs {
    /// The GLUE task.
    #[arg(long, value_enum)]
    pub task: Task,
    /// The task's folder in GLUE's layout: train.tsv, dev.tsv (MNLI: dev_matched.tsv and
    /// dev_mismatched.tsv), test.tsv (MNLI: test_matched.tsv and test_mismatched.tsv).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Initial weights: a Hugging Face BERT directory, a TF checkpoint (directory or prefix)
    /// or a tpu-run checkpoint directory (local, or a gs:// / s3:// prefix).
    #[arg(long)]
    pub init: PathBuf,
    /// Where eval_results.json, summary.json, submission files and checkpoints/ go.
    #[arg(long, default_value = "glue_output")]
    pub output_dir: PathBuf,
    /// WordPiece vocabulary (default: the init's vocab.txt).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Lowercase and strip accents (uncased models); `false` for cased ones.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub do_lower_case: bool,
    /// Fine-tune on train.tsv (`false`: evaluate or predict with --init as it is).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub do_train: bool,
    /// Score the dev file(s).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub do_eval: bool,
    /// Predict the test file(s) into GLUE submission files (`MRPC.tsv`, `MNLI-m.tsv`, ...).
    #[arg(long)]
    pub do_predict: bool,
    /// Tokens per example, [CLS] and [SEP]s included (longer pairs are truncated longest-first).
    #[arg(long, default_value_t = 128)]
    pub max_seq_length: usize,
    /// Passes over train.tsv (the steps are int(examples / batch x epochs)).
    #[arg(long, default_value_t = 3.0)]
    pub epochs: f64,
    /// Training sequences per step, over all devices.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Batch of the evaluation and prediction program.
    #[arg(long, default_value_t = 32)]
    pub eval_batch_size: usize,
    /// Peak learning rate of AdamWeightDecay, reached after the warmup.
    #[arg(long, default_value_t = 2e-5)]
    pub learning_rate: f64,
    /// Fraction of the steps with linear warmup; the rest decays linearly to 0.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_proportion: f64,
    /// AdamWeightDecay's decoupled weight decay (not applied to LayerNorm and biases).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Compute precision (default: bf16 on cuda/tpu, f32 on cpu); fp8 is bf16 with the
    /// encoder's dense layers as FP8 matmuls under delayed scaling.
    #[arg(long, value_enum)]
    pub precision: Option<ComputeDtype>,
    /// Device backend (its PJRT plugin is found or, for cpu, installed on first use).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
    /// Self-attention kernel: auto (cuDNN fused attention on cuda with bf16, else graph),
    /// graph (plain HLO ops) or cudnn.
    #[arg(long, value_enum, default_value = "auto")]
    pub attention: AttentionChoice,
    /// PJRT plugin file (overrides discovery).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Train data parallel on this many devices (default: all of a TPU host's chips, 1 GPU,
    /// 1 CPU device; on cpu, virtual devices). The batch must split evenly over them.
    #[arg(long)]
    pub num_devices: Option<u32>,
    /// Seeds classifier initialization, data order and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop after N steps (the schedule spans the shortened run).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Write no checkpoints.
    #[arg(long)]
    pub no_checkpoint: bool,
    /// A checkpoint every N steps besides the last (0: the last only).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    /// A log line every N steps when no progress bar is drawn (0: none).
    #[arg(long, default_value_t = 50)]
    pub log_every: u64,
    /// Draw no progress bar (log lines every --log-every steps instead).
    #[arg(long)]
    pub no_progress: bool,
    /// Print the summary as one JSON line on stdout (messages then go to stderr).
    #[arg(long)]
    pub json: bool,
}

pub fn run_glue_command(a: &GlueArgs) -> Result<()> {
    let mut s = GlueSettings::new(a.task, a.data_dir.clone(), a.init.clone());
    s.output_dir = crate::storage::local_only(&a.output_dir, "--output-dir")?;
    s.vocab = a.vocab.clone();
    s.do_lower_case = a.do_lower_case;
    s.do_train = a.do_train;
    s.do_eval = a.do_eval;
    s.do_predict = a.do_predict;
    s.max_seq_length = a.max_seq_length;
    s.epochs = a.epochs;
    s.batch_size = a.batch_size;
    s.eval_batch_size = a.eval_batch_size;
    s.learning_rate = a.learning_rate;
    s.warmup_proportion = a.warmup_proportion;
    s.weight_decay = a.weight_decay;
    s.precision = Some(a.precision.unwrap_or_else(|| default_precision(a.backend)));
    s.backend = a.backend;
    s.attention = a.attention;
    s.plugin = a.plugin.clone();
    s.num_devices = a.num_devices;
    s.seed = a.seed;
    s.max_steps = a.max_steps;
    s.checkpoint = !a.no_checkpoint;
    s.checkpoint_every = a.checkpoint_every;
    s.log_every = a.log_every;
    s.progress = !a.no_progress;
    let mut console = Console::new(if a.json {
        Output::Stderr
    } else {
        Output::Stdout
    });
    let r = run_glue(&s, &mut console)?;
    let mut lines = vec![format!("done: {}", r.task)];
    for e in &r.eval {
        lines.push(format!("  {}: {}", e.name, e.scores.line()));
    }
    if r.steps > 0 {
        lines.push(format!(
            "  train {:.1}s ({} steps, {:.1} seq/s; compile {:.1}s), total {:.1}s",
            r.train_s, r.steps, r.train_seq_per_s, r.compile_train_s, r.total_s
        ));
    }
    for p in &r.submissions {
        lines.push(format!("  submission: {}", p.display()));
    }
    if let Some(c) = &r.checkpoint {
        lines.push(format!("  checkpoint: {}", c.display()));
    }
    console.say(&lines.join("\n"));
    if a.json {
        println!("{}", r.to_json());
    }
    Ok(())
}

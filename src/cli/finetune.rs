//! `tpu-run finetune squad` (fine-tune, predict, score; or `--synthetic-bench`) and
//! `tpu-run squad-split` (an article-level validation split).
pub use super::finetune_glue::{run_glue_command, GlueArgs};
use crate::backend::{open_client, resolve_execution, AttentionChoice, Backend};
use crate::finetune::bench::bench;
use crate::finetune::init::load_init;
use crate::finetune::progress::{Console, Output};
use crate::finetune::split::split_file;
use crate::finetune::{default_precision, run_squad, SquadSettings};
use crate::model::{BertConfig, ComputeDtype, PRESETS};
use crate::squad::{FeatureConfig, PredictConfig};
use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum FinetuneCommand {
    /// SQuAD v1.1: fine-tune on --train, predict --predict, print EM/F1 and timings.
    Squad(Box<SquadArgs>),
    /// A GLUE task (run_classifier.py's): fine-tune on train.tsv, score the dev file(s),
    /// optionally write GLUE submission files of the test predictions.
    Glue(Box<GlueArgs>),
}

#[derive(Args, Clone, Debug)]
pub struct SquadArgs {
    /// Initial weights: a Hugging Face BERT directory, a TF checkpoint (directory or prefix)
    /// or a tpu-run checkpoint directory (local, or a gs:// / s3:// prefix).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// SQuAD v1.1 training file.
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// SQuAD v1.1 file to predict (scored when it has answers).
    #[arg(long)]
    pub predict: Option<PathBuf>,
    /// Where predictions.json, nbest_predictions.json, summary.json and checkpoints/ go.
    #[arg(long, default_value = "squad_output")]
    pub output_dir: PathBuf,
    /// WordPiece vocabulary (default: the init's vocab.txt).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Lowercase and strip accents (uncased models); `false` for cased ones.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub do_lower_case: bool,
    /// Passes over the training features (steps: ceil(features x epochs / batch)).
    #[arg(long, default_value_t = 2.0)]
    pub epochs: f64,
    /// Training sequences per step, over all devices.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Batch of the prediction program (default: --batch-size).
    #[arg(long)]
    pub predict_batch_size: Option<usize>,
    /// Peak learning rate of AdamWeightDecay, reached after the warmup.
    #[arg(long, default_value_t = 3e-5)]
    pub learning_rate: f64,
    /// Fraction of the steps with linear warmup; the rest decays linearly to 0.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_proportion: f64,
    /// AdamWeightDecay's decoupled weight decay (not applied to LayerNorm and biases).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Tokens per feature: question, context window, [CLS] and [SEP]s.
    #[arg(long, default_value_t = 384)]
    pub max_seq_length: usize,
    /// How far successive context windows start apart (run_squad's meaning).
    #[arg(long, default_value_t = 128)]
    pub doc_stride: usize,
    /// Question tokens kept at most (longer questions are truncated).
    #[arg(long, default_value_t = 64)]
    pub max_query_length: usize,
    /// Best start and end candidates kept per feature, and answers in nbest_predictions.json.
    #[arg(long, default_value_t = 20)]
    pub n_best_size: usize,
    /// Answer length in tokens at most.
    #[arg(long, default_value_t = 30)]
    pub max_answer_length: usize,
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
    /// Seeds head initialization, data order and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop after N steps (the schedule spans the shortened run); with --synthetic-bench, the
    /// number of timed steps (default 20).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Benchmark the train step on random features (no files): prints one JSON line with the
    /// median step time and seq/s. The model: --init's config, else --preset.
    #[arg(long)]
    pub synthetic_bench: bool,
    /// Model size for --synthetic-bench without --init: tiny, mini, small, medium, base, large.
    #[arg(long, default_value = "base")]
    pub preset: String,
    /// Write no checkpoints.
    #[arg(long)]
    pub no_checkpoint: bool,
    /// A checkpoint every N steps besides the last (0: the last only).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    /// A log line every N steps when no progress bar is drawn (0: none).
    #[arg(long, default_value_t = 100)]
    pub log_every: u64,
    /// Draw no progress bar (log lines every --log-every steps instead).
    #[arg(long)]
    pub no_progress: bool,
    /// Print the summary as one JSON line on stdout (messages then go to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Debug)]
pub struct SquadSplitArgs {
    /// The SQuAD file to split.
    pub input: PathBuf,
    /// Articles that go to the validation side.
    #[arg(long)]
    pub val_articles: usize,
    /// Where the training side goes (SQuAD JSON).
    #[arg(long)]
    pub out_train: PathBuf,
    /// Where the validation side goes (SQuAD JSON).
    #[arg(long)]
    pub out_val: PathBuf,
    /// Which articles: the first N of a SplitMix64 shuffle seeded with this.
    #[arg(long, default_value_t = 12345)]
    pub seed: u64,
}

fn precision(args: &SquadArgs) -> ComputeDtype {
    args.precision
        .unwrap_or_else(|| default_precision(args.backend))
}

pub fn run(cmd: &FinetuneCommand) -> Result<()> {
    match cmd {
        FinetuneCommand::Squad(a) if a.synthetic_bench => run_bench(a),
        FinetuneCommand::Squad(a) => run_finetune(a),
        FinetuneCommand::Glue(a) => run_glue_command(a),
    }
}

fn run_finetune(a: &SquadArgs) -> Result<()> {
    let need = |v: &Option<PathBuf>, flag: &str| {
        v.clone()
            .ok_or_else(|| anyhow!("finetune squad needs {flag} (or --synthetic-bench)"))
    };
    let mut s = SquadSettings::new(
        need(&a.init, "--init")?,
        need(&a.train, "--train FILE")?,
        need(&a.predict, "--predict FILE")?,
    );
    s.output_dir = crate::storage::local_only(&a.output_dir, "--output-dir")?;
    s.vocab = a.vocab.clone();
    s.do_lower_case = a.do_lower_case;
    s.epochs = a.epochs;
    s.batch_size = a.batch_size;
    s.predict_batch_size = a.predict_batch_size.unwrap_or(a.batch_size);
    s.learning_rate = a.learning_rate;
    s.warmup_proportion = a.warmup_proportion;
    s.weight_decay = a.weight_decay;
    s.features = FeatureConfig {
        max_seq_length: a.max_seq_length,
        doc_stride: a.doc_stride,
        max_query_length: a.max_query_length,
    };
    s.predict = PredictConfig {
        n_best_size: a.n_best_size,
        max_answer_length: a.max_answer_length,
    };
    s.precision = Some(precision(a));
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
    let r = run_squad(&s, &mut console)?;
    let score = match (r.exact_match, r.f1) {
        (Some(em), Some(f1)) => format!("exact_match {em:.2}, f1 {f1:.2}"),
        _ => "not scored".into(),
    };
    console.say(&format!(
        "done: {score}\n  train {:.1}s ({} steps, {:.1} seq/s; compile {:.1}s), predict {:.1}s \
         ({} features; compile {:.1}s), total {:.1}s\n  predictions: {}\n  n-best: {}{}",
        r.train_s,
        r.steps,
        r.train_seq_per_s,
        r.compile_train_s,
        r.predict_s,
        r.predict_features,
        r.compile_predict_s,
        r.total_s,
        r.predictions_file.display(),
        r.nbest_file.display(),
        r.checkpoint
            .as_ref()
            .map(|c| format!("\n  checkpoint: {}", c.display()))
            .unwrap_or_default()
    ));
    if a.json {
        println!("{}", r.to_json());
    }
    Ok(())
}

fn run_bench(a: &SquadArgs) -> Result<()> {
    let (cfg, model) = match &a.init {
        Some(p) => (load_init(p, a.seed)?.config, p.display().to_string()),
        None => {
            if !PRESETS.contains(&a.preset.as_str()) {
                bail!("--preset {:?}: choose one of {PRESETS:?}", a.preset);
            }
            (BertConfig::preset(&a.preset)?, a.preset.clone())
        }
    };
    let exec = resolve_execution(a.backend, precision(a), a.attention, &cfg, a.seed)?;
    let client = open_client(a.backend, a.plugin.as_deref(), 1)?;
    let steps = a.max_steps.unwrap_or(20);
    let (batch, seq) = (a.batch_size, a.max_seq_length);
    let r = bench(&client, &cfg, exec, batch, seq, steps, a.seed)?;
    println!("{}", r.to_json(&model, &cfg, exec, batch, seq));
    Ok(())
}

pub fn run_split(a: &SquadSplitArgs) -> Result<()> {
    let s = split_file(&a.input, a.val_articles, a.seed, &a.out_train, &a.out_val)?;
    println!(
        "{}: {} articles ({} questions) -> {}; {} articles ({} questions) -> {}",
        a.input.display(),
        s.train_articles,
        s.train_questions,
        a.out_train.display(),
        s.val_articles.len(),
        s.val_questions,
        a.out_val.display()
    );
    println!("validation articles: {}", s.val_titles.join(", "));
    Ok(())
}

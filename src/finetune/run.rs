//! `finetune squad` from start to end: initial weights, tokenizer, features of both files,
//! training, prediction, the output files and the official evaluation.
use super::batches::{batch_rows, steps_for_epochs, FeatureArrays};
use super::devices::{describe_devices, open_training_devices};
use super::progress::Console;
use super::qa_head::squad_param_specs;
use super::setup::{prepare_model, ModelRequest, ModelSetup};
use super::squad_predict::Predictor;
use super::squad_train::squad_task;
use super::train_loop::{train, Hyper, TrainOptions};
use crate::backend::{AttentionChoice, Backend};
use crate::model::ComputeDtype;
use crate::squad::{
    convert_examples_to_features, evaluate, make_predictions, read_examples, BertSquadTokenizer,
    FeatureConfig, InputFeature, PredictConfig, SquadDataset, SquadExample, SquadTokenizer,
    Warnings,
};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything `finetune squad` can be told.
#[derive(Clone, Debug)]
pub struct SquadSettings {
    pub init: PathBuf,
    pub train_file: PathBuf,
    pub predict_file: PathBuf,
    pub output_dir: PathBuf,
    /// The WordPiece vocabulary; by default the init's own `vocab.txt`.
    pub vocab: Option<PathBuf>,
    pub do_lower_case: bool,
    pub epochs: f64,
    pub batch_size: usize,
    pub predict_batch_size: usize,
    pub learning_rate: f64,
    pub warmup_proportion: f64,
    pub weight_decay: f64,
    pub features: FeatureConfig,
    pub predict: PredictConfig,
    /// `None`: bf16 on cuda/tpu, f32 on cpu.
    pub precision: Option<ComputeDtype>,
    pub backend: Backend,
    pub attention: AttentionChoice,
    pub plugin: Option<PathBuf>,
    /// Data-parallel devices (`None`: as pretraining chooses, see
    /// [`crate::pretrain::config::default_num_devices`]).
    pub num_devices: Option<u32>,
    pub seed: u64,
    /// Caps the number of steps (the schedule then spans the capped run).
    pub max_steps: Option<u64>,
    /// Write checkpoints under `<output_dir>/checkpoints`.
    pub checkpoint: bool,
    /// A checkpoint every this many steps besides the last (0: the last only).
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub progress: bool,
}

impl SquadSettings {
    /// run_squad's defaults (2 epochs, batch 32, 3e-5, 10% warmup, 384/128/64, n-best 20,
    /// max answer 30), on the CPU backend.
    pub fn new(init: PathBuf, train_file: PathBuf, predict_file: PathBuf) -> Self {
        Self {
            init,
            train_file,
            predict_file,
            output_dir: PathBuf::from("squad_output"),
            vocab: None,
            do_lower_case: true,
            epochs: 2.0,
            batch_size: 32,
            predict_batch_size: 32,
            learning_rate: 3e-5,
            warmup_proportion: 0.1,
            weight_decay: 0.01,
            features: FeatureConfig::default(),
            predict: PredictConfig::default(),
            precision: None,
            backend: Backend::Cpu,
            attention: AttentionChoice::Auto,
            plugin: None,
            num_devices: None,
            seed: 42,
            max_steps: None,
            checkpoint: true,
            checkpoint_every: 0,
            log_every: 100,
            progress: true,
        }
    }
}

/// The compute dtype a backend gets unless told otherwise: bf16 on accelerators, f32 on CPU
/// (XLA:CPU lacks some bf16 x bf16 -> f32 dot kernels).
pub fn default_precision(backend: Backend) -> ComputeDtype {
    match backend {
        Backend::Cpu => ComputeDtype::F32,
        Backend::Cuda | Backend::Tpu => ComputeDtype::Bf16,
    }
}

/// What a run did: counts, times, scores and files.
#[derive(Clone, Debug)]
pub struct SquadSummary {
    pub device: String,
    pub seed: u64,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub epochs: f64,
    pub precision: ComputeDtype,
    pub init_report: String,
    pub train_examples: usize,
    pub train_features: usize,
    pub predict_examples: usize,
    pub predict_features: usize,
    pub steps: u64,
    pub warmup_steps: u64,
    pub first_loss: f32,
    pub last_loss: f32,
    pub compile_train_s: f64,
    pub compile_predict_s: f64,
    /// Training steps, compile and checkpoint writing excluded.
    pub train_s: f64,
    /// Forward passes over every prediction feature plus post-processing, compile excluded.
    pub predict_s: f64,
    /// Everything, from reading the init to writing the predictions.
    pub total_s: f64,
    pub train_seq_per_s: f64,
    /// Official v1.1 scores against the predict file's answers (`None` when it has none).
    pub exact_match: Option<f64>,
    pub f1: Option<f64>,
    pub predictions_file: PathBuf,
    pub nbest_file: PathBuf,
    pub checkpoint: Option<PathBuf>,
}

impl SquadSummary {
    pub fn to_json(&self) -> Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({
            "run": "tpu-run finetune squad",
            "device": self.device,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "epochs": self.epochs,
            "precision": self.precision.name(),
            "train_examples": self.train_examples,
            "train_features": self.train_features,
            "predict_examples": self.predict_examples,
            "predict_features": self.predict_features,
            "steps": self.steps,
            "warmup_steps": self.warmup_steps,
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
            "compile_train_s": r(self.compile_train_s),
            "compile_predict_s": r(self.compile_predict_s),
            "train_s": r(self.train_s),
            "predict_s": r(self.predict_s),
            "total_s": r(self.total_s),
            "train_seq_per_s": r(self.train_seq_per_s),
            "exact_match": self.exact_match,
            "f1": self.f1,
            "predictions": self.predictions_file,
            "nbest_predictions": self.nbest_file,
            "checkpoint": self.checkpoint,
        })
    }
}

/// Examples and features of one SQuAD file, with the counted warnings.
struct SquadInputs {
    dataset: SquadDataset,
    examples: Vec<SquadExample>,
    features: Vec<InputFeature>,
    warnings: Warnings,
}

fn featurize(
    path: &Path,
    is_training: bool,
    tokenizer: &dyn SquadTokenizer,
    config: &FeatureConfig,
) -> Result<SquadInputs> {
    let mut warnings = Warnings::new();
    let dataset = SquadDataset::read(path, &mut warnings)?;
    let examples = read_examples(&dataset, is_training, &mut warnings);
    let features =
        convert_examples_to_features(&examples, tokenizer, config, is_training, &mut warnings)?;
    Ok(SquadInputs {
        dataset,
        examples,
        features,
        warnings,
    })
}

/// A file that yields no features is refused before any compile or training, not after.
fn require_features(path: &Path, role: &str, inputs: &SquadInputs) -> Result<()> {
    if inputs.features.is_empty() {
        bail!(
            "{}: the {role} file yields no features ({} questions, {} examples); give a SQuAD \
             file with questions",
            path.display(),
            inputs.dataset.num_questions(),
            inputs.examples.len()
        );
    }
    Ok(())
}

fn describe(what: &str, inputs: &SquadInputs) -> String {
    let mut s = format!(
        "{what}: {} questions -> {} examples -> {} features",
        inputs.dataset.num_questions(),
        inputs.examples.len(),
        inputs.features.len()
    );
    if inputs.warnings.is_empty() {
        s += " (no warnings)";
    } else {
        for line in inputs.warnings.to_string().lines() {
            s += &format!("\n  warning: {line}");
        }
    }
    s
}

/// Runs `finetune squad` (see the module docs); messages go to `console`.
pub fn run_squad(settings: &SquadSettings, console: &mut Console) -> Result<SquadSummary> {
    let t_start = Instant::now();
    let s = settings;
    if s.batch_size == 0 || s.predict_batch_size == 0 {
        bail!("--batch-size and --predict-batch-size must be at least 1");
    }
    if !(0.0..1.0).contains(&s.warmup_proportion) {
        bail!(
            "--warmup-proportion {}: must be in [0, 1)",
            s.warmup_proportion
        );
    }
    let ModelSetup {
        init,
        cfg,
        exec,
        vocab,
    } = prepare_model(&ModelRequest {
        init: &s.init,
        seed: s.seed,
        specs_of: &squad_param_specs,
        precision: s.precision,
        attention: s.attention,
        backend: s.backend,
        max_seq_length: s.features.max_seq_length,
        vocab: s.vocab.as_deref(),
    })?;
    console.say(&init.report);
    let tokenizer = BertSquadTokenizer::from_vocab_file(&vocab, s.do_lower_case)?;
    check_vocab_fits_model(&vocab, tokenizer.vocab_len(), cfg.vocab_size)?;
    let train_in = featurize(&s.train_file, true, &tokenizer, &s.features)?;
    console.say(&describe(
        &format!("train {}", s.train_file.display()),
        &train_in,
    ));
    let predict_in = featurize(&s.predict_file, false, &tokenizer, &s.features)?;
    console.say(&describe(
        &format!("predict {}", s.predict_file.display()),
        &predict_in,
    ));
    require_features(&s.train_file, "train", &train_in)?;
    require_features(&s.predict_file, "predict", &predict_in)?;

    let seq = s.features.max_seq_length;
    let train_arrays = FeatureArrays::from_features(&train_in.features, seq, true)?;
    let mut steps = steps_for_epochs(train_arrays.len(), s.batch_size, s.epochs)?;
    if let Some(m) = s.max_steps {
        steps = steps.min(m);
    }
    if steps == 0 {
        bail!("--max-steps 0: nothing to train");
    }
    let warmup_steps = (steps as f64 * s.warmup_proportion) as u64;
    let hyper = Hyper {
        learning_rate: s.learning_rate,
        warmup_steps,
        total_steps: steps,
        weight_decay: s.weight_decay,
        clip_norm: Some(1.0),
    };
    let (client, replicas) = open_training_devices(s.backend, s.plugin.as_deref(), s.num_devices)?;
    let device = describe_devices(&client, replicas)?;
    console.say(&format!(
        "training {steps} steps of batch {} ({} epochs over {} features; warmup {warmup_steps}) \
         in {} on {device}",
        s.batch_size,
        s.epochs,
        train_arrays.len(),
        exec.compute.name()
    ));
    let opts = TrainOptions {
        batch_size: s.batch_size,
        batches: batch_rows(train_arrays.len(), s.batch_size, steps, s.seed)?,
        seed: s.seed,
        hyper,
        log_every: s.log_every,
        progress: s.progress,
        checkpoint_dir: s.checkpoint.then(|| s.output_dir.join("checkpoints")),
        checkpoint_every: s.checkpoint_every,
    };
    let step = opts.hyper.step_config_for_model(&cfg, exec, replicas);
    let task = squad_task(&cfg, exec, &train_arrays, s.batch_size, &step)?;
    let trained = train(&client, &cfg, &init.params, task, &opts, console)?;
    drop(train_arrays);

    let predictor = Predictor::new(
        &client,
        &cfg,
        exec,
        &trained.params,
        s.predict_batch_size,
        seq,
    )?;
    let t_predict = Instant::now();
    let predict_arrays = FeatureArrays::from_features(&predict_in.features, seq, false)?;
    let ids: Vec<u64> = predict_in.features.iter().map(|f| f.unique_id).collect();
    let results = predictor.run(&predict_arrays, &ids)?;
    let mut post_warnings = Warnings::new();
    let predictions = make_predictions(
        &predict_in.examples,
        &predict_in.features,
        &results,
        &tokenizer,
        &s.predict,
        &mut post_warnings,
    )?;
    let predict_s = t_predict.elapsed().as_secs_f64();
    if !post_warnings.is_empty() {
        for line in post_warnings.to_string().lines() {
            console.say(&format!("prediction warning: {line}"));
        }
    }
    predictions
        .write(&s.output_dir)
        .with_context(|| format!("writing predictions into {}", s.output_dir.display()))?;
    let has_answers = predict_in
        .dataset
        .questions()
        .all(|(_, _, q)| !q.answers.is_empty());
    let scores = if has_answers {
        let map = predictions.answers.iter().cloned().collect();
        Some(evaluate(&predict_in.dataset, &map)?)
    } else {
        console.say("the predict file has questions without answers: not scored");
        None
    };
    let summary = SquadSummary {
        device,
        seed: s.seed,
        batch_size: s.batch_size,
        learning_rate: s.learning_rate,
        epochs: s.epochs,
        precision: exec.compute,
        init_report: init.report,
        train_examples: train_in.examples.len(),
        train_features: train_in.features.len(),
        predict_examples: predict_in.examples.len(),
        predict_features: predict_in.features.len(),
        steps,
        warmup_steps,
        first_loss: trained.losses.first().copied().unwrap_or(f32::NAN),
        last_loss: trained.losses.last().copied().unwrap_or(f32::NAN),
        compile_train_s: trained.compile_time.as_secs_f64(),
        compile_predict_s: predictor.compile_time.as_secs_f64(),
        train_s: trained.train_time.as_secs_f64(),
        predict_s,
        total_s: t_start.elapsed().as_secs_f64(),
        train_seq_per_s: trained.seq_per_s,
        exact_match: scores.as_ref().map(|r| r.exact_match),
        f1: scores.as_ref().map(|r| r.f1),
        predictions_file: s.output_dir.join("predictions.json"),
        nbest_file: s.output_dir.join("nbest_predictions.json"),
        checkpoint: trained.checkpoint,
    };
    let summary_file = s.output_dir.join("summary.json");
    std::fs::write(
        &summary_file,
        serde_json::to_string_pretty(&summary.to_json())?,
    )
    .with_context(|| format!("writing {}", summary_file.display()))?;
    Ok(summary)
}

/// Embedding rows a vocab.txt may leave unnamed: models pad vocab_size up to a multiple of 8 to
/// 128 for faster matmuls (e.g. 30,522 -> 30,528), which is not a sign of the wrong file.
const VOCAB_PADDING_SLACK: usize = 128;

/// The vocabulary must name the model's embedding rows: more entries than `vocab_size` would
/// produce ids past the table; far fewer means a truncated or foreign file, whose missing ids
/// would never be produced, so fine-tuning would run on the wrong text.
pub fn check_vocab_fits_model(vocab: &Path, entries: usize, vocab_size: usize) -> Result<()> {
    if entries > vocab_size {
        bail!(
            "vocabulary {} has more entries than the model's vocab_size {vocab_size}; use the \
             model's own vocab.txt",
            vocab.display()
        );
    }
    if entries + VOCAB_PADDING_SLACK < vocab_size {
        bail!(
            "vocabulary {} has {entries} entries but the model's vocab_size is {vocab_size}: the \
             file is truncated or belongs to another model; use the model's own vocab.txt",
            vocab.display()
        );
    }
    Ok(())
}

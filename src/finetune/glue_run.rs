//! `finetune glue` from start to end, as run_classifier.py's `do_train` / `do_eval` /
//! `do_predict`: initial weights, tokenizer, the task's files as features, training, scoring
//! every dev file, the test predictions as GLUE submission files, and a summary.
use super::batches::batch_rows;
use super::devices::{describe_devices, open_training_devices};
use super::eval_program::EvalProgram;
use super::glue_program::{features_literals, glue_eval_module, glue_task};
use super::progress::Console;
use super::run::check_vocab_fits_model;
use super::setup::{prepare_model, ModelRequest, ModelSetup};
use super::train_loop::{train, Hyper, TrainOptions};
use crate::backend::{AttentionChoice, Backend};
use crate::finetune::classifier_head::classifier_param_specs;
use crate::glue::metrics::{score, Outcomes, Scores};
use crate::glue::submission::{write_submission, Prediction};
use crate::glue::{
    convert_examples, read_examples, EvalFile, GlueFeatures, GlueFile, Label, Output, Split, Task,
};
use crate::model::{BertConfig, ComputeDtype};
use crate::squad::BertSquadTokenizer;
use anyhow::{bail, Context, Result};
use hlo::Literal;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything `finetune glue` can be told.
#[derive(Clone, Debug)]
pub struct GlueSettings {
    pub task: Task,
    /// The task's directory: train.tsv, dev.tsv (MNLI: dev_matched/dev_mismatched), test.tsv.
    pub data_dir: PathBuf,
    pub init: PathBuf,
    pub output_dir: PathBuf,
    /// The WordPiece vocabulary; by default the init's own `vocab.txt`.
    pub vocab: Option<PathBuf>,
    pub do_lower_case: bool,
    pub do_train: bool,
    pub do_eval: bool,
    pub do_predict: bool,
    pub max_seq_length: usize,
    pub epochs: f64,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub learning_rate: f64,
    pub warmup_proportion: f64,
    pub weight_decay: f64,
    /// `None`: bf16 on cuda/tpu, f32 on cpu.
    pub precision: Option<ComputeDtype>,
    pub backend: Backend,
    pub attention: AttentionChoice,
    pub plugin: Option<PathBuf>,
    pub num_devices: Option<u32>,
    pub seed: u64,
    pub max_steps: Option<u64>,
    pub checkpoint: bool,
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub progress: bool,
}

impl GlueSettings {
    /// The and BERT README's defaults for GLUE: seq 128, batch 32, lr 2e-5, 3 epochs,
    /// 10% warmup, on the CPU backend.
    pub fn new(task: Task, data_dir: PathBuf, init: PathBuf) -> Self {
        Self {
            task,
            data_dir,
            init,
            output_dir: PathBuf::from("glue_output"),
            vocab: None,
            do_lower_case: true,
            do_train: true,
            do_eval: true,
            do_predict: false,
            max_seq_length: 128,
            epochs: 3.0,
            batch_size: 32,
            eval_batch_size: 32,
            learning_rate: 2e-5,
            warmup_proportion: 0.1,
            weight_decay: 0.01,
            precision: None,
            backend: Backend::Cpu,
            attention: AttentionChoice::Auto,
            plugin: None,
            num_devices: None,
            seed: 42,
            max_steps: None,
            checkpoint: true,
            checkpoint_every: 0,
            log_every: 50,
            progress: true,
        }
    }
}

/// The scores of one dev file.
#[derive(Clone, Debug)]
pub struct EvalResult {
    pub name: String,
    pub file: PathBuf,
    pub scores: Scores,
    /// Mean loss over the file (cross-entropy, or MSE for regression).
    pub loss: f64,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct GlueSummary {
    pub task: Task,
    pub device: String,
    pub seed: u64,
    pub precision: ComputeDtype,
    pub init_report: String,
    pub train_examples: usize,
    pub steps: u64,
    pub warmup_steps: u64,
    pub first_loss: Option<f32>,
    pub last_loss: Option<f32>,
    pub compile_train_s: f64,
    pub train_s: f64,
    pub train_seq_per_s: f64,
    pub eval: Vec<EvalResult>,
    pub submissions: Vec<PathBuf>,
    pub checkpoint: Option<PathBuf>,
    pub total_s: f64,
}

impl GlueSummary {
    pub fn to_json(&self) -> Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        let eval: serde_json::Map<String, Value> = self
            .eval
            .iter()
            .map(|e| {
                let mut v = e.scores.to_json();
                v["loss"] = json!(e.loss);
                v["file"] = json!(e.file);
                (e.name.clone(), v)
            })
            .collect();
        json!({
            "run": "tpu-run finetune glue",
            "task": self.task.name(),
            "device": self.device,
            "seed": self.seed,
            "precision": self.precision.name(),
            "train_examples": self.train_examples,
            "steps": self.steps,
            "warmup_steps": self.warmup_steps,
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
            "compile_train_s": r(self.compile_train_s),
            "train_s": r(self.train_s),
            "train_seq_per_s": r(self.train_seq_per_s),
            "eval": eval,
            "submissions": self.submissions,
            "checkpoint": self.checkpoint,
            "total_s": r(self.total_s),
        })
    }
}

/// run_classifier's step count: `int(examples / batch * epochs)` (whole batches only, as its
/// `drop_remainder=True` input), at least 1.
pub fn classifier_steps(examples: usize, batch: usize, epochs: f64) -> Result<u64> {
    if batch == 0 {
        bail!("--batch-size must be at least 1");
    }
    if !(epochs.is_finite() && epochs > 0.0) {
        bail!("--epochs {epochs}: must be a positive number");
    }
    if examples < batch {
        bail!(
            "the training file has {examples} examples, fewer than one batch of {batch}; lower \
             --batch-size"
        );
    }
    Ok(((examples as f64 / batch as f64 * epochs) as u64).max(1))
}

/// A file of the task, read and featurized.
struct TaskFile {
    file: GlueFile,
    features: GlueFeatures,
}

fn load_file(
    task: Task,
    split: Split,
    path: &Path,
    tokenizer: &BertSquadTokenizer,
    max_seq_length: usize,
    console: &Console,
) -> Result<TaskFile> {
    let file = read_examples(task, split, path)?;
    let features = convert_examples(&file.examples, tokenizer, max_seq_length, task.output())
        .with_context(|| format!("featurizing {}", path.display()))?;
    let mut line = file.describe();
    if features.truncated > 0 {
        line += &format!(
            "; {} of them cut to --max-seq-length {max_seq_length}",
            features.truncated
        );
    }
    console.say(&line);
    Ok(TaskFile { file, features })
}

/// Runs `finetune glue` (see the module docs); messages go to `console`.
pub fn run_glue(settings: &GlueSettings, console: &mut Console) -> Result<GlueSummary> {
    let t_start = Instant::now();
    let s = settings;
    if s.batch_size == 0 || s.eval_batch_size == 0 {
        bail!("--batch-size and --eval-batch-size must be at least 1");
    }
    if !(0.0..1.0).contains(&s.warmup_proportion) {
        bail!(
            "--warmup-proportion {}: must be in [0, 1)",
            s.warmup_proportion
        );
    }
    if !(s.do_train || s.do_eval || s.do_predict) {
        bail!("nothing to do: at least one of training, --do-eval and --do-predict must be on");
    }
    if !s.data_dir.is_dir() {
        bail!(
            "--data-dir {}: not a directory (give the task's GLUE folder, e.g. glue/{})",
            s.data_dir.display(),
            s.task.name()
        );
    }
    let task = s.task;
    let output = task.output();
    let n_out = output.num_outputs();
    let ModelSetup {
        init,
        cfg,
        exec,
        vocab,
    } = prepare_model(&ModelRequest {
        init: &s.init,
        seed: s.seed,
        specs_of: &|cfg: &BertConfig| classifier_param_specs(cfg, n_out),
        precision: s.precision,
        attention: s.attention,
        backend: s.backend,
        max_seq_length: s.max_seq_length,
        vocab: s.vocab.as_deref(),
    })?;
    console.say(&init.report);
    let tokenizer = BertSquadTokenizer::from_vocab_file(&vocab, s.do_lower_case)?;
    check_vocab_fits_model(&vocab, tokenizer.vocab_len(), cfg.vocab_size)?;
    let seq = s.max_seq_length;
    let at = |f: &str| s.data_dir.join(f);

    // Every input is read and checked before anything compiles or trains.
    let train_in = if s.do_train {
        Some(load_file(
            task,
            Split::Train,
            &at(task.train_file()),
            &tokenizer,
            seq,
            console,
        )?)
    } else {
        None
    };
    let mut dev_in = vec![];
    if s.do_eval {
        for f in task.dev_files() {
            dev_in.push((
                f,
                load_file(task, Split::Dev, &at(f.file), &tokenizer, seq, console)?,
            ));
        }
    }
    let mut test_in = vec![];
    if s.do_predict {
        for f in task.test_files() {
            test_in.push((
                f,
                load_file(task, Split::Test, &at(f.file), &tokenizer, seq, console)?,
            ));
        }
    }
    std::fs::create_dir_all(&s.output_dir)
        .with_context(|| format!("creating {}", s.output_dir.display()))?;

    let (client, replicas) = open_training_devices(s.backend, s.plugin.as_deref(), s.num_devices)?;
    let device = describe_devices(&client, replicas)?;
    let mut summary = GlueSummary {
        task,
        device: device.clone(),
        seed: s.seed,
        precision: exec.compute,
        init_report: init.report.clone(),
        train_examples: 0,
        steps: 0,
        warmup_steps: 0,
        first_loss: None,
        last_loss: None,
        compile_train_s: 0.0,
        train_s: 0.0,
        train_seq_per_s: 0.0,
        eval: vec![],
        submissions: vec![],
        checkpoint: None,
        total_s: 0.0,
    };
    let specs = classifier_param_specs(&cfg, n_out);
    let mut params: Vec<(String, Literal)> = specs
        .iter()
        .map(|sp| {
            let t = init
                .params
                .get(&sp.name)
                .with_context(|| format!("the initial weights have no '{}'", sp.name))?;
            let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
            Ok((sp.name.clone(), Literal::from_slice(&t.data, &dims)?))
        })
        .collect::<Result<_>>()?;

    if let Some(train_in) = &train_in {
        let n = train_in.features.len();
        let mut steps = classifier_steps(n, s.batch_size, s.epochs)?;
        if let Some(m) = s.max_steps {
            steps = steps.min(m);
        }
        if steps == 0 {
            bail!("--max-steps 0: nothing to train");
        }
        let warmup_steps = (steps as f64 * s.warmup_proportion) as u64;
        let opts = TrainOptions {
            batch_size: s.batch_size,
            batches: batch_rows(n, s.batch_size, steps, s.seed)?,
            seed: s.seed,
            hyper: Hyper {
                learning_rate: s.learning_rate,
                warmup_steps,
                total_steps: steps,
                weight_decay: s.weight_decay,
                clip_norm: Some(1.0),
            },
            log_every: s.log_every,
            progress: s.progress,
            checkpoint_dir: s.checkpoint.then(|| s.output_dir.join("checkpoints")),
            checkpoint_every: s.checkpoint_every,
        };
        console.say(&format!(
            "training {task}: {steps} steps of batch {} ({} epochs over {n} examples; warmup \
             {warmup_steps}) in {} on {device}",
            s.batch_size,
            s.epochs,
            exec.compute.name()
        ));
        let name = format!("glue/{}", task.key());
        let step = opts.hyper.step_config_for_model(&cfg, exec, replicas);
        let job = glue_task(
            &name,
            &cfg,
            exec,
            output,
            &train_in.features,
            s.batch_size,
            &step,
        )?;
        let trained = train(&client, &cfg, &init.params, job, &opts, console)?;
        summary.train_examples = n;
        summary.steps = steps;
        summary.warmup_steps = warmup_steps;
        summary.first_loss = trained.losses.first().copied();
        summary.last_loss = trained.losses.last().copied();
        summary.compile_train_s = trained.compile_time.as_secs_f64();
        summary.train_s = trained.train_time.as_secs_f64();
        summary.train_seq_per_s = trained.seq_per_s;
        summary.checkpoint = trained.checkpoint;
        params = trained.params;
    }

    if !dev_in.is_empty() || !test_in.is_empty() {
        let module = glue_eval_module(&cfg, exec, output, s.eval_batch_size, seq)?;
        let program = EvalProgram::new(
            &client,
            exec,
            &module,
            &specs,
            &params,
            s.eval_batch_size,
            "GLUE eval",
        )?;
        for (f, input) in &dev_in {
            let logits = outputs(&program, &input.features, n_out)?;
            let result = evaluate(task, f, input, &logits)?;
            console.say(&format!(
                "{task} {}: {} ({} examples, loss {:.4})",
                f.name,
                result.scores.line(),
                result.scores.examples,
                result.loss
            ));
            summary.eval.push(result);
        }
        for (f, input) in &test_in {
            let logits = outputs(&program, &input.features, n_out)?;
            let predictions = predictions(output, &logits);
            let path = s.output_dir.join(f.submission);
            write_submission(&path, output, &input.file.examples, &predictions)?;
            console.say(&format!(
                "{} predictions of {} -> {}",
                predictions.len(),
                f.file,
                path.display()
            ));
            summary.submissions.push(path);
        }
    }
    if !summary.eval.is_empty() {
        let path = s.output_dir.join("eval_results.json");
        let v = summary.to_json()["eval"].clone();
        std::fs::write(&path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    summary.total_s = t_start.elapsed().as_secs_f64();
    let path = s.output_dir.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary.to_json())?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(summary)
}

/// The head's outputs for every example, `n` per example, in order.
fn outputs(program: &EvalProgram, features: &GlueFeatures, n: usize) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(features.len());
    program.run(
        features.len(),
        &[n],
        &|rows, batch| features_literals(features, rows, batch),
        &mut |rows, values| {
            for slot in 0..rows.len() {
                out.push(values[0][slot * n..(slot + 1) * n].to_vec());
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// Argmax (first of equal maxima, as `np.argmax`) or the score.
fn predictions(output: Output, logits: &[Vec<f32>]) -> Vec<Prediction> {
    logits
        .iter()
        .map(|row| match output {
            Output::Classes(_) => {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                Prediction::Class(best as u32)
            }
            Output::Regression => Prediction::Score(row.first().copied().unwrap_or(f32::NAN)),
        })
        .collect()
}

/// Scores and mean loss of one dev file.
fn evaluate(task: Task, f: &EvalFile, input: &TaskFile, logits: &[Vec<f32>]) -> Result<EvalResult> {
    let output = task.output();
    let predicted = predictions(output, logits);
    let examples = &input.file.examples;
    let mut loss = 0.0f64;
    let scores = match output {
        Output::Classes(_) => {
            let mut gold = Vec::with_capacity(examples.len());
            for (ex, row) in examples.iter().zip(logits) {
                let Some(Label::Class(c)) = ex.label else {
                    bail!(
                        "{} line {}: has no label to score",
                        input.file.path.display(),
                        ex.line
                    );
                };
                loss += nll(row, c as usize);
                gold.push(c);
            }
            let predicted: Vec<u32> = predicted
                .iter()
                .map(|p| match p {
                    Prediction::Class(c) => *c,
                    Prediction::Score(_) => 0,
                })
                .collect();
            score(
                task.metric(),
                Outcomes::Classes {
                    predicted: &predicted,
                    gold: &gold,
                },
            )
        }
        Output::Regression => {
            let mut gold = Vec::with_capacity(examples.len());
            for (ex, row) in examples.iter().zip(logits) {
                let Some(Label::Score(v)) = ex.label else {
                    bail!(
                        "{} line {}: has no score to compare",
                        input.file.path.display(),
                        ex.line
                    );
                };
                let d = f64::from(row[0]) - f64::from(v);
                loss += d * d;
                gold.push(v);
            }
            let predicted: Vec<f32> = logits.iter().map(|r| r[0]).collect();
            score(
                task.metric(),
                Outcomes::Scores {
                    predicted: &predicted,
                    gold: &gold,
                },
            )
        }
    };
    Ok(EvalResult {
        name: f.name.to_string(),
        file: input.file.path.clone(),
        loss: loss / examples.len().max(1) as f64,
        scores,
    })
}

/// -log softmax(row)[label], in f64.
fn nll(row: &[f32], label: usize) -> f64 {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    max + sum.ln() - f64::from(row[label])
}

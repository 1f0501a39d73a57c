//! Evaluation on held-out shards: the forward pass without dropout over the eval set (read
//! once, in file order), MLM and NSP loss and accuracy aggregated exactly over all batches.
use super::batches::field_literals;
use super::config::PretrainConfig;
use super::program::{eval_program, EVAL_SUMS};
use crate::backend::compile_options_for;
use crate::data::{Reader, ReaderConfig};
use crate::model::{BatchShapes, BertConfig, Execution};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tpu::{Buffer, Client, CompileOptions, Device, Executable};

/// Metrics over one pass of the eval set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalResult {
    pub mlm_loss: f64,
    pub mlm_accuracy: f64,
    pub nsp_loss: f64,
    pub nsp_accuracy: f64,
    /// MLM accuracy at the predictions whose input is `[MASK]` (see [`EVAL_SUMS`]).
    pub mlm_accuracy_at_mask: f64,
    /// Examples evaluated (padding rows excluded) and masked positions predicted.
    pub examples: u64,
    pub predictions: u64,
    pub seconds: f64,
}

impl EvalResult {
    /// `mlm_loss`, `mlm_accuracy`, ... as JSON fields.
    pub fn fields(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("mlm_loss", Value::from(self.mlm_loss)),
            ("mlm_accuracy", Value::from(self.mlm_accuracy)),
            ("nsp_loss", Value::from(self.nsp_loss)),
            ("nsp_accuracy", Value::from(self.nsp_accuracy)),
            (
                "mlm_accuracy_at_mask",
                Value::from(self.mlm_accuracy_at_mask),
            ),
            ("loss", Value::from(self.mlm_loss + self.nsp_loss)),
            ("examples", Value::from(self.examples)),
            ("predictions", Value::from(self.predictions)),
            ("seconds", Value::from(self.seconds)),
        ]
    }
}

/// The compiled eval program and the eval shards.
pub struct Evaluator {
    exe: Executable,
    files: Vec<PathBuf>,
    shapes: BatchShapes,
    max_batches: usize,
    cycle_length: usize,
    vocab_size: usize,
    pub compile_time: Duration,
}

impl Evaluator {
    /// Compiles the eval program for `cfg` run as `exec` on `client`, over `files` with the
    /// run's eval settings (`eval.batches`, 0 reads the whole set; `eval.mask_token_id`; the
    /// eval batch shapes and reader cycle length).
    pub fn new(
        client: &Client,
        run: &PretrainConfig,
        cfg: &BertConfig,
        exec: Execution,
        files: Vec<PathBuf>,
    ) -> Result<Self> {
        let mask_id = i32::try_from(run.mask_token_id()).context("eval.mask_token_id")?;
        let shapes = run.eval_shapes();
        let module =
            eval_program(cfg, exec, &shapes, mask_id).context("building the eval program")?;
        let t0 = Instant::now();
        let exe = client
            .compile_module(
                &module,
                &compile_options_for(exec, CompileOptions::default()),
            )
            .context("compiling the eval program")?;
        Ok(Self {
            exe,
            files,
            shapes,
            max_batches: run.eval.batches,
            cycle_length: run.data.cycle_length,
            vocab_size: cfg.vocab_size,
            compile_time: t0.elapsed(),
        })
    }

    /// Runs over the eval set with `params` (device buffers in parameter order).
    pub fn run(&self, params: &[Buffer], device: &Device) -> Result<EvalResult> {
        let t0 = Instant::now();
        let s = self.shapes;
        let mut cfg = ReaderConfig::new(
            self.files.clone(),
            s.batch_size,
            s.seq_len,
            s.max_predictions,
        );
        cfg.shuffle = false;
        cfg.epochs = Some(1);
        cfg.vocab_size = Some(self.vocab_size);
        cfg.cycle_length = self.cycle_length;
        let reader = Reader::new(cfg).context("opening the eval data")?;
        let client = self.exe.client();
        let mut sums = [0f64; EVAL_SUMS.len()];
        for (i, batch) in reader.enumerate() {
            if self.max_batches > 0 && i >= self.max_batches {
                break;
            }
            let batch = batch.context("reading the eval data")?;
            let bufs = field_literals(&batch, 1)?
                .iter()
                .map(|l| {
                    client.buffer_from_host_bytes(
                        l.element_type(),
                        l.bytes(),
                        &l.shape().dims,
                        device,
                    )
                })
                .collect::<tpu::Result<Vec<_>>>()?;
            let mut args: Vec<&Buffer> = params.iter().collect();
            args.extend(bufs.iter());
            let outs = self
                .exe
                .execute(&args)
                .context("running the eval program")?;
            if outs.len() != EVAL_SUMS.len() {
                bail!(
                    "the eval program returned {} outputs, expected {}",
                    outs.len(),
                    EVAL_SUMS.len()
                );
            }
            for (acc, (name, out)) in sums.iter_mut().zip(EVAL_SUMS.iter().zip(&outs)) {
                let v = out
                    .to_host::<f32>()?
                    .first()
                    .copied()
                    .ok_or_else(|| anyhow!("eval output {name} is empty"))?;
                *acc += f64::from(v);
            }
        }
        let [mlm_nll, mlm_w, mlm_ok, nsp_nll, nsp_ok, examples, mask_w, mask_ok] = sums;
        if examples == 0.0 {
            bail!(
                "the eval data ({} files) holds no example of seq_len {} / max_predictions {}",
                self.files.len(),
                s.seq_len,
                s.max_predictions
            );
        }
        Ok(EvalResult {
            mlm_loss: mlm_nll / mlm_w.max(1e-9),
            mlm_accuracy: mlm_ok / mlm_w.max(1e-9),
            nsp_loss: nsp_nll / examples,
            nsp_accuracy: nsp_ok / examples,
            mlm_accuracy_at_mask: mask_ok / mask_w.max(1e-9),
            examples: examples.round() as u64,
            predictions: mlm_w.round() as u64,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }
}

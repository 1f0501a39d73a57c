//! The SQuAD train step: the encoder with dropout and the QA loss, built for the shared
//! fine-tuning loop ([`super::train_loop`]).
use super::batches::{FeatureArrays, ENCODER_FIELDS, LABEL_FIELDS};
use super::qa_head::{qa_loss, squad_logits, squad_param_specs};
use super::train_loop::{rows_per_replica, step_param_specs, TrainTask};
use crate::model::fp8::require_fp8_setup;
use crate::model::{BertConfig, EncoderInputs, Execution, ParamValues};
use crate::train::{autodiff, build_train_step, BatchSpec, ParamSpec, StepConfig, TrainProgram};
use anyhow::{Context, Result};
use hlo::ElementType;

pub use super::train_loop::{layout_literals, Hyper, RNG_KEY};

/// The metrics the step reports after the loss (then its own `learning_rate`, `grad_norm`).
pub const STEP_METRICS: [&str; 2] = ["start_loss", "end_loss"];

/// The step's batch inputs (one replica's `batch` rows): [`ENCODER_FIELDS`] (s32
/// `[batch, seq]`), [`LABEL_FIELDS`] (s32 `[batch]`), then [`RNG_KEY`].
pub fn train_batch_specs(batch: usize, seq: usize) -> Vec<BatchSpec> {
    let (b, s) = (batch as i64, seq as i64);
    let mut v: Vec<BatchSpec> = ENCODER_FIELDS
        .iter()
        .map(|n| BatchSpec::new(*n, ElementType::S32, &[b, s]))
        .collect();
    v.extend(
        LABEL_FIELDS
            .iter()
            .map(|n| BatchSpec::new(*n, ElementType::S32, &[b])),
    );
    v.push(BatchSpec::rng_key(RNG_KEY));
    v
}

/// The QA model's parameters as the step builder takes them (f32 master weights).
pub fn train_param_specs(cfg: &BertConfig) -> Vec<ParamSpec> {
    step_param_specs(&squad_param_specs(cfg))
}

/// The SQuAD train step for `cfg` run as `exec` on batches of `batch` x `seq`.
pub fn train_program(
    cfg: &BertConfig,
    exec: Execution,
    batch: usize,
    seq: usize,
    step: &StepConfig,
) -> Result<TrainProgram> {
    require_fp8_setup(cfg, exec, step)?;
    let params = train_param_specs(cfg);
    let specs = train_batch_specs(batch, seq);
    let model = cfg.clone();
    let source = autodiff(move |b, p, batch| {
        let params = ParamValues::from_pairs(p.iter());
        let inputs = EncoderInputs {
            input_ids: batch.get("input_ids")?,
            input_mask: batch.get("input_mask")?,
            segment_ids: batch.get("segment_ids")?,
        };
        let key = batch.get(RNG_KEY)?;
        let (start, end) = squad_logits(b, &model, exec, &params, &inputs, key, true)?;
        let (loss, start_loss, end_loss) = qa_loss(
            b,
            start,
            end,
            batch.get("start_positions")?,
            batch.get("end_positions")?,
        )?;
        Ok((
            loss,
            vec![
                (STEP_METRICS[0].to_string(), start_loss),
                (STEP_METRICS[1].to_string(), end_loss),
            ],
        ))
    });
    build_train_step("bert_squad_step", &params, &specs, step, &source)
        .context("building the SQuAD train step")
}

/// The SQuAD task of the fine-tuning loop: `step` (see [`Hyper::step_config_for_model`]) on
/// replicas of `batch / step.replicas` rows, and the batch inputs of `features`.
pub fn squad_task<'a>(
    cfg: &BertConfig,
    exec: Execution,
    features: &'a FeatureArrays,
    batch: usize,
    step: &StepConfig,
) -> Result<TrainTask<'a>> {
    let per_replica = rows_per_replica(batch, step.replicas)?;
    Ok(TrainTask {
        name: "squad",
        program: train_program(cfg, exec, per_replica, features.seq_len, step)?,
        exec,
        batch_inputs: Box::new(move |rows: &[usize]| features.train_literals(rows)),
    })
}

//! The GLUE programs: the train step (encoder with dropout, classifier or regression head, its
//! loss; the shared loop's optimizer) and the eval program (no dropout, the head's outputs), with
//! the batch inputs of [`GlueFeatures`] rows.
use super::batches::{encoder_literals, row_values, ENCODER_FIELDS};
use super::classifier_head::{
    classification_loss, classifier_logits, classifier_param_specs, regression_loss,
};
use super::train_loop::{rows_per_replica, step_param_specs, TrainTask, RNG_KEY};
use crate::glue::{GlueFeatures, Output};
use crate::model::loss::correct;
use crate::model::{BertConfig, EncoderInputs, Execution, ParamValues};
use crate::train::{autodiff, build_train_step, BatchSpec, StepConfig, TrainProgram};
use anyhow::{Context, Result};
use hlo::{ElementType, Literal, Module, ModuleBuilder, Shape};

/// The batch input holding the labels: class indices (s32) or scores (f32).
pub const LABEL_FIELD: &str = "label_ids";
/// The metric a classification step reports after the loss (then `learning_rate`, `grad_norm`).
pub const ACCURACY_METRIC: &str = "train_accuracy";

fn label_type(output: Output) -> ElementType {
    match output {
        Output::Classes(_) => ElementType::S32,
        Output::Regression => ElementType::F32,
    }
}

/// The step's batch inputs (one replica's `batch` rows): [`ENCODER_FIELDS`] (s32
/// `[batch, seq]`), [`LABEL_FIELD`] (`[batch]`), then [`RNG_KEY`].
pub fn glue_batch_specs(batch: usize, seq: usize, output: Output) -> Vec<BatchSpec> {
    let (b, s) = (batch as i64, seq as i64);
    let mut v: Vec<BatchSpec> = ENCODER_FIELDS
        .iter()
        .map(|n| BatchSpec::new(*n, ElementType::S32, &[b, s]))
        .collect();
    v.push(BatchSpec::new(LABEL_FIELD, label_type(output), &[b]));
    v.push(BatchSpec::rng_key(RNG_KEY));
    v
}

/// The GLUE train step for `cfg` run as `exec` on batches of `batch` x `seq`.
pub fn glue_train_program(
    cfg: &BertConfig,
    exec: Execution,
    output: Output,
    batch: usize,
    seq: usize,
    step: &StepConfig,
) -> Result<TrainProgram> {
    crate::model::fp8::require_fp8_setup(cfg, exec, step)?;
    let params = step_param_specs(&classifier_param_specs(cfg, output.num_outputs()));
    let specs = glue_batch_specs(batch, seq, output);
    let model = cfg.clone();
    let source = autodiff(move |b, p, batch| {
        let params = ParamValues::from_pairs(p.iter());
        let inputs = EncoderInputs {
            input_ids: batch.get("input_ids")?,
            input_mask: batch.get("input_mask")?,
            segment_ids: batch.get("segment_ids")?,
        };
        let logits =
            classifier_logits(b, &model, exec, &params, &inputs, batch.get(RNG_KEY)?, true)?;
        let labels = batch.get(LABEL_FIELD)?;
        Ok(match output {
            Output::Classes(_) => {
                let loss = classification_loss(b, logits, labels)?;
                let hits = b.reduce_sum(correct(b, logits, labels)?, &[0])?;
                let accuracy = b.div(hits, b.scalar(batch_rows(b, labels)? as f32)?)?;
                (loss, vec![(ACCURACY_METRIC.to_string(), accuracy)])
            }
            Output::Regression => (regression_loss(b, logits, labels)?, vec![]),
        })
    });
    build_train_step("bert_glue_step", &params, &specs, step, &source)
        .context("building the GLUE train step")
}

fn batch_rows(b: &hlo::Builder, labels: hlo::Value) -> Result<i64> {
    Ok(b.dims(labels)?[0])
}

/// The GLUE task of the fine-tuning loop: `step` (see
/// [`super::train_loop::Hyper::step_config_for_model`]) on replicas of `batch / step.replicas`
/// rows, and the batch inputs of `features`.
pub fn glue_task<'a>(
    name: &'a str,
    cfg: &BertConfig,
    exec: Execution,
    output: Output,
    features: &'a GlueFeatures,
    batch: usize,
    step: &StepConfig,
) -> Result<TrainTask<'a>> {
    let per_replica = rows_per_replica(batch, step.replicas)?;
    Ok(TrainTask {
        name,
        program: glue_train_program(cfg, exec, output, per_replica, features.seq_len, step)?,
        exec,
        batch_inputs: Box::new(move |rows: &[usize]| {
            let mut v = features_literals(features, rows, rows.len())?;
            v.push(match output {
                Output::Classes(_) => row_values(&features.labels, rows)?,
                Output::Regression => row_values(&features.scores, rows)?,
            });
            Ok(v)
        }),
    })
}

/// The encoder inputs of `rows`, padded with all-zero rows up to `batch`.
pub fn features_literals(
    features: &GlueFeatures,
    rows: &[usize],
    batch: usize,
) -> Result<Vec<Literal>> {
    encoder_literals(
        [
            &features.input_ids,
            &features.input_mask,
            &features.segment_ids,
        ],
        features.seq_len,
        rows,
        batch,
    )
}

/// `(params..., input_ids, input_mask, segment_ids) -> logits`, f32 `[batch, n]` (eval mode);
/// parameters in [`classifier_param_specs`] order.
pub fn glue_eval_module(
    cfg: &BertConfig,
    exec: Execution,
    output: Output,
    batch: usize,
    seq: usize,
) -> Result<Module> {
    let mb = ModuleBuilder::new("bert_glue_eval");
    let b = mb.builder("eval");
    let params = ParamValues::declare(&b, &classifier_param_specs(cfg, output.num_outputs()))?;
    let dims = [batch as i64, seq as i64];
    let mut fields = vec![];
    for name in ENCODER_FIELDS {
        fields.push(b.parameter(Shape::array(ElementType::S32, dims.to_vec()), name)?);
    }
    let inputs = EncoderInputs {
        input_ids: fields[0],
        input_mask: fields[1],
        segment_ids: fields[2],
    };
    let key = b.constant_slice(&[0u64, 0], &[2])?;
    let logits = classifier_logits(&b, cfg, exec, &params, &inputs, key, false)?;
    let entry = b.finish(b.tuple(&[logits])?)?;
    Ok(mb.build(entry)?)
}

//! The two programs of a pretraining run: the train step (one donated HLO module: forward with
//! dropout, backward, clipping, optimizer, schedule) and the evaluation pass (no dropout, sums
//! that aggregate exactly over many batches).
//!
//! [`train_step_module`] turns a run's settings into the lowered step. `tpu-run pretrain`
//! ([`super::run::Session`]) and `tpu-run compile` both call it, so the two hand the compiler
//! the same bytes for the same config.
use super::config::PretrainConfig;
use crate::backend::compile_options_for;
use crate::model::fp8::require_fp8_setup;
use crate::model::loss::nll_and_correct;
use crate::model::params::param_specs;
use crate::model::{
    pretraining_forward, pretraining_loss, BatchShapes, BatchValues, BertConfig, Execution,
    ParamValues,
};
use crate::train::lowered::{lower, BuildStats};
use crate::train::{autodiff, build_train_step, BatchSpec, ParamSpec, StepConfig, TrainProgram};
use anyhow::{anyhow, bail, Context, Result};
use hlo::{ElementType, Module, ModuleBuilder, Shape};
use std::path::Path;
use std::time::Instant;
use tpu::CompileOptions;

/// The batch input that carries the dropout key (`u64[2]`: stream word, counter) of each step.
pub const RNG_KEY: &str = "rng_key";

/// The metrics the train step reports after the loss (its own `learning_rate` and
/// `grad_norm` follow them).
pub const STEP_METRICS: [&str; 4] = ["mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy"];

/// The train step's batch inputs for one micro-batch: the pretraining fields (seven, or ten when
/// packed; rows split across data-parallel replicas), then [`RNG_KEY`] (every replica gets it,
/// with its replica id folded in by the step).
pub fn step_batch_specs(shapes: &BatchShapes) -> Result<Vec<BatchSpec>> {
    let mut specs = shapes
        .fields()
        .into_iter()
        .zip(shapes.shapes())
        .map(|(name, s)| match s {
            Shape::Array(a) => Ok(BatchSpec::new(name, a.ty, &a.dims)),
            other => Err(anyhow!("batch field {name} has a non-array shape {other}")),
        })
        .collect::<Result<Vec<_>>>()?;
    specs.push(BatchSpec::rng_key(RNG_KEY));
    Ok(specs)
}

/// The model's parameters as the step builder takes them (f32 master weights).
pub fn train_param_specs(cfg: &BertConfig) -> Vec<ParamSpec> {
    param_specs(cfg)
        .iter()
        .map(|s| {
            let dims: Vec<i64> = s.dims.iter().map(|&d| d as i64).collect();
            ParamSpec::new(s.name.clone(), &dims)
        })
        .collect()
}

/// BERT's pretraining step for `cfg` run as `exec` on micro-batches of `micro` (the step takes
/// them stacked `[k, ...]` when `step.accumulation_steps` is k > 1).
pub fn train_program(
    cfg: &BertConfig,
    exec: Execution,
    micro: &BatchShapes,
    step: &StepConfig,
) -> Result<TrainProgram> {
    require_fp8_setup(cfg, exec, step)?;
    let params = train_param_specs(cfg);
    let batch = step_batch_specs(micro)?;
    let model = cfg.clone();
    let source = autodiff(move |b, p, batch| {
        let params = ParamValues::from_pairs(p.iter());
        let values = BatchValues::from_lookup(|n| batch.get(n).ok())?;
        let key = batch.get(RNG_KEY)?;
        let (loss, m) = pretraining_loss(b, &model, exec, &params, &values, key, true)?;
        let metrics = [m.mlm_loss, m.nsp_loss, m.mlm_accuracy, m.nsp_accuracy];
        Ok((
            loss,
            STEP_METRICS
                .iter()
                .zip(metrics)
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
        ))
    });
    build_train_step("bert_pretrain_step", &params, &batch, step, &source)
        .context("building the BERT pretraining step")
}

/// The train step of a run, built and lowered: what the compiler is handed.
pub struct LoweredStep {
    /// The model as the run trains it (vocabulary padding included).
    pub model: BertConfig,
    /// How it runs: the run's precision and the attention kernel for its backend.
    pub exec: Execution,
    /// One replica's micro-batch.
    pub micro: BatchShapes,
    /// The step module and the layout of its inputs and outputs.
    pub program: TrainProgram,
    /// `program.module` as HloModuleProto bytes.
    pub proto: Vec<u8>,
    /// `num_replicas` and the backend's option overrides; a multi-process run adds its process
    /// index and device assignment, which do not change the program.
    pub options: CompileOptions,
    pub build: BuildStats,
}

/// The train step a run of `cfg` compiles for `replicas` data-parallel replicas (the devices
/// of every process together): the global batch `train.batch_size` splits into `replicas`
/// shards of `train.accumulation_steps` micro-batches each.
pub fn train_step_module(cfg: &PretrainConfig, replicas: usize) -> Result<LoweredStep> {
    let model = cfg.bert_config()?;
    let exec = cfg.execution(&model)?;
    let k = cfg.train.accumulation_steps as usize;
    let parts = k * replicas;
    let batch = cfg.train.batch_size;
    if parts == 0 || batch == 0 || !batch.is_multiple_of(parts) {
        bail!(
            "train.batch_size (--batch-size) {batch} does not split into {replicas} replica(s) x \
             {k} micro-batch(es) (train.accumulation_steps); make it a positive multiple of \
             {parts}"
        );
    }
    let micro = cfg.batch_shapes(batch / parts);
    let replicas = u32::try_from(replicas).map_err(|_| anyhow!("{replicas} replicas"))?;
    let step = cfg.step_config()?.with_replicas(replicas);
    let started = Instant::now();
    let program = train_program(&model, exec, &micro, &step)?;
    let (proto, build) = lower(&program.module, started)?;
    let options = compile_options_for(exec, program.layout.compile_options());
    Ok(LoweredStep {
        model,
        exec,
        micro,
        program,
        proto,
        options,
        build,
    })
}

/// Writes a program's HloModuleProto bytes (`--dump-program` of `pretrain` and `compile`), so
/// that what two commands hand the compiler can be compared byte for byte.
pub fn write_program(path: &Path, proto: &[u8]) -> Result<()> {
    std::fs::write(path, proto)
        .with_context(|| format!("writing the program's HloModuleProto to {}", path.display()))
}

/// The outputs of [`eval_program`], in order: sums over the batch's real rows. The `mask_*`
/// sums count only the predictions whose input token is `[MASK]` (80% of them in BERT's data):
/// there the token is hidden, while at the other 20% the input shows the original token (10%)
/// or a random one (10%), and copying the input already scores.
pub const EVAL_SUMS: [&str; 8] = [
    "mlm_nll_sum",
    "mlm_weight_sum",
    "mlm_correct_sum",
    "nsp_nll_sum",
    "nsp_correct_sum",
    "examples",
    "mask_weight_sum",
    "mask_correct_sum",
];

/// `(params..., batch fields...) -> (EVAL_SUMS...)`: the pretraining forward pass without
/// dropout. Padding rows (all-zero `input_mask`, as the reader pads a last partial batch) count
/// in no sum: their MLM weights are zero and their NSP term is masked here. `mask_id` is the
/// vocab's `[MASK]` id; the model is `cfg` run as `exec`.
pub fn eval_program(
    cfg: &BertConfig,
    exec: Execution,
    shapes: &BatchShapes,
    mask_id: i32,
) -> Result<Module> {
    if shapes.max_instances_per_row.is_some() {
        bail!("evaluation reads padded batches; build the eval program without packing");
    }
    let mb = ModuleBuilder::new("bert_pretrain_eval");
    let b = mb.builder("eval");
    let params = ParamValues::declare(&b, &param_specs(cfg))?;
    let batch = shapes.declare(&b)?;
    let key = b.constant_slice(&[0u64, 0], &[2])?;
    let out = pretraining_forward(&b, cfg, exec, &params, &batch, key, false)?;
    let n = b.dims(out.mlm_logits)?[0];
    let labels = b.reshape(batch.masked_lm_ids, &[n])?;
    let weights = b.reshape(batch.masked_lm_weights, &[n])?;
    let sum = |v| b.reduce_sum(v, &[0]);
    let (mlm_nll, mlm_correct) = nll_and_correct(&b, out.mlm_logits, labels)?;
    let mlm_nll = sum(b.mul(weights, mlm_nll)?)?;
    let mlm_w = sum(weights)?;
    let mlm_ok = sum(b.mul(weights, mlm_correct)?)?;
    // A real row starts with [CLS] (input_mask 1); padding rows are all zeros.
    let rows = shapes.batch_size as i64;
    let first = b.slice(batch.input_mask, &[0, 0], &[rows, 1], &[1, 1])?;
    let real = b.convert(b.reshape(first, &[rows])?, ElementType::F32)?;
    let (nsp_nll, nsp_ok) = nll_and_correct(&b, out.nsp_logits, batch.next_sentence_labels)?;
    let nsp_nll = sum(b.mul(real, nsp_nll)?)?;
    let nsp_ok = sum(b.mul(real, nsp_ok)?)?;
    let examples = sum(real)?;
    // The input token at each predicted position: input_ids[row, position].
    let (seq, preds) = (shapes.seq_len as i64, shapes.max_predictions as i64);
    let row = b.iota(
        &hlo::ArrayShape::new(ElementType::S32, vec![rows, preds]),
        0,
    )?;
    let flat = b.add(
        batch.masked_lm_positions,
        b.mul(row, b.scalar(seq as i32)?)?,
    )?;
    let flat = b.reshape(flat, &[n])?;
    let shown = b.take(b.reshape(batch.input_ids, &[rows * seq])?, flat, 0)?;
    let at_mask = b.convert(b.eq(shown, b.scalar(mask_id)?)?, ElementType::F32)?;
    let mask_w = b.mul(weights, at_mask)?;
    let mask_weight = sum(mask_w)?;
    let mask_ok = sum(b.mul(mask_w, mlm_correct)?)?;
    let root = b.tuple(&[
        mlm_nll,
        mlm_w,
        mlm_ok,
        nsp_nll,
        nsp_ok,
        examples,
        mask_weight,
        mask_ok,
    ])?;
    let entry = b.finish(root)?;
    Ok(mb.build(entry)?)
}

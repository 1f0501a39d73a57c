//! The step builder: one HLO module per training step,
//!
//! ```text
//! (params..., opt_state..., batch..., step) -> (params'..., opt_state'..., step', loss, metrics...)
//! ```
//! - `params`: f32 master weights, in [`ParamSpec`] order.
//! - `opt_state`: the optimizer's slots, parameter-major (`p0/slot0, p0/slot1, p1/slot0, ...`),
//!   then the loss-scale state under dynamic loss scaling (`loss_scale` f32, `loss_scale_good_steps` s32),
//!   then under FP8 the delayed-scaling state ([`super::fp8`]: per FP8 matmul and quantized
//!   tensor an amax history and a scale).
//! - `batch`: the batch inputs in [`BatchSpec`] order; with accumulation over k micro-batches
//!   each is stacked on a new leading dim of size k.
//! - `step`: s32 scalar, updates applied so far.
//! - outputs: the new params and state (aliased to their inputs, so the inputs are donated), the
//!   new step (aliased too), the mean loss (f32), then the metrics (f32 scalars): the loss
//!   function's own, then `learning_rate`, `grad_norm` (global norm before clipping) and, under
//!   dynamic loss scaling, `loss_scale` (used by this step) and `grads_finite` (1 or 0).
//!
//! Order of operations, as the original BERT: gradients (unscaled when loss scaling), their mean
//! over the data-parallel replicas (with [`StepConfig::replicas`] > 1), global-norm clipping,
//! learning rate from the step before its increment, optimizer update, step + 1.
use super::accumulate::{accumulate, stacked_specs};
use super::clip::{all_finite, clip_by_global_norm, global_norm};
use super::fp8::{Fp8Setup, StepScales};
use super::gradients::{GradientSource, LossAndGrads};
use super::optimizer::{Optimizer, UpdateInputs};
use super::replicas::{all_replicas, fold_replica_id, max_over_replicas, mean_over_replicas};
use super::{check_names, BatchSpec, InputRole, Named, ParamSpec, Policy, Schedule};
use anyhow::{anyhow, bail, Context, Result};
use hlo::{ArrayShape, Builder, ElementType, Literal, Module, ModuleBuilder, Shape, Value};

/// Everything about a step except the model.
pub struct StepConfig {
    pub optimizer: Box<dyn Optimizer>,
    pub schedule: Schedule,
    /// Global-norm clipping threshold; `None` turns clipping off.
    pub clip_norm: Option<f64>,
    /// Micro-batches per step (1: no accumulation).
    pub accumulation_steps: u32,
    pub policy: Policy,
    /// Data-parallel replicas the step is compiled for (`num_replicas`; 1: one device, and the
    /// program has no collective). With N > 1 each replica runs the step on its own shard of the
    /// batch (the batch specs are one replica's shapes) and, as the original BERT's
    /// `CrossShardOptimizer` on TPU, the gradients are averaged across replicas: each replica
    /// computes its loss on its shard (for MLM a weighted mean over the shard's predictions), and
    /// the update uses the mean over replicas of the replicas' gradients. That is the gradient of
    /// the mean of the per-replica losses, which equals the gradient of the global batch's loss
    /// only when every shard carries the same MLM weight (as with accumulation, where the
    /// micro-batches' losses are averaged the same way). The loss and the loss function's metrics
    /// are averaged over replicas too, clipping sees the averaged gradient, and under dynamic loss
    /// scaling a step is skipped on every replica if any replica's gradient is not finite.
    /// Dropout keys ([`InputRole::RngKey`]) get the replica id folded in.
    pub replicas: u32,
    /// FP8 delayed scaling of the model's FP8 matmuls (`None`: the model has none).
    pub fp8: Option<Fp8Setup>,
}

impl StepConfig {
    /// Clipping at 1.0 (as BERT), no accumulation, f32 compute.
    pub fn new(optimizer: impl Optimizer + 'static, schedule: Schedule) -> Self {
        Self {
            optimizer: Box::new(optimizer),
            schedule,
            clip_norm: Some(1.0),
            accumulation_steps: 1,
            policy: Policy::f32(),
            replicas: 1,
            fp8: None,
        }
    }

    pub fn with_clip_norm(mut self, clip: Option<f64>) -> Self {
        self.clip_norm = clip;
        self
    }

    pub fn with_accumulation(mut self, micro_batches: u32) -> Self {
        self.accumulation_steps = micro_batches;
        self
    }

    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    pub fn with_replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    pub fn with_fp8(mut self, fp8: Option<Fp8Setup>) -> Self {
        self.fp8 = fp8;
        self
    }
}

/// One carried state tensor (optimizer slot or loss-scale state) and its initial value.
#[derive(Clone, Debug, PartialEq)]
pub struct StateSpec {
    pub name: String,
    pub shape: ArrayShape,
    pub initial: f64,
}

/// How the step program's inputs and outputs are laid out.
#[derive(Clone, Debug, PartialEq)]
pub struct StepLayout {
    pub params: Vec<ParamSpec>,
    pub opt_state: Vec<StateSpec>,
    /// The batch inputs as the program takes them (stacked `[k, ...]` when accumulating).
    pub batch: Vec<BatchSpec>,
    /// Names of the metric outputs after the loss.
    pub metric_names: Vec<String>,
    pub accumulation_steps: u32,
    /// Data-parallel replicas (the `num_replicas` to compile with); `batch` is one replica's.
    pub replicas: u32,
}

impl StepLayout {
    /// Parameters and optimizer state: the donated inputs, and the first outputs.
    pub fn num_state(&self) -> usize {
        self.params.len() + self.opt_state.len()
    }

    /// Index of the `step` input.
    pub fn step_input(&self) -> usize {
        self.num_state() + self.batch.len()
    }

    /// Index of the `step'` output; the loss follows it, then the metrics.
    pub fn step_output(&self) -> usize {
        self.num_state()
    }

    pub fn num_outputs(&self) -> usize {
        self.num_state() + 2 + self.metric_names.len()
    }

    /// Compile options for this step: `num_replicas` = [`StepLayout::replicas`].
    pub fn compile_options(&self) -> tpu::CompileOptions {
        tpu::CompileOptions::replicas(i64::from(self.replicas))
    }

    /// The dim of batch input `i` along which the whole batch splits into replica shards (its
    /// rows: dim 0 of a micro-batch, dim 1 when stacked for accumulation); `None` for an input
    /// every replica gets whole (a dropout key).
    pub fn shard_dim(&self, i: usize) -> Option<usize> {
        let spec = self.batch.get(i)?;
        match spec.role {
            InputRole::Rows => Some(usize::from(self.accumulation_steps > 1)),
            InputRole::RngKey => None,
        }
    }

    /// The shape of batch input `i` for the whole batch: one replica's with the rows of all.
    pub fn global_batch_shape(&self, i: usize) -> Option<ArrayShape> {
        self.batch_shape_for(i, self.replicas)
    }

    /// The shape of batch input `i` for `replicas` replicas: one replica's with their rows
    /// (in a multi-process run, a process's share of the batch for its local replicas).
    pub fn batch_shape_for(&self, i: usize, replicas: u32) -> Option<ArrayShape> {
        let spec = self.batch.get(i)?;
        let mut shape = spec.shape.clone();
        if let Some(d) = self.shard_dim(i) {
            shape.dims[d] *= i64::from(replicas);
        }
        Some(shape)
    }

    /// The optimizer state at the start of training (zero slots, the initial loss scale).
    pub fn initial_opt_state(&self) -> Result<Vec<Literal>> {
        self.opt_state
            .iter()
            .map(|s| {
                let n = s.shape.num_elements() as usize;
                // Zero slots (the Adam moments: twice the parameters' bytes) come from zeroed
                // allocations that nothing writes, so the pages stay untouched until the upload
                // reads them: no fill and no copy on the way to the first step.
                if s.initial == 0.0 && matches!(s.shape.ty, ElementType::F32 | ElementType::S32) {
                    let bytes = vec![0u8; n * s.shape.ty.byte_size()];
                    return Literal::from_bytes(s.shape.clone(), bytes)
                        .with_context(|| format!("initial value of optimizer state '{}'", s.name));
                }
                let lit = match s.shape.ty {
                    ElementType::F32 => {
                        Literal::from_slice(&vec![s.initial as f32; n], &s.shape.dims)
                    }
                    ElementType::S32 => {
                        Literal::from_slice(&vec![s.initial as i32; n], &s.shape.dims)
                    }
                    t => bail!("optimizer state '{}' has unsupported type {t}", s.name),
                };
                lit.with_context(|| format!("initial value of optimizer state '{}'", s.name))
            })
            .collect()
    }
}

/// The step program and its layout.
#[derive(Clone, Debug)]
pub struct TrainProgram {
    pub module: Module,
    pub layout: StepLayout,
}

/// Emits the train step of the model whose loss and gradients `source` produces.
pub fn build_train_step(
    name: &str,
    params: &[ParamSpec],
    batch: &[BatchSpec],
    config: &StepConfig,
    source: &dyn GradientSource,
) -> Result<TrainProgram> {
    check_inputs(params, batch, config)?;
    let opt = config.optimizer.as_ref();
    let policy = &config.policy;
    let k = config.accumulation_steps;
    let fed_batch = if k > 1 {
        stacked_specs(batch, k)
    } else {
        batch.to_vec()
    };
    let mut opt_state = Vec::new();
    for p in params {
        for slot in opt.slot_names() {
            opt_state.push(StateSpec {
                name: format!("{}/{slot}", p.name),
                shape: p.shape.clone(),
                initial: 0.0,
            });
        }
    }
    let scale_state = policy.loss_scale.state();
    opt_state.extend(scale_state.iter().map(|s| StateSpec {
        name: s.name.to_string(),
        shape: s.shape.clone(),
        initial: s.initial,
    }));
    let fp8 = config.fp8.as_ref();
    opt_state.extend(fp8.map(Fp8Setup::state_specs).unwrap_or_default());

    let mb = ModuleBuilder::new(name);
    let b = mb.builder("train_step");
    let masters = params
        .iter()
        .map(|p| b.parameter(p.shape.clone(), &p.name))
        .collect::<hlo::Result<Vec<_>>>()?;
    let state = opt_state
        .iter()
        .map(|s| b.parameter(s.shape.clone(), &s.name))
        .collect::<hlo::Result<Vec<_>>>()?;
    let batch_values = fed_batch
        .iter()
        .map(|s| b.parameter(s.shape.clone(), &s.name))
        .collect::<hlo::Result<Vec<_>>>()?;
    let step = b.parameter(Shape::scalar(ElementType::S32), "step")?;
    let replicas = config.replicas;
    let batch_values = if replicas > 1 {
        fed_batch
            .iter()
            .zip(batch_values)
            .map(|(spec, v)| match spec.role {
                InputRole::RngKey => fold_replica_id(&b, v),
                InputRole::Rows => Ok(v),
            })
            .collect::<Result<Vec<_>>>()?
    } else {
        batch_values
    };
    let n_slots = opt.slot_names().len();
    let (slots, rest) = state.split_at(params.len() * n_slots);
    let (scale_vals, fp8_vals) = rest.split_at(scale_state.len());

    let seed = policy.loss_scale.scale(&b, scale_vals)?;
    let scales = match fp8 {
        Some(f) => StepScales {
            names: f.scale_names(),
            values: b.with_scope("fp8_scaling", |b| f.scales(b, fp8_vals))?,
        },
        None => StepScales::default(),
    };
    let fb = if k > 1 {
        accumulate(
            &mb,
            &b,
            params,
            &masters,
            &scales,
            batch,
            &batch_values,
            seed,
            k,
            policy,
            source,
        )?
    } else {
        forward_backward(
            &b,
            params,
            &masters,
            &scales,
            batch,
            &batch_values,
            seed,
            policy,
            source,
        )?
    };

    let ForwardBackward { mut lg, mut amaxes } = fb;
    let mut grads = std::mem::take(&mut lg.grads);
    // Name scopes label the step's parts in XLA dumps and profiles (the model names its own).
    if !matches!(policy.loss_scale, super::LossScale::None) {
        let _loss_scale = b.scope("loss_scale");
        grads = grads
            .iter()
            .map(|&g| b.div(g, seed))
            .collect::<hlo::Result<Vec<_>>>()?;
    }
    if replicas > 1 {
        let _replicas = b.scope("replicas");
        let mean = |v: Value| mean_over_replicas(&b, v, replicas);
        grads = grads.into_iter().map(mean).collect::<Result<Vec<_>>>()?;
        lg.loss = mean(lg.loss)?;
        for (_, v) in lg.metrics.iter_mut() {
            *v = mean(*v)?;
        }
        // Every replica records the same amaxes, so their FP8 state stays identical.
        amaxes = amaxes
            .into_iter()
            .map(|a| max_over_replicas(&b, a))
            .collect::<Result<Vec<_>>>()?;
    }
    let finite = if policy.loss_scale.is_dynamic() {
        let _loss_scale = b.scope("loss_scale");
        let ok = all_finite(&b, &grads)?;
        // Every replica sees the same averaged gradient; the vote makes the skip decision
        // identical even if a backend's all-reduce left the replicas a bit apart.
        Some(if replicas > 1 {
            all_replicas(&b, ok)?
        } else {
            ok
        })
    } else {
        None
    };
    let (grads, norm) = {
        let _clip = b.scope("clip");
        match config.clip_norm {
            Some(c) => clip_by_global_norm(&b, &grads, c)?,
            None => {
                let n = global_norm(&b, &grads)?;
                (grads, n)
            }
        }
    };
    let lr = b.with_scope("schedule", |b| config.schedule.lr(b, step))?;

    let optimizer_scope = b.scope("optimizer");
    let mut new_params = Vec::with_capacity(params.len());
    let mut new_slots = Vec::with_capacity(slots.len());
    for (i, p) in params.iter().enumerate() {
        let u = UpdateInputs {
            name: &p.name,
            param: masters[i],
            grad: grads[i],
            slots: &slots[i * n_slots..(i + 1) * n_slots],
            lr,
            step,
        };
        let up = opt
            .update(&b, &u)
            .with_context(|| format!("{} update of parameter '{}'", opt.name(), p.name))?;
        if up.slots.len() != n_slots {
            bail!(
                "{}: update of '{}' returned {} slots, expected {n_slots}",
                opt.name(),
                p.name,
                up.slots.len()
            );
        }
        new_params.push(up.param);
        new_slots.extend(up.slots);
    }

    let one = b.scalar_of(ElementType::S32, 1.0)?;
    let mut outputs = Vec::new();
    let new_step = match finite {
        Some(ok) => {
            // A step with non-finite gradients is skipped: everything stays as it was.
            for (new, old) in new_params.iter_mut().zip(&masters) {
                *new = b.select(ok, *new, *old)?;
            }
            for (new, old) in new_slots.iter_mut().zip(slots) {
                *new = b.select(ok, *new, *old)?;
            }
            b.add(step, b.convert(ok, ElementType::S32)?)?
        }
        None => b.add(step, one)?,
    };
    drop(optimizer_scope);
    outputs.extend(&new_params);
    outputs.extend(&new_slots);
    if let Some(ok) = finite {
        let _loss_scale = b.scope("loss_scale");
        outputs.extend(policy.loss_scale.next_state(&b, scale_vals, ok)?);
    }
    if let Some(f) = fp8 {
        let _fp8 = b.scope("fp8_scaling");
        let mut next = f.next_state(&b, fp8_vals, &scales.values, &amaxes)?;
        if let Some(ok) = finite {
            for (new, old) in next.iter_mut().zip(fp8_vals) {
                *new = b.select(ok, *new, *old)?;
            }
        }
        outputs.extend(next);
    }
    outputs.push(new_step);
    outputs.push(lg.loss);
    let mut metric_names = Vec::new();
    for (n, v) in &lg.metrics {
        metric_names.push(n.clone());
        outputs.push(*v);
    }
    let mut builtin = vec![("learning_rate", lr), ("grad_norm", norm)];
    if let Some(ok) = finite {
        builtin.push(("loss_scale", seed));
        builtin.push(("grads_finite", b.convert(ok, ElementType::F32)?));
    }
    for (n, v) in builtin {
        if metric_names.iter().any(|m| m == n) {
            bail!("the loss function returns a metric named '{n}', which the step reports itself; rename it");
        }
        metric_names.push(n.to_string());
        outputs.push(v);
    }
    check_names("metric", metric_names.iter().map(String::as_str))?;

    let entry = b.finish(b.tuple(&outputs)?)?;
    let mut module = mb.build(entry)?;
    let layout = StepLayout {
        params: params.to_vec(),
        opt_state,
        batch: fed_batch,
        metric_names,
        accumulation_steps: k,
        replicas,
    };
    for i in 0..layout.num_state() {
        module.alias_output_to_param(i as i64, i as u32);
    }
    module.alias_output_to_param(layout.step_output() as i64, layout.step_input() as u32);
    Ok(TrainProgram { module, layout })
}

fn check_inputs(params: &[ParamSpec], batch: &[BatchSpec], config: &StepConfig) -> Result<()> {
    if params.is_empty() {
        bail!("train step: no parameters to train");
    }
    check_names("parameter", params.iter().map(|p| p.name.as_str()))?;
    check_names("batch input", batch.iter().map(|p| p.name.as_str()))?;
    for p in params {
        if p.shape.ty != ElementType::F32 {
            bail!(
                "parameter '{}' is {}; master weights must be f32 (the policy sets the compute type)",
                p.name,
                p.shape
            );
        }
    }
    if config.accumulation_steps == 0 {
        bail!("train step: accumulation_steps must be >= 1");
    }
    if config.replicas == 0 {
        bail!("train step: replicas must be >= 1");
    }
    for s in batch {
        match s.role {
            InputRole::RngKey => {
                let key = ArrayShape::new(ElementType::U64, vec![2]);
                if s.shape != key {
                    bail!(
                        "batch input '{}' is a dropout key and must be {key}, got {}",
                        s.name,
                        s.shape
                    );
                }
            }
            InputRole::Rows if config.replicas > 1 && s.shape.rank() == 0 => bail!(
                "batch input '{}' is a scalar; with {} replicas every batch input needs rows \
                 (dim 0) to split, or must be a dropout key",
                s.name,
                config.replicas
            ),
            InputRole::Rows => {}
        }
    }
    config.policy.check()?;
    if let Some(f) = &config.fp8 {
        f.check()?;
    }
    Ok(())
}

/// What one forward-backward pass yields: loss, metrics and f32 gradients, and under FP8 the
/// amax of each quantized tensor (f32 scalars, in [`Fp8Setup::tensors`] order).
pub(crate) struct ForwardBackward {
    pub lg: LossAndGrads,
    pub amaxes: Vec<Value>,
}

/// Casts the masters per the policy, runs the gradient source (with respect to the masters and
/// the FP8 scales, which the loss function sees by name after the parameters), checks what it
/// returned and brings loss, metrics and gradients to f32; the scales' "gradients" are their
/// tensors' amaxes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_backward(
    b: &Builder,
    params: &[ParamSpec],
    masters: &[Value],
    scales: &StepScales,
    batch: &[BatchSpec],
    batch_values: &[Value],
    seed: Value,
    policy: &Policy,
    source: &dyn GradientSource,
) -> Result<ForwardBackward> {
    let mut seen = masters
        .iter()
        .map(|&m| policy.cast(b, m))
        .collect::<Result<Vec<_>>>()?;
    seen.extend(&scales.values);
    let mut names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    names.extend(scales.names.iter().cloned());
    let p = Named::new("parameter", names, seen);
    let bt = Named::new(
        "batch input",
        batch.iter().map(|s| s.name.clone()).collect(),
        batch_values.to_vec(),
    );
    let wrt: Vec<Value> = masters.iter().chain(&scales.values).copied().collect();
    let mut lg = source.loss_and_grads(b, &wrt, &p, &bt, seed)?;
    if lg.grads.len() != wrt.len() && !scales.values.is_empty() {
        bail!(
            "the gradient source returned {} gradients for {} parameters and {} FP8 scales; FP8 \
             scaling needs the gradients with respect to the scales (autodiff)",
            lg.grads.len(),
            params.len(),
            scales.values.len()
        );
    }
    let amaxes = if scales.values.is_empty() {
        vec![]
    } else {
        lg.grads.split_off(params.len())
    };
    check_loss_and_grads(b, &lg, params)?;
    let f32 = |v: Value| b.convert(v, ElementType::F32);
    Ok(ForwardBackward {
        lg: LossAndGrads {
            loss: f32(lg.loss)?,
            metrics: lg
                .metrics
                .iter()
                .map(|(n, v)| Ok((n.clone(), f32(*v)?)))
                .collect::<Result<Vec<_>>>()?,
            grads: lg
                .grads
                .iter()
                .map(|&g| f32(g))
                .collect::<hlo::Result<Vec<_>>>()?,
        },
        amaxes: amaxes
            .into_iter()
            .map(f32)
            .collect::<hlo::Result<Vec<_>>>()?,
    })
}

/// The loss and metrics are float scalars; one gradient per parameter, of its dims.
pub(crate) fn check_loss_and_grads(
    b: &Builder,
    lg: &LossAndGrads,
    params: &[ParamSpec],
) -> Result<()> {
    let scalar_float = |what: &str, v: Value| -> Result<()> {
        let a = b.array_shape(v, "train step")?;
        if !a.is_scalar() || !a.ty.is_float() {
            bail!("the {what} must be a floating-point scalar, got {a}");
        }
        Ok(())
    };
    scalar_float("loss", lg.loss)?;
    for (n, v) in &lg.metrics {
        scalar_float(&format!("metric '{n}'"), *v)?;
    }
    if lg.grads.len() != params.len() {
        bail!(
            "got {} gradients for {} parameters",
            lg.grads.len(),
            params.len()
        );
    }
    for (g, p) in lg.grads.iter().zip(params) {
        let a = b
            .array_shape(*g, "train step")
            .map_err(|e| anyhow!("gradient of '{}': {e}", p.name))?;
        if a.dims != p.shape.dims || !a.ty.is_float() {
            bail!(
                "the gradient of parameter '{}' is {a}; expected floating point of dims {:?}",
                p.name,
                p.shape.dims
            );
        }
    }
    Ok(())
}

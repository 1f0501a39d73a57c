//! Gradient accumulation over k micro-batches inside the step program.
//!
//! The program takes each batch input stacked on a new leading dim of size k and runs a while
//! loop over it: iteration i slices micro-batch i, computes its loss and gradients, and adds them
//! to f32 accumulators; after the loop the sums are divided by k. With a loss that is a mean over
//! the batch and equal micro-batches, that is exactly the gradient of the big batch's mean loss.
//!
//! Why a loop in one program (rather than unrolling, or a separate accumulate program): the
//! program's size and XLA's compile time do not grow with k; only one micro-batch's activations
//! are live at a time (the point of accumulating); and the optimizer update still runs in the
//! same executable, with no extra launches or host round trips per micro-batch.
//!
//! The forward and backward pass of one micro-batch is its own computation
//! (`(masters..., seed, fp8 scales..., micro-batch...) -> (loss, metrics..., grads..., amaxes...)`)
//! called from the loop body, because the loop state's shape depends on how many metrics the
//! loss function returns, which is only known once it has been built. Under FP8 every
//! micro-batch quantizes with the step's scales, and the step records the largest amax of any
//! micro-batch (a max, not a mean).
use super::fp8::StepScales;
use super::gradients::{GradientSource, LossAndGrads};
use super::step::{check_loss_and_grads, ForwardBackward};
use super::{BatchSpec, ParamSpec, Policy};
use anyhow::{anyhow, Result};
use hlo::{Builder, ElementType, ModuleBuilder, Shape, Value};

/// Builds the micro-batch computation and the loop in `b`; returns the mean loss, the mean
/// metrics and the mean f32 gradients over the `k` micro-batches stacked in `stacked`, and the
/// largest amax of each FP8 scale.
#[allow(clippy::too_many_arguments)]
pub(crate) fn accumulate(
    mb: &ModuleBuilder,
    b: &Builder,
    params: &[ParamSpec],
    masters: &[Value],
    scales: &StepScales,
    micro_specs: &[BatchSpec],
    stacked: &[Value],
    seed: Value,
    k: u32,
    policy: &Policy,
    source: &dyn GradientSource,
) -> Result<ForwardBackward> {
    // micro(masters..., seed, scales..., micro-batch...) -> (loss, metrics..., grads...,
    // amaxes...), all in f32.
    let f32s = Shape::scalar(ElementType::F32);
    let mc = mb.builder("micro_batch");
    let m_masters = params
        .iter()
        .map(|p| mc.parameter(p.shape.clone(), &p.name))
        .collect::<hlo::Result<Vec<_>>>()?;
    let m_seed = mc.parameter(f32s.clone(), "seed")?;
    let m_scales = StepScales {
        names: scales.names.clone(),
        values: scales
            .names
            .iter()
            .map(|n| mc.parameter(f32s.clone(), n))
            .collect::<hlo::Result<Vec<_>>>()?,
    };
    let m_batch = micro_specs
        .iter()
        .map(|s| mc.parameter(s.shape.clone(), &s.name))
        .collect::<hlo::Result<Vec<_>>>()?;
    let fb = super::step::forward_backward(
        &mc,
        params,
        &m_masters,
        &m_scales,
        micro_specs,
        &m_batch,
        m_seed,
        policy,
        source,
    )?;
    let lg = &fb.lg;
    let n_metrics = lg.metrics.len();
    let na = fb.amaxes.len();
    let mut outs = vec![lg.loss];
    outs.extend(lg.metrics.iter().map(|(_, v)| *v));
    outs.extend(&lg.grads);
    outs.extend(&fb.amaxes);
    let micro = mc.finish(mc.tuple(&outs)?)?;

    // Loop state: (i, masters..., seed, scales..., stacked batch..., loss_acc, metric_accs...,
    // grad_accs..., amax_accs...).
    let np = params.len();
    let ns = scales.values.len();
    let nb = stacked.len();
    let mut state_shapes = vec![Shape::scalar(ElementType::S32)];
    state_shapes.extend(params.iter().map(|p| Shape::Array(p.shape.clone())));
    state_shapes.extend(vec![f32s.clone(); 1 + ns]);
    for &s in stacked {
        state_shapes.push(b.shape(s)?);
    }
    state_shapes.extend(vec![f32s.clone(); 1 + n_metrics]);
    state_shapes.extend(params.iter().map(|p| Shape::Array(p.shape.clone())));
    state_shapes.extend(vec![f32s; na]);
    let state_shape = Shape::Tuple(state_shapes);
    let batch0 = 2 + np + ns; // index of the first stacked batch input in the state
    let acc0 = batch0 + nb; // index of loss_acc

    let cb = mb.builder("accumulate_cond");
    let st = cb.parameter(state_shape.clone(), "state")?;
    let i = cb.get_tuple_element(st, 0)?;
    let cond = cb.finish(cb.lt(i, cb.scalar_of(ElementType::S32, f64::from(k))?)?)?;

    let bb = mb.builder("accumulate_body");
    let st = bb.parameter(state_shape, "state")?;
    let gte = |j: usize| bb.get_tuple_element(st, j as i64);
    let i = gte(0)?;
    let mut args = (1..batch0).map(gte).collect::<hlo::Result<Vec<_>>>()?;
    for (j, spec) in micro_specs.iter().enumerate() {
        let whole = gte(batch0 + j)?;
        let zero = bb.scalar_of(ElementType::S32, 0.0)?;
        let mut starts = vec![i];
        starts.extend(vec![zero; spec.shape.rank()]);
        let mut sizes = vec![1];
        sizes.extend(&spec.shape.dims);
        let slice = bb.dynamic_slice(whole, &starts, &sizes)?;
        args.push(bb.reshape(slice, &spec.shape.dims)?);
    }
    let r = bb.call(micro, &args)?;
    let mut next = vec![bb.add(i, bb.scalar_of(ElementType::S32, 1.0)?)?];
    next.extend((1..acc0).map(gte).collect::<hlo::Result<Vec<_>>>()?);
    for j in 0..1 + n_metrics + np {
        next.push(bb.add(gte(acc0 + j)?, bb.get_tuple_element(r, j as i64)?)?);
    }
    for j in 1 + n_metrics + np..1 + n_metrics + np + na {
        next.push(bb.max(gte(acc0 + j)?, bb.get_tuple_element(r, j as i64)?)?);
    }
    let body = bb.finish(bb.tuple(&next)?)?;

    let mut init = vec![b.scalar_of(ElementType::S32, 0.0)?];
    init.extend(masters);
    init.push(seed);
    init.extend(&scales.values);
    init.extend(stacked);
    for _ in 0..1 + n_metrics {
        init.push(b.scalar_of(ElementType::F32, 0.0)?);
    }
    for &m in masters {
        init.push(b.zeros_like(m)?);
    }
    // amaxes are >= 0 (or NaN, which max keeps), so 0 is max's identity here.
    for _ in 0..na {
        init.push(b.scalar_of(ElementType::F32, 0.0)?);
    }
    let out = b.while_loop(cond, body, b.tuple(&init)?)?;
    let inv_k = b.scalar_of(ElementType::F32, 1.0 / f64::from(k))?;
    let mean = |j: usize| -> Result<Value> {
        Ok(b.mul(b.get_tuple_element(out, (acc0 + j) as i64)?, inv_k)?)
    };
    let loss = mean(0)?;
    let metrics = lg
        .metrics
        .iter()
        .enumerate()
        .map(|(j, (name, _))| Ok((name.clone(), mean(1 + j)?)))
        .collect::<Result<Vec<_>>>()?;
    let grads = (0..np)
        .map(|j| mean(1 + n_metrics + j))
        .collect::<Result<Vec<_>>>()?;
    let amaxes = (0..na)
        .map(|j| b.get_tuple_element(out, (acc0 + 1 + n_metrics + np + j) as i64))
        .collect::<hlo::Result<Vec<_>>>()?;
    let lg = LossAndGrads {
        loss,
        metrics,
        grads,
    };
    check_loss_and_grads(b, &lg, params).map_err(|e| anyhow!("gradient accumulation: {e}"))?;
    Ok(ForwardBackward { lg, amaxes })
}

/// The specs of the stacked batch inputs `[k, ...]` the program takes for micro-batch specs.
pub(crate) fn stacked_specs(micro: &[BatchSpec], k: u32) -> Vec<BatchSpec> {
    micro
        .iter()
        .map(|s| {
            let mut dims = vec![i64::from(k)];
            dims.extend(&s.shape.dims);
            BatchSpec {
                name: s.name.clone(),
                shape: hlo::ArrayShape::new(s.shape.ty, dims),
                role: s.role,
            }
        })
        .collect()
}

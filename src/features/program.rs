//! The forward program of feature extraction: the encoder in eval mode (no dropout), returning
//! the outputs of the requested layers as f32 `[batch, seq, hidden]` (converted from the compute
//! dtype), and [`Extractor`], which compiles it once for one batch size and runs it batch by
//! batch (the last batch padded with all-zero rows whose results are dropped).
use super::layout::Feature;
use crate::backend::compile_options_for;
use crate::model::params::{encoder_param_specs, names};
use crate::model::{
    encoder_layer_outputs, BertConfig, EncoderInputs, Execution, ParamSet, ParamSpec, ParamValues,
};
use anyhow::{anyhow, bail, Context, Result};
use hlo::{ElementType, Literal, Module, ModuleBuilder, Shape};
use std::time::{Duration, Instant};
use tpu::{Buffer, Client, CompileOptions, Device, Executable};

/// The model's parameters: the encoder's (embeddings, layers), without the pooler, which no
/// layer output depends on.
pub fn feature_param_specs(cfg: &BertConfig) -> Vec<ParamSpec> {
    encoder_param_specs(cfg)
        .into_iter()
        .filter(|s| !s.name.starts_with(names::POOLER))
        .collect()
}

/// `(params..., input_ids, input_mask, segment_ids) -> (layer outputs...)`: s32 `[batch, seq]`
/// inputs, one f32 `[batch, seq, hidden]` output per entry of `layers` (0-based layer numbers);
/// parameters in [`feature_param_specs`] order.
pub fn extract_program(
    cfg: &BertConfig,
    exec: Execution,
    layers: &[usize],
    batch: usize,
    seq: usize,
) -> Result<Module> {
    let mb = ModuleBuilder::new("bert_extract_features");
    let b = mb.builder("extract");
    let params = ParamValues::declare(&b, &feature_param_specs(cfg))?;
    let dims = vec![batch as i64, seq as i64];
    let field = |name: &str| b.parameter(Shape::array(ElementType::S32, dims.clone()), name);
    let inputs = EncoderInputs {
        input_ids: field("input_ids")?,
        input_mask: field("input_mask")?,
        segment_ids: field("segment_ids")?,
    };
    let key = b.constant_slice(&[0u64, 0], &[2])?;
    let all = encoder_layer_outputs(&b, cfg, exec, &params, &inputs, key, false)?;
    let mut outs = Vec::with_capacity(layers.len());
    for &l in layers {
        let v = all.get(l).ok_or_else(|| {
            anyhow!(
                "layer {l} requested of a {}-layer encoder",
                cfg.num_hidden_layers
            )
        })?;
        outs.push(b.convert(*v, ElementType::F32)?);
    }
    let entry = b.finish(b.tuple(&outs)?)?;
    Ok(mb.build(entry)?)
}

/// The compiled program with the parameters on its device.
pub struct Extractor {
    exe: Executable,
    params: Vec<Buffer>,
    device: Device,
    batch: usize,
    seq: usize,
    hidden: usize,
    num_outputs: usize,
    pub compile_time: Duration,
}

impl Extractor {
    /// Compiles [`extract_program`] for batches of `batch` x `seq` and uploads `params` (which
    /// must hold every [`feature_param_specs`] entry).
    pub fn new(
        client: &Client,
        cfg: &BertConfig,
        exec: Execution,
        params: &ParamSet,
        layers: &[usize],
        batch: usize,
        seq: usize,
    ) -> Result<Self> {
        if batch == 0 || seq == 0 || layers.is_empty() {
            bail!("feature extraction needs a batch size, a sequence length and a layer");
        }
        let module = extract_program(cfg, exec, layers, batch, seq)?;
        let t0 = Instant::now();
        let exe = client
            .compile_module(
                &module,
                &compile_options_for(exec, CompileOptions::default()),
            )
            .context("compiling the feature extraction program")?;
        let compile_time = t0.elapsed();
        let device = client
            .addressable_devices()?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the backend has no device"))?;
        let mut bufs = vec![];
        for spec in feature_param_specs(cfg) {
            let t = params
                .get(&spec.name)
                .ok_or_else(|| anyhow!("the weights have no parameter '{}'", spec.name))?;
            let dims: Vec<i64> = spec.dims.iter().map(|&d| d as i64).collect();
            let lit = Literal::from_slice(&t.data, &dims)
                .with_context(|| format!("parameter '{}'", spec.name))?;
            bufs.push(client.buffer_from_host_bytes(
                lit.element_type(),
                lit.bytes(),
                &lit.shape().dims,
                &device,
            )?);
        }
        Ok(Self {
            exe,
            params: bufs,
            device,
            batch,
            seq,
            hidden: cfg.hidden_size,
            num_outputs: layers.len(),
            compile_time,
        })
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// The requested layers' outputs for `rows` (at most the batch size): per layer,
    /// `rows.len() x seq x hidden` f32 values, row-major.
    pub fn run(&self, rows: &[Feature]) -> Result<Vec<Vec<f32>>> {
        let (n, s) = (rows.len(), self.seq);
        if n > self.batch {
            bail!("{n} rows do not fit a batch of {}", self.batch);
        }
        let dims = [self.batch as i64, s as i64];
        let mut fields: [Vec<i32>; 3] = std::array::from_fn(|_| vec![0i32; self.batch * s]);
        for (slot, f) in rows.iter().enumerate() {
            if f.input_ids.len() != s || f.segment_ids.len() != s {
                bail!(
                    "a feature of length {} for a program of length {s}",
                    f.input_ids.len()
                );
            }
            let span = slot * s..(slot + 1) * s;
            fields[0][span.clone()].copy_from_slice(&f.input_ids);
            fields[1][span.clone()].copy_from_slice(&f.input_mask());
            fields[2][span].copy_from_slice(&f.segment_ids);
        }
        let client = self.exe.client();
        let mut inputs = vec![];
        for values in &fields {
            let lit = Literal::from_slice(values, &dims)?;
            inputs.push(client.buffer_from_host_bytes(
                lit.element_type(),
                lit.bytes(),
                &lit.shape().dims,
                &self.device,
            )?);
        }
        let mut args: Vec<&Buffer> = self.params.iter().collect();
        args.extend(inputs.iter());
        let outs = self
            .exe
            .execute(&args)
            .context("running feature extraction")?;
        if outs.len() != self.num_outputs {
            bail!(
                "the extraction program returned {} outputs, not {}",
                outs.len(),
                self.num_outputs
            );
        }
        let keep = n * s * self.hidden;
        outs.iter()
            .map(|o| {
                let mut v = o.to_host::<f32>()?;
                if v.len() != self.batch * s * self.hidden {
                    bail!(
                        "the extraction program returned {} values for a {}x{s}x{} batch",
                        v.len(),
                        self.batch,
                        self.hidden
                    );
                }
                v.truncate(keep);
                Ok(v)
            })
            .collect()
    }
}

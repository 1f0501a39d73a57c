//! Prediction: the encoder and QA head in eval mode (no dropout) over every feature, batch by
//! batch (the last batch padded with all-zero rows whose results are dropped), then run_squad's
//! post-processing and the output files.
use super::batches::{FeatureArrays, ENCODER_FIELDS};
use super::qa_head::{squad_logits, squad_param_specs};
use crate::backend::compile_options_for;
use crate::model::{BertConfig, EncoderInputs, ParamValues};
use crate::squad::RawResult;
use anyhow::{anyhow, bail, Context, Result};
use hlo::{ElementType, Literal, Module, ModuleBuilder, Shape};
use std::time::{Duration, Instant};
use tpu::{Buffer, Client, CompileOptions, Device, Executable};

/// `(params..., input_ids, input_mask, segment_ids) -> (start_logits, end_logits)`, f32
/// `[batch, seq]` each; parameters in [`squad_param_specs`] order.
pub fn predict_program(cfg: &BertConfig, batch: usize, seq: usize) -> Result<Module> {
    let mb = ModuleBuilder::new("bert_squad_predict");
    let b = mb.builder("predict");
    let params = ParamValues::declare(&b, &squad_param_specs(cfg))?;
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
    let (start, end) = squad_logits(&b, cfg, &params, &inputs, key, false)?;
    let entry = b.finish(b.tuple(&[start, end])?)?;
    Ok(mb.build(entry)?)
}

/// The compiled prediction program with the parameters on its device.
pub struct Predictor {
    exe: Executable,
    params: Vec<Buffer>,
    batch: usize,
    seq: usize,
    pub compile_time: Duration,
}

impl Predictor {
    /// Compiles the program for batches of `batch` x `seq` and uploads `params` (in
    /// [`squad_param_specs`] order, with their names).
    pub fn new(
        client: &Client,
        cfg: &BertConfig,
        params: &[(String, Literal)],
        batch: usize,
        seq: usize,
    ) -> Result<Self> {
        let specs = squad_param_specs(cfg);
        if specs.len() != params.len() {
            bail!(
                "prediction takes {} parameters, got {}",
                specs.len(),
                params.len()
            );
        }
        let module = predict_program(cfg, batch, seq)?;
        let t0 = Instant::now();
        let exe = client
            .compile_module(
                &module,
                &compile_options_for(cfg, CompileOptions::default()),
            )
            .context("compiling the SQuAD prediction program")?;
        let compile_time = t0.elapsed();
        let device: Device = client
            .addressable_devices()?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the backend has no device"))?;
        let mut bufs = Vec::with_capacity(params.len());
        for (spec, (name, lit)) in specs.iter().zip(params) {
            if *name != spec.name {
                bail!(
                    "prediction parameter {} is '{name}', expected '{}'",
                    bufs.len(),
                    spec.name
                );
            }
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
            batch,
            seq,
            compile_time,
        })
    }

    /// The start and end logits of every feature, in order, tagged with `unique_ids`.
    pub fn run(&self, features: &FeatureArrays, unique_ids: &[u64]) -> Result<Vec<RawResult>> {
        if features.seq_len != self.seq || unique_ids.len() != features.len() {
            bail!(
                "prediction: {} features of length {} with {} ids; the program takes length {}",
                features.len(),
                features.seq_len,
                unique_ids.len(),
                self.seq
            );
        }
        let client = self.exe.client();
        let device = self
            .exe
            .addressable_devices()
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("the prediction program has no device"))?;
        let rows: Vec<usize> = (0..features.len()).collect();
        let mut out = Vec::with_capacity(features.len());
        for chunk in rows.chunks(self.batch) {
            let lits = features.encoder_literals(chunk, self.batch)?;
            let inputs = lits
                .iter()
                .map(|l| {
                    client.buffer_from_host_bytes(
                        l.element_type(),
                        l.bytes(),
                        &l.shape().dims,
                        &device,
                    )
                })
                .collect::<tpu::Result<Vec<_>>>()?;
            let mut args: Vec<&Buffer> = self.params.iter().collect();
            args.extend(inputs.iter());
            let outs = self.exe.execute(&args).context("running prediction")?;
            let [start, end] = &outs[..] else {
                bail!(
                    "the prediction program returned {} outputs, not 2",
                    outs.len()
                );
            };
            let (start, end) = (start.to_host::<f32>()?, end.to_host::<f32>()?);
            let s = self.seq;
            if start.len() != self.batch * s || end.len() != self.batch * s {
                bail!(
                    "the prediction program returned {} and {} logits for a {}x{s} batch",
                    start.len(),
                    end.len(),
                    self.batch
                );
            }
            for (slot, &row) in chunk.iter().enumerate() {
                out.push(RawResult {
                    unique_id: unique_ids[row],
                    start_logits: start[slot * s..(slot + 1) * s].to_vec(),
                    end_logits: end[slot * s..(slot + 1) * s].to_vec(),
                });
            }
        }
        Ok(out)
    }
}

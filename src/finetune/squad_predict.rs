//! Prediction: the encoder and QA head in eval mode (no dropout) over every feature, batch by
//! batch (the last batch padded with all-zero rows whose results are dropped), then run_squad's
//! post-processing and the output files.
use super::batches::{FeatureArrays, ENCODER_FIELDS};
use super::eval_program::EvalProgram;
use super::qa_head::{squad_logits, squad_param_specs};
use crate::model::{BertConfig, EncoderInputs, Execution, ParamValues};
use crate::squad::RawResult;
use anyhow::{bail, Result};
use hlo::{ElementType, Literal, Module, ModuleBuilder, Shape};
use std::time::Duration;
use tpu::Client;

/// `(params..., input_ids, input_mask, segment_ids) -> (start_logits, end_logits)`, f32
/// `[batch, seq]` each; parameters in [`squad_param_specs`] order.
pub fn predict_program(
    cfg: &BertConfig,
    exec: Execution,
    batch: usize,
    seq: usize,
) -> Result<Module> {
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
    let (start, end) = squad_logits(&b, cfg, exec, &params, &inputs, key, false)?;
    let entry = b.finish(b.tuple(&[start, end])?)?;
    Ok(mb.build(entry)?)
}

/// The compiled prediction program with the parameters on its device.
pub struct Predictor {
    program: EvalProgram,
    seq: usize,
    pub compile_time: Duration,
}

impl Predictor {
    /// Compiles the program for batches of `batch` x `seq` and uploads `params` (in
    /// [`squad_param_specs`] order, with their names).
    pub fn new(
        client: &Client,
        cfg: &BertConfig,
        exec: Execution,
        params: &[(String, Literal)],
        batch: usize,
        seq: usize,
    ) -> Result<Self> {
        let module = predict_program(cfg, exec, batch, seq)?;
        let specs = squad_param_specs(cfg);
        let program = EvalProgram::new(
            client,
            exec,
            &module,
            &specs,
            params,
            batch,
            "SQuAD prediction",
        )?;
        let compile_time = program.compile_time;
        Ok(Self {
            program,
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
        let s = self.seq;
        let mut out = Vec::with_capacity(features.len());
        self.program.run(
            features.len(),
            &[s, s],
            &|rows, batch| features.encoder_literals(rows, batch),
            &mut |rows, values| {
                let [start, end] = &values[..] else {
                    bail!("the SQuAD prediction program returns start and end logits");
                };
                for (slot, &row) in rows.iter().enumerate() {
                    out.push(RawResult {
                        unique_id: unique_ids[row],
                        start_logits: start[slot * s..(slot + 1) * s].to_vec(),
                        end_logits: end[slot * s..(slot + 1) * s].to_vec(),
                    });
                }
                Ok(())
            },
        )?;
        Ok(out)
    }
}

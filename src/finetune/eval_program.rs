//! An eval-mode program (no dropout) run over many rows in fixed-size batches: compiled once with
//! the parameters kept on the device, each batch of rows padded with all-zero rows up to the
//! program's batch (their results are dropped), every output read back as f32 rows, the next
//! batch launched before the previous one is read. SQuAD prediction and GLUE evaluation both
//! run through it.
use crate::backend::compile_options_for;
use crate::model::{Execution, ParamSpec};
use anyhow::{anyhow, bail, Context, Result};
use hlo::{Literal, Module};
use std::time::{Duration, Instant};
use tpu::{Buffer, Client, CompileOptions};

/// The batch inputs of some rows, padded to the program's batch: `(rows, batch) -> inputs`.
pub type BatchInputs<'a> = dyn Fn(&[usize], usize) -> Result<Vec<Literal>> + 'a;
/// Receives each batch's outputs: `(rows, outputs as f32)`.
pub type TakeOutputs<'a> = dyn FnMut(&[usize], Vec<Vec<f32>>) -> Result<()> + 'a;

/// A compiled eval program with its parameters on its device.
pub struct EvalProgram {
    exe: tpu::Executable,
    params: Vec<Buffer>,
    batch: usize,
    what: String,
    pub compile_time: Duration,
}

impl EvalProgram {
    /// Compiles `module` (parameters first, in `specs` order, then the batch inputs) and
    /// uploads `params` (named, in that order); `exec` is how `module` was built. `what` names
    /// the program in errors.
    pub fn new(
        client: &Client,
        exec: Execution,
        module: &Module,
        specs: &[ParamSpec],
        params: &[(String, Literal)],
        batch: usize,
        what: &str,
    ) -> Result<Self> {
        if specs.len() != params.len() {
            bail!(
                "the {what} program takes {} parameters, got {}",
                specs.len(),
                params.len()
            );
        }
        let t0 = Instant::now();
        let exe = client
            .compile_module(
                module,
                &compile_options_for(exec, CompileOptions::default()),
            )
            .with_context(|| format!("compiling the {what} program"))?;
        let compile_time = t0.elapsed();
        let device = exe
            .addressable_devices()
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("the {what} program has no device"))?;
        let mut bufs = Vec::with_capacity(params.len());
        for (spec, (name, lit)) in specs.iter().zip(params) {
            if *name != spec.name {
                bail!(
                    "{what} parameter {} is '{name}', expected '{}'",
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
            what: what.to_string(),
            compile_time,
        })
    }

    /// The program's batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Runs rows `0..rows` batch by batch: `inputs(chunk, batch)` gives the batch inputs of the
    /// rows in `chunk` padded to `batch`; `take(chunk, outputs)` gets every output as f32,
    /// `per_row[i]` values for each of the `batch` slots (slot k holds `chunk[k]`).
    pub fn run(
        &self,
        rows: usize,
        per_row: &[usize],
        inputs: &BatchInputs,
        take: &mut TakeOutputs,
    ) -> Result<()> {
        let what = &self.what;
        let client = self.exe.client();
        let device = self
            .exe
            .addressable_devices()
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("the {what} program has no device"))?;
        let all: Vec<usize> = (0..rows).collect();
        // One batch in flight while the previous one is read back.
        let mut pending: Option<Launched> = None;
        for chunk in all.chunks(self.batch) {
            let lits = inputs(chunk, self.batch)?;
            let bufs = lits
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
            args.extend(bufs.iter());
            let (outs, execution) = self
                .exe
                .launch(&args)
                .with_context(|| format!("running the {what} program"))?;
            drop(args);
            let launched = Launched {
                rows: chunk.to_vec(),
                outs,
                execution,
                _inputs: bufs,
            };
            if let Some(done) = pending.replace(launched) {
                self.read(done, per_row, take)?;
            }
        }
        if let Some(done) = pending {
            self.read(done, per_row, take)?;
        }
        Ok(())
    }

    /// Waits for a launched batch and hands its outputs to `take`.
    fn read(&self, done: Launched, per_row: &[usize], take: &mut TakeOutputs) -> Result<()> {
        let what = &self.what;
        done.execution
            .wait()
            .with_context(|| format!("running the {what} program"))?;
        if done.outs.len() != per_row.len() {
            bail!(
                "the {what} program returned {} outputs, not {}",
                done.outs.len(),
                per_row.len()
            );
        }
        let mut values = Vec::with_capacity(done.outs.len());
        for (o, &n) in done.outs.iter().zip(per_row) {
            let v = o.to_host::<f32>()?;
            if v.len() != self.batch * n {
                bail!(
                    "the {what} program returned {} values for {} rows of {n}",
                    v.len(),
                    self.batch
                );
            }
            values.push(v);
        }
        take(&done.rows, values)
    }
}

/// A batch launched and not yet read (its inputs stay alive with it).
struct Launched {
    rows: Vec<usize>,
    outs: Vec<Buffer>,
    execution: tpu::Execution,
    _inputs: Vec<Buffer>,
}

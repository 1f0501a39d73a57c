//! Running the compiled step: [`Trainer`] holds the parameters, optimizer state and step count as
//! device buffers, feeds batches and returns the metrics. The step donates its state inputs: each
//! run consumes the held buffers and the outputs become the new state, so parameters and
//! optimizer state are updated in place on the device.
use super::step::{StepLayout, TrainProgram};
use anyhow::{anyhow, bail, Context, Result};
use hlo::{ArrayShape, Literal};
use tpu::{Buffer, Client, CompileOptions, Device, Executable};

/// The loss and named metrics of one step, read back to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMetrics {
    pub loss: f32,
    pub metrics: Vec<(String, f32)>,
}

impl StepMetrics {
    pub fn get(&self, name: &str) -> Option<f32> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// The device state of a training run and the executable that advances it.
pub struct Trainer {
    exe: Executable,
    layout: StepLayout,
    device: Device,
    /// Parameters then optimizer state, in layout order.
    state: Vec<Buffer>,
    step: Buffer,
}

impl Trainer {
    /// Compiles `program` on the client's first device and uploads `params` (in layout order),
    /// the initial optimizer state and step 0.
    pub fn new(client: &Client, program: &TrainProgram, params: &[Literal]) -> Result<Self> {
        let device = client
            .addressable_devices()?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the PJRT client has no addressable device"))?;
        let exe = client
            .compile_module(&program.module, &CompileOptions::default())
            .with_context(|| format!("compiling train step '{}'", program.module.name))?;
        let opt_state = program.layout.initial_opt_state()?;
        Self::from_state(exe, program.layout.clone(), device, params, &opt_state, 0)
    }

    /// Starts from given parameters, optimizer state and step (e.g. a checkpoint).
    pub fn from_state(
        exe: Executable,
        layout: StepLayout,
        device: Device,
        params: &[Literal],
        opt_state: &[Literal],
        step: i32,
    ) -> Result<Self> {
        if params.len() != layout.params.len() || opt_state.len() != layout.opt_state.len() {
            bail!(
                "train state: got {} parameters and {} optimizer state tensors, the step takes {} and {}",
                params.len(),
                opt_state.len(),
                layout.params.len(),
                layout.opt_state.len()
            );
        }
        let client = exe.client();
        let mut state = Vec::with_capacity(layout.num_state());
        let expected = layout
            .params
            .iter()
            .map(|p| (&p.name, &p.shape))
            .chain(layout.opt_state.iter().map(|s| (&s.name, &s.shape)));
        for ((name, shape), lit) in expected.zip(params.iter().chain(opt_state)) {
            if lit.shape() != shape {
                bail!(
                    "train state '{name}' is {}, the step takes {shape}",
                    lit.shape()
                );
            }
            state.push(
                upload(&client, &device, lit).with_context(|| format!("uploading '{name}'"))?,
            );
        }
        let step = upload(&client, &device, &Literal::scalar(step))?;
        Ok(Self {
            exe,
            layout,
            device,
            state,
            step,
        })
    }

    pub fn layout(&self) -> &StepLayout {
        &self.layout
    }

    pub fn executable(&self) -> &Executable {
        &self.exe
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Uploads host batch inputs (in layout order) to the trainer's device.
    pub fn upload_batch(&self, batch: &[Literal]) -> Result<Vec<Buffer>> {
        let client = self.exe.client();
        batch
            .iter()
            .map(|l| upload(&client, &self.device, l))
            .collect()
    }

    /// Runs one step on batch buffers (in layout order) and reads back loss and metrics.
    pub fn step(&mut self, batch: &[&Buffer]) -> Result<StepMetrics> {
        let outs = self.step_async(batch)?;
        let loss = scalar_f32(&outs[0]).context("reading the loss")?;
        let metrics = self
            .layout
            .metric_names
            .iter()
            .zip(&outs[1..])
            .map(|(n, b)| {
                Ok((
                    n.clone(),
                    scalar_f32(b).with_context(|| format!("reading metric '{n}'"))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StepMetrics { loss, metrics })
    }

    /// Uploads `batch` and runs one step.
    pub fn step_host(&mut self, batch: &[Literal]) -> Result<StepMetrics> {
        let bufs = self.upload_batch(batch)?;
        let refs: Vec<&Buffer> = bufs.iter().collect();
        self.step(&refs)
    }

    /// Runs one step without waiting for it: returns the loss and metric buffers (loss first).
    pub fn step_async(&mut self, batch: &[&Buffer]) -> Result<Vec<Buffer>> {
        self.check_batch(batch)?;
        let mut args: Vec<&Buffer> = self.state.iter().collect();
        args.extend_from_slice(batch);
        args.push(&self.step);
        let result = self.exe.execute(&args);
        let mut outs = match result {
            Ok(o) => o,
            Err(e) => {
                let lost = self.state.iter().any(|b| b.is_deleted().unwrap_or(true));
                if lost {
                    bail!("the train step failed after its state was donated; the training state is lost (restore a checkpoint): {e}");
                }
                return Err(anyhow!(e).context("running the train step"));
            }
        };
        if outs.len() != self.layout.num_outputs() {
            bail!(
                "the train step returned {} outputs, its layout has {}",
                outs.len(),
                self.layout.num_outputs()
            );
        }
        let rest = outs.split_off(self.layout.num_state());
        self.state = outs;
        let mut rest = rest.into_iter();
        self.step = rest
            .next()
            .ok_or_else(|| anyhow!("the train step returned no step"))?;
        Ok(rest.collect())
    }

    fn check_batch(&self, batch: &[&Buffer]) -> Result<()> {
        if batch.len() != self.layout.batch.len() {
            bail!(
                "the train step takes {} batch inputs ({}), got {}",
                self.layout.batch.len(),
                self.layout
                    .batch
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                batch.len()
            );
        }
        for (spec, buf) in self.layout.batch.iter().zip(batch) {
            let got = ArrayShape::new(buf.element_type(), buf.dims().to_vec());
            if got != spec.shape {
                bail!(
                    "batch input '{}' is {got}, the step takes {}",
                    spec.name,
                    spec.shape
                );
            }
        }
        Ok(())
    }

    /// The current parameters as device buffers, in layout order (valid until the next step
    /// donates them): e.g. for an evaluation program, without a round trip through the host.
    pub fn param_buffers(&self) -> &[Buffer] {
        &self.state[..self.layout.params.len()]
    }

    /// The current parameters, downloaded, in layout order.
    pub fn params(&self) -> Result<Vec<Literal>> {
        self.state[..self.layout.params.len()]
            .iter()
            .map(download)
            .collect()
    }

    /// The current optimizer state, downloaded, in layout order.
    pub fn opt_state(&self) -> Result<Vec<Literal>> {
        self.state[self.layout.params.len()..]
            .iter()
            .map(download)
            .collect()
    }

    /// Updates applied so far (skipped steps under dynamic loss scaling do not count).
    pub fn step_count(&self) -> Result<i32> {
        let v = self.step.to_host::<i32>()?;
        v.first()
            .copied()
            .ok_or_else(|| anyhow!("the step buffer is empty"))
    }
}

fn upload(client: &Client, device: &Device, l: &Literal) -> Result<Buffer> {
    Ok(client.buffer_from_host_bytes(l.element_type(), l.bytes(), &l.shape().dims, device)?)
}

fn download(b: &Buffer) -> Result<Literal> {
    let bytes = b.to_host_bytes()?;
    Ok(Literal::from_bytes(
        ArrayShape::new(b.element_type(), b.dims().to_vec()),
        bytes,
    )?)
}

fn scalar_f32(b: &Buffer) -> Result<f32> {
    let v = b.to_host::<f32>()?;
    v.first()
        .copied()
        .ok_or_else(|| anyhow!("expected a scalar, got an empty buffer"))
}

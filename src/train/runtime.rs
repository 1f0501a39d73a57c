//! Running the compiled step: [`Trainer`] holds the parameters, optimizer state and step count as
//! device buffers (one copy per data-parallel replica), feeds batches and returns the metrics.
//! The step donates its state inputs: each run consumes the held buffers and the outputs become
//! the new state, so parameters and optimizer state are updated in place on each device.
use super::shard::HostShards;
use super::step::{StepLayout, TrainProgram};
use anyhow::{anyhow, bail, Context, Result};
use hlo::{ArrayShape, Literal};
use std::collections::VecDeque;
use tpu::{Buffer, Client, Device, Executable, Execution, HostArray};

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

/// The device state of a training run and the executable that advances it. With a
/// data-parallel step ([`StepLayout::replicas`] = N > 1) every replica's device holds its own
/// copy of the parameters, optimizer state and step (identical: the step applies the same
/// averaged update on each), each donated to that replica's run; the batch is split into N
/// shards. Reads (`params`, `opt_state`, metrics) come from replica 0.
///
/// Steps are launched without waiting: each takes the previous step's (perhaps unfinished)
/// state buffers, which PJRT orders, and at most [`MAX_STEPS_IN_FLIGHT`] launched steps stay
/// unfinished before launching waits for the oldest (whose device error, if any, ends the run
/// there). Reading a metric or the state waits for the step that wrote it.
pub struct Trainer {
    exe: Executable,
    layout: StepLayout,
    /// Replica r runs on `devices[r]`.
    devices: Vec<Device>,
    /// Per replica: parameters then optimizer state, in layout order.
    state: Vec<Vec<Buffer>>,
    /// Per replica: the step counter.
    step: Vec<Buffer>,
    /// Launched steps not yet known to have finished, oldest first.
    in_flight: VecDeque<Execution>,
}

/// Steps a trainer keeps launched ahead of the device: the host may queue the next step (and
/// prepare the one after) while the device runs, and never runs unboundedly ahead.
const MAX_STEPS_IN_FLIGHT: usize = 2;

/// Batch inputs on the trainer's devices: inputs `first..first + len` of the step, one shard per
/// replica. A step takes one or more of these that together cover every input in order (e.g. the
/// fields uploaded once and a fresh dropout key per step).
pub struct ShardedBatch {
    first: usize,
    /// `shards[r]` are replica r's buffers.
    shards: Vec<Vec<Buffer>>,
}

impl ShardedBatch {
    /// The number of step inputs these buffers provide.
    pub fn len(&self) -> usize {
        self.shards.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Trainer {
    /// Compiles `program` (for [`StepLayout::replicas`] devices, the client's first ones) and
    /// uploads `params` (in layout order), the initial optimizer state and step 0 to each.
    pub fn new(client: &Client, program: &TrainProgram, params: &[Literal]) -> Result<Self> {
        let layout = &program.layout;
        let available = client.addressable_devices()?.len();
        if available < layout.replicas as usize {
            bail!(
                "the train step runs on {} replicas, the PJRT client has {available} devices",
                layout.replicas
            );
        }
        let exe = client
            .compile_module(&program.module, &layout.compile_options())
            .with_context(|| format!("compiling train step '{}'", program.module.name))?;
        let devices = exe.addressable_devices().to_vec();
        let opt_state = layout.initial_opt_state()?;
        Self::on_devices(exe, layout.clone(), devices, params, &opt_state, 0)
    }

    /// Starts a one-device step from given parameters, optimizer state and step (e.g. a
    /// checkpoint). For a data-parallel step use [`Trainer::on_devices`].
    pub fn from_state(
        exe: Executable,
        layout: StepLayout,
        device: Device,
        params: &[Literal],
        opt_state: &[Literal],
        step: i32,
    ) -> Result<Self> {
        Self::on_devices(exe, layout, vec![device], params, opt_state, step)
    }

    /// Starts from given parameters, optimizer state and step, uploaded to every device: replica
    /// r runs on `devices[r]` (for a replicated executable, its `addressable_devices()`).
    pub fn on_devices(
        exe: Executable,
        layout: StepLayout,
        devices: Vec<Device>,
        params: &[Literal],
        opt_state: &[Literal],
        step: i32,
    ) -> Result<Self> {
        if devices.len() != layout.replicas as usize {
            bail!(
                "the train step runs on {} replicas; got {} devices",
                layout.replicas,
                devices.len()
            );
        }
        Self::on_local_devices(exe, layout, devices, params, opt_state, step, 1)
    }

    /// [`Trainer::on_devices`] for one process of a `num_processes`-process run: `devices` are
    /// this process's replicas (the executable's addressable devices), `layout.replicas` counts
    /// those of every process. Batches given to [`Trainer::upload_shards`] are this process's
    /// share of the global batch (rows for its own replicas).
    pub fn on_local_devices(
        exe: Executable,
        layout: StepLayout,
        devices: Vec<Device>,
        params: &[Literal],
        opt_state: &[Literal],
        step: i32,
        num_processes: u32,
    ) -> Result<Self> {
        if devices.is_empty() || devices.len() * num_processes as usize != layout.replicas as usize
        {
            bail!(
                "the train step runs on {} replicas over {num_processes} process(es); this \
                 process got {} devices (each process must drive the same number)",
                layout.replicas,
                devices.len()
            );
        }
        if params.len() != layout.params.len() || opt_state.len() != layout.opt_state.len() {
            bail!(
                "train state: got {} parameters and {} optimizer state tensors, the step takes {} and {}",
                params.len(),
                opt_state.len(),
                layout.params.len(),
                layout.opt_state.len()
            );
        }
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
        }
        let client = exe.client();
        let mut state = Vec::with_capacity(devices.len());
        let mut steps = Vec::with_capacity(devices.len());
        let arrays: Vec<HostArray> = params
            .iter()
            .chain(opt_state)
            .map(|l| HostArray {
                dtype: l.element_type(),
                bytes: l.bytes(),
                dims: &l.shape().dims,
            })
            .collect();
        for (r, device) in devices.iter().enumerate() {
            // The whole state in flight at once (a transfer per tensor, all awaited together).
            let bufs = client
                .buffers_from_host_bytes(&arrays, device)
                .with_context(|| {
                    format!(
                        "uploading the train state ({} tensors) to replica {r}",
                        arrays.len()
                    )
                })?;
            state.push(bufs);
            steps.push(upload(&client, device, &Literal::scalar(step))?);
        }
        Ok(Self {
            exe,
            layout,
            devices,
            state,
            step: steps,
            in_flight: VecDeque::new(),
        })
    }

    pub fn layout(&self) -> &StepLayout {
        &self.layout
    }

    pub fn executable(&self) -> &Executable {
        &self.exe
    }

    /// Replica 0's device (the only one of a one-device step).
    pub fn device(&self) -> &Device {
        &self.devices[0]
    }

    /// The devices of the replicas, in replica order.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn replicas(&self) -> usize {
        self.devices.len()
    }

    /// Uploads host batch inputs (in layout order) to the device of a one-device step.
    pub fn upload_batch(&self, batch: &[Literal]) -> Result<Vec<Buffer>> {
        self.one_device("upload_batch")?;
        let client = self.exe.client();
        batch
            .iter()
            .map(|l| upload(&client, &self.devices[0], l))
            .collect()
    }

    /// Uploads inputs `first..first + inputs.len()` of the step, given for the whole batch (see
    /// [`StepLayout::global_batch_shape`]): each input of rows is split into the replicas'
    /// shards, a dropout key goes to every replica as is.
    pub fn upload_shards(&self, first: usize, inputs: &[Literal]) -> Result<ShardedBatch> {
        let split =
            super::shard::split_inputs(&self.layout, self.replicas(), first, inputs.to_vec())?;
        self.upload_split(&split)
    }

    /// Uploads inputs already split into the replicas' shards (by
    /// [`split_inputs`](super::shard::split_inputs), e.g. on an input feed's thread). The copy
    /// out of `inputs` is done when this returns; the transfer to the device may still run
    /// (PJRT orders it before any step that reads the buffers).
    pub fn upload_split(&self, inputs: &HostShards) -> Result<ShardedBatch> {
        let n = self.replicas();
        if inputs.shards.len() != n {
            bail!(
                "the batch was split into {} shards, the step runs on {n} replicas",
                inputs.shards.len()
            );
        }
        let client = self.exe.client();
        let mut shards = Vec::with_capacity(n);
        for (part, device) in inputs.shards.iter().zip(&self.devices) {
            let bufs = part
                .iter()
                .enumerate()
                .map(|(j, lit)| {
                    let name = self
                        .layout
                        .batch
                        .get(inputs.first + j)
                        .map_or("?", |s| s.name.as_str());
                    upload(&client, device, lit).with_context(|| format!("batch input '{name}'"))
                })
                .collect::<Result<Vec<_>>>()?;
            shards.push(bufs);
        }
        Ok(ShardedBatch {
            first: inputs.first,
            shards,
        })
    }

    /// Runs one step on batch buffers (in layout order) and reads back loss and metrics.
    pub fn step(&mut self, batch: &[&Buffer]) -> Result<StepMetrics> {
        let outs = self.step_async(batch)?;
        self.read_metrics(&outs)
    }

    /// Uploads `batch` (the whole batch, split across replicas) and runs one step.
    pub fn step_host(&mut self, batch: &[Literal]) -> Result<StepMetrics> {
        let shards = self.upload_shards(0, batch)?;
        let outs = self.step_sharded(&[&shards])?;
        self.read_metrics(&outs)
    }

    /// Runs one step of a one-device step without waiting for it: returns the loss and metric
    /// buffers (loss first).
    pub fn step_async(&mut self, batch: &[&Buffer]) -> Result<Vec<Buffer>> {
        self.one_device("step_async")?;
        self.check_batch(batch)?;
        self.run(vec![batch.to_vec()])
    }

    /// Runs one step on every replica without waiting for it; `parts` cover the step's batch
    /// inputs in order. Returns replica 0's loss and metric buffers (loss first; every replica
    /// computes the same values).
    pub fn step_sharded(&mut self, parts: &[&ShardedBatch]) -> Result<Vec<Buffer>> {
        let mut next = 0;
        for p in parts {
            if p.first != next {
                bail!(
                    "the batch parts must cover the step's inputs in order: expected one starting \
                     at input {next}, got one starting at {}",
                    p.first
                );
            }
            next += p.len();
        }
        let mut args: Vec<Vec<&Buffer>> = vec![Vec::new(); self.replicas()];
        for p in parts {
            for (list, shard) in args.iter_mut().zip(&p.shards) {
                list.extend(shard.iter());
            }
        }
        for list in &args {
            self.check_batch(list)?;
        }
        self.run(args)
    }

    fn run(&mut self, batch: Vec<Vec<&Buffer>>) -> Result<Vec<Buffer>> {
        let args: Vec<Vec<&Buffer>> = batch
            .into_iter()
            .enumerate()
            .map(|(r, b)| {
                let mut list: Vec<&Buffer> = self.state[r].iter().collect();
                list.extend(b);
                list.push(&self.step[r]);
                list
            })
            .collect();
        let result = self
            .exe
            .launch_sharded(&args, &tpu::ExecuteOptions::default());
        drop(args);
        let per_replica = match result {
            Ok((outputs, execution)) => {
                self.in_flight.push_back(execution);
                self.retire_launched(MAX_STEPS_IN_FLIGHT)?;
                outputs
            }
            Err(e) => {
                let lost = self
                    .state
                    .iter()
                    .flatten()
                    .any(|b| b.is_deleted().unwrap_or(true));
                if lost {
                    bail!("the train step failed after its state was donated; the training state is lost (restore a checkpoint): {e}");
                }
                return Err(anyhow!(e).context("running the train step"));
            }
        };
        if per_replica.len() != self.replicas() {
            bail!(
                "the train step returned outputs of {} replicas, it runs on {}",
                per_replica.len(),
                self.replicas()
            );
        }
        let mut first_metrics = None;
        for (r, mut outs) in per_replica.into_iter().enumerate() {
            if outs.len() != self.layout.num_outputs() {
                bail!(
                    "the train step returned {} outputs, its layout has {}",
                    outs.len(),
                    self.layout.num_outputs()
                );
            }
            let rest = outs.split_off(self.layout.num_state());
            self.state[r] = outs;
            let mut rest = rest.into_iter();
            self.step[r] = rest
                .next()
                .ok_or_else(|| anyhow!("the train step returned no step"))?;
            if r == 0 {
                first_metrics = Some(rest.collect());
            }
        }
        first_metrics.ok_or_else(|| anyhow!("the train step ran on no replica"))
    }

    /// Waits for launched steps until at most `keep` are unfinished; an error of one of them
    /// (the device failed running it) ends the run here.
    fn retire_launched(&mut self, keep: usize) -> Result<()> {
        while self.in_flight.len() > keep {
            if let Some(execution) = self.in_flight.pop_front() {
                execution
                    .wait()
                    .context("a launched train step failed on the device")?;
            }
        }
        Ok(())
    }

    /// Waits until every launched step has finished on the device.
    pub fn synchronize(&mut self) -> Result<()> {
        self.retire_launched(0)
    }

    fn one_device(&self, what: &str) -> Result<()> {
        if self.replicas() != 1 {
            bail!(
                "Trainer::{what} is for a one-device step; this one runs on {} replicas: use \
                 upload_shards and step_sharded",
                self.replicas()
            );
        }
        Ok(())
    }

    fn read_metrics(&self, outs: &[Buffer]) -> Result<StepMetrics> {
        let loss = scalar_f32(
            outs.first()
                .ok_or_else(|| anyhow!("the train step returned no loss"))?,
        )
        .context("reading the loss")?;
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

    /// Replica 0's current parameters as device buffers, in layout order (valid until the next
    /// step donates them): e.g. for an evaluation program, without a round trip through the host.
    pub fn param_buffers(&self) -> &[Buffer] {
        &self.state[0][..self.layout.params.len()]
    }

    /// The current parameters (replica 0's), downloaded, in layout order.
    pub fn params(&self) -> Result<Vec<Literal>> {
        self.replica_params(0)
    }

    /// Replica `r`'s current parameters, downloaded, in layout order.
    pub fn replica_params(&self, r: usize) -> Result<Vec<Literal>> {
        self.replica_state(r)?[..self.layout.params.len()]
            .iter()
            .map(download)
            .collect()
    }

    /// The current optimizer state (replica 0's), downloaded, in layout order.
    pub fn opt_state(&self) -> Result<Vec<Literal>> {
        self.replica_opt_state(0)
    }

    /// Replica `r`'s current optimizer state, downloaded, in layout order.
    pub fn replica_opt_state(&self, r: usize) -> Result<Vec<Literal>> {
        self.replica_state(r)?[self.layout.params.len()..]
            .iter()
            .map(download)
            .collect()
    }

    fn replica_state(&self, r: usize) -> Result<&[Buffer]> {
        self.state.get(r).map(Vec::as_slice).ok_or_else(|| {
            anyhow!(
                "replica {r} does not exist; the step runs on {}",
                self.replicas()
            )
        })
    }

    /// Updates applied so far (skipped steps under dynamic loss scaling do not count).
    pub fn step_count(&self) -> Result<i32> {
        let v = self.step[0].to_host::<i32>()?;
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

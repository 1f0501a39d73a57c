//! The train step as one compiled program: forward, backward, gradient clipping, optimizer
//! update and learning-rate schedule in a single HLO module whose parameters and optimizer state
//! are donated (aliased to the outputs), so they are updated in place on the device.
//!
//! - [`step`]: [`build_train_step`] emits the module
//!   `(params..., opt_state..., batch..., step) -> (params'..., opt_state'..., step', loss, metrics...)`.
//! - [`optimizer`]: AdamWeightDecay (original BERT), AdamW, LAMB, SGD with momentum, as HLO.
//! - [`schedule`]: learning rate from the step, computed in the program.
//! - [`clip`]: global-norm clipping and the all-finite test.
//! - [`precision`]: compute-type policy (f32 master weights) and loss scaling.
//! - [`fp8`]: FP8 delayed scaling (per-tensor amax histories and scales as step state).
//! - [`accumulate`]: gradient accumulation over micro-batches in a while loop.
//! - [`replicas`]: data parallelism inside the step (cross-replica means, per-replica keys).
//! - [`runtime`]: [`Trainer`] holds the device state (one copy per replica) and runs the step.
//! - [`shard`]: splitting host batches into per-replica shards.
//! - [`session`]: the pipelined step loop every training command drives.
//! - [`startup`]: where a run's time goes before its first step.
pub mod accumulate;
pub mod clip;
pub mod fp8;
pub mod gradients;
pub mod lowered;
pub mod optimizer;
pub mod precision;
pub mod progress;
pub mod replicas;
pub mod runtime;
pub mod schedule;
pub mod session;
pub mod shard;
pub mod startup;
pub mod step;

pub use fp8::{DelayedScaling, Fp8Setup, Fp8Tensor};
pub use gradients::{autodiff, manual_gradients, GradientSource, LossAndGrads, LossAndMetrics};
pub use optimizer::{AdamW, AdamWeightDecay, Lamb, Optimizer, OptimizerKind, Sgd, WeightDecay};
pub use precision::{DynamicLossScale, LossScale, Policy};
pub use runtime::{ShardedBatch, StepMetrics, Trainer};
pub use schedule::{Schedule, ScheduleKind};
pub use shard::{split_inputs, HostShards};
pub use step::{build_train_step, StepConfig, StepLayout, TrainProgram};

use anyhow::{anyhow, bail, Result};
use hlo::{ArrayShape, ElementType, Value};

/// A trainable parameter: its name (used for weight-decay exclusion and in errors) and its shape.
/// Master weights are f32; the policy decides what type the loss function sees.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: ArrayShape,
}

impl ParamSpec {
    pub fn new(name: impl Into<String>, dims: &[i64]) -> Self {
        Self {
            name: name.into(),
            shape: ArrayShape::new(ElementType::F32, dims.to_vec()),
        }
    }
}

/// One input of a (micro-)batch: name, element type and dims as the loss function sees it (on
/// one replica), and how it is laid out across data-parallel replicas.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchSpec {
    pub name: String,
    pub shape: ArrayShape,
    pub role: InputRole,
}

/// How a batch input is laid out across the replicas of a data-parallel step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputRole {
    /// Examples along dim 0: each replica gets its own equal slice of the rows.
    #[default]
    Rows,
    /// The `u64[2]` RNG key of dropout: every replica is given the same key, and the step folds
    /// the replica id into its word 0 (see [`replicas::fold_replica_id`]), so each replica draws
    /// its own bits.
    RngKey,
}

impl BatchSpec {
    /// An input of examples along dim 0 ([`InputRole::Rows`]).
    pub fn new(name: impl Into<String>, ty: ElementType, dims: &[i64]) -> Self {
        Self {
            name: name.into(),
            shape: ArrayShape::new(ty, dims.to_vec()),
            role: InputRole::Rows,
        }
    }

    /// A dropout key input, `u64[2]` ([`InputRole::RngKey`]).
    pub fn rng_key(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            shape: ArrayShape::new(ElementType::U64, vec![2]),
            role: InputRole::RngKey,
        }
    }
}

/// Values looked up by name: the parameters or the batch inputs handed to a loss function.
#[derive(Clone, Debug)]
pub struct Named {
    kind: &'static str,
    names: Vec<String>,
    values: Vec<Value>,
}

/// The parameters as the loss function sees them (cast to the policy's compute type).
pub type Params = Named;
/// The batch inputs as the loss function sees them (one micro-batch).
pub type Batch = Named;

impl Named {
    /// Named values; `kind` ("parameter", "batch input") is used in lookup errors.
    pub fn new(kind: &'static str, names: Vec<String>, values: Vec<Value>) -> Self {
        Self {
            kind,
            names,
            values,
        }
    }

    /// The value named `name`; the error lists the names there are.
    pub fn get(&self, name: &str) -> Result<Value> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.values[i])
            .ok_or_else(|| {
                anyhow!(
                    "no {} named '{name}'; the {}s are: {}",
                    self.kind,
                    self.kind,
                    self.names.join(", ")
                )
            })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Value)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().copied())
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Errors on empty or repeated names.
pub(crate) fn check_names<'a>(kind: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for n in names {
        if n.is_empty() {
            bail!("a {kind} has an empty name");
        }
        if !seen.insert(n) {
            bail!("two {kind}s are named '{n}'; names must be unique");
        }
    }
    Ok(())
}

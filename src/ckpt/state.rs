//! What a checkpoint saves ([`State`]) and what a run expects to load ([`Spec`]).
use super::error::{CkptError, Result};
use super::manifest::{OptimizerInfo, RngState};
use super::tensors::NamedTensors;
use hlo::{ArrayShape, Literal};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Everything a training run needs to continue exactly where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// Optimizer updates applied so far.
    pub step: u64,
    /// Parameters in the step's order (any element type; f32 master weights normally).
    pub params: NamedTensors,
    /// Optimizer slots and loss-scale state in the step's order.
    pub opt_state: NamedTensors,
    /// The model config's JSON (e.g. `serde_json::to_value(&bert_config)`).
    pub model_config: Value,
    pub optimizer: OptimizerInfo,
    pub rng: RngState,
    /// The data reader's `state()`: its position in each shard.
    pub data_position: Value,
    /// Anything else the loop wants back (`Value::Null` when nothing).
    pub extra: Value,
}

impl State {
    /// A state with the given tensors and empty metadata (null JSON, no RNG words).
    pub fn new(step: u64, params: NamedTensors, opt_state: NamedTensors) -> Self {
        Self {
            step,
            params,
            opt_state,
            model_config: Value::Null,
            optimizer: OptimizerInfo::default(),
            rng: RngState::default(),
            data_position: Value::Null,
            extra: Value::Null,
        }
    }
}

impl State {
    /// Names the trainer's tensors (`Trainer::params()` / `opt_state()`, in layout order) after
    /// `spec` (e.g. [`Spec::from_layout`]), checking count, dtypes and dims.
    pub fn from_parts(
        step: u64,
        spec: &Spec,
        params: Vec<Literal>,
        opt_state: Vec<Literal>,
    ) -> Result<Self> {
        Ok(Self::new(
            step,
            name_after("parameters", &spec.params, params)?,
            name_after("optimizer state", &spec.opt_state, opt_state)?,
        ))
    }

    /// The parameter tensors in order, without names (what `Trainer::from_state` takes).
    pub fn param_literals(&self) -> Vec<Literal> {
        self.params.iter().map(|(_, l)| l.clone()).collect()
    }

    /// The optimizer state tensors in order, without names.
    pub fn opt_state_literals(&self) -> Vec<Literal> {
        self.opt_state.iter().map(|(_, l)| l.clone()).collect()
    }
}

fn name_after(what: &str, specs: &[TensorSpec], lits: Vec<Literal>) -> Result<NamedTensors> {
    if specs.len() != lits.len() {
        return Err(CkptError::Invalid(format!(
            "{what}: got {} tensors, the spec names {}",
            lits.len(),
            specs.len()
        )));
    }
    specs
        .iter()
        .zip(lits)
        .map(|(s, l)| {
            if l.shape() != &s.shape {
                return Err(CkptError::Invalid(format!(
                    "{what}: tensor '{}' is {}, the spec says {}",
                    s.name,
                    l.shape(),
                    s.shape
                )));
            }
            Ok((s.name.clone(), l))
        })
        .collect()
}

/// One tensor a run expects: its name, element type and dims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: ArrayShape,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, shape: ArrayShape) -> Self {
        Self {
            name: name.into(),
            shape,
        }
    }
}

/// The tensors a run expects to load, in its order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    pub params: Vec<TensorSpec>,
    pub opt_state: Vec<TensorSpec>,
}

impl Spec {
    /// What the compiled train step takes: its parameters and optimizer state.
    pub fn from_layout(layout: &crate::train::StepLayout) -> Self {
        Self {
            params: layout
                .params
                .iter()
                .map(|p| TensorSpec::new(&p.name, p.shape.clone()))
                .collect(),
            opt_state: layout
                .opt_state
                .iter()
                .map(|s| TensorSpec::new(&s.name, s.shape.clone()))
                .collect(),
        }
    }

    /// The names, dtypes and dims of `state`'s tensors.
    pub fn of_state(state: &State) -> Self {
        let specs = |t: &NamedTensors| {
            t.iter()
                .map(|(n, l)| TensorSpec::new(n, l.shape().clone()))
                .collect()
        };
        Self {
            params: specs(&state.params),
            opt_state: specs(&state.opt_state),
        }
    }
}

/// Orders `tensors` (read from `path`) as `expected` and checks every dtype and dims: a
/// missing, extra or mis-shaped tensor is an error naming the file and the tensor.
pub(crate) fn match_spec(
    path: &Path,
    tensors: NamedTensors,
    expected: &[TensorSpec],
) -> Result<NamedTensors> {
    let mut by_name: HashMap<String, Literal> = tensors.into_iter().collect();
    let mut out = Vec::with_capacity(expected.len());
    for spec in expected {
        let lit = by_name.remove(&spec.name).ok_or_else(|| {
            CkptError::tensor(
                path,
                &spec.name,
                "the run expects it but the checkpoint does not have it (another model config or optimizer?)",
            )
        })?;
        if lit.shape() != &spec.shape {
            return Err(CkptError::tensor(
                path,
                &spec.name,
                format!(
                    "is {} in the checkpoint, the run expects {}",
                    lit.shape(),
                    spec.shape
                ),
            ));
        }
        out.push((spec.name.clone(), lit));
    }
    if let Some(extra) = by_name.keys().min() {
        return Err(CkptError::tensor(
            path,
            extra,
            format!(
                "is in the checkpoint but the run does not expect it ({} such tensors; another model config or optimizer?)",
                by_name.len()
            ),
        ));
    }
    Ok(out)
}

//! Composites with their own gradient (JAX's `custom_vjp`): [`Builder::custom_vjp`] marks a
//! value computed by ordinary ops from some inputs, and autodiff then applies the given rule at
//! that value instead of differentiating the ops inside. FP8 training needs it: quantizing to
//! f8 has a zero derivative almost everywhere, yet the gradient should pass straight through,
//! and the backward pass quantizes the output's cotangent itself.
//!
//! The marked value is a `copy` of the composite's result (XLA's algebraic simplifier drops it
//! before anything pattern-matches). Autodiff sees the copy as depending on the declared inputs
//! only: the ops between them and the result are never on a gradient path through it.
use super::no_rule;
use crate::builder::{Builder, Value};
use crate::error::{shape_err, Result};
use crate::ir::{InstrId, UnaryOp};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a custom rule gets: the declared inputs (forward values it may reuse), the marked value
/// and its cotangent.
pub struct CustomVjpArgs<'a> {
    pub inputs: &'a [Value],
    pub output: Value,
    pub cotangent: Value,
}

/// A custom gradient rule: one cotangent per declared input, of that input's shape and type, or
/// `None` for an input that gets none.
pub type CustomRule =
    dyn Fn(&Builder<'_>, &CustomVjpArgs<'_>) -> Result<Vec<Option<Value>>> + Send + Sync;

/// One marked value: its declared inputs and its rule.
#[derive(Clone)]
pub(crate) struct CustomSite {
    pub inputs: Vec<InstrId>,
    pub rule: Arc<CustomRule>,
}

/// What autodiff knows about a computation beyond its instructions: `stop_gradient` marks and
/// custom-gradient sites (kept with finished computations, for inlining).
#[derive(Clone, Default)]
pub(crate) struct GradMarks {
    pub no_grad: HashSet<InstrId>,
    pub custom: HashMap<InstrId, CustomSite>,
}

impl Builder<'_> {
    /// `output` (computed from `inputs` by ordinary ops) as a value whose gradient autodiff
    /// takes from `rule`: given the cotangent of the returned value, the rule returns the
    /// cotangent of each input. Gradients reach `inputs` only through the rule.
    pub fn custom_vjp(
        &self,
        inputs: &[Value],
        output: Value,
        rule: impl Fn(&Builder<'_>, &CustomVjpArgs<'_>) -> Result<Vec<Option<Value>>>
            + Send
            + Sync
            + 'static,
    ) -> Result<Value> {
        for &v in inputs {
            self.shape(v)?;
        }
        let v = self.unary(UnaryOp::Copy, output)?;
        self.mark_custom(
            v,
            CustomSite {
                inputs: inputs.iter().map(|i| i.id()).collect(),
                rule: Arc::new(rule),
            },
        );
        Ok(v)
    }
}

/// Applies the rule of `site` (marked value `output` with cotangent `g`); checks that it
/// returned one cotangent per input, each of its input's shape.
pub(super) fn apply(
    b: &Builder,
    site: &CustomSite,
    output: Value,
    g: Value,
) -> Result<Vec<Option<Value>>> {
    let inputs: Vec<Value> = site.inputs.iter().map(|&i| b.value_at(i)).collect();
    let args = CustomVjpArgs {
        inputs: &inputs,
        output,
        cotangent: g,
    };
    let cots = (site.rule)(b, &args)?;
    if cots.len() != inputs.len() {
        return Err(no_rule(
            "custom_vjp",
            format!(
                "the rule returned {} cotangents for {} inputs",
                cots.len(),
                inputs.len()
            ),
        ));
    }
    for (k, (ct, &x)) in cots.iter().zip(&inputs).enumerate() {
        if let Some(ct) = ct {
            let (got, want) = (b.shape(*ct)?, b.shape(x)?);
            if got != want {
                return Err(shape_err(
                    "custom_vjp",
                    format!("the rule's cotangent for input {k} does not match the input"),
                    &[&got, &want],
                ));
            }
        }
    }
    Ok(cots)
}

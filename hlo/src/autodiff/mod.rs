//! Reverse-mode autodiff as a graph-to-graph transform on the computation under construction,
//! like JAX's transpose of a traced graph.
//!
//! [`Builder::vjp`] walks the draft's instructions in reverse definition order, starting from
//! the outputs, and appends the backward instructions to the same computation: forward values
//! the backward needs (`exp`'s result, a `dot`'s other operand, ...) are reused, never
//! recomputed. Only instructions on a path from some `wrt` value to some output get a cotangent
//! (the forward-reachable set from `wrt` intersected with the backward-reachable set from the
//! outputs), so gradients nobody asked for are never built. Cotangents of a value used several
//! times accumulate with `add`.
//!
//! Values carry no gradient when they are integer or pred typed (indices, masks, compare
//! results, iota, argmax), or marked by [`Builder::stop_gradient`]. A `wrt` value with no path
//! to the outputs (an integer one included) gets zeros of its own shape and type.
//!
//! One rule per op lives in the family files (`elementwise`, `shape`, `dot`, `reduce`,
//! `indexing`, `misc`); an op without a rule fails with [`HloError::NoGradient`] naming it.
//! Custom calls are differentiated only through a rule registered with
//! [`ModuleBuilder::register_vjp`]; a composite defines its own gradient with
//! [`Builder::custom_vjp`] (module `custom`).
//!
//! The backward instructions of a forward instruction in name scope `s` are built in scope
//! `grad/s` (`grad` for an unscoped one), so a profile tells each layer's backward apart.
mod custom;
mod dot;
mod elementwise;
mod indexing;
mod inline;
mod misc;
mod reduce;
mod shape;

pub use custom::{CustomRule, CustomVjpArgs};
pub(crate) use custom::{CustomSite, GradMarks};
pub use inline::grad_computation;

use crate::builder::{Builder, ModuleBuilder, Value};
use crate::error::{shape_err, HloError, Result};
use crate::ir::{InstrId, Instruction, Op, UnaryOp};
use crate::shape::{ArrayShape, Shape};
use std::sync::Arc;

/// What a registered custom-call rule gets: the call's operands and result (forward values it
/// may reuse) and the cotangent of the result (a tuple value for a tuple result).
pub struct VjpArgs<'a> {
    pub target: &'a str,
    pub backend_config: &'a str,
    pub operands: &'a [Value],
    pub output: Value,
    pub cotangent: Value,
}

/// A custom call's gradient rule: returns one cotangent per operand, of that operand's shape,
/// or `None` for an operand that gets none.
pub type VjpRule = dyn Fn(&Builder<'_>, &VjpArgs<'_>) -> Result<Vec<Option<Value>>> + Send + Sync;

impl ModuleBuilder {
    /// Registers the gradient rule of custom-call `target` (replacing an earlier one).
    pub fn register_vjp(
        &self,
        target: &str,
        rule: impl Fn(&Builder<'_>, &VjpArgs<'_>) -> Result<Vec<Option<Value>>> + Send + Sync + 'static,
    ) {
        self.set_vjp_rule(target.to_string(), Arc::new(rule));
    }
}

/// A cotangent: of an array, or of a tuple element by element (`None` is zero).
#[derive(Clone, Debug)]
pub(crate) enum Cot {
    Array(Value),
    Tuple(Vec<Option<Cot>>),
}

/// An op without a gradient rule.
pub(crate) fn no_rule(op: &str, msg: impl Into<String>) -> HloError {
    HloError::NoGradient {
        op: op.to_string(),
        msg: msg.into(),
    }
}

/// Whether values of `s` can carry a gradient (float arrays, tuples holding one).
fn differentiable(s: &Shape) -> bool {
    match s {
        Shape::Array(a) => a.ty.is_float(),
        Shape::Tuple(t) => t.iter().any(differentiable),
        Shape::Token => false,
    }
}

/// One instruction being transposed: its op, forward operands and result, and which operands
/// need a cotangent.
pub(crate) struct Ctx<'a, 'm> {
    pub b: Builder<'m>,
    pub op: &'a Op,
    pub out: Value,
    pub out_shape: &'a Shape,
    pub x: Vec<Value>,
    pub x_shapes: Vec<&'a Shape>,
    pub wants: Vec<bool>,
}

impl Ctx<'_, '_> {
    pub fn want(&self, k: usize) -> bool {
        self.wants.get(k).copied().unwrap_or(false)
    }

    /// The array shape of operand `k`.
    pub fn arr(&self, k: usize) -> Result<ArrayShape> {
        match self.x_shapes.get(k) {
            Some(Shape::Array(a)) => Ok(a.clone()),
            Some(s) => Err(shape_err(
                self.op.opcode(),
                "expected an array operand",
                &[s],
            )),
            None => Err(shape_err(self.op.opcode(), format!("no operand {k}"), &[])),
        }
    }

    pub fn out_arr(&self) -> Result<ArrayShape> {
        match self.out_shape {
            Shape::Array(a) => Ok(a.clone()),
            s => Err(shape_err(
                self.op.opcode(),
                "expected an array result",
                &[s],
            )),
        }
    }

    /// No cotangent for any operand.
    pub fn none(&self) -> Vec<Option<Value>> {
        vec![None; self.x.len()]
    }

    /// `f()` when operand `k` wants a cotangent, else `None` (so unwanted ones are never built).
    pub fn when(&self, k: usize, f: impl FnOnce() -> Result<Value>) -> Result<Option<Value>> {
        if self.want(k) {
            f().map(Some)
        } else {
            Ok(None)
        }
    }
}

impl Builder<'_> {
    /// An identity that autodiff treats as a constant: no cotangent flows through it (emitted
    /// as a `copy`).
    pub fn stop_gradient(&self, x: Value) -> Result<Value> {
        let v = self.unary(UnaryOp::Copy, x)?;
        self.mark_no_grad(v);
        Ok(v)
    }

    /// The gradient of the float scalar `loss` with respect to each `wrt` value (cotangent 1).
    pub fn grad(&self, loss: Value, wrt: &[Value]) -> Result<Vec<Value>> {
        let a = self.array_shape(loss, "grad")?;
        if !a.is_scalar() || !a.ty.is_float() {
            return Err(shape_err(
                "grad",
                "the loss must be a float scalar (use vjp for other outputs)",
                &[&a],
            ));
        }
        let one = self.scalar_of(a.ty, 1.0)?;
        self.vjp(&[loss], &[one], wrt)
    }

    /// Vector-Jacobian product: with `cotangents[i]` (the shape of `outputs[i]`) as the output
    /// cotangents, returns the cotangent of each `wrt` value, built into this computation.
    pub fn vjp(
        &self,
        outputs: &[Value],
        cotangents: &[Value],
        wrt: &[Value],
    ) -> Result<Vec<Value>> {
        if outputs.len() != cotangents.len() {
            return Err(shape_err(
                "vjp",
                format!(
                    "{} outputs but {} cotangents",
                    outputs.len(),
                    cotangents.len()
                ),
                &[],
            ));
        }
        for (&o, &c) in outputs.iter().zip(cotangents) {
            let (so, sc) = (self.shape(o)?, self.shape(c)?);
            if so != sc {
                return Err(shape_err(
                    "vjp",
                    "a cotangent must have its output's shape and type",
                    &[&so, &sc],
                ));
            }
        }
        for &w in wrt {
            self.shape(w)?;
        }
        let instrs = self.instructions();
        let marks = self.grad_marks();
        // What each instruction's cotangent flows to: a custom site's declared inputs, else
        // its operands.
        let deps = |i: usize| -> &[InstrId] {
            match marks.custom.get(&InstrId(i as u32)) {
                Some(site) => &site.inputs,
                None => &instrs[i].operands,
            }
        };
        let relevant = relevant_set(&instrs, &marks.no_grad, &deps, outputs, wrt);
        let mut adj: Vec<Option<Cot>> = vec![None; instrs.len()];
        for (&o, &c) in outputs.iter().zip(cotangents) {
            if relevant[o.id().index()] {
                let ct = self.cot_of_value(c)?;
                accumulate(self, &mut adj[o.id().index()], ct)?;
            }
        }
        let keep: std::collections::HashSet<InstrId> = wrt.iter().map(|w| w.id()).collect();
        for i in (0..instrs.len()).rev() {
            if !relevant[i] {
                continue;
            }
            let Some(g) = (if keep.contains(&InstrId(i as u32)) {
                adj[i].clone()
            } else {
                adj[i].take()
            }) else {
                continue;
            };
            let ins = &instrs[i];
            let wants: Vec<bool> = deps(i).iter().map(|o| relevant[o.index()]).collect();
            if !wants.iter().any(|&w| w) {
                continue;
            }
            // The backward of an op is named after its forward scope, as JAX's `transpose(..)`.
            let _scope = self
                .module()
                .enter_scope_path(Some(grad_scope(ins.scope.as_deref())));
            if let Some(site) = marks.custom.get(&InstrId(i as u32)) {
                let g = self.materialize(Some(&g), &ins.shape)?;
                let out = self.value_at(InstrId(i as u32));
                let cots = custom::apply(self, site, out, g)?;
                for (k, ct) in cots.into_iter().enumerate() {
                    if let (Some(ct), true) = (ct, wants[k]) {
                        accumulate(self, &mut adj[site.inputs[k].index()], Cot::Array(ct))?;
                    }
                }
                continue;
            }
            let ctx = Ctx {
                b: *self,
                op: &ins.op,
                out: self.value_at(InstrId(i as u32)),
                out_shape: &ins.shape,
                x: ins.operands.iter().map(|&o| self.value_at(o)).collect(),
                x_shapes: ins
                    .operands
                    .iter()
                    .map(|o| &instrs[o.index()].shape)
                    .collect(),
                wants,
            };
            let cots = transpose(&ctx, g)?;
            for (k, ct) in cots.into_iter().enumerate() {
                if let (Some(ct), true) = (ct, ctx.want(k)) {
                    accumulate(self, &mut adj[ins.operands[k].index()], ct)?;
                }
            }
        }
        wrt.iter()
            .map(|&w| {
                let shape = &instrs[w.id().index()].shape;
                self.materialize(adj[w.id().index()].as_ref(), shape)
            })
            .collect()
    }

    /// The cotangent structure of a value (tuples split into elements).
    fn cot_of_value(&self, v: Value) -> Result<Cot> {
        match self.shape(v)? {
            Shape::Tuple(items) => Ok(Cot::Tuple(
                (0..items.len() as i64)
                    .map(|k| Ok(Some(self.cot_of_value(self.get_tuple_element(v, k)?)?)))
                    .collect::<Result<_>>()?,
            )),
            _ => Ok(Cot::Array(v)),
        }
    }

    /// A value for a cotangent of `shape` (zeros where there is none).
    pub(crate) fn materialize(&self, ct: Option<&Cot>, shape: &Shape) -> Result<Value> {
        match (ct, shape) {
            (Some(Cot::Array(v)), _) => Ok(*v),
            (Some(Cot::Tuple(items)), Shape::Tuple(elems)) => {
                let vals = elems
                    .iter()
                    .enumerate()
                    .map(|(k, e)| self.materialize(items.get(k).and_then(|c| c.as_ref()), e))
                    .collect::<Result<Vec<_>>>()?;
                self.tuple(&vals)
            }
            (None, Shape::Tuple(elems)) => {
                let vals = elems
                    .iter()
                    .map(|e| self.materialize(None, e))
                    .collect::<Result<Vec<_>>>()?;
                self.tuple(&vals)
            }
            (None, Shape::Array(a)) => self.full(a, 0.0),
            (_, s) => Err(shape_err(
                "vjp",
                "cotangent structure does not match the value",
                &[s],
            )),
        }
    }
}

/// `grad/<forward scope>`, or `grad` for an unscoped forward instruction.
fn grad_scope(forward: Option<&str>) -> Arc<str> {
    match forward {
        Some(s) => format!("grad/{s}").into(),
        None => "grad".into(),
    }
}

/// Instructions on a path from a `wrt` value to an output, through differentiable values that
/// are not `stop_gradient` marks, where instruction i depends on `deps(i)`.
fn relevant_set<'a>(
    instrs: &[Instruction],
    no_grad: &std::collections::HashSet<InstrId>,
    deps: &dyn Fn(usize) -> &'a [InstrId],
    outputs: &[Value],
    wrt: &[Value],
) -> Vec<bool> {
    let n = instrs.len();
    let mut fwd = vec![false; n];
    for w in wrt {
        let i = w.id().index();
        fwd[i] = differentiable(&instrs[i].shape);
    }
    for (i, ins) in instrs.iter().enumerate() {
        if !fwd[i]
            && !no_grad.contains(&InstrId(i as u32))
            && differentiable(&ins.shape)
            && deps(i).iter().any(|o| fwd[o.index()])
        {
            fwd[i] = true;
        }
    }
    let mut bwd = vec![false; n];
    for o in outputs {
        bwd[o.id().index()] = true;
    }
    for i in (0..n).rev() {
        if bwd[i] && fwd[i] {
            for o in deps(i) {
                bwd[o.index()] = true;
            }
        }
    }
    (0..n).map(|i| fwd[i] && bwd[i]).collect()
}

/// Adds `ct` into `slot`.
fn accumulate(b: &Builder, slot: &mut Option<Cot>, ct: Cot) -> Result<()> {
    *slot = Some(match slot.take() {
        None => ct,
        Some(prev) => add_cots(b, prev, ct)?,
    });
    Ok(())
}

fn add_cots(b: &Builder, x: Cot, y: Cot) -> Result<Cot> {
    match (x, y) {
        (Cot::Array(x), Cot::Array(y)) => Ok(Cot::Array(b.add(x, y)?)),
        (Cot::Tuple(xs), Cot::Tuple(ys)) if xs.len() == ys.len() => {
            let items = xs
                .into_iter()
                .zip(ys)
                .map(|pair| match pair {
                    (Some(x), Some(y)) => add_cots(b, x, y).map(Some),
                    (x, None) => Ok(x),
                    (None, y) => Ok(y),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Cot::Tuple(items))
        }
        _ => Err(shape_err(
            "vjp",
            "cannot add an array cotangent to a tuple cotangent",
            &[],
        )),
    }
}

/// Applies the rule of `c.op`: the cotangent of each operand from the result's cotangent `g`.
fn transpose(c: &Ctx, g: Cot) -> Result<Vec<Option<Cot>>> {
    match c.op {
        Op::Tuple => return misc::tuple(c, g),
        Op::GetTupleElement { index } => return misc::get_tuple_element(c, g, *index),
        Op::OptimizationBarrier => return Ok(vec![Some(g)]),
        Op::CustomCall { .. } => return misc::custom_call(c, g).map(arrays),
        Op::Reduce { dims, comp } => return reduce::reduce(c, g, dims, *comp),
        _ => {}
    }
    let g = match g {
        Cot::Array(v) => v,
        Cot::Tuple(_) => {
            return Err(shape_err(
                c.op.opcode(),
                "a tuple cotangent reached an array op",
                &[c.out_shape],
            ))
        }
    };
    let cots = match c.op {
        Op::Unary(u) => elementwise::unary(c, *u, g)?,
        Op::Binary(op) => elementwise::binary(c, *op, g)?,
        Op::Select => elementwise::select(c, g)?,
        Op::Clamp => elementwise::clamp(c, g)?,
        Op::Convert => elementwise::convert(c, g)?,
        Op::BitcastConvert => {
            return Err(no_rule(
                "bitcast-convert",
                "reinterpreting bits has no derivative; convert instead, or stop_gradient",
            ))
        }
        Op::Broadcast { dims } => shape::broadcast(c, g, dims)?,
        Op::Reshape => shape::reshape(c, g)?,
        Op::Transpose { perm } => shape::transpose(c, g, perm)?,
        Op::Reverse { dims } => vec![Some(c.b.reverse(g, dims)?)],
        Op::Slice {
            starts, strides, ..
        } => shape::slice(c, g, starts, strides)?,
        Op::Pad { dims } => shape::pad(c, g, dims)?,
        Op::Concatenate { dim } => shape::concatenate(c, g, *dim)?,
        Op::DynamicSlice { .. } => shape::dynamic_slice(c, g)?,
        Op::DynamicUpdateSlice => shape::dynamic_update_slice(c, g)?,
        Op::Dot { dims, precision } => dot::dot(c, g, dims, *precision)?,
        Op::Gather {
            dims,
            slice_sizes,
            indices_are_sorted,
        } => indexing::gather(c, g, dims, slice_sizes, *indices_are_sorted)?,
        Op::Scatter {
            dims,
            comp,
            indices_are_sorted,
            ..
        } => indexing::scatter(c, g, dims, *comp, *indices_are_sorted)?,
        Op::AllReduce { attrs, comp } => misc::all_reduce(c, g, attrs, *comp)?,
        Op::ShardingHint(s) => vec![Some(c.b.sharding_hint(g, s.clone())?)],
        Op::Call { .. } => {
            return Err(no_rule(
                "call",
                "inline the callee (Builder::inline) before differentiating",
            ))
        }
        op => {
            return Err(no_rule(
                op.opcode(),
                "this op is not differentiated (rules exist for elementwise, shape, dot, \
                 reduce add/max/min, gather/scatter-add, all-reduce sum and registered \
                 custom calls); wrap its input in stop_gradient if no gradient should flow",
            ))
        }
    };
    Ok(arrays(cots))
}

fn arrays(v: Vec<Option<Value>>) -> Vec<Option<Cot>> {
    v.into_iter().map(|c| c.map(Cot::Array)).collect()
}

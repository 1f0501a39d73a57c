//! Rules of tuples, collectives and custom calls.
//! - tuple / get-tuple-element: cotangents move between the tuple and its elements.
//! - all-reduce with an add reducer: the cotangent is all-reduced over the same groups (JAX's
//!   psum transpose), so each replica gets the gradient of the sum of all replicas' outputs.
//! - custom-call: the rule registered for its target (`ModuleBuilder::register_vjp`).
use super::{no_rule, Cot, Ctx, VjpArgs};
use crate::builder::Value;
use crate::error::{shape_err, Result};
use crate::ir::{BinaryOp, CollectiveAttrs, CompId, Op};

pub(super) fn tuple(c: &Ctx, g: Cot) -> Result<Vec<Option<Cot>>> {
    match g {
        Cot::Tuple(items) if items.len() == c.x.len() => Ok(items),
        _ => Err(shape_err(
            "tuple",
            "cotangent does not match the tuple",
            &[c.out_shape],
        )),
    }
}

pub(super) fn get_tuple_element(c: &Ctx, g: Cot, index: i64) -> Result<Vec<Option<Cot>>> {
    let n = c.x_shapes[0].tuple_elements().map_or(0, |e| e.len());
    let mut items = vec![None; n];
    let slot = usize::try_from(index)
        .ok()
        .and_then(|i| items.get_mut(i))
        .ok_or_else(|| shape_err("get-tuple-element", "index out of range", &[c.x_shapes[0]]))?;
    *slot = Some(g);
    Ok(vec![Some(Cot::Tuple(items))])
}

pub(super) fn all_reduce(
    c: &Ctx,
    g: Value,
    attrs: &CollectiveAttrs,
    comp: CompId,
) -> Result<Vec<Option<Value>>> {
    let b = c.b;
    if !b.module().is_scalar_binary(comp, BinaryOp::Add) {
        return Err(no_rule(
            "all-reduce",
            "only an all-reduce that sums is differentiated",
        ));
    }
    let mut attrs = attrs.clone();
    // Every cross-partition collective needs its own channel.
    if attrs.channel_id.is_some() {
        attrs.channel_id = Some(b.module().max_channel_id() + 1);
    }
    Ok(vec![Some(b.all_reduce(g, comp, attrs)?)])
}

pub(super) fn custom_call(c: &Ctx, g: Cot) -> Result<Vec<Option<Value>>> {
    let Op::CustomCall {
        target,
        backend_config,
        ..
    } = c.op
    else {
        return Err(no_rule(c.op.opcode(), "not a custom call"));
    };
    let rule = c.b.module().vjp_rule(target).ok_or_else(|| {
        no_rule(
            "custom-call",
            format!(
                "no rule registered for target '{target}'; register one with \
                 ModuleBuilder::register_vjp, or stop_gradient its inputs"
            ),
        )
    })?;
    let cotangent = c.b.materialize(Some(&g), c.out_shape)?;
    let args = VjpArgs {
        target,
        backend_config,
        operands: &c.x,
        output: c.out,
        cotangent,
    };
    let cots = rule(&c.b, &args)?;
    if cots.len() != c.x.len() {
        return Err(no_rule(
            "custom-call",
            format!(
                "the rule for '{target}' returned {} cotangents for {} operands",
                cots.len(),
                c.x.len()
            ),
        ));
    }
    for (k, ct) in cots.iter().enumerate() {
        if let Some(v) = ct {
            let s = c.b.shape(*v)?;
            if &s != c.x_shapes[k] {
                return Err(shape_err(
                    "custom-call",
                    format!("the rule for '{target}' returned a cotangent for operand {k} of the wrong shape"),
                    &[&s, c.x_shapes[k]],
                ));
            }
        }
    }
    Ok(cots)
}

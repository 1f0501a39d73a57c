//! The verifier: the structural invariants every module must keep (and every pass re-checks).
use crate::error::{HloError, Result};
use crate::ir::{Computation, Module, Op};
use crate::shape::Shape;

fn fail(c: &Computation, msg: String) -> HloError {
    HloError::Verify(format!("computation '{}': {msg}", c.name))
}

/// Checks ids, define-before-use order, callee order, parameters, tuple indices and aliases.
pub fn verify(m: &Module) -> Result<()> {
    if m.entry.index() >= m.computations.len() {
        return Err(HloError::Verify(format!("entry {} out of range", m.entry)));
    }
    let mut names = std::collections::HashSet::new();
    for (ci, c) in m.computations.iter().enumerate() {
        if !names.insert(c.name.as_str()) {
            return Err(fail(c, "duplicate computation name".into()));
        }
        if c.root.index() >= c.instrs.len() {
            return Err(fail(c, format!("root {} out of range", c.root)));
        }
        for (k, &p) in c.params.iter().enumerate() {
            match c.instrs.get(p.index()).map(|i| &i.op) {
                Some(Op::Parameter { number, .. }) if *number as usize == k => {}
                _ => return Err(fail(c, format!("params[{k}] = {p} is not parameter {k}"))),
            }
        }
        let n_params = c
            .instrs
            .iter()
            .filter(|i| matches!(i.op, Op::Parameter { .. }))
            .count();
        if n_params != c.params.len() {
            return Err(fail(
                c,
                format!(
                    "{n_params} parameter instructions but {} listed",
                    c.params.len()
                ),
            ));
        }
        for (k, inst) in c.instrs.iter().enumerate() {
            if let Some(o) = inst.operands.iter().find(|o| o.index() >= k) {
                return Err(fail(
                    c,
                    format!(
                        "%{k} ({}) uses {o}, which is not defined before it",
                        inst.op.opcode()
                    ),
                ));
            }
            for callee in inst.op.called_computations() {
                if callee.index() >= ci {
                    return Err(fail(
                        c,
                        format!(
                            "%{k} ({}) calls {callee}, which is not defined before it",
                            inst.op.opcode()
                        ),
                    ));
                }
            }
            if let Op::GetTupleElement { index } = inst.op {
                let operand = inst.operands.first().map(|&o| &c.instr(o).shape);
                let elem = operand
                    .and_then(|s| s.tuple_elements())
                    .and_then(|t| t.get(index as usize));
                if elem != Some(&inst.shape) {
                    return Err(fail(
                        c,
                        format!("%{k} get-tuple-element {index} does not match its operand"),
                    ));
                }
            }
            if let Op::Tuple = inst.op {
                let shapes: Vec<Shape> = inst
                    .operands
                    .iter()
                    .map(|&o| c.instr(o).shape.clone())
                    .collect();
                if inst.shape != Shape::Tuple(shapes) {
                    return Err(fail(
                        c,
                        format!("%{k} tuple shape does not match its operands"),
                    ));
                }
            }
        }
    }
    let entry = m.entry_computation();
    let result = entry.root_shape();
    for a in &m.aliases {
        let param = entry
            .params
            .get(a.param_number as usize)
            .map(|&p| &entry.instr(p).shape)
            .ok_or_else(|| {
                HloError::Verify(format!(
                    "alias names parameter {} which does not exist",
                    a.param_number
                ))
            })?;
        let out = a.output_index.iter().try_fold(result, |s, &i| {
            s.tuple_elements().and_then(|t| t.get(i as usize))
        });
        let pin = a.param_index.iter().try_fold(param, |s, &i| {
            s.tuple_elements().and_then(|t| t.get(i as usize))
        });
        if out.is_none() || out != pin {
            return Err(HloError::Verify(format!(
                "alias of output {:?} to parameter {} {:?}: shapes differ or index out of range",
                a.output_index, a.param_number, a.param_index
            )));
        }
    }
    Ok(())
}

//! The verifier: the structural invariants every module must keep (and every pass re-checks).
use crate::dtype::ElementType;
use crate::error::{HloError, Result};
use crate::ir::{CompId, Computation, Instruction, Module, Op, UnaryOp};
use crate::shape::{ArrayShape, Shape};

fn fail(c: &Computation, msg: String) -> HloError {
    HloError::Verify(format!("computation '{}': {msg}", c.name))
}

/// Checks ids, define-before-use order, callee order, parameters, tuple indices, operand counts,
/// elementwise operand shapes, called computations' signatures and aliases.
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
            if let Err(msg) = check_op(m, c, inst) {
                return Err(fail(c, format!("%{k} ({}): {msg}", inst.op.opcode())));
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

/// Operand count, elementwise shapes and called computations' signatures of one instruction
/// whose operands and callees are known to exist.
fn check_op(m: &Module, c: &Computation, inst: &Instruction) -> std::result::Result<(), String> {
    check_arity(m, c, inst)?;
    check_elementwise(c, inst)?;
    check_callees(m, c, inst)
}

fn operand_shape<'a>(c: &'a Computation, inst: &Instruction, i: usize) -> &'a Shape {
    &c.instr(inst.operands[i]).shape
}

fn operand_array<'a>(
    c: &'a Computation,
    inst: &Instruction,
    i: usize,
) -> std::result::Result<&'a ArrayShape, String> {
    let s = operand_shape(c, inst, i);
    s.as_array()
        .ok_or_else(|| format!("operand {i} is {s}, not an array"))
}

fn check_arity(m: &Module, c: &Computation, inst: &Instruction) -> std::result::Result<(), String> {
    let n = inst.operands.len();
    let rank = || {
        inst.operands
            .first()
            .and_then(|&o| c.instr(o).shape.as_array())
            .map_or(0, |a| a.rank())
    };
    let (ok, want) = match &inst.op {
        Op::Parameter { .. }
        | Op::Constant(_)
        | Op::Iota { .. }
        | Op::ReplicaId
        | Op::PartitionId => (n == 0, "no operands".to_string()),
        Op::Unary(_)
        | Op::Convert
        | Op::BitcastConvert
        | Op::Broadcast { .. }
        | Op::Reshape
        | Op::Transpose { .. }
        | Op::Reverse { .. }
        | Op::Slice { .. }
        | Op::GetTupleElement { .. }
        | Op::RngBitGenerator { .. }
        | Op::CollectivePermute { .. }
        | Op::While { .. }
        | Op::OptimizationBarrier
        | Op::ShardingHint(_) => (n == 1, "1 operand".into()),
        Op::Binary(_)
        | Op::Compare { .. }
        | Op::Pad { .. }
        | Op::Dot { .. }
        | Op::Gather { .. } => (n == 2, "2 operands".into()),
        Op::Select | Op::Clamp => (n == 3, "3 operands".into()),
        Op::AllReduce { .. }
        | Op::AllGather { .. }
        | Op::ReduceScatter { .. }
        | Op::AllToAll { .. }
        | Op::Concatenate { .. }
        | Op::Sort { .. } => (n >= 1, "at least 1 operand".into()),
        Op::Reduce { .. } | Op::ReduceWindow { .. } => (
            n >= 2 && n & 1 == 0,
            "N inputs then N init values (N >= 1)".into(),
        ),
        Op::Scatter { .. } => (
            n >= 3 && n % 2 == 1,
            "N operands, the indices, then N updates (N >= 1)".into(),
        ),
        Op::DynamicSlice { .. } => (
            n >= 1 && n == 1 + rank(),
            "the array then one start index per dimension".into(),
        ),
        Op::DynamicUpdateSlice => (
            n >= 2 && n == 2 + rank(),
            "the array, the update, then one start index per dimension".into(),
        ),
        Op::Conditional { branches } => (
            !branches.is_empty() && n == branches.len() + 1,
            format!(
                "the selector then one operand per branch ({})",
                branches.len()
            ),
        ),
        Op::Call { comp } => {
            let p = m.comp(*comp).params.len();
            (n == p, format!("{p} operands (the callee's parameters)"))
        }
        Op::Tuple | Op::CustomCall { .. } => (true, String::new()),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("has {n} operands, expected {want}"))
    }
}

fn check_elementwise(c: &Computation, inst: &Instruction) -> std::result::Result<(), String> {
    let out = match &inst.op {
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare { .. }
        | Op::Select
        | Op::Clamp
        | Op::Convert
        | Op::BitcastConvert => inst
            .shape
            .as_array()
            .ok_or_else(|| format!("result {} is not an array", inst.shape))?,
        _ => return Ok(()),
    };
    let same_dims = |i: usize| -> std::result::Result<&ArrayShape, String> {
        let a = operand_array(c, inst, i)?;
        if a.dims != out.dims {
            return Err(format!(
                "operand {i} is {a}, result is {out}: dimensions differ"
            ));
        }
        Ok(a)
    };
    match &inst.op {
        Op::Unary(u) => {
            let a = same_dims(0)?;
            let want = if *u == UnaryOp::IsFinite {
                ElementType::Pred
            } else {
                a.ty
            };
            if out.ty != want {
                return Err(format!("operand is {a} but the result is {out}"));
            }
        }
        Op::Binary(_) => {
            for i in 0..2 {
                if same_dims(i)?.ty != out.ty {
                    return Err(format!(
                        "operands {} and {} must both be of the result's type {}",
                        operand_shape(c, inst, 0),
                        operand_shape(c, inst, 1),
                        out.ty
                    ));
                }
            }
        }
        Op::Compare { .. } => {
            let (a, b) = (same_dims(0)?, same_dims(1)?);
            if a.ty != b.ty || out.ty != ElementType::Pred {
                return Err(format!("compares {a} with {b} into {out}"));
            }
        }
        Op::Select => {
            let p = operand_array(c, inst, 0)?;
            if p.ty != ElementType::Pred || !(p.is_scalar() || p.dims == out.dims) {
                return Err(format!(
                    "predicate {p} must be pred[] or pred of {out}'s dims"
                ));
            }
            for i in 1..3 {
                if operand_shape(c, inst, i) != &inst.shape {
                    return Err(format!(
                        "branch {} is not the result shape {out}",
                        operand_shape(c, inst, i)
                    ));
                }
            }
        }
        Op::Clamp => {
            if operand_shape(c, inst, 1) != &inst.shape {
                return Err(format!(
                    "operand {} is not the result shape {out}",
                    operand_shape(c, inst, 1)
                ));
            }
            for i in [0, 2] {
                let b = operand_array(c, inst, i)?;
                if b.ty != out.ty || !(b.is_scalar() || b.dims == out.dims) {
                    return Err(format!("bound {b} must be a scalar or the shape {out}"));
                }
            }
        }
        _ => {
            same_dims(0)?;
        }
    }
    Ok(())
}

/// `(p0, p1) -> r` as printed in messages.
fn signature(params: &[Shape], result: &Shape) -> String {
    let p: Vec<String> = params.iter().map(|s| s.to_string()).collect();
    format!("({}) -> {result}", p.join(", "))
}

/// One scalar per type, or the tuple of them.
fn scalars_result(types: &[ElementType]) -> Shape {
    match types {
        [t] => Shape::scalar(*t),
        ts => Shape::Tuple(ts.iter().map(|&t| Shape::scalar(t)).collect()),
    }
}

fn check_callees(
    m: &Module,
    c: &Computation,
    inst: &Instruction,
) -> std::result::Result<(), String> {
    let expect = |what: &str, comp: CompId, params: Vec<Shape>, result: Shape| {
        let callee = m.comp(comp);
        let got_params: Vec<Shape> = callee.param_shapes().into_iter().cloned().collect();
        if got_params != params || callee.root_shape() != &result {
            return Err(format!(
                "{what} '{}' has signature {}, expected {}",
                callee.name,
                signature(&got_params, callee.root_shape()),
                signature(&params, &result)
            ));
        }
        Ok(())
    };
    let types = |range: std::ops::Range<usize>| -> std::result::Result<Vec<ElementType>, String> {
        range
            .map(|i| operand_array(c, inst, i).map(|a| a.ty))
            .collect()
    };
    let n = inst.operands.len();
    let pred = Shape::scalar(ElementType::Pred);
    match &inst.op {
        Op::Call { comp } => {
            let params = (0..n).map(|i| operand_shape(c, inst, i).clone()).collect();
            expect("to_apply", *comp, params, inst.shape.clone())
        }
        Op::While { cond, body } => {
            let s = operand_shape(c, inst, 0);
            if s != &inst.shape {
                return Err(format!("init {s} differs from the result {}", inst.shape));
            }
            expect("body", *body, vec![s.clone()], s.clone())?;
            expect("condition", *cond, vec![s.clone()], pred)
        }
        Op::Conditional { branches } => {
            let sel = operand_shape(c, inst, 0);
            let by_pred = sel == &pred;
            if !(by_pred && branches.len() == 2) && sel != &Shape::scalar(ElementType::S32) {
                return Err(format!(
                    "selector {sel} must be pred[] (2 branches) or s32[] ({} branches)",
                    branches.len()
                ));
            }
            for (i, &b) in branches.iter().enumerate() {
                let arg = operand_shape(c, inst, i + 1).clone();
                expect("branch", b, vec![arg], inst.shape.clone())?;
            }
            Ok(())
        }
        Op::Reduce { comp, .. } | Op::ReduceWindow { comp, .. } => {
            let t = types(n / 2..n)?;
            let params = [t.clone(), t.clone()]
                .concat()
                .into_iter()
                .map(Shape::scalar)
                .collect();
            expect("to_apply", *comp, params, scalars_result(&t))
        }
        Op::Scatter { comp, .. } => {
            let t = types(0..(n - 1) / 2)?;
            let params = [t.clone(), t.clone()]
                .concat()
                .into_iter()
                .map(Shape::scalar)
                .collect();
            expect("to_apply", *comp, params, scalars_result(&t))
        }
        Op::Sort { comp, .. } => {
            let params = types(0..n)?
                .into_iter()
                .flat_map(|t| [Shape::scalar(t), Shape::scalar(t)])
                .collect();
            expect("comparator", *comp, params, pred)
        }
        Op::AllReduce { comp, .. } | Op::ReduceScatter { comp, .. } => {
            let t = Shape::scalar(operand_array(c, inst, 0)?.ty);
            expect("to_apply", *comp, vec![t.clone(), t.clone()], t)
        }
        _ => Ok(()),
    }
}

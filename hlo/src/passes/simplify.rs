//! Algebraic simplification and folding of scalar constants, then DCE.
//!
//! Rules (each keeps the instruction's exact shape):
//! - `x + 0`, `0 + x`, `x - 0`, `x * 1`, `1 * x`, `x / 1` become `x`, where the constant is a
//!   constant array or a broadcast scalar constant (as XLA's simplifier, `x + 0` does not
//!   preserve `-0.0`). `x * 0` becomes the zero for integers only (for floats, `inf * 0` and
//!   `NaN * 0` are NaN).
//! - `negate(negate(x))` becomes `x`; `reshape(reshape(x))` one reshape.
//! - reshape, transpose, convert and broadcast that change nothing become their operand.
//! - unary and binary ops and compares of scalar constants become a constant when the value is
//!   exactly what XLA computes (see `fold`).
//!
//! Instructions carrying a sharding are left alone: replacing them would drop the annotation.
//! Operands are rewritten before their users (one forward walk), so rules chain: folded
//! constants feed further folds and identities.
use super::{dce, fold};
use crate::error::Result;
use crate::ir::{BinaryOp, Computation, InstrId, Instruction, Module, Op, UnaryOp};
use crate::literal::Literal;
use crate::shape::Shape;

pub fn simplify(m: &Module) -> Result<Module> {
    super::verify(m)?;
    let computations = m.computations.iter().map(simplify_computation).collect();
    let out = Module {
        computations,
        ..m.clone()
    };
    dce(&out)
}

/// What becomes of one instruction.
enum Rewrite {
    Keep,
    /// Use this (earlier, already rewritten) instruction instead.
    Use(InstrId),
    /// Emit this instruction instead.
    Replace(Box<Instruction>),
}

fn simplify_computation(c: &Computation) -> Computation {
    let mut map: Vec<InstrId> = Vec::with_capacity(c.instrs.len());
    let mut instrs: Vec<Instruction> = Vec::with_capacity(c.instrs.len());
    for inst in &c.instrs {
        let new = Instruction {
            operands: inst.operands.iter().map(|o| map[o.index()]).collect(),
            ..inst.clone()
        };
        let id = InstrId(instrs.len() as u32);
        match rewrite(&instrs, &new) {
            Rewrite::Use(earlier) => map.push(earlier),
            Rewrite::Keep => {
                map.push(id);
                instrs.push(new);
            }
            Rewrite::Replace(r) => {
                map.push(id);
                instrs.push(*r);
            }
        }
    }
    Computation {
        name: c.name.clone(),
        params: c.params.iter().map(|p| map[p.index()]).collect(),
        root: map[c.root.index()],
        instrs,
    }
}

fn rewrite(instrs: &[Instruction], inst: &Instruction) -> Rewrite {
    if inst.sharding.is_some() {
        return Rewrite::Keep;
    }
    let operand = |i: usize| &instrs[inst.operands[i].index()];
    // A replacement must have exactly the instruction's shape.
    let use_if_same = |id: InstrId| {
        if instrs[id.index()].shape == inst.shape {
            Rewrite::Use(id)
        } else {
            Rewrite::Keep
        }
    };
    match (&inst.op, inst.operands.as_slice()) {
        (Op::Binary(op), &[a, b]) => {
            if let (Some(x), Some(y)) = (scalar_constant(operand(0)), scalar_constant(operand(1))) {
                return constant(fold::binary(*op, x, y), inst);
            }
            let is = |id: InstrId, v: f64| all_equal(instrs, id, v);
            let integer = inst.shape.as_array().is_some_and(|s| s.ty.is_integer());
            match op {
                BinaryOp::Add if is(b, 0.0) => use_if_same(a),
                BinaryOp::Add if is(a, 0.0) => use_if_same(b),
                BinaryOp::Sub if is(b, 0.0) => use_if_same(a),
                BinaryOp::Mul if is(b, 1.0) => use_if_same(a),
                BinaryOp::Mul if is(a, 1.0) => use_if_same(b),
                BinaryOp::Div if is(b, 1.0) => use_if_same(a),
                // Integers only: for floats, x * 0 is NaN for x = inf or NaN.
                BinaryOp::Mul if integer && is(b, 0.0) => use_if_same(b),
                BinaryOp::Mul if integer && is(a, 0.0) => use_if_same(a),
                _ => Rewrite::Keep,
            }
        }
        (Op::Unary(op), &[_]) => {
            let x = operand(0);
            if *op == UnaryOp::Neg && x.op == Op::Unary(UnaryOp::Neg) && x.sharding.is_none() {
                return use_if_same(x.operands[0]);
            }
            match scalar_constant(x) {
                Some(l) => constant(fold::unary(*op, l), inst),
                None => Rewrite::Keep,
            }
        }
        (Op::Compare { dir, ty }, &[_, _]) => {
            match (scalar_constant(operand(0)), scalar_constant(operand(1))) {
                (Some(x), Some(y)) => constant(fold::compare(*dir, *ty, x, y), inst),
                _ => Rewrite::Keep,
            }
        }
        (Op::Reshape, &[a]) => {
            let x = operand(0);
            if x.shape == inst.shape {
                return Rewrite::Use(a);
            }
            if x.op == Op::Reshape && x.sharding.is_none() {
                let inner = x.operands[0];
                if instrs[inner.index()].shape == inst.shape {
                    return Rewrite::Use(inner);
                }
                return Rewrite::Replace(Box::new(Instruction {
                    operands: vec![inner],
                    ..inst.clone()
                }));
            }
            Rewrite::Keep
        }
        (Op::Transpose { perm }, &[a]) if is_iota(perm) => use_if_same(a),
        (Op::Convert, &[a]) => use_if_same(a),
        (Op::Broadcast { dims }, &[a]) if is_iota(dims) => use_if_same(a),
        _ => Rewrite::Keep,
    }
}

fn is_iota(dims: &[i64]) -> bool {
    dims.iter().enumerate().all(|(i, &d)| d == i as i64)
}

fn scalar_constant(i: &Instruction) -> Option<&Literal> {
    match &i.op {
        Op::Constant(l) if l.shape().is_scalar() => Some(l),
        _ => None,
    }
}

/// Whether `id` is a numeric constant (or a broadcast scalar constant) with every element `v`.
fn all_equal(instrs: &[Instruction], id: InstrId, v: f64) -> bool {
    let i = &instrs[id.index()];
    let lit = match (&i.op, i.operands.as_slice()) {
        (Op::Constant(l), _) => l,
        (Op::Broadcast { .. }, &[s]) => match scalar_constant(&instrs[s.index()]) {
            Some(l) => l,
            None => return false,
        },
        _ => return false,
    };
    !lit.element_type().is_pred() && lit.is_all(v)
}

/// A folded value as a constant instruction, if folding succeeded with the right shape.
fn constant(lit: Option<Literal>, inst: &Instruction) -> Rewrite {
    match lit {
        Some(l) if Shape::Array(l.shape().clone()) == inst.shape => {
            Rewrite::Replace(Box::new(Instruction {
                op: Op::Constant(l),
                operands: vec![],
                shape: inst.shape.clone(),
                sharding: None,
                scope: inst.scope.clone(),
            }))
        }
        _ => Rewrite::Keep,
    }
}

//! Common-subexpression elimination within each computation: an instruction equal to an earlier
//! one (same op and attributes, same operands after merging, same shape and sharding) is
//! replaced by it. Operands of commutative binary ops compare in canonical order.
//!
//! Never merged: parameters, collectives (two equal ones are two communications),
//! rng-bit-generator, side-effecting custom calls, and calls into computations that contain any
//! of these.
use super::verify;
use crate::error::Result;
use crate::ir::{Computation, InstrId, Instruction, Module, Op};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

pub fn cse(m: &Module) -> Result<Module> {
    verify(m)?;
    let mut impure = Vec::with_capacity(m.computations.len());
    for c in &m.computations {
        // Callees come first, so their flags are known here.
        let calls_impure = |op: &Op| op.called_computations().iter().any(|&c| impure[c.index()]);
        let any = c
            .instrs
            .iter()
            .any(|i| effectful(&i.op) || calls_impure(&i.op));
        impure.push(any);
    }
    let computations = m
        .computations
        .iter()
        .map(|c| cse_computation(c, &impure))
        .collect();
    let out = Module {
        computations,
        ..m.clone()
    };
    verify(&out)?;
    Ok(out)
}

/// Ops whose repetition is observable (parameters are kept apart by number anyway).
fn effectful(op: &Op) -> bool {
    op.is_collective()
        || matches!(op, Op::RngBitGenerator { .. })
        || matches!(
            op,
            Op::CustomCall {
                has_side_effect: true,
                ..
            }
        )
}

fn mergeable(op: &Op, impure: &[bool]) -> bool {
    !matches!(op, Op::Parameter { .. })
        && !effectful(op)
        && !op
            .called_computations()
            .iter()
            .any(|c| impure.get(c.index()).copied().unwrap_or(true))
}

/// Operands in the order that makes equal values compare equal.
fn canonical_operands(inst: &Instruction) -> Vec<InstrId> {
    let mut ops = inst.operands.clone();
    if let Op::Binary(b) = inst.op {
        if b.is_commutative() {
            ops.sort();
        }
    }
    ops
}

fn key_hash(inst: &Instruction, operands: &[InstrId]) -> u64 {
    let mut h = DefaultHasher::new();
    // `Op` holds literals and is not `Hash`; its Debug form lists every attribute.
    format!("{:?}", inst.op).hash(&mut h);
    operands.hash(&mut h);
    inst.shape.hash(&mut h);
    inst.sharding.hash(&mut h);
    h.finish()
}

fn cse_computation(c: &Computation, impure: &[bool]) -> Computation {
    let mut map: Vec<InstrId> = Vec::with_capacity(c.instrs.len());
    let mut instrs: Vec<Instruction> = Vec::with_capacity(c.instrs.len());
    let mut seen: HashMap<u64, Vec<(InstrId, Vec<InstrId>)>> = HashMap::new();
    for inst in &c.instrs {
        let new = Instruction {
            operands: inst.operands.iter().map(|o| map[o.index()]).collect(),
            ..inst.clone()
        };
        let id = InstrId(instrs.len() as u32);
        if mergeable(&new.op, impure) {
            let key = canonical_operands(&new);
            let bucket = seen.entry(key_hash(&new, &key)).or_default();
            let earlier = bucket.iter().find(|(e, ops)| {
                let e = &instrs[e.index()];
                *ops == key && e.op == new.op && e.shape == new.shape && e.sharding == new.sharding
            });
            if let Some((e, _)) = earlier {
                map.push(*e);
                continue;
            }
            bucket.push((id, key));
        }
        map.push(id);
        instrs.push(new);
    }
    Computation {
        name: c.name.clone(),
        params: c.params.iter().map(|p| map[p.index()]).collect(),
        root: map[c.root.index()],
        instrs,
    }
}

//! Dead-code elimination: drops instructions the root does not depend on and computations that
//! nothing live calls. Parameters (their numbering is the calling convention), side-effecting
//! custom calls and calls into computations holding one always stay. Ids are renumbered; order (operands before users, callees before
//! callers) is kept because survivors keep their relative order.
use super::verify;
use crate::error::{HloError, Result};
use crate::ir::{CompId, Computation, InstrId, Instruction, Module, Op};

pub fn dce(m: &Module) -> Result<Module> {
    verify(m)?;
    let n = m.computations.len();
    let mut reachable = vec![false; n];
    reachable[m.entry.index()] = true;
    // A computation has effects if it holds a side-effecting op or calls one that does
    // (callees come first, so one forward walk settles it).
    let mut effects = Vec::with_capacity(n);
    for c in &m.computations {
        let any = c.instrs.iter().any(|i| effectful(&i.op, &effects));
        effects.push(any);
    }
    let mut live = vec![Vec::new(); n];
    // Callers come after their callees, so a reverse walk sees every caller of a computation
    // before the computation itself.
    for ci in (0..n).rev() {
        if !reachable[ci] {
            continue;
        }
        let c = &m.computations[ci];
        live[ci] = live_instructions(c, &effects);
        for (inst, _) in c.instrs.iter().zip(&live[ci]).filter(|(_, &l)| l) {
            for callee in inst.op.called_computations() {
                reachable[callee.index()] = true;
            }
        }
    }
    let mut comp_map = vec![None; n];
    let mut computations = Vec::new();
    for ci in 0..n {
        if reachable[ci] {
            let c = compact(&m.computations[ci], &live[ci], &comp_map)?;
            comp_map[ci] = Some(CompId(computations.len() as u32));
            computations.push(c);
        }
    }
    let out = Module {
        name: m.name.clone(),
        computations,
        entry: mapped(&comp_map, m.entry)?,
        aliases: m.aliases.clone(),
    };
    verify(&out)?;
    Ok(out)
}

/// Side-effecting custom calls, and calls into computations that contain one.
fn effectful(op: &Op, effects: &[bool]) -> bool {
    let calls = op.called_computations();
    (op.has_side_effect() && !matches!(op, Op::Parameter { .. }))
        || calls
            .iter()
            .any(|c| effects.get(c.index()).copied().unwrap_or(true))
}

/// Root, parameters, side-effecting ops and everything they use (operands precede users, so
/// one backward sweep closes the set).
fn live_instructions(c: &Computation, effects: &[bool]) -> Vec<bool> {
    let mut live: Vec<bool> = c
        .instrs
        .iter()
        .map(|i| matches!(i.op, Op::Parameter { .. }) || effectful(&i.op, effects))
        .collect();
    live[c.root.index()] = true;
    for k in (0..c.instrs.len()).rev() {
        if live[k] {
            for o in &c.instrs[k].operands {
                live[o.index()] = true;
            }
        }
    }
    live
}

/// The computation with only its live instructions, ids and callee ids renumbered.
fn compact(c: &Computation, live: &[bool], comp_map: &[Option<CompId>]) -> Result<Computation> {
    let mut map = vec![None; c.instrs.len()];
    let mut instrs = Vec::new();
    for (k, inst) in c.instrs.iter().enumerate() {
        if !live[k] {
            continue;
        }
        let operands = inst
            .operands
            .iter()
            .map(|&o| mapped(&map, o))
            .collect::<Result<Vec<_>>>()?;
        map[k] = Some(InstrId(instrs.len() as u32));
        instrs.push(Instruction {
            op: remap_comps(&inst.op, comp_map)?,
            operands,
            shape: inst.shape.clone(),
            sharding: inst.sharding.clone(),
            scope: inst.scope.clone(),
        });
    }
    Ok(Computation {
        name: c.name.clone(),
        params: c
            .params
            .iter()
            .map(|&p| mapped(&map, p))
            .collect::<Result<_>>()?,
        root: mapped(&map, c.root)?,
        instrs,
    })
}

/// The new id of `old` in a renumbering, an error if `old` was dropped.
pub(super) fn mapped<K: Copy + std::fmt::Display + Index, T: Copy>(
    map: &[Option<T>],
    old: K,
) -> Result<T> {
    map.get(old.index())
        .copied()
        .flatten()
        .ok_or_else(|| HloError::Verify(format!("{old} was removed but is still referenced")))
}

/// Ids that index an arena.
pub(super) trait Index {
    fn index(self) -> usize;
}

impl Index for InstrId {
    fn index(self) -> usize {
        InstrId::index(self)
    }
}

impl Index for CompId {
    fn index(self) -> usize {
        CompId::index(self)
    }
}

/// `op` with every called computation renamed through `map` (an error if one was dropped).
pub(super) fn remap_comps(op: &Op, map: &[Option<CompId>]) -> Result<Op> {
    let m = |c: &CompId| mapped(map, *c);
    let mut op = op.clone();
    match &mut op {
        Op::Reduce { comp, .. }
        | Op::ReduceWindow { comp, .. }
        | Op::Scatter { comp, .. }
        | Op::Sort { comp, .. }
        | Op::AllReduce { comp, .. }
        | Op::ReduceScatter { comp, .. }
        | Op::Call { comp } => *comp = m(comp)?,
        Op::While { cond, body } => {
            *cond = m(cond)?;
            *body = m(body)?;
        }
        Op::Conditional { branches } => {
            for b in branches.iter_mut() {
                *b = m(b)?;
            }
        }
        _ => {}
    }
    Ok(op)
}

//! Reads a lowered module the way XLA:GPU's FP8 GEMM rewriter does: which dots take operands
//! dequantized from f8 (`multiply(convert(f8), broadcast(scalar))`, possibly behind ops that
//! commute with dequantization).
#![allow(dead_code)]
use hlo::proto::{HloInstructionProto, HloModuleProto, PrimitiveType};
use std::collections::HashMap;

/// The entry computation's instructions by id.
pub fn entry(p: &HloModuleProto) -> HashMap<i64, HloInstructionProto> {
    let c = p
        .computations
        .iter()
        .find(|c| c.id == p.entry_computation_id)
        .expect("entry computation");
    c.instructions.iter().map(|i| (i.id, i.clone())).collect()
}

pub fn ty(i: &HloInstructionProto) -> i32 {
    i.shape.as_ref().map_or(0, |s| s.element_type)
}

pub fn is_f8(t: i32) -> bool {
    t == PrimitiveType::F8e4m3fn as i32 || t == PrimitiveType::F8e5m2 as i32
}

/// The f8 type a dot operand is dequantized from, if it has the rewriter's form: ops that
/// commute with dequantization (copy, reshape, transpose, bitcast), then
/// `multiply(convert(f8), broadcast(scalar))` in either order.
pub fn dequantized_from(ins: &HashMap<i64, HloInstructionProto>, mut id: i64) -> Option<i32> {
    while matches!(
        ins[&id].opcode.as_str(),
        "copy" | "reshape" | "transpose" | "bitcast"
    ) {
        id = ins[&id].operand_ids[0];
    }
    let mul = &ins[&id];
    if mul.opcode != "multiply" {
        return None;
    }
    let (a, b) = (&ins[&mul.operand_ids[0]], &ins[&mul.operand_ids[1]]);
    let (conv, bcast) = if a.opcode == "convert" {
        (a, b)
    } else {
        (b, a)
    };
    if conv.opcode != "convert" || bcast.opcode != "broadcast" {
        return None;
    }
    let scalar = ins[&bcast.operand_ids[0]]
        .shape
        .as_ref()
        .is_some_and(|s| s.dimensions.is_empty());
    let src = ty(&ins[&conv.operand_ids[0]]);
    (scalar && is_f8(src)).then_some(src)
}

/// (lhs f8 type, rhs f8 type) of every dot whose operands are both dequantized f8, and the
/// number of dots that are not.
pub fn fp8_dots(p: &HloModuleProto) -> (Vec<(i32, i32)>, usize) {
    let ins = entry(p);
    let mut fp8 = vec![];
    let mut other = 0;
    for d in ins.values().filter(|i| i.opcode == "dot") {
        match (
            dequantized_from(&ins, d.operand_ids[0]),
            dequantized_from(&ins, d.operand_ids[1]),
        ) {
            (Some(a), Some(b)) => fp8.push((a, b)),
            _ => other += 1,
        }
    }
    fp8.sort();
    (fp8, other)
}

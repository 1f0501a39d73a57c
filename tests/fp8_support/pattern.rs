//! Reads a lowered module the way XLA:GPU decides whether a dot becomes a cuBLASLt FP8 GEMM
//! (`__cublas$lt$matmul$f8`), requirement by requirement, each mirroring the XLA source that
//! imposes it (openxla/xla, as in jax-cuda13-pjrt 0.11.2):
//!
//! 1. The dot reads f8 values (through bitcast/copy/reshape/transpose only, which XLA folds or
//!    moves): `MatchFp8Param` in xla/service/gpu/transforms/gemm_rewriter.cc takes an operand
//!    that "is FP8" directly. It also accepts a dequantized operand,
//!    `multiply(convert(f8), broadcast(scale))`, but that form does not survive to it: the
//!    f8 value then exists only between two converts, `convert(convert(x, f8), bf16)`, and
//!    `SimplifyFPConversions` (xla/hlo/transforms/simplifiers/simplify_fp_conversions.cc,
//!    `RunOnComputation`: any chain of float converts `A -> B -> C` becomes `A -> C`, f8 counting
//!    as float), which GpuCompiler runs by default (`xla_allow_excess_precision`) in every
//!    computation, deletes it. Measured: the optimized BERT-base step of that form had no f8
//!    value left and 0 FP8 GEMMs. So a `convert` from f8 anywhere before the dot fails here.
//! 2. Not both operands e5m2, each e4m3fn or e5m2 (`CreateF8CustomCall`: "one of the operands
//!    must be F8E4M3FN").
//! 3. One contracting dimension per operand and operands of rank batch + 2 (`CreateF8CustomCall`:
//!    "A and B must have one contracting dimension", "Inputs must have exactly one contracting
//!    and one non-contracting dimension"); default operand precision.
//! 4. The result is bf16, f16 or f32 (`CreateF8CustomCall`'s `supported_d_types`; f8 results
//!    need the amax epilogue we do not use).
//! 5. The dot's only user is `divide(dot, broadcast(scalar))`, which `HandleDivide` / `F8ScaleD`
//!    fold into the GEMM's scale. Any user that `GemmFusion` (gemm_fusion.cc, run before the
//!    rewriter) fuses as output, those `legacy_triton::IsDistributiveOverAddition` lists
//!    (multiply, convert, reshape, copy, transpose, ...), would make the dot a Triton fusion that
//!    the rewriter, which only visits non-fusion computations, never sees.
//!
//! (cuBLASLt's row-major A / column-major B and dims multiple of 16 are no requirement on the
//! module: `CreateF8CustomCall` transposes and pads the operands itself.)
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

fn rank(i: &HloInstructionProto) -> usize {
    i.shape.as_ref().map_or(0, |s| s.dimensions.len())
}

/// Ops XLA moves or folds around a GEMM operand (gemm_rewriter.cc's commutative ops that do not
/// change values; transposes and reshapes are folded into the dot or become bitcasts).
const PASS_THROUGH: [&str; 4] = ["bitcast", "copy", "reshape", "transpose"];

/// Whether an f8 value feeds `id` the way `FindF8SubgraphRecursive` (gemm_rewriter.cc) looks
/// for one: through single-operand ops, divide, dynamic-slice and pad (operand 0), multiply and
/// select. Dots with no f8 on their operand paths are ordinary (bf16) dots.
fn reaches_f8(ins: &HashMap<i64, HloInstructionProto>, id: i64, seen: &mut Vec<i64>) -> bool {
    if seen.contains(&id) {
        return false;
    }
    seen.push(id);
    let i = &ins[&id];
    if is_f8(ty(i)) {
        return true;
    }
    let ops = &i.operand_ids;
    match i.opcode.as_str() {
        "divide" | "dynamic-slice" | "pad" => reaches_f8(ins, ops[0], seen),
        "multiply" => ops.iter().any(|&o| reaches_f8(ins, o, seen)),
        "select" => ops[1..].iter().any(|&o| reaches_f8(ins, o, seen)),
        _ if ops.len() == 1 => reaches_f8(ins, ops[0], seen),
        _ => false,
    }
}

/// The f8 type a dot operand reads directly (requirement 1), or why it does not.
fn f8_operand(ins: &HashMap<i64, HloInstructionProto>, mut id: i64) -> Result<i32, String> {
    while PASS_THROUGH.contains(&ins[&id].opcode.as_str()) {
        id = ins[&id].operand_ids[0];
    }
    let i = &ins[&id];
    if is_f8(ty(i)) {
        return Ok(ty(i));
    }
    Err(format!(
        "operand {} ({}) is not an f8 value but computed from one: a dequantized operand \
         (convert(f8) -> wider) loses its f8 value to XLA's SimplifyFPConversions before the \
         GEMM rewriter runs",
        i.name, i.opcode
    ))
}

/// The users of each instruction of the entry computation.
fn users(ins: &HashMap<i64, HloInstructionProto>) -> HashMap<i64, Vec<i64>> {
    let mut u: HashMap<i64, Vec<i64>> = HashMap::new();
    for i in ins.values() {
        for &o in &i.operand_ids {
            u.entry(o).or_default().push(i.id);
        }
    }
    u
}

/// Checks requirements 1 to 5 for `dot`: its (lhs, rhs) f8 types, or the first requirement it
/// fails.
pub fn fp8_gemm(
    ins: &HashMap<i64, HloInstructionProto>,
    users: &HashMap<i64, Vec<i64>>,
    dot: &HloInstructionProto,
) -> Result<(i32, i32), String> {
    let a = f8_operand(ins, dot.operand_ids[0])?;
    let b = f8_operand(ins, dot.operand_ids[1])?;
    let e5 = PrimitiveType::F8e5m2 as i32;
    if a == e5 && b == e5 {
        return Err("e5m2 x e5m2: cuBLASLt needs one e4m3fn operand".into());
    }
    let dn = dot
        .dot_dimension_numbers
        .as_ref()
        .ok_or("no dot dimensions")?;
    let batch = dn.lhs_batch_dimensions.len();
    let (l, r) = (&ins[&dot.operand_ids[0]], &ins[&dot.operand_ids[1]]);
    if dn.lhs_contracting_dimensions.len() != 1
        || dn.rhs_contracting_dimensions.len() != 1
        || rank(l) != batch + 2
        || rank(r) != batch + 2
    {
        return Err("not one contracting and one non-contracting dimension per operand".into());
    }
    if let Some(p) = &dot.precision_config {
        if p.operand_precision.iter().any(|&x| x != 0) {
            return Err(format!(
                "operand precision {:?}, not DEFAULT",
                p.operand_precision
            ));
        }
    }
    let out = ty(dot);
    if ![PrimitiveType::Bf16, PrimitiveType::F16, PrimitiveType::F32]
        .iter()
        .any(|&t| t as i32 == out)
    {
        return Err(format!("result type {out}: not bf16, f16 or f32"));
    }
    let us = users.get(&dot.id).map_or(&[][..], |v| v.as_slice());
    let [u] = us else {
        return Err(format!(
            "{} users; the scale divide must be the only one",
            us.len()
        ));
    };
    let u = &ins[u];
    let scalar_bcast = |id: i64| {
        let s = &ins[&id];
        s.opcode == "broadcast" && rank(&ins[&s.operand_ids[0]]) == 0
    };
    if u.opcode != "divide" || u.operand_ids[0] != dot.id || !scalar_bcast(u.operand_ids[1]) {
        return Err(format!(
            "the result feeds {} ({}), not divide(dot, broadcast(scalar)): GemmFusion would \
             fuse a distributive user into a Triton GEMM, or the scale is not folded",
            u.name, u.opcode
        ));
    }
    Ok((a, b))
}

/// Every dot of the entry computation, sorted into FP8 GEMMs (their (lhs, rhs) f8 types),
/// ordinary dots (no f8 on their operand paths: their count), and dots computed from f8 values
/// that XLA would not make FP8 GEMMs (name and reason).
pub struct Dots {
    pub fp8: Vec<(i32, i32)>,
    pub other: usize,
    pub broken: Vec<(String, String)>,
}

pub fn dots(p: &HloModuleProto) -> Dots {
    let ins = entry(p);
    let users = users(&ins);
    let mut d = Dots {
        fp8: vec![],
        other: 0,
        broken: vec![],
    };
    for dot in ins.values().filter(|i| i.opcode == "dot") {
        let from_f8 = dot
            .operand_ids
            .iter()
            .any(|&o| reaches_f8(&ins, o, &mut vec![]));
        if !from_f8 {
            d.other += 1;
            continue;
        }
        match fp8_gemm(&ins, &users, dot) {
            Ok(t) => d.fp8.push(t),
            Err(why) => d.broken.push((dot.name.clone(), why)),
        }
    }
    d.fp8.sort();
    d.broken.sort();
    d
}

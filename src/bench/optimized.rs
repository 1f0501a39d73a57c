//! What XLA made of a program: counts read from the optimized module the plugin compiled.
use anyhow::{Context, Result};
use hlo::proto::{HloInstructionProto, HloModuleProto, PrimitiveType};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Opcodes that move data between devices (the `-start` halves of asynchronous pairs stand for
/// the collective; their `-done` halves are not counted again).
const COLLECTIVES: [&str; 10] = [
    "all-reduce",
    "all-reduce-start",
    "all-gather",
    "all-gather-start",
    "reduce-scatter",
    "all-to-all",
    "collective-permute",
    "collective-permute-start",
    "collective-broadcast",
    "ragged-all-to-all",
];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizedStats {
    /// Instructions in every computation (fused computations included).
    pub instructions: usize,
    pub computations: usize,
    /// Fusion instructions: roughly one device kernel each on GPU.
    pub fusions: usize,
    /// Custom calls by target (cuBLAS GEMMs, cuDNN attention, ...).
    pub custom_calls: BTreeMap<String, usize>,
    /// Collectives by opcode.
    pub collectives: BTreeMap<String, usize>,
    /// Instructions of an 8-bit float type (0: XLA kept no f8 value at all).
    #[serde(default)]
    pub f8_values: usize,
    /// Dots that read an f8 operand (in Triton GEMM fusions, say): FP8 math that is not a
    /// cuBLASLt FP8 custom call.
    #[serde(default)]
    pub f8_dots: usize,
}

impl OptimizedStats {
    /// Reads the counts from serialized `HloModuleProto` bytes.
    pub fn from_module_bytes(bytes: &[u8]) -> Result<Self> {
        let module = HloModuleProto::decode(bytes).context("decoding the optimized module")?;
        let mut s = OptimizedStats {
            computations: module.computations.len(),
            ..Default::default()
        };
        let f8 = |t: i32| t == PrimitiveType::F8e4m3fn as i32 || t == PrimitiveType::F8e5m2 as i32;
        let ty = |i: &HloInstructionProto| i.shape.as_ref().map_or(0, |s| s.element_type);
        let types: HashMap<i64, i32> = module
            .computations
            .iter()
            .flat_map(|c| &c.instructions)
            .map(|i| (i.id, ty(i)))
            .collect();
        for instr in module.computations.iter().flat_map(|c| &c.instructions) {
            s.instructions += 1;
            s.f8_values += usize::from(f8(ty(instr)));
            match instr.opcode.as_str() {
                "dot"
                    if instr
                        .operand_ids
                        .iter()
                        .any(|o| types.get(o).is_some_and(|&t| f8(t))) =>
                {
                    s.f8_dots += 1
                }
                "fusion" => s.fusions += 1,
                "custom-call" => {
                    *s.custom_calls
                        .entry(instr.custom_call_target.clone())
                        .or_default() += 1
                }
                op if COLLECTIVES.contains(&op) => {
                    *s.collectives.entry(op.to_string()).or_default() += 1
                }
                _ => {}
            }
        }
        Ok(s)
    }

    pub fn custom_call_count(&self) -> usize {
        self.custom_calls.values().sum()
    }

    pub fn collective_count(&self) -> usize {
        self.collectives.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlo::proto::{HloComputationProto, HloInstructionProto};

    fn instr(opcode: &str, target: &str) -> HloInstructionProto {
        HloInstructionProto {
            opcode: opcode.into(),
            custom_call_target: target.into(),
            ..Default::default()
        }
    }

    #[test]
    fn counts_fusions_custom_calls_and_collectives() {
        let module = HloModuleProto {
            computations: vec![
                HloComputationProto {
                    instructions: vec![instr("parameter", ""), instr("add", "")],
                    ..Default::default()
                },
                HloComputationProto {
                    instructions: vec![
                        instr("fusion", ""),
                        instr("fusion", ""),
                        instr("custom-call", "__cublas$gemm"),
                        instr("custom-call", "__cublas$gemm"),
                        instr("custom-call", "__cudnn$fmhaSoftmax"),
                        instr("all-reduce-start", ""),
                        instr("all-reduce-done", ""),
                    ],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let s = OptimizedStats::from_module_bytes(&module.encode_to_vec()).unwrap();
        assert_eq!(s.instructions, 9);
        assert_eq!(s.computations, 2);
        assert_eq!(s.fusions, 2);
        assert_eq!(s.custom_calls["__cublas$gemm"], 2);
        assert_eq!(s.custom_call_count(), 3);
        assert_eq!(s.collective_count(), 1);
        assert!(OptimizedStats::from_module_bytes(b"\xff\xff\xff").is_err());
        assert_eq!((s.f8_values, s.f8_dots), (0, 0));
    }

    #[test]
    fn counts_f8_values_and_the_dots_that_read_them() {
        use hlo::proto::ShapeProto;
        let typed =
            |id: i64, opcode: &str, t: PrimitiveType, operands: &[i64]| HloInstructionProto {
                id,
                opcode: opcode.into(),
                shape: Some(ShapeProto {
                    element_type: t as i32,
                    ..Default::default()
                }),
                operand_ids: operands.to_vec(),
                ..Default::default()
            };
        let module = HloModuleProto {
            computations: vec![HloComputationProto {
                instructions: vec![
                    typed(1, "parameter", PrimitiveType::F8e4m3fn, &[]),
                    typed(2, "parameter", PrimitiveType::F8e5m2, &[]),
                    typed(3, "dot", PrimitiveType::F32, &[1, 2]),
                    typed(4, "parameter", PrimitiveType::Bf16, &[]),
                    typed(5, "dot", PrimitiveType::Bf16, &[4, 4]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let s = OptimizedStats::from_module_bytes(&module.encode_to_vec()).unwrap();
        assert_eq!((s.f8_values, s.f8_dots), (2, 1));
    }
}

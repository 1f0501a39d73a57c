//! What XLA made of a program: counts read from the optimized module the plugin compiled.
use anyhow::{Context, Result};
use hlo::proto::HloModuleProto;
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
}

impl OptimizedStats {
    /// Reads the counts from serialized `HloModuleProto` bytes.
    pub fn from_module_bytes(bytes: &[u8]) -> Result<Self> {
        let module = HloModuleProto::decode(bytes).context("decoding the optimized module")?;
        let mut s = OptimizedStats {
            computations: module.computations.len(),
            ..Default::default()
        };
        for instr in module.computations.iter().flat_map(|c| &c.instructions) {
            s.instructions += 1;
            match instr.opcode.as_str() {
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
    }
}

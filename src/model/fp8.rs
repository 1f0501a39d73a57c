//! FP8 dense layers ([`ComputeDtype::Fp8`]): which layers run as FP8 matmuls, and the matmul.
//!
//! [`fp8_matmul`] is flax's `Fp8DotGeneralOp` on our ops: the input (bf16) and the f32 master
//! weight are quantize-dequantized to e4m3fn with this step's per-tensor scales, the dot runs
//! on the dequantized bf16 values (an FP8 GEMM once XLA:GPU's rewriter has matched the
//! convert-multiply-dot pattern, see hlo's `ops/fp8.rs`), and the backward pass quantizes the
//! output's gradient to e5m2 before the two backward dots, which are then FP8 GEMMs too. The
//! dot is 2-D (rows x features): cuBLASLt's FP8 GEMM takes one non-contracting dimension per
//! operand.
//!
//! The scales are values the train step hands the loss function, named by
//! [`crate::train::fp8::scale_name`]; the step reads the amaxes as their gradients.
use super::params::names;
use super::{BertConfig, ComputeDtype, Execution, ModelError, Result};
use crate::train::fp8::{DelayedScaling, Fp8Setup, Fp8Tensor};
use crate::train::StepConfig;
use hlo::ir::{DotDims, Precision};
use hlo::{Builder, ElementType, Value};

/// The encoder's dense layers that are FP8 matmuls under [`ComputeDtype::Fp8`], by parameter
/// prefix: per layer query, key, value, attention output, FFN in, FFN out.
pub fn fp8_layer_names(cfg: &BertConfig) -> Vec<String> {
    const PARTS: [&str; 6] = [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ];
    (0..cfg.num_hidden_layers)
        .flat_map(|l| PARTS.map(|p| names::layer(l, p)))
        .collect()
}

/// The train step's FP8 setup for `cfg` run as `exec`: its FP8 matmuls under `recipe`, or
/// `None` when `exec` does not compute in fp8.
pub fn fp8_setup(cfg: &BertConfig, exec: Execution, recipe: &DelayedScaling) -> Option<Fp8Setup> {
    (exec.compute == ComputeDtype::Fp8).then(|| Fp8Setup {
        recipe: recipe.clone(),
        layers: fp8_layer_names(cfg),
    })
}

/// Errors unless `step` carries the FP8 scaling state `cfg`'s FP8 matmuls need under `exec`
/// (a step built for an fp8 model without it would not find their scales).
pub fn require_fp8_setup(
    cfg: &BertConfig,
    exec: Execution,
    step: &StepConfig,
) -> anyhow::Result<()> {
    match (exec.compute, &step.fp8) {
        (ComputeDtype::Fp8, None) => anyhow::bail!(
            "the model computes in fp8 but the train step carries no FP8 scaling state; set \
             StepConfig::fp8 (model::fp8::fp8_setup)"
        ),
        (ComputeDtype::Fp8, Some(f)) if f.layers != fp8_layer_names(cfg) => anyhow::bail!(
            "the train step's FP8 matmuls ({}) are not the model's ({})",
            f.layers.len(),
            fp8_layer_names(cfg).len()
        ),
        _ => Ok(()),
    }
}

/// `x[..., k] w[k, n]` as an FP8 matmul (see the module docs) with `scales` for x, w and the
/// output gradient ([`Fp8Tensor::ALL`] order); the result is bf16 `[..., n]`.
pub fn fp8_matmul(b: &Builder, x: Value, w: Value, scales: [Value; 3]) -> Result<Value> {
    let xd = b.dims(x)?;
    let wd = b.dims(w)?;
    let (Some(&k), [wk, n]) = (xd.last(), wd.as_slice()) else {
        return Err(ModelError::Tensor(format!(
            "fp8 matmul needs x [..., k] and w [k, n], got {xd:?} and {wd:?}"
        )));
    };
    if k != *wk {
        return Err(ModelError::Tensor(format!(
            "fp8 matmul: x's last dim {k} does not match w's first {wk}"
        )));
    }
    let rows: i64 = xd[..xd.len() - 1].iter().product();
    let bf16 = ElementType::Bf16;
    let [sx, sw, sg] = scales;
    let x2 = b.reshape(b.convert(x, bf16)?, &[rows, k])?;
    let xq = b.fp8_in_qdq(x2, sx, Fp8Tensor::X.format(), bf16)?;
    let wq = b.fp8_in_qdq(w, sw, Fp8Tensor::W.format(), bf16)?;
    let dims = DotDims {
        lhs_contracting: vec![1],
        rhs_contracting: vec![0],
        ..Default::default()
    };
    let y = b.dot_general(xq, wq, dims, [Precision::Default; 2], None)?;
    let y = b.fp8_out_qdq(y, sg, Fp8Tensor::Grad.format())?;
    let mut out = xd[..xd.len() - 1].to_vec();
    out.push(*n);
    Ok(b.reshape(y, &out)?)
}

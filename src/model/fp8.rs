//! FP8 dense layers ([`ComputeDtype::Fp8`]): which layers run as FP8 matmuls, and the matmul.
//!
//! [`fp8_matmul`] is Transformer Engine's FP8 linear layer (and flax's newer `q_dot_dq`) on our
//! ops, hlo's [`Builder::fp8_matmul`]: the input (bf16) and the f32 master weight are quantized to
//! e4m3fn with this step's per-tensor scales, the dot reads the f8 tensors and accumulates in f32
//! with the scales divided out of its result, and the backward pass quantizes the output's
//! gradient to e5m2 for its two dots. On XLA:GPU (Hopper) each of the three dots becomes a
//! cuBLASLt FP8 GEMM (`__cublas$lt$matmul$f8`); hlo's `ops/fp8.rs` says why the emitted form is
//! what it is. The dot is 2-D (rows x features): cuBLASLt's FP8 GEMM takes one non-contracting
//! dimension per operand.
//!
//! The scales are values the train step hands the loss function, named by
//! [`crate::train::fp8::scale_name`]; the step reads the amaxes as their gradients.
//!
//! `TPU_RUN_FP8_FORM` (hidden, for measuring forms against each other on a GPU in one run) picks
//! another emitted form: `direct` (the default above), `direct-bf16` (the dot writes bf16 and the
//! scales are divided out in bf16: no f32 GEMM output, the scale product rounded to bf16) or
//! `qdq` (flax's older quantize-dequantize before a bf16 dot, which XLA:GPU does not keep in FP8).
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

/// The emitted FP8 matmul form (see the module docs); [`Fp8Form::from_env`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fp8Form {
    /// f8 operands, f32 accumulation and result, the scales divided out in f32, then bf16.
    Direct,
    /// f8 operands, a bf16 result with the scales divided out in bf16.
    DirectBf16,
    /// Quantize-dequantize to bf16 before a bf16 dot (flax's older `Fp8DotGeneralOp`).
    Qdq,
}

impl Fp8Form {
    /// The hidden variable that picks a form.
    pub const ENV: &'static str = "TPU_RUN_FP8_FORM";

    /// The form `TPU_RUN_FP8_FORM` names (`direct`, `direct-bf16` or `qdq`), `Direct` when unset.
    pub fn from_env() -> Result<Self> {
        match std::env::var(Self::ENV) {
            Err(_) => Ok(Self::Direct),
            Ok(v) => match v.as_str() {
                "" | "direct" => Ok(Self::Direct),
                "direct-bf16" => Ok(Self::DirectBf16),
                "qdq" => Ok(Self::Qdq),
                other => Err(ModelError::Tensor(format!(
                    "{}={other:?}: expected direct, direct-bf16 or qdq",
                    Self::ENV
                ))),
            },
        }
    }
}

/// `x[..., k] w[k, n]` as an FP8 matmul (see the module docs) with `scales` for x, w and the
/// output gradient ([`Fp8Tensor::ALL`] order); the result is bf16 `[..., n]`.
pub fn fp8_matmul(b: &Builder, x: Value, w: Value, scales: [Value; 3]) -> Result<Value> {
    fp8_matmul_as(b, x, w, scales, Fp8Form::from_env()?)
}

/// [`fp8_matmul`] in the given form.
pub fn fp8_matmul_as(
    b: &Builder,
    x: Value,
    w: Value,
    scales: [Value; 3],
    form: Fp8Form,
) -> Result<Value> {
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
    let x2 = b.reshape(b.convert(x, bf16)?, &[rows, k])?;
    let y = match form {
        Fp8Form::Direct => b.fp8_matmul(x2, w, scales, ElementType::F32, bf16)?,
        Fp8Form::DirectBf16 => b.fp8_matmul(x2, w, scales, bf16, bf16)?,
        Fp8Form::Qdq => {
            let [sx, sw, sg] = scales;
            let xq = b.fp8_in_qdq(x2, sx, Fp8Tensor::X.format(), bf16)?;
            let wq = b.fp8_in_qdq(w, sw, Fp8Tensor::W.format(), bf16)?;
            let dims = DotDims {
                lhs_contracting: vec![1],
                rhs_contracting: vec![0],
                ..Default::default()
            };
            let y = b.dot_general(xq, wq, dims, [Precision::Default; 2], None)?;
            b.fp8_out_qdq(y, sg, Fp8Tensor::Grad.format())?
        }
    };
    let mut out = xd[..xd.len() - 1].to_vec();
    out.push(*n);
    Ok(b.reshape(y, &out)?)
}

//! How a model runs, apart from what it is: the compute dtype and the attention kernel.
//!
//! [`BertConfig`] is the architecture alone (what a checkpoint's tensors mean, compared on
//! resume); an [`Execution`] is what one run chose for its backend. The model's builders
//! (`encoder_forward`, `pretraining_loss`, ...) take the two as separate arguments, `cfg:
//! &BertConfig` and `exec: Execution` (small and `Copy`), so every program states how it
//! runs where it is built, and a config read from a file or a checkpoint never carries a
//! precision or kernel into a run. A run resolves its `Execution` once
//! (`crate::backend::resolve_execution`, from `--precision`/`train.precision` and
//! `--attention`) and derives the train step's precision policy from it
//! ([`Execution::step_policy`]): one owner for precision.
use super::{BertConfig, ModelError};
use crate::train::Policy;
use serde::{Deserialize, Serialize};

/// The type matmul inputs and activations are computed in. Parameters stay f32 (master weights).
/// The names are those of `--precision` and the run config's `train.precision` (model JSON
/// written before [`Execution`] existed has them as `compute_dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ComputeDtype {
    /// Everything in f32, dots at `Precision::Highest` (no TF32 / bf16 passes on GPU or TPU).
    #[default]
    #[serde(alias = "float32")]
    #[value(alias = "float32", help = "everything in f32, dots at full precision")]
    F32,
    /// bf16 matmul inputs and activations, f32 accumulation (dot_general's preferred type), layer
    /// norm and softmax statistics, logits and losses in f32.
    #[serde(alias = "bfloat16")]
    #[value(
        alias = "bfloat16",
        help = "bf16 matmul inputs and activations; f32 accumulation, statistics and losses"
    )]
    Bf16,
    /// [`ComputeDtype::Bf16`] with the encoder's dense layers (query, key, value, attention
    /// output, FFN in and out) as FP8 matmuls in training steps: e4m3fn inputs and weights,
    /// e5m2 output gradients, per-tensor delayed scaling whose state the step carries
    /// (`crate::train::fp8`). Embeddings, attention scores, heads and programs that do not
    /// train (evaluation, prediction) stay bf16.
    #[value(help = "bf16, with the encoder's dense layers as FP8 matmuls (delayed scaling)")]
    Fp8,
}

impl ComputeDtype {
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Fp8 => "fp8",
        }
    }

    /// A name or alias as `--precision` takes it.
    pub fn parse(s: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(s, false).ok()
    }
}

/// How self-attention is computed: a choice of kernel for the backend, not part of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttentionKernel {
    /// Plain HLO ops: scores, softmax and dropout as tensors (runs on every backend).
    #[default]
    Graph,
    /// cuDNN's fused flash attention through XLA:GPU's custom call (hlo's
    /// `Builder::cudnn_attention`): CUDA only, bf16 compute only. The probabilities' dropout
    /// draws from cuDNN's generator seeded with `seed` (plus the layer index), not from the
    /// graph's dropout key.
    CudnnFused { seed: i64 },
}

/// The execution choices of one program: what it computes in and which attention kernel it
/// uses. The default is f32 with the graph kernel (runs everywhere).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Execution {
    pub compute: ComputeDtype,
    pub attention: AttentionKernel,
}

impl Execution {
    /// `compute` with the graph attention kernel.
    pub fn new(compute: ComputeDtype) -> Self {
        Self {
            compute,
            attention: AttentionKernel::Graph,
        }
    }

    pub fn with_attention(mut self, attention: AttentionKernel) -> Self {
        self.attention = attention;
        self
    }

    /// Whether a model of `cfg` can run this way: the fused cuDNN kernel needs bf16 compute
    /// and a head size that is a multiple of 8 and at most 128. (That it needs CUDA is the
    /// backend's to say: `crate::backend::AttentionChoice::resolve`.)
    pub fn check(&self, cfg: &BertConfig) -> Result<(), ModelError> {
        let err = |msg: String| {
            Err(ModelError::Execution {
                field: "attention",
                msg,
            })
        };
        if let AttentionKernel::CudnnFused { .. } = self.attention {
            if self.compute == ComputeDtype::F32 {
                return err(
                    "cuDNN fused attention needs bf16 compute; use the graph kernel for f32".into(),
                );
            }
            let head = cfg.head_size();
            if !head.is_multiple_of(8) || head > 128 {
                return err(format!(
                    "cuDNN fused attention needs a head size that is a multiple of 8 and at \
                     most 128, this model has {head}; use the graph kernel"
                ));
            }
        }
        Ok(())
    }

    /// The train step's precision policy for a model built under this execution: f32 compute
    /// without loss scaling for every [`ComputeDtype`], by design. The model converts the f32
    /// master weights to its compute dtype at each use (layer norms and biases in f32, dots
    /// in bf16), so the step hands them over as f32; a bf16 policy would round every
    /// parameter before the model sees it and change the numbers. bf16 has f32's exponent
    /// range, so its gradients need no loss scale, and FP8's ranges are covered by
    /// per-tensor delayed scaling (`crate::train::fp8`), not by a loss scale.
    pub fn step_policy(&self) -> Policy {
        match self.compute {
            ComputeDtype::F32 | ComputeDtype::Bf16 | ComputeDtype::Fp8 => Policy::f32(),
        }
    }
}

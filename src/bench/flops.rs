//! Model FLOPs of a train step and the peak rates of known devices, for MFU.
//!
//! The FLOP count is the one the anchors use (../shared/bench/jax_bert.py and torch_bert.py,
//! `flops_per_seq`), so tpu-run's and the anchors' TFLOP/s compare directly: matmul FLOPs only,
//! 2 per multiply-add, times 3 for the forward and the two backward matmuls, over the encoder's
//! dense layers, the two attention matmuls (QK^T and AV) and the masked-LM head at the predicted
//! positions. Embedding gathers, layer norms, softmax and the optimizer are not counted; XLA's
//! own cost analysis (which counts every op) is reported next to it.
use crate::model::{BertConfig, ComputeDtype};

/// FLOPs of one training step over `batch` sequences of `seq` tokens with `predictions`
/// masked-LM positions per sequence (0 for SQuAD, whose 2-unit head is negligible).
pub fn train_step_flops(cfg: &BertConfig, batch: usize, seq: usize, predictions: usize) -> f64 {
    let (l, h, i, v) = (
        cfg.num_hidden_layers as f64,
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        cfg.vocab_size as f64,
    );
    let (s, p) = (seq as f64, predictions as f64);
    let dense = l * (4.0 * h * h + 2.0 * h * i);
    let attention = l * 2.0 * s * h;
    let mlm_head = h * h + h * v;
    batch as f64 * (6.0 * (dense + attention) * s + 6.0 * mlm_head * p)
}

/// Dense (no sparsity) peak FLOP/s of a device kind at a compute precision, when known.
///
/// Sources: NVIDIA H100 Tensor Core GPU datasheet (SXM5: FP32 67 TF, BF16 989 TF, FP8 1,979 TF;
/// PCIe: 51 / 756 / 1,513 TF; the datasheet's larger figures are with 2:4 sparsity), NVIDIA
/// H200 datasheet (same compute as H100 SXM), NVIDIA A100 datasheet (FP32 19.5 TF, BF16 312 TF,
/// no FP8), Google Cloud TPU system architecture pages (bf16 per chip: v4 275 TF, v5e 197 TF,
/// v5p 459 TF, v6e 918 TF). The f32 entries are the non-tensor-core FP32 rates, since f32 runs
/// use `Precision::Highest` (no TF32). Unknown kinds (CPUs among them) have no MFU.
pub fn peak_flops(device_kind: &str, precision: ComputeDtype) -> Option<f64> {
    let kind = device_kind.to_ascii_lowercase();
    let column = match precision {
        ComputeDtype::F32 => 0,
        ComputeDtype::Bf16 => 1,
        ComputeDtype::Fp8 => 2,
    };
    // (substring of the device kind, [f32, bf16, fp8] in TFLOP/s; 0: not offered)
    const TABLE: [(&str, [f64; 3]); 10] = [
        ("h100 pcie", [51.0, 756.0, 1513.0]),
        ("h100", [67.0, 989.0, 1979.0]),
        ("h200", [67.0, 989.0, 1979.0]),
        ("a100", [19.5, 312.0, 0.0]),
        ("tpu v4", [0.0, 275.0, 0.0]),
        ("tpu v5 lite", [0.0, 197.0, 0.0]),
        ("tpu v5e", [0.0, 197.0, 0.0]),
        ("tpu v5p", [0.0, 459.0, 0.0]),
        ("tpu v6 lite", [0.0, 918.0, 0.0]),
        ("tpu v6e", [0.0, 918.0, 0.0]),
    ];
    TABLE
        .iter()
        .find(|(name, _)| kind.contains(name))
        .map(|(_, peaks)| peaks[column])
        .filter(|&tf| tf > 0.0)
        .map(|tf| tf * 1e12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_anchor_formula_for_bert_base() {
        // jax_bert.py's flops_per_seq(base, 128, 20) * 256, worked out by hand:
        // dense = 12 * (4 * 768^2 + 2 * 768 * 3072) = 84,934,656
        // attn = 12 * 2 * 128 * 768 = 2,359,296
        // mlm = 768^2 + 768 * 30522 = 24,030,720
        // per seq = 6 * (dense + attn) * 128 + 6 * mlm * 20 = 67,041,755,136 + 2,883,686,400
        let cfg = BertConfig::preset("base").unwrap();
        let expected = 256.0 * (67_041_755_136.0 + 2_883_686_400.0);
        assert_eq!(train_step_flops(&cfg, 256, 128, 20), expected);
    }

    #[test]
    fn peaks_by_kind_and_precision() {
        assert_eq!(
            peak_flops("NVIDIA H100 80GB HBM3", ComputeDtype::Bf16),
            Some(989e12)
        );
        assert_eq!(
            peak_flops("NVIDIA H100 PCIe", ComputeDtype::Bf16),
            Some(756e12)
        );
        assert_eq!(peak_flops("NVIDIA H200", ComputeDtype::Fp8), Some(1979e12));
        assert_eq!(peak_flops("TPU v5 lite", ComputeDtype::Bf16), Some(197e12));
        assert_eq!(peak_flops("TPU v5 lite", ComputeDtype::F32), None);
        assert_eq!(peak_flops("cpu", ComputeDtype::F32), None);
        assert_eq!(peak_flops("NVIDIA A100-SXM4-80GB", ComputeDtype::Fp8), None);
    }
}

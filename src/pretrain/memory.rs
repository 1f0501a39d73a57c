//! A lower bound on the host memory a pretraining run needs before anything is allocated, so a
//! model that cannot fit (`hidden_size = 1048576`, `num_hidden_layers = 100000`) is refused with
//! the figures instead of aborting in the allocator.
//!
//! The bound counts only what the run certainly holds on the host at its start: the f32
//! parameters and the optimizer's state as initialized there before upload, and on the CPU
//! backend, whose device memory is host memory, their device copies too. Activations, gradients
//! and XLA's temporaries come on top, so passing the check does not promise that the run fits.
use crate::model::{param_specs, BertConfig};
use crate::train::OptimizerKind;
use anyhow::{bail, Result};

/// Figures of the bound (bytes, as f64: the products overflow no integer type here).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostMemoryNeed {
    pub parameters: f64,
    pub bytes: f64,
}

/// The model's parameter count, from the specs of its 1- and 2-layer versions (listing the specs
/// of a 10-million-layer model would itself exhaust memory).
fn parameter_count(model: &BertConfig) -> f64 {
    let count = |layers: usize| -> f64 {
        let mut m = model.clone();
        m.num_hidden_layers = layers;
        param_specs(&m)
            .iter()
            .map(|p| p.dims.iter().map(|&d| d as f64).product::<f64>())
            .sum()
    };
    let (one, two) = (count(1), count(2));
    one + (two - one) * (model.num_hidden_layers as f64 - 1.0)
}

/// Optimizer state slots per parameter counted in the bound (Adam-style moments; SGD's
/// momentum buffer is left out, as it always was: the bound stays a lower bound).
fn optimizer_slots(optimizer: OptimizerKind) -> f64 {
    match optimizer {
        OptimizerKind::Sgd => 0.0,
        OptimizerKind::AdamWeightDecay | OptimizerKind::Adamw | OptimizerKind::Lamb => 2.0,
    }
}

/// The lower bound for `model` trained with `optimizer`; `device_is_host` on the CPU backend.
pub fn host_memory_need(
    model: &BertConfig,
    optimizer: OptimizerKind,
    device_is_host: bool,
) -> HostMemoryNeed {
    let parameters = parameter_count(model);
    let copies = (1.0 + optimizer_slots(optimizer)) * if device_is_host { 2.0 } else { 1.0 };
    HostMemoryNeed {
        parameters,
        bytes: parameters * 4.0 * copies,
    }
}

/// Refuses when the bound exceeds `available` bytes (None: unknown, nothing is refused).
pub fn check_host_memory(need: HostMemoryNeed, available: Option<u64>) -> Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    if need.bytes > available as f64 {
        let gib = |b: f64| b / f64::from(1u32 << 30);
        bail!(
            "the model does not fit: {:.3e} parameters need at least {:.1} GiB of host memory \
             (f32 parameters and optimizer state, and their device copies on the CPU backend), \
             but {:.1} GiB is available (MemAvailable in /proc/meminfo); choose a smaller \
             hidden_size, num_hidden_layers, intermediate_size or vocab_size",
            need.parameters,
            gib(need.bytes),
            gib(available as f64)
        );
    }
    Ok(())
}

/// Memory available to a new allocation now (Linux's MemAvailable), if it can be read.
pub fn available_host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BertConfig;

    #[test]
    fn the_bound_counts_every_parameter_and_refuses_what_cannot_fit() {
        let tiny = BertConfig::preset("tiny").unwrap();
        let want: usize = param_specs(&tiny).iter().map(|p| p.num_elements()).sum();
        let need = host_memory_need(&tiny, OptimizerKind::AdamWeightDecay, true);
        assert_eq!(need.parameters, want as f64);
        assert_eq!(need.bytes, want as f64 * 4.0 * 6.0);
        assert_eq!(
            host_memory_need(&tiny, OptimizerKind::Sgd, false).bytes,
            want as f64 * 4.0
        );
        assert!(check_host_memory(need, Some(1 << 34)).is_ok());
        assert!(check_host_memory(need, None).is_ok());
        let mut deep = tiny.clone();
        deep.num_hidden_layers = 7;
        let want_deep: usize = param_specs(&deep).iter().map(|p| p.num_elements()).sum();
        assert_eq!(
            host_memory_need(&deep, OptimizerKind::Sgd, false).parameters,
            want_deep as f64
        );

        let mut huge = BertConfig::preset("tiny").unwrap();
        huge.hidden_size = 1 << 20;
        huge.intermediate_size = 4 << 20;
        let need = host_memory_need(&huge, OptimizerKind::AdamWeightDecay, true);
        // The word embeddings alone: 30,522 x 2^20 f32 values.
        assert!(need.bytes > 30_522.0 * f64::from(1u32 << 20) * 4.0);
        let err = check_host_memory(need, Some(16 << 30))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not fit") && err.contains("16.0 GiB is available"),
            "{err}"
        );
    }
}

//! Deterministic initialization as google-research/bert does it: truncated normal
//! (stddev = initializer_range, draws beyond 2 sigma re-drawn) for embeddings and dense weights,
//! zeros for biases, ones/zeros for layer norm.
//!
//! One `StdRng` seeded from `seed` draws the tensors in [`param_specs`] order, row-major. A
//! vocab-padded tensor draws only its real rows and leaves the padding rows zero, so a padded
//! model starts with exactly the values of the unpadded one.
use super::params::{param_specs, HostTensor, ParamInit, ParamSet, ParamSpec};
use super::BertConfig;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Every pretraining parameter of `cfg`, initialized from `seed`.
pub fn init_params(cfg: &BertConfig, seed: u64) -> ParamSet {
    init_from_specs(&param_specs(cfg), cfg.initializer_range, seed)
}

/// The tensors of `specs`, initialized in order from one generator seeded with `seed`.
pub fn init_from_specs(specs: &[ParamSpec], stddev: f64, seed: u64) -> ParamSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut set = ParamSet::new();
    for s in specs {
        set.insert(s.name.clone(), init_tensor(s, stddev, &mut rng));
    }
    set
}

/// One tensor of `spec`, drawing from `rng`.
pub fn init_tensor(spec: &ParamSpec, stddev: f64, rng: &mut StdRng) -> HostTensor {
    let n = spec.num_elements();
    let row: usize = spec.dims.iter().skip(1).product();
    let real = (spec.real_rows * row).min(n);
    let mut data = vec![0.0f32; n];
    match spec.init {
        ParamInit::Zeros => {}
        ParamInit::Ones => data[..real].fill(1.0),
        ParamInit::TruncatedNormal => {
            for x in &mut data[..real] {
                *x = truncated_normal(rng, stddev) as f32;
            }
        }
    }
    HostTensor {
        dims: spec.dims.clone(),
        data,
    }
}

/// N(0, stddev) re-drawn until within 2 stddev (TF's `truncated_normal`). The result's
/// standard deviation is about 0.88 stddev.
pub fn truncated_normal(rng: &mut StdRng, stddev: f64) -> f64 {
    loop {
        let z: f64 = StandardNormal.sample(rng);
        if z.abs() <= 2.0 {
            return z * stddev;
        }
    }
}

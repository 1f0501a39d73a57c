//! Seeded random inputs. Every test seeds its own generator, so failures reproduce; no generator
//! returns an all-zero array.
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Standard normal f64 values (never all zero: a normal draw is 0 with probability 0).
pub fn normal(r: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(r)).collect()
}

pub fn normal_f32(r: &mut StdRng, n: usize) -> Vec<f32> {
    normal(r, n).into_iter().map(|x| x as f32).collect()
}

/// Uniform in `[lo, hi)`.
pub fn uniform(r: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| r.gen_range(lo..hi)).collect()
}

pub fn uniform_f32(r: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    uniform(r, n, lo, hi)
        .into_iter()
        .map(|x| x as f32)
        .collect()
}

/// Integers in `[lo, hi]`, re-drawn until not all zero.
pub fn ints(r: &mut StdRng, n: usize, lo: i64, hi: i64) -> Vec<i64> {
    loop {
        let v: Vec<i64> = (0..n).map(|_| r.gen_range(lo..=hi)).collect();
        if v.iter().any(|&x| x != 0) || n == 0 || (lo == 0 && hi == 0) {
            return v;
        }
    }
}

pub fn to_bf16(v: &[f64]) -> Vec<bf16> {
    v.iter().map(|&x| bf16::from_f64(x)).collect()
}

pub fn to_f16(v: &[f64]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f64(x)).collect()
}

/// Converts integers to a narrower host type (the caller keeps values in range).
pub fn cast<T: TryFrom<i64>>(v: &[i64]) -> Vec<T>
where
    T::Error: std::fmt::Debug,
{
    v.iter()
        .map(|&x| T::try_from(x).expect("value in range"))
        .collect()
}

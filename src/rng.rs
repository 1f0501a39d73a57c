//! The host-side randomness of every run, spelled out so it never changes with a crate version:
//! SplitMix64 (Steele, Lea, Flood 2014) for orders and splits, and the dropout key of each step
//! derived from the run's seed and the step number alone, so a resumed run draws exactly the
//! masks the uninterrupted run would have.
//!
//! A dropout key is the `u64[2]` state the model's dropout takes (hlo/src/ops/dropout.rs): word 0
//! selects the stream, word 1 is the counter. Each (step, micro-batch) gets its own key word
//! (counter 0), so the random streams of different steps never overlap, as they would if
//! consecutive steps only advanced the counter.

/// Domain separators: the streams drawn from one seed differ by these.
pub mod domain {
    /// Pretraining dropout ("dropout1").
    pub const PRETRAIN_DROPOUT: u64 = 0x6472_6f70_6f75_7431;
    /// Fine-tuning dropout ("squad-dp").
    pub const FINETUNE_DROPOUT: u64 = 0x7371_7561_642d_6470;
    /// Fine-tuning's article split ("squad-sp").
    pub const FINETUNE_SPLIT: u64 = 0x7371_7561_642d_7370;
    /// Fine-tuning's feature order per epoch ("squad-or").
    pub const FINETUNE_ORDER: u64 = 0x7371_7561_642d_6f72;
}

/// SplitMix64's output function: a bijective 64-bit mixer.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.state);
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// Uniform in `0..n` (n >= 1), without modulo bias (rejection sampling).
    pub fn below(&mut self, n: u64) -> u64 {
        let n = n.max(1);
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The dropout keys of one run: `domain` separates it from the other streams of the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKeys {
    base: u64,
}

impl DropoutKeys {
    pub fn new(domain: u64, seed: u64) -> Self {
        Self {
            base: splitmix64(seed ^ domain),
        }
    }

    /// The keys of the `micro_batches` micro-batches of step `step` (updates applied before it).
    pub fn step(&self, step: u64, micro_batches: usize) -> Vec<[u64; 2]> {
        (0..micro_batches.max(1) as u64)
            .map(|m| self.micro_batch(step, m))
            .collect()
    }

    /// The key of step `step` with one micro-batch.
    pub fn key(&self, step: u64) -> [u64; 2] {
        self.micro_batch(step, 0)
    }

    fn micro_batch(&self, step: u64, m: u64) -> [u64; 2] {
        let word = step.wrapping_mul(1 << 16).wrapping_add(m);
        [splitmix64(self.base ^ splitmix64(word)), 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_stream() {
        // The first outputs of the reference C implementation seeded with 1234567.
        let mut g = SplitMix64::new(1234567);
        assert_eq!(g.next_u64(), 6457827717110365317);
        assert_eq!(g.next_u64(), 3203168211198807973);
        assert_eq!(splitmix64(1234567), 6457827717110365317);
    }

    #[test]
    fn below_is_in_range_and_shuffle_is_a_permutation() {
        let mut g = SplitMix64::new(9);
        for n in [1u64, 2, 3, 7, 1000] {
            for _ in 0..100 {
                assert!(g.below(n) < n);
            }
        }
        let mut v: Vec<u32> = (0..50).collect();
        g.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted, "50 elements left in order by a shuffle");
    }

    #[test]
    fn dropout_keys_are_distinct_and_reproducible() {
        let keys = DropoutKeys::new(domain::PRETRAIN_DROPOUT, 7);
        let mut seen = std::collections::HashSet::new();
        for step in 0..200 {
            for k in keys.step(step, 3) {
                assert_eq!(k[1], 0);
                assert!(seen.insert(k[0]), "step {step}: repeated key");
            }
            assert_eq!(keys.key(step), keys.step(step, 1)[0]);
        }
        assert_eq!(keys.step(5, 1), keys.step(5, 1));
        assert_ne!(
            keys.step(5, 1),
            DropoutKeys::new(domain::PRETRAIN_DROPOUT, 8).step(5, 1)
        );
        assert_ne!(
            keys.key(5),
            DropoutKeys::new(domain::FINETUNE_DROPOUT, 7).key(5)
        );
    }
}

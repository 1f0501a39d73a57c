//! The fine-tuning run's host-side randomness, spelled out so it never changes with a crate
//! version: SplitMix64 (Steele, Lea, Flood 2014) for the article split and the order of the
//! training features, and the dropout key of every step derived from the seed and the step.

/// Domain separators: the split, the feature order and dropout draw from one seed.
const SPLIT_DOMAIN: u64 = 0x7371_7561_642d_7370; // "squad-sp"
const ORDER_DOMAIN: u64 = 0x7371_7561_642d_6f72; // "squad-or"
const DROPOUT_DOMAIN: u64 = 0x7371_7561_642d_6470; // "squad-dp"

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

    /// The generator of the article split for `seed`.
    pub fn for_split(seed: u64) -> Self {
        Self::new(seed ^ SPLIT_DOMAIN)
    }

    /// The generator of epoch `epoch`'s feature order for `seed`.
    pub fn for_epoch(seed: u64, epoch: u64) -> Self {
        Self::new(splitmix64(seed ^ ORDER_DOMAIN) ^ splitmix64(epoch))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
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

/// The dropout key (`u64[2]`: stream word, counter 0) of training step `step`.
/// Each step gets its own key word, so the streams of different steps never overlap.
pub fn dropout_key(seed: u64, step: u64) -> [u64; 2] {
    [
        splitmix64(splitmix64(seed ^ DROPOUT_DOMAIN) ^ splitmix64(step)),
        0,
    ]
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
    fn dropout_keys_differ_by_step_and_seed() {
        assert_ne!(dropout_key(1, 0), dropout_key(1, 1));
        assert_ne!(dropout_key(1, 0), dropout_key(2, 0));
        assert_eq!(dropout_key(5, 7), dropout_key(5, 7));
    }
}

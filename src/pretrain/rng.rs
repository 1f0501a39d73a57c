//! The dropout key of every step, derived from the run's seed and the step number alone, so a
//! resumed run draws exactly the masks the uninterrupted run would have.
//!
//! The key is the `u64[2]` state the model's dropout takes (hlo/src/ops/dropout.rs): word 0
//! selects the stream, word 1 is the counter. Each (step, micro-batch) gets its own key word (counter 0), so the random
//! streams of different steps never overlap, as they would if consecutive steps only advanced
//! the counter.

/// Domain separator: the init and data streams use the seed too.
const DROPOUT_DOMAIN: u64 = 0x6472_6f70_6f75_7431; // "dropout1"

/// SplitMix64's output function (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The dropout keys for the `micro_batches` micro-batches of step `step` (updates applied
/// before it).
pub fn dropout_keys(seed: u64, step: u64, micro_batches: usize) -> Vec<[u64; 2]> {
    let base = splitmix64(seed ^ DROPOUT_DOMAIN);
    (0..micro_batches.max(1) as u64)
        .map(|m| {
            let key = splitmix64(base ^ splitmix64(step.wrapping_mul(1 << 16).wrapping_add(m)));
            [key, 0]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_reproducible() {
        let mut seen = std::collections::HashSet::new();
        for step in 0..200 {
            for k in dropout_keys(7, step, 3) {
                assert_eq!(k[1], 0);
                assert!(seen.insert(k[0]), "step {step}: repeated key");
            }
        }
        assert_eq!(dropout_keys(7, 5, 1), dropout_keys(7, 5, 1));
        assert_ne!(dropout_keys(7, 5, 1), dropout_keys(8, 5, 1));
        // SplitMix64's published first output for seed 1234567 (state advanced once).
        assert_eq!(splitmix64(1234567), 6457827717110365317);
    }
}

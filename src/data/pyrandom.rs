//! The random stream of CPython's `random.Random(seed)` (MT19937 from the `rand_mt` crate, seeded
//! with `init_by_array` as CPython does for integer seeds), with the exact algorithms of
//! `random()`, `randint()` and `shuffle()`. create-data draws from it in the same order as
//! google-research/bert's create_pretraining_data.py, so the same input, vocab and seed give the
//! same instances (tests/data_create.rs checks this against the real script's output).
use rand_mt::Mt;

pub struct PyRandom {
    mt: Mt,
}

impl PyRandom {
    /// `random.Random(seed)` for a non-negative integer seed: the key is the seed's 32-bit
    /// words, least significant first (CPython `random_seed`).
    pub fn new(seed: u64) -> Self {
        let lo = seed as u32;
        let hi = (seed >> 32) as u32;
        let key = if hi == 0 { vec![lo] } else { vec![lo, hi] };
        PyRandom {
            mt: Mt::new_with_key(key),
        }
    }

    /// `random()`: 53 random bits from two 32-bit draws (CPython `genrand_res53`).
    pub fn random(&mut self) -> f64 {
        let a = (self.mt.next_u32() >> 5) as f64;
        let b = (self.mt.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `getrandbits(k)` for 1 <= k <= 64: 32-bit words filled least significant first, the last
    /// (most significant) one shifted down to the bits still needed.
    fn getrandbits(&mut self, k: u32) -> u64 {
        if k <= 32 {
            return u64::from(self.mt.next_u32() >> (32 - k));
        }
        let lo = u64::from(self.mt.next_u32());
        let hi = u64::from(self.mt.next_u32() >> (64 - k));
        lo | (hi << 32)
    }

    /// `_randbelow_with_getrandbits(n)`: rejection sampling with `n.bit_length()` bits.
    pub fn randbelow(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let k = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `randint(a, b)`: uniform in `a..=b`. Callers guarantee `a <= b` (CPython raises
    /// ValueError otherwise; here an empty range returns `a` without drawing).
    pub fn randint(&mut self, a: usize, b: usize) -> usize {
        if b < a {
            return a;
        }
        a + self.randbelow((b - a + 1) as u64) as usize
    }

    /// `shuffle(x)`: Fisher-Yates from the end, `j = randbelow(i + 1)`.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i as u64 + 1) as usize;
            x.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by CPython 3.11:
    //   r = random.Random(12345); [r.random() for _ in range(3)]
    //   r = random.Random(12345); [r.randint(0, 30521) for _ in range(5)]
    //   r = random.Random(7); x = list(range(10)); r.shuffle(x)
    //   r = random.Random(2**40 + 3); r.getrandbits(48)
    #[test]
    fn matches_cpython() {
        let mut r = PyRandom::new(12345);
        let got: Vec<f64> = (0..3).map(|_| r.random()).collect();
        assert_eq!(got, PY_RANDOM_12345);
        let mut r = PyRandom::new(12345);
        let got: Vec<usize> = (0..5).map(|_| r.randint(0, 30521)).collect();
        assert_eq!(got, PY_RANDINT_12345);
        let mut r = PyRandom::new(7);
        let mut x: Vec<u32> = (0..10).collect();
        r.shuffle(&mut x);
        assert_eq!(x, PY_SHUFFLE_7);
        let mut r = PyRandom::new((1 << 40) + 3);
        assert_eq!(r.getrandbits(48), 17_120_683_620_302);
    }

    const PY_RANDOM_12345: [f64; 3] = [
        0.41661987254534116,
        0.010169169457068361,
        0.8252065092537432,
    ];
    const PY_RANDINT_12345: [usize; 5] = [13651, 24008, 333, 26875, 27040];
    const PY_SHUFFLE_7: [u32; 10] = [8, 3, 1, 4, 7, 0, 9, 6, 2, 5];
}

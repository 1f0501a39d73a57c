//! The host conversions of `hlo::f8` against a reference written here from the formats'
//! definitions: decoding by the textbook formula, encoding by brute force (the nearest of all
//! finite values, ties to the even code, the value one ulp past the largest finite one standing
//! for overflow). Inputs: every code, seeded random f32 bit patterns, random values around the
//! formats' range, exact ties, subnormals, overflow, infinities and NaN.
use hlo::{F8E4M3FN, F8E5M2};

/// One format as its definition states it.
struct Spec {
    exp_bits: u32,
    man_bits: u32,
    bias: i32,
    /// e4m3fn: only S.1111.111 is NaN and there is no infinity; IEEE-like otherwise.
    finite_nan_only: bool,
}

const E4M3FN: Spec = Spec {
    exp_bits: 4,
    man_bits: 3,
    bias: 7,
    finite_nan_only: true,
};
const E5M2: Spec = Spec {
    exp_bits: 5,
    man_bits: 2,
    bias: 15,
    finite_nan_only: false,
};

impl Spec {
    /// (-1)^s 2^(e - bias) (1 + m / 2^M), or 2^(1 - bias) (m / 2^M) when e = 0; specials per format.
    fn decode(&self, code: u8) -> f64 {
        let s = if code >> 7 == 1 { -1.0 } else { 1.0 };
        let e = ((code >> self.man_bits) & ((1 << self.exp_bits) - 1)) as i32;
        let m = (code & ((1 << self.man_bits) - 1)) as f64;
        let e_all = (1 << self.exp_bits) - 1;
        let m_all = ((1 << self.man_bits) - 1) as f64;
        if self.finite_nan_only && e == e_all && m == m_all {
            return f64::NAN;
        }
        if !self.finite_nan_only && e == e_all {
            return if m == 0.0 {
                s * f64::INFINITY
            } else {
                f64::NAN
            };
        }
        let frac = m / (1u32 << self.man_bits) as f64;
        s * if e == 0 {
            frac * 2f64.powi(1 - self.bias)
        } else {
            (1.0 + frac) * 2f64.powi(e - self.bias)
        }
    }

    /// The finite positive codes, then the code just past them with the value it would have if
    /// the format went on (its pick means overflow).
    fn candidates(&self) -> Vec<(u8, f64)> {
        let mut c: Vec<(u8, f64)> = (0u8..0x80)
            .map(|k| (k, self.decode(k)))
            .take_while(|(_, v)| v.is_finite())
            .collect();
        let (last, v) = *c.last().unwrap();
        let ulp = v - c[c.len() - 2].1;
        c.push((last + 1, v + ulp));
        c
    }

    /// `Some(code)` of the nearest value (ties to the even code), `None` on overflow, for a
    /// finite or infinite non-NaN `x`.
    fn encode(&self, x: f64) -> Option<u8> {
        let cands = self.candidates();
        let (over, over_value) = *cands.last().unwrap();
        let a = x.abs();
        // (Far beyond it the distances below are equal in f64; nothing there is in range.)
        if a >= over_value {
            return None;
        }
        let mut best = (cands[0].0, (a - cands[0].1).abs());
        for &(k, v) in &cands[1..] {
            let d = (a - v).abs();
            if d < best.1 || (d == best.1 && k.is_multiple_of(2)) {
                best = (k, d);
            }
        }
        if best.0 == over {
            return None;
        }
        Some(if x.is_sign_negative() {
            best.0 | 0x80
        } else {
            best.0
        })
    }
}

/// splitmix64: seeded, reproducible inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Random f32 bit patterns, values of every binade from below the smallest subnormal to past
/// the largest finite value, midpoints between neighbouring codes, and the specials.
fn inputs(spec: &Spec, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut v: Vec<f32> = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        f32::MAX,
        1e-45,
    ];
    for _ in 0..2000 {
        v.push(f32::from_bits(rng.next() as u32));
    }
    let lo = 1 - spec.bias - spec.man_bits as i32 - 3;
    let hi = (1 << spec.exp_bits) - spec.bias + 1;
    for _ in 0..20000 {
        let e = lo + (rng.next() % (hi - lo) as u64) as i32;
        let x = (1.0 + rng.unit()) * 2f64.powi(e);
        let s = if rng.next().is_multiple_of(2) {
            1.0
        } else {
            -1.0
        };
        v.push((s * x) as f32);
    }
    let c = spec.candidates();
    for w in c.windows(2) {
        let mid = (w[0].1 + w[1].1) / 2.0;
        for x in [mid, -mid, w[0].1, w[1].1] {
            v.push(x as f32);
            v.push(f32::from_bits((x as f32).to_bits() + 1));
            v.push(f32::from_bits((x as f32).to_bits().saturating_sub(1)));
        }
    }
    v
}

fn check(
    name: &str,
    spec: &Spec,
    to_bits: impl Fn(f32) -> u8,
    decode: impl Fn(u8) -> f64,
    overflow_is_nan: bool,
) {
    for code in 0..=255u8 {
        let (got, want) = (decode(code), spec.decode(code));
        assert!(
            got == want || (got.is_nan() && want.is_nan()),
            "{name}: decode({code:#04x}) = {got}, reference {want}"
        );
    }
    let mut checked = 0;
    for x in inputs(spec, 0x5EED ^ u64::from(spec.exp_bits)) {
        let got = to_bits(x);
        let got_v = decode(got);
        if x.is_nan() {
            assert!(got_v.is_nan(), "{name}: NaN converted to {got:#04x}");
            continue;
        }
        match spec.encode(f64::from(x)) {
            Some(want) => assert_eq!(got, want, "{name}: {x:e} ({:#010x})", x.to_bits()),
            None if overflow_is_nan => {
                assert!(
                    got_v.is_nan(),
                    "{name}: {x:e} overflows to NaN, got {got_v}"
                )
            }
            None => assert_eq!(
                got_v,
                f64::INFINITY.copysign(f64::from(x)),
                "{name}: {x:e} overflows to infinity"
            ),
        }
        checked += 1;
    }
    assert!(checked > 20000);
}

#[test]
fn e4m3fn_matches_the_reference() {
    check(
        "e4m3fn",
        &E4M3FN,
        |x| F8E4M3FN::from_f32(x).to_bits(),
        |c| F8E4M3FN::from_bits(c).to_f64(),
        true,
    );
}

#[test]
fn e5m2_matches_the_reference() {
    check(
        "e5m2",
        &E5M2,
        |x| F8E5M2::from_f32(x).to_bits(),
        |c| F8E5M2::from_bits(c).to_f64(),
        false,
    );
}

#[test]
fn range_edges() {
    // e4m3fn: 448 is the largest finite value; 464 (halfway to 480) ties to 448's even code,
    // anything above overflows to NaN.
    assert_eq!(F8E4M3FN::from_f32(464.0).to_f32(), 448.0);
    assert!(F8E4M3FN::from_f32(464.5).is_nan());
    assert_eq!(F8E4M3FN::MAX, 448.0);
    // Halfway to the smallest subnormal ties to zero (even); just above rounds up.
    let min_sub = 2f32.powi(-9);
    assert_eq!(F8E4M3FN::from_f32(min_sub / 2.0).to_f32(), 0.0);
    assert_eq!(F8E4M3FN::from_f32(min_sub * 0.51).to_f32(), min_sub);
    // e5m2: 61440 (halfway to 65536) ties to 65536's even code, which is infinity.
    assert_eq!(F8E5M2::from_f32(61439.0).to_f32(), 57344.0);
    assert_eq!(F8E5M2::from_f32(61440.0).to_f32(), f32::INFINITY);
    assert_eq!(F8E5M2::from_f32(-1e30).to_f32(), f32::NEG_INFINITY);
    assert_eq!(F8E5M2::from_f32(2f32.powi(-17)).to_f32(), 0.0);
    assert_eq!(F8E5M2::from_f32(-0.0).to_bits(), 0x80);
}

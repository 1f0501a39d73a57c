//! The two 8-bit float formats of FP8 training, as host values: `f8e4m3fn` (4 exponent bits,
//! 3 mantissa bits, bias 7; no infinity, NaN is `S.1111.111`, largest finite 448) for forward
//! tensors and `f8e5m2` (5 and 2, bias 15; IEEE-like with infinities, largest finite 57344) for
//! gradients. Both have subnormals.
//!
//! Conversion from a wider float rounds to nearest, ties to even, once, and does not saturate,
//! as XLA's `convert` (and ml_dtypes) does: a magnitude that rounds past the largest finite
//! value becomes NaN in e4m3fn (it has no infinity) and infinity in e5m2. Code that wants
//! saturation clamps first (FP8 quantization clamps to +-max before converting).
use crate::dtype::{ElementType, NativeType};

/// The layout of one 8-bit format.
struct Format {
    mantissa_bits: i32,
    bias: i32,
    /// The code of the largest finite magnitude.
    max_code: u8,
    /// The code of +infinity, if the format has one.
    inf_code: Option<u8>,
    /// The code of a (positive) NaN.
    nan_code: u8,
}

const E4M3FN: Format = Format {
    mantissa_bits: 3,
    bias: 7,
    max_code: 0x7E,
    inf_code: None,
    nan_code: 0x7F,
};

const E5M2: Format = Format {
    mantissa_bits: 2,
    bias: 15,
    max_code: 0x7B,
    inf_code: Some(0x7C),
    nan_code: 0x7E,
};

impl Format {
    /// `x` rounded to nearest-even, with overflow to infinity (or NaN without one).
    fn encode(&self, x: f64) -> u8 {
        let sign = if x.is_sign_negative() { 0x80 } else { 0 };
        if x.is_nan() {
            return sign | self.nan_code;
        }
        let overflow = sign | self.inf_code.unwrap_or(self.nan_code);
        let a = x.abs();
        if a.is_infinite() {
            return overflow;
        }
        // The ulp at `a` is 2^(e - mantissa_bits), with e its binary exponent but never below
        // the smallest normal exponent (subnormals share that ulp).
        let e_min = 1 - self.bias;
        let biased = ((a.to_bits() >> 52) & 0x7FF) as i32;
        let e = (biased - 1023).max(e_min);
        let steps = (a / pow2(e - self.mantissa_bits)).round_ties_even();
        // The code counts ulps from zero: each binade adds 2^mantissa_bits codes, so rounding up
        // across a binade boundary (or from the largest subnormal) lands on the right code.
        let code = (i64::from(e - e_min) << self.mantissa_bits) as f64 + steps;
        if code > f64::from(self.max_code) {
            return overflow;
        }
        sign | code as u8
    }

    fn decode(&self, bits: u8) -> f64 {
        let sign = if bits & 0x80 != 0 { -1.0 } else { 1.0 };
        let c = bits & 0x7F;
        match self.inf_code {
            Some(inf) if c == inf => return sign * f64::INFINITY,
            Some(inf) if c > inf => return f64::NAN.copysign(sign),
            None if c == self.nan_code => return f64::NAN.copysign(sign),
            _ => {}
        }
        let m = i32::from(c) & ((1 << self.mantissa_bits) - 1);
        let field = i32::from(c) >> self.mantissa_bits;
        let e_min = 1 - self.bias;
        let magnitude = if field == 0 {
            f64::from(m) * pow2(e_min - self.mantissa_bits)
        } else {
            f64::from(m + (1 << self.mantissa_bits)) * pow2(field - self.bias - self.mantissa_bits)
        };
        sign * magnitude
    }
}

fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

macro_rules! f8_type {
    ($name:ident, $fmt:expr, $et:ident, $max:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u8);

        impl $name {
            /// The largest finite value.
            pub const MAX: f32 = $max;

            pub const fn from_bits(bits: u8) -> Self {
                Self(bits)
            }

            pub const fn to_bits(self) -> u8 {
                self.0
            }

            /// `v` rounded once to nearest-even (see the module docs for overflow).
            pub fn from_f64(v: f64) -> Self {
                Self($fmt.encode(v))
            }

            /// `v` rounded once to nearest-even (f32 widens to f64 exactly).
            pub fn from_f32(v: f32) -> Self {
                Self::from_f64(f64::from(v))
            }

            pub fn to_f64(self) -> f64 {
                $fmt.decode(self.0)
            }

            /// Exact: every value of the format is an f32.
            pub fn to_f32(self) -> f32 {
                self.to_f64() as f32
            }

            pub fn is_nan(self) -> bool {
                self.to_f64().is_nan()
            }
        }

        impl NativeType for $name {
            const TYPE: ElementType = ElementType::$et;
            fn write_le(self, out: &mut Vec<u8>) {
                out.push(self.0);
            }
            fn read_le(bytes: &[u8]) -> Self {
                Self(bytes[0])
            }
        }
    };
}

f8_type!(
    F8E4M3FN,
    E4M3FN,
    F8E4M3FN,
    448.0,
    "An `f8e4m3fn` value (finite and NaN only): FP8 training's forward format."
);
f8_type!(
    F8E5M2,
    E5M2,
    F8E5M2,
    57344.0,
    "An `f8e5m2` value (with infinities): FP8 training's gradient format."
);

/// The largest finite value of an 8-bit float type; `None` for other types.
pub fn f8_max(ty: ElementType) -> Option<f64> {
    match ty {
        ElementType::F8E4M3FN => Some(f64::from(F8E4M3FN::MAX)),
        ElementType::F8E5M2 => Some(f64::from(F8E5M2::MAX)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_known_codes() {
        assert_eq!(F8E4M3FN::from_f32(448.0).to_bits(), 0x7E);
        assert_eq!(F8E4M3FN::from_f32(1.0).to_bits(), 0x38);
        assert_eq!(F8E4M3FN::from_f32(-2.0f32.powi(-9)).to_bits(), 0x81);
        assert!(F8E4M3FN::from_f32(f32::INFINITY).is_nan());
        assert_eq!(F8E5M2::from_f32(57344.0).to_bits(), 0x7B);
        assert_eq!(F8E5M2::from_f32(1.0).to_bits(), 0x3C);
        assert_eq!(F8E5M2::from_f32(2.0f32.powi(-16)).to_bits(), 0x01);
        assert_eq!(F8E5M2::from_f32(-f32::INFINITY).to_bits(), 0xFC);
        assert_eq!(F8E5M2::from_bits(0x7C).to_f64(), f64::INFINITY);
    }
}

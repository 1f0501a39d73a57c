//! Element types of HLO arrays and the Rust types that carry them on the host.
use crate::proto::PrimitiveType;
use half::{bf16, f16};

/// Element type of an array. The set tpu-run builds and transfers; XLA's spelling in `name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElementType {
    Pred,
    S8,
    S32,
    S64,
    U8,
    U32,
    U64,
    F16,
    Bf16,
    F32,
    F64,
    /// 8-bit float, 4 exponent and 3 mantissa bits, finite and NaN only (see [`crate::f8`]).
    F8E4M3FN,
    /// 8-bit float, 5 exponent and 2 mantissa bits, with infinities (see [`crate::f8`]).
    F8E5M2,
}

impl ElementType {
    pub const ALL: [ElementType; 13] = [
        Self::Pred,
        Self::S8,
        Self::S32,
        Self::S64,
        Self::U8,
        Self::U32,
        Self::U64,
        Self::F16,
        Self::Bf16,
        Self::F32,
        Self::F64,
        Self::F8E4M3FN,
        Self::F8E5M2,
    ];

    /// XLA's text spelling: `pred`, `s32`, `bf16`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Pred => "pred",
            Self::S8 => "s8",
            Self::S32 => "s32",
            Self::S64 => "s64",
            Self::U8 => "u8",
            Self::U32 => "u32",
            Self::U64 => "u64",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::F8E4M3FN => "f8e4m3fn",
            Self::F8E5M2 => "f8e5m2",
        }
    }

    /// Bytes per element on the host and on device (pred is one byte).
    pub fn byte_size(self) -> usize {
        match self {
            Self::Pred | Self::S8 | Self::U8 | Self::F8E4M3FN | Self::F8E5M2 => 1,
            Self::F16 | Self::Bf16 => 2,
            Self::S32 | Self::U32 | Self::F32 => 4,
            Self::S64 | Self::U64 | Self::F64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            Self::F16 | Self::Bf16 | Self::F32 | Self::F64 | Self::F8E4M3FN | Self::F8E5M2
        )
    }

    /// The 8-bit float types (storage formats: XLA computes on them by converting to wider
    /// types).
    pub fn is_f8(self) -> bool {
        matches!(self, Self::F8E4M3FN | Self::F8E5M2)
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            Self::S8 | Self::S32 | Self::S64 | Self::U8 | Self::U32 | Self::U64
        )
    }

    pub fn is_signed_integer(self) -> bool {
        matches!(self, Self::S8 | Self::S32 | Self::S64)
    }

    pub fn is_pred(self) -> bool {
        self == Self::Pred
    }

    /// Bits per element (pred counts as 8, as stored).
    pub fn bit_width(self) -> usize {
        self.byte_size() * 8
    }

    pub fn primitive_type(self) -> PrimitiveType {
        match self {
            Self::Pred => PrimitiveType::Pred,
            Self::S8 => PrimitiveType::S8,
            Self::S32 => PrimitiveType::S32,
            Self::S64 => PrimitiveType::S64,
            Self::U8 => PrimitiveType::U8,
            Self::U32 => PrimitiveType::U32,
            Self::U64 => PrimitiveType::U64,
            Self::F16 => PrimitiveType::F16,
            Self::Bf16 => PrimitiveType::Bf16,
            Self::F32 => PrimitiveType::F32,
            Self::F64 => PrimitiveType::F64,
            Self::F8E4M3FN => PrimitiveType::F8e4m3fn,
            Self::F8E5M2 => PrimitiveType::F8e5m2,
        }
    }

    pub fn from_primitive_type(p: PrimitiveType) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.primitive_type() == p)
    }

    /// Parses XLA's spelling (`f32`, `bf16`, ...).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }
}

impl std::fmt::Display for ElementType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A host Rust type that is the element type of an HLO array.
pub trait NativeType: Copy + Send + Sync + 'static + std::fmt::Debug + PartialEq {
    const TYPE: ElementType;
    /// Little-endian bytes of one value (the device/host transfer format).
    fn write_le(self, out: &mut Vec<u8>);
    /// Reads one value from exactly `TYPE.byte_size()` little-endian bytes.
    fn read_le(bytes: &[u8]) -> Self;
}

macro_rules! native {
    ($t:ty, $et:ident) => {
        impl NativeType for $t {
            const TYPE: ElementType = ElementType::$et;
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&bytes[..std::mem::size_of::<$t>()]);
                <$t>::from_le_bytes(a)
            }
        }
    };
}
native!(i8, S8);
native!(i32, S32);
native!(i64, S64);
native!(u8, U8);
native!(u32, U32);
native!(u64, U64);
native!(f16, F16);
native!(bf16, Bf16);
native!(f32, F32);
native!(f64, F64);

impl NativeType for bool {
    const TYPE: ElementType = ElementType::Pred;
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

/// Encodes a slice as little-endian bytes.
pub fn to_le_bytes<T: NativeType>(data: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * T::TYPE.byte_size());
    for &v in data {
        v.write_le(&mut out);
    }
    out
}

/// Decodes little-endian bytes; `None` when the length is not a whole number of elements.
pub fn from_le_bytes<T: NativeType>(bytes: &[u8]) -> Option<Vec<T>> {
    let n = T::TYPE.byte_size();
    if !bytes.len().is_multiple_of(n) {
        return None;
    }
    Some(bytes.chunks_exact(n).map(T::read_le).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in ElementType::ALL {
            assert_eq!(ElementType::from_name(t.name()), Some(t));
            assert_eq!(
                ElementType::from_primitive_type(t.primitive_type()),
                Some(t)
            );
        }
    }

    #[test]
    fn le_bytes_round_trip() {
        let v = [1.5f32, -2.25, 3.0e7];
        assert_eq!(
            from_le_bytes::<f32>(&to_le_bytes(&v)).as_deref(),
            Some(&v[..])
        );
        let b = [bf16::from_f32(1.5), bf16::from_f32(-0.125)];
        assert_eq!(to_le_bytes(&b).len(), 4);
        assert_eq!(
            from_le_bytes::<bf16>(&to_le_bytes(&b)).as_deref(),
            Some(&b[..])
        );
        assert!(from_le_bytes::<f32>(&[0u8; 5]).is_none());
    }
}

//! Constant arrays: typed data held as little-endian bytes with an array shape.
use crate::dtype::{from_le_bytes, to_le_bytes, ElementType, NativeType};
use crate::error::HloError;
use crate::f8::{F8E4M3FN, F8E5M2};
use crate::shape::ArrayShape;
use half::{bf16, f16};

/// A constant array value. `data.len() == shape.byte_size()` always holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Literal {
    shape: ArrayShape,
    data: Vec<u8>,
}

impl Literal {
    /// An array literal from row-major values; errors when the count does not match the dims.
    pub fn from_slice<T: NativeType>(values: &[T], dims: &[i64]) -> Result<Self, HloError> {
        let shape = ArrayShape::new(T::TYPE, dims.to_vec());
        if dims.iter().any(|&d| d < 0) || shape.num_elements() != values.len() as i64 {
            return Err(HloError::Literal(format!(
                "{} values do not fill shape {shape}",
                values.len()
            )));
        }
        Ok(Self {
            shape,
            data: to_le_bytes(values),
        })
    }

    pub fn scalar<T: NativeType>(v: T) -> Self {
        Self {
            shape: ArrayShape::scalar(T::TYPE),
            data: to_le_bytes(&[v]),
        }
    }

    /// A scalar of any element type from an f64 (rounded/truncated as `as` casts do).
    pub fn scalar_from_f64(ty: ElementType, v: f64) -> Self {
        let data = match ty {
            ElementType::Pred => to_le_bytes(&[v != 0.0]),
            ElementType::S8 => to_le_bytes(&[v as i8]),
            ElementType::S32 => to_le_bytes(&[v as i32]),
            ElementType::S64 => to_le_bytes(&[v as i64]),
            ElementType::U8 => to_le_bytes(&[v as u8]),
            ElementType::U32 => to_le_bytes(&[v as u32]),
            ElementType::U64 => to_le_bytes(&[v as u64]),
            ElementType::F16 => to_le_bytes(&[f16::from_f64(v)]),
            ElementType::Bf16 => to_le_bytes(&[bf16::from_f64(v)]),
            ElementType::F32 => to_le_bytes(&[v as f32]),
            ElementType::F64 => to_le_bytes(&[v]),
            ElementType::F8E4M3FN => to_le_bytes(&[F8E4M3FN::from_f64(v)]),
            ElementType::F8E5M2 => to_le_bytes(&[F8E5M2::from_f64(v)]),
        };
        Self {
            shape: ArrayShape::scalar(ty),
            data,
        }
    }

    /// From raw little-endian bytes; errors when the length does not match the shape.
    pub fn from_bytes(shape: ArrayShape, data: Vec<u8>) -> Result<Self, HloError> {
        if data.len() as i64 != shape.byte_size() {
            return Err(HloError::Literal(format!(
                "{} bytes do not fill shape {shape} ({} bytes)",
                data.len(),
                shape.byte_size()
            )));
        }
        Ok(Self { shape, data })
    }

    /// A literal that may break the invariant, for tests of what consumes literals.
    #[cfg(test)]
    pub(crate) fn unchecked(shape: ArrayShape, data: Vec<u8>) -> Self {
        Self { shape, data }
    }

    pub fn shape(&self) -> &ArrayShape {
        &self.shape
    }

    pub fn element_type(&self) -> ElementType {
        self.shape.ty
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Typed values; `None` when `T` is not the literal's element type.
    pub fn to_vec<T: NativeType>(&self) -> Option<Vec<T>> {
        if T::TYPE != self.shape.ty {
            return None;
        }
        from_le_bytes(&self.data)
    }

    /// Every element as f64 (exact for all types but 64-bit integers beyond 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let n = self.shape.ty.byte_size();
        self.data
            .chunks_exact(n)
            .map(|c| match self.shape.ty {
                ElementType::Pred => f64::from(u8::from(bool::read_le(c))),
                ElementType::S8 => f64::from(i8::read_le(c)),
                ElementType::S32 => f64::from(i32::read_le(c)),
                ElementType::S64 => i64::read_le(c) as f64,
                ElementType::U8 => f64::from(u8::read_le(c)),
                ElementType::U32 => f64::from(u32::read_le(c)),
                ElementType::U64 => u64::read_le(c) as f64,
                ElementType::F16 => f16::read_le(c).to_f64(),
                ElementType::Bf16 => bf16::read_le(c).to_f64(),
                ElementType::F32 => f64::from(f32::read_le(c)),
                ElementType::F64 => f64::read_le(c),
                ElementType::F8E4M3FN => F8E4M3FN::read_le(c).to_f64(),
                ElementType::F8E5M2 => F8E5M2::read_le(c).to_f64(),
            })
            .collect()
    }

    /// The value of a scalar (rank 0) literal as f64.
    pub fn scalar_value(&self) -> Option<f64> {
        if self.shape.is_scalar() {
            self.to_f64_vec().first().copied()
        } else {
            None
        }
    }

    /// Whether every element equals `v` (used by the simplifier for 0/1 identities).
    pub fn is_all(&self, v: f64) -> bool {
        !self.data.is_empty() && self.to_f64_vec().iter().all(|&x| x == v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_round_trip_and_errors() {
        let l = Literal::from_slice(&[1i32, -2, 3, 4, 5, 6], &[2, 3]).unwrap();
        assert_eq!(l.to_vec::<i32>().unwrap(), vec![1, -2, 3, 4, 5, 6]);
        assert!(l.to_vec::<f32>().is_none());
        assert_eq!(l.to_f64_vec()[1], -2.0);
        assert!(Literal::from_slice(&[1.0f32; 5], &[2, 3]).is_err());
        assert_eq!(
            Literal::scalar_from_f64(ElementType::Bf16, 1.5).scalar_value(),
            Some(1.5)
        );
        assert!(Literal::scalar(1.0f32).is_all(1.0));
    }
}

//! Evaluation of ops on scalar constants, for the simplifier. Folds only what is computed
//! exactly as XLA computes it, and answers `None` otherwise:
//! - integers wrap at their width; division or remainder by zero and `MIN / -1` (results XLA
//!   leaves to the backend) are not folded; shifts by the width or more give 0 (arithmetic
//!   right shift: the sign), as XLA defines;
//! - f32 and f64 results are computed in f64 and rounded once, which is the correctly rounded
//!   result for +, -, *, /, fmod and sqrt; subnormal inputs or results (flushed by some
//!   backends) are not folded;
//! - f16 and bf16 results are folded only when exactly representable (XLA computes these in
//!   f32 and rounds, which can differ from one rounding);
//! - transcendental functions, `pow`, `atan2`, `rsqrt` and total-order compares are not folded.
use crate::dtype::{ElementType, NativeType};
use crate::ir::{BinaryOp, CompareDir, CompareType, UnaryOp};
use crate::literal::Literal;
use half::{bf16, f16};

#[derive(Clone, Copy, Debug)]
enum Scalar {
    Pred(bool),
    /// The value's bit pattern, zero-extended to 64 bits.
    Int(u64, ElementType),
    /// Exact in f64 (every supported float type widens exactly).
    Float(f64, ElementType),
}

fn read(l: &Literal) -> Option<Scalar> {
    if !l.shape().is_scalar() {
        return None;
    }
    let b = l.bytes();
    let ty = l.element_type();
    Some(match ty {
        ElementType::Pred => Scalar::Pred(bool::read_le(b)),
        ElementType::F16 | ElementType::Bf16 | ElementType::F32 | ElementType::F64 => {
            Scalar::Float(l.scalar_value()?, ty)
        }
        _ => {
            let mut a = [0u8; 8];
            a[..b.len()].copy_from_slice(b);
            Scalar::Int(u64::from_le_bytes(a), ty)
        }
    })
}

fn width(ty: ElementType) -> u32 {
    ty.bit_width() as u32
}

fn mask(ty: ElementType) -> u64 {
    match width(ty) {
        64 => u64::MAX,
        w => (1u64 << w) - 1,
    }
}

/// The bits read as a signed value of the type's width.
fn signed(bits: u64, ty: ElementType) -> i64 {
    let s = 64 - width(ty);
    ((bits << s) as i64) >> s
}

fn int_literal(bits: u64, ty: ElementType) -> Option<Literal> {
    let b = bits & mask(ty);
    Some(match ty {
        ElementType::S8 => Literal::scalar(b as u8 as i8),
        ElementType::S32 => Literal::scalar(b as u32 as i32),
        ElementType::S64 => Literal::scalar(b as i64),
        ElementType::U8 => Literal::scalar(b as u8),
        ElementType::U32 => Literal::scalar(b as u32),
        ElementType::U64 => Literal::scalar(b),
        _ => return None,
    })
}

fn subnormal(v: f64, ty: ElementType) -> bool {
    let min_normal = match ty {
        ElementType::F32 => f64::from(f32::MIN_POSITIVE),
        ElementType::F64 => f64::MIN_POSITIVE,
        ElementType::F16 => f16::MIN_POSITIVE.to_f64(),
        ElementType::Bf16 => bf16::MIN_POSITIVE.to_f64(),
        _ => return false,
    };
    v != 0.0 && v.abs() < min_normal
}

/// `v` rounded once to `ty`, when that is what XLA would produce (see the module doc).
fn float_literal(v: f64, ty: ElementType) -> Option<Literal> {
    match ty {
        ElementType::F64 if !subnormal(v, ty) => Some(Literal::scalar(v)),
        ElementType::F32 => {
            let r = v as f32;
            let underflow = r == 0.0 && v != 0.0;
            (!underflow && !subnormal(f64::from(r), ty)).then(|| Literal::scalar(r))
        }
        ElementType::F16 => {
            let r = f16::from_f64(v);
            (r.to_f64() == v || (v.is_nan() && r.is_nan())).then(|| Literal::scalar(r))
        }
        ElementType::Bf16 => {
            let r = bf16::from_f64(v);
            (r.to_f64() == v || (v.is_nan() && r.is_nan())).then(|| Literal::scalar(r))
        }
        _ => None,
    }
}

/// `op(x)` for a scalar constant `x`.
pub(super) fn unary(op: UnaryOp, x: &Literal) -> Option<Literal> {
    match read(x)? {
        Scalar::Pred(p) => match op {
            UnaryOp::Not => Some(Literal::scalar(!p)),
            UnaryOp::Copy => Some(Literal::scalar(p)),
            _ => None,
        },
        Scalar::Int(bits, ty) => {
            let s = signed(bits, ty);
            let r = match op {
                UnaryOp::Neg => bits.wrapping_neg(),
                UnaryOp::Abs if ty.is_signed_integer() && s < 0 => bits.wrapping_neg(),
                UnaryOp::Abs | UnaryOp::Copy => bits,
                UnaryOp::Sign if ty.is_signed_integer() => s.signum() as u64,
                UnaryOp::Sign => u64::from(bits != 0),
                UnaryOp::Not => !bits,
                _ => return None,
            };
            int_literal(r, ty)
        }
        Scalar::Float(v, ty) => {
            if subnormal(v, ty) {
                return None;
            }
            let r = match op {
                UnaryOp::IsFinite => return Some(Literal::scalar(v.is_finite())),
                UnaryOp::Neg => -v,
                UnaryOp::Abs => v.abs(),
                UnaryOp::Sign if v.is_nan() || v == 0.0 => v,
                UnaryOp::Sign => v.signum(),
                UnaryOp::Floor => v.floor(),
                UnaryOp::Ceil => v.ceil(),
                UnaryOp::Round => v.round(),
                UnaryOp::RoundEven => v.round_ties_even(),
                UnaryOp::Sqrt => v.sqrt(),
                UnaryOp::Copy => v,
                _ => return None,
            };
            float_literal(r, ty)
        }
    }
}

/// `op(a, b)` for scalar constants of one element type.
pub(super) fn binary(op: BinaryOp, a: &Literal, b: &Literal) -> Option<Literal> {
    match (read(a)?, read(b)?) {
        (Scalar::Pred(x), Scalar::Pred(y)) => Some(Literal::scalar(match op {
            BinaryOp::And => x & y,
            BinaryOp::Or => x | y,
            BinaryOp::Xor => x ^ y,
            _ => return None,
        })),
        (Scalar::Int(x, ty), Scalar::Int(y, ty2)) if ty == ty2 => int_binary(op, x, y, ty),
        (Scalar::Float(x, ty), Scalar::Float(y, ty2)) if ty == ty2 => {
            if subnormal(x, ty) || subnormal(y, ty) {
                return None;
            }
            let r = match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::Rem => x % y,
                BinaryOp::Max | BinaryOp::Min if x.is_nan() || y.is_nan() => f64::NAN,
                // max(-0, +0) is left to the backend.
                BinaryOp::Max | BinaryOp::Min if x == y && x.to_bits() != y.to_bits() => {
                    return None
                }
                BinaryOp::Max => x.max(y),
                BinaryOp::Min => x.min(y),
                _ => return None,
            };
            float_literal(r, ty)
        }
        _ => None,
    }
}

fn int_binary(op: BinaryOp, x: u64, y: u64, ty: ElementType) -> Option<Literal> {
    let w = u64::from(width(ty));
    let is_signed = ty.is_signed_integer();
    let (sx, sy) = (signed(x, ty), signed(y, ty));
    let min = signed(1u64 << (w - 1), ty);
    let overflow = y == 0 || (is_signed && sy == -1 && sx == min);
    let r = match op {
        BinaryOp::Add => x.wrapping_add(y),
        BinaryOp::Sub => x.wrapping_sub(y),
        BinaryOp::Mul => x.wrapping_mul(y),
        BinaryOp::Div | BinaryOp::Rem if overflow => return None,
        BinaryOp::Div if is_signed => (sx / sy) as u64,
        BinaryOp::Div => x / y,
        BinaryOp::Rem if is_signed => (sx % sy) as u64,
        BinaryOp::Rem => x % y,
        BinaryOp::Max if is_signed => sx.max(sy) as u64,
        BinaryOp::Max => x.max(y),
        BinaryOp::Min if is_signed => sx.min(sy) as u64,
        BinaryOp::Min => x.min(y),
        BinaryOp::And => x & y,
        BinaryOp::Or => x | y,
        BinaryOp::Xor => x ^ y,
        // The shift amount reads as unsigned: a negative one is a huge shift.
        BinaryOp::ShiftLeft if y >= w => 0,
        BinaryOp::ShiftLeft => x << y,
        BinaryOp::ShiftRightLogical if y >= w => 0,
        BinaryOp::ShiftRightLogical => x >> y,
        BinaryOp::ShiftRightArithmetic if y >= w => (sx >> 63) as u64,
        BinaryOp::ShiftRightArithmetic => (sx >> y) as u64,
        BinaryOp::Pow | BinaryOp::Atan2 => return None,
    };
    int_literal(r, ty)
}

/// `a <dir> b` for scalar constants, with IEEE semantics for floats (NaN compares unequal).
pub(super) fn compare(
    dir: CompareDir,
    ty: CompareType,
    a: &Literal,
    b: &Literal,
) -> Option<Literal> {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (read(a)?, read(b)?, ty) {
        (Scalar::Pred(x), Scalar::Pred(y), CompareType::Unsigned) => Some(x.cmp(&y)),
        (Scalar::Int(x, t), Scalar::Int(y, t2), CompareType::Signed)
            if t == t2 && t.is_signed_integer() =>
        {
            Some(signed(x, t).cmp(&signed(y, t2)))
        }
        (Scalar::Int(x, t), Scalar::Int(y, t2), CompareType::Unsigned)
            if t == t2 && !t.is_signed_integer() =>
        {
            Some(x.cmp(&y))
        }
        (Scalar::Float(x, t), Scalar::Float(y, t2), CompareType::Float) if t == t2 => {
            x.partial_cmp(&y)
        }
        _ => return None,
    };
    let r = match (dir, ord) {
        (CompareDir::Ne, None) => true,
        (_, None) => false,
        (CompareDir::Eq, Some(o)) => o == Ordering::Equal,
        (CompareDir::Ne, Some(o)) => o != Ordering::Equal,
        (CompareDir::Lt, Some(o)) => o == Ordering::Less,
        (CompareDir::Le, Some(o)) => o != Ordering::Greater,
        (CompareDir::Gt, Some(o)) => o == Ordering::Greater,
        (CompareDir::Ge, Some(o)) => o != Ordering::Less,
    };
    Some(Literal::scalar(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_wrap_and_skip_undefined_division() {
        let s8 = |v: i8| Literal::scalar(v);
        let r = binary(BinaryOp::Add, &s8(100), &s8(100)).unwrap();
        assert_eq!(r.to_vec::<i8>().unwrap(), vec![100i8.wrapping_add(100)]);
        assert!(binary(BinaryOp::Div, &s8(-128), &s8(-1)).is_none());
        assert!(binary(BinaryOp::Rem, &s8(5), &s8(0)).is_none());
        let r = binary(BinaryOp::Div, &s8(-7), &s8(2)).unwrap();
        assert_eq!(r.to_vec::<i8>().unwrap(), vec![-3]);
        let r = binary(BinaryOp::ShiftRightArithmetic, &s8(-64), &s8(9)).unwrap();
        assert_eq!(r.to_vec::<i8>().unwrap(), vec![-1]);
        let u = |v: u32| Literal::scalar(v);
        let r = binary(BinaryOp::ShiftLeft, &u(1), &u(32)).unwrap();
        assert_eq!(r.to_vec::<u32>().unwrap(), vec![0]);
        let r = binary(BinaryOp::Max, &u(u32::MAX), &u(1)).unwrap();
        assert_eq!(r.to_vec::<u32>().unwrap(), vec![u32::MAX]);
    }

    #[test]
    fn floats_round_once_or_not_at_all() {
        let f = |v: f32| Literal::scalar(v);
        let r = binary(BinaryOp::Add, &f(0.1), &f(0.2)).unwrap();
        assert_eq!(r.to_vec::<f32>().unwrap(), vec![0.1f32 + 0.2f32]);
        assert!(unary(UnaryOp::Exp, &f(1.0)).is_none());
        assert!(binary(BinaryOp::Pow, &f(2.0), &f(3.0)).is_none());
        assert!(binary(BinaryOp::Mul, &f(1e-30), &f(1e-10)).is_none());
        let h = |v: f32| Literal::scalar(bf16::from_f32(v));
        assert!(binary(BinaryOp::Add, &h(1.0), &h(0.001)).is_none());
        let r = binary(BinaryOp::Add, &h(1.0), &h(2.0)).unwrap();
        assert_eq!(r.to_vec::<bf16>().unwrap(), vec![bf16::from_f32(3.0)]);
        let nan = compare(CompareDir::Ne, CompareType::Float, &f(f32::NAN), &f(1.0));
        assert_eq!(nan.unwrap().to_vec::<bool>().unwrap(), vec![true]);
    }
}

//! Elementwise ops: unary, binary (with scalar operands broadcast), compare, select, clamp,
//! convert, bitcast-convert.
use super::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, Result};
use crate::ir::{BinaryOp, CompareDir, CompareType, Op, UnaryOp};
use crate::shape::Shape;

impl Builder<'_> {
    pub fn unary(&self, op: UnaryOp, x: Value) -> Result<Value> {
        let code = op.opcode();
        let a = self.array_shape(x, code)?;
        let t = a.ty;
        let ok = match op {
            UnaryOp::Not => t.is_pred() || t.is_integer(),
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign => !t.is_pred(),
            UnaryOp::Copy => true,
            _ => t.is_float(),
        };
        if !ok {
            return Err(shape_err(
                code,
                format!("not defined for element type {t}"),
                &[&a],
            ));
        }
        let out = if op == UnaryOp::IsFinite {
            a.with_type(ElementType::Pred)
        } else {
            a
        };
        self.push(Op::Unary(op), &[x], Shape::Array(out))
    }

    /// Makes `x` and `y` the same shape when one of them is a scalar (XLA builder semantics).
    fn broadcast_scalars(&self, op: &'static str, x: Value, y: Value) -> Result<(Value, Value)> {
        let (a, b) = (self.array_shape(x, op)?, self.array_shape(y, op)?);
        if a.dims == b.dims {
            return Ok((x, y));
        }
        if a.is_scalar() {
            return Ok((self.broadcast_in_dim(x, &b.dims, &[])?, y));
        }
        if b.is_scalar() {
            return Ok((x, self.broadcast_in_dim(y, &a.dims, &[])?));
        }
        Err(shape_err(op, "operand dimensions differ", &[&a, &b]))
    }

    pub fn binary(&self, op: BinaryOp, x: Value, y: Value) -> Result<Value> {
        let code = op.opcode();
        let (x, y) = self.broadcast_scalars(code, x, y)?;
        let (a, b) = (self.array_shape(x, code)?, self.array_shape(y, code)?);
        if a.ty != b.ty {
            return Err(shape_err(code, "operand element types differ", &[&a, &b]));
        }
        let t = a.ty;
        let ok = match op {
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => t.is_pred() || t.is_integer(),
            BinaryOp::ShiftLeft | BinaryOp::ShiftRightArithmetic | BinaryOp::ShiftRightLogical => {
                t.is_integer()
            }
            BinaryOp::Atan2 => t.is_float(),
            _ => !t.is_pred(),
        };
        if !ok {
            return Err(shape_err(
                code,
                format!("not defined for element type {t}"),
                &[&a, &b],
            ));
        }
        self.push(Op::Binary(op), &[x, y], Shape::Array(a))
    }

    pub fn compare(&self, dir: CompareDir, x: Value, y: Value) -> Result<Value> {
        let (x, y) = self.broadcast_scalars("compare", x, y)?;
        let (a, b) = (
            self.array_shape(x, "compare")?,
            self.array_shape(y, "compare")?,
        );
        if a.ty != b.ty {
            return Err(shape_err(
                "compare",
                "operand element types differ",
                &[&a, &b],
            ));
        }
        let ty = default_compare_type(a.ty);
        self.push(
            Op::Compare { dir, ty },
            &[x, y],
            Shape::Array(a.with_type(ElementType::Pred)),
        )
    }

    /// `pred ? on_true : on_false`, elementwise; a scalar `pred` selects whole arrays.
    pub fn select(&self, pred: Value, on_true: Value, on_false: Value) -> Result<Value> {
        let p = self.array_shape(pred, "select")?;
        let (t, f) = (
            self.array_shape(on_true, "select")?,
            self.array_shape(on_false, "select")?,
        );
        if t != f {
            return Err(shape_err("select", "branches differ", &[&p, &t, &f]));
        }
        if !p.ty.is_pred() || (p.dims != t.dims && !p.is_scalar()) {
            return Err(shape_err(
                "select",
                "predicate must be pred of the branches' dims",
                &[&p, &t, &f],
            ));
        }
        let pred = if p.dims != t.dims {
            self.broadcast_in_dim(pred, &t.dims, &[])?
        } else {
            pred
        };
        self.push(Op::Select, &[pred, on_true, on_false], Shape::Array(t))
    }

    /// `min(max(x, lo), hi)`; `lo` and `hi` are scalars or of `x`'s shape. Scalar bounds are
    /// broadcast to `x`'s shape, as XlaBuilder does: XLA's CPU compiler aborts (ReshapeMover) on
    /// a clamp with scalar bounds whose `x` is a reshape.
    pub fn clamp(&self, lo: Value, x: Value, hi: Value) -> Result<Value> {
        let a = self.array_shape(x, "clamp")?;
        let mut bounds = [lo, hi];
        for bound in &mut bounds {
            let s = self.array_shape(*bound, "clamp")?;
            if s.ty != a.ty || (!s.is_scalar() && s.dims != a.dims) {
                return Err(shape_err(
                    "clamp",
                    "bounds must be scalars or match the operand",
                    &[&s, &a],
                ));
            }
            if s.dims != a.dims {
                *bound = self.broadcast_in_dim(*bound, &a.dims, &[])?;
            }
        }
        self.push(Op::Clamp, &[bounds[0], x, bounds[1]], Shape::Array(a))
    }

    pub fn convert(&self, x: Value, ty: ElementType) -> Result<Value> {
        let a = self.array_shape(x, "convert")?;
        if a.ty == ty {
            return Ok(x);
        }
        self.push(Op::Convert, &[x], Shape::Array(a.with_type(ty)))
    }

    /// Reinterprets the bits of each element as another type of the same width.
    pub fn bitcast_convert(&self, x: Value, ty: ElementType) -> Result<Value> {
        let a = self.array_shape(x, "bitcast-convert")?;
        if a.ty.byte_size() != ty.byte_size() || a.ty.is_pred() || ty.is_pred() {
            return Err(shape_err(
                "bitcast-convert",
                format!("cannot reinterpret {} as {ty}: widths differ", a.ty),
                &[&a],
            ));
        }
        self.push(Op::BitcastConvert, &[x], Shape::Array(a.with_type(ty)))
    }
}

/// XLA's default comparison type for an element type.
pub fn default_compare_type(t: ElementType) -> CompareType {
    if t.is_float() {
        CompareType::Float
    } else if t.is_signed_integer() {
        CompareType::Signed
    } else {
        CompareType::Unsigned
    }
}

macro_rules! unary_methods {
    ($($name:ident => $op:ident),* $(,)?) => {
        impl Builder<'_> {
            $(
                pub fn $name(&self, x: Value) -> Result<Value> {
                    self.unary(UnaryOp::$op, x)
                }
            )*
        }
    };
}

unary_methods!(
    neg => Neg, abs => Abs, sign => Sign, exp => Exp, expm1 => Expm1, log => Log,
    log1p => Log1p, tanh => Tanh, logistic => Logistic, sqrt => Sqrt, rsqrt => Rsqrt,
    erf => Erf, floor => Floor, ceil => Ceil, round => Round, round_even => RoundEven,
    not => Not, is_finite => IsFinite, cos => Cos, sin => Sin,
);

macro_rules! binary_methods {
    ($($name:ident => $op:ident),* $(,)?) => {
        impl Builder<'_> {
            $(
                pub fn $name(&self, x: Value, y: Value) -> Result<Value> {
                    self.binary(BinaryOp::$op, x, y)
                }
            )*
        }
    };
}

binary_methods!(
    add => Add, sub => Sub, mul => Mul, div => Div, rem => Rem, max => Max, min => Min,
    pow => Pow, atan2 => Atan2, and => And, or => Or, xor => Xor, shift_left => ShiftLeft,
    shift_right_arithmetic => ShiftRightArithmetic, shift_right_logical => ShiftRightLogical,
);

macro_rules! compare_methods {
    ($($name:ident => $dir:ident),* $(,)?) => {
        impl Builder<'_> {
            $(
                pub fn $name(&self, x: Value, y: Value) -> Result<Value> {
                    self.compare(CompareDir::$dir, x, y)
                }
            )*
        }
    };
}

compare_methods!(eq => Eq, ne => Ne, lt => Lt, le => Le, gt => Gt, ge => Ge);

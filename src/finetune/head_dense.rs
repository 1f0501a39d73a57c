//! The last dense layer of a fine-tuning head (QA, classifier): `x[..., hidden] W[hidden, n] + b`
//! with the matmul in `x`'s type (the compute dtype) accumulating in f32, as the encoder's dense
//! layers do, and the result and bias in f32. Shape checks stay with each head, whose errors
//! name it.
use anyhow::Result;
use hlo::ir::{DotDims, Precision};
use hlo::{Builder, ElementType, Value};

/// `x . weight + bias` in f32 (see the module docs); `x`'s last dim is contracted.
pub fn head_dense_f32(b: &Builder, x: Value, weight: Value, bias: Value) -> Result<Value> {
    let xs = b.array_shape(x, "head dense")?;
    let (precision, preferred) = if xs.ty == ElementType::F32 {
        (Precision::Highest, None)
    } else {
        (Precision::Default, Some(ElementType::F32))
    };
    let last = xs.rank() as i64 - 1;
    let dims = DotDims {
        lhs_contracting: vec![last],
        rhs_contracting: vec![0],
        ..Default::default()
    };
    let y = b.dot_general(
        x,
        b.convert(weight, xs.ty)?,
        dims,
        [precision; 2],
        preferred,
    )?;
    let y = b.convert(y, ElementType::F32)?;
    let out = b.dims(y)?;
    let bias = b.broadcast_in_dim(b.convert(bias, ElementType::F32)?, &out, &[last])?;
    Ok(b.add(y, bias)?)
}

//! Ops that move data without arithmetic: broadcast, reshape, transpose, reverse, slices,
//! concatenate, pad.
use super::{Builder, Value};
use crate::error::{shape_err, Result};
use crate::ir::{Op, PadDim};
use crate::shape::{ArrayShape, Shape};

/// Whether `dims` are distinct and each in `0..rank`.
fn valid_dims(dims: &[i64], rank: usize) -> bool {
    let mut seen = vec![false; rank];
    dims.iter().all(|&d| {
        let ok = d >= 0 && (d as usize) < rank && !seen[d as usize];
        if ok {
            seen[d as usize] = true;
        }
        ok
    })
}

impl Builder<'_> {
    /// broadcast_in_dim: operand dimension i becomes output dimension `dims[i]` (size equal or 1).
    pub fn broadcast_in_dim(&self, x: Value, out_dims: &[i64], dims: &[i64]) -> Result<Value> {
        let a = self.array_shape(x, "broadcast")?;
        let out = ArrayShape::new(a.ty, out_dims.to_vec());
        let sorted = dims.windows(2).all(|w| w[0] < w[1]);
        if dims.len() != a.rank() || !valid_dims(dims, out.rank()) || !sorted {
            return Err(shape_err(
                "broadcast",
                format!("dimensions {dims:?} must map each operand dimension, in increasing order, into {out}"),
                &[&a],
            ));
        }
        for (i, &d) in dims.iter().enumerate() {
            if a.dims[i] != 1 && a.dims[i] != out.dims[d as usize] {
                return Err(shape_err(
                    "broadcast",
                    format!(
                        "operand dimension {i} (size {}) cannot broadcast to size {}",
                        a.dims[i], out.dims[d as usize]
                    ),
                    &[&a],
                ));
            }
        }
        if out_dims.iter().any(|&d| d < 0) {
            return Err(shape_err(
                "broadcast",
                format!("negative output size in {out}"),
                &[&a],
            ));
        }
        if a.dims == out.dims {
            return Ok(x);
        }
        // XLA's broadcast needs equal sizes: squeeze size-1 dims that grow first.
        let keep: Vec<usize> = (0..a.rank())
            .filter(|&i| a.dims[i] == out.dims[dims[i] as usize])
            .collect();
        let (x, dims) = if keep.len() < a.rank() {
            let kept_dims: Vec<i64> = keep.iter().map(|&i| a.dims[i]).collect();
            (
                self.reshape(x, &kept_dims)?,
                keep.iter().map(|&i| dims[i]).collect(),
            )
        } else {
            (x, dims.to_vec())
        };
        self.push(Op::Broadcast { dims }, &[x], Shape::Array(out))
    }

    /// Broadcasts `x` to `out_dims` aligning trailing dimensions (numpy rules).
    pub fn broadcast_to(&self, x: Value, out_dims: &[i64]) -> Result<Value> {
        let a = self.array_shape(x, "broadcast")?;
        if a.rank() > out_dims.len() {
            return Err(shape_err(
                "broadcast",
                format!("cannot broadcast to {out_dims:?}"),
                &[&a],
            ));
        }
        let off = (out_dims.len() - a.rank()) as i64;
        let dims: Vec<i64> = (0..a.rank() as i64).map(|i| i + off).collect();
        self.broadcast_in_dim(x, out_dims, &dims)
    }

    pub fn reshape(&self, x: Value, dims: &[i64]) -> Result<Value> {
        let a = self.array_shape(x, "reshape")?;
        let out = ArrayShape::new(a.ty, dims.to_vec());
        if dims.iter().any(|&d| d < 0) || out.num_elements() != a.num_elements() {
            return Err(shape_err(
                "reshape",
                format!("cannot reshape to {out}: element counts differ"),
                &[&a],
            ));
        }
        if a.dims == out.dims {
            return Ok(x);
        }
        self.push(Op::Reshape, &[x], Shape::Array(out))
    }

    /// Output dimension i is operand dimension `perm[i]`.
    pub fn transpose(&self, x: Value, perm: &[i64]) -> Result<Value> {
        let a = self.array_shape(x, "transpose")?;
        if perm.len() != a.rank() || !valid_dims(perm, a.rank()) {
            return Err(shape_err(
                "transpose",
                format!("{perm:?} is not a permutation"),
                &[&a],
            ));
        }
        if perm.iter().enumerate().all(|(i, &p)| i as i64 == p) {
            return Ok(x);
        }
        let dims = perm.iter().map(|&p| a.dims[p as usize]).collect::<Vec<_>>();
        self.push(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
            Shape::Array(ArrayShape::new(a.ty, dims)),
        )
    }

    pub fn reverse(&self, x: Value, dims: &[i64]) -> Result<Value> {
        let a = self.array_shape(x, "reverse")?;
        if !valid_dims(dims, a.rank()) {
            return Err(shape_err(
                "reverse",
                format!("invalid dimensions {dims:?}"),
                &[&a],
            ));
        }
        self.push(
            Op::Reverse {
                dims: dims.to_vec(),
            },
            &[x],
            Shape::Array(a),
        )
    }

    /// Static slice `[start, limit)` with `stride` per dimension.
    pub fn slice(
        &self,
        x: Value,
        starts: &[i64],
        limits: &[i64],
        strides: &[i64],
    ) -> Result<Value> {
        let a = self.array_shape(x, "slice")?;
        let r = a.rank();
        if starts.len() != r || limits.len() != r || strides.len() != r {
            return Err(shape_err(
                "slice",
                "need one start, limit and stride per dimension",
                &[&a],
            ));
        }
        let mut dims = Vec::with_capacity(r);
        for i in 0..r {
            let (s, l, st) = (starts[i], limits[i], strides[i]);
            if s < 0 || l < s || l > a.dims[i] || st < 1 {
                return Err(shape_err(
                    "slice",
                    format!(
                        "dimension {i}: [{s}, {l}) stride {st} is outside size {}",
                        a.dims[i]
                    ),
                    &[&a],
                ));
            }
            dims.push((l - s + st - 1) / st);
        }
        let op = Op::Slice {
            starts: starts.to_vec(),
            limits: limits.to_vec(),
            strides: strides.to_vec(),
        };
        self.push(op, &[x], Shape::Array(ArrayShape::new(a.ty, dims)))
    }

    /// Slice `[start, limit)` of one dimension, stride 1.
    pub fn slice_in_dim(&self, x: Value, start: i64, limit: i64, dim: usize) -> Result<Value> {
        let a = self.array_shape(x, "slice")?;
        if dim >= a.rank() {
            return Err(shape_err(
                "slice",
                format!("dimension {dim} out of range"),
                &[&a],
            ));
        }
        let mut starts = vec![0; a.rank()];
        let mut limits = a.dims.clone();
        starts[dim] = start;
        limits[dim] = limit;
        self.slice(x, &starts, &limits, &vec![1; a.rank()])
    }

    fn check_start_indices(
        &self,
        op: &'static str,
        a: &ArrayShape,
        starts: &[Value],
    ) -> Result<()> {
        if starts.len() != a.rank() {
            return Err(shape_err(
                op,
                format!("{} start indices for rank {}", starts.len(), a.rank()),
                &[a],
            ));
        }
        let mut ty = None;
        for &s in starts {
            let si = self.array_shape(s, op)?;
            if !si.is_scalar() || !si.ty.is_integer() || ty.is_some_and(|t| t != si.ty) {
                return Err(shape_err(
                    op,
                    "start indices must be integer scalars of one type",
                    &[a, &si],
                ));
            }
            ty = Some(si.ty);
        }
        Ok(())
    }

    /// Slice of `sizes` at runtime start indices (clamped into range by XLA).
    pub fn dynamic_slice(&self, x: Value, starts: &[Value], sizes: &[i64]) -> Result<Value> {
        let a = self.array_shape(x, "dynamic-slice")?;
        self.check_start_indices("dynamic-slice", &a, starts)?;
        if sizes.len() != a.rank() || sizes.iter().zip(&a.dims).any(|(&s, &d)| s < 0 || s > d) {
            return Err(shape_err(
                "dynamic-slice",
                format!("slice sizes {sizes:?} do not fit"),
                &[&a],
            ));
        }
        let mut ops = vec![x];
        ops.extend_from_slice(starts);
        let out = ArrayShape::new(a.ty, sizes.to_vec());
        self.push(
            Op::DynamicSlice {
                sizes: sizes.to_vec(),
            },
            &ops,
            Shape::Array(out),
        )
    }

    pub fn dynamic_update_slice(&self, x: Value, update: Value, starts: &[Value]) -> Result<Value> {
        let a = self.array_shape(x, "dynamic-update-slice")?;
        let u = self.array_shape(update, "dynamic-update-slice")?;
        self.check_start_indices("dynamic-update-slice", &a, starts)?;
        if u.ty != a.ty || u.rank() != a.rank() || u.dims.iter().zip(&a.dims).any(|(&s, &d)| s > d)
        {
            return Err(shape_err(
                "dynamic-update-slice",
                "update must fit inside the operand",
                &[&a, &u],
            ));
        }
        let mut ops = vec![x, update];
        ops.extend_from_slice(starts);
        self.push(Op::DynamicUpdateSlice, &ops, Shape::Array(a))
    }

    pub fn concatenate(&self, xs: &[Value], dim: i64) -> Result<Value> {
        let shapes = xs
            .iter()
            .map(|&x| self.array_shape(x, "concatenate"))
            .collect::<Result<Vec<_>>>()?;
        let disp: Vec<&dyn std::fmt::Display> =
            shapes.iter().map(|s| s as &dyn std::fmt::Display).collect();
        let first = shapes
            .first()
            .ok_or_else(|| shape_err("concatenate", "no operands", &[]))?;
        if dim < 0 || dim as usize >= first.rank() {
            return Err(shape_err(
                "concatenate",
                format!("dimension {dim} out of range"),
                &disp,
            ));
        }
        let mut out = first.clone();
        out.dims[dim as usize] = 0;
        for s in &shapes {
            let same_other = s.rank() == first.rank()
                && (0..s.rank()).all(|i| i == dim as usize || s.dims[i] == first.dims[i]);
            if s.ty != first.ty || !same_other {
                return Err(shape_err(
                    "concatenate",
                    "operands differ outside the concatenated dimension",
                    &disp,
                ));
            }
            out.dims[dim as usize] += s.dims[dim as usize];
        }
        self.push(Op::Concatenate { dim }, xs, Shape::Array(out))
    }

    /// Pads with `value` (a scalar): `low`/`high` may be negative (cropping), `interior` >= 0.
    pub fn pad(&self, x: Value, value: Value, dims: &[PadDim]) -> Result<Value> {
        let a = self.array_shape(x, "pad")?;
        let v = self.array_shape(value, "pad")?;
        if !v.is_scalar() || v.ty != a.ty || dims.len() != a.rank() {
            return Err(shape_err(
                "pad",
                "need a scalar pad value of the operand's type and one config per dimension",
                &[&a, &v],
            ));
        }
        let mut out = a.clone();
        for (i, p) in dims.iter().enumerate() {
            let n = a.dims[i];
            let size = p.low + p.high + n + (n - 1).max(0) * p.interior;
            if p.interior < 0 || size < 0 {
                return Err(shape_err(
                    "pad",
                    format!("dimension {i}: padding {p:?} gives a negative size"),
                    &[&a],
                ));
            }
            out.dims[i] = size;
        }
        self.push(
            Op::Pad {
                dims: dims.to_vec(),
            },
            &[x, value],
            Shape::Array(out),
        )
    }
}

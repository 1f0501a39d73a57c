//! Reductions: reduce (variadic) with a sub-computation, reduce-window, and common shorthands.
use super::{join, Builder, Value};
use crate::error::{shape_err, Result};
use crate::ir::{BinaryOp, CompId, Op, WindowDim};
use crate::shape::{ArrayShape, Shape};

impl Builder<'_> {
    /// Reduces `inputs` over `dims` with `comp: (acc_1..acc_n, x_1..x_n) -> (acc_1..acc_n)`.
    /// Returns one value for one input, else a tuple.
    pub fn reduce(
        &self,
        inputs: &[Value],
        inits: &[Value],
        dims: &[i64],
        comp: CompId,
    ) -> Result<Value> {
        let shapes = inputs
            .iter()
            .map(|&x| self.array_shape(x, "reduce"))
            .collect::<Result<Vec<_>>>()?;
        let init_shapes = inits
            .iter()
            .map(|&x| self.array_shape(x, "reduce"))
            .collect::<Result<Vec<_>>>()?;
        let all: Vec<&dyn std::fmt::Display> = shapes
            .iter()
            .chain(&init_shapes)
            .map(|s| s as &dyn std::fmt::Display)
            .collect();
        let first = shapes
            .first()
            .ok_or_else(|| shape_err("reduce", "no inputs", &[]))?;
        if inits.len() != inputs.len() || shapes.iter().any(|s| s.dims != first.dims) {
            return Err(shape_err(
                "reduce",
                "need one init per input and inputs of equal dims",
                &all,
            ));
        }
        if init_shapes
            .iter()
            .zip(&shapes)
            .any(|(i, s)| !i.is_scalar() || i.ty != s.ty)
        {
            return Err(shape_err(
                "reduce",
                "each init must be a scalar of its input's type",
                &all,
            ));
        }
        let rank = first.rank() as i64;
        if dims.iter().any(|&d| d < 0 || d >= rank)
            || (0..dims.len()).any(|i| dims[i + 1..].contains(&dims[i]))
        {
            return Err(shape_err(
                "reduce",
                format!("invalid dimensions {dims:?}"),
                &all,
            ));
        }
        let kept: Vec<i64> = (0..rank)
            .filter(|d| !dims.contains(d))
            .map(|d| first.dims[d as usize])
            .collect();
        let scalars: Vec<Shape> = shapes.iter().map(|s| Shape::scalar(s.ty)).collect();
        let acc = if scalars.len() == 1 {
            scalars[0].clone()
        } else {
            Shape::Tuple(scalars.clone())
        };
        let params: Vec<Shape> = scalars.iter().chain(&scalars).cloned().collect();
        self.check_signature("reduce", comp, &params, &acc)?;
        let outs: Vec<Shape> = shapes
            .iter()
            .map(|s| Shape::array(s.ty, kept.clone()))
            .collect();
        let out = if outs.len() == 1 {
            outs[0].clone()
        } else {
            Shape::Tuple(outs)
        };
        let operands: Vec<Value> = inputs.iter().chain(inits).copied().collect();
        self.push(
            Op::Reduce {
                dims: dims.to_vec(),
                comp,
            },
            &operands,
            out,
        )
    }

    /// Reduces with a scalar binary op (`add`, `max`, ...) starting from `init`.
    pub fn reduce_with(&self, x: Value, op: BinaryOp, init: f64, dims: &[i64]) -> Result<Value> {
        let ty = self.array_shape(x, "reduce")?.ty;
        let comp = self.module().scalar_reducer(op, ty)?;
        let init = self.scalar_of(ty, init)?;
        self.reduce(&[x], &[init], dims, comp)
    }

    pub fn reduce_sum(&self, x: Value, dims: &[i64]) -> Result<Value> {
        self.reduce_with(x, BinaryOp::Add, 0.0, dims)
    }

    pub fn reduce_max(&self, x: Value, dims: &[i64]) -> Result<Value> {
        self.reduce_with(x, BinaryOp::Max, f64::NEG_INFINITY, dims)
    }

    pub fn reduce_min(&self, x: Value, dims: &[i64]) -> Result<Value> {
        self.reduce_with(x, BinaryOp::Min, f64::INFINITY, dims)
    }

    /// Reduces each window of `inputs` with `comp`, like `reduce` over sliding windows.
    pub fn reduce_window(
        &self,
        inputs: &[Value],
        inits: &[Value],
        window: &[WindowDim],
        comp: CompId,
    ) -> Result<Value> {
        let shapes = inputs
            .iter()
            .map(|&x| self.array_shape(x, "reduce-window"))
            .collect::<Result<Vec<_>>>()?;
        let first = shapes
            .first()
            .ok_or_else(|| shape_err("reduce-window", "no inputs", &[]))?
            .clone();
        let disp: Vec<&dyn std::fmt::Display> =
            shapes.iter().map(|s| s as &dyn std::fmt::Display).collect();
        if inits.len() != inputs.len()
            || window.len() != first.rank()
            || shapes.iter().any(|s| s.dims != first.dims)
        {
            return Err(shape_err(
                "reduce-window",
                "need one init per input, equal dims and one window dim per dimension",
                &disp,
            ));
        }
        let mut dims = Vec::with_capacity(first.rank());
        for (i, w) in window.iter().enumerate() {
            if w.size < 1 || w.stride < 1 || w.window_dilation < 1 || w.base_dilation < 1 {
                return Err(shape_err(
                    "reduce-window",
                    format!("dimension {i}: invalid window {w:?}"),
                    &disp,
                ));
            }
            let base = (first.dims[i] - 1) * w.base_dilation + 1 + w.padding_low + w.padding_high;
            let eff = (w.size - 1) * w.window_dilation + 1;
            dims.push(if base < eff {
                0
            } else {
                (base - eff) / w.stride + 1
            });
        }
        let scalars: Vec<Shape> = shapes.iter().map(|s| Shape::scalar(s.ty)).collect();
        for (&init, s) in inits.iter().zip(&scalars) {
            let got = self.shape(init)?;
            if &got != s {
                return Err(shape_err(
                    "reduce-window",
                    format!("init {got} must be {}", join(&scalars)),
                    &disp,
                ));
            }
        }
        let acc = if scalars.len() == 1 {
            scalars[0].clone()
        } else {
            Shape::Tuple(scalars.clone())
        };
        let params: Vec<Shape> = scalars.iter().chain(&scalars).cloned().collect();
        self.check_signature("reduce-window", comp, &params, &acc)?;
        let outs: Vec<Shape> = shapes
            .iter()
            .map(|s| Shape::Array(ArrayShape::new(s.ty, dims.clone())))
            .collect();
        let out = if outs.len() == 1 {
            outs[0].clone()
        } else {
            Shape::Tuple(outs)
        };
        let operands: Vec<Value> = inputs.iter().chain(inits).copied().collect();
        self.push(
            Op::ReduceWindow {
                window: window.to_vec(),
                comp,
            },
            &operands,
            out,
        )
    }
}

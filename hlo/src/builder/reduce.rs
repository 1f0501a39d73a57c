//! Reductions: reduce (variadic) with a sub-computation, reduce-window, and common shorthands.
use super::{Builder, Value};
use crate::error::{shape_err, Result};
use crate::ir::{BinaryOp, CompId, Op, WindowDim};
use crate::shape::{ArrayShape, Shape};

/// One shape for a single result, a tuple for several (variadic reduce / reduce-window).
fn one_or_tuple(mut shapes: Vec<Shape>) -> Shape {
    if shapes.len() == 1 {
        shapes.remove(0)
    } else {
        Shape::Tuple(shapes)
    }
}

impl Builder<'_> {
    /// Checks the operands shared by reduce and reduce-window: N inputs of equal dims, N scalar
    /// inits of the inputs' types, and `comp: (acc_1..acc_n, x_1..x_n) -> (acc_1..acc_n)`.
    /// Returns the input shapes.
    fn variadic_reduce_inputs(
        &self,
        op: &'static str,
        inputs: &[Value],
        inits: &[Value],
        comp: CompId,
    ) -> Result<Vec<ArrayShape>> {
        let shapes = inputs
            .iter()
            .chain(inits)
            .map(|&x| self.array_shape(x, op))
            .collect::<Result<Vec<_>>>()?;
        let all: Vec<&dyn std::fmt::Display> =
            shapes.iter().map(|s| s as &dyn std::fmt::Display).collect();
        let (ins, init_shapes) = shapes.split_at(inputs.len());
        let first = ins.first().ok_or_else(|| shape_err(op, "no inputs", &[]))?;
        if inits.len() != inputs.len() || ins.iter().any(|s| s.dims != first.dims) {
            return Err(shape_err(
                op,
                "need one init per input and inputs of equal dims",
                &all,
            ));
        }
        if init_shapes
            .iter()
            .zip(ins)
            .any(|(i, s)| !i.is_scalar() || i.ty != s.ty)
        {
            return Err(shape_err(
                op,
                "each init must be a scalar of its input's type",
                &all,
            ));
        }
        let scalars: Vec<Shape> = ins.iter().map(|s| Shape::scalar(s.ty)).collect();
        let params: Vec<Shape> = scalars.iter().chain(&scalars).cloned().collect();
        self.check_signature(op, comp, &params, &one_or_tuple(scalars))?;
        Ok(ins.to_vec())
    }

    /// Reduces `inputs` over `dims` with `comp: (acc_1..acc_n, x_1..x_n) -> (acc_1..acc_n)`.
    /// Returns one value for one input, else a tuple.
    pub fn reduce(
        &self,
        inputs: &[Value],
        inits: &[Value],
        dims: &[i64],
        comp: CompId,
    ) -> Result<Value> {
        let shapes = self.variadic_reduce_inputs("reduce", inputs, inits, comp)?;
        let first = &shapes[0];
        let rank = first.rank() as i64;
        if dims.iter().any(|&d| d < 0 || d >= rank)
            || (0..dims.len()).any(|i| dims[i + 1..].contains(&dims[i]))
        {
            return Err(shape_err(
                "reduce",
                format!("invalid dimensions {dims:?}"),
                &[first],
            ));
        }
        let kept: Vec<i64> = (0..rank)
            .filter(|d| !dims.contains(d))
            .map(|d| first.dims[d as usize])
            .collect();
        let out = one_or_tuple(
            shapes
                .iter()
                .map(|s| Shape::array(s.ty, kept.clone()))
                .collect(),
        );
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
        let shapes = self.variadic_reduce_inputs("reduce-window", inputs, inits, comp)?;
        let first = &shapes[0];
        if window.len() != first.rank() {
            return Err(shape_err(
                "reduce-window",
                "need one window dim per dimension",
                &[first],
            ));
        }
        let mut dims = Vec::with_capacity(first.rank());
        for (i, w) in window.iter().enumerate() {
            if w.size < 1 || w.stride < 1 || w.window_dilation < 1 || w.base_dilation < 1 {
                return Err(shape_err(
                    "reduce-window",
                    format!("dimension {i}: invalid window {w:?}"),
                    &[first],
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
        let out = one_or_tuple(
            shapes
                .iter()
                .map(|s| Shape::Array(ArrayShape::new(s.ty, dims.clone())))
                .collect(),
        );
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

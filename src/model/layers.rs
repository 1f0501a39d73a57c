//! The building context shared by the model pieces: parameter lookup with shape checks, dense
//! layers in the compute dtype with f32 accumulation, layer norm, activation, and dropout that
//! threads the RNG key.
use super::fp8::fp8_matmul;
use super::params::{hlo_dims, names, ParamValues};
use super::{BertConfig, ComputeDtype, Execution, HiddenAct, ModelError, Result};
use crate::train::fp8::{scale_name, Fp8Tensor};
use hlo::ir::{DotDims, Precision};
use hlo::{Builder, ElementType, Value};
use std::cell::Cell;

pub(crate) struct Ctx<'a, 'm> {
    pub b: &'a Builder<'m>,
    pub cfg: &'a BertConfig,
    pub exec: Execution,
    params: &'a ParamValues,
    /// The activation / matmul-input type.
    pub ct: ElementType,
    precision: Precision,
    train: bool,
    /// The encoder's dense layers are FP8 matmuls (fp8 compute, training graph).
    fp8: bool,
    key: Cell<Value>,
}

impl<'a, 'm> Ctx<'a, 'm> {
    pub fn new(
        b: &'a Builder<'m>,
        cfg: &'a BertConfig,
        exec: Execution,
        params: &'a ParamValues,
        key: Value,
        train: bool,
    ) -> Result<Self> {
        cfg.validate()?;
        exec.check(cfg)?;
        let k = b.array_shape(key, "dropout")?;
        if k.ty != ElementType::U64 || k.dims != [2] {
            return Err(ModelError::Batch {
                field: "rng_key",
                msg: format!("must be the dropout RNG state u64[2], got {k}"),
            });
        }
        let (ct, precision) = match exec.compute {
            ComputeDtype::F32 => (ElementType::F32, Precision::Highest),
            ComputeDtype::Bf16 | ComputeDtype::Fp8 => (ElementType::Bf16, Precision::Default),
        };
        Ok(Self {
            b,
            cfg,
            exec,
            params,
            ct,
            precision,
            train,
            fp8: train && exec.compute == ComputeDtype::Fp8,
            key: Cell::new(key),
        })
    }

    /// Whether this graph trains (dropout on).
    pub fn training(&self) -> bool {
        self.train
    }

    /// The key after every dropout drawn so far.
    pub fn key(&self) -> Value {
        self.key.get()
    }

    /// Parameter `name`, checked to be a float array of `dims`.
    pub fn param(&self, name: &str, dims: &[usize]) -> Result<Value> {
        let v = self.params.get(name)?;
        let a = self.b.array_shape(v, "parameter")?;
        if !a.ty.is_float() || a.dims != hlo_dims(dims) {
            return Err(ModelError::Param {
                name: name.into(),
                msg: format!("is {a}, the config needs a float array of dims {dims:?}"),
            });
        }
        Ok(v)
    }

    /// `x . w` contracting `dims`, inputs in the compute dtype, result in f32.
    pub fn dot(&self, x: Value, w: Value, dims: DotDims) -> Result<Value> {
        let b = self.b;
        let (x, w) = (b.convert(x, self.ct)?, b.convert(w, self.ct)?);
        let preferred = (self.ct != ElementType::F32).then_some(ElementType::F32);
        Ok(b.dot_general(x, w, dims, [self.precision; 2], preferred)?)
    }

    /// `x . w` contracting `dims`, inputs and result in the compute dtype (a bf16 dot still
    /// accumulates in f32 on GPU/TPU; only the output is rounded, once).
    pub fn dot_ct(&self, x: Value, w: Value, dims: DotDims) -> Result<Value> {
        if self.ct == ElementType::F32 {
            return self.dot(x, w, dims);
        }
        let b = self.b;
        let (x, w) = (b.convert(x, self.ct)?, b.convert(w, self.ct)?);
        Ok(b.dot_general(x, w, dims, [self.precision; 2], None)?)
    }

    /// The weight and bias of dense layer `prefix`.
    fn dense_params(&self, prefix: &str, n_in: usize, n_out: usize) -> Result<(Value, Value)> {
        let w = self.param(&names::weight(prefix), &[n_in, n_out])?;
        let bias = self.param(&names::bias(prefix), &[n_out])?;
        Ok((w, bias))
    }

    /// `f(x2, w) + bias` for `x[..., n_in]` flattened to `x2[rows, n_in]`, reshaped back to
    /// `[..., n_out]`; the bias is added in `ty` before the reshape, next to the GEMM.
    ///
    /// Dense layers multiply 2-D operands so that the weight gradient `x2^T g` contracts one
    /// dimension, a GEMM with a transposed operand, rather than two (batch and sequence) for
    /// which XLA's dot canonicalization materializes a transpose. Measured on an H100 (BERT-base
    /// seq 128): 1.013x the step. (The `[seq, hidden, batch]` layout with transposes around
    /// every GEMM that XLA once chose for the residual stream came from the position-embedding
    /// gradient; see `hlo::Builder::add_batch_broadcast`.)
    fn dense_2d(
        &self,
        x: Value,
        prefix: &str,
        (n_in, n_out): (usize, usize),
        ty: ElementType,
        f: impl FnOnce(Value, Value) -> Result<Value>,
    ) -> Result<Value> {
        let b = self.b;
        let (w, bias) = self.dense_params(prefix, n_in, n_out)?;
        let dims = b.dims(x)?;
        let lead = &dims[..dims.len().saturating_sub(1)];
        let x2 = b.reshape(x, &[lead.iter().product(), n_in as i64])?;
        let y = f(x2, w)?;
        let y_dims = b.dims(y)?;
        let y = b.add(y, b.broadcast_in_dim(b.convert(bias, ty)?, &y_dims, &[1])?)?;
        let out: Vec<i64> = lead.iter().copied().chain([n_out as i64]).collect();
        Ok(b.reshape(y, &out)?)
    }

    /// The dimension numbers of `x2[rows, k] . w[k, n]`.
    fn rows_by_weight() -> DotDims {
        DotDims {
            lhs_contracting: vec![1],
            rhs_contracting: vec![0],
            ..Default::default()
        }
    }

    /// `x[..., n_in] W[n_in, n_out] + bias`, in f32.
    pub fn dense_f32(&self, x: Value, prefix: &str, n_in: usize, n_out: usize) -> Result<Value> {
        self.dense_2d(x, prefix, (n_in, n_out), ElementType::F32, |x2, w| {
            self.dot(x2, w, Self::rows_by_weight())
        })
    }

    /// `x[..., n_in] W[n_in, n_out] + bias` in the compute dtype: the dot's output rounded to
    /// it, then the bias added in it (half the bytes of an f32 output between the matmul and
    /// the next op).
    pub fn dense(&self, x: Value, prefix: &str, n_in: usize, n_out: usize) -> Result<Value> {
        if self.ct == ElementType::F32 {
            let y = self.dense_f32(x, prefix, n_in, n_out)?;
            return Ok(self.b.convert(y, self.ct)?);
        }
        self.dense_2d(x, prefix, (n_in, n_out), self.ct, |x2, w| {
            self.dot_ct(x2, w, Self::rows_by_weight())
        })
    }

    /// An encoder dense layer: [`Ctx::dense`], or an FP8 matmul (plus the bias in bf16) when
    /// the encoder's dense layers are FP8; their scales are the values named after `prefix`.
    pub fn encoder_dense(
        &self,
        x: Value,
        prefix: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<Value> {
        if !self.fp8 {
            return self.dense(x, prefix, n_in, n_out);
        }
        let scale = |t: Fp8Tensor| self.params.get(&scale_name(prefix, t));
        let scales = [
            scale(Fp8Tensor::X)?,
            scale(Fp8Tensor::W)?,
            scale(Fp8Tensor::Grad)?,
        ];
        self.dense_2d(x, prefix, (n_in, n_out), self.ct, |x2, w| {
            fp8_matmul(self.b, x2, w, scales)
        })
    }

    /// Layer norm over the last dim with `{prefix}.weight` / `{prefix}.bias`; statistics in f32,
    /// result in x's type.
    pub fn layer_norm(&self, x: Value, prefix: &str) -> Result<Value> {
        let b = self.b;
        let h = self.cfg.hidden_size;
        let g = b.convert(self.param(&names::weight(prefix), &[h])?, ElementType::F32)?;
        let beta = b.convert(self.param(&names::bias(prefix), &[h])?, ElementType::F32)?;
        Ok(b.layer_norm(x, g, beta, self.cfg.layer_norm_eps)?)
    }

    /// The config's hidden activation.
    pub fn act(&self, x: Value) -> Result<Value> {
        Ok(match self.cfg.hidden_act {
            HiddenAct::GeluErf => self.b.gelu_erf(x)?,
            HiddenAct::GeluTanh => self.b.gelu_tanh(x)?,
            HiddenAct::Relu => self.b.relu(x)?,
        })
    }

    /// Dropout at `rate` when training (the key advances); `x` itself otherwise.
    pub fn dropout(&self, x: Value, rate: f64) -> Result<Value> {
        if !self.train || rate == 0.0 {
            return Ok(x);
        }
        let (y, key) = self.b.dropout(x, rate, self.key.get())?;
        self.key.set(key);
        Ok(y)
    }
}

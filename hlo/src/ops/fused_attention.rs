//! cuDNN's fused (flash) attention through XLA:GPU's custom calls.
//!
//! `softmax(scale * q k^T + bias)` with dropout on the probabilities, times `v`, in one kernel
//! that never writes the `[batch, heads, seq_q, seq_kv]` scores to memory; its backward is a
//! second kernel that recomputes them from the forward's per-row log-sum-exp. Only XLA:GPU
//! (CUDA, cuDNN >= 9) implements the targets: programs using them compile on no other backend,
//! so callers keep the plain-HLO attention for CPU and TPU.
//!
//! The call contract (operands, result tuples, the JSON backend config) is the one JAX's
//! `jax._src.cudnn.fused_attention_stablehlo` emits for the BTNH layout with a bias, with or
//! without dropout, checked against its lowering for the CUDA platform. As JAX does, the
//! `[B,N,T,H]` results are pinned to the layout `{3,1,2,0}` (BTNH in memory), so the transposes
//! back to `[B,T,N,H]` below are bitcasts rather than copies of q/k/v-sized tensors.
//!
//! ```text
//! fwd: (q[B,T,N,H], k[B,S,N,H], v[B,S,N,H], bias[B|1,1|N,T,S])
//!        -> (out[B,N,T,H], softmax_lse f32[B,N,T], workspace u8[0])
//! bwd: (q, k, v, softmax_lse, d_out[B,T,N,H], bias, out[B,T,N,H])
//!        -> (dq[B,N,T,H], dk[B,N,S,H], dv[B,N,S,H], workspace u8[0])
//! ```
//!
//! The backward's result has no `dbias`: XLA reads a five-element result as a request for the
//! bias gradient (`has_dbias` from the tuple size), which cuDNN then computes in an extra kernel
//! per layer (`fmha_dbias`, ~50 us per BERT-base layer on an H100) that nothing here needs.
//!
//! Dropout bits come from cuDNN's Philox generator: the backend config carries a seed and XLA
//! advances an offset every time the executable runs (forward and backward calls advance in
//! step, so the backward regenerates the forward's mask). The stream therefore depends on the
//! seed and on how often that loaded executable has run, not on the graph's dropout key.
use crate::builder::{Builder, Value};
use crate::dtype::ElementType;
use crate::error::{shape_err, HloError, Result};
use crate::shape::{ArrayShape, Shape};
use serde_json::{json, Value as Json};

/// The forward custom-call target with dropout.
pub const CUDNN_ATTENTION_DROPOUT_FWD: &str = "__cudnn$fmhaScaleBiasSoftmaxDropout";
/// Its backward.
pub const CUDNN_ATTENTION_DROPOUT_BWD: &str = "__cudnn$fmhaScaleBiasSoftmaxDropoutBackward";
/// The forward target without dropout (rate 0: XLA's dropout path aborts on a zero rate when
/// the executable runs).
pub const CUDNN_ATTENTION_FWD: &str = "__cudnn$fmhaScaleBiasSoftmax";
/// Its backward.
pub const CUDNN_ATTENTION_BWD: &str = "__cudnn$fmhaScaleBiasSoftmaxBackward";

/// The (forward, backward) targets for a dropout rate.
fn targets(dropout_rate: f64) -> (&'static str, &'static str) {
    if dropout_rate > 0.0 {
        (CUDNN_ATTENTION_DROPOUT_FWD, CUDNN_ATTENTION_DROPOUT_BWD)
    } else {
        (CUDNN_ATTENTION_FWD, CUDNN_ATTENTION_BWD)
    }
}
/// The `minor_to_major` of a `[B,N,T,H]` result laid out BTNH in memory: the transpose to
/// `[B,T,N,H]` that follows is then a bitcast, not a copy (JAX asks for the same).
const BTNH: [i64; 4] = [3, 1, 2, 0];
/// XLA's `API_VERSION_STATUS_RETURNING`.
const API_VERSION: i32 = 2;

/// The static parameters of one fused attention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedAttention {
    /// Multiplies `q k^T` before the bias is added (usually `1/sqrt(head_size)`).
    pub scale: f64,
    /// Dropout on the probabilities, in [0, 1).
    pub dropout_rate: f64,
    /// Seed of cuDNN's dropout generator.
    pub seed: i64,
}

/// The dims of one fused attention, `q: [B, T, N, H]`, `k`, `v: [B, S, N, H]`.
struct Dims {
    b: i64,
    t: i64,
    n: i64,
    s: i64,
    h: i64,
    ty: ElementType,
}

impl Builder<'_> {
    /// cuDNN fused attention (see the module docs): `q: [B, T, N, H]`, `k`, `v: [B, S, N, H]`
    /// in bf16 or f16, `bias: [B or 1, 1 or N, T, S]` of the same type (added to the scaled
    /// scores; -10000 or so on masked keys). Returns the context `[B, T, N, H]`. Registers the
    /// gradient rule of the call on the module (gradients for q, k, v; none for the bias).
    pub fn cudnn_attention(
        &self,
        q: Value,
        k: Value,
        v: Value,
        bias: Value,
        attn: FusedAttention,
    ) -> Result<Value> {
        let op = "cudnn_attention";
        let shapes = [q, k, v, bias]
            .iter()
            .map(|&x| self.array_shape(x, op))
            .collect::<Result<Vec<_>>>()?;
        let d = check_dims(&shapes)?;
        if !(0.0..1.0).contains(&attn.dropout_rate) {
            return Err(shape_err(
                op,
                format!("dropout rate must be in [0, 1), got {}", attn.dropout_rate),
                &[&shapes[0]],
            ));
        }
        if !attn.scale.is_finite() {
            return Err(shape_err(
                op,
                format!("scale must be finite, got {}", attn.scale),
                &[&shapes[0]],
            ));
        }
        let (fwd_target, _) = targets(attn.dropout_rate);
        self.module().register_vjp(fwd_target, |b, a| {
            let cfg = parse_config(a.backend_config)?;
            let (dq, dk, dv) = b.cudnn_attention_grads(a.operands, a.output, a.cotangent, cfg)?;
            Ok(vec![Some(dq), Some(dk), Some(dv), None])
        });
        let out = Shape::Tuple(vec![
            arr(d.ty, &[d.b, d.n, d.t, d.h]),
            arr(ElementType::F32, &[d.b, d.n, d.t]),
            arr(ElementType::U8, &[0]),
        ]);
        let layouts = Some(shapes.into_iter().map(Shape::Array).collect());
        let config = backend_config(&d, attn, false);
        let call = self.custom_call(
            fwd_target,
            &[q, k, v, bias],
            out,
            &config,
            layouts,
            false,
            API_VERSION,
        )?;
        self.set_custom_call_result_layouts(call, vec![Some(BTNH.to_vec())])?;
        let context = self.get_tuple_element(call, 0)?;
        self.transpose(context, &[0, 2, 1, 3])
    }

    /// The backward call for the forward `output` tuple with cotangent `cot` (a tuple of the
    /// same shape); returns `(dq, dk, dv)` in the operands' BTNH layout.
    fn cudnn_attention_grads(
        &self,
        operands: &[Value],
        output: Value,
        cot: Value,
        attn: FusedAttention,
    ) -> Result<(Value, Value, Value)> {
        let op = "cudnn_attention backward";
        let [q, k, v, bias] = operands else {
            return Err(shape_err(
                op,
                format!("expected 4 operands, got {}", operands.len()),
                &[],
            ));
        };
        let shapes = [*q, *k, *v, *bias]
            .iter()
            .map(|&x| self.array_shape(x, op))
            .collect::<Result<Vec<_>>>()?;
        let d = check_dims(&shapes)?;
        let to_btnh = |x: Value| self.transpose(x, &[0, 2, 1, 3]);
        let out = to_btnh(self.get_tuple_element(output, 0)?)?;
        let lse = self.get_tuple_element(output, 1)?;
        let d_out = to_btnh(self.get_tuple_element(cot, 0)?)?;
        let args = [*q, *k, *v, lse, d_out, *bias, out];
        let layouts = args
            .iter()
            .map(|&x| self.shape(x))
            .collect::<Result<Vec<_>>>()?;
        let result = Shape::Tuple(vec![
            arr(d.ty, &[d.b, d.n, d.t, d.h]),
            arr(d.ty, &[d.b, d.n, d.s, d.h]),
            arr(d.ty, &[d.b, d.n, d.s, d.h]),
            arr(ElementType::U8, &[0]),
        ]);
        let config = backend_config(&d, attn, true);
        let call = self.custom_call(
            targets(attn.dropout_rate).1,
            &args,
            result,
            &config,
            Some(layouts),
            false,
            API_VERSION,
        )?;
        self.set_custom_call_result_layouts(call, vec![Some(BTNH.to_vec()); 3])?;
        let grad = |i| to_btnh(self.get_tuple_element(call, i)?);
        Ok((grad(0)?, grad(1)?, grad(2)?))
    }
}

fn arr(ty: ElementType, dims: &[i64]) -> Shape {
    Shape::Array(ArrayShape::new(ty, dims.to_vec()))
}

/// Checks q, k, v, bias against the kernel's requirements and returns the dims.
fn check_dims(s: &[ArrayShape]) -> Result<Dims> {
    let op = "cudnn_attention";
    let fail = |m: String| -> HloError {
        let shown: Vec<&dyn std::fmt::Display> =
            s.iter().map(|a| a as &dyn std::fmt::Display).collect();
        shape_err(op, m, &shown)
    };
    let [q, k, v, bias] = s else {
        return Err(fail(format!(
            "expected q, k, v, bias; got {} arrays",
            s.len()
        )));
    };
    if q.rank() != 4 || k.rank() != 4 || v.rank() != 4 || bias.rank() != 4 {
        return Err(fail(
            "q, k, v and bias must have rank 4 (q: [B, T, N, H])".into(),
        ));
    }
    let ty = q.ty;
    if !matches!(ty, ElementType::Bf16 | ElementType::F16) {
        return Err(fail(format!("q must be bf16 or f16, got {ty}")));
    }
    if [k.ty, v.ty, bias.ty].iter().any(|&t| t != ty) {
        return Err(fail("k, v and bias must have q's element type".into()));
    }
    let (b, t, n, h) = (q.dims[0], q.dims[1], q.dims[2], q.dims[3]);
    let s_len = k.dims[1];
    if k.dims != [b, s_len, n, h] || v.dims != k.dims {
        return Err(fail(
            "k and v must be [B, S, N, H] with q's B, N and H".into(),
        ));
    }
    if h % 8 != 0 || h > 128 {
        return Err(fail(format!(
            "head size {h} is not supported by cuDNN flash attention (a multiple of 8, at most 128)"
        )));
    }
    let bias_ok = (bias.dims[0] == b || bias.dims[0] == 1)
        && (bias.dims[1] == n || bias.dims[1] == 1)
        && bias.dims[2] == t
        && bias.dims[3] == s_len;
    if !bias_ok {
        return Err(fail(format!(
            "bias must be [B or 1, N or 1, T, S] = [{b} or 1, {n} or 1, {t}, {s_len}]"
        )));
    }
    Ok(Dims {
        b,
        t,
        n,
        s: s_len,
        h,
        ty,
    })
}

/// XLA's element-type name in a backend config.
fn type_name(ty: ElementType) -> &'static str {
    match ty {
        ElementType::F16 => "F16",
        _ => "BF16",
    }
}

/// Dot dimension numbers as the config spells them (numbers as strings, proto JSON style).
fn dot_dims(lhs_c: i64, rhs_c: i64, lhs_b: [i64; 2], rhs_b: [i64; 2]) -> Json {
    let s = |v: &[i64]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    json!({
        "lhs_contracting_dimensions": s(&[lhs_c]),
        "rhs_contracting_dimensions": s(&[rhs_c]),
        "lhs_batch_dimensions": s(&lhs_b),
        "rhs_batch_dimensions": s(&rhs_b),
    })
}

/// The `GpuBackendConfig` JSON of a forward or backward call in the BTNH layout.
fn backend_config(d: &Dims, attn: FusedAttention, backward: bool) -> String {
    let dims: Vec<String> = [d.b, d.n, d.t, d.s].iter().map(|x| x.to_string()).collect();
    let mut fmha = json!({
        "algorithm": {
            "algo_id": "0",
            "math_type": "TENSOR_OP_MATH",
            "tuning_knobs": {"17": "1", "24": "0"},
            "is_cudnn_frontend": true,
            "workspace_size": "0",
        },
        "fmha_scale": attn.scale,
        "intermediate_tensor_shape": {
            "element_type": type_name(d.ty),
            "dimensions": dims,
            "tuple_shapes": [],
            "layout": {
                "dim_level_types": [],
                "dim_unique": [],
                "dim_ordered": [],
                "minor_to_major": ["3", "2", "1", "0"],
                "tiles": [],
                "element_size_in_bits": "0",
                "memory_space": "0",
                "index_primitive_type": "PRIMITIVE_TYPE_INVALID",
                "pointer_primitive_type": "PRIMITIVE_TYPE_INVALID",
                "dynamic_shape_metadata_prefix_bytes": "0",
            },
            "is_dynamic_dimension": [false, false, false, false],
        },
        "is_flash_attention": true,
        "mask_type": "NO_MASK",
        "dropout_rate": attn.dropout_rate,
        "seed": attn.seed,
        "sliding_window_length": 0,
        "max_seg_per_batch": 1,
        "is_paged_attention": false,
    });
    // q [B,T,N,H], k/v [B,S,N,H]; scores and probabilities [B,N,T,S].
    let gemms = if backward {
        [
            (
                "bmm1_grad_gemm1_dot_dimension_numbers",
                dot_dims(2, 1, [0, 1], [0, 2]),
            ),
            (
                "bmm1_grad_gemm2_dot_dimension_numbers",
                dot_dims(3, 1, [0, 1], [0, 2]),
            ),
            (
                "bmm2_grad_gemm1_dot_dimension_numbers",
                dot_dims(2, 1, [0, 1], [0, 2]),
            ),
            (
                "bmm2_grad_gemm2_dot_dimension_numbers",
                dot_dims(3, 3, [0, 2], [0, 2]),
            ),
        ]
        .to_vec()
    } else {
        [
            ("bmm1_dot_dimension_numbers", dot_dims(3, 3, [0, 2], [0, 2])),
            ("bmm2_dot_dimension_numbers", dot_dims(3, 1, [0, 1], [0, 2])),
        ]
        .to_vec()
    };
    if let Json::Object(map) = &mut fmha {
        for (k, v) in gemms {
            map.insert(k.to_string(), v);
        }
    }
    json!({"operation_queue_id": "0", "cudnn_fmha_backend_config": fmha}).to_string()
}

/// Scale, dropout rate and seed back from a forward call's backend config.
fn parse_config(config: &str) -> Result<FusedAttention> {
    let op = "cudnn_attention backward";
    let bad = |m: &str| shape_err(op, format!("backend config: {m}"), &[]);
    let v: Json = serde_json::from_str(config).map_err(|e| bad(&e.to_string()))?;
    let f = &v["cudnn_fmha_backend_config"];
    Ok(FusedAttention {
        scale: f["fmha_scale"]
            .as_f64()
            .ok_or_else(|| bad("no fmha_scale"))?,
        dropout_rate: f["dropout_rate"]
            .as_f64()
            .ok_or_else(|| bad("no dropout_rate"))?,
        seed: f["seed"].as_i64().ok_or_else(|| bad("no seed"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ModuleBuilder;
    use crate::passes::dce;

    fn bf16(dims: &[i64]) -> Shape {
        arr(ElementType::Bf16, dims)
    }

    fn calls<'a>(m: &'a crate::Module, target: &str) -> Vec<&'a crate::ir::Instruction> {
        m.entry_computation()
            .instrs
            .iter()
            .filter(|i| matches!(&i.op, crate::ir::Op::CustomCall { target: t, .. } if t == target))
            .collect()
    }

    #[test]
    fn forward_and_backward_calls_follow_the_contract() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let q = b.parameter(bf16(&[2, 16, 3, 64]), "q").unwrap();
        let k = b.parameter(bf16(&[2, 8, 3, 64]), "k").unwrap();
        let v = b.parameter(bf16(&[2, 8, 3, 64]), "v").unwrap();
        let bias = b.parameter(bf16(&[2, 1, 16, 8]), "bias").unwrap();
        let attn = FusedAttention {
            scale: 0.125,
            dropout_rate: 0.1,
            seed: 7,
        };
        let ctx = b.cudnn_attention(q, k, v, bias, attn).unwrap();
        assert_eq!(b.shape(ctx).unwrap(), bf16(&[2, 16, 3, 64]));
        let loss = b.convert(ctx, ElementType::F32).unwrap();
        let loss = b.reduce_sum(loss, &[0, 1, 2, 3]).unwrap();
        let g = b.grad(loss, &[q, k, v]).unwrap();
        assert_eq!(b.shape(g[1]).unwrap(), bf16(&[2, 8, 3, 64]));
        let root = b.tuple(&[loss, g[0], g[1], g[2]]).unwrap();
        let e = b.finish(root).unwrap();
        let module = dce(&m.build(e).unwrap()).unwrap();

        let fwd = calls(&module, CUDNN_ATTENTION_DROPOUT_FWD);
        let bwd = calls(&module, CUDNN_ATTENTION_DROPOUT_BWD);
        assert_eq!((fwd.len(), bwd.len()), (1, 1));
        assert_eq!(
            fwd[0].shape.to_string(),
            "(bf16[2,3,16,64], f32[2,3,16], u8[0])"
        );
        assert_eq!(
            bwd[0].shape.to_string(),
            "(bf16[2,3,16,64], bf16[2,3,8,64], bf16[2,3,8,64], u8[0])"
        );
        assert_eq!(bwd[0].operands.len(), 7);
        // The [B,N,T,H] results are laid out BTNH in the proto XLA reads and in the text.
        let proto = crate::lower::to_proto(&module).unwrap();
        let entry = proto
            .computations
            .iter()
            .find(|c| c.id == proto.entry_computation_id)
            .unwrap();
        let layouts = |target: &str| -> Vec<Vec<i64>> {
            let call = entry
                .instructions
                .iter()
                .find(|i| i.custom_call_target == target)
                .unwrap();
            let shape = call.shape.as_ref().unwrap();
            shape
                .tuple_shapes
                .iter()
                .map(|s| s.layout.as_ref().unwrap().minor_to_major.clone())
                .collect()
        };
        assert_eq!(
            layouts(CUDNN_ATTENTION_DROPOUT_FWD),
            [vec![3, 1, 2, 0], vec![2, 1, 0], vec![0]]
        );
        assert_eq!(
            layouts(CUDNN_ATTENTION_DROPOUT_BWD),
            [
                vec![3, 1, 2, 0],
                vec![3, 1, 2, 0],
                vec![3, 1, 2, 0],
                vec![0]
            ]
        );
        let text = crate::text::to_text(&module);
        assert!(
            text.contains("(bf16[2,3,16,64]{3,1,2,0}, f32[2,3,16]{2,1,0}, u8[0]{0}) custom-call("),
            "{text}"
        );
        for (i, want) in [(fwd[0], false), (bwd[0], true)] {
            let crate::ir::Op::CustomCall {
                backend_config,
                api_version,
                operand_layouts,
                ..
            } = &i.op
            else {
                unreachable!()
            };
            assert_eq!(*api_version, 2);
            assert!(operand_layouts.is_some());
            let c: Json = serde_json::from_str(backend_config).unwrap();
            let f = &c["cudnn_fmha_backend_config"];
            assert_eq!(f["fmha_scale"], 0.125);
            assert_eq!(f["dropout_rate"], 0.1);
            assert_eq!(f["seed"], 7);
            assert_eq!(
                f["intermediate_tensor_shape"]["dimensions"],
                json!(["2", "3", "16", "8"])
            );
            assert_eq!(f.get("bmm1_dot_dimension_numbers").is_some(), !want);
            assert_eq!(
                f.get("bmm2_grad_gemm2_dot_dimension_numbers").is_some(),
                want
            );
            assert_eq!(parse_config(backend_config).unwrap(), {
                FusedAttention {
                    scale: 0.125,
                    dropout_rate: 0.1,
                    seed: 7,
                }
            });
        }
    }

    #[test]
    fn no_dropout_uses_the_plain_targets() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let q = b.parameter(bf16(&[1, 8, 1, 16]), "q").unwrap();
        let bias = b.parameter(bf16(&[1, 1, 8, 8]), "bias").unwrap();
        let attn = FusedAttention {
            scale: 0.25,
            dropout_rate: 0.0,
            seed: 3,
        };
        let ctx = b.cudnn_attention(q, q, q, bias, attn).unwrap();
        let loss = b.convert(ctx, ElementType::F32).unwrap();
        let loss = b.reduce_sum(loss, &[0, 1, 2, 3]).unwrap();
        let g = b.grad(loss, &[q]).unwrap()[0];
        let e = b.finish(b.tuple(&[loss, g]).unwrap()).unwrap();
        let module = dce(&m.build(e).unwrap()).unwrap();
        assert_eq!(calls(&module, CUDNN_ATTENTION_FWD).len(), 1);
        assert_eq!(calls(&module, CUDNN_ATTENTION_BWD).len(), 1);
        assert_eq!(calls(&module, CUDNN_ATTENTION_DROPOUT_FWD).len(), 0);
    }

    #[test]
    fn bad_shapes_and_types_are_named() {
        let m = ModuleBuilder::new("t");
        let b = m.builder("main");
        let attn = FusedAttention {
            scale: 1.0,
            dropout_rate: 0.0,
            seed: 0,
        };
        let p = |s: Shape, n: &str| b.parameter(s, n).unwrap();
        let q = p(bf16(&[2, 16, 3, 64]), "q");
        let kv = p(bf16(&[2, 16, 3, 64]), "kv");
        let bias = p(bf16(&[2, 1, 16, 16]), "bias");
        let f32q = p(arr(ElementType::F32, &[2, 16, 3, 64]), "f");
        let odd = p(bf16(&[2, 16, 3, 60]), "odd");
        let wrong_bias = p(bf16(&[2, 1, 1, 16]), "wb");
        let err = |r: Result<Value>| r.unwrap_err().to_string();
        assert!(err(b.cudnn_attention(f32q, kv, kv, bias, attn)).contains("bf16 or f16"));
        assert!(err(b.cudnn_attention(odd, odd, odd, bias, attn)).contains("head size 60"));
        assert!(err(b.cudnn_attention(q, kv, kv, wrong_bias, attn)).contains("bias must be"));
        let high = FusedAttention {
            dropout_rate: 1.0,
            ..attn
        };
        assert!(err(b.cudnn_attention(q, kv, kv, bias, high)).contains("dropout rate"));
    }
}

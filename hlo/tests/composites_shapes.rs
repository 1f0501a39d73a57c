//! Composite helpers (hlo::ops): result shapes and types, argument errors, and lowering to
//! HloModuleProto. Numeric checks against a reference run on the CPU plugin elsewhere.
use hlo::lower::to_proto;
use hlo::ops::DropoutBits;
use hlo::proto::{HloModuleProto, PrimitiveType, RandomAlgorithm};
use hlo::{Builder, ElementType, HloError, ModuleBuilder, Shape, Value};

use ElementType::{Bf16, Pred, F16, F32, F64, S32, S64, S8, U32, U64, U8};

fn arr(ty: ElementType, dims: &[i64]) -> Shape {
    Shape::array(ty, dims.to_vec())
}

/// Builds `f(b, param)` with one parameter of `input`, checks the result shape, and lowers it.
fn lower_one(
    input: Shape,
    f: impl FnOnce(&Builder, Value) -> hlo::Result<Value>,
    want: Shape,
) -> HloModuleProto {
    let mb = ModuleBuilder::new("t");
    let b = mb.builder("main");
    let x = b.parameter(input, "x").unwrap();
    let y = f(&b, x).unwrap();
    assert_eq!(b.shape(y).unwrap(), want);
    let c = b.finish(y).unwrap();
    let m = mb.build(c).unwrap();
    let p = to_proto(&m).unwrap();
    let entry = p
        .computations
        .iter()
        .find(|c| c.id == p.entry_computation_id)
        .unwrap();
    let root = entry
        .instructions
        .iter()
        .find(|i| i.id == entry.root_id)
        .unwrap();
    assert_eq!(root.shape.as_ref().unwrap().dimensions, want_dims(&want));
    p
}

fn want_dims(s: &Shape) -> Vec<i64> {
    s.as_array().map(|a| a.dims.clone()).unwrap_or_default()
}

/// Runs `f` on a fresh parameter of `input` and returns its error.
fn error_of(input: Shape, f: impl FnOnce(&Builder, Value) -> hlo::Result<Value>) -> HloError {
    let mb = ModuleBuilder::new("t");
    let b = mb.builder("main");
    let x = b.parameter(input, "x").unwrap();
    f(&b, x).unwrap_err()
}

/// Asserts `e` is a shape error reported by helper `op`.
fn assert_op(e: &HloError, op: &str) {
    match e {
        HloError::Shape { op: got, .. } => assert_eq!(*got, op, "{e}"),
        other => panic!("expected a shape error from {op}, got {other}"),
    }
}

/// Element types of the entry's instructions with opcode `opcode`.
fn types_of(p: &HloModuleProto, opcode: &str) -> Vec<PrimitiveType> {
    let entry = p
        .computations
        .iter()
        .find(|c| c.id == p.entry_computation_id)
        .unwrap();
    entry
        .instructions
        .iter()
        .filter(|i| i.opcode == opcode)
        .map(|i| i.shape.as_ref().unwrap().element_type())
        .collect()
}

#[test]
fn softmax_family_shapes_and_types() {
    let s = arr(F32, &[2, 3, 5]);
    for axis in [-1, 0, 1, 2] {
        lower_one(s.clone(), |b, x| b.softmax(x, axis), s.clone());
        lower_one(s.clone(), |b, x| b.log_softmax(x, axis), s.clone());
    }
    lower_one(s.clone(), |b, x| b.logsumexp(x, &[0, -1]), arr(F32, &[3]));
    lower_one(s.clone(), |b, x| b.logsumexp(x, &[]), s.clone());
    lower_one(s.clone(), |b, x| b.logsumexp(x, &[2, 1, 0]), arr(F32, &[]));

    // Plain forms compute in the input type, _f32_stats forms in f32, results in bf16/f16.
    for ty in [Bf16, F16] {
        let h = arr(ty, &[4, 8]);
        let pt = ty.primitive_type();
        let p = lower_one(h.clone(), |b, x| b.softmax(x, -1), h.clone());
        assert_eq!(types_of(&p, "exponential"), vec![pt]);
        assert!(types_of(&p, "convert").is_empty());
        let p = lower_one(h.clone(), |b, x| b.softmax_f32_stats(x, -1), h.clone());
        assert_eq!(types_of(&p, "exponential"), vec![PrimitiveType::F32]);
        assert_eq!(types_of(&p, "reduce"), vec![PrimitiveType::F32; 2]);
        let p = lower_one(h.clone(), |b, x| b.log_softmax_f32_stats(x, 0), h.clone());
        assert_eq!(types_of(&p, "log"), vec![PrimitiveType::F32]);
        let p = lower_one(
            h.clone(),
            |b, x| b.logsumexp_f32_stats(x, &[1]),
            arr(ty, &[4]),
        );
        assert_eq!(types_of(&p, "log"), vec![PrimitiveType::F32]);
    }
    // f32 stats leave f32 and f64 inputs in their own type.
    let d = arr(F64, &[3]);
    let p = lower_one(d.clone(), |b, x| b.softmax_f32_stats(x, 0), d.clone());
    assert_eq!(types_of(&p, "exponential"), vec![PrimitiveType::F64]);
}

#[test]
fn softmax_family_errors() {
    let s = arr(F32, &[2, 3, 5]);
    assert_op(&error_of(s.clone(), |b, x| b.softmax(x, 3)), "softmax");
    assert_op(&error_of(s.clone(), |b, x| b.softmax(x, -4)), "softmax");
    assert_op(
        &error_of(s.clone(), |b, x| b.log_softmax(x, 3)),
        "log_softmax",
    );
    assert_op(
        &error_of(arr(S32, &[4]), |b, x| b.softmax_f32_stats(x, 0)),
        "softmax",
    );
    assert_op(&error_of(arr(F32, &[]), |b, x| b.softmax(x, 0)), "softmax");
    // -2 is dimension 1 of a rank-3 array: a repeat.
    assert_op(
        &error_of(s.clone(), |b, x| b.logsumexp(x, &[1, -2])),
        "logsumexp",
    );
    assert_op(&error_of(s, |b, x| b.logsumexp(x, &[5])), "logsumexp");
    assert_op(
        &error_of(arr(U32, &[4]), |b, x| b.logsumexp(x, &[0])),
        "logsumexp",
    );
}

#[test]
fn mean_and_variance_shapes_and_errors() {
    let s = arr(F32, &[2, 3, 5]);
    lower_one(s.clone(), |b, x| b.mean(x, &[1]), arr(F32, &[2, 5]));
    lower_one(s.clone(), |b, x| b.mean(x, &[-1, 0]), arr(F32, &[3]));
    lower_one(s.clone(), |b, x| b.variance(x, &[2]), arr(F32, &[2, 3]));
    lower_one(arr(Bf16, &[6]), |b, x| b.variance(x, &[0]), arr(Bf16, &[]));
    // The divisor is the number of reduced elements, 2 * 5 = 10.
    let p = lower_one(s.clone(), |b, x| b.mean(x, &[0, 2]), arr(F32, &[3]));
    let entry = &p.computations[p.computations.len() - 1];
    let divisors: Vec<f32> = entry
        .instructions
        .iter()
        .filter(|i| i.opcode == "constant")
        .flat_map(|i| i.literal.as_ref().unwrap().f32s.clone())
        .collect();
    assert!(divisors.contains(&10.0), "{divisors:?}");

    assert_op(&error_of(s.clone(), |b, x| b.mean(x, &[3])), "mean");
    assert_op(&error_of(s.clone(), |b, x| b.mean(x, &[0, 0])), "mean");
    assert_op(&error_of(arr(S32, &[4]), |b, x| b.mean(x, &[0])), "mean");
    assert_op(&error_of(s, |b, x| b.variance(x, &[-4])), "variance");
    assert_op(
        &error_of(arr(U8, &[4]), |b, x| b.variance(x, &[0])),
        "variance",
    );
}

/// layer_norm with gamma/beta parameters of `gb`; returns the lowered module or the error.
fn layer_norm_case(x: Shape, gb: Shape, eps: f64) -> Result<(Shape, HloModuleProto), HloError> {
    let mb = ModuleBuilder::new("t");
    let b = mb.builder("main");
    let xv = b.parameter(x, "x")?;
    let g = b.parameter(gb.clone(), "gamma")?;
    let be = b.parameter(gb, "beta")?;
    let y = b.layer_norm(xv, g, be, eps)?;
    let shape = b.shape(y)?;
    let c = b.finish(y)?;
    let m = mb.build(c)?;
    Ok((shape, to_proto(&m)?))
}

#[test]
fn layer_norm_shapes_types_and_errors() {
    let (s, p) = layer_norm_case(arr(F32, &[2, 4, 8]), arr(F32, &[8]), 1e-12).unwrap();
    assert_eq!(s, arr(F32, &[2, 4, 8]));
    assert_eq!(types_of(&p, "rsqrt"), vec![PrimitiveType::F32]);
    // bf16 x: statistics in f32, result bf16; gamma/beta may be bf16 or f32.
    for gb in [Bf16, F32] {
        let (s, p) = layer_norm_case(arr(Bf16, &[3, 16]), arr(gb, &[16]), 1e-12).unwrap();
        assert_eq!(s, arr(Bf16, &[3, 16]));
        assert_eq!(types_of(&p, "rsqrt"), vec![PrimitiveType::F32]);
        assert_eq!(types_of(&p, "reduce"), vec![PrimitiveType::F32; 2]);
    }
    let (s, _) = layer_norm_case(arr(F16, &[5]), arr(F16, &[5]), 1e-5).unwrap();
    assert_eq!(s, arr(F16, &[5]));

    let err = |x: Shape, gb: Shape, eps: f64| layer_norm_case(x, gb, eps).unwrap_err();
    assert_op(&err(arr(F32, &[2, 8]), arr(F32, &[2]), 1e-12), "layer_norm");
    assert_op(
        &err(arr(F32, &[2, 8]), arr(F32, &[2, 8]), 1e-12),
        "layer_norm",
    );
    assert_op(
        &err(arr(F32, &[2, 8]), arr(Bf16, &[8]), 1e-12),
        "layer_norm",
    );
    assert_op(&err(arr(F64, &[2, 8]), arr(F32, &[8]), 1e-12), "layer_norm");
    assert_op(&err(arr(F32, &[2, 8]), arr(F32, &[8]), -1e-5), "layer_norm");
    assert_op(
        &err(arr(F32, &[2, 8]), arr(F32, &[8]), f64::NAN),
        "layer_norm",
    );
    assert_op(&err(arr(F32, &[]), arr(F32, &[1]), 1e-12), "layer_norm");
    assert_op(&err(arr(S32, &[2, 8]), arr(S32, &[8]), 1e-12), "layer_norm");
}

#[test]
fn activations_shapes_and_errors() {
    for ty in [F32, Bf16, F16, F64] {
        let s = arr(ty, &[3, 7]);
        let p = lower_one(s.clone(), |b, x| b.gelu_erf(x), s.clone());
        assert_eq!(types_of(&p, "erf"), vec![ty.primitive_type()]);
        let p = lower_one(s.clone(), |b, x| b.gelu_tanh(x), s.clone());
        assert_eq!(types_of(&p, "tanh"), vec![ty.primitive_type()]);
        lower_one(s.clone(), |b, x| b.relu(x), s);
    }
    lower_one(arr(S32, &[4]), |b, x| b.relu(x), arr(S32, &[4]));
    assert_op(&error_of(arr(S32, &[4]), |b, x| b.gelu_erf(x)), "gelu_erf");
    assert_op(&error_of(arr(U8, &[4]), |b, x| b.gelu_tanh(x)), "gelu_tanh");
    assert_op(&error_of(arr(Pred, &[4]), |b, x| b.relu(x)), "relu");
}

#[test]
fn one_hot_shapes_and_errors() {
    lower_one(
        arr(S32, &[2, 3]),
        |b, i| b.one_hot(i, 4, F32, 1.0, 0.0),
        arr(F32, &[2, 3, 4]),
    );
    lower_one(
        arr(S32, &[]),
        |b, i| b.one_hot(i, 5, Bf16, 0.9, 0.025),
        arr(Bf16, &[5]),
    );
    lower_one(
        arr(U8, &[7]),
        |b, i| b.one_hot(i, 256, Pred, 1.0, 0.0),
        arr(Pred, &[7, 256]),
    );
    lower_one(
        arr(S8, &[2]),
        |b, i| b.one_hot(i, 128, S32, -1.0, 3.0),
        arr(S32, &[2, 128]),
    );
    let one_hot_err = |idx: Shape, depth: i64, ty: ElementType, on: f64| {
        error_of(idx, |b, i| b.one_hot(i, depth, ty, on, 0.0))
    };
    assert_op(&one_hot_err(arr(S32, &[2]), 0, F32, 1.0), "one_hot");
    assert_op(&one_hot_err(arr(S32, &[2]), -3, F32, 1.0), "one_hot");
    assert_op(&one_hot_err(arr(F32, &[2]), 4, F32, 1.0), "one_hot");
    assert_op(&one_hot_err(arr(S8, &[2]), 129, F32, 1.0), "one_hot");
    assert_op(&one_hot_err(arr(S32, &[2]), 4, S32, 0.5), "one_hot");
    assert_op(&one_hot_err(arr(S32, &[2]), 4, U8, 256.0), "one_hot");
    assert_op(&one_hot_err(arr(S32, &[2]), 4, Pred, 2.0), "one_hot");
}

#[test]
fn argmax_argmin_shapes_and_reducer() {
    let s = arr(F32, &[3, 5]);
    let p = lower_one(s.clone(), |b, x| b.argmax(x, 1, S32), arr(S32, &[3]));
    // The reduce is variadic over (values, indices) and returns the index half.
    let reduce = p.computations.iter().flat_map(|c| &c.instructions);
    let reduce = reduce.filter(|i| i.opcode == "reduce").collect::<Vec<_>>();
    assert_eq!(reduce.len(), 1);
    assert_eq!(reduce[0].operand_ids.len(), 4);
    assert_eq!(reduce[0].dimensions, vec![1]);
    let called = reduce[0].called_computation_ids[0];
    let comp = p.computations.iter().find(|c| c.id == called).unwrap();
    let sig = comp.program_shape.as_ref().unwrap();
    let params: Vec<PrimitiveType> = sig.parameters.iter().map(|s| s.element_type()).collect();
    use PrimitiveType as P;
    assert_eq!(params, vec![P::F32, P::S32, P::F32, P::S32]);
    let result = sig.result.as_ref().unwrap();
    assert_eq!(result.tuple_shapes.len(), 2);

    lower_one(s.clone(), |b, x| b.argmin(x, -2, S64), arr(S64, &[5]));
    lower_one(
        arr(Bf16, &[4, 2, 6]),
        |b, x| b.argmax(x, -1, U32),
        arr(U32, &[4, 2]),
    );
    lower_one(arr(S32, &[9]), |b, x| b.argmin(x, 0, S32), arr(S32, &[]));
    lower_one(arr(U64, &[2, 3]), |b, x| b.argmax(x, 0, S8), arr(S8, &[3]));
    // 256 positions: indices 0..=255 fit in u8.
    lower_one(arr(F32, &[256]), |b, x| b.argmax(x, 0, U8), arr(U8, &[]));
    // Integer values need no NaN test in the reducer.
    let p = lower_one(arr(S32, &[9]), |b, x| b.argmin(x, 0, S32), arr(S32, &[]));
    let reducer = &p.computations[0];
    assert!(!reducer.instructions.iter().any(|i| i.opcode == "not"));

    assert_op(&error_of(s.clone(), |b, x| b.argmax(x, 2, S32)), "argmax");
    assert_op(&error_of(s.clone(), |b, x| b.argmin(x, -3, S32)), "argmin");
    assert_op(&error_of(s.clone(), |b, x| b.argmax(x, 0, F32)), "argmax");
    assert_op(
        &error_of(arr(F32, &[257]), |b, x| b.argmax(x, 0, U8)),
        "argmax",
    );
    assert_op(
        &error_of(arr(F32, &[3, 0]), |b, x| b.argmax(x, 1, S32)),
        "argmax",
    );
    assert_op(
        &error_of(arr(Pred, &[3]), |b, x| b.argmin(x, 0, S32)),
        "argmin",
    );
}

/// (y, new_key) shapes, whether they are the inputs themselves, and the lowered module.
type DropoutCase = ((Shape, Shape), (bool, bool), HloModuleProto);

/// Builds dropout of an `x` parameter with a `key` parameter.
fn dropout_case_with(
    x: Shape,
    key: Shape,
    rate: f64,
    how: DropoutBits,
) -> Result<DropoutCase, HloError> {
    let mb = ModuleBuilder::new("t");
    let b = mb.builder("main");
    let xv = b.parameter(x, "x")?;
    let k = b.parameter(key, "key")?;
    let (y, k2) = b.dropout_with(xv, rate, k, how)?;
    let shapes = (b.shape(y)?, b.shape(k2)?);
    let same = (y == xv, k2 == k);
    let c = b.finish(b.tuple(&[y, k2])?)?;
    let m = mb.build(c)?;
    Ok((shapes, same, to_proto(&m)?))
}

fn dropout_case(x: Shape, key: Shape, rate: f64) -> Result<DropoutCase, HloError> {
    dropout_case_with(x, key, rate, DropoutBits::default())
}

fn u32_literals(p: &HloModuleProto) -> Vec<u32> {
    let entry = &p.computations[p.computations.len() - 1];
    entry
        .instructions
        .iter()
        .filter_map(|i| i.literal.as_ref())
        .flat_map(|l| l.u32s.clone())
        .collect()
}

#[test]
fn dropout_shapes_rng_and_threshold() {
    let key = arr(U64, &[2]);
    // The default draws from the fused hash: no rng-bit-generator; keep when r < round(0.9 * 2^32).
    let (shapes, same, p) = dropout_case(arr(Bf16, &[4, 6]), key.clone(), 0.1).unwrap();
    assert_eq!(shapes, (arr(Bf16, &[4, 6]), key.clone()));
    assert_eq!(same, (false, false));
    assert!(types_of(&p, "rng-bit-generator").is_empty());
    assert!(u32_literals(&p).contains(&3_865_470_566));

    // With XLA's generator: one ThreeFry op of u32[x.dims], the same threshold.
    let how = DropoutBits::Rng(hlo::ir::RngAlgorithm::ThreeFry);
    let (shapes, _, p) = dropout_case_with(arr(Bf16, &[4, 6]), key.clone(), 0.1, how).unwrap();
    assert_eq!(shapes, (arr(Bf16, &[4, 6]), key.clone()));
    let entry = &p.computations[p.computations.len() - 1];
    let rng: Vec<_> = entry
        .instructions
        .iter()
        .filter(|i| i.opcode == "rng-bit-generator")
        .collect();
    assert_eq!(rng.len(), 1);
    assert_eq!(rng[0].rng_algorithm(), RandomAlgorithm::RngThreeFry);
    let bits = &rng[0].shape.as_ref().unwrap().tuple_shapes[1];
    assert_eq!(bits.element_type(), PrimitiveType::U32);
    assert_eq!(bits.dimensions, vec![4, 6]);
    // Keep when bits < round(0.9 * 2^32): P(keep) = 0.9 to within 2^-32.
    assert_eq!(u32_literals(&p), vec![3_865_470_566]);
    let lt = entry.instructions.iter().find(|i| i.opcode == "compare");
    let lt = lt.unwrap();
    assert_eq!(
        (
            lt.comparison_direction.as_str(),
            lt.comparison_type.as_str()
        ),
        ("LT", "UNSIGNED")
    );

    // rate 0 is the identity and leaves the key alone.
    let (shapes, same, p) = dropout_case(arr(F32, &[3]), key.clone(), 0.0).unwrap();
    assert_eq!(shapes, (arr(F32, &[3]), key.clone()));
    assert_eq!(same, (true, true));
    assert!(types_of(&p, "rng-bit-generator").is_empty());

    // A rate just above 0 keeps nearly everything; the threshold saturates at u32::MAX.
    let (_, _, p) = dropout_case(arr(F32, &[3]), key.clone(), 1e-12).unwrap();
    assert!(u32_literals(&p).contains(&u32::MAX));

    let err = |x: Shape, k: Shape, rate: f64| dropout_case(x, k, rate).unwrap_err();
    for rate in [1.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
        assert_op(&err(arr(F32, &[3]), key.clone(), rate), "dropout");
    }
    assert_op(&err(arr(F32, &[3]), arr(U32, &[2]), 0.1), "dropout");
    assert_op(&err(arr(F32, &[3]), arr(U64, &[3]), 0.1), "dropout");
    assert_op(&err(arr(S32, &[3]), key, 0.1), "dropout");
}

#[test]
fn helpers_compose_into_one_module() {
    // A tiny attention-like block: scores -> masked softmax (f32 stats) -> layer_norm -> gelu.
    let mb = ModuleBuilder::new("t");
    let b = mb.builder("main");
    let x = b.parameter(arr(Bf16, &[2, 4, 4]), "x").unwrap();
    let g = b.parameter(arr(F32, &[4]), "gamma").unwrap();
    let be = b.parameter(arr(F32, &[4]), "beta").unwrap();
    let ids = b.parameter(arr(S32, &[2, 4]), "ids").unwrap();
    let p = b.softmax_f32_stats(x, -1).unwrap();
    let n = b.layer_norm(p, g, be, 1e-12).unwrap();
    let a = b.gelu_tanh(n).unwrap();
    let oh = b.one_hot(ids, 4, Bf16, 1.0, 0.0).unwrap();
    let y = b.mul(a, oh).unwrap();
    let am = b.argmax(y, -1, S32).unwrap();
    assert_eq!(b.shape(am).unwrap(), arr(S32, &[2, 4]));
    let lse = b.logsumexp(y, &[-1]).unwrap();
    let root = b.tuple(&[am, lse]).unwrap();
    let c = b.finish(root).unwrap();
    let m = mb.build(c).unwrap();
    let proto = to_proto(&m).unwrap();
    assert!(proto.computations.len() >= 2);
}

#[test]
fn add_batch_broadcast_shapes_and_errors() {
    lower_one(
        arr(F32, &[4, 3, 2]),
        |b, x| {
            let y = b.full(&hlo::ArrayShape::new(F32, vec![3, 2]), 0.5)?;
            b.add_batch_broadcast(x, y)
        },
        arr(F32, &[4, 3, 2]),
    );
    let with_y = |y_ty: ElementType, y_dims: Vec<i64>| {
        move |b: &Builder, x: Value| {
            let y = b.full(&hlo::ArrayShape::new(y_ty, y_dims), 1.0)?;
            b.add_batch_broadcast(x, y)
        }
    };
    // y's dims must be x's after the first; the types must match and be float
    assert_op(
        &error_of(arr(F32, &[4, 3, 2]), with_y(F32, vec![2, 3])),
        "add_batch_broadcast",
    );
    assert_op(
        &error_of(arr(F32, &[4]), with_y(F32, vec![])),
        "add_batch_broadcast",
    );
    assert_op(
        &error_of(arr(F32, &[4, 3]), with_y(Bf16, vec![3])),
        "add_batch_broadcast",
    );
    assert_op(
        &error_of(arr(S32, &[4, 3]), with_y(S32, vec![3])),
        "add_batch_broadcast",
    );
}

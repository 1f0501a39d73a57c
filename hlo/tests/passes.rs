//! The passes on small modules: what each leaves (counts and ops), idempotence, folded values
//! against values computed here in the target type, and the verifier on hand-broken modules.
use half::{bf16, f16};
use hlo::ir::{
    Alias, BinaryOp, CompId, Computation, InstrId, Instruction, Op, RngAlgorithm, Sharding,
};
use hlo::passes::{cse, dce, run_pipeline, run_pipeline_with_stats, simplify, verify};
use hlo::shape::ArrayShape;
use hlo::ElementType::{Pred, F32, S32, U32, U64};
use hlo::{Builder, HloError, Literal, Module, ModuleBuilder, Result, Shape, Value};

/// Builds a module whose entry `main` is written by `f`.
fn module(f: impl FnOnce(&ModuleBuilder, Builder) -> Result<Value>) -> Module {
    let m = ModuleBuilder::new("t");
    let b = m.builder("main");
    let root = f(&m, b).unwrap();
    let e = b.finish(root).unwrap();
    m.build(e).unwrap()
}

fn entry(m: &Module) -> &Computation {
    m.entry_computation()
}

fn opcodes(m: &Module) -> Vec<&'static str> {
    entry(m).instrs.iter().map(|i| i.op.opcode()).collect()
}

fn root(m: &Module) -> &Instruction {
    let c = entry(m);
    c.instr(c.root)
}

fn root_literal(m: &Module) -> &Literal {
    match &root(m).op {
        Op::Constant(l) => l,
        op => panic!("root is {op:?}, not a constant:\n{m}"),
    }
}

fn f32s(n: usize) -> Vec<f32> {
    // A small LCG: reproducible, never zero, mixed signs and magnitudes.
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            (u - 0.37) * 13.0 + 0.01
        })
        .collect()
}

fn is_verify_err(r: Result<()>, needle: &str) {
    match r {
        Err(HloError::Verify(msg)) => assert!(msg.contains(needle), "message: {msg}"),
        other => panic!("expected a verifier error naming '{needle}', got {other:?}"),
    }
}

// ---------------------------------------------------------------- DCE

#[test]
fn dce_removes_dead_code_keeps_parameters_and_side_effects() {
    let m = module(|_, b| {
        let x = b.parameter(Shape::array(F32, vec![3]), "x")?;
        let _unused = b.parameter(Shape::array(F32, vec![3]), "unused")?;
        let _dead = b.exp(b.sqrt(x)?)?;
        let s = Shape::Tuple(vec![]);
        b.custom_call("log_it", &[x], s.clone(), "", None, true, 1)?;
        b.custom_call("pure", &[x], s, "", None, false, 1)?;
        b.neg(x)
    });
    assert_eq!(m.instruction_count(), 7);
    let d = dce(&m).unwrap();
    assert_eq!(
        opcodes(&d),
        ["parameter", "parameter", "custom-call", "negate"]
    );
    assert_eq!(entry(&d).param_names(), ["x", "unused"]);
    assert_eq!(d.param_shapes(), m.param_shapes());
    assert_eq!(dce(&d).unwrap(), d, "idempotent");
}

#[test]
fn dce_drops_computations_only_dead_code_called() -> Result<()> {
    let m = ModuleBuilder::new("t");
    let sq = m.builder("square");
    let p = sq.parameter(Shape::scalar(F32), "p")?;
    let square = sq.finish(sq.mul(p, p)?)?;
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![4]), "x")?;
    let _dead_sum = b.reduce_sum(x, &[0])?;
    let live_max = b.reduce_max(x, &[0])?;
    let out = b.call(square, &[live_max])?;
    let e = b.finish(out)?;
    let m = m.build(e)?;
    let names =
        |m: &Module| -> Vec<String> { m.computations.iter().map(|c| c.name.clone()).collect() };
    assert_eq!(names(&m), ["square", "add_f32", "maximum_f32", "main"]);
    let d = dce(&m)?;
    assert_eq!(names(&d), ["square", "maximum_f32", "main"]);
    assert_eq!(d.entry, CompId(2));
    // Callees were renumbered with the computations.
    let called: Vec<CompId> = entry(&d)
        .instrs
        .iter()
        .flat_map(|i| i.op.called_computations())
        .collect();
    assert_eq!(called, [CompId(1), CompId(0)]);
    assert_eq!(dce(&d)?, d);
    Ok(())
}

#[test]
fn dce_keeps_unused_calls_that_have_side_effects() -> Result<()> {
    let m = ModuleBuilder::new("t");
    let f = Shape::array(F32, vec![2]);
    let log = m.builder("log");
    let p = log.parameter(f.clone(), "p")?;
    log.custom_call("print", &[p], Shape::Tuple(vec![]), "", None, true, 1)?;
    let log = log.finish(p)?;
    let pure = m.builder("pure");
    let p = pure.parameter(f.clone(), "p")?;
    let pure = pure.finish(pure.exp(p)?)?;
    let b = m.builder("main");
    let x = b.parameter(f, "x")?;
    b.call(log, &[x])?;
    b.call(pure, &[x])?;
    let e = b.finish(b.neg(x)?)?;
    let d = dce(&m.build(e)?)?;
    assert_eq!(opcodes(&d), ["parameter", "call", "negate"]);
    assert_eq!(d.computations.len(), 2, "the pure callee is dropped");
    assert_eq!(d.computations[0].name, "log");
    Ok(())
}

// ---------------------------------------------------------------- CSE

#[test]
fn cse_merges_equal_instructions_and_commuted_operands() -> Result<()> {
    let m = module(|_, b| {
        let x = b.parameter(Shape::array(F32, vec![2]), "x")?;
        let y = b.parameter(Shape::array(F32, vec![2]), "y")?;
        let a1 = b.add(x, y)?;
        let a2 = b.add(y, x)?; // commutative: same value
        let s1 = b.sub(x, y)?;
        let s2 = b.sub(y, x)?; // not commutative: different
        let e1 = b.exp(a1)?;
        let e2 = b.exp(a2)?; // equal once a1 and a2 merged
        let c1 = b.scalar(2.0f32)?;
        let c2 = b.scalar(2.0f32)?;
        let c3 = b.scalar(-2.0f32)?;
        b.tuple(&[e1, e2, s1, s2, c1, c2, c3])
    });
    let c = cse(&m)?;
    assert_eq!(
        opcodes(&c),
        [
            "parameter",
            "parameter",
            "add",
            "subtract",
            "subtract",
            "exponential",
            "constant",
            "constant",
            "tuple"
        ]
    );
    let t = root(&c);
    assert_eq!(t.operands[0], t.operands[1], "exp(x+y) and exp(y+x) merged");
    assert_ne!(t.operands[2], t.operands[3]);
    assert_eq!(t.operands[4], t.operands[5]);
    assert_ne!(t.operands[4], t.operands[6]);
    assert_eq!(cse(&c)?, c, "idempotent");
    Ok(())
}

#[test]
fn cse_keeps_collectives_rng_side_effects_and_distinct_shardings() -> Result<()> {
    let m = ModuleBuilder::new("t");
    // A computation with a collective inside: calls to it are not merged either.
    let inner = m.builder("inner");
    let p = inner.parameter(Shape::array(F32, vec![2]), "p")?;
    let ar = inner.all_reduce_sum(p, &[])?;
    let inner = inner.finish(ar)?;
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![2]), "x")?;
    let key = b.parameter(Shape::array(U64, vec![2]), "key")?;
    let r1 = b.all_reduce_sum(x, &[])?;
    let r2 = b.all_reduce_sum(x, &[])?;
    let bits = ArrayShape::new(U32, vec![2]);
    let g1 = b.rng_bit_generator(RngAlgorithm::ThreeFry, key, &bits)?;
    let g2 = b.rng_bit_generator(RngAlgorithm::ThreeFry, key, &bits)?;
    let f = Shape::array(F32, vec![2]);
    let e1 = b.custom_call("effect", &[x], f.clone(), "", None, true, 1)?;
    let e2 = b.custom_call("effect", &[x], f.clone(), "", None, true, 1)?;
    let p1 = b.custom_call("pure", &[x], f.clone(), "", None, false, 1)?;
    let p2 = b.custom_call("pure", &[x], f, "", None, false, 1)?;
    let n1 = b.neg(x)?;
    let n2 = b.neg(x)?;
    b.set_sharding(n2, Sharding::Replicated)?;
    let k1 = b.call(inner, &[x])?;
    let k2 = b.call(inner, &[x])?;
    let out = b.tuple(&[r1, r2, g1, g2, e1, e2, p1, p2, n1, n2, k1, k2])?;
    let e = b.finish(out)?;
    let m = m.build(e)?;
    let c = cse(&m)?;
    let t = root(&c);
    let distinct = |i: usize, j: usize| t.operands[i] != t.operands[j];
    assert!(distinct(0, 1), "all-reduces merged");
    assert!(distinct(2, 3), "rng-bit-generators merged");
    assert!(distinct(4, 5), "side-effecting custom calls merged");
    assert!(!distinct(6, 7), "pure custom calls not merged");
    assert!(distinct(8, 9), "different shardings merged");
    assert!(
        distinct(10, 11),
        "calls into a computation with a collective merged"
    );
    assert_eq!(c.instruction_count(), m.instruction_count() - 1);
    Ok(())
}

// ---------------------------------------------------------------- simplify

#[test]
fn simplify_removes_identities() -> Result<()> {
    type Case = fn(Builder, Value, Value, Value) -> Result<Value>;
    let cases: [(&str, Case); 6] = [
        ("x+0", |b, x, z, _| b.add(x, z)),
        ("0+x", |b, x, z, _| b.add(z, x)),
        ("x-0", |b, x, z, _| b.sub(x, z)),
        ("x*1", |b, x, _, o| b.mul(x, o)),
        ("1*x", |b, x, _, o| b.mul(o, x)),
        ("x/1", |b, x, _, o| b.div(x, o)),
    ];
    for (name, case) in cases {
        for ty in [F32, S32] {
            let m = module(|_, b| {
                let x = b.parameter(Shape::array(ty, vec![2, 2]), "x")?;
                let zero = b.zeros_like(x)?; // broadcast of a scalar 0
                let one = b.constant(match ty {
                    F32 => Literal::from_slice(&[1.0f32; 4], &[2, 2])?, // an array of ones
                    _ => Literal::from_slice(&[1i32; 4], &[2, 2])?,
                })?;
                let y = case(b, x, zero, one)?;
                b.neg(y)
            });
            let s = simplify(&m)?;
            assert_eq!(opcodes(&s), ["parameter", "negate"], "{name} on {ty}");
            assert_eq!(root(&s).operands, [InstrId(0)], "{name} on {ty}");
            assert_eq!(simplify(&s)?, s, "{name}: idempotent");
        }
    }
    Ok(())
}

#[test]
fn simplify_never_folds_float_times_zero() -> Result<()> {
    let build = |ty| {
        module(|_, b| {
            let x = b.parameter(Shape::array(ty, vec![3]), "x")?;
            b.mul(x, b.zeros_like(x)?)
        })
    };
    let f = simplify(&build(F32))?;
    assert_eq!(root(&f).op, Op::Binary(BinaryOp::Mul), "inf * 0 is NaN");
    let i = simplify(&build(S32))?;
    assert_eq!(opcodes(&i), ["parameter", "constant", "broadcast"]);
    Ok(())
}

#[test]
fn simplify_negate_reshape_and_identity_ops() -> Result<()> {
    let m = module(|_, b| {
        let x = b.parameter(Shape::array(F32, vec![2, 3]), "x")?;
        let nn = b.neg(b.neg(x)?)?;
        let r = b.reshape(b.reshape(nn, &[3, 2])?, &[6])?;
        let back = b.reshape(b.reshape(x, &[6])?, &[2, 3])?;
        b.tuple(&[r, back])
    });
    let s = simplify(&m)?;
    assert_eq!(opcodes(&s), ["parameter", "reshape", "tuple"]);
    let t = root(&s);
    assert_eq!(entry(&s).instr(t.operands[0]).operands, [InstrId(0)]);
    assert_eq!(t.operands[1], InstrId(0), "reshape there and back is x");
    assert_eq!(simplify(&s)?, s);

    // The builder never emits identity transpose/convert/broadcast; write them by hand.
    let mut m = module(|_, b| {
        let x = b.parameter(Shape::array(F32, vec![2, 3]), "x")?;
        b.exp(x)
    });
    let shape = Shape::array(F32, vec![2, 3]);
    let c = &mut m.computations[0];
    for op in [
        Op::Transpose { perm: vec![0, 1] },
        Op::Convert,
        Op::Broadcast { dims: vec![0, 1] },
    ] {
        let prev = c.root;
        c.instrs.push(Instruction {
            op,
            operands: vec![prev],
            shape: shape.clone(),
            sharding: None,
            scope: None,
        });
        c.root = InstrId(c.instrs.len() as u32 - 1);
    }
    verify(&m)?;
    let s = simplify(&m)?;
    assert_eq!(opcodes(&s), ["parameter", "exponential"]);
    Ok(())
}

#[test]
fn simplify_leaves_sharded_instructions() -> Result<()> {
    let m = module(|_, b| {
        let x = b.parameter(Shape::array(F32, vec![4]), "x")?;
        let n = b.neg(b.neg(x)?)?;
        b.set_sharding(n, Sharding::split(1, 0, 2))?;
        Ok(n)
    });
    let s = simplify(&m)?;
    assert_eq!(opcodes(&s), ["parameter", "negate", "negate"]);
    Ok(())
}

#[test]
fn simplify_folds_f32_scalars_like_f32_arithmetic() -> Result<()> {
    let v = f32s(24);
    for w in v.chunks(4) {
        let (a, b_, c, d) = (w[0], w[1], w[2], w[3]);
        let m = module(|_, b| {
            let s = |x: f32| b.scalar(x);
            let t = b.mul(b.add(s(a)?, s(b_)?)?, s(c)?)?;
            let u = b.div(b.sub(t, s(d)?)?, b.sqrt(b.abs(s(a)?)?)?)?;
            let r = b.max(b.neg(u)?, b.floor(s(c)?)?)?;
            b.rem(r, s(d)?)
        });
        let want = ((-((((a + b_) * c) - d) / a.abs().sqrt())).max(c.floor())) % d;
        let s = simplify(&m)?;
        assert_eq!(s.instruction_count(), 1, "{s}");
        assert_eq!(root_literal(&s).to_vec::<f32>().unwrap(), vec![want]);
    }
    Ok(())
}

#[test]
fn simplify_folds_integers_with_wraparound() -> Result<()> {
    let m = module(|_, b| {
        let big = b.scalar(i32::MAX - 5)?;
        let sum = b.add(big, b.scalar(100i32)?)?; // wraps
        let prod = b.mul(sum, b.scalar(-7i32)?)?;
        let q = b.div(prod, b.scalar(3i32)?)?;
        let sh = b.shift_right_arithmetic(q, b.scalar(2i32)?)?;
        let r = b.rem(sh, b.scalar(-13i32)?)?;
        b.xor(r, b.scalar(0x55i32)?)
    });
    let sum = (i32::MAX - 5).wrapping_add(100);
    let want = ((((sum.wrapping_mul(-7)) / 3) >> 2) % -13) ^ 0x55;
    let s = simplify(&m)?;
    assert_eq!(s.instruction_count(), 1);
    assert_eq!(root_literal(&s).to_vec::<i32>().unwrap(), vec![want]);

    let m = module(|_, b| {
        let x = b.scalar(-100i8)?;
        let y = b.sub(x, b.scalar(100i8)?)?; // -200 wraps to 56
        let z = b.abs(b.neg(y)?)?;
        b.lt(z, b.scalar(60i8)?)
    });
    let want = (-100i8).wrapping_sub(100).wrapping_neg().wrapping_abs() < 60;
    let s = simplify(&m)?;
    assert_eq!(root_literal(&s).to_vec::<bool>().unwrap(), vec![want]);
    Ok(())
}

#[test]
fn simplify_skips_what_it_cannot_compute_exactly() -> Result<()> {
    let cases: Vec<(&str, Module)> = vec![
        ("exp", module(|_, b| b.exp(b.scalar(1.0f32)?))),
        (
            "pow",
            module(|_, b| b.pow(b.scalar(2.0f32)?, b.scalar(0.5f32)?)),
        ),
        (
            "tanh bf16",
            module(|_, b| b.tanh(b.scalar(bf16::from_f32(0.5))?)),
        ),
        (
            "int / 0",
            module(|_, b| b.div(b.scalar(7i32)?, b.scalar(0i32)?)),
        ),
        (
            "MIN % -1",
            module(|_, b| b.rem(b.scalar(i8::MIN)?, b.scalar(-1i8)?)),
        ),
        (
            "inexact f16 sum",
            module(|_, b| {
                b.add(
                    b.scalar(f16::from_f32(1.0))?,
                    b.scalar(f16::from_f32(1e-3))?,
                )
            }),
        ),
        (
            "subnormal f32",
            module(|_, b| b.mul(b.scalar(1e-20f32)?, b.scalar(1e-20f32)?)),
        ),
    ];
    for (name, m) in cases {
        let s = simplify(&m)?;
        assert_eq!(s, m, "{name} was folded");
    }
    // An exact f16 result is folded.
    let m = module(|_, b| {
        b.add(
            b.scalar(f16::from_f32(1.5))?,
            b.scalar(f16::from_f32(0.25))?,
        )
    });
    let s = simplify(&m)?;
    assert_eq!(
        root_literal(&s).to_vec::<f16>().unwrap(),
        vec![f16::from_f32(1.75)]
    );
    Ok(())
}

#[test]
fn simplify_then_fold_chains_and_is_idempotent() -> Result<()> {
    let m = module(|_, b| {
        let x = b.parameter(Shape::array(F32, vec![4]), "x")?;
        let two = b.add(b.scalar(1.0f32)?, b.scalar(1.0f32)?)?;
        let one = b.sub(two, b.scalar(1.0f32)?)?; // folds to 1, then x * 1 = x
        let y = b.mul(x, one)?;
        let z = b.add(b.neg(b.neg(y)?)?, b.zeros_like(y)?)?;
        b.tanh(z)
    });
    let s = simplify(&m)?;
    assert_eq!(opcodes(&s), ["parameter", "tanh"]);
    assert_eq!(simplify(&s)?, s);
    Ok(())
}

// ---------------------------------------------------------------- pipeline

#[test]
fn pipeline_runs_simplify_cse_dce_with_counts() -> Result<()> {
    let m = module(|_, b| {
        let x = b.parameter(Shape::array(F32, vec![2]), "x")?;
        let a = b.exp(b.mul(x, b.scalar(1.0f32)?)?)?;
        let c = b.exp(x)?;
        let _dead = b.log(x)?;
        b.add(a, c)
    });
    let (p, stats) = run_pipeline_with_stats(&m)?;
    assert_eq!(opcodes(&p), ["parameter", "exponential", "add"]);
    let add = root(&p);
    assert_eq!(add.operands[0], add.operands[1]);
    let passes: Vec<_> = stats.iter().map(|s| (s.pass, s.before, s.after)).collect();
    assert_eq!(passes, [("simplify", 8, 4), ("cse", 4, 3), ("dce", 3, 3)]);
    assert_eq!(run_pipeline(&p)?, p, "idempotent");
    Ok(())
}

// ---------------------------------------------------------------- verifier

fn small() -> Module {
    module(|_, b| {
        let x = b.parameter(Shape::array(F32, vec![2]), "x")?;
        let t = b.tuple(&[x, x])?;
        let g = b.get_tuple_element(t, 1)?;
        b.tuple(&[b.exp(g)?, x])
    })
}

#[test]
fn verify_rejects_use_before_def() {
    let mut m = small();
    m.computations[0].instrs[1].operands[0] = InstrId(3);
    is_verify_err(verify(&m), "not defined before it");
}

#[test]
fn verify_rejects_bad_tuple_index() {
    let mut m = small();
    m.computations[0].instrs[2].op = Op::GetTupleElement { index: 5 };
    is_verify_err(verify(&m), "get-tuple-element 5 does not match");
}

#[test]
fn verify_rejects_callee_after_caller() {
    let mut m = module(|_, b| {
        let x = b.parameter(Shape::array(F32, vec![2]), "x")?;
        b.reduce_sum(x, &[0])
    });
    m.computations.swap(0, 1);
    m.entry = CompId(0);
    is_verify_err(verify(&m), "calls comp0, which is not defined before it");
}

#[test]
fn verify_rejects_bad_aliases() {
    let mut m = small();
    m.alias_output_to_param(1, 0);
    verify(&m).unwrap();
    m.alias_output_to_param(0, 3);
    is_verify_err(verify(&m), "alias names parameter 3");
    let mut m = small();
    m.aliases.push(Alias {
        output_index: vec![7],
        param_number: 0,
        param_index: vec![],
        must_alias: false,
    });
    is_verify_err(verify(&m), "index out of range");
}

#[test]
fn verify_rejects_wrong_operand_counts_and_shapes() {
    let mut m = small();
    let exp = &mut m.computations[0].instrs[3];
    exp.operands.push(InstrId(0));
    is_verify_err(
        verify(&m),
        "exponential): has 2 operands, expected 1 operand",
    );

    let mut m = small();
    let c = &mut m.computations[0];
    c.instrs[3].op = Op::Binary(BinaryOp::Add);
    c.instrs[3].operands = vec![InstrId(0), InstrId(1)];
    is_verify_err(verify(&m), "operand 1 is (f32[2], f32[2]), not an array");

    let mut m = small();
    let c = &mut m.computations[0];
    c.instrs[3].shape = Shape::array(S32, vec![2]);
    c.instrs[4].shape = Shape::Tuple(vec![Shape::array(S32, vec![2]), Shape::array(F32, vec![2])]);
    is_verify_err(verify(&m), "operand is f32[2] but the result is s32[2]");
}

#[test]
fn verify_rejects_bad_called_signatures() {
    let mut m = module(|_, b| {
        let x = b.parameter(Shape::array(F32, vec![2]), "x")?;
        b.reduce_sum(x, &[0])
    });
    // Make the reducer return pred.
    let r = &mut m.computations[0];
    r.instrs.push(Instruction {
        op: Op::Compare {
            dir: hlo::ir::CompareDir::Lt,
            ty: hlo::ir::CompareType::Float,
        },
        operands: vec![InstrId(0), InstrId(1)],
        shape: Shape::scalar(Pred),
        sharding: None,
        scope: None,
    });
    r.root = InstrId(3);
    is_verify_err(
        verify(&m),
        "to_apply 'add_f32' has signature (f32[], f32[]) -> pred[], expected (f32[], f32[]) -> f32[]",
    );
}

#[test]
fn passes_refuse_broken_input() {
    let mut m = small();
    m.computations[0].root = InstrId(42);
    for pass in [dce, cse, simplify] {
        assert!(matches!(pass(&m), Err(HloError::Verify(_))));
    }
}

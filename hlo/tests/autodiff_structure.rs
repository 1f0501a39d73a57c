//! The shape of what autodiff builds (no plugin needed): gradients not asked for are never built,
//! forward values are reused rather than recomputed, stop_gradient and integer values block
//! the gradient, custom calls go through registered rules, and ops without a rule fail with
//! an error naming them.
use hlo::autodiff::{grad_computation, VjpArgs};
use hlo::ir::{BinaryOp, Op};
use hlo::passes::dce;
use hlo::ElementType::{Bf16, F16, F32, S32};
use hlo::{Builder, HloError, Module, ModuleBuilder, Result, Shape, Value};
use std::sync::{Arc, Mutex};

/// Builds `main(params)` whose root is the tuple `f` returns.
fn build(params: &[Shape], f: impl FnOnce(&Builder, &[Value]) -> Result<Vec<Value>>) -> Module {
    try_build(params, f).unwrap()
}

fn try_build(
    params: &[Shape],
    f: impl FnOnce(&Builder, &[Value]) -> Result<Vec<Value>>,
) -> Result<Module> {
    let m = ModuleBuilder::new("t");
    let b = m.builder("main");
    let ps = params
        .iter()
        .enumerate()
        .map(|(i, s)| b.parameter(s.clone(), &format!("p{i}")))
        .collect::<Result<Vec<_>>>()?;
    let outs = f(&b, &ps)?;
    let root = b.tuple(&outs)?;
    let e = b.finish(root)?;
    m.build(e)
}

/// How many instructions of the entry computation have `opcode`.
fn count(m: &Module, opcode: &str) -> usize {
    m.entry_computation()
        .instrs
        .iter()
        .filter(|i| i.op.opcode() == opcode)
        .count()
}

fn f32s(dims: &[i64]) -> Shape {
    Shape::array(F32, dims.to_vec())
}

/// The error of a build that must fail.
fn build_err(
    params: &[Shape],
    f: impl FnOnce(&Builder, &[Value]) -> Result<Vec<Value>>,
) -> HloError {
    match try_build(params, f) {
        Err(e) => e,
        Ok(m) => panic!("expected an error, built:\n{m}"),
    }
}

/// A two-layer net: loss = sum(tanh(tanh(x @ w1) @ w2)); x [4,3], w1 [3,5], w2 [5,2].
fn two_layer(which: &[usize]) -> Module {
    build(&[f32s(&[4, 3]), f32s(&[3, 5]), f32s(&[5, 2])], |b, p| {
        let h = b.tanh(b.matmul(p[0], p[1])?)?;
        let y = b.tanh(b.matmul(h, p[2])?)?;
        let loss = b.reduce_sum(y, &[0, 1])?;
        let wrt: Vec<Value> = which.iter().map(|&i| p[i]).collect();
        let mut outs = vec![loss];
        outs.extend(b.grad(loss, &wrt)?);
        Ok(outs)
    })
}

#[test]
fn gradients_not_asked_for_are_never_built() {
    // forward: 2 dots. d/dw2: 1 dot (h^T g). d/dw1: 2 (g w2^T, then x^T .). d/dx: 1 more.
    for (wrt, dots) in [
        (vec![], 2),
        (vec![2], 3),
        (vec![1], 4),
        (vec![1, 2], 5),
        (vec![0, 1, 2], 6),
    ] {
        let m = two_layer(&wrt);
        // counted as built, before any DCE: the transform never emitted the others
        assert_eq!(count(&m, "dot"), dots, "wrt {wrt:?}: dots as built");
        assert_eq!(
            count(&dce(&m).unwrap(), "dot"),
            dots,
            "wrt {wrt:?}: after DCE"
        );
    }
    let sizes: Vec<usize> = [vec![2], vec![1, 2], vec![0, 1, 2]]
        .iter()
        .map(|w| dce(&two_layer(w)).unwrap().instruction_count())
        .collect();
    assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");
}

#[test]
fn builds_nothing_dead() {
    // Everything the transform emits is used by the gradient (or is a forward value).
    let m = two_layer(&[0, 1, 2]);
    let live = dce(&m).unwrap();
    let dead = m.instruction_count() - live.instruction_count();
    assert!(dead <= 2, "{dead} dead instructions:\n{m}");
}

#[test]
fn forward_values_are_reused_not_recomputed() {
    let forward_ops = [
        "exponential",
        "tanh",
        "logistic",
        "sqrt",
        "rsqrt",
        "log",
        "dot",
        "reduce",
    ];
    let f = |b: &Builder, p: &[Value]| -> Result<Value> {
        let e = b.exp(p[0])?;
        let t = b.tanh(p[0])?;
        let s = b.logistic(b.mul(e, t)?)?;
        let r = b.rsqrt(b.add(b.sqrt(b.mul(s, s)?)?, b.scalar(1.0f32)?)?)?;
        let d = b.matmul(r, p[1])?;
        b.reduce_sum(d, &[0, 1])
    };
    let shapes = [f32s(&[2, 3]), f32s(&[3, 2])];
    let fwd = build(&shapes, |b, p| Ok(vec![f(b, p)?]));
    let with_grad = build(&shapes, |b, p| {
        let loss = f(b, p)?;
        let mut outs = vec![loss];
        outs.extend(b.grad(loss, &[p[0], p[1]])?);
        Ok(outs)
    });
    for op in forward_ops {
        let extra = match op {
            "dot" => 2,    // d/dr and d/dw
            "reduce" => 0, // the sum's rule is a broadcast
            _ => 0,
        };
        assert_eq!(
            count(&with_grad, op),
            count(&fwd, op) + extra,
            "{op}: the backward must reuse the forward result"
        );
    }
    // The forward instructions are untouched, in place, and the backward comes after them.
    let n = fwd.entry_computation().instrs.len() - 1; // without fwd's root tuple
    assert_eq!(
        fwd.entry_computation().instrs[..n],
        with_grad.entry_computation().instrs[..n]
    );
}

#[test]
fn stop_gradient_blocks_the_gradient() {
    // d/dx sum(stop(x) * x) = stop(x): one multiply by the stopped value, not two.
    let m = build(&[f32s(&[3])], |b, p| {
        let s = b.stop_gradient(p[0])?;
        let loss = b.reduce_sum(b.mul(s, p[0])?, &[0])?;
        Ok(vec![loss, b.grad(loss, &[p[0]])?[0]])
    });
    let m = dce(&m).unwrap();
    assert_eq!(count(&m, "copy"), 1, "stop_gradient is a copy:\n{m}");
    assert_eq!(
        count(&m, "multiply"),
        2,
        "forward s*x and backward g*s:\n{m}"
    );
    // Everything behind a stop_gradient: the gradient is a constant zero.
    let m = build(&[f32s(&[3])], |b, p| {
        let s = b.stop_gradient(b.exp(p[0])?)?;
        let loss = b.reduce_sum(s, &[0])?;
        b.grad(loss, &[p[0]])
    });
    let m = dce(&m).unwrap();
    let c = m.entry_computation();
    let g = c.instr(c.instr(c.root).operands[0]);
    let Op::Broadcast { .. } = g.op else {
        panic!("gradient should be broadcast zeros:\n{m}")
    };
    match &c.instr(g.operands[0]).op {
        Op::Constant(l) => assert!(l.is_all(0.0)),
        op => panic!("expected a zero constant, got {op:?}"),
    }
}

#[test]
fn integer_values_carry_no_gradient() {
    // take(w, ids): the ids get zeros of their own type; w gets one scatter-add.
    let m = build(&[f32s(&[10, 4]), Shape::array(S32, vec![3])], |b, p| {
        let e = b.take(p[0], p[1], 0)?;
        let ids_f = b.convert(p[1], F32)?; // an integer -> float path carries nothing either
        let y = b.mul(e, b.broadcast_in_dim(ids_f, &[3, 4], &[0])?)?;
        let loss = b.reduce_sum(y, &[0, 1])?;
        b.grad(loss, &[p[0], p[1]])
    });
    assert_eq!(count(&m, "scatter"), 1);
    let root = m.entry_computation().root_shape();
    assert_eq!(
        root,
        &Shape::Tuple(vec![f32s(&[10, 4]), Shape::array(S32, vec![3])])
    );
    // an argmax's index output (a variadic reduce) is fine to use: nothing flows into it
    let m = build(&[f32s(&[3, 5])], |b, p| {
        let i = b.argmax(p[0], 1, S32)?;
        let w = b.convert(i, F32)?;
        let loss = b.reduce_sum(b.mul(b.reduce_max(p[0], &[1])?, w)?, &[0])?;
        Ok(vec![loss, b.grad(loss, &[p[0]])?[0]])
    });
    assert_eq!(count(&dce(&m).unwrap(), "reduce"), 4, "{m}");
}

#[test]
fn missing_rules_name_the_op() {
    let no_rule = |e: HloError, want: &str| match e {
        HloError::NoGradient { op, msg } => {
            assert_eq!(op, want, "{msg}");
            msg
        }
        e => panic!("expected NoGradient for {want}, got {e}"),
    };
    let x = [f32s(&[4])];
    let grad_of = |b: &Builder, x: Value, y: Value| -> Result<Vec<Value>> {
        let loss = b.reduce_sum(y, &[0])?;
        b.grad(loss, &[x])
    };
    let e = build_err(&x, |b, p| grad_of(b, p[0], b.sort_ascending(p[0], 0)?));
    no_rule(e, "sort");
    let e = build_err(&x, |b, p| {
        let c = b.custom_call("my_kernel", &[p[0]], f32s(&[4]), "", None, false, 0)?;
        grad_of(b, p[0], c)
    });
    let msg = no_rule(e, "custom-call");
    assert!(
        msg.contains("my_kernel") && msg.contains("register_vjp"),
        "{msg}"
    );
    let e = build_err(&[Shape::array(F16, vec![4])], |b, p| {
        let y = b.convert(b.bitcast_convert(p[0], Bf16)?, F32)?;
        let loss = b.reduce_sum(y, &[0])?;
        b.grad(loss, &[p[0]])
    });
    no_rule(e, "bitcast-convert");
    let e = build_err(&x, |b, p| {
        let add = b.module().scalar_reducer(BinaryOp::Add, F32)?;
        let zero = b.scalar(0.0f32)?;
        let w = hlo::ir::WindowDim::new(2, 1);
        let y = b.reduce_window(&[p[0]], &[zero], &[w], add)?;
        grad_of(b, p[0], y)
    });
    no_rule(e, "reduce-window");
    let e = build_err(&x, |b, p| {
        let m = b.module();
        let sq = m.builder("sq");
        let a = sq.parameter(f32s(&[4]), "a")?;
        let sqc = sq.finish(sq.mul(a, a)?)?;
        grad_of(b, p[0], b.call(sqc, &[p[0]])?)
    });
    no_rule(e, "call");
    // a product reducer has no rule
    let e = build_err(&x, |b, p| {
        let y = b.reduce_with(p[0], BinaryOp::Mul, 1.0, &[0])?;
        let loss = b.reshape(y, &[])?;
        b.grad(loss, &[p[0]])
    });
    assert!(no_rule(e, "reduce").contains("multiply_f32"));
}

#[test]
fn registered_custom_call_rules_are_used() {
    let m = ModuleBuilder::new("t");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    // "square": d/dx = 2 x g, built from the forward operand.
    m.register_vjp("square", move |b: &Builder, a: &VjpArgs| {
        log.lock().unwrap().push((
            a.target.to_string(),
            a.backend_config.to_string(),
            b.shape(a.cotangent)?,
        ));
        let two_x = b.mul(a.operands[0], b.scalar(2.0f32)?)?;
        Ok(vec![Some(b.mul(two_x, a.cotangent)?)])
    });
    let b = m.builder("main");
    let x = b.parameter(f32s(&[4]), "x").unwrap();
    let y = b
        .custom_call("square", &[x], f32s(&[4]), "cfg", None, false, 0)
        .unwrap();
    let loss = b.reduce_sum(y, &[0]).unwrap();
    let g = b.grad(loss, &[x]).unwrap()[0];
    assert_eq!(b.shape(g).unwrap(), f32s(&[4]));
    let e = b.finish(b.tuple(&[loss, g]).unwrap()).unwrap();
    let module = dce(&m.build(e).unwrap()).unwrap();
    assert_eq!(count(&module, "custom-call"), 1, "the forward call only");
    assert_eq!(count(&module, "multiply"), 2, "2x and 2x*g");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[("square".to_string(), "cfg".to_string(), f32s(&[4]))]
    );

    // a rule returning the wrong shape is caught
    let m = ModuleBuilder::new("t");
    m.register_vjp("sum3", |b: &Builder, a: &VjpArgs| {
        Ok(vec![Some(a.cotangent), None, b.scalar(1.0f32).ok()])
    });
    let b = m.builder("main");
    let x = b.parameter(f32s(&[3]), "x").unwrap();
    let c = b
        .custom_call("sum3", &[x], Shape::scalar(F32), "", None, false, 0)
        .unwrap();
    let err = b.grad(c, &[x]).unwrap_err();
    assert!(
        err.to_string()
            .contains("returned 3 cotangents for 1 operands"),
        "{err}"
    );
}

#[test]
fn argument_errors() {
    let m = ModuleBuilder::new("t");
    let b = m.builder("main");
    let x = b.parameter(f32s(&[3]), "x").unwrap();
    let y = b.exp(x).unwrap();
    let e = b.grad(y, &[x]).unwrap_err();
    assert!(e.to_string().contains("float scalar"), "{e}");
    let wrong = b.parameter(f32s(&[4]), "c").unwrap();
    let e = b.vjp(&[y], &[wrong], &[x]).unwrap_err();
    assert!(e.to_string().contains("cotangent"), "{e}");
    let e = b.vjp(&[y], &[], &[x]).unwrap_err();
    assert!(e.to_string().contains("1 outputs but 0 cotangents"), "{e}");
    // a value of another computation
    let other = m.builder("other");
    let z = other.parameter(f32s(&[3]), "z").unwrap();
    assert!(matches!(
        b.vjp(&[y], &[y], &[z]),
        Err(HloError::ForeignValue { .. })
    ));
    let f = m.builder("f");
    let a = f.parameter(f32s(&[3]), "a").unwrap();
    let fc = f.finish(f.reduce_sum(a, &[0]).unwrap()).unwrap();
    let e = grad_computation(&m, fc, &[1]).unwrap_err();
    assert!(e.to_string().contains("parameter 1 does not exist"), "{e}");
    let e = b.inline(fc, &[y, y]).unwrap_err();
    assert!(e.to_string().contains("inline"), "{e}");
}

#[test]
fn inline_copies_a_computation() {
    let m = ModuleBuilder::new("t");
    let f = m.builder("f");
    let a = f.parameter(f32s(&[3]), "a").unwrap();
    let c = f.parameter(f32s(&[3]), "c").unwrap();
    let fc = f.finish(f.mul(f.exp(a).unwrap(), c).unwrap()).unwrap();
    let b = m.builder("main");
    let x = b.parameter(f32s(&[3]), "x").unwrap();
    let y1 = b.inline(fc, &[x, x]).unwrap();
    let y2 = b.inline(fc, &[y1, x]).unwrap();
    let e = b.finish(y2).unwrap();
    let module = m.build(e).unwrap();
    let entry = module.entry_computation();
    assert_eq!(count(&module, "exponential"), 2);
    assert_eq!(count(&module, "multiply"), 2);
    assert_eq!(entry.params.len(), 1);
    // the second copy reads the first copy's result
    let root = entry.instr(entry.root);
    let exp2 = entry.instr(root.operands[0]);
    assert_eq!(exp2.operands[0], y1.id());
}

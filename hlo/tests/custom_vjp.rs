//! `Builder::custom_vjp` (no plugin needed): autodiff applies the rule at the marked value and
//! never differentiates the ops that computed it, inputs reach the rule as forward values, a
//! rule's cotangent may go to any declared input, its mistakes are errors, and inlining keeps
//! the marks.
use hlo::autodiff::{grad_computation, CustomVjpArgs};
use hlo::passes::dce;
use hlo::ElementType::{F32, U8};
use hlo::{Builder, Module, ModuleBuilder, Result, Shape, Value};
use std::sync::{Arc, Mutex};

fn f32s(dims: &[i64]) -> Shape {
    Shape::array(F32, dims.to_vec())
}

fn count(m: &Module, opcode: &str) -> usize {
    m.entry_computation()
        .instrs
        .iter()
        .filter(|i| i.op.opcode() == opcode)
        .count()
}

/// `y = f32(bitcast(u8(x)))`-like composite: the inner bitcast-convert has no gradient rule,
/// so only a custom rule makes `x` differentiable through it. The rule passes `g` straight
/// through to `x` and sends `sum(g)` to `s`.
fn straight_through(b: &Builder, x: Value, s: Value, log: Arc<Mutex<Vec<usize>>>) -> Result<Value> {
    let inner = b.convert(
        b.bitcast_convert(b.convert(x, hlo::ElementType::S32)?, F32)?,
        F32,
    )?;
    let scaled = b.mul(inner, b.broadcast_in_dim(s, &b.dims(x)?, &[])?)?;
    b.custom_vjp(&[x, s], scaled, move |b: &Builder, a: &CustomVjpArgs| {
        log.lock().unwrap().push(a.inputs.len());
        assert_eq!(b.shape(a.cotangent)?, b.shape(a.output)?);
        let total = b.reduce_sum(a.cotangent, &[0])?;
        Ok(vec![Some(a.cotangent), Some(total)])
    })
}

#[test]
fn the_rule_replaces_the_ops_inside() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let m = ModuleBuilder::new("t");
    let b = m.builder("main");
    let x = b.parameter(f32s(&[4]), "x").unwrap();
    let s = b.parameter(Shape::scalar(F32), "s").unwrap();
    let y = straight_through(&b, x, s, log.clone()).unwrap();
    let loss = b.reduce_sum(b.mul(y, y).unwrap(), &[0]).unwrap();
    let g = b.grad(loss, &[x, s]).unwrap();
    assert_eq!(b.shape(g[0]).unwrap(), f32s(&[4]));
    assert_eq!(b.shape(g[1]).unwrap(), Shape::scalar(F32));
    let e = b.finish(b.tuple(&[loss, g[0], g[1]]).unwrap()).unwrap();
    let module = dce(&m.build(e).unwrap()).unwrap();
    assert_eq!(
        log.lock().unwrap().as_slice(),
        &[2],
        "applied once, both inputs"
    );
    // Forward: the composite's ops plus the marking copy; backward: 2 y g only (no rule ran
    // for the multiply, convert or bitcast-convert inside).
    assert_eq!(count(&module, "bitcast-convert"), 1);
    assert_eq!(count(&module, "copy"), 1);
}

#[test]
fn inputs_off_the_gradient_path_get_nothing() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let m = ModuleBuilder::new("t");
    let b = m.builder("main");
    let x = b.parameter(f32s(&[4]), "x").unwrap();
    let s = b.parameter(Shape::scalar(F32), "s").unwrap();
    let y = straight_through(&b, x, s, log.clone()).unwrap();
    let loss = b.reduce_sum(y, &[0]).unwrap();
    // Only s is asked for: the rule still runs (s is a declared input), x's cotangent is unused.
    let g = b.grad(loss, &[s]).unwrap();
    assert_eq!(b.shape(g[0]).unwrap(), Shape::scalar(F32));
    assert_eq!(log.lock().unwrap().len(), 1);
    // A value used only inside the composite is not a declared input: no gradient reaches it.
    let b2 = m.builder("other");
    let x = b2.parameter(f32s(&[4]), "x").unwrap();
    let w = b2.parameter(f32s(&[4]), "w").unwrap();
    let inner = b2.mul(x, w).unwrap();
    let y = b2
        .custom_vjp(&[x], inner, |_: &Builder, a: &CustomVjpArgs| {
            Ok(vec![Some(a.cotangent)])
        })
        .unwrap();
    let loss = b2.reduce_sum(y, &[0]).unwrap();
    let g = b2.grad(loss, &[w]).unwrap();
    let e = b2.finish(g[0]).unwrap();
    let module = m.build(e).unwrap();
    let root = &module.entry_computation().instrs[module.entry_computation().root.index()];
    assert_eq!(root.op.opcode(), "broadcast", "zeros for w");
}

#[test]
fn rule_mistakes_are_errors() {
    let m = ModuleBuilder::new("t");
    let b = m.builder("main");
    let x = b.parameter(f32s(&[4]), "x").unwrap();
    let y = b
        .custom_vjp(&[x], x, |_: &Builder, a: &CustomVjpArgs| {
            Ok(vec![Some(a.cotangent), None])
        })
        .unwrap();
    let err = b.grad(b.reduce_sum(y, &[0]).unwrap(), &[x]).unwrap_err();
    assert!(
        err.to_string()
            .contains("returned 2 cotangents for 1 inputs"),
        "{err}"
    );
    let y = b
        .custom_vjp(&[x], x, |b: &Builder, _: &CustomVjpArgs| {
            Ok(vec![Some(b.scalar(1.0f32)?)])
        })
        .unwrap();
    let err = b.grad(b.reduce_sum(y, &[0]).unwrap(), &[x]).unwrap_err();
    assert!(err.to_string().contains("input 0"), "{err}");
    // A value of another computation is not an input.
    let other = m.builder("other");
    let z = other.parameter(Shape::array(U8, vec![1]), "z").unwrap();
    assert!(b
        .custom_vjp(&[z], x, |_: &Builder, _: &CustomVjpArgs| Ok(vec![None]))
        .is_err());
}

#[test]
fn inlining_keeps_the_rule() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let m = ModuleBuilder::new("t");
    let f = m.builder("f");
    let x = f.parameter(f32s(&[4]), "x").unwrap();
    let s = f.parameter(Shape::scalar(F32), "s").unwrap();
    let y = straight_through(&f, x, s, log.clone()).unwrap();
    let fc = f.finish(f.reduce_sum(y, &[0]).unwrap()).unwrap();
    let gc = grad_computation(&m, fc, &[0, 1]).unwrap();
    assert_eq!(log.lock().unwrap().as_slice(), &[2]);
    let (_, result) = m.signature(gc).unwrap();
    assert_eq!(
        result,
        Shape::Tuple(vec![Shape::scalar(F32), f32s(&[4]), Shape::scalar(F32)])
    );
}

//! Builder name scopes: nesting and closing, what each instruction records, and how lowering
//! (`OpMetadata.op_name`), the text printer, autodiff, inlining and the passes treat them.
use hlo::autodiff::grad_computation;
use hlo::passes::{cse, dce, simplify};
use hlo::proto::HloModuleProto;
use hlo::ElementType::F32;
use hlo::{Module, ModuleBuilder, Result, Shape};

/// Op names of the entry computation's lowered instructions with `opcode`.
fn op_names(p: &HloModuleProto, opcode: &str) -> Vec<String> {
    let entry = p
        .computations
        .iter()
        .find(|c| c.id == p.entry_computation_id)
        .unwrap();
    entry
        .instructions
        .iter()
        .filter(|i| i.opcode == opcode)
        .map(|i| {
            i.metadata
                .as_ref()
                .map(|m| m.op_name.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// `main(x: f32[2,3], w: f32[3,4]) = reduce_sum(tanh(x . w))` with the dot and tanh in
/// `encoder/layer_0/attention`, the reduce in `encoder`, and the tuple outside any scope.
fn scoped_module() -> Result<Module> {
    let m = ModuleBuilder::new("s");
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![2, 3]), "x")?;
    let w = b.parameter(Shape::array(F32, vec![3, 4]), "w")?;
    let s = {
        let _encoder = b.scope("encoder");
        let y = b.with_scope("layer_0", |b| -> Result<_> {
            let _attention = b.scope("attention");
            b.tanh(b.matmul(x, w)?)
        })?;
        b.reduce_sum(y, &[0, 1])?
    };
    let t = b.tuple(&[s])?;
    let e = b.finish(t)?;
    m.build(e)
}

#[test]
fn scopes_nest_and_close() -> Result<()> {
    let m = ModuleBuilder::new("s");
    let b = m.builder("main");
    assert_eq!(m.current_scope(), None);
    let outer = b.scope("encoder");
    let inner = b.scope("layer_3");
    assert_eq!(m.current_scope().as_deref(), Some("encoder/layer_3"));
    b.with_scope("attention", |_| {
        assert_eq!(
            m.current_scope().as_deref(),
            Some("encoder/layer_3/attention")
        )
    });
    assert_eq!(m.current_scope().as_deref(), Some("encoder/layer_3"));
    // Closing an outer scope first closes the inner one with it.
    drop(outer);
    assert_eq!(m.current_scope(), None);
    drop(inner);
    assert_eq!(m.current_scope(), None);
    Ok(())
}

#[test]
fn lowering_writes_scope_and_opcode_to_op_name() -> Result<()> {
    let module = scoped_module()?;
    let p = hlo::lower::to_proto(&module)?;
    assert_eq!(op_names(&p, "dot"), ["encoder/layer_0/attention/dot"]);
    assert_eq!(op_names(&p, "tanh"), ["encoder/layer_0/attention/tanh"]);
    assert_eq!(op_names(&p, "reduce"), ["encoder/reduce"]);
    // Outside any scope: no metadata at all.
    assert_eq!(op_names(&p, "parameter"), ["", ""]);
    assert_eq!(op_names(&p, "tuple"), [""]);
    // The shared reducer belongs to no scope although it was built inside one.
    let reducer = &p.computations[0];
    assert!(reducer.instructions.iter().all(|i| i.metadata.is_none()));
    Ok(())
}

#[test]
fn text_prints_metadata_as_xla_does() -> Result<()> {
    let t = hlo::text::to_text(&scoped_module()?);
    assert!(
        t.contains(", metadata={op_name=\"encoder/layer_0/attention/dot\"}"),
        "{t}"
    );
    assert!(!t.contains("op_name=\"tuple"), "{t}");
    Ok(())
}

#[test]
fn backward_ops_are_named_after_their_forward_scope() -> Result<()> {
    let m = ModuleBuilder::new("g");
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![2, 3]), "x")?;
    let w = b.parameter(Shape::array(F32, vec![3, 4]), "w")?;
    let y = b.with_scope("encoder", |b| b.matmul(x, w))?;
    let loss = b.reduce_sum(y, &[0, 1])?;
    let g = b.grad(loss, &[w])?;
    let e = b.finish(b.tuple(&[loss, g[0]])?)?;
    let module = m.build(e)?;
    let p = hlo::lower::to_proto(&module)?;
    let dots = op_names(&p, "dot");
    assert_eq!(dots, ["encoder/dot", "grad/encoder/dot"], "{dots:?}");
    // The reduce's backward (a broadcast of the cotangent) is under `grad` alone.
    assert!(op_names(&p, "broadcast").contains(&"grad/broadcast".to_string()));
    Ok(())
}

#[test]
fn inlining_keeps_the_callee_scopes() -> Result<()> {
    let m = ModuleBuilder::new("i");
    let f = m.builder("f");
    let x = f.parameter(Shape::array(F32, vec![3]), "x")?;
    let e = f.with_scope("body", |f| f.exp(x))?;
    let loss = f.reduce_sum(f.mul(e, x)?, &[0])?;
    let fc = f.finish(loss)?;
    let gc = {
        let _outer = m.scope("outer");
        grad_computation(&m, fc, &[0])?
    };
    let module = m.build(gc)?;
    let p = hlo::lower::to_proto(&module)?;
    let g = p
        .computations
        .iter()
        .find(|c| c.id == p.entry_computation_id)
        .unwrap();
    let names: Vec<&str> = g
        .instructions
        .iter()
        .filter_map(|i| i.metadata.as_ref().map(|m| m.op_name.as_str()))
        .collect();
    assert!(names.contains(&"body/exponential"), "{names:?}");
    assert!(names.contains(&"outer/multiply"), "{names:?}");
    assert!(names.contains(&"grad/body/multiply"), "{names:?}");
    Ok(())
}

#[test]
fn passes_keep_scopes() -> Result<()> {
    let module = simplify(&cse(&dce(&scoped_module()?)?)?)?;
    let p = hlo::lower::to_proto(&module)?;
    assert_eq!(op_names(&p, "dot"), ["encoder/layer_0/attention/dot"]);
    Ok(())
}

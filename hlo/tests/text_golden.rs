//! The HLO text printer against reviewed files in tests/golden/ (checked by hand against XLA's
//! printer: XLA's parser reads each file and prints back the same instruction lines).
//! `UPDATE_GOLDEN=1 cargo test -p hlo --test text_golden` rewrites them; review the diff.
use hlo::ir::{CompareDir, CompareType, DotDims, Op, PadDim, Precision, Sharding, WindowDim};
use hlo::shape::ArrayShape;
use hlo::text::to_text;
use hlo::ElementType::{F32, S32};
use hlo::{Module, ModuleBuilder, Result, Shape};
use std::path::PathBuf;

fn check(name: &str, m: &Module) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.hlo"));
    let text = to_text(m);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if text != want {
        panic!(
            "{name}: printed text differs from {}\n--- got:\n{text}\n--- want:\n{want}",
            path.display()
        );
    }
    assert_eq!(m.to_string(), text, "Display and to_text agree");
}

#[test]
fn mlp_layer() -> Result<()> {
    let m = ModuleBuilder::new("mlp");
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![2, 3]), "x")?;
    let w = b.parameter(Shape::array(F32, vec![3, 4]), "w")?;
    let bias = b.parameter(Shape::array(F32, vec![4]), "b")?;
    let y = b.add(b.matmul(x, w)?, b.broadcast_in_dim(bias, &[2, 4], &[1])?)?;
    let out = b.mul(b.tanh(y)?, b.scalar(0.5f32)?)?;
    let e = b.finish(out)?;
    check("mlp", &m.build(e)?);
    Ok(())
}

#[test]
fn reduce_with_reducers() -> Result<()> {
    let m = ModuleBuilder::new("reduce");
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![2, 3]), "x")?;
    let sum = b.reduce_sum(x, &[1])?;
    let max = b.reduce_max(x, &[0])?;
    let e = b.finish(b.tuple(&[sum, max])?)?;
    check("reduce", &m.build(e)?);
    Ok(())
}

#[test]
fn slice_concat_pad_transpose() -> Result<()> {
    let m = ModuleBuilder::new("shape_ops");
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![4, 6]), "x")?;
    let top = b.slice(x, &[0, 0], &[2, 6], &[1, 1])?;
    let strided = b.slice(x, &[2, 0], &[4, 6], &[1, 2])?;
    let c = b.constant_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.5, -6.0], &[2, 3])?;
    let t = b.transpose(b.add(strided, c)?, &[1, 0])?;
    let pads = [
        PadDim {
            low: 1,
            high: 2,
            interior: 0,
        },
        PadDim {
            low: 0,
            high: 0,
            interior: 1,
        },
    ];
    let padded = b.pad(t, b.scalar(0.0f32)?, &pads)?;
    let flat = b.reshape(b.concatenate(&[top, top], 1)?, &[24])?;
    let e = b.finish(b.tuple(&[padded, flat])?)?;
    check("shape_ops", &m.build(e)?);
    Ok(())
}

/// Attributes printed only when not default: compare type, operand precision, window stride
/// and padding, sharding, a must-alias entry in the header.
#[test]
fn non_default_attributes() -> Result<()> {
    let m = ModuleBuilder::new("attrs");
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![4, 4]), "x")?;
    let i = b.parameter(Shape::array(S32, vec![4]), "i")?;
    let dims = DotDims {
        lhs_contracting: vec![1],
        rhs_contracting: vec![1],
        ..Default::default()
    };
    let d = b.dot_general(x, x, dims, [Precision::Default, Precision::Highest], None)?;
    b.set_sharding(d, Sharding::split(2, 0, 2))?;
    let add = m.scalar_reducer(hlo::ir::BinaryOp::Add, F32)?;
    let mut w = WindowDim::new(2, 2);
    w.padding_high = 1;
    let pooled = b.reduce_window(&[d], &[b.scalar(0.0f32)?], &[w.clone(), w], add)?;
    let neg = b.compare(CompareDir::Lt, pooled, b.scalar(0.0f32)?)?;
    let shifted = b.add(i, b.iota(&ArrayShape::new(S32, vec![4]), 0)?)?;
    let e = b.finish(b.tuple(&[pooled, neg, shifted])?)?;
    let mut module = m.build(e)?;
    // The builder always uses the default comparison type; set another to see it printed.
    let entry = module.entry.index();
    for inst in &mut module.computations[entry].instrs {
        if let Op::Compare { ty, .. } = &mut inst.op {
            *ty = CompareType::TotalOrder;
        }
    }
    module.aliases.push(hlo::ir::Alias {
        output_index: vec![2],
        param_number: 1,
        param_index: vec![],
        must_alias: true,
    });
    hlo::passes::verify(&module)?;
    check("attrs", &module);
    Ok(())
}

/// Text and proto name every instruction the same.
#[test]
fn names_agree_with_the_proto() -> Result<()> {
    let m = ModuleBuilder::new("names");
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![3]), "input ids/0")?;
    let s = b.reduce_sum(b.exp(x)?, &[0])?;
    let e = b.finish(s)?;
    let module = m.build(e)?;
    let text = to_text(&module);
    let proto = hlo::lower::to_proto(&module)?;
    for c in &proto.computations {
        for i in &c.instructions {
            assert!(
                text.contains(&format!("%{} = ", i.name)),
                "{} missing from\n{text}",
                i.name
            );
        }
        assert!(text.contains(&format!("%{} (", c.name)));
    }
    assert!(text.contains("%input_ids_0.4 = f32[3]{0} parameter(0)"));
    Ok(())
}

/// A counted while loop over a tuple, a pred conditional and a call.
#[test]
fn control_flow() -> Result<()> {
    let m = ModuleBuilder::new("control");
    let state = Shape::Tuple(vec![Shape::scalar(S32), Shape::array(F32, vec![3])]);

    let c = m.builder("cond");
    let p = c.parameter(state.clone(), "state")?;
    let below = c.lt(c.get_tuple_element(p, 0)?, c.scalar(10i32)?)?;
    let cond = c.finish(below)?;

    let b = m.builder("body");
    let p = b.parameter(state.clone(), "state")?;
    let i = b.add(b.get_tuple_element(p, 0)?, b.scalar(1i32)?)?;
    let acc = b.mul(b.get_tuple_element(p, 1)?, b.scalar(2.0f32)?)?;
    let body = b.finish(b.tuple(&[i, acc])?)?;

    let n = m.builder("negate_branch");
    let v = n.parameter(Shape::array(F32, vec![3]), "v")?;
    let neg = n.finish(n.neg(v)?)?;
    let k = m.builder("keep_branch");
    let v = k.parameter(Shape::array(F32, vec![3]), "v")?;
    let keep = k.finish(k.abs(v)?)?;

    let e = m.builder("main");
    let x = e.parameter(Shape::array(F32, vec![3]), "x")?;
    let flag = e.parameter(Shape::scalar(hlo::ElementType::Pred), "flag")?;
    let init = e.tuple(&[e.scalar(0i32)?, x])?;
    let looped = e.get_tuple_element(e.while_loop(cond, body, init)?, 1)?;
    let chosen = e.conditional(flag, &[neg, keep], &[looped, x])?;
    let called = e.call(keep, &[chosen])?;
    let root = e.finish(called)?;
    check("control", &m.build(root)?);
    Ok(())
}

/// Gather, scatter, sort, random bits, custom calls, barrier and sharding hint.
#[test]
fn indexing_and_misc() -> Result<()> {
    use hlo::ir::RngAlgorithm;
    use hlo::ElementType::{U32, U64};
    let m = ModuleBuilder::new("misc");
    let b = m.builder("main");
    let table = b.parameter(Shape::array(F32, vec![5, 3]), "table")?;
    let ids = b.parameter(Shape::array(S32, vec![2]), "ids")?;
    let key = b.parameter(Shape::array(U64, vec![2]), "key")?;
    let rows = b.take(table, ids, 0)?;
    let dims = hlo::Builder::scatter_dims_for_gather(&hlo::ir::GatherDims {
        offset_dims: vec![1],
        collapsed_slice_dims: vec![0],
        start_index_map: vec![0],
        index_vector_dim: 1,
        ..Default::default()
    });
    let grad = b.scatter_add(b.zeros_like(table)?, ids, rows, dims)?;
    let sorted = b.sort_by_key(ids, &[ids], 0)?;
    let bits = b.rng_bit_generator(RngAlgorithm::ThreeFry, key, &ArrayShape::new(U32, vec![4]))?;
    let cc = b.custom_call(
        "my_target",
        &[rows],
        Shape::array(F32, vec![2, 3]),
        "{\"k\": 1}\n",
        Some(vec![Shape::array(F32, vec![2, 3])]),
        true,
        4,
    )?;
    let hinted = b.sharding_hint(cc, Sharding::Replicated)?;
    let kept = b.optimization_barrier(b.tuple(&[grad, hinted])?)?;
    let e = b.finish(b.tuple(&[kept, sorted, bits, b.replica_id()?])?)?;
    check("misc", &m.build(e)?);
    Ok(())
}

#[test]
fn collectives() -> Result<()> {
    use hlo::ir::CollectiveAttrs;
    let m = ModuleBuilder::new("collectives");
    let b = m.builder("main");
    let x = b.parameter(Shape::array(F32, vec![4, 2]), "x")?;
    let groups = vec![vec![0, 1], vec![2, 3]];
    let summed = b.all_reduce_sum(x, &groups)?;
    let spmd = CollectiveAttrs {
        replica_groups: groups.clone(),
        channel_id: Some(1),
        use_global_device_ids: true,
    };
    let gathered = b.all_gather(summed, 1, spmd.clone())?;
    let add = m.scalar_reducer(hlo::ir::BinaryOp::Add, F32)?;
    let scattered = b.reduce_scatter(gathered, 0, add, spmd)?;
    let plain = CollectiveAttrs {
        replica_groups: groups,
        ..Default::default()
    };
    let swapped = b.all_to_all(scattered, 0, plain)?;
    let shifted = b.collective_permute(swapped, &[(0, 1), (1, 0)], Some(2))?;
    let e = b.finish(shifted)?;
    check("collectives", &m.build(e)?);
    Ok(())
}

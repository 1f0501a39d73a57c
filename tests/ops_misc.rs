//! Sort, rng-bit-generator, custom-call, optimization barrier, while, conditional, call and
//! replica/partition ids on the CPU plugin.
mod common;
use common::check::{assert_close, assert_exact};
use common::inputs::*;
use common::reference::{self as r, arr, flat};
use common::*;
use hlo::ir::{CompareDir, RngAlgorithm};
use hlo::ElementType::*;
use hlo::{ArrayShape, CompId, ModuleBuilder, Shape};
use tpu::CompileOptions;

#[test]
fn sort_ascending_along_each_dim() {
    let mut g = rng(1);
    let x = normal_f32(&mut g, 24);
    let xi: Vec<i32> = cast(&ints(&mut g, 24, -50, 50));
    let a = arr(
        &x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        &[3, 8],
    );
    let ai = arr(
        &xi.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        &[3, 8],
    );
    let m = module(
        &[arr_shape(F32, &[3, 8]), arr_shape(S32, &[3, 8])],
        |b, p| {
            Ok(vec![
                b.sort_ascending(p[0], 1)?,
                b.sort_ascending(p[0], 0)?,
                b.sort_ascending(p[1], 1)?,
            ])
        },
    );
    let out = run(&m, &[lit(&x, &[3, 8]), lit(&xi, &[3, 8])]);
    let lt = |a: f64, b: f64| a < b;
    let want = &r::sort_by_key(&[&a], 1, lt)[0];
    assert_close(&f64s(&out[0]), &flat(want), 0.0, 0.0, "sort f32 dim 1");
    let want = &r::sort_by_key(&[&a], 0, lt)[0];
    assert_close(&f64s(&out[1]), &flat(want), 0.0, 0.0, "sort f32 dim 0");
    let want = &r::sort_by_key(&[&ai], 1, lt)[0];
    assert_close(&f64s(&out[2]), &flat(want), 0.0, 0.0, "sort s32 dim 1");
}

#[test]
fn sort_by_key_is_stable_and_moves_values() {
    let mut g = rng(2);
    // Few distinct keys: many ties, whose order must be kept (stable).
    let keys: Vec<f64> = ints(&mut g, 20, 0, 3)
        .into_iter()
        .map(|v| v as f64)
        .collect();
    let kf: Vec<f32> = keys.iter().map(|&v| v as f32).collect();
    let vals_f = normal_f32(&mut g, 20);
    let ka = arr(&keys, &[2, 10]);
    let va = arr(
        &vals_f.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        &[2, 10],
    );
    let m = module(
        &[arr_shape(F32, &[2, 10]), arr_shape(F32, &[2, 10])],
        |b, p| {
            let iota = b.iota(&ArrayShape::new(S32, vec![2, 10]), 1)?;
            let t = b.sort_by_key(p[0], &[p[1], iota], 1)?;
            Ok(vec![
                b.get_tuple_element(t, 0)?,
                b.get_tuple_element(t, 1)?,
                b.get_tuple_element(t, 2)?,
            ])
        },
    );
    let out = run(&m, &[lit(&kf, &[2, 10]), lit(&vals_f, &[2, 10])]);
    let iota = arr(
        &(0..20).map(|k| f64::from(k % 10)).collect::<Vec<_>>(),
        &[2, 10],
    );
    let want = r::sort_by_key(&[&ka, &va, &iota], 1, |a, b| a < b);
    assert_close(&f64s(&out[0]), &flat(&want[0]), 0.0, 0.0, "sorted keys");
    assert_close(
        &f64s(&out[1]),
        &flat(&want[1]),
        0.0,
        0.0,
        "values follow keys",
    );
    // The iota operand is the stable argsort.
    assert_close(&f64s(&out[2]), &flat(&want[2]), 0.0, 0.0, "stable argsort");
}

/// A comparator `lhs > rhs` on the first of `n` f32 operands (descending order).
fn descending(m: &ModuleBuilder) -> hlo::Result<CompId> {
    let c = m.builder("gt");
    let l = c.parameter(Shape::scalar(F32), "l")?;
    let r = c.parameter(Shape::scalar(F32), "r")?;
    let gt = c.compare(CompareDir::Gt, l, r)?;
    c.finish(gt)
}

#[test]
fn sort_with_a_custom_comparator() {
    let x = normal_f32(&mut rng(3), 16);
    let a = arr(&x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), &[16]);
    let m = module(&[arr_shape(F32, &[16])], |b, p| {
        let gt = descending(b.module())?;
        Ok(vec![b.sort(&[p[0]], 0, gt, false)?])
    });
    let out = run(&m, &[lit(&x, &[16])]);
    let want = &r::sort_by_key(&[&a], 0, |a, b| a > b)[0];
    assert_close(&f64s(&out[0]), &flat(want), 0.0, 0.0, "descending sort");
}

/// Runs rng-bit-generator on `key`; returns (new state, u32 bits [64]).
fn rng_bits(alg: RngAlgorithm, key: &[u64]) -> (Vec<u64>, Vec<u32>) {
    let n = key.len() as i64;
    let m = module(&[arr_shape(U64, &[n])], |b, p| {
        let t = b.rng_bit_generator(alg, p[0], &ArrayShape::new(U32, vec![8, 8]))?;
        Ok(vec![b.get_tuple_element(t, 0)?, b.get_tuple_element(t, 1)?])
    });
    let out = run(&m, &[lit(key, &[n])]);
    (vals::<u64>(&out[0]), vals::<u32>(&out[1]))
}

fn check_rng(alg: RngAlgorithm, key: &[u64]) {
    let name = alg.name();
    let (s1, b1) = rng_bits(alg, key);
    let (s2, b2) = rng_bits(alg, key);
    assert_exact(&b1, &b2, &format!("{name}: same key, same bits"));
    assert_exact(&s1, &s2, &format!("{name}: same key, same new state"));
    assert_ne!(s1, key, "{name}: the state advances");
    let mut other = key.to_vec();
    other[0] ^= 1;
    let (_, b3) = rng_bits(alg, &other);
    let same = b1.iter().zip(&b3).filter(|(a, b)| a == b).count();
    assert!(
        same < 4,
        "{name}: a different key gave {same} of 64 equal words"
    );
    let (_, b4) = rng_bits(alg, &s1);
    let same = b1.iter().zip(&b4).filter(|(a, b)| a == b).count();
    assert!(
        same < 4,
        "{name}: the advanced state repeated {same} of 64 words"
    );
    // 2048 bits: the fraction of ones is 0.5 +- 0.011 (1 sigma); allow 5 sigma.
    let ones: u32 = b1.iter().map(|w| w.count_ones()).sum();
    let frac = f64::from(ones) / 2048.0;
    assert!(
        (frac - 0.5).abs() < 0.055,
        "{name}: fraction of one bits {frac}"
    );
    let distinct: std::collections::HashSet<_> = b1.iter().collect();
    assert!(
        distinct.len() > 60,
        "{name}: only {} distinct words",
        distinct.len()
    );
}

#[test]
fn rng_bit_generator_three_fry() {
    check_rng(RngAlgorithm::ThreeFry, &[42, 7]);
}

#[test]
fn rng_bit_generator_philox() {
    check_rng(RngAlgorithm::Philox, &[42, 7]);
    check_rng(RngAlgorithm::Philox, &[1, 2, 3]);
}

#[test]
fn rng_u64_output_and_two_draws_in_one_program() {
    let m = module(&[arr_shape(U64, &[2])], |b, p| {
        let s = ArrayShape::new(U64, vec![16]);
        let t1 = b.rng_bit_generator(RngAlgorithm::ThreeFry, p[0], &s)?;
        let t2 = b.rng_bit_generator(RngAlgorithm::ThreeFry, p[0], &s)?;
        let t3 = b.rng_bit_generator(RngAlgorithm::ThreeFry, b.get_tuple_element(t1, 0)?, &s)?;
        Ok(vec![
            b.get_tuple_element(t1, 1)?,
            b.get_tuple_element(t2, 1)?,
            b.get_tuple_element(t3, 1)?,
        ])
    });
    let out = run(&m, &[lit(&[5u64, 9], &[2])]);
    let (a, b2, c) = (
        vals::<u64>(&out[0]),
        vals::<u64>(&out[1]),
        vals::<u64>(&out[2]),
    );
    assert_exact(&a, &b2, "same state in one program");
    assert!(
        a.iter().zip(&c).all(|(x, y)| x != y),
        "chained state draws new bits"
    );
    assert!(a.iter().all(|&w| w != 0));
}

#[test]
fn unknown_custom_call_is_a_compile_error() {
    // api_version 0 (unspecified) lowers as ORIGINAL; 4 is the typed FFI.
    for api_version in [0, 1, 4] {
        let m = module(&[arr_shape(F32, &[4])], |b, p| {
            Ok(vec![b.custom_call(
                "tpu_run_no_such_target",
                &[p[0]],
                arr_shape(F32, &[4]),
                "",
                None,
                false,
                api_version,
            )?])
        });
        let bytes = m.to_proto_bytes().unwrap();
        let e = client()
            .compile(&bytes, &CompileOptions::default())
            .expect_err("an unknown custom-call target must not compile");
        let msg = e.to_string();
        assert!(
            msg.contains("tpu_run_no_such_target"),
            "api {api_version}: {msg}"
        );
    }
}

#[test]
fn optimization_barrier_passes_values_through() {
    let x = normal_f32(&mut rng(4), 6);
    let m = module(&[arr_shape(F32, &[6]), arr_shape(S32, &[])], |b, p| {
        let t = b.tuple(&[p[0], p[1]])?;
        let t = b.optimization_barrier(t)?;
        let y = b.get_tuple_element(t, 0)?;
        Ok(vec![b.add(y, y)?, b.get_tuple_element(t, 1)?])
    });
    let out = run(&m, &[lit(&x, &[6]), lit(&[17i32], &[])]);
    let want: Vec<f32> = x.iter().map(|v| v + v).collect();
    assert_exact(&vals::<f32>(&out[0]), &want, "barrier f32");
    assert_exact(&vals::<i32>(&out[1]), &[17], "barrier s32");
}

/// A module computing `sum_{i=1..n} i` and, in the same loop, `x <- 0.5 x + 1` n times.
fn loop_module() -> hlo::Result<hlo::Module> {
    let m = ModuleBuilder::new("loop");
    let state = Shape::Tuple(vec![
        Shape::scalar(S32),
        Shape::scalar(S32),
        Shape::scalar(S32),
        arr_shape(F32, &[3]),
    ]);
    // cond: i <= n
    let c = m.builder("cond");
    let s = c.parameter(state.clone(), "s")?;
    let le = c.le(c.get_tuple_element(s, 0)?, c.get_tuple_element(s, 1)?)?;
    let cond = c.finish(le)?;
    // body: (i + 1, n, acc + i, 0.5 x + 1)
    let b = m.builder("body");
    let s = b.parameter(state.clone(), "s")?;
    let i = b.get_tuple_element(s, 0)?;
    let acc = b.add(b.get_tuple_element(s, 2)?, i)?;
    let x = b.get_tuple_element(s, 3)?;
    let x = b.add(b.mul(x, b.scalar(0.5f32)?)?, b.scalar(1f32)?)?;
    let next = b.tuple(&[
        b.add(i, b.scalar(1i32)?)?,
        b.get_tuple_element(s, 1)?,
        acc,
        x,
    ])?;
    let body = b.finish(next)?;
    let e = m.builder("main");
    let n = e.parameter(Shape::scalar(S32), "n")?;
    let x0 = e.parameter(arr_shape(F32, &[3]), "x0")?;
    let init = e.tuple(&[e.scalar(1i32)?, n, e.scalar(0i32)?, x0])?;
    let w = e.while_loop(cond, body, init)?;
    let out = e.tuple(&[e.get_tuple_element(w, 2)?, e.get_tuple_element(w, 3)?])?;
    let entry = e.finish(out)?;
    m.build(entry)
}

#[test]
fn while_loop_sums_and_iterates() {
    let m = loop_module().unwrap();
    let exe = compile(&m, &CompileOptions::default());
    let x0 = [0.0f32, 3.0, -8.0];
    for n in [0i32, 1, 10, 37] {
        let args = [upload(&lit(&[n], &[]), 0), upload(&lit(&x0, &[3]), 0)];
        let out = exe.execute(&[&args[0], &args[1]]).unwrap();
        let sum: i32 = (1..=n).sum();
        assert_exact(
            &download(&out[0]).to_vec::<i32>().unwrap(),
            &[sum],
            &format!("sum 1..{n}"),
        );
        let want: Vec<f64> = x0
            .iter()
            .map(|&v| (0..n).fold(f64::from(v), |x, _| 0.5 * x + 1.0))
            .collect();
        assert_close(
            &f64s(&download(&out[1])),
            &want,
            1e-6,
            1e-6,
            &format!("x after {n} steps"),
        );
    }
}

/// `x -> x * k` over f32[4].
fn scale(m: &ModuleBuilder, k: f32) -> hlo::Result<CompId> {
    let b = m.builder("scale");
    let x = b.parameter(arr_shape(F32, &[4]), "x")?;
    let y = b.mul(x, b.scalar(k)?)?;
    b.finish(y)
}

#[test]
fn conditional_by_pred_and_by_index() {
    let x = normal_f32(&mut rng(5), 4);
    let m = ModuleBuilder::new("cond");
    let (b0, b1, b2) = (
        scale(&m, 2.0).unwrap(),
        scale(&m, -3.0).unwrap(),
        scale(&m, 0.5).unwrap(),
    );
    let e = m.builder("main");
    let p = e.parameter(Shape::scalar(Pred), "p").unwrap();
    let i = e.parameter(Shape::scalar(S32), "i").unwrap();
    let xv = e.parameter(arr_shape(F32, &[4]), "x").unwrap();
    // With a pred selector, true runs the first branch.
    let c1 = e.conditional(p, &[b0, b1], &[xv, xv]).unwrap();
    let c2 = e.conditional(i, &[b0, b1, b2], &[xv, xv, xv]).unwrap();
    let root = e.tuple(&[c1, c2]).unwrap();
    let entry = e.finish(root).unwrap();
    let module = m.build(entry).unwrap();
    let scale_by = |k: f32| x.iter().map(|v| v * k).collect::<Vec<f32>>();
    // An out-of-range index runs the last branch (XLA semantics).
    for (pv, iv, w1, w2) in [
        (true, 0, 2.0, 2.0),
        (false, 1, -3.0, -3.0),
        (true, 2, 2.0, 0.5),
        (false, 7, -3.0, 0.5),
        (false, -1, -3.0, 0.5),
    ] {
        let out = run(&module, &[lit(&[pv], &[]), lit(&[iv], &[]), lit(&x, &[4])]);
        assert_exact(&vals::<f32>(&out[0]), &scale_by(w1), &format!("pred {pv}"));
        assert_exact(&vals::<f32>(&out[1]), &scale_by(w2), &format!("index {iv}"));
    }
}

#[test]
fn call_runs_a_subcomputation() {
    let x = normal_f32(&mut rng(6), 4);
    let m = ModuleBuilder::new("call");
    let f = scale(&m, 4.0).unwrap();
    let e = m.builder("main");
    let xv = e.parameter(arr_shape(F32, &[4]), "x").unwrap();
    let y = e.call(f, &[xv]).unwrap();
    let z = e.call(f, &[y]).unwrap();
    let entry = e.finish(z).unwrap();
    let out = run(&m.build(entry).unwrap(), &[lit(&x, &[4])]);
    let want: Vec<f32> = x.iter().map(|v| v * 16.0).collect();
    assert_exact(&vals::<f32>(&out[0]), &want, "call twice");
}

#[test]
fn replica_and_partition_id_on_one_device() {
    let m = module(&[], |b, _| Ok(vec![b.replica_id()?, b.partition_id()?]));
    let out = run(&m, &[]);
    assert_exact(&vals::<u32>(&out[0]), &[0], "replica-id");
    assert_exact(&vals::<u32>(&out[1]), &[0], "partition-id");
}

//! Shared by the import tests: the fixture paths and our encoder run on imported weights.
#![allow(dead_code)]
use crate::common;
use hlo::{ElementType, Literal, ModuleBuilder, Shape};
use std::path::PathBuf;
use tpu_run::model::params::encoder_param_specs;
use tpu_run::model::{
    encoder_forward, BertConfig, EncoderInputs, Execution, ParamSet, ParamValues,
};

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The JSON file at `tests/fixtures/<rel>`.
pub fn fixture_json(rel: &str) -> serde_json::Value {
    let p = fixture(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Row-major `[batch, seq]` s32 values from a JSON array of arrays.
pub fn int_rows(v: &serde_json::Value) -> (Vec<i32>, usize, usize) {
    let rows = v.as_array().expect("array of rows");
    let seq = rows[0].as_array().expect("row").len();
    let flat: Vec<i32> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_i64().expect("int") as i32)
        })
        .collect();
    (flat, rows.len(), seq)
}

pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Our encoder (eval mode, f32, on the CPU plugin) on `params`: the sequence output
/// `[batch, seq, hidden]` and the pooled output `[batch, hidden]`, row-major.
pub fn run_encoder(
    cfg: &BertConfig,
    params: &ParamSet,
    ids: &[i32],
    mask: &[i32],
    types: &[i32],
    batch: usize,
    seq: usize,
) -> (Vec<f64>, Vec<f64>) {
    let specs = encoder_param_specs(cfg);
    let m = ModuleBuilder::new("imported_encoder");
    let b = m.builder("main");
    let values = ParamValues::declare(&b, &specs).unwrap();
    let s32 = Shape::array(ElementType::S32, vec![batch as i64, seq as i64]);
    let inputs = EncoderInputs {
        input_ids: b.parameter(s32.clone(), "input_ids").unwrap(),
        segment_ids: b.parameter(s32.clone(), "segment_ids").unwrap(),
        input_mask: b.parameter(s32, "input_mask").unwrap(),
    };
    let key = b
        .parameter(Shape::array(ElementType::U64, vec![2]), "rng_key")
        .unwrap();
    let out = encoder_forward(&b, cfg, Execution::default(), &values, &inputs, key, false).unwrap();
    let root = b.tuple(&[out.sequence, out.pooled]).unwrap();
    let entry = b.finish(root).unwrap();
    let module = m.build(entry).unwrap();

    let mut args: Vec<Literal> = specs
        .iter()
        .map(|s| {
            let t = params
                .get(&s.name)
                .unwrap_or_else(|| panic!("{} not imported", s.name));
            let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
            common::lit(&t.data, &dims)
        })
        .collect();
    let dims = [batch as i64, seq as i64];
    args.push(common::lit(ids, &dims));
    args.push(common::lit(types, &dims));
    args.push(common::lit(mask, &dims));
    args.push(common::lit(&[7u64, 9], &[2]));
    let outs = common::run(&module, &args);
    (common::f64s(&outs[0]), common::f64s(&outs[1]))
}

/// The largest |got - want|, with the index where it occurs.
pub fn max_abs_diff(got: &[f64], want: &[f64]) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "lengths");
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold(
            (0.0, 0),
            |(m, mi), (i, d)| if d > m { (d, i) } else { (m, mi) },
        )
}

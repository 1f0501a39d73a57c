//! Data parallelism inside the compiled step, as the original BERT ran on TPU (TPUEstimator with
//! `CrossShardOptimizer`): the same program runs on N replicas, each on its own shard of the
//! batch; the gradients are averaged across replicas with an all-reduce inside the step, so every
//! replica applies the same update to its own copy of the parameters and optimizer state.
//!
//! The helpers here emit the cross-replica parts; [`super::step`] decides where they go.
use anyhow::{bail, Result};
use hlo::{ArrayShape, Builder, ElementType, Value};

/// Odd 64-bit constant (2^64 / golden ratio) that spreads replica ids over the key space.
const REPLICA_KEY_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// `x` averaged over all `replicas` (an all-reduce sum, then `* 1/replicas`): the same value on
/// every replica. `x` must be f32.
pub fn mean_over_replicas(b: &Builder, x: Value, replicas: u32) -> Result<Value> {
    let sum = b.all_reduce_sum(x, &[])?;
    let inv = b.scalar_of(ElementType::F32, 1.0 / f64::from(replicas))?;
    Ok(b.mul(sum, inv)?)
}

/// The largest `x` of any replica, on every replica.
pub fn max_over_replicas(b: &Builder, x: Value) -> Result<Value> {
    let ty = b.element_type(x)?;
    let max = b.module().scalar_reducer(hlo::ir::BinaryOp::Max, ty)?;
    Ok(b.all_reduce(x, max, Default::default())?)
}

/// A pred scalar that is true on every replica iff `ok` is true on all of them (an all-reduce of
/// the count of replicas where it is false).
pub fn all_replicas(b: &Builder, ok: Value) -> Result<Value> {
    let bad = b.convert(b.not(ok)?, ElementType::S32)?;
    let bad = b.all_reduce_sum(bad, &[])?;
    Ok(b.eq(bad, b.scalar_of(ElementType::S32, 0.0)?)?)
}

/// The dropout key `key` (`u64[..., 2]`: stream word, counter) with this replica's id folded into
/// every word 0: `word0 ^ (replica_id * 0x9E3779B97F4A7C15)`. Replica 0 keeps the key it was
/// given; the others get other stream words, and streams of different word-0 keys are unrelated
/// (hlo/src/ops/dropout.rs), so each replica draws its own dropout bits, while the host still
/// hands one key per step (which keeps a resumed run exact).
pub fn fold_replica_id(b: &Builder, key: Value) -> Result<Value> {
    let a = b.array_shape(key, "replica key")?;
    if a.ty != ElementType::U64 || a.dims.last() != Some(&2) {
        bail!("a dropout key input must be u64[..., 2], got {a}");
    }
    let id = b.convert(b.replica_id()?, ElementType::U64)?;
    let salt = b.mul(id, b.scalar(REPLICA_KEY_SALT)?)?;
    let word = b.iota(
        &ArrayShape::new(ElementType::U64, a.dims.clone()),
        a.rank() as i64 - 1,
    )?;
    // 1 at word 0, 0 at word 1: only the stream word changes.
    let at_word0 = b.sub(b.scalar(1u64)?, word)?;
    Ok(b.xor(key, b.mul(at_word0, salt)?)?)
}

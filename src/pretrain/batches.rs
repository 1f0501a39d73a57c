//! Host batches as the programs take them: the reader's [`Batch`] (or a synthetic one), or a
//! [`PackedBatch`], as literals in the step's input order, with the step's dropout key.
use crate::data::packed_reader::{chunk_size, PackedReader};
use crate::data::packing::{PackLimits, PackedBatch};
use crate::data::{Batch, Reader, ReaderConfig, ReaderState};
use crate::model::batch::{BATCH_FIELDS, PACKED_FIELDS};
use crate::model::BatchShapes;
use crate::rng::{domain, DropoutKeys};
use anyhow::{anyhow, bail, Result};
use hlo::Literal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The seven pretraining fields of `batch` as literals, in [`BATCH_FIELDS`] order. With
/// `micro_batches` k > 1 each is `[k, batch/k, ...]`: the rows are already in that order, so
/// micro-batch i is rows `i*batch/k ..`.
pub fn field_literals(batch: &Batch, micro_batches: usize) -> Result<Vec<Literal>> {
    let (b, s, p) = (batch.batch_size, batch.seq_len, batch.max_predictions);
    let dims = row_dims(b, micro_batches)?;
    let fields = [
        Literal::from_slice(&batch.input_ids, &dims(Some(s))),
        Literal::from_slice(&batch.input_mask, &dims(Some(s))),
        Literal::from_slice(&batch.segment_ids, &dims(Some(s))),
        Literal::from_slice(&batch.masked_lm_positions, &dims(Some(p))),
        Literal::from_slice(&batch.masked_lm_ids, &dims(Some(p))),
        Literal::from_slice(&batch.masked_lm_weights, &dims(Some(p))),
        Literal::from_slice(&batch.next_sentence_labels, &dims(None)),
    ];
    let mut out = Vec::with_capacity(BATCH_FIELDS.len());
    for (name, lit) in BATCH_FIELDS.iter().zip(fields) {
        match lit {
            Ok(l) => out.push(l),
            Err(e) => bail!("batch field {name}: {e} (the batch is not {b}x{s} / {b}x{p})"),
        }
    }
    Ok(out)
}

/// `dims(inner)`: the dims of a field of `rows` rows (`[k, rows/k, inner]` with k > 1
/// micro-batches, `[rows, inner]` otherwise; no inner dim for `None`).
fn row_dims(rows: usize, micro_batches: usize) -> Result<impl Fn(Option<usize>) -> Vec<i64>> {
    let k = micro_batches.max(1);
    if !rows.is_multiple_of(k) {
        bail!("batch of {rows} rows does not split into {k} micro-batches");
    }
    let lead: Vec<i64> = if k > 1 {
        vec![k as i64, (rows / k) as i64]
    } else {
        vec![rows as i64]
    };
    Ok(move |inner: Option<usize>| {
        let mut d = lead.clone();
        d.extend(inner.map(|n| n as i64));
        d
    })
}

/// The ten packed fields of `batch` as literals, in `BatchShapes::fields` order (the seven of
/// [`BATCH_FIELDS`], then [`PACKED_FIELDS`]), stacked as [`field_literals`] stacks them.
pub fn packed_field_literals(batch: &PackedBatch, micro_batches: usize) -> Result<Vec<Literal>> {
    let l = batch.limits;
    let (b, s, p, n) = (
        batch.batch_size,
        l.seq_len,
        l.max_predictions,
        l.max_instances,
    );
    let dims = row_dims(b, micro_batches)?;
    let fields = [
        Literal::from_slice(&batch.input_ids, &dims(Some(s))),
        Literal::from_slice(&batch.input_mask, &dims(Some(s))),
        Literal::from_slice(&batch.segment_ids, &dims(Some(s))),
        Literal::from_slice(&batch.masked_lm_positions, &dims(Some(p))),
        Literal::from_slice(&batch.masked_lm_ids, &dims(Some(p))),
        Literal::from_slice(&batch.masked_lm_weights, &dims(Some(p))),
        Literal::from_slice(&batch.next_sentence_labels, &dims(Some(n))),
        Literal::from_slice(&batch.position_ids, &dims(Some(s))),
        Literal::from_slice(&batch.next_sentence_positions, &dims(Some(n))),
        Literal::from_slice(&batch.next_sentence_weights, &dims(Some(n))),
    ];
    let names = BATCH_FIELDS.iter().chain(&PACKED_FIELDS);
    let mut out = Vec::with_capacity(fields.len());
    for (name, lit) in names.zip(fields) {
        match lit {
            Ok(l) => out.push(l),
            Err(e) => bail!(
                "packed batch field {name}: {e} (the batch is not {b} rows of {s} tokens, {p} \
                 predictions, {n} instances; call PackedBatch::pad before)"
            ),
        }
    }
    Ok(out)
}

/// The packed training feed (`data.pack`): the reader `rc` describes (resumed from `saved`),
/// read in small chunks and packed into batches of `rows` rows shaped as `micro` (one replica's
/// packed micro-batch: its seq_len, prediction slots and instances per row).
pub fn packed_source(
    mut rc: ReaderConfig,
    saved: Option<ReaderState>,
    micro: &BatchShapes,
    rows: usize,
) -> Result<PackedReader> {
    let k = micro
        .max_instances_per_row
        .ok_or_else(|| anyhow!("a packed feed for a padded step"))?;
    let chunk = chunk_size(rows);
    // Keep as many examples ready as before: up to k per row, for each prefetched batch.
    rc.prefetch_batches = rc.prefetch_batches.max(1) * (rows * k).div_ceil(chunk);
    rc.batch_size = chunk;
    let reader = match saved {
        Some(st) => Reader::resume(rc, st)?,
        None => Reader::new(rc)?,
    };
    let limits = PackLimits {
        seq_len: micro.seq_len,
        max_predictions: micro.max_predictions,
        max_instances: k,
    };
    PackedReader::new(reader, limits, rows)
}

/// One step's host batch: padded rows from the reader (or synthetic), or packed rows.
#[derive(Clone, Debug)]
pub enum StepBatch {
    Padded(Batch),
    Packed(PackedBatch),
}

impl StepBatch {
    /// The batch fields as the step takes them (see [`field_literals`]).
    pub fn field_literals(&self, micro_batches: usize) -> Result<Vec<Literal>> {
        match self {
            StepBatch::Padded(b) => field_literals(b, micro_batches),
            StepBatch::Packed(b) => packed_field_literals(b, micro_batches),
        }
    }

    /// The step's batch inputs: the fields, then the dropout key(s) (see [`step_literals`]).
    pub fn step_literals(
        &self,
        micro_batches: usize,
        seed: u64,
        step: u64,
    ) -> Result<Vec<Literal>> {
        let mut out = self.field_literals(micro_batches)?;
        out.push(key_literal(seed, step, micro_batches)?);
        Ok(out)
    }

    /// Pretraining instances in the batch (padding rows and unused slots excluded).
    pub fn examples(&self) -> usize {
        match self {
            StepBatch::Padded(b) => b.real_rows,
            StepBatch::Packed(b) => b.instances,
        }
    }

    /// `(real tokens, all token slots)`: real tokens are those with a non-zero `input_mask`.
    pub fn token_counts(&self) -> (usize, usize) {
        match self {
            StepBatch::Padded(b) => {
                let real = b.input_mask.iter().filter(|&&m| m != 0).count();
                (real, b.batch_size * b.seq_len)
            }
            StepBatch::Packed(b) => (b.real_tokens, b.batch_size * b.limits.seq_len),
        }
    }
}

/// The train step's batch inputs for step `step`: the fields, then the dropout key(s)
/// (`u64[2]`, or `u64[k, 2]` with k micro-batches).
pub fn step_literals(
    batch: &Batch,
    micro_batches: usize,
    seed: u64,
    step: u64,
) -> Result<Vec<Literal>> {
    let mut out = field_literals(batch, micro_batches)?;
    out.push(key_literal(seed, step, micro_batches)?);
    Ok(out)
}

/// The dropout keys of a pretraining run.
pub fn pretrain_dropout(seed: u64) -> DropoutKeys {
    DropoutKeys::new(domain::PRETRAIN_DROPOUT, seed)
}

/// The dropout key input of step `step`.
pub fn key_literal(seed: u64, step: u64, micro_batches: usize) -> Result<Literal> {
    let k = micro_batches.max(1);
    let words: Vec<u64> = pretrain_dropout(seed).step(step, k).concat();
    let dims: Vec<i64> = if k > 1 { vec![k as i64, 2] } else { vec![2] };
    Ok(Literal::from_slice(&words, &dims)?)
}

/// A random batch with BERT's statistics (ids from the whole vocabulary above the special
/// tokens, 15% of positions predicted, half the pairs random), for benchmarks that need no data.
pub fn synthetic_batch(
    batch_size: usize,
    seq_len: usize,
    max_predictions: usize,
    vocab_size: usize,
    seed: u64,
) -> Batch {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut batch = Batch::with_capacity(batch_size, seq_len, max_predictions);
    let lo = 1000.min(vocab_size.saturating_sub(1)) as i32;
    let hi = vocab_size as i32;
    let n_pred = max_predictions
        .min(((seq_len as f64) * 0.15).round().max(1.0) as usize)
        .min(seq_len.saturating_sub(1).max(1));
    for _ in 0..batch_size {
        let ids: Vec<i32> = (0..seq_len)
            .map(|_| rng.gen_range(lo..hi.max(lo + 1)))
            .collect();
        let half = seq_len / 2;
        let segments: Vec<i32> = (0..seq_len).map(|i| i32::from(i >= half)).collect();
        let mut positions = rand::seq::index::sample(&mut rng, seq_len.max(2) - 1, n_pred)
            .into_iter()
            .map(|p| p as i32 + 1)
            .collect::<Vec<_>>();
        positions.sort_unstable();
        let mut labels: Vec<i32> = positions.iter().map(|&p| ids[p as usize]).collect();
        let mut weights = vec![1.0f32; positions.len()];
        positions.resize(max_predictions, 0);
        labels.resize(max_predictions, 0);
        weights.resize(max_predictions, 0.0);
        batch.push(&crate::data::batch::HostExample {
            input_ids: ids,
            input_mask: vec![1; seq_len],
            segment_ids: segments,
            masked_lm_positions: positions,
            masked_lm_ids: labels,
            masked_lm_weights: weights,
            next_sentence_label: rng.gen_range(0..2),
        });
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batches_stack_rows_in_order() {
        let batch = synthetic_batch(4, 8, 3, 2000, 7);
        let lits = step_literals(&batch, 2, 1, 5).unwrap();
        assert_eq!(lits.len(), 8);
        assert_eq!(lits[0].shape().dims, vec![2, 2, 8]);
        assert_eq!(lits[6].shape().dims, vec![2, 2]);
        assert_eq!(lits[7].shape().dims, vec![2, 2]);
        let flat = step_literals(&batch, 1, 1, 5).unwrap();
        assert_eq!(flat[0].bytes(), lits[0].bytes());
        assert_eq!(flat[7].shape().dims, vec![2]);
        for r in 0..4 {
            let ex = batch.row(r).unwrap();
            let w: f32 = ex.masked_lm_weights.iter().sum();
            assert_eq!(w, 1.0, "seq 8 x 15% rounds to one prediction");
            let p = ex.masked_lm_positions[0] as usize;
            assert_eq!(ex.masked_lm_ids[0], ex.input_ids[p]);
            assert!(ex.input_ids.iter().all(|&id| (1000..2000).contains(&id)));
        }
    }
}

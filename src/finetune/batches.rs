//! SQuAD features as program inputs: the feature arrays (row-major, one row per feature), the
//! order in which training reads them, and the literals of one batch.
//!
//! Training order is `tf.data`'s `repeat().shuffle().batch(drop_remainder=True)` made exact:
//! every epoch is a seeded permutation of all features, the epochs are concatenated and cut into
//! batches, so each feature is seen once per epoch and a batch may span two epochs.
use crate::rng::{domain, splitmix64, SplitMix64};
use crate::squad::InputFeature;
use anyhow::{anyhow, bail, Result};
use hlo::Literal;

/// The encoder inputs, in the order the programs take them.
pub const ENCODER_FIELDS: [&str; 3] = ["input_ids", "input_mask", "segment_ids"];
/// The training labels, after the encoder inputs.
pub const LABEL_FIELDS: [&str; 2] = ["start_positions", "end_positions"];

/// Features as flat row-major arrays.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureArrays {
    pub seq_len: usize,
    pub input_ids: Vec<i32>,
    pub input_mask: Vec<i32>,
    pub segment_ids: Vec<i32>,
    /// Training labels (0 for features without them).
    pub start_positions: Vec<i32>,
    pub end_positions: Vec<i32>,
}

impl FeatureArrays {
    /// The arrays of `features`, each `seq_len` long. With `labels`, every feature must carry
    /// its answer positions (training features do).
    pub fn from_features(features: &[InputFeature], seq_len: usize, labels: bool) -> Result<Self> {
        let mut a = Self {
            seq_len,
            ..Default::default()
        };
        for f in features {
            if f.input_ids.len() != seq_len
                || f.input_mask.len() != seq_len
                || f.segment_ids.len() != seq_len
            {
                bail!(
                    "feature {} has {} positions, the program takes {seq_len}",
                    f.unique_id,
                    f.input_ids.len()
                );
            }
            a.input_ids.extend(&f.input_ids);
            a.input_mask.extend(&f.input_mask);
            a.segment_ids.extend(&f.segment_ids);
            let (s, e) = match (f.start_position, f.end_position, labels) {
                (Some(s), Some(e), _) => (s, e),
                (_, _, false) => (0, 0),
                _ => bail!(
                    "feature {} has no answer positions; training features need them",
                    f.unique_id
                ),
            };
            let pos = |p: usize| {
                i32::try_from(p)
                    .ok()
                    .filter(|&p| (p as usize) < seq_len)
                    .ok_or_else(|| {
                        anyhow!(
                            "feature {}: answer position {p} is past the sequence",
                            f.unique_id
                        )
                    })
            };
            a.start_positions.push(pos(s)?);
            a.end_positions.push(pos(e)?);
        }
        Ok(a)
    }

    pub fn len(&self) -> usize {
        self.start_positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.start_positions.is_empty()
    }

    /// The encoder inputs of `rows`, padded with all-zero rows up to `batch_size`
    /// ([`ENCODER_FIELDS`] order, s32 `[batch_size, seq_len]` each).
    pub fn encoder_literals(&self, rows: &[usize], batch_size: usize) -> Result<Vec<Literal>> {
        encoder_literals(
            [&self.input_ids, &self.input_mask, &self.segment_ids],
            self.seq_len,
            rows,
            batch_size,
        )
    }

    /// A full training batch of `rows`: the encoder inputs, then the start and end positions
    /// (s32 `[batch]`).
    pub fn train_literals(&self, rows: &[usize]) -> Result<Vec<Literal>> {
        let mut out = self.encoder_literals(rows, rows.len())?;
        out.push(row_values(&self.start_positions, rows)?);
        out.push(row_values(&self.end_positions, rows)?);
        Ok(out)
    }
}

/// The encoder inputs (`[input_ids, input_mask, segment_ids]`, row-major `[rows, seq]` each)
/// of `rows`, padded with all-zero rows up to `batch_size`: s32 `[batch_size, seq]` each.
pub fn encoder_literals(
    fields: [&[i32]; 3],
    seq: usize,
    rows: &[usize],
    batch_size: usize,
) -> Result<Vec<Literal>> {
    if rows.len() > batch_size {
        bail!("{} rows do not fit a batch of {batch_size}", rows.len());
    }
    let dims = [batch_size as i64, seq as i64];
    fields
        .iter()
        .map(|src| {
            let mut out = vec![0i32; batch_size * seq];
            for (slot, &r) in rows.iter().enumerate() {
                let row = src
                    .get(r * seq..(r + 1) * seq)
                    .ok_or_else(|| anyhow!("feature row {r} is out of range"))?;
                out[slot * seq..(slot + 1) * seq].copy_from_slice(row);
            }
            Ok(Literal::from_slice(&out, &dims)?)
        })
        .collect()
}

/// The values of `rows` in `src` (one per row), as a `[rows]` literal.
pub fn row_values<T: hlo::NativeType + Copy>(src: &[T], rows: &[usize]) -> Result<Literal> {
    let v = rows
        .iter()
        .map(|&r| {
            src.get(r)
                .copied()
                .ok_or_else(|| anyhow!("feature row {r} is out of range"))
        })
        .collect::<Result<Vec<T>>>()?;
    Ok(Literal::from_slice(&v, &[rows.len() as i64])?)
}

/// Steps of `epochs` passes over `num_features` in batches of `batch_size`: ceil(epochs x
/// features / batch).
pub fn steps_for_epochs(num_features: usize, batch_size: usize, epochs: f64) -> Result<u64> {
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if !(epochs.is_finite() && epochs > 0.0) {
        bail!("--epochs {epochs}: must be a positive number");
    }
    if num_features == 0 {
        bail!("no training features: the training file gave no usable questions");
    }
    Ok((epochs * num_features as f64 / batch_size as f64).ceil() as u64)
}

/// The feature rows of each of `steps` batches (see the module docs).
pub fn batch_rows(
    num_features: usize,
    batch_size: usize,
    steps: u64,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    if num_features == 0 || batch_size == 0 {
        bail!("batches need at least one feature and a batch size of at least 1");
    }
    let needed = steps as usize * batch_size;
    let mut stream = Vec::with_capacity(needed + num_features);
    let mut epoch = 0u64;
    while stream.len() < needed {
        let mut perm: Vec<usize> = (0..num_features).collect();
        SplitMix64::new(splitmix64(seed ^ domain::FINETUNE_ORDER) ^ splitmix64(epoch))
            .shuffle(&mut perm);
        stream.extend(perm);
        epoch += 1;
    }
    Ok(stream
        .chunks(batch_size)
        .take(steps as usize)
        .map(<[usize]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_epoch_sees_every_feature_once() {
        let rows = batch_rows(10, 4, 5, 3).unwrap();
        assert_eq!(rows.len(), 5);
        assert!(rows.iter().all(|r| r.len() == 4));
        let flat: Vec<usize> = rows.concat();
        let mut first: Vec<usize> = flat[..10].to_vec();
        first.sort_unstable();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        let mut second: Vec<usize> = flat[10..20].to_vec();
        second.sort_unstable();
        assert_eq!(second, (0..10).collect::<Vec<_>>());
        assert_ne!(flat[..10], flat[10..20], "epochs are shuffled differently");
        assert_eq!(rows, batch_rows(10, 4, 5, 3).unwrap());
        assert_ne!(rows, batch_rows(10, 4, 5, 4).unwrap());
    }

    #[test]
    fn steps_round_up() {
        assert_eq!(steps_for_epochs(100, 32, 2.0).unwrap(), 7);
        assert_eq!(steps_for_epochs(64, 32, 1.0).unwrap(), 2);
        assert!(steps_for_epochs(0, 32, 1.0).is_err());
        assert!(steps_for_epochs(10, 32, 0.0).is_err());
    }
}

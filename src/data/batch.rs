//! Training batches as host arrays, and the compact per-example form the reader passes around.
use super::example::PretrainingExample;

/// One decoded example, narrowed to the dtypes the device takes.
#[derive(Clone, Debug, PartialEq)]
pub struct HostExample {
    pub input_ids: Vec<i32>,
    pub input_mask: Vec<i32>,
    pub segment_ids: Vec<i32>,
    pub masked_lm_positions: Vec<i32>,
    pub masked_lm_ids: Vec<i32>,
    pub masked_lm_weights: Vec<f32>,
    pub next_sentence_label: i32,
}

impl HostExample {
    /// Checks every value the model would otherwise take silently: token ids inside the model's
    /// vocab (`vocab_size`; without one, ids must fit i32), masks and segment ids 0/1, positions
    /// inside the sequence, weights finite and not negative, labels 0/1. A gather clamps an id
    /// past the vocab to the last row and a one-hot of it is all zeros, so a shard made with
    /// another vocab would train on wrong rows or with no MLM loss at all.
    pub fn from_example(
        ex: PretrainingExample,
        vocab_size: Option<usize>,
    ) -> Result<HostExample, String> {
        let seq_len = ex.input_ids.len();
        let narrow = |name: &str, v: Vec<i64>, lo: i64, hi: i64| -> Result<Vec<i32>, String> {
            v.into_iter()
                .enumerate()
                .map(|(i, x)| {
                    if (lo..=hi).contains(&x) {
                        Ok(x as i32)
                    } else {
                        Err(format!(
                            "feature {name} holds {x} at index {i}, outside {lo}..={hi}"
                        ))
                    }
                })
                .collect()
        };
        let ids = |name: &str, v: Vec<i64>| -> Result<Vec<i32>, String> {
            let Some(vocab) = vocab_size else {
                return narrow(name, v, 0, i64::from(i32::MAX));
            };
            narrow(name, v, 0, vocab as i64 - 1).map_err(|e| {
                format!(
                    "{e}: the model's vocab has {vocab} ids, so these shards were made with \
                     another vocab (make them again with this model's vocab.txt, or set \
                     [model] vocab_size to the vocab create-data used)"
                )
            })
        };
        let last = seq_len.saturating_sub(1) as i64;
        if !(0..=1).contains(&ex.next_sentence_label) {
            return Err(format!(
                "next_sentence_labels is {}, expected 0 or 1",
                ex.next_sentence_label
            ));
        }
        if let Some((i, w)) = ex
            .masked_lm_weights
            .iter()
            .enumerate()
            .find(|(_, w)| !w.is_finite() || **w < 0.0)
        {
            return Err(format!(
                "feature masked_lm_weights holds {w} at index {i}; weights must be finite and \
                 not negative (create-data writes 1.0 for a prediction and 0.0 for padding)"
            ));
        }
        Ok(HostExample {
            input_ids: ids("input_ids", ex.input_ids)?,
            input_mask: narrow("input_mask", ex.input_mask, 0, 1)?,
            segment_ids: narrow("segment_ids", ex.segment_ids, 0, 1)?,
            masked_lm_positions: narrow("masked_lm_positions", ex.masked_lm_positions, 0, last)?,
            masked_lm_ids: ids("masked_lm_ids", ex.masked_lm_ids)?,
            masked_lm_weights: ex.masked_lm_weights,
            next_sentence_label: ex.next_sentence_label as i32,
        })
    }
}

/// `batch_size` examples as row-major host arrays: `[batch, seq_len]` for input_ids, input_mask,
/// segment_ids; `[batch, max_predictions]` for masked_lm_positions, masked_lm_ids,
/// masked_lm_weights; `[batch]` for next_sentence_labels. When a finite read ends mid-batch the
/// rest is padding rows (all zeros: no tokens, zero weights) and `real_rows` says how many rows
/// are examples.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub batch_size: usize,
    pub seq_len: usize,
    pub max_predictions: usize,
    pub input_ids: Vec<i32>,
    pub input_mask: Vec<i32>,
    pub segment_ids: Vec<i32>,
    pub masked_lm_positions: Vec<i32>,
    pub masked_lm_ids: Vec<i32>,
    pub masked_lm_weights: Vec<f32>,
    pub next_sentence_labels: Vec<i32>,
    pub real_rows: usize,
}

impl Batch {
    pub fn with_capacity(batch_size: usize, seq_len: usize, max_predictions: usize) -> Batch {
        let s = batch_size * seq_len;
        let p = batch_size * max_predictions;
        Batch {
            batch_size,
            seq_len,
            max_predictions,
            input_ids: Vec::with_capacity(s),
            input_mask: Vec::with_capacity(s),
            segment_ids: Vec::with_capacity(s),
            masked_lm_positions: Vec::with_capacity(p),
            masked_lm_ids: Vec::with_capacity(p),
            masked_lm_weights: Vec::with_capacity(p),
            next_sentence_labels: Vec::with_capacity(batch_size),
            real_rows: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.next_sentence_labels.len()
    }

    pub fn is_full(&self) -> bool {
        self.rows() >= self.batch_size
    }

    pub fn push(&mut self, ex: &HostExample) {
        self.input_ids.extend_from_slice(&ex.input_ids);
        self.input_mask.extend_from_slice(&ex.input_mask);
        self.segment_ids.extend_from_slice(&ex.segment_ids);
        self.masked_lm_positions
            .extend_from_slice(&ex.masked_lm_positions);
        self.masked_lm_ids.extend_from_slice(&ex.masked_lm_ids);
        self.masked_lm_weights
            .extend_from_slice(&ex.masked_lm_weights);
        self.next_sentence_labels.push(ex.next_sentence_label);
        self.real_rows += 1;
    }

    /// Fills the remaining rows with zeros.
    pub fn pad(&mut self) {
        let (b, s, p) = (self.batch_size, self.seq_len, self.max_predictions);
        self.input_ids.resize(b * s, 0);
        self.input_mask.resize(b * s, 0);
        self.segment_ids.resize(b * s, 0);
        self.masked_lm_positions.resize(b * p, 0);
        self.masked_lm_ids.resize(b * p, 0);
        self.masked_lm_weights.resize(b * p, 0.0);
        self.next_sentence_labels.resize(b, 0);
    }

    /// Example `row` (for tests and debugging).
    pub fn row(&self, row: usize) -> Option<HostExample> {
        if row >= self.rows() {
            return None;
        }
        let (s, p) = (self.seq_len, self.max_predictions);
        Some(HostExample {
            input_ids: self.input_ids[row * s..(row + 1) * s].to_vec(),
            input_mask: self.input_mask[row * s..(row + 1) * s].to_vec(),
            segment_ids: self.segment_ids[row * s..(row + 1) * s].to_vec(),
            masked_lm_positions: self.masked_lm_positions[row * p..(row + 1) * p].to_vec(),
            masked_lm_ids: self.masked_lm_ids[row * p..(row + 1) * p].to_vec(),
            masked_lm_weights: self.masked_lm_weights[row * p..(row + 1) * p].to_vec(),
            next_sentence_label: self.next_sentence_labels[row],
        })
    }
}

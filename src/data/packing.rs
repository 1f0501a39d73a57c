//! Sequence packing: several short pretraining instances in one row of `seq_len` tokens, without
//! cross-contamination (Krell et al. 2021, "Efficient sequence packing without
//! cross-contamination"; the layout of NVIDIA's and Graphcore's packed BERT).
//!
//! A packed row holds up to `max_instances` whole instances back to back, then padding:
//!
//! | field                     | dims                  | in a packed row                              |
//! |---------------------------|-----------------------|----------------------------------------------|
//! | `input_ids`, `segment_ids`| `[seq]`               | each instance's real tokens, copied          |
//! | `input_mask`              | `[seq]`               | the instance's number 1..=k; 0 = padding     |
//! | `position_ids`            | `[seq]`               | 0, 1, ... restarting at each instance        |
//! | `masked_lm_*`             | `[max_predictions]`   | every instance's real predictions, positions shifted by its offset |
//! | `next_sentence_positions` | `[k]`                 | each instance's offset (its `[CLS]`)         |
//! | `next_sentence_labels`    | `[k]`                 | each instance's label                        |
//! | `next_sentence_weights`   | `[k]`                 | 1 = an instance, 0 = an unused slot          |
//!
//! The model (src/model/packed.rs) lets a token attend only to tokens of its own instance, so each
//! instance is computed as if it were alone in its row. Instances are never split. The row's
//! prediction slots are a second capacity: BERT masks ~15% of each instance, rounded per
//! instance, so a packed row needs a few more slots than one instance (Graphcore uses
//! `max_predictions + k`).
//!
//! [`pack_first_fit_decreasing`] assigns instances to rows (longest first, each into the first
//! row with room); [`Packer`] is the same first fit, one instance at a time, for a stream.
use super::batch::HostExample;

/// The capacity of one packed row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackLimits {
    pub seq_len: usize,
    /// Prediction slots of the row, shared by its instances.
    pub max_predictions: usize,
    /// Instances per row (`k`, the NSP slots).
    pub max_instances: usize,
}

impl PackLimits {
    pub fn validate(&self) -> Result<(), String> {
        if self.seq_len == 0 || self.max_predictions == 0 || self.max_instances == 0 {
            return Err(format!(
                "packed rows need seq_len, max_predictions and max_instances_per_row of at \
                 least 1, got {self:?}"
            ));
        }
        Ok(())
    }
}

/// What one instance takes of a row: its real tokens and its real predictions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub tokens: usize,
    pub predictions: usize,
}

impl Footprint {
    /// The footprint of `ex`, checking the unpacked layout packing relies on: `input_mask` is
    /// ones then zeros (at least one real token), and every prediction with a non-zero weight
    /// points at a real token.
    pub fn of(ex: &HostExample) -> Result<Footprint, String> {
        let tokens = ex.input_mask.iter().take_while(|&&m| m == 1).count();
        if tokens == 0 {
            return Err("an example with no real token (input_mask starts with 0)".into());
        }
        if let Some(i) = ex.input_mask[tokens..].iter().position(|&m| m != 0) {
            return Err(format!(
                "input_mask is not ones then zeros (value {} at index {}); packing needs each \
                 example's real tokens first",
                ex.input_mask[tokens + i],
                tokens + i
            ));
        }
        if ex.input_ids.len() < tokens || ex.segment_ids.len() < tokens {
            return Err(format!(
                "input_ids ({}) or segment_ids ({}) are shorter than the {tokens} real tokens",
                ex.input_ids.len(),
                ex.segment_ids.len()
            ));
        }
        let mut predictions = 0;
        for (&p, &w) in ex.masked_lm_positions.iter().zip(&ex.masked_lm_weights) {
            if w == 0.0 {
                continue;
            }
            if p < 0 || p as usize >= tokens {
                return Err(format!(
                    "masked_lm_positions holds {p} with weight {w}, outside the {tokens} real \
                     tokens"
                ));
            }
            predictions += 1;
        }
        Ok(Footprint {
            tokens,
            predictions,
        })
    }
}

/// First-fit row assignment, one instance at a time, into at most `max_rows` rows.
#[derive(Clone, Debug)]
pub struct Packer {
    limits: PackLimits,
    max_rows: usize,
    /// Per row: the used capacity and the instances (caller's indices) in placement order.
    rows: Vec<(Footprint, Vec<usize>)>,
}

impl Packer {
    pub fn new(limits: PackLimits, max_rows: usize) -> Self {
        Self {
            limits,
            max_rows,
            rows: vec![],
        }
    }

    /// Places instance `id` of `fp` into the first row with room (a new row while fewer than
    /// `max_rows` exist); the row's index, or `None` when no row can take it.
    pub fn place(&mut self, id: usize, fp: Footprint) -> Option<usize> {
        let l = self.limits;
        if fp.tokens > l.seq_len || fp.predictions > l.max_predictions {
            return None;
        }
        let fits = |(used, ids): &(Footprint, Vec<usize>)| {
            used.tokens + fp.tokens <= l.seq_len
                && used.predictions + fp.predictions <= l.max_predictions
                && ids.len() < l.max_instances
        };
        let row = match self.rows.iter().position(fits) {
            Some(r) => r,
            None if self.rows.len() < self.max_rows => {
                self.rows.push((Footprint::default(), vec![]));
                self.rows.len() - 1
            }
            None => return None,
        };
        let (used, ids) = &mut self.rows[row];
        used.tokens += fp.tokens;
        used.predictions += fp.predictions;
        ids.push(id);
        Some(row)
    }

    /// The rows' instances, in placement order.
    pub fn rows(&self) -> Vec<Vec<usize>> {
        self.rows.iter().map(|(_, ids)| ids.clone()).collect()
    }
}

/// The indices of `fps` sorted longest first (ties in input order): the order first fit
/// decreasing places them in.
pub fn decreasing(fps: &[Footprint]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..fps.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(fps[i].tokens));
    order
}

/// Rows of instance indices, and the instances that did not fit into `max_rows` rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packing {
    pub rows: Vec<Vec<usize>>,
    pub left_over: Vec<usize>,
}

/// First fit decreasing: instances longest first, each into the first row with room.
pub fn pack_first_fit_decreasing(
    fps: &[Footprint],
    limits: PackLimits,
    max_rows: usize,
) -> Packing {
    let mut packer = Packer::new(limits, max_rows);
    let mut left_over = vec![];
    for i in decreasing(fps) {
        if packer.place(i, fps[i]).is_none() {
            left_over.push(i);
        }
    }
    left_over.sort_unstable();
    Packing {
        rows: packer.rows(),
        left_over,
    }
}

/// Packed rows as row-major host arrays (the layout in the module docs). Rows past the pushed
/// ones are padding after [`PackedBatch::pad`]: no tokens, zero weights.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedBatch {
    pub batch_size: usize,
    pub limits: PackLimits,
    pub input_ids: Vec<i32>,
    pub input_mask: Vec<i32>,
    pub segment_ids: Vec<i32>,
    pub position_ids: Vec<i32>,
    pub masked_lm_positions: Vec<i32>,
    pub masked_lm_ids: Vec<i32>,
    pub masked_lm_weights: Vec<f32>,
    pub next_sentence_positions: Vec<i32>,
    pub next_sentence_labels: Vec<i32>,
    pub next_sentence_weights: Vec<f32>,
    /// Rows pushed so far.
    pub rows: usize,
    /// Instances in the pushed rows.
    pub instances: usize,
    /// Real (non-padding) tokens in the pushed rows.
    pub real_tokens: usize,
}

impl PackedBatch {
    pub fn new(batch_size: usize, limits: PackLimits) -> Self {
        Self {
            batch_size,
            limits,
            input_ids: vec![],
            input_mask: vec![],
            segment_ids: vec![],
            position_ids: vec![],
            masked_lm_positions: vec![],
            masked_lm_ids: vec![],
            masked_lm_weights: vec![],
            next_sentence_positions: vec![],
            next_sentence_labels: vec![],
            next_sentence_weights: vec![],
            rows: 0,
            instances: 0,
            real_tokens: 0,
        }
    }

    /// Appends one row holding `instances` in order; an error when the batch is full or they
    /// exceed the row's limits (nothing is appended then).
    pub fn push_row(&mut self, instances: &[&HostExample]) -> Result<(), String> {
        let l = self.limits;
        if self.rows >= self.batch_size {
            return Err(format!(
                "the batch already has its {} rows",
                self.batch_size
            ));
        }
        if instances.len() > l.max_instances {
            return Err(format!(
                "{} instances exceed max_instances_per_row {}",
                instances.len(),
                l.max_instances
            ));
        }
        let fps = instances
            .iter()
            .map(|ex| Footprint::of(ex))
            .collect::<Result<Vec<_>, _>>()?;
        let tokens: usize = fps.iter().map(|f| f.tokens).sum();
        let predictions: usize = fps.iter().map(|f| f.predictions).sum();
        if tokens > l.seq_len || predictions > l.max_predictions {
            return Err(format!(
                "{tokens} tokens and {predictions} predictions exceed a row of {} tokens and {} \
                 predictions",
                l.seq_len, l.max_predictions
            ));
        }
        let mut offset = 0;
        for (n, (ex, fp)) in instances.iter().zip(&fps).enumerate() {
            let t = fp.tokens;
            self.input_ids.extend_from_slice(&ex.input_ids[..t]);
            self.input_mask.extend(std::iter::repeat_n(n as i32 + 1, t));
            self.segment_ids.extend_from_slice(&ex.segment_ids[..t]);
            self.position_ids.extend(0..t as i32);
            let real = ex
                .masked_lm_positions
                .iter()
                .zip(&ex.masked_lm_ids)
                .zip(&ex.masked_lm_weights)
                .filter(|(_, &w)| w != 0.0);
            for ((&p, &id), &w) in real {
                self.masked_lm_positions.push(p + offset as i32);
                self.masked_lm_ids.push(id);
                self.masked_lm_weights.push(w);
            }
            self.next_sentence_positions.push(offset as i32);
            self.next_sentence_labels.push(ex.next_sentence_label);
            self.next_sentence_weights.push(1.0);
            offset += t;
        }
        self.rows += 1;
        self.instances += instances.len();
        self.real_tokens += tokens;
        let (s, p, k) = (l.seq_len, l.max_predictions, l.max_instances);
        for v in [
            &mut self.input_ids,
            &mut self.input_mask,
            &mut self.segment_ids,
            &mut self.position_ids,
        ] {
            v.resize(self.rows * s, 0);
        }
        self.masked_lm_positions.resize(self.rows * p, 0);
        self.masked_lm_ids.resize(self.rows * p, 0);
        self.masked_lm_weights.resize(self.rows * p, 0.0);
        self.next_sentence_positions.resize(self.rows * k, 0);
        self.next_sentence_labels.resize(self.rows * k, 0);
        self.next_sentence_weights.resize(self.rows * k, 0.0);
        Ok(())
    }

    /// Fills the remaining rows with padding (all zeros).
    pub fn pad(&mut self) {
        let (b, l) = (self.batch_size, self.limits);
        for v in [
            &mut self.input_ids,
            &mut self.input_mask,
            &mut self.segment_ids,
            &mut self.position_ids,
        ] {
            v.resize(b * l.seq_len, 0);
        }
        self.masked_lm_positions.resize(b * l.max_predictions, 0);
        self.masked_lm_ids.resize(b * l.max_predictions, 0);
        self.masked_lm_weights.resize(b * l.max_predictions, 0.0);
        self.next_sentence_positions.resize(b * l.max_instances, 0);
        self.next_sentence_labels.resize(b * l.max_instances, 0);
        self.next_sentence_weights.resize(b * l.max_instances, 0.0);
    }
}

/// Packs `examples` into one batch of `batch_size` rows by first fit decreasing; returns the
/// padded batch and the indices of the examples that did not fit.
pub fn pack_examples(
    examples: &[HostExample],
    limits: PackLimits,
    batch_size: usize,
) -> Result<(PackedBatch, Vec<usize>), String> {
    limits.validate()?;
    let fps = examples
        .iter()
        .enumerate()
        .map(|(i, ex)| Footprint::of(ex).map_err(|e| format!("example {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let packing = pack_first_fit_decreasing(&fps, limits, batch_size);
    let mut batch = PackedBatch::new(batch_size, limits);
    for row in &packing.rows {
        let members: Vec<&HostExample> = row.iter().map(|&i| &examples[i]).collect();
        batch.push_row(&members)?;
    }
    batch.pad();
    Ok((batch, packing.left_over))
}

//! The pretraining batch as graph values, with google-research/bert's feature names.
//!
//! | field                  | type | dims                       | meaning                                  |
//! |------------------------|------|----------------------------|------------------------------------------|
//! | `input_ids`            | s32  | `[batch, seq]`             | WordPiece ids, `< vocab_size`            |
//! | `input_mask`           | s32  | `[batch, seq]`             | 1 = real token, 0 = padding              |
//! | `segment_ids`          | s32  | `[batch, seq]`             | token type, `< type_vocab_size`          |
//! | `masked_lm_positions`  | s32  | `[batch, max_predictions]` | positions in `0..seq`                    |
//! | `masked_lm_ids`        | s32  | `[batch, max_predictions]` | the original ids at those positions      |
//! | `masked_lm_weights`    | f32  | `[batch, max_predictions]` | 1 = real prediction, 0 = padding         |
//! | `next_sentence_labels` | s32  | `[batch]`                  | 0 = B follows A ("is next"), 1 = random  |
//!
//! A packed batch ([`BatchShapes::max_instances_per_row`] = `Some(k)`, see [`super::packed`])
//! has `next_sentence_labels` of dims `[batch, k]`, instance numbers in `input_mask`, and the
//! [`PACKED_FIELDS`] after the seven.
//!
//! Indices are not range-checked in the graph (XLA clamps out-of-range gathers); the data pipeline
//! checks them when it reads records.
use super::packed::PackedValues;
use super::{ModelError, Result};
use hlo::{Builder, ElementType, Shape, Value};

/// The fields in declaration order (the order of [`BatchShapes::declare`]'s parameters).
pub const BATCH_FIELDS: [&str; 7] = [
    "input_ids",
    "input_mask",
    "segment_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "masked_lm_weights",
    "next_sentence_labels",
];

/// The inputs of a packed batch after [`BATCH_FIELDS`]: s32 `[batch, seq]`, s32 `[batch, k]`,
/// f32 `[batch, k]`.
pub const PACKED_FIELDS: [&str; 3] = [
    "position_ids",
    "next_sentence_positions",
    "next_sentence_weights",
];

/// Static batch dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchShapes {
    pub batch_size: usize,
    pub seq_len: usize,
    /// Prediction slots per row (of a packed row: shared by its instances).
    pub max_predictions: usize,
    /// `Some(k)`: packed rows of up to k instances each ([`super::packed`]); `None`: one
    /// instance per row, padded.
    pub max_instances_per_row: Option<usize>,
}

impl BatchShapes {
    /// The input names: [`BATCH_FIELDS`], then [`PACKED_FIELDS`] when packed.
    pub fn fields(&self) -> Vec<&'static str> {
        let mut names = BATCH_FIELDS.to_vec();
        if self.max_instances_per_row.is_some() {
            names.extend(PACKED_FIELDS);
        }
        names
    }

    /// The shape of each field, in [`BatchShapes::fields`] order.
    pub fn shapes(&self) -> Vec<Shape> {
        let (b, s, p) = (
            self.batch_size as i64,
            self.seq_len as i64,
            self.max_predictions as i64,
        );
        let s32 = |d: Vec<i64>| Shape::array(ElementType::S32, d);
        let labels = match self.max_instances_per_row {
            Some(k) => vec![b, k as i64],
            None => vec![b],
        };
        let mut shapes = vec![
            s32(vec![b, s]),
            s32(vec![b, s]),
            s32(vec![b, s]),
            s32(vec![b, p]),
            s32(vec![b, p]),
            Shape::array(ElementType::F32, vec![b, p]),
            s32(labels.clone()),
        ];
        if self.max_instances_per_row.is_some() {
            shapes.push(s32(vec![b, s]));
            shapes.push(s32(labels.clone()));
            shapes.push(Shape::array(ElementType::F32, labels));
        }
        shapes
    }

    /// Declares the batch parameters in [`BatchShapes::fields`] order.
    pub fn declare(&self, b: &Builder) -> Result<BatchValues> {
        let v = self
            .fields()
            .iter()
            .zip(self.shapes())
            .map(|(name, s)| b.parameter(s, name))
            .collect::<hlo::Result<Vec<_>>>()?;
        Ok(BatchValues {
            input_ids: v[0],
            input_mask: v[1],
            segment_ids: v[2],
            masked_lm_positions: v[3],
            masked_lm_ids: v[4],
            masked_lm_weights: v[5],
            next_sentence_labels: v[6],
            packed: (v.len() > 7).then(|| PackedValues {
                position_ids: v[7],
                next_sentence_positions: v[8],
                next_sentence_weights: v[9],
            }),
        })
    }
}

/// A pretraining batch in the graph (see the module docs for types and dims).
#[derive(Clone, Copy, Debug)]
pub struct BatchValues {
    pub input_ids: Value,
    pub input_mask: Value,
    pub segment_ids: Value,
    pub masked_lm_positions: Value,
    pub masked_lm_ids: Value,
    pub masked_lm_weights: Value,
    pub next_sentence_labels: Value,
    /// The packed layout's own inputs; `None` for padded rows.
    pub packed: Option<PackedValues>,
}

impl BatchValues {
    /// The fields looked up by their names (e.g. in the train step's batch); packed when
    /// `position_ids` is among them.
    pub fn from_lookup(get: impl Fn(&str) -> Option<Value>) -> Result<Self> {
        let field = |name: &'static str| {
            get(name).ok_or_else(|| ModelError::Batch {
                field: name,
                msg: "is missing from the batch".into(),
            })
        };
        Ok(Self {
            input_ids: field("input_ids")?,
            input_mask: field("input_mask")?,
            segment_ids: field("segment_ids")?,
            masked_lm_positions: field("masked_lm_positions")?,
            masked_lm_ids: field("masked_lm_ids")?,
            masked_lm_weights: field("masked_lm_weights")?,
            next_sentence_labels: field("next_sentence_labels")?,
            packed: match get(PACKED_FIELDS[0]) {
                None => None,
                Some(position_ids) => Some(PackedValues {
                    position_ids,
                    next_sentence_positions: field("next_sentence_positions")?,
                    next_sentence_weights: field("next_sentence_weights")?,
                }),
            },
        })
    }

    /// Checks every field against the module docs' table and returns the dims.
    pub fn shapes(&self, b: &Builder) -> Result<BatchShapes> {
        let ids = dims_of(b, self.input_ids, "input_ids", ElementType::S32, 2)?;
        let (batch, seq) = (ids[0], ids[1]);
        let pos = dims_of(
            b,
            self.masked_lm_positions,
            "masked_lm_positions",
            ElementType::S32,
            2,
        )?;
        let k = match self.packed {
            None => None,
            Some(p) => {
                let field = "next_sentence_positions";
                Some(dims_of(b, p.next_sentence_positions, field, ElementType::S32, 2)?[1])
            }
        };
        let shapes = BatchShapes {
            batch_size: batch,
            seq_len: seq,
            max_predictions: pos[1],
            max_instances_per_row: k,
        };
        let mut fields = vec![
            self.input_ids,
            self.input_mask,
            self.segment_ids,
            self.masked_lm_positions,
            self.masked_lm_ids,
            self.masked_lm_weights,
            self.next_sentence_labels,
        ];
        if let Some(p) = self.packed {
            fields.extend([
                p.position_ids,
                p.next_sentence_positions,
                p.next_sentence_weights,
            ]);
        }
        for ((field, v), w) in shapes.fields().into_iter().zip(fields).zip(shapes.shapes()) {
            let got = b.shape(v)?;
            if got != w {
                return Err(ModelError::Batch {
                    field,
                    msg: format!(
                        "is {got}, expected {w} (from input_ids, masked_lm_positions and, when \
                         packed, next_sentence_positions)"
                    ),
                });
            }
        }
        Ok(shapes)
    }
}

/// The dims of `v`, checked to be `ty` of `rank`.
pub(crate) fn dims_of(
    b: &Builder,
    v: Value,
    field: &'static str,
    ty: ElementType,
    rank: usize,
) -> Result<Vec<usize>> {
    let a = b.array_shape(v, "parameter")?;
    if a.ty != ty || a.rank() != rank {
        return Err(ModelError::Batch {
            field,
            msg: format!("is {a}, expected {ty} of rank {rank}"),
        });
    }
    Ok(a.dims.iter().map(|&d| d as usize).collect())
}

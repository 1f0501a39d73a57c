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
//! Indices are not range-checked in the graph (XLA clamps out-of-range gathers); the data pipeline
//! checks them when it reads records.
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

/// Static batch dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchShapes {
    pub batch_size: usize,
    pub seq_len: usize,
    pub max_predictions: usize,
}

impl BatchShapes {
    /// The shape of each field, in [`BATCH_FIELDS`] order.
    pub fn shapes(&self) -> Vec<Shape> {
        let (b, s, p) = (
            self.batch_size as i64,
            self.seq_len as i64,
            self.max_predictions as i64,
        );
        let s32 = |d: Vec<i64>| Shape::array(ElementType::S32, d);
        vec![
            s32(vec![b, s]),
            s32(vec![b, s]),
            s32(vec![b, s]),
            s32(vec![b, p]),
            s32(vec![b, p]),
            Shape::array(ElementType::F32, vec![b, p]),
            s32(vec![b]),
        ]
    }

    /// Declares the seven batch parameters in [`BATCH_FIELDS`] order.
    pub fn declare(&self, b: &Builder) -> Result<BatchValues> {
        let v = BATCH_FIELDS
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
}

impl BatchValues {
    /// The fields looked up by their [`BATCH_FIELDS`] names (e.g. in the train step's batch).
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
        let shapes = BatchShapes {
            batch_size: batch,
            seq_len: seq,
            max_predictions: pos[1],
        };
        let want = shapes.shapes();
        let fields = [
            self.input_ids,
            self.input_mask,
            self.segment_ids,
            self.masked_lm_positions,
            self.masked_lm_ids,
            self.masked_lm_weights,
            self.next_sentence_labels,
        ];
        for ((field, v), w) in BATCH_FIELDS.iter().zip(fields).zip(want) {
            let got = b.shape(v)?;
            if got != w {
                return Err(ModelError::Batch {
                    field,
                    msg: format!("is {got}, expected {w} (from input_ids and masked_lm_positions)"),
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

//! tf.train.Example messages (prost types generated from proto/tensorflow) and the BERT
//! pretraining example google-research/bert writes: `input_ids`, `input_mask`, `segment_ids`
//! (int64 × max_seq_length), `masked_lm_positions`, `masked_lm_ids` (int64 × max_predictions),
//! `masked_lm_weights` (float × max_predictions), `next_sentence_labels` (int64 × 1).
use prost::Message;

/// Generated from proto/tensorflow/{example,feature}.proto (TensorFlow's field numbers).
pub mod tf {
    include!(concat!(env!("OUT_DIR"), "/tensorflow.rs"));
}

/// One pretraining example, padded to fixed lengths, as stored in a shard.
#[derive(Clone, Debug, PartialEq)]
pub struct PretrainingExample {
    pub input_ids: Vec<i64>,
    pub input_mask: Vec<i64>,
    pub segment_ids: Vec<i64>,
    pub masked_lm_positions: Vec<i64>,
    pub masked_lm_ids: Vec<i64>,
    pub masked_lm_weights: Vec<f32>,
    pub next_sentence_label: i64,
}

fn int_feature(values: Vec<i64>) -> tf::Feature {
    tf::Feature {
        kind: Some(tf::feature::Kind::Int64List(tf::Int64List {
            value: values,
        })),
    }
}

fn float_feature(values: Vec<f32>) -> tf::Feature {
    tf::Feature {
        kind: Some(tf::feature::Kind::FloatList(tf::FloatList {
            value: values,
        })),
    }
}

impl PretrainingExample {
    pub fn to_example(&self) -> tf::Example {
        let mut f = std::collections::BTreeMap::new();
        f.insert("input_ids".into(), int_feature(self.input_ids.clone()));
        f.insert("input_mask".into(), int_feature(self.input_mask.clone()));
        f.insert("segment_ids".into(), int_feature(self.segment_ids.clone()));
        f.insert(
            "masked_lm_positions".into(),
            int_feature(self.masked_lm_positions.clone()),
        );
        f.insert(
            "masked_lm_ids".into(),
            int_feature(self.masked_lm_ids.clone()),
        );
        f.insert(
            "masked_lm_weights".into(),
            float_feature(self.masked_lm_weights.clone()),
        );
        f.insert(
            "next_sentence_labels".into(),
            int_feature(vec![self.next_sentence_label]),
        );
        tf::Example {
            features: Some(tf::Features { feature: f }),
        }
    }

    /// Serialized tf.train.Example with features in name order (TensorFlow's deterministic
    /// serialization gives the same bytes).
    pub fn encode(&self) -> Vec<u8> {
        self.to_example().encode_to_vec()
    }

    /// Decodes and checks every feature's type and length; the error says which feature is wrong
    /// and how (the caller adds the file and offset).
    pub fn decode(bytes: &[u8], seq_len: usize, max_predictions: usize) -> Result<Self, String> {
        let ex = tf::Example::decode(bytes).map_err(|e| format!("not a tf.train.Example: {e}"))?;
        let features = ex.features.unwrap_or_default().feature;
        let ints = |name: &str, len: usize| -> Result<Vec<i64>, String> {
            match features.get(name).and_then(|f| f.kind.as_ref()) {
                Some(tf::feature::Kind::Int64List(l)) if l.value.len() == len => {
                    Ok(l.value.clone())
                }
                Some(tf::feature::Kind::Int64List(l)) => Err(format!(
                    "feature {name} has {} values, expected {len} (check --seq-len / \
                     --max-predictions against the values the shards were made with)",
                    l.value.len()
                )),
                Some(_) => Err(format!("feature {name} is not an int64 list")),
                None => Err(format!("feature {name} is missing")),
            }
        };
        let weights = match features
            .get("masked_lm_weights")
            .and_then(|f| f.kind.as_ref())
        {
            Some(tf::feature::Kind::FloatList(l)) if l.value.len() == max_predictions => {
                l.value.clone()
            }
            Some(tf::feature::Kind::FloatList(l)) => {
                return Err(format!(
                    "feature masked_lm_weights has {} values, expected {max_predictions} (check \
                     --max-predictions against the value the shards were made with)",
                    l.value.len()
                ))
            }
            Some(_) => return Err("feature masked_lm_weights is not a float list".into()),
            None => return Err("feature masked_lm_weights is missing".into()),
        };
        Ok(PretrainingExample {
            input_ids: ints("input_ids", seq_len)?,
            input_mask: ints("input_mask", seq_len)?,
            segment_ids: ints("segment_ids", seq_len)?,
            masked_lm_positions: ints("masked_lm_positions", max_predictions)?,
            masked_lm_ids: ints("masked_lm_ids", max_predictions)?,
            masked_lm_weights: weights,
            next_sentence_label: ints("next_sentence_labels", 1)?[0],
        })
    }
}

//! The pretraining fixture several tests share: TFRecord shards of random masked-LM examples,
//! the tiny run config that trains on them, and the ways those tests compare two runs.
// Each test binary uses only part of this module.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Display;
use std::path::Path;
use tpu_run::ckpt::Checkpoint;
use tpu_run::data::example::PretrainingExample;
use tpu_run::data::tfrecord::RecordWriter;
use tpu_run::pretrain::{PretrainConfig, RunOptions, RunSummary};

/// Where the token ids of an example come from.
pub enum Tokens {
    /// One of four "topics" of 20 ids (10..90) per example, so that there is something to learn.
    Topics,
    /// Uniformly from `from..vocab`.
    Uniform { from: i64, vocab: i64 },
}

/// Shards of random examples as create-data writes them: 8..=`seq` real tokens then padding,
/// [CLS] first, the second half of the real tokens as segment B, exactly `preds` masked
/// positions (replaced by [MASK], weight 1) and a random next-sentence label.
pub struct MaskedShards {
    /// Of the one generator all shards are drawn from, in order: the same seed, the same bytes.
    pub seed: u64,
    pub shards: usize,
    pub per_shard: usize,
    pub tokens: Tokens,
    pub seq: usize,
    pub preds: usize,
}

impl MaskedShards {
    /// Writes `part-0.tfrecord`, `part-1.tfrecord`, ... into `dir`; the pattern matching them.
    pub fn write(&self, dir: &Path) -> String {
        std::fs::create_dir_all(dir).unwrap();
        let mut rng = StdRng::seed_from_u64(self.seed);
        for s in 0..self.shards {
            let mut w = RecordWriter::create(&dir.join(format!("part-{s}.tfrecord"))).unwrap();
            for _ in 0..self.per_shard {
                w.write_record(&self.example(&mut rng).encode()).unwrap();
            }
            w.finish().unwrap();
        }
        dir.join("*.tfrecord").display().to_string()
    }

    fn example(&self, rng: &mut StdRng) -> PretrainingExample {
        let (seq, preds) = (self.seq, self.preds);
        let len = rng.gen_range(8..=seq);
        let mut ids: Vec<i64> = match self.tokens {
            Tokens::Topics => {
                let topic = rng.gen_range(0..4) * 20 + 10;
                (0..len).map(|_| topic + rng.gen_range(0..20)).collect()
            }
            Tokens::Uniform { from, vocab } => {
                (0..len).map(|_| rng.gen_range(from..vocab)).collect()
            }
        };
        ids[0] = 2; // [CLS]
        ids.resize(seq, 0);
        let mut mask = vec![1i64; len];
        mask.resize(seq, 0);
        let segments: Vec<i64> = (0..seq)
            .map(|i| i64::from(i >= len / 2 && i < len))
            .collect();
        let mut positions: Vec<i64> = rand::seq::index::sample(rng, len - 1, preds)
            .into_iter()
            .map(|p| p as i64 + 1)
            .collect();
        positions.sort_unstable();
        let labels: Vec<i64> = positions.iter().map(|&p| ids[p as usize]).collect();
        for &p in &positions {
            ids[p as usize] = 4; // [MASK]
        }
        PretrainingExample {
            input_ids: ids,
            input_mask: mask,
            segment_ids: segments,
            masked_lm_positions: positions,
            masked_lm_ids: labels,
            masked_lm_weights: vec![1.0; preds],
            next_sentence_label: rng.gen_range(0..2),
        }
    }
}

/// The tiny run these tests train: the tiny preset (dropout on) cut to hidden size 32 and 2
/// heads, rows of `seq` tokens with `preds` predictions from the shards `data` (a shuffle window
/// of 8, 2 files read at once), batches of 4, 2 warmup steps to 3e-3, seed 7, no periodic
/// checkpoint, every step logged under `out`, no progress bar. `more` is TOML whose keys are
/// added to these or replace them, section by section.
pub fn tiny_run(
    vocab: usize,
    seq: usize,
    preds: usize,
    data: &str,
    out: impl Display,
    more: &str,
) -> PretrainConfig {
    let base = format!(
        r#"
        [model]
        preset = "tiny"
        vocab_size = {vocab}
        hidden_size = 32
        num_attention_heads = 2
        max_position_embeddings = {seq}
        [data]
        train = "{data}"
        seq_len = {seq}
        max_predictions = {preds}
        shuffle_buffer = 8
        cycle_length = 2
        [train]
        batch_size = 4
        warmup_steps = 2
        learning_rate = 3e-3
        seed = 7
        [checkpoint]
        interval = 0
        [output]
        dir = "{out}"
        log_every = 1
        progress = false
        "#
    );
    let mut table: toml::Table = base.parse().unwrap();
    merge(
        &mut table,
        more.parse().expect("the run's own settings are TOML"),
    );
    PretrainConfig::from_toml_str(&table.to_string(), "test config").unwrap()
}

/// `from`'s keys into `into`, tables merged key by key, anything else replaced.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Run options that print nothing, stopping after `stop_after` steps when given.
pub fn quiet(stop_after: Option<u64>) -> RunOptions {
    RunOptions {
        stop_after,
        print: false,
        ..Default::default()
    }
}

/// (step, loss bits, (metric name, value bits)...) of a step.
pub type StepBits = (u64, u32, Vec<(String, u32)>);

/// Every step's loss and metrics as bits, to compare two runs exactly.
pub fn step_bits(s: &RunSummary) -> Vec<StepBits> {
    s.history
        .iter()
        .map(|r| {
            let m = r.metrics.iter().map(|(n, v)| (n.clone(), v.to_bits()));
            (r.step, r.loss.to_bits(), m.collect())
        })
        .collect()
}

/// A checkpoint's parameters and optimizer state, (name, bytes) each.
pub fn tensor_bytes(ckpt: &Path) -> Vec<(String, Vec<u8>)> {
    let state = Checkpoint::open(ckpt).unwrap().load(None).unwrap();
    state
        .params
        .iter()
        .chain(state.opt_state.iter())
        .map(|(n, l)| (n.clone(), l.bytes().to_vec()))
        .collect()
}

/// Shards of fixed examples (16 tokens, predictions at 3 and 9), `records[s]` in shard `s`:
/// record `r` of shard `s` tells which it is through its ids, for tests that follow which
/// records each process read.
pub fn write_patterned_shards(dir: &Path, records: &[u64]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for (s, &n) in records.iter().enumerate() {
        let mut w = RecordWriter::create(&dir.join(format!("part-{s}.tfrecord"))).unwrap();
        for r in 0..n as i64 {
            w.write_record(&patterned_example(s as i64, r).encode())
                .unwrap();
        }
        w.finish().unwrap();
    }
    dir.join("*.tfrecord").display().to_string()
}

fn patterned_example(s: i64, r: i64) -> PretrainingExample {
    PretrainingExample {
        input_ids: (0..16).map(|i| 1000 + (i * 7 + r * 3 + s) % 900).collect(),
        input_mask: vec![1; 16],
        segment_ids: (0..16).map(|i| i64::from(i >= 8)).collect(),
        masked_lm_positions: vec![3, 9],
        masked_lm_ids: vec![1003 + r, 1009 + s],
        masked_lm_weights: vec![1.0, 1.0],
        next_sentence_label: r % 2,
    }
}

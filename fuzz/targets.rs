//! Every parser of outside bytes, as one function per fuzz target: each takes arbitrary bytes
//! and must return (an error is a fine answer) without panicking, hanging or allocating without
//! bound. Shared by the coverage-guided cargo-fuzz targets (fuzz/fuzz_targets, nightly) and the
//! bounded replay in tests/fuzz_replay.rs (stable, run by .ci/run).
#![allow(dead_code)]

use prost::Message;
use std::io::Cursor;
use std::path::Path;

/// A target: takes any bytes, returns whatever happens, never panics.
pub type Target = fn(&[u8]);

/// (name, function) of every target; the name is the corpus directory under fuzz/corpus.
pub const TARGETS: &[(&str, Target)] = &[
    ("tfrecord", tfrecord),
    ("tf_example", tf_example),
    ("squad_json", squad_json),
    ("safetensors", safetensors),
    ("manifest", manifest),
    ("sstable", sstable),
    ("hf_config", hf_config),
    ("coordinator", coordinator),
    ("glue_tsv", glue_tsv),
];

/// TFRecord framing (lengths, masked CRCs, truncation), every record up to the end or an error.
pub fn tfrecord(data: &[u8]) {
    let mut r = tpu_run::data::tfrecord::RecordReader::new(
        Cursor::new(data),
        Path::new("fuzz.tfrecord"),
        true,
    );
    // Each record consumes at least its 16 framing bytes, so this ends; bounded anyway.
    for _ in 0..=data.len() / 16 {
        match r.next_record() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
}

/// tf.train.Example decoding and the value checks of a pretraining example.
pub fn tf_example(data: &[u8]) {
    use tpu_run::data::example::PretrainingExample;
    // The seed corpus's shape (create-data's golden seq48 shards), and another.
    for (seq, preds) in [(48, 8), (16, 4)] {
        if let Ok(ex) = PretrainingExample::decode(data, seq, preds) {
            let _ = tpu_run::data::batch::HostExample::from_example(ex, Some(30522));
        }
    }
}

/// A GLUE TSV file read as every task's train, dev and test file.
pub fn glue_tsv(data: &[u8]) {
    use tpu_run::glue::{examples::examples_of, tsv::parse_tsv, Split, Task};
    let path = Path::new("fuzz.tsv");
    if let Ok(lines) = parse_tsv(data, path) {
        for task in Task::ALL {
            for split in [Split::Train, Split::Dev, Split::Test] {
                let _ = examples_of(task, split, path, lines.clone());
            }
        }
    }
}

/// SQuAD v1.1/v2.0 JSON.
pub fn squad_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut w = tpu_run::squad::warnings::Warnings::new();
        let _ =
            tpu_run::squad::json::SquadDataset::from_json_str(text, Path::new("fuzz.json"), &mut w);
    }
}

/// A safetensors file (header JSON, offsets, dtypes) as checkpoints and HF imports read it.
pub fn safetensors(data: &[u8]) {
    let _ = tpu_run::ckpt::tensors::TensorFile::parse(Path::new("fuzz.safetensors"), data);
}

/// Our checkpoint manifest (checksum line and JSON).
pub fn manifest(data: &[u8]) {
    if let Ok(m) = tpu_run::ckpt::Manifest::parse(data) {
        let _ = m.check(Path::new("manifest.json"));
    }
}

/// A TensorFlow checkpoint index (SSTable: footer, block handles, prefix-compressed keys).
pub fn sstable(data: &[u8]) {
    let _ = tpu_run::import::sstable::parse_table(data, Path::new("fuzz.index"));
}

/// A model config.json in both flavors (Hugging Face, google-research/bert).
pub fn hf_config(data: &[u8]) {
    use tpu_run::model::{BertConfig, ConfigFlavor};
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = BertConfig::from_json_str(text, ConfigFlavor::HuggingFace);
        let _ = BertConfig::from_json_str(text, ConfigFlavor::GoogleResearch);
    }
}

/// The coordinator's request messages as its server decodes them.
pub fn coordinator(data: &[u8]) {
    use tpu_run::coord::proto as p;
    let _ = p::RegisterRequest::decode(data);
    let _ = p::WaitMembersRequest::decode(data);
    let _ = p::HeartbeatRequest::decode(data);
    let _ = p::ShutdownRequest::decode(data);
    let _ = p::PutRequest::decode(data);
    let _ = p::GetRequest::decode(data);
    let _ = p::TryGetRequest::decode(data);
    let _ = p::BarrierRequest::decode(data);
}

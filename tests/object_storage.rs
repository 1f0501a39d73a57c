//! Data and checkpoints on object storage, end to end against a local S3-compatible server
//! (moto on 127.0.0.1, see tests/objstore_support): create-data writes shards to a bucket,
//! pretrain streams them from it and checkpoints into it, a run stopped after a checkpoint
//! resumes from the bucket bit for bit, and damaged objects are caught (a flipped byte in a
//! shard, a truncated shard, a checkpoint without its manifest, a truncated checkpoint file).
//! gs:// goes through the same code with another client; it is not run against GCS here.
mod cli_support;
mod objstore_support;
mod pretrain_support;

use cli_support::{run_fail, run_ok, stderr, stdout, tpu_run};
use pretrain_support::{quiet, tensor_bytes, tiny_run};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use tpu_run::ckpt::{Spec, State, Store};
use tpu_run::data::{create_pretraining_data, CreateDataConfig, InputFormat};
use tpu_run::data::{Reader, ReaderConfig};
use tpu_run::pretrain::{run, PretrainConfig, RunSummary};
use tpu_run::storage;

const SEQ: usize = 16;
const PREDS: usize = 3;
const WORDS: usize = 59;
/// [PAD] [UNK] [CLS] [SEP] [MASK] and the words.
const VOCAB: usize = 5 + WORDS;

/// A bucket of its own for each test, on the shared server; `None` when moto is unavailable.
fn bucket(name: &str) -> Option<String> {
    let moto = objstore_support::server()?;
    let bucket = format!("{name}-{}", std::process::id());
    moto.create_bucket(&bucket);
    Some(format!("s3://{bucket}"))
}

fn word(i: usize) -> String {
    format!("w{i:02}")
}

/// A vocab of [`VOCAB`] entries and a text of documents drawn from four "topics" of it.
fn corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let vocab = dir.join("vocab.txt");
    let mut lines: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    lines.extend((0..WORDS).map(word));
    std::fs::write(&vocab, lines.join("\n") + "\n").unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut text = String::new();
    for _ in 0..40 {
        let topic = rng.gen_range(0..4) * 14;
        for _ in 0..6 {
            let n = rng.gen_range(3..8);
            let sentence: Vec<String> =
                (0..n).map(|_| word(topic + rng.gen_range(0..14))).collect();
            text += &sentence.join(" ");
            text += " .\n";
        }
        text += "\n";
    }
    let input = dir.join("input.txt");
    std::fs::write(&input, text).unwrap();
    (vocab, input)
}

/// create-data with two shards written to `output` (a bucket prefix).
fn create_shards(tmp: &Path, output: &str) -> Vec<PathBuf> {
    let (vocab, input) = corpus(tmp);
    let cfg = CreateDataConfig {
        max_seq_length: SEQ,
        max_predictions_per_seq: PREDS,
        dupe_factor: 2,
        num_shards: 2,
        input_format: InputFormat::Sentences,
        ..Default::default()
    };
    let summary = create_pretraining_data(
        &[input.display().to_string()],
        &vocab,
        Path::new(output),
        &cfg,
        false,
    )
    .unwrap();
    summary.shards.iter().map(|s| s.path.clone()).collect()
}

/// A 2-layer BERT of hidden size 32 with dropout on, reading and evaluating on the bucket's
/// shards, writing its outputs (and checkpoints) under `out`.
fn config(data: &str, out: &str) -> PretrainConfig {
    let run = format!(
        r#"
        [data]
        eval = "{data}"
        [train]
        steps = 6
        [eval]
        interval = 2
        batches = 2
        mask_token_id = 4
        [checkpoint]
        keep_last = 2
        [output]
        tensorboard = false
        "#
    );
    tiny_run(VOCAB, SEQ, PREDS, data, out, &run)
}

/// (step, loss bits, metric bits) of every step.
fn bits(s: &RunSummary) -> Vec<(u64, u32, Vec<u32>)> {
    s.history
        .iter()
        .map(|r| {
            let m = r.metrics.iter().map(|(_, v)| v.to_bits()).collect();
            (r.step, r.loss.to_bits(), m)
        })
        .collect()
}

fn train_steps(metrics: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(metrics)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn pretrain_streams_shards_from_a_bucket_and_resumes_from_it_bit_for_bit() {
    let Some(b) = bucket("resume") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let shards = create_shards(tmp.path(), &format!("{b}/shards"));
    assert_eq!(
        shards,
        [
            PathBuf::from(format!("{b}/shards/pretrain-00000-of-00002.tfrecord")),
            PathBuf::from(format!("{b}/shards/pretrain-00001-of-00002.tfrecord")),
        ],
        "create-data reports the uploaded objects"
    );
    let data = format!("{b}/shards/*.tfrecord");

    let whole = run(&config(&data, &format!("{b}/whole")), &quiet(None)).unwrap();
    assert_eq!(whole.history.len(), 6);
    assert!(whole.history.iter().all(|r| r.loss.is_finite()));
    let whole_ckpt = whole.checkpoint.clone().unwrap();
    assert_eq!(
        whole_ckpt,
        PathBuf::from(format!("{b}/whole/checkpoints/step-00000006"))
    );

    // Stopped after a checkpoint at step 3 (as a preempted job), then resumed from the bucket.
    let cfg = config(&data, &format!("{b}/split"));
    let first = run(&cfg, &quiet(Some(3))).unwrap();
    assert_eq!((first.start_step, first.end_step), (0, 3));
    let ckpt3 = first.checkpoint.clone().unwrap();
    assert_eq!(
        ckpt3,
        PathBuf::from(format!("{b}/split/checkpoints/step-00000003"))
    );
    let second = run(&cfg, &quiet(None)).unwrap();
    assert_eq!(second.resumed_from.as_ref(), Some(&ckpt3));
    assert_eq!((second.start_step, second.end_step), (3, 6));

    let split: Vec<_> = bits(&first).into_iter().chain(bits(&second)).collect();
    assert_eq!(split, bits(&whole), "losses and metrics, bit for bit");
    let end = second.checkpoint.clone().unwrap();
    assert_eq!(
        tensor_bytes(&end),
        tensor_bytes(&whole_ckpt),
        "final parameters and state"
    );

    // keep_last = 2 on the bucket: steps 3 and 6 stay.
    let kept = Store::new(format!("{b}/split/checkpoints")).list().unwrap();
    assert_eq!(kept.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 6]);

    // The metrics reached the bucket, each step once.
    let metrics = storage::read(Path::new(&format!("{b}/split/metrics.jsonl"))).unwrap();
    assert_eq!(train_steps(&metrics), [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        second.metrics_file,
        Some(PathBuf::from(format!("{b}/split/metrics.jsonl")))
    );

    // Fine-tuning can start from the bucket's checkpoints.
    let init = tpu_run::finetune::init::load_init(Path::new(&format!("{b}/split/checkpoints")), 1)
        .unwrap();
    assert!(
        init.report
            .contains(&format!("from {b}/split/checkpoints/step-00000006")),
        "{}",
        init.report
    );
}

/// A reader over `files` that stops at the first damaged record (the training default).
fn read_all(files: Vec<PathBuf>) -> Result<usize, String> {
    let mut rc = ReaderConfig::new(files, 4, SEQ, PREDS);
    rc.epochs = Some(1);
    rc.shuffle = false;
    let mut reader = Reader::new(rc).map_err(|e| format!("{e:#}"))?;
    let mut batches = 0;
    while let Some(batch) = reader.next_batch() {
        batch.map_err(|e| format!("{e:#}"))?;
        batches += 1;
    }
    Ok(batches)
}

#[test]
fn damaged_or_truncated_shards_in_a_bucket_are_named_in_the_error() {
    let Some(b) = bucket("damage") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let shards = create_shards(tmp.path(), &format!("{b}/good"));
    let pattern = format!("{b}/good/*.tfrecord");
    let files = ReaderConfig::files_from_patterns(&pattern).unwrap();
    assert_eq!(files, shards);
    assert!(read_all(files.clone()).unwrap() > 0);

    let bytes = storage::read(&shards[0]).unwrap();
    // One byte inside the first record's data (after its 12-byte header).
    let mut flipped = bytes.clone();
    flipped[20] ^= 0x40;
    let bad = PathBuf::from(format!("{b}/bad/flipped.tfrecord"));
    storage::write(&bad, flipped).unwrap();
    let e = read_all(vec![bad.clone()]).unwrap_err();
    assert!(
        e.contains(&format!(
            "{}: corrupt TFRecord data at byte 0",
            bad.display()
        )),
        "{e}"
    );

    let cut = PathBuf::from(format!("{b}/bad/cut.tfrecord"));
    storage::write(&cut, bytes[..bytes.len() - 7].to_vec()).unwrap();
    let e = read_all(vec![cut.clone()]).unwrap_err();
    assert!(
        e.contains(&format!("{}: truncated TFRecord", cut.display())),
        "{e}"
    );

    // Globs match one path segment; nothing matching is an error naming the pattern.
    let none = format!("{b}/*.tfrecord");
    let e = ReaderConfig::files_from_patterns(&none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("matches no file"), "{e}");
    let e = ReaderConfig::files_from_patterns("gcs://x/y.tfrecord").unwrap_err();
    assert!(format!("{e:#}").contains("'gcs' is not supported"), "{e:#}");
}

fn state(step: u64, fill: f32) -> State {
    let w = hlo::Literal::from_slice(&[fill, fill + 1.0, fill + 2.0, fill + 3.0], &[2, 2]).unwrap();
    let m = hlo::Literal::from_slice(&[0.5f32; 4], &[2, 2]).unwrap();
    let mut s = State::new(step, vec![("w".into(), w)], vec![("w/m".into(), m)]);
    s.data_position = serde_json::json!({"shard": step});
    s
}

#[test]
fn a_checkpoint_in_a_bucket_exists_only_with_its_manifest_and_is_checked_on_load() {
    let Some(b) = bucket("ckpt") else { return };
    let root = format!("{b}/run/checkpoints");
    let store = Store::new(&root).with_keep_last(2).unwrap();
    assert!(
        store.latest().unwrap().is_none(),
        "an empty prefix holds no checkpoint"
    );
    for step in 1..=3 {
        store.save(&state(step, step as f32)).unwrap();
    }
    // keep_last = 2: step 1 was evicted, manifest and files.
    let listed: Vec<u64> = store.list().unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(listed, [2, 3]);
    assert!(!storage::exists(Path::new(&format!(
        "{root}/step-00000001/params.safetensors"
    )))
    .unwrap());
    let spec = Spec::of_state(&state(3, 3.0));
    assert_eq!(store.load_latest(&spec).unwrap(), Some(state(3, 3.0)));

    // A save cut short before its manifest (files, no manifest) is not a checkpoint.
    let step4 = format!("{root}/step-00000004");
    let params = storage::read(Path::new(&format!(
        "{root}/step-00000003/params.safetensors"
    )))
    .unwrap();
    storage::write(Path::new(&format!("{step4}/params.safetensors")), params).unwrap();
    let (latest, skipped) = store.latest_with_skipped().unwrap();
    assert_eq!(latest.unwrap().step(), 3);
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].reason.contains("no manifest.json"),
        "{:?}",
        skipped[0]
    );

    // Deleting a checkpoint's manifest takes it away: the run resumes from the one before.
    storage::objects::delete(
        &storage::ObjectUrl::parse(&format!("{root}/step-00000003/manifest.json"))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let (latest, skipped) = store.latest_with_skipped().unwrap();
    assert_eq!(latest.unwrap().step(), 2);
    assert_eq!(skipped.len(), 2);
    assert_eq!(store.load_latest(&spec).unwrap(), Some(state(2, 2.0)));

    // A truncated file of the newest complete checkpoint is an error naming it, never a
    // silent fallback to older state.
    let p2 = PathBuf::from(format!("{root}/step-00000002/params.safetensors"));
    let full = storage::read(&p2).unwrap();
    storage::write(&p2, full[..full.len() - 5].to_vec()).unwrap();
    let e = store.load_latest(&spec).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "{}: is {} bytes, the manifest records {}",
            p2.display(),
            full.len() - 5,
            full.len()
        )),
        "{e}"
    );

    // Saving a step again replaces it whole (its old manifest goes first).
    store.save(&state(2, 20.0)).unwrap();
    assert_eq!(store.load_latest(&spec).unwrap(), Some(state(2, 20.0)));

    let e = Store::new("s3a://x/y").list().unwrap_err().to_string();
    assert!(e.contains("'s3a' is not supported"), "{e}");
}

#[test]
fn object_streams_read_skip_and_reopen_like_files() {
    let Some(b) = bucket("stream") else { return };
    // 3 MiB of a known pattern, read through the streaming reader in odd-sized pieces, with a
    // short skip (read through) and a long one (a new ranged GET).
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let path = PathBuf::from(format!("{b}/blob.bin"));
    storage::write(&path, data.clone()).unwrap();
    assert_eq!(storage::size(&path).unwrap(), data.len() as u64);
    let (mut input, size) = storage::Input::open(&path).unwrap();
    assert_eq!(size, data.len() as u64);
    let mut got = vec![0u8; 1000];
    std::io::Read::read_exact(&mut input, &mut got).unwrap();
    assert_eq!(got, data[..1000]);
    input.skip(5000).unwrap();
    std::io::Read::read_exact(&mut input, &mut got).unwrap();
    assert_eq!(got, data[6000..7000]);
    input.skip(2 << 20).unwrap();
    let mut rest = vec![];
    std::io::Read::read_to_end(&mut input, &mut rest).unwrap();
    assert_eq!(rest, data[7000 + (2 << 20)..]);
    input.seek_to(123).unwrap();
    std::io::Read::read_exact(&mut input, &mut got).unwrap();
    assert_eq!(got, data[123..1123]);

    let missing = PathBuf::from(format!("{b}/missing.bin"));
    assert!(!storage::exists(&missing).unwrap());
    let e = storage::read(&missing).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
}

#[test]
fn large_objects_go_up_in_parts_and_come_back_whole() {
    let Some(b) = bucket("large") else { return };
    // Past the 32 MiB single-PUT limit of src/storage/objects.rs: a multipart upload, from
    // memory (checkpoint files) and from a file (create-data's shards, the output mirror).
    let data: Vec<u8> = (0..(33u32 << 20) + 12345)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    let path = PathBuf::from(format!("{b}/big.bin"));
    storage::write(&path, data.clone()).unwrap();
    assert!(
        storage::read(&path).unwrap() == data,
        "the object read back differs"
    );

    let out = storage::OutputDir::open(Path::new(&format!("{b}/out")), &["absent.jsonl"]).unwrap();
    assert!(!out.local().join("absent.jsonl").exists());
    let local = out.local().join("sub").join("big.bin");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    std::fs::write(&local, &data).unwrap();
    std::fs::write(out.local().join("small.txt"), b"x").unwrap();
    assert_eq!(out.sync().unwrap(), 2);
    let shown = out.shown(&local);
    assert_eq!(shown, PathBuf::from(format!("{b}/out/sub/big.bin")));
    assert_eq!(storage::size(&shown).unwrap(), data.len() as u64);
    assert!(
        storage::read(&shown).unwrap() == data,
        "the uploaded file read back differs"
    );
    let staging = out.local().to_path_buf();
    drop(out);
    assert!(!staging.exists(), "the staging copy is removed");
}

#[test]
fn the_cli_writes_shards_to_a_bucket_and_refuses_other_schemes() {
    let Some(b) = bucket("cli") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (vocab, input) = corpus(tmp.path());
    let out = run_ok(
        tpu_run()
            .args(["create-data", "--quiet", "--input"])
            .arg(&input)
            .arg("--vocab")
            .arg(&vocab)
            .args(["--output", &format!("{b}/cli"), "--max-seq-length", "16"])
            .args(["--max-predictions-per-seq", "3", "--dupe-factor", "1"]),
    );
    let stdout = stdout(&out);
    let shard = format!("{b}/cli/pretrain-00000-of-00001.tfrecord");
    assert!(stdout.contains(&format!("  {shard} (")), "{stdout}");
    assert!(storage::size(Path::new(&shard)).unwrap() > 0);

    // A scheme tpu-run does not speak is refused before anything runs, naming the flag.
    let out = run_fail(
        tpu_run()
            .args(["pretrain", "--synthetic-data", "--steps", "1"])
            .args(["--checkpoint-dir", "gcs://bucket/ckpt"]),
    );
    let stderr = stderr(&out);
    assert!(
        stderr.contains("checkpoint.dir (--checkpoint-dir)")
            && stderr.contains("'gcs' is not supported"),
        "{stderr}"
    );
}

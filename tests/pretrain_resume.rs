//! `tpu-run pretrain` checkpoints: a run stopped at step k and resumed computes the same loss
//! sequence, bit for bit on the CPU plugin, as the uninterrupted run (same data order from the
//! reader's saved position, same dropout keys, same parameters and optimizer state), and ends
//! with the same parameters; damaged checkpoints and mismatched settings are clear errors.
mod pretrain_support;
use pretrain_support::{quiet, step_bits, tensor_bytes, tiny_run, MaskedShards, Tokens};
use std::path::{Path, PathBuf};
use tpu_run::pretrain::{run, PretrainConfig, RunSummary};

const SEQ: usize = 16;
const PREDS: usize = 3;
const VOCAB: usize = 96;

/// Random pretraining examples (real TFRecord shards): ids from a few "topics" so the data is
/// not pure noise, 3 predictions each, some padding, half the pairs "random".
fn write_shards(dir: &Path, shards: usize, per_shard: usize) -> String {
    MaskedShards {
        seed: 99,
        shards,
        per_shard,
        tokens: Tokens::Topics,
        seq: SEQ,
        preds: PREDS,
    }
    .write(dir)
}

/// A 2-layer BERT of hidden size 32 with dropout on, two shards read in parallel with a small
/// shuffle window, an evaluation every 2 steps (which must not disturb training).
fn config(data: &str, out: &Path) -> PretrainConfig {
    let run = format!(
        r#"
        [data]
        eval = "{data}"
        [train]
        steps = 6
        [eval]
        interval = 2
        batches = 2
        [checkpoint]
        keep_last = 3
        "#
    );
    tiny_run(VOCAB, SEQ, PREDS, data, out.display(), &run)
}

#[test]
fn stopped_and_resumed_run_equals_the_uninterrupted_one_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_shards(&tmp.path().join("data"), 2, 24);

    let whole = run(&config(&data, &tmp.path().join("whole")), &quiet(None)).unwrap();
    assert_eq!(whole.history.len(), 6);
    assert!(whole.history.iter().all(|r| r.loss.is_finite()));

    let cfg = config(&data, &tmp.path().join("split"));
    let first = run(&cfg, &quiet(Some(3))).unwrap();
    assert_eq!((first.start_step, first.end_step), (0, 3));
    let ckpt3 = first.checkpoint.clone().unwrap();
    assert!(ckpt3.ends_with("step-00000003"), "{}", ckpt3.display());
    let second = run(&cfg, &quiet(None)).unwrap();
    assert_eq!(second.start_step, 3);
    assert_eq!(second.resumed_from.as_deref(), Some(ckpt3.as_path()));

    let mut resumed = step_bits(&first);
    resumed.extend(step_bits(&second));
    assert_eq!(
        resumed,
        step_bits(&whole),
        "losses and metrics of the resumed run differ"
    );
    // The steps really differ from each other (dropout, data and updates all move).
    let losses: Vec<f32> = whole.history.iter().map(|r| r.loss).collect();
    assert!(losses.windows(2).all(|w| w[0] != w[1]), "{losses:?}");
    assert_eq!(
        tensor_bytes(whole.checkpoint.as_ref().unwrap()),
        tensor_bytes(second.checkpoint.as_ref().unwrap()),
        "final parameters or optimizer state differ"
    );
    // Evaluations happened in both (steps 2, 4, 6) and agree too.
    let evals = |s: &[&RunSummary]| -> Vec<(u64, u64)> {
        s.iter()
            .flat_map(|r| r.evals.iter().map(|(k, e)| (*k, e.mlm_loss.to_bits())))
            .collect()
    };
    assert_eq!(evals(&[&first, &second]), evals(&[&whole]));
    assert_eq!(evals(&[&whole]).len(), 3);

    // metrics.jsonl continues across the restart: one train line per step.
    assert_eq!(
        logged_train_steps(&tmp.path().join("split/metrics.jsonl")),
        vec![1, 2, 3, 4, 5, 6]
    );
}

/// Train-record steps of a run's metrics.jsonl, in file order.
fn logged_train_steps(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_resume_from_an_earlier_checkpoint_logs_each_step_once() {
    // A process killed after step 4 but before its checkpoint was written: the rerun resumes
    // from step 2 and computes steps 3 and 4 again.
    let tmp = tempfile::tempdir().unwrap();
    let data = write_shards(&tmp.path().join("data"), 2, 24);
    let out = tmp.path().join("run");
    let mut cfg = config(&data, &out);
    cfg.checkpoint.interval = 2;
    run(&cfg, &quiet(Some(4))).unwrap();
    std::fs::remove_dir_all(out.join("checkpoints/step-00000004")).unwrap();
    let second = run(&cfg, &quiet(None)).unwrap();
    assert_eq!(second.start_step, 2);
    assert_eq!(
        logged_train_steps(&out.join("metrics.jsonl")),
        vec![1, 2, 3, 4, 5, 6]
    );
    // The first attempt's records of steps 3 and 4 are kept aside, not deleted.
    let aside = logged_train_steps(&out.join("metrics.superseded.jsonl"));
    assert_eq!(aside, vec![3, 4]);
}

/// The latest checkpoint directory of a run's default checkpoint folder.
fn latest(out: &Path) -> PathBuf {
    tpu_run::ckpt::Store::new(out.join("checkpoints"))
        .latest()
        .unwrap()
        .unwrap()
        .path()
        .to_path_buf()
}

#[test]
fn damaged_checkpoints_and_mismatched_settings_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_shards(&tmp.path().join("data"), 2, 12);
    let out = tmp.path().join("run");
    let cfg = config(&data, &out);
    run(&cfg, &quiet(Some(2))).unwrap();
    let ckpt = latest(&out);

    // Another model: refused, naming what differs.
    let mut other = cfg.clone();
    other.model.hidden_size = Some(64);
    let err = format!("{:#}", run(&other, &quiet(None)).unwrap_err());
    assert!(err.contains(&ckpt.display().to_string()), "{err}");
    assert!(
        err.contains("hidden_size") || err.contains("bert.embeddings"),
        "{err}"
    );

    // Another seed: the dropout keys and data order would differ.
    let mut other = cfg.clone();
    other.train.seed = 8;
    let err = format!("{:#}", run(&other, &quiet(None)).unwrap_err());
    assert!(err.contains("the seed"), "{err}");

    // --no-resume never overwrites a directory with checkpoints.
    let mut other = cfg.clone();
    other.checkpoint.resume = false;
    let err = format!("{:#}", run(&other, &quiet(None)).unwrap_err());
    assert!(
        err.contains("--no-resume") && err.contains("step-00000002"),
        "{err}"
    );

    // One flipped byte in the parameters: a CRC error naming the file, never a silent load.
    let params = ckpt.join("params.safetensors");
    let mut bytes = std::fs::read(&params).unwrap();
    let mid = bytes.len() - 100;
    bytes[mid] ^= 0x40;
    std::fs::write(&params, &bytes).unwrap();
    let err = format!("{:#}", run(&cfg, &quiet(None)).unwrap_err());
    assert!(
        err.contains("params.safetensors") && err.contains("CRC"),
        "{err}"
    );
    bytes[mid] ^= 0x40;
    std::fs::write(&params, &bytes).unwrap();

    // A truncated optimizer state file.
    let opt = ckpt.join("opt_state.safetensors");
    let full = std::fs::read(&opt).unwrap();
    std::fs::write(&opt, &full[..full.len() / 2]).unwrap();
    let err = format!("{:#}", run(&cfg, &quiet(None)).unwrap_err());
    assert!(
        err.contains("opt_state.safetensors") && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(&opt, &full).unwrap();

    // Restored, it resumes.
    let s = run(&cfg, &quiet(None)).unwrap();
    assert_eq!((s.start_step, s.end_step), (2, 6));
    assert!(s.skipped_checkpoints.is_empty());

    // One byte of the newest manifest edited (the reader's position in its window), the JSON
    // still valid: the manifest's checksum catches it, the run passes it over with the reason
    // and resumes from the checkpoint before it.
    let newest = latest(&out);
    assert!(newest.ends_with("step-00000006"), "{}", newest.display());
    let manifest = newest.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let at = text
        .find("\"taken\": ")
        .expect("a reader position in the manifest")
        + 9;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&manifest, &bytes).unwrap();
    let mut longer = cfg.clone();
    longer.train.steps = 8;
    let s = run(&longer, &quiet(None)).unwrap();
    assert_eq!((s.start_step, s.end_step), (2, 8));
    assert_eq!(s.skipped_checkpoints.len(), 1);
    assert_eq!(s.skipped_checkpoints[0].path, newest);
    assert!(
        s.skipped_checkpoints[0]
            .reason
            .contains("edited or damaged"),
        "{}",
        s.skipped_checkpoints[0].reason
    );
}

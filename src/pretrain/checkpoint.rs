//! What a pretraining checkpoint holds besides the tensors, and the checks on resume: the model
//! config (the architecture), the precision (`extra.precision`), the optimizer settings, the
//! seed (dropout keys and data order derive from it), the data reader's position in each shard.
//!
//! The attention kernel is not recorded: a checkpoint written on GPU with the fused kernel
//! resumes with the graph one on CPU and back. The precision is, and must match: checkpoints
//! written before it moved out of the model config carry it there as `compute_dtype`, read by
//! [`saved_precision`].
use super::batches::pretrain_dropout;
use super::config::PretrainConfig;
use crate::ckpt::{Checkpoint, OptimizerInfo, RngState, Skipped, Spec, State, Store};
use crate::data::ReaderState;
use crate::model::{BertConfig, ComputeDtype};
use crate::train::{OptimizerKind, Trainer};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// Where the data stands in a checkpoint: a reader's position, or synthetic batches (which
/// derive from the seed and the step alone).
pub fn data_position(reader: Option<ReaderState>) -> Result<Value> {
    Ok(match reader {
        Some(s) => json!({ "reader": serde_json::to_value(s)? }),
        None => json!({ "synthetic": true }),
    })
}

/// The reader state saved by [`data_position`], if the checkpoint read files.
pub fn reader_state(position: &Value, dir: &Path) -> Result<Option<ReaderState>> {
    match position.get("reader") {
        Some(r) => Ok(Some(serde_json::from_value(r.clone()).with_context(
            || {
                format!(
                    "checkpoint {}: data_position.reader is not a reader state",
                    dir.display()
                )
            },
        )?)),
        None => Ok(None),
    }
}

/// The state of `trainer` after `step` updates (replica 0's copy; all replicas hold the same),
/// with everything needed to continue exactly.
pub fn capture(
    trainer: &Trainer,
    spec: &Spec,
    step: u64,
    cfg: &PretrainConfig,
    model: &BertConfig,
    reader: Option<ReaderState>,
    examples_seen: u64,
) -> Result<State> {
    let mut state = State::from_parts(step, spec, trainer.params()?, trainer.opt_state()?)?;
    state.model_config = serde_json::to_value(model)?;
    state.optimizer = OptimizerInfo {
        name: cfg.train.optimizer.name().into(),
        hyperparameters: cfg.optimizer_json(),
    };
    let k = cfg.train.accumulation_steps as usize;
    state.rng = RngState {
        // The key(s) the next step will use (informational: they derive from seed and step).
        dropout_key: pretrain_dropout(cfg.train.seed).step(step, k).concat(),
        host_seed: Some(cfg.train.seed),
        host_state: vec![],
    };
    state.data_position = data_position(reader)?;
    state.extra = json!({
        "examples_seen": examples_seen,
        "precision": cfg.train.precision.name(),
        "batch_size": cfg.train.batch_size,
        // Informational: a run may resume on another device count (then not bit-exact).
        "num_devices": trainer.replicas(),
        "seq_len": cfg.data.seq_len,
        "max_predictions": cfg.data.max_predictions,
    });
    Ok(state)
}

/// Saves `state`, returning the checkpoint directory.
pub fn save(store: &Store, state: &State) -> Result<std::path::PathBuf> {
    let ckpt = store
        .save(state)
        .with_context(|| format!("saving the checkpoint of step {}", state.step))?;
    Ok(ckpt.path().to_path_buf())
}

/// The latest complete checkpoint of `store`, loaded against `spec` and checked to belong to
/// this run (same model, optimizer, seed and batch shapes); `None` when the directory has none.
/// Later step directories that are incomplete or whose manifest is damaged were skipped (each
/// logged as a warning) and are pushed to `skipped`, for the run summary.
pub fn load_for_resume(
    store: &Store,
    spec: &Spec,
    cfg: &PretrainConfig,
    model: &BertConfig,
    skipped: &mut Vec<Skipped>,
) -> Result<Option<(State, std::path::PathBuf)>> {
    let (latest, passed_over) = store.latest_with_skipped()?;
    skipped.extend(passed_over);
    let Some(latest) = latest else {
        return Ok(None);
    };
    let dir = latest.path().to_path_buf();
    let state = store
        .load_newest(&latest, spec)
        .with_context(|| format!("resuming from {}", store.root().display()))?;
    check_resumable(&state, &dir, cfg, model)?;
    Ok(Some((state, dir)))
}

/// The checkpoint `ckpt` (the one every process of a multi-process run resumes from), loaded
/// against `spec` and checked as [`load_for_resume`] does.
pub fn load_checkpoint(
    ckpt: &Checkpoint,
    spec: &Spec,
    cfg: &PretrainConfig,
    model: &BertConfig,
) -> Result<(State, std::path::PathBuf)> {
    let dir = ckpt.path().to_path_buf();
    let state = ckpt
        .load(Some(spec))
        .with_context(|| format!("resuming from {}", dir.display()))?;
    check_resumable(&state, &dir, cfg, model)?;
    Ok((state, dir))
}

/// Refuses a checkpoint of another run: model, optimizer, seed, batch shapes, data kind.
fn check_resumable(
    state: &State,
    dir: &Path,
    cfg: &PretrainConfig,
    model: &BertConfig,
) -> Result<()> {
    let refuse = |what: &str, saved: String, now: String| {
        anyhow!(
            "cannot resume from {}: {what} was {saved} and is {now} now; run with the settings \
             of the checkpoint, or start anew with --no-resume and an empty --checkpoint-dir",
            dir.display()
        )
    };
    let saved_model: BertConfig = serde_json::from_value(state.model_config.clone())
        .map_err(|e| anyhow!("checkpoint {}: model_config: {e}", dir.display()))?;
    if saved_model != *model {
        return Err(refuse(
            "the model config",
            saved_model.to_json(),
            model.to_json(),
        ));
    }
    let saved_precision = saved_precision(state, dir)?;
    if saved_precision != cfg.train.precision {
        return Err(refuse(
            "the precision (train.precision, --precision)",
            saved_precision.name().into(),
            cfg.train.precision.name().into(),
        ));
    }
    // By kind: a checkpoint written before the names were typed may record an alias.
    if OptimizerKind::parse(&state.optimizer.name) != Some(cfg.train.optimizer) {
        return Err(refuse(
            "the optimizer",
            state.optimizer.name.clone(),
            cfg.train.optimizer.name().into(),
        ));
    }
    if state.rng.host_seed != Some(cfg.train.seed) {
        return Err(refuse(
            "the seed",
            format!("{:?}", state.rng.host_seed),
            cfg.train.seed.to_string(),
        ));
    }
    for (key, now) in [
        ("seq_len", cfg.data.seq_len),
        ("max_predictions", cfg.data.max_predictions),
    ] {
        let saved = state.extra.get(key).and_then(Value::as_u64);
        if saved != Some(now as u64) {
            return Err(refuse(key, format!("{saved:?}"), now.to_string()));
        }
    }
    let synthetic = is_synthetic(&state.data_position);
    if synthetic != cfg.data.synthetic {
        bail!(
            "cannot resume from {}: it was trained on {} data, this run uses {}",
            dir.display(),
            if synthetic { "synthetic" } else { "file" },
            if cfg.data.synthetic {
                "synthetic"
            } else {
                "file"
            }
        );
    }
    Ok(())
}

/// The precision a checkpoint was trained in: `extra.precision`, or in checkpoints written
/// before that key the model config's `compute_dtype`; f32 where neither is present (what a
/// model config without `compute_dtype` meant then).
pub fn saved_precision(state: &State, dir: &Path) -> Result<ComputeDtype> {
    let recorded = state
        .extra
        .get("precision")
        .map(|v| ("extra.precision", v))
        .or_else(|| {
            state
                .model_config
                .get("compute_dtype")
                .map(|v| ("model_config.compute_dtype", v))
        });
    let Some((key, value)) = recorded else {
        return Ok(ComputeDtype::F32);
    };
    value.as_str().and_then(ComputeDtype::parse).ok_or_else(|| {
        anyhow!(
            "checkpoint {}: {key} is {value}, not a precision (f32, bf16 or fp8)",
            dir.display()
        )
    })
}

/// Whether a checkpoint's data position is of synthetic batches (one process's or several).
fn is_synthetic(position: &Value) -> bool {
    position.get("synthetic").is_some()
        || position
            .get("processes")
            .and_then(Value::as_array)
            .and_then(|p| p.first())
            .is_some_and(|p| p.get("synthetic").is_some())
}

/// The data position of a multi-process checkpoint: every process's own position (as
/// [`data_position`] writes it, JSON bytes from `Client::checkpoint`), by process id.
pub fn process_positions(states: &[Vec<u8>]) -> Result<Value> {
    let positions = states
        .iter()
        .enumerate()
        .map(|(p, bytes)| {
            serde_json::from_slice::<Value>(bytes)
                .with_context(|| format!("the data position process {p} sent is not JSON"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({ "processes": positions }))
}

/// Process `process_id`'s reader position in a checkpoint's data position, for a run of
/// `num_processes` processes. A position of another process count is refused for file data
/// (each process's reader position belongs to its own share of the files, and the shares
/// change with the count); synthetic data needs none.
pub fn reader_state_for(
    position: &Value,
    dir: &Path,
    process_id: u32,
    num_processes: u32,
) -> Result<Option<ReaderState>> {
    if super::data_cursor::is_cursor(position) {
        // The run continues such a position with the cursor (data_cursor.rs); a reader
        // starting over instead would repeat examples.
        bail!(
            "checkpoint {}: data_position is a data cursor, not a reader position",
            dir.display()
        );
    }
    let per_process = position.get("processes").and_then(Value::as_array);
    let saved = per_process.map_or(1, |p| p.len());
    if is_synthetic(position) {
        return Ok(None);
    }
    if saved != num_processes as usize {
        bail!(
            "cannot resume from {}: it was written by a run of {saved} process(es) and this run \
             has {num_processes}; the data readers' positions are per process (each reads its \
             own share of the files), so resume with --num-processes {saved}, or start anew \
             with --no-resume and an empty --checkpoint-dir",
            dir.display()
        );
    }
    match per_process {
        Some(p) => reader_state(&p[process_id as usize], dir),
        None => reader_state(position, dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Reader, ReaderConfig};
    use serde_json::json;

    /// A real reader's state (after one batch of a shard written here).
    fn a_reader_state(dir: &Path, name: &str, seed: u64) -> ReaderState {
        let shard = dir.join(name);
        let mut w = crate::data::tfrecord::RecordWriter::create(&shard).unwrap();
        for i in 0..4 {
            let ex = crate::data::example::PretrainingExample {
                input_ids: vec![i + 1; 8],
                input_mask: vec![1; 8],
                segment_ids: vec![0; 8],
                masked_lm_positions: vec![1, 0],
                masked_lm_ids: vec![i + 1, 0],
                masked_lm_weights: vec![1.0, 0.0],
                next_sentence_label: i % 2,
            };
            w.write_record(&ex.encode()).unwrap();
        }
        w.finish().unwrap();
        let mut rc = ReaderConfig::new(vec![shard], 2, 8, 2);
        rc.seed = seed;
        let mut r = Reader::new(rc).unwrap();
        r.next_batch().unwrap().unwrap();
        r.state()
    }

    #[test]
    fn each_process_gets_its_own_reader_position_and_other_counts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let states = [
            a_reader_state(dir.path(), "a.tfrecord", 1),
            a_reader_state(dir.path(), "b.tfrecord", 2),
        ];
        let sent: Vec<Vec<u8>> = states
            .iter()
            .map(|s| serde_json::to_vec(&data_position(Some(s.clone())).unwrap()).unwrap())
            .collect();
        let position = process_positions(&sent).unwrap();
        let ckpt = Path::new("/ckpt/step-00000025");
        for (p, want) in states.iter().enumerate() {
            let got = reader_state_for(&position, ckpt, p as u32, 2)
                .unwrap()
                .unwrap();
            assert_eq!(&got, want);
        }
        let e = reader_state_for(&position, ckpt, 0, 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("run of 2 process(es)") && e.contains("--num-processes 2"),
            "{e}"
        );
        // A single-process checkpoint: its own reader for one process, refused for two.
        let single = data_position(Some(states[0].clone())).unwrap();
        assert_eq!(
            reader_state_for(&single, ckpt, 0, 1).unwrap().as_ref(),
            Some(&states[0])
        );
        let e = reader_state_for(&single, ckpt, 1, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("run of 1 process(es) and this run has 2"), "{e}");
        // Synthetic batches need no position, whatever the process count.
        let synthetic = process_positions(&vec![br#"{"synthetic":true}"#.to_vec(); 3]).unwrap();
        assert!(is_synthetic(&synthetic));
        assert_eq!(reader_state_for(&synthetic, ckpt, 0, 2).unwrap(), None);
        assert_eq!(
            reader_state_for(&json!({"synthetic": true}), ckpt, 1, 4).unwrap(),
            None
        );
        let e = process_positions(&[b"not json".to_vec()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("process 0"), "{e}");
    }

    #[test]
    fn resume_compares_the_architecture_and_the_precision_old_checkpoints_included() {
        let text = "[data]\nsynthetic = true\n[model]\npreset = \"tiny\"\n[train]\n\
                    precision = \"bf16\"\n";
        let mut cfg = PretrainConfig::from_toml_str(text, "t.toml").unwrap();
        let model = cfg.bert_config().unwrap();
        let dir = Path::new("/ckpt/step-00000001");
        let mut state = State::new(1, vec![], vec![]);
        state.model_config = serde_json::to_value(&model).unwrap();
        state.optimizer.name = cfg.train.optimizer.name().into();
        state.rng.host_seed = Some(cfg.train.seed);
        state.data_position = json!({ "synthetic": true });
        state.extra = json!({
            "seq_len": cfg.data.seq_len,
            "max_predictions": cfg.data.max_predictions,
            "precision": "bf16",
        });
        check_resumable(&state, dir, &cfg, &model).unwrap();
        // The attention kernel is the backend's choice: not recorded, not compared.
        cfg.device.attention = crate::backend::AttentionChoice::Graph;
        check_resumable(&state, dir, &cfg, &model).unwrap();
        cfg.train.precision = ComputeDtype::F32;
        let e = check_resumable(&state, dir, &cfg, &model)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the precision") && e.contains("was bf16 and is f32"),
            "{e}"
        );
        // Written before the precision left the model config: read from its compute_dtype.
        let mut old = state.clone();
        old.extra.as_object_mut().unwrap().remove("precision");
        old.model_config["compute_dtype"] = json!("bf16");
        assert_eq!(saved_precision(&old, dir).unwrap(), ComputeDtype::Bf16);
        assert!(check_resumable(&old, dir, &cfg, &model).is_err());
        cfg.train.precision = ComputeDtype::Bf16;
        check_resumable(&old, dir, &cfg, &model).unwrap();
        // Neither key: f32, as a model config without compute_dtype meant.
        old.model_config
            .as_object_mut()
            .unwrap()
            .remove("compute_dtype");
        assert_eq!(saved_precision(&old, dir).unwrap(), ComputeDtype::F32);
        old.extra["precision"] = json!("fp16");
        let e = saved_precision(&old, dir).unwrap_err().to_string();
        assert!(e.contains("extra.precision"), "{e}");
        // Another architecture is refused.
        let mut wider = model.clone();
        wider.intermediate_size += 8;
        let e = check_resumable(&state, dir, &cfg, &wider)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the model config"), "{e}");
    }
}

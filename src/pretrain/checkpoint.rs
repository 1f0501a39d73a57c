//! What a pretraining checkpoint holds besides the tensors, and the checks on resume: the model
//! config, the optimizer settings, the seed (dropout keys and data order derive from it), the
//! data reader's position in each shard.
use super::config::PretrainConfig;
use super::rng::dropout_keys;
use crate::ckpt::{OptimizerInfo, RngState, Spec, State, Store};
use crate::data::ReaderState;
use crate::model::BertConfig;
use crate::train::Trainer;
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
        name: cfg.train.optimizer.clone(),
        hyperparameters: cfg.optimizer_json(),
    };
    let k = cfg.train.accumulation_steps as usize;
    state.rng = RngState {
        // The key(s) the next step will use (informational: they derive from seed and step).
        dropout_key: dropout_keys(cfg.train.seed, step, k).concat(),
        host_seed: Some(cfg.train.seed),
        host_state: vec![],
    };
    state.data_position = data_position(reader)?;
    state.extra = json!({
        "examples_seen": examples_seen,
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

/// The latest checkpoint of `store`, loaded against `spec` and checked to belong to this run
/// (same model, optimizer, seed and batch shapes); `None` when the directory has none.
pub fn load_for_resume(
    store: &Store,
    spec: &Spec,
    cfg: &PretrainConfig,
    model: &BertConfig,
) -> Result<Option<(State, std::path::PathBuf)>> {
    let Some(latest) = store.latest()? else {
        return Ok(None);
    };
    let dir = latest.path().to_path_buf();
    let state = store
        .load_latest(spec)
        .with_context(|| format!("resuming from {}", store.root().display()))?
        .ok_or_else(|| anyhow!("checkpoint {} vanished while loading", dir.display()))?;
    let refuse = |what: &str, saved: String, now: String| {
        anyhow!(
            "cannot resume from {}: {what} was {saved} and is {now} now; run with the settings \
             of the checkpoint, or start anew with --no-resume and an empty --checkpoint-dir",
            dir.display()
        )
    };
    let saved_model: BertConfig = serde_json::from_value(state.model_config.clone())
        .map_err(|e| anyhow!("checkpoint {}: model_config: {e}", dir.display()))?;
    if &saved_model != model {
        return Err(refuse(
            "the model config",
            saved_model.to_json(),
            model.to_json(),
        ));
    }
    if state.optimizer.name != cfg.train.optimizer {
        return Err(refuse(
            "the optimizer",
            state.optimizer.name.clone(),
            cfg.train.optimizer.clone(),
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
    let synthetic = state.data_position.get("synthetic").is_some();
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
    Ok(Some((state, dir)))
}

//! `tpu-run export-hf`: weights as a Hugging Face `BertForPreTraining` directory
//! (model.safetensors + config.json, see [`crate::ckpt::hf_export`]): those of a tpu-run
//! checkpoint, or (`--init`) those a fresh `tpu-run pretrain` run of the given settings starts
//! from, so that another trainer can start from the same weights
//! (tools/hf_pretrain_reference.py).
use crate::ckpt::{checkpoint_weights, export_hf, Checkpoint, Store};
use crate::pretrain::{initial_weights, Overrides, PretrainConfig};
use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["checkpoint", "init"])))]
pub struct ExportHfArgs {
    /// A tpu-run checkpoint: a step directory (with manifest.json), a checkpoint directory of
    /// step-* directories (the latest complete one), or a pretrain --output-dir (its
    /// checkpoints/); gs:// and s3:// prefixes too.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Export the initial weights instead: those `tpu-run pretrain` starts from (step 0) with
    /// the same --config, --preset, --model-config and --seed.
    #[arg(long)]
    pub init: bool,
    /// With --init: the run settings (TOML), as `pretrain --config` takes them.
    #[arg(long, conflicts_with = "checkpoint")]
    pub config: Option<PathBuf>,
    /// With --init: the model preset, as `pretrain --preset` (model.preset, default tiny).
    #[arg(long, conflicts_with = "checkpoint")]
    pub preset: Option<String>,
    /// With --init: a model config file, as `pretrain --model-config` (model.config_file).
    #[arg(long, conflicts_with = "checkpoint")]
    pub model_config: Option<PathBuf>,
    /// With --init: the run's seed, as `pretrain --seed` (train.seed, default 12345).
    #[arg(long, conflicts_with = "checkpoint")]
    pub seed: Option<u64>,
    /// The directory to write model.safetensors and config.json into (created if needed;
    /// files of those names are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(a: &ExportHfArgs) -> Result<()> {
    let (cfg, params, from) = match &a.checkpoint {
        Some(path) => {
            let ckpt = find_checkpoint(path)?;
            let (cfg, params) = checkpoint_weights(&ckpt)
                .with_context(|| format!("reading checkpoint {}", ckpt.path().display()))?;
            let from = format!(
                "checkpoint {} (step {})",
                ckpt.path().display(),
                ckpt.step()
            );
            (cfg, params, from)
        }
        None => {
            let mut run = match &a.config {
                Some(path) => PretrainConfig::from_file(path)?,
                None => PretrainConfig::default(),
            };
            run.apply(&Overrides {
                preset: a.preset.clone(),
                model_config: a.model_config.clone(),
                seed: a.seed,
                ..Overrides::default()
            });
            let (cfg, params) = initial_weights(&run)?;
            let model = match &run.model.config_file {
                Some(p) => p.display().to_string(),
                None => format!("preset {}", run.model.preset),
            };
            let from = format!(
                "the initial weights of pretrain ({model}, seed {})",
                run.train.seed
            );
            (cfg, params, from)
        }
    };
    export_hf(&a.out, &cfg, &params)?;
    println!(
        "wrote {} (BertForPreTraining, {} tensors, {} values) from {from}",
        a.out.display(),
        params.len(),
        params.num_elements()
    );
    Ok(())
}

/// The checkpoint `path` names: a step directory, a store of them (its latest complete one)
/// or a run's output directory holding `checkpoints/`.
fn find_checkpoint(path: &Path) -> Result<Checkpoint> {
    let manifest = path.join(crate::ckpt::manifest::MANIFEST_FILE);
    if crate::storage::exists(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?
    {
        return Ok(Checkpoint::open(path)?);
    }
    if !crate::storage::is_object(path) && !path.is_dir() {
        bail!("--checkpoint {}: no such directory", path.display());
    }
    for dir in [path.to_path_buf(), path.join("checkpoints")] {
        let store = Store::new(&dir);
        if store.list()?.is_empty() {
            continue;
        }
        return store.latest()?.ok_or_else(|| {
            anyhow!(
                "--checkpoint {}: holds step-* checkpoint directories but none is complete",
                dir.display()
            )
        });
    }
    bail!(
        "--checkpoint {}: not a tpu-run checkpoint (no manifest.json, no step-* directories, no \
         checkpoints/ of them)",
        path.display()
    )
}

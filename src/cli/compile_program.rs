//! The program `tpu-run compile` builds: the pretraining run config (`--config` and the flags
//! over it, as for `tpu-run pretrain`), the replica count, then the BERT program of that run
//! or an example, with its one-line description.
use super::compile::CompileArgs;
use crate::backend::Backend;
use crate::model::ComputeDtype;
use crate::pretrain::{Overrides, PretrainConfig};
use crate::tpu_target::{bert_program, tpu_shape, tpu_shape_notes, BertProgram, Program, What};
use anyhow::{anyhow, bail, Result};

/// The pretraining run the BERT program comes from: `--config` (else pretrain's defaults), the
/// flags on top, the target's backend.
pub(super) fn run_config(a: &CompileArgs, tpu_target: bool) -> Result<PretrainConfig> {
    let mut cfg = match &a.config {
        Some(p) if p.extension().is_some_and(|e| e == "json") => bail!(
            "--config {}: compile's --config is the pretraining run config (TOML, as for \
             `tpu-run pretrain --config`); give a BERT config file with --model-config",
            p.display()
        ),
        Some(p) => PretrainConfig::from_file(p)?,
        None => PretrainConfig::default(),
    };
    cfg.apply(&Overrides {
        preset: a.model.clone(),
        model_config: a.model_config.clone(),
        batch_size: a.batch_size,
        seq_len: a.seq_len,
        max_predictions: a.max_predictions,
        precision: a.precision,
        optimizer: a.optimizer,
        accumulation_steps: a.accumulation_steps,
        ..Overrides::default()
    });
    if a.tpu_shaped {
        tpu_shape(&mut cfg);
    }
    // The backend decides the attention kernel (cuDNN only on cuda); pretrain's default is cpu.
    let backend = if tpu_target {
        Backend::Tpu
    } else {
        Backend::Cpu
    };
    if a.config.is_some() && cfg.device.backend != backend {
        eprintln!(
            "tpu-run: note: the run config's backend is {}; building the step as the {} \
             backend would run it",
            cfg.device.backend.name(),
            backend.name()
        );
    }
    cfg.device.backend = backend;
    // As for a benchmark: the step needs no data files.
    cfg.data.synthetic = true;
    cfg.validate()?;
    Ok(cfg)
}

/// `--replicas`, or its default: for the train step the run's devices (device.num_devices x
/// device.num_processes), else every device of a TPU slice, else one per process (pretrain's
/// default on cpu); 1 for anything else. There may not be more replicas than devices.
pub(super) fn replicas(
    a: &CompileArgs,
    tpu_devices: Option<usize>,
    run: Option<&PretrainConfig>,
) -> Result<u32> {
    let train_step = a.example.is_none() && What::parse(&a.what)? == What::TrainStep;
    let n = match (a.replicas, run.filter(|_| train_step)) {
        (Some(n), _) => n,
        (None, Some(run)) => {
            let processes = run.device.num_processes;
            match (run.device.num_devices, tpu_devices) {
                (Some(d), _) => d.checked_mul(processes).ok_or_else(|| {
                    anyhow!("{d} devices x {processes} processes overflow a replica count")
                })?,
                (None, Some(devices)) => u32::try_from(devices)
                    .map_err(|_| anyhow!("the topology has {devices} devices"))?,
                (None, None) => processes,
            }
        }
        (None, None) => 1,
    };
    if n == 0 {
        bail!("--replicas must be at least 1");
    }
    if n > 1 && !train_step {
        bail!("--replicas {n}: only the train step is data-parallel; the forward pass and the examples compile for 1 replica");
    }
    if let Some(devices) = tpu_devices {
        if n as usize > devices {
            bail!("--replicas {n}: the topology has {devices} devices (one replica per device)");
        }
    }
    if let Some(run) = run.filter(|_| train_step) {
        let (batch, k) = (run.train.batch_size, run.train.accumulation_steps as usize);
        if !batch.is_multiple_of(n as usize * k) {
            bail!(
                "--batch-size {batch} (the global batch) does not split into {n} replica shards \
                 of {k} micro-batch(es); make it a multiple of --replicas {n} x \
                 --accumulation-steps {k}"
            );
        }
    }
    Ok(n)
}

pub(super) fn build_example(a: &CompileArgs) -> Result<(Program, String)> {
    let name = a.example.as_deref().unwrap_or_default();
    let ex = crate::examples::example(name, 0)?;
    Ok((Program::plain(ex.module)?, format!("example {name}")))
}

/// The BERT program of `cfg` and its one-line description.
pub(super) fn build_bert(
    a: &CompileArgs,
    cfg: &PretrainConfig,
    tpu_target: bool,
    replicas: u32,
) -> Result<(Program, String)> {
    let what = What::parse(&a.what)?;
    let BertProgram {
        program,
        model,
        exec,
        shapes,
    } = bert_program(cfg, what, replicas)?;
    if tpu_target {
        for note in tpu_shape_notes(&model, &shapes) {
            eprintln!("tpu-run: note: {note} (compiles, but pads TPU tiles)");
        }
        if exec.compute == ComputeDtype::F32 || model.pad_vocab_to.is_none() {
            eprintln!(
                "tpu-run: note: f32 matmuls or an unpadded vocabulary, as `tpu-run pretrain` \
                 runs this config; --tpu-shaped (or precision = \"bf16\" and pad_vocab_to = \
                 128 in the run config) gives the TPU-shaped step"
            );
        }
    }
    let t = &cfg.train;
    let step = match what {
        What::TrainStep => format!(
            ", {} with the {} schedule{}",
            t.optimizer.name(),
            t.schedule.name(),
            if t.accumulation_steps > 1 {
                format!(
                    ", {} micro-batches of {}",
                    t.accumulation_steps, shapes.batch_size
                )
            } else {
                String::new()
            }
        ),
        What::Forward => String::new(),
    };
    let title = format!(
        "BERT {} {} (L{} H{} A{}, vocab {}, {}), batch {} x seq {} ({} predictions){step}{}",
        cfg.model
            .config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| cfg.model.preset.clone()),
        a.what,
        model.num_hidden_layers,
        model.hidden_size,
        model.num_attention_heads,
        model.padded_vocab_size(),
        match exec.compute {
            ComputeDtype::F32 => "f32",
            ComputeDtype::Bf16 => "bf16 matmuls, f32 accumulation",
            ComputeDtype::Fp8 => "fp8 encoder matmuls (delayed scaling), bf16 elsewhere",
        },
        t.batch_size,
        shapes.seq_len,
        shapes.max_predictions,
        if replicas > 1 {
            format!(
                ", data-parallel over {replicas} replicas of batch {}",
                t.batch_size / replicas as usize
            )
        } else {
            String::new()
        },
    );
    Ok((program, title))
}

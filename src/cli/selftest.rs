//! `tpu-run selftest`: every example program against its Rust reference; `--save` writes the
//! outputs and `--compare` checks them against a saved run (e.g. the CUDA backend vs CPU).
use super::DeviceArgs;
use crate::backend::open_client;
use crate::examples::{example, NAMES};
use crate::run::{max_rel_error, run_once};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SelftestArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Write every example's outputs to this JSON file.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Compare outputs with a JSON file written by `--save` (e.g. on another backend).
    #[arg(long)]
    pub compare: Option<PathBuf>,
}

type Saved = BTreeMap<String, Vec<Vec<f64>>>;

pub fn run(a: &SelftestArgs) -> Result<()> {
    let client = open_client(
        a.device.backend,
        a.device.plugin.as_deref(),
        a.device.cpu_devices,
    )?;
    println!(
        "platform {} {} via {}",
        client.platform_name()?,
        client.platform_version()?,
        client.plugin().path().display()
    );
    let baseline: Option<Saved> = match &a.compare {
        Some(p) => Some(
            serde_json::from_slice(
                &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("parsing {}", p.display()))?,
        ),
        None => None,
    };
    let mut saved = Saved::new();
    let mut failures = 0;
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>14}",
        "example", "compile ms", "execute ms", "err vs Rust", "err vs saved"
    );
    for name in NAMES {
        let ex = example(name, 0)?;
        let r =
            run_once(&client, &ex.module, &ex.inputs).with_context(|| format!("example {name}"))?;
        let err = max_rel_error(&r.outputs, &ex.expected)?;
        let vs_saved = match baseline.as_ref().and_then(|b| b.get(name)) {
            Some(b) => Some(max_rel_error(&r.outputs, b)?),
            None => None,
        };
        let ok = err <= ex.tolerance && vs_saved.is_none_or(|e| e <= ex.tolerance.max(1e-6));
        failures += usize::from(!ok);
        println!(
            "{name:<10} {:>12.1} {:>12.3} {err:>14.2e} {:>14} {}",
            r.compile_time.as_secs_f64() * 1e3,
            r.execute_time.as_secs_f64() * 1e3,
            vs_saved.map_or("-".to_string(), |e| format!("{e:.2e}")),
            if ok { "ok" } else { "MISMATCH" }
        );
        saved.insert(name.to_string(), r.outputs);
    }
    if let Some(p) = &a.save {
        std::fs::write(p, serde_json::to_vec(&saved)?)
            .with_context(|| format!("writing {}", p.display()))?;
        println!("outputs written to {}", p.display());
    }
    if failures > 0 {
        bail!("{failures} example(s) did not match");
    }
    println!("{} passed, 0 failed", NAMES.len());
    Ok(())
}

//! `--profile DIR`: a device trace of a few steps through the plugin's profiler extension
//! ([`tpu::Profiler`]), written as:
//! - `DIR/plugins/profile/<run>/<host>.xplane.pb`: the raw XSpace, for TensorBoard's profile
//!   plugin or XProf (`tensorboard --logdir DIR`);
//! - `DIR/trace.json`: Chrome trace-event JSON for Perfetto (ui.perfetto.dev) or chrome://tracing;
//! - `DIR/unmapped.tsv`: the device events no scope was found for, by kernel and HLO op;
//! - `DIR/kernels.tsv`: device time per kernel within each scope, the twelve layers folded into
//!   `layer_*` (what the fusion audit reads);
//! - `DIR/layers.tsv`: device time per model scope (`encoder/layer_3/attention`, ...), the fused
//!   kernels mapped back to the layers through the optimized module's op metadata
//!   ([`scopes`]).
//!
//! A plugin without a profiler extension (the CPU plugin, `xla-cpu-pjrt` 0.0.1) gives `Ok(None)`;
//! the caller says so.
pub mod files;
pub mod scopes;
pub mod trace;
pub mod xplane;

use anyhow::{Context, Result};
use prost::Message;
use scopes::{device_time, ps_to_ms, OpScopes};
use std::path::{Path, PathBuf};
use xplane::XSpace;

/// The files of one capture and its per-scope summary.
#[derive(Clone, Debug)]
pub struct ProfileReport {
    pub xplane: PathBuf,
    pub trace_json: PathBuf,
    pub layers_tsv: PathBuf,
    /// (scope, device milliseconds), largest first.
    pub per_scope_ms: Vec<(String, f64)>,
    /// Device events with no HLO op that could be mapped to a scope (counted, not dropped
    /// silently).
    pub unmapped_events: usize,
}

/// Runs `steps` under the plugin's profiler and writes the trace files into `dir`.
/// Ok(None) when the plugin offers no profiler extension (the caller prints that clearly);
/// `steps` is then not run. `optimized_module` (serialized `HloModuleProto`, from
/// [`tpu::Executable::optimized_module`]) maps device events to scopes; without it every device
/// event counts as unmapped. When `steps` fails the session is stopped, discarded and its
/// error returned.
pub fn capture(
    client: &tpu::Client,
    optimized_module: Option<&[u8]>,
    dir: &std::path::Path,
    steps: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Option<ProfileReport>> {
    let profiler = client
        .plugin()
        .profiler()
        .with_context(|| format!("the profiler of {}", client.plugin().path().display()))?;
    let Some(profiler) = profiler else {
        return Ok(None);
    };
    // Decoded before the steps run, so a bad module fails fast.
    let scopes = optimized_module
        .map(OpScopes::from_module_bytes)
        .transpose()?;
    let session = profiler
        .start(&tpu::ProfileOptions::default())
        .context("starting the plugin's profiler")?;
    steps().context("the profiled steps")?;
    let bytes = session
        .stop_and_collect()
        .context("collecting the plugin's trace")?;
    write_report(dir, &bytes, scopes.as_ref()).map(Some)
}

/// Writes the files of a trace (serialized XSpace `bytes`) into `dir`.
pub fn write_report(dir: &Path, bytes: &[u8], scopes: Option<&OpScopes>) -> Result<ProfileReport> {
    let space = XSpace::decode(bytes).context("the plugin's trace is not an XSpace protobuf")?;
    for e in &space.errors {
        tracing::warn!("the profiler reported: {e}");
    }
    for w in &space.warnings {
        tracing::warn!("the profiler warned: {w}");
    }
    let time = device_time(&space, scopes);
    if time.device_planes == 0 {
        tracing::warn!(
            "the trace has no device plane (planes: {:?}); was the device tracer off?",
            space.planes.iter().map(|p| &p.name).collect::<Vec<_>>()
        );
    }

    let run_dir = files::new_run_dir(dir, &files::run_name(std::time::SystemTime::now()))?;
    let xplane = run_dir.join(format!("{}.xplane.pb", files::host_name(&space)));
    std::fs::write(&xplane, bytes).with_context(|| format!("writing {}", xplane.display()))?;

    let trace_json = dir.join("trace.json");
    let json = serde_json::to_vec(&trace::chrome_trace(&space, scopes))?;
    std::fs::write(&trace_json, json)
        .with_context(|| format!("writing {}", trace_json.display()))?;

    let layers_tsv = dir.join("layers.tsv");
    std::fs::write(&layers_tsv, files::layers_tsv(&time))
        .with_context(|| format!("writing {}", layers_tsv.display()))?;
    let kernels_tsv = dir.join("kernels.tsv");
    std::fs::write(&kernels_tsv, files::kernels_tsv(&time))
        .with_context(|| format!("writing {}", kernels_tsv.display()))?;
    let unmapped_tsv = dir.join("unmapped.tsv");
    std::fs::write(&unmapped_tsv, files::unmapped_tsv(&time))
        .with_context(|| format!("writing {}", unmapped_tsv.display()))?;

    Ok(ProfileReport {
        xplane,
        trace_json,
        layers_tsv,
        per_scope_ms: time
            .per_scope
            .iter()
            .map(|(s, ps, _)| (s.clone(), ps_to_ms(*ps)))
            .collect(),
        unmapped_events: time.unmapped_events,
    })
}

//! Charts as SVG files, drawn with `plotters` (SVG backend only; see Cargo.toml for why no font
//! feature is needed).
//!
//! - [`curves`]: `tpu-run plot`: training and evaluation curves of one or more runs, read from
//!   their `metrics.jsonl` ([`records`]), one panel per metric ([`metric`]), one colour per run
//!   ([`labels`] names them).
//! - [`bench_report`]: `tpu-run bench --plot`: step time, MFU and the step-time distribution per
//!   configuration.
//!
//! Charts are rendered to a string and written in one go ([`write_svg`]), so a failed chart
//! leaves no half-written file and every error names the file.
pub mod bench_report;
pub mod curves;
pub mod labels;
pub mod metric;
pub mod records;
pub mod series;
mod stats;
mod style;

pub use bench_report::{bench_report, BenchPlotEntry};
pub use curves::{plot_runs, CurveOptions, PlotReport, XAxis};

use anyhow::{Context, Result};
use std::path::Path;

/// Writes `svg` to `path` through a temporary file and a rename, so a reader never sees half.
pub fn write_svg(path: &Path, svg: &str) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{}: the output needs a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, svg).with_context(|| {
        format!(
            "writing {} (does its directory exist and is it writable?)",
            path.display()
        )
    })?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

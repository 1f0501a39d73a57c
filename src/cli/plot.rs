//! `tpu-run plot RUN_DIR_OR_METRICS_JSONL... --out curves.svg`: training and evaluation curves of
//! one or more runs as an SVG chart (see [`crate::plot::curves`]).
use crate::plot::{plot_runs, CurveOptions, XAxis};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlotArgs {
    /// Run directories (each with a metrics.jsonl) or metrics JSONL files.
    #[arg(required = true, value_name = "RUN_DIR_OR_METRICS_JSONL")]
    pub runs: Vec<PathBuf>,
    /// The SVG file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The horizontal axis: training step, or wall time since the run started.
    #[arg(long, value_enum, default_value = "step")]
    pub x: XAxis,
    /// Metrics to draw, one panel each, comma-separated (e.g. loss,mlm_accuracy); default: every
    /// known metric the runs have (loss, mlm_loss, nsp_loss, mlm_accuracy, mlm_accuracy_at_mask,
    /// nsp_accuracy, learning_rate, grad_norm, seq_per_s).
    #[arg(long, value_delimiter = ',')]
    pub metrics: Option<Vec<String>>,
    /// The chart's title (default: the run names).
    #[arg(long)]
    pub title: Option<String>,
}

pub fn run(args: &PlotArgs) -> Result<()> {
    let opts = CurveOptions {
        x: args.x,
        metrics: args.metrics.clone(),
        title: args.title.clone(),
    };
    let report = plot_runs(&args.runs, &args.out, &opts)?;
    for r in &report.runs {
        println!(
            "{} ({}): {} train and {} eval record(s), {} line(s) skipped (not a JSON object with a step)",
            r.label,
            r.path.display(),
            r.train_records,
            r.eval_records,
            r.skipped_lines
        );
    }
    println!(
        "wrote {} ({})",
        args.out.display(),
        report.metrics.join(", ")
    );
    Ok(())
}

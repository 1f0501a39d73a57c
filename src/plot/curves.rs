//! `tpu-run plot`: the training and evaluation curves of one or more runs, one panel per metric
//! on a grid, one colour per run (train records as lines, eval records as markers), every run on
//! the panel's shared axes.
use super::labels::run_labels;
use super::metric::{describe, select};
use super::records::{read_run, RunLog};
use super::series::{panels, Panel};
use super::style::{self, FONT};
use super::write_svg;
use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use super::series::XAxis;

/// Width and height of one panel, in SVG pixels.
const PANEL: (u32, u32) = (560, 360);

/// What to draw.
#[derive(Clone, Debug, Default)]
pub struct CurveOptions {
    pub x: XAxis,
    /// Metric names; `None`: every known metric present ([`super::metric::KNOWN`]).
    pub metrics: Option<Vec<String>>,
    /// The chart's title; `None`: the run names.
    pub title: Option<String>,
}

/// What was read and drawn.
#[derive(Clone, Debug)]
pub struct PlotReport {
    pub runs: Vec<RunReport>,
    pub metrics: Vec<String>,
}

/// One input run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Its legend name.
    pub label: String,
    /// The metrics file read.
    pub path: PathBuf,
    pub train_records: usize,
    pub eval_records: usize,
    /// Lines skipped: not a JSON object with an integer step.
    pub skipped_lines: usize,
}

/// Reads the runs at `inputs` (run directories or metrics files) and writes their curves to
/// `out` as SVG.
pub fn plot_runs(inputs: &[PathBuf], out: &Path, opts: &CurveOptions) -> Result<PlotReport> {
    if inputs.is_empty() {
        bail!("no run to plot: pass run directories or metrics.jsonl files");
    }
    let runs = inputs
        .iter()
        .map(|p| read_run(p))
        .collect::<Result<Vec<RunLog>>>()?;
    let labels = run_labels(inputs);
    let present: BTreeSet<&str> = runs.iter().flat_map(RunLog::value_names).collect();
    let metrics = select(opts.metrics.as_deref(), &present)?;
    let (panels, x_desc) = panels(&runs, &metrics, opts.x)?;
    let title = opts.title.clone().unwrap_or_else(|| labels.join(", "));
    let svg = render(&title, &x_desc, &panels, &labels)
        .with_context(|| format!("drawing {}", out.display()))?;
    write_svg(out, &svg)?;
    Ok(PlotReport {
        runs: runs
            .iter()
            .zip(labels)
            .map(|(r, label)| RunReport {
                label,
                path: r.path.clone(),
                train_records: r.train.len(),
                eval_records: r.eval.len(),
                skipped_lines: r.skipped,
            })
            .collect(),
        metrics,
    })
}

/// The chart as SVG text: a grid of panels (one column for one panel, two up to four, then
/// three) under the title.
pub fn render(title: &str, x_desc: &str, panels: &[Panel], labels: &[String]) -> Result<String> {
    let n = panels.len().max(1);
    let cols = match n {
        1 => 1,
        2..=4 => 2,
        _ => 3,
    };
    let rows = n.div_ceil(cols);
    let size = (
        PANEL.0 * cols as u32,
        PANEL.1 * rows as u32 + style::TITLE_HEIGHT,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let body = root.titled(title, (FONT, style::TITLE_SIZE))?;
        for (area, panel) in body.split_evenly((rows, cols)).iter().zip(panels) {
            draw_panel(area, panel, labels, x_desc)
                .with_context(|| format!("the {} panel", panel.metric))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// One metric: the runs' series on shared axes, with a legend naming each.
fn draw_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    panel: &Panel,
    labels: &[String],
    x_desc: &str,
) -> Result<()> {
    let points = || panel.series.iter().flat_map(|s| s.points.iter());
    let xs = padded_range(points().map(|p| p.0), 0.02);
    let ys = padded_range(points().map(|p| p.1), 0.05);
    let known = describe(&panel.metric);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.metric, (FONT, style::CAPTION_SIZE))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(xs.clone(), ys.clone())?;
    let (x_tick, y_tick) = (style::ticks(&xs), style::ticks(&ys));
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(known.map_or(panel.metric.as_str(), |k| k.title))
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&x_tick)
        .y_label_formatter(&y_tick)
        .label_style((FONT, style::LABEL_SIZE))
        .light_line_style(BLACK.mix(0.06))
        .draw()?;
    for s in &panel.series {
        let color = style::color(s.run);
        let name = labels.get(s.run).cloned().unwrap_or_default();
        let pts = s.points.iter().copied();
        if s.eval {
            // Eval points are sparse: markers, joined by a thin line to show the trend.
            chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(1)))?;
            chart
                .draw_series(pts.map(|p| Circle::new(p, 4, color.filled())))?
                .label(format!("{name} (eval)"))
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
        } else {
            // A single record would be a line of no length: give it a marker.
            let marker = if s.points.len() == 1 { 3 } else { 0 };
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)).point_size(marker))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
    }
    if !panel.series.is_empty() {
        // Rising curves (accuracies, throughput) leave the lower right free, falling ones the
        // upper right.
        let corner = if known.is_some_and(|k| k.rising) {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        };
        chart
            .configure_series_labels()
            .position(corner)
            .label_font((FONT, style::LABEL_SIZE))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    Ok(())
}

/// The range of `values` widened by `pad` of its span on each side; a single value (or none)
/// gets a span around it, so the axis is never empty.
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    let span = hi - lo;
    if span <= 0.0 {
        let half = if lo == 0.0 { 1.0 } else { lo.abs() * 0.05 };
        return lo - half..hi + half;
    }
    lo - span * pad..hi + span * pad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_padded_and_never_empty() {
        assert_eq!(padded_range([1.0, 3.0].into_iter(), 0.5), 0.0..4.0);
        assert_eq!(padded_range([2.0].into_iter(), 0.1), 1.9..2.1);
        assert_eq!(padded_range([0.0, 0.0].into_iter(), 0.1), -1.0..1.0);
        assert_eq!(padded_range(std::iter::empty(), 0.1), 0.0..1.0);
    }
}

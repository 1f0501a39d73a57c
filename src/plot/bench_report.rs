//! `tpu-run bench --plot`: one SVG with three panels, one row per configuration in each: the
//! median step time with the spread across repeats, the MFU, and the step-time distribution.
//! Configurations are rows (horizontal bars) so that long labels stay readable.
use super::stats::{quantile, sorted};
use super::style::{self, FONT};
use super::write_svg;
use anyhow::{bail, Context, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One benchmarked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchPlotEntry {
    /// Configuration label, e.g. "base pretrain s128 b256 bf16 cudnn".
    pub label: String,
    /// Every timed step's seconds (all repeats concatenated).
    pub step_times_s: Vec<f64>,
    /// Median step seconds per repeat (one value per --repeat run).
    pub repeat_medians_s: Vec<f64>,
    /// Model FLOP utilization in [0, 1], when the device's peak is known.
    pub mfu: Option<f64>,
}

/// Writes an SVG with three panels: median step time (ms) per configuration (bars, with the
/// spread across repeats as an error bar), MFU (%) per configuration (bars; "n/a" noted for
/// configurations without a known peak), and the step-time distribution per configuration
/// (box plot: p10/p25/median/p75/p90 whiskers).
pub fn bench_report(path: &Path, title: &str, entries: &[BenchPlotEntry]) -> Result<()> {
    let rows = entries
        .iter()
        .map(Row::of)
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("plotting {}", path.display()))?;
    if rows.is_empty() {
        bail!(
            "plotting {}: no configuration was benchmarked, so there is nothing to draw",
            path.display()
        );
    }
    let svg = render(title, &rows).with_context(|| format!("drawing {}", path.display()))?;
    write_svg(path, &svg)
}

/// What the panels show of one entry, in milliseconds and percent.
struct Row<'a> {
    label: &'a str,
    median_ms: f64,
    /// Lowest and highest median of the repeats, when there are two or more.
    spread_ms: Option<(f64, f64)>,
    mfu_pct: Option<f64>,
    /// p10, p25, p50, p75, p90 of every step.
    quantiles_ms: [f64; 5],
}

impl<'a> Row<'a> {
    fn of(e: &'a BenchPlotEntry) -> Result<Self> {
        let label = e.label.as_str();
        if e.step_times_s.is_empty() {
            bail!("configuration '{label}' has no timed step");
        }
        let bad = |v: &f64| !v.is_finite() || *v < 0.0;
        if e.step_times_s.iter().chain(&e.repeat_medians_s).any(bad) {
            bail!("configuration '{label}' has a step time that is negative or not a number");
        }
        if e.mfu.is_some_and(|m| bad(&m)) {
            bail!("configuration '{label}' has an MFU that is negative or not a number");
        }
        let steps = sorted(&e.step_times_s);
        let repeats = sorted(&e.repeat_medians_s);
        let ms = |s: f64| s * 1e3;
        let median_ms = ms(if repeats.is_empty() {
            quantile(&steps, 0.5)
        } else {
            quantile(&repeats, 0.5)
        });
        let spread_ms = match (repeats.first(), repeats.last()) {
            (Some(lo), Some(hi)) if repeats.len() > 1 => Some((ms(*lo), ms(*hi))),
            _ => None,
        };
        Ok(Self {
            label,
            median_ms,
            spread_ms,
            mfu_pct: e.mfu.map(|m| m * 100.0),
            quantiles_ms: [0.1, 0.25, 0.5, 0.75, 0.9].map(|q| ms(quantile(&steps, q))),
        })
    }
}

/// Row i's band on the category axis: the first entry at the top.
type Band = SegmentValue<i32>;
type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordi32>,
    >,
>;

fn render(title: &str, rows: &[Row]) -> Result<String> {
    let n = rows.len() as u32;
    let longest = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0) as u32;
    // About 8 px a character at the label size; the sizes are estimates (see Cargo.toml).
    let label_width = (16 + 8 * longest).clamp(80, 460);
    let panel_height = 100 + 34 * n;
    let size = (label_width + 640, style::TITLE_HEIGHT + 3 * panel_height);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let body = root.titled(title, (FONT, style::TITLE_SIZE))?;
        let panels = body.split_evenly((3, 1));
        let [time, mfu, spread] = panels.as_slice() else {
            bail!(
                "plotters split the chart into {} panels, not 3",
                panels.len()
            );
        };
        step_time_panel(time, rows, label_width).context("the step time panel")?;
        mfu_panel(mfu, rows, label_width).context("the MFU panel")?;
        distribution_panel(spread, rows, label_width).context("the distribution panel")?;
        root.present()?;
    }
    Ok(svg)
}

/// A chart with one band per row on the vertical axis, named by the row labels, and `xs` across.
fn banded<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    rows: &[Row],
    label_width: u32,
    caption: &str,
    x_desc: &str,
    xs: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>> {
    let n = rows.len() as i32;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, style::CAPTION_SIZE))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(label_width)
        .build_cartesian_2d(xs.clone(), (0..last_band(n)).into_segmented())?;
    let x_tick = style::ticks(&xs);
    let name = |v: &Band| match v {
        SegmentValue::CenterOf(b) => usize::try_from(n - 1 - b)
            .ok()
            .and_then(|i| rows.get(i))
            .map_or(String::new(), |r| r.label.to_string()),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&name)
        .x_labels(8)
        .x_label_formatter(&x_tick)
        .x_desc(x_desc)
        .label_style((FONT, style::LABEL_SIZE))
        .light_line_style(BLACK.mix(0.06))
        .draw()?;
    Ok(chart)
}

/// The end of the band axis for `n` rows. plotters' integer range `0..k` holds k + 1 values, one
/// band each, so `0..n - 1` gives n bands; one row keeps `0..1` (a spare band above it) because
/// plotters maps a one-value range to a single point.
fn last_band(n: i32) -> i32 {
    if n > 1 {
        n - 1
    } else {
        1
    }
}

/// Row `i`'s band (the first row at the top).
fn band(rows: &[Row], i: usize) -> i32 {
    rows.len() as i32 - 1 - i as i32
}

/// A bar or box filling the middle of row `i`'s band, from `x0` to `x1`.
fn bar(
    chart: &Chart,
    rows: &[Row],
    i: usize,
    (x0, x1): (f64, f64),
    style: ShapeStyle,
) -> Rectangle<(f64, Band)> {
    let b = band(rows, i);
    let inset = band_pixels(chart, rows) / 5;
    let mut r = Rectangle::new(
        [
            (x0, SegmentValue::Exact(b)),
            (x1, SegmentValue::Exact(b + 1)),
        ],
        style,
    );
    r.set_margin(inset, inset, 0, 0);
    r
}

/// The height of a band in pixels.
fn band_pixels(chart: &Chart, rows: &[Row]) -> u32 {
    let bands = last_band(rows.len() as i32) as u32 + 1;
    chart.plotting_area().dim_in_pixel().1 / bands
}

/// Text just right of `x` in the middle of row `i`'s band.
fn note(rows: &[Row], i: usize, x: f64, text: String) -> Text<'static, (f64, Band), String> {
    let font = TextStyle::from((FONT, style::LABEL_SIZE).into_font())
        .pos(Pos::new(HPos::Left, VPos::Center));
    Text::new(text, (x, SegmentValue::CenterOf(band(rows, i))), font)
}

fn step_time_panel(area: &DrawingArea<SVGBackend, Shift>, rows: &[Row], lw: u32) -> Result<()> {
    let top = rows
        .iter()
        .map(|r| r.spread_ms.map_or(r.median_ms, |s| s.1.max(r.median_ms)))
        .fold(0.0, f64::max);
    let caption = "median step time (error bar: lowest to highest median of the repeats)";
    let mut chart = banded(area, rows, lw, caption, "ms", 0.0..nonzero(top) * 1.2)?;
    for (i, r) in rows.iter().enumerate() {
        let color = style::color(i);
        chart.draw_series([bar(&chart, rows, i, (0.0, r.median_ms), color.filled())])?;
        if let Some((lo, hi)) = r.spread_ms {
            let at = SegmentValue::CenterOf(band(rows, i));
            chart.draw_series([ErrorBar::new_horizontal(
                at,
                lo,
                r.median_ms,
                hi,
                BLACK.stroke_width(1),
                8,
            )])?;
        }
        let end = r.spread_ms.map_or(r.median_ms, |s| s.1.max(r.median_ms));
        let text = format!("{} ms", millis(r.median_ms));
        chart.draw_series([note(rows, i, end + top * 0.01, text)])?;
    }
    Ok(())
}

fn mfu_panel(area: &DrawingArea<SVGBackend, Shift>, rows: &[Row], lw: u32) -> Result<()> {
    let top = rows.iter().filter_map(|r| r.mfu_pct).fold(0.0, f64::max);
    let xs = 0.0..if top > 0.0 { top * 1.25 } else { 100.0 };
    let caption = "model FLOP utilization";
    let mut chart = banded(area, rows, lw, caption, "MFU (%)", xs)?;
    for (i, r) in rows.iter().enumerate() {
        let (end, text) = match r.mfu_pct {
            Some(p) => {
                let color = style::color(i);
                chart.draw_series([bar(&chart, rows, i, (0.0, p), color.filled())])?;
                (p, format!("{p:.1}%"))
            }
            None => (0.0, "n/a (peak FLOP/s of this device unknown)".into()),
        };
        chart.draw_series([note(rows, i, end + top * 0.01, text)])?;
    }
    Ok(())
}

fn distribution_panel(area: &DrawingArea<SVGBackend, Shift>, rows: &[Row], lw: u32) -> Result<()> {
    let lo = rows
        .iter()
        .map(|r| r.quantiles_ms[0])
        .fold(f64::INFINITY, f64::min);
    let hi = rows.iter().map(|r| r.quantiles_ms[4]).fold(0.0, f64::max);
    let pad = nonzero(hi - lo) * 0.1;
    let caption = "step-time distribution (whiskers p10 to p90, box p25 to p75, line: median)";
    let mut chart = banded(
        area,
        rows,
        lw,
        caption,
        "step time (ms)",
        (lo - pad).max(0.0)..hi + pad,
    )?;
    for (i, r) in rows.iter().enumerate() {
        let [p10, p25, p50, p75, p90] = r.quantiles_ms;
        let color = style::color(i);
        let at = SegmentValue::CenterOf(band(rows, i));
        chart.draw_series([ErrorBar::new_horizontal(
            at.clone(),
            p10,
            p50,
            p90,
            color.stroke_width(2),
            10,
        )])?;
        chart.draw_series([
            bar(&chart, rows, i, (p25, p75), WHITE.filled()),
            bar(&chart, rows, i, (p25, p75), color.mix(0.35).filled()),
            bar(&chart, rows, i, (p25, p75), color.stroke_width(2)),
        ])?;
        // The median as a line across the box: a path in pixels around the point (a rectangle
        // of no width would not be drawn).
        let half = band_pixels(&chart, rows) as i32 * 3 / 10;
        chart.draw_series([EmptyElement::at((p50, at))
            + PathElement::new([(0, -half), (0, half)], BLACK.stroke_width(3))])?;
    }
    Ok(())
}

/// Milliseconds to about four significant digits.
fn millis(v: f64) -> String {
    match v {
        v if v >= 1000.0 => format!("{v:.0}"),
        v if v >= 100.0 => format!("{v:.1}"),
        v if v >= 10.0 => format!("{v:.2}"),
        v => format!("{v:.3}"),
    }
}

/// `v`, or 1 where it is not positive (an axis needs a span).
fn nonzero(v: f64) -> f64 {
    if v > 0.0 {
        v
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str, times: &[f64], medians: &[f64], mfu: Option<f64>) -> BenchPlotEntry {
        BenchPlotEntry {
            label: label.into(),
            step_times_s: times.to_vec(),
            repeat_medians_s: medians.to_vec(),
            mfu,
        }
    }

    #[test]
    fn a_row_takes_the_median_of_the_repeats_and_quantiles_of_every_step() {
        let e = entry(
            "a",
            &[0.004, 0.001, 0.003, 0.002],
            &[0.0025, 0.0031, 0.0020],
            Some(0.42),
        );
        let r = Row::of(&e).unwrap();
        assert!((r.median_ms - 2.5).abs() < 1e-9);
        assert_eq!(
            r.spread_ms.map(|(a, b)| (a.round(), (b * 10.0).round())),
            Some((2.0, 31.0))
        );
        assert!((r.quantiles_ms[2] - 2.5).abs() < 1e-9);
        assert!((r.quantiles_ms[0] - 1.3).abs() < 1e-9);
        assert!((r.mfu_pct.unwrap() - 42.0).abs() < 1e-9);
        // One repeat: no spread; none: the median of every step.
        let b = entry("b", &[0.001, 0.003], &[0.002], None);
        assert_eq!(Row::of(&b).unwrap().spread_ms, None);
        let c = entry("c", &[0.001, 0.003, 0.004], &[], None);
        let r = Row::of(&c).unwrap();
        assert!((r.median_ms - 3.0).abs() < 1e-9);
    }

    #[test]
    fn milliseconds_keep_about_four_digits() {
        assert_eq!(millis(219.7037), "219.7");
        assert_eq!(millis(4.12725), "4.127");
        assert_eq!(millis(12.0), "12.00");
        assert_eq!(millis(1234.5), "1234");
    }

    #[test]
    fn bad_entries_are_errors_naming_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b.svg");
        let e = bench_report(&out, "t", &[]).unwrap_err().to_string();
        assert!(e.contains("no configuration"), "{e}");
        let e = bench_report(&out, "t", &[entry("empty one", &[], &[], None)]).unwrap_err();
        assert!(
            format!("{e:#}").contains("'empty one' has no timed step"),
            "{e:#}"
        );
        let e = bench_report(&out, "t", &[entry("nan", &[f64::NAN], &[], None)]).unwrap_err();
        assert!(format!("{e:#}").contains("not a number"), "{e:#}");
        assert!(!out.exists());
    }
}

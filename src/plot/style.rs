//! What every chart shares: the font family, sizes and the run colours.
use plotters::style::RGBColor;

/// A generic family: the SVG names it and the viewer picks a font it has.
pub const FONT: &str = "sans-serif";
pub const TITLE_SIZE: u32 = 26;
pub const CAPTION_SIZE: u32 = 19;
pub const LABEL_SIZE: u32 = 15;
/// Room for the chart title above the panels.
pub const TITLE_HEIGHT: u32 = 40;

/// Matplotlib's ten category colours (tab10): distinct, and readable on white.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of series `i` (the same run keeps it in every panel; past ten they repeat).
pub fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// A tick label formatter for an axis spanning `range`: short labels, in scientific notation
/// where plain decimals would not fit. A tick within a millionth of the span of zero is zero
/// (plotters computes ticks in floating point, so 0 can come out as 3.4e-21).
pub fn ticks(range: &std::ops::Range<f64>) -> impl Fn(&f64) -> String {
    let zero = (range.end - range.start).abs() * 1e-6;
    move |v: &f64| {
        let a = v.abs();
        if a <= zero {
            "0".into()
        } else if !(1e-3..1e5).contains(&a) {
            format!("{v:.1e}")
        } else {
            let s = format!("{v:.4}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        let tick = ticks(&(-1e-4..1e-4));
        assert_eq!(tick(&0.0), "0");
        assert_eq!(tick(&3.4e-21), "0");
        assert_eq!(tick(&1e-4), "1.0e-4");
        let tick = ticks(&(-1.0..2000.0));
        assert_eq!(tick(&0.25), "0.25");
        assert_eq!(tick(&2.0), "2");
        assert_eq!(tick(&1250.5), "1250.5");
        assert_eq!(tick(&-3e6), "-3.0e6");
        assert_eq!(color(0), color(10));
    }
}

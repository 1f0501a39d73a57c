//! From records to points: one series per run and record kind in each metric's panel, against
//! the step or the wall time.
use super::records::{Record, RunLog};
use anyhow::{bail, Result};

/// What the horizontal axis measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XAxis {
    /// The training step.
    #[default]
    Step,
    /// Wall time since the run started (the records' `elapsed_s`).
    Time,
}

/// The points of one run's train or eval records for one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Index of the run (its colour and legend name).
    pub run: usize,
    pub eval: bool,
    pub points: Vec<(f64, f64)>,
}

/// One metric's series (runs without the metric have none).
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub metric: String,
    pub series: Vec<Series>,
}

/// The panels of `metrics` and the horizontal axis' description.
pub fn panels(runs: &[RunLog], metrics: &[String], x: XAxis) -> Result<(Vec<Panel>, String)> {
    let (positions, desc) = match x {
        XAxis::Step => (
            runs.iter()
                .map(|r| {
                    let at = |recs: &[Record]| recs.iter().map(|r| Some(r.step as f64)).collect();
                    (at(&r.train), at(&r.eval))
                })
                .collect::<Vec<_>>(),
            "step".to_string(),
        ),
        XAxis::Time => wall_times(runs)?,
    };
    let panels = metrics
        .iter()
        .map(|metric| {
            let mut series = Vec::new();
            for (run, (log, (train_x, eval_x))) in runs.iter().zip(&positions).enumerate() {
                for (eval, recs, xs) in [(false, &log.train, train_x), (true, &log.eval, eval_x)] {
                    let points: Vec<(f64, f64)> = recs
                        .iter()
                        .zip(xs)
                        .filter_map(|(r, x)| Some(((*x)?, *r.values.get(metric)?)))
                        .collect();
                    if !points.is_empty() {
                        series.push(Series { run, eval, points });
                    }
                }
            }
            Panel {
                metric: metric.clone(),
                series,
            }
        })
        .collect();
    Ok((panels, desc))
}

/// Per run, the wall time of each train and eval record in a common unit, and the axis'
/// description. A record without `elapsed_s` (eval records of older runs) takes it from the
/// train records around its step; one outside them is left out.
type Positions = Vec<(Vec<Option<f64>>, Vec<Option<f64>>)>;
fn wall_times(runs: &[RunLog]) -> Result<(Positions, String)> {
    let mut secs: Positions = Vec::with_capacity(runs.len());
    for log in runs {
        let knots: Vec<(f64, f64)> = log
            .train
            .iter()
            .filter_map(|r| Some((r.step as f64, r.elapsed_s?)))
            .collect();
        let at = |recs: &[Record]| -> Vec<Option<f64>> {
            recs.iter()
                .map(|r| r.elapsed_s.or_else(|| interpolate(&knots, r.step as f64)))
                .collect()
        };
        let (train, eval) = (at(&log.train), at(&log.eval));
        if train.iter().chain(&eval).all(Option::is_none) {
            bail!(
                "{}: no record has elapsed_s (seconds since the run started); plot it with \
                 --x step",
                log.path.display()
            );
        }
        secs.push((train, eval));
    }
    let longest = secs
        .iter()
        .flat_map(|(t, e)| t.iter().chain(e).flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let (unit, scale) = if longest < 120.0 {
        ("s", 1.0)
    } else if longest < 2.0 * 3600.0 {
        ("min", 60.0)
    } else {
        ("h", 3600.0)
    };
    for (t, e) in &mut secs {
        for v in t.iter_mut().chain(e.iter_mut()).flatten() {
            *v /= scale;
        }
    }
    Ok((secs, format!("wall time ({unit})")))
}

/// The value at `x` of the piecewise-linear curve through `knots` (ascending in x); `None`
/// outside them.
fn interpolate(knots: &[(f64, f64)], x: f64) -> Option<f64> {
    let i = knots.partition_point(|k| k.0 < x);
    let hi = *knots.get(i)?;
    if hi.0 == x {
        return Some(hi.1);
    }
    let lo = *knots.get(i.checked_sub(1)?)?;
    Some(lo.1 + (hi.1 - lo.1) * (x - lo.0) / (hi.0 - lo.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::records::parse;

    fn run(lines: &[&str]) -> RunLog {
        parse(&lines.join("\n"))
    }

    #[test]
    fn each_run_gives_a_train_and_an_eval_series_where_it_has_the_metric() {
        let a = run(&[
            r#"{"kind":"train","step":10,"loss":3.0,"mlm_accuracy":0.1}"#,
            r#"{"kind":"train","step":20,"loss":2.0,"mlm_accuracy":0.2}"#,
            r#"{"kind":"eval","step":20,"mlm_accuracy":0.15}"#,
        ]);
        let b = run(&[r#"{"kind":"train","step":5,"loss":4.5}"#]);
        let metrics = ["loss".to_string(), "mlm_accuracy".into()];
        let (p, desc) = panels(&[a, b], &metrics, XAxis::Step).unwrap();
        assert_eq!(desc, "step");
        assert_eq!(p[0].metric, "loss");
        let loss: Vec<_> = p[0].series.iter().map(|s| (s.run, s.eval)).collect();
        assert_eq!(loss, [(0, false), (1, false)]);
        assert_eq!(p[0].series[0].points, [(10.0, 3.0), (20.0, 2.0)]);
        assert_eq!(p[0].series[1].points, [(5.0, 4.5)]);
        let acc: Vec<_> = p[1].series.iter().map(|s| (s.run, s.eval)).collect();
        assert_eq!(acc, [(0, false), (0, true)]);
        assert_eq!(p[1].series[1].points, [(20.0, 0.15)]);
    }

    #[test]
    fn wall_time_comes_from_elapsed_s_or_the_train_records_around_the_step() {
        let a = run(&[
            r#"{"kind":"train","step":10,"loss":3.0,"elapsed_s":600}"#,
            r#"{"kind":"train","step":30,"loss":2.0,"elapsed_s":1800}"#,
            r#"{"kind":"eval","step":20,"loss":2.5}"#,
            r#"{"kind":"eval","step":30,"loss":2.2,"elapsed_s":1830}"#,
            r#"{"kind":"eval","step":40,"loss":2.1}"#,
        ]);
        let (p, desc) = panels(&[a], &["loss".to_string()], XAxis::Time).unwrap();
        assert_eq!(desc, "wall time (min)");
        assert_eq!(p[0].series[0].points, [(10.0, 3.0), (30.0, 2.0)]);
        // step 20 lies halfway: 1200 s; step 40 is past the last train record: left out.
        assert_eq!(p[0].series[1].points, [(20.0, 2.5), (30.5, 2.2)]);

        let old = run(&[r#"{"kind":"train","step":10,"loss":3.0}"#]);
        let e = panels(&[old], &["loss".to_string()], XAxis::Time).unwrap_err();
        assert!(e.to_string().contains("--x step"), "{e}");
    }

    #[test]
    fn interpolation_is_exact_at_knots_and_none_outside() {
        let k = [(0.0, 1.0), (10.0, 3.0)];
        assert_eq!(interpolate(&k, 0.0), Some(1.0));
        assert_eq!(interpolate(&k, 5.0), Some(2.0));
        assert_eq!(interpolate(&k, 10.0), Some(3.0));
        assert_eq!(interpolate(&k, 11.0), None);
        assert_eq!(interpolate(&k, -1.0), None);
        assert_eq!(interpolate(&[], 1.0), None);
    }
}

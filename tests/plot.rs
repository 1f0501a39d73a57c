//! `tpu-run plot` and the bench chart, on CPU with synthetic metrics: the SVG is written, names
//! every run and metric, and holds one curve per run and metric (checked by counting the
//! polylines of each run's colour with as many points as the run has records); skipped lines
//! are counted; bad inputs are errors that name the problem. `PLOT_KEEP=DIR` keeps a copy of
//! each chart in DIR, to look at.
mod cli_support;
use cli_support::{run_fail, run_ok, stderr, stdout, tpu_run};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use tpu_run::plot::{bench_report, plot_runs, BenchPlotEntry, CurveOptions, XAxis};

/// The first two run colours (tab10, src/plot/style.rs), as the SVG backend spells them.
const COLORS: [&str; 2] = ["#1F77B4", "#FF7F0E"];
const TRAIN: usize = 12;
const EVAL: usize = 3;

/// A pretrain-like metrics.jsonl: `TRAIN` train records (every known train metric), `EVAL`
/// eval records, a summary, then `bad` lines that are not records.
fn metrics(rng: &mut StdRng, bad: usize) -> String {
    let mut lines = Vec::new();
    for i in 1..=TRAIN {
        let step = i * 10;
        let v = |rng: &mut StdRng, base: f64| base + rng.gen_range(-0.1..0.1);
        lines.push(format!(
            r#"{{"kind":"train","step":{step},"loss":{},"mlm_loss":{},"nsp_loss":{},"mlm_accuracy":{},"nsp_accuracy":{},"learning_rate":{},"grad_norm":{},"seq_per_s":{},"examples_seen":{},"elapsed_s":{}}}"#,
            v(rng, 8.0 - i as f64 * 0.3),
            v(rng, 7.0 - i as f64 * 0.3),
            v(rng, 0.7),
            v(rng, 0.05 * i as f64).abs(),
            v(rng, 0.6),
            1e-4 * i as f64 / TRAIN as f64,
            v(rng, 2.0),
            v(rng, 300.0),
            step * 32,
            step as f64 * 0.5 + rng.gen_range(0.0..0.1),
        ));
        if i % (TRAIN / EVAL) == 0 {
            lines.push(format!(
                r#"{{"kind":"eval","step":{step},"mlm_loss":{},"nsp_loss":{},"mlm_accuracy":{},"mlm_accuracy_at_mask":{},"nsp_accuracy":{},"loss":{},"examples":64,"seconds":0.5}}"#,
                v(rng, 7.0),
                v(rng, 0.7),
                v(rng, 0.3).abs(),
                v(rng, 0.3).abs(),
                v(rng, 0.6),
                v(rng, 7.7),
            ));
        }
    }
    lines.push(r#"{"kind":"summary","step":120,"loss":4.5,"wall_time_s":61.0}"#.into());
    for k in 0..bad {
        lines.push(if k % 2 == 0 {
            "{\"kind\":\"train\",\"step\":130,\"lo".into() // cut short
        } else {
            r#"{"kind":"train","loss":1.0}"#.into() // no step
        });
    }
    lines.join("\n") + "\n"
}

/// Run `alpha` (a directory, 2 bad lines) and `beta.jsonl` (a file, 1 bad line).
fn two_runs(dir: &Path) -> Vec<PathBuf> {
    let mut rng = StdRng::seed_from_u64(11);
    let alpha = dir.join("alpha");
    std::fs::create_dir(&alpha).unwrap();
    std::fs::write(alpha.join("metrics.jsonl"), metrics(&mut rng, 2)).unwrap();
    let beta = dir.join("beta.jsonl");
    std::fs::write(&beta, metrics(&mut rng, 1)).unwrap();
    vec![alpha, beta]
}

/// (stroke colour, number of points) of every polyline.
fn polylines(svg: &str) -> Vec<(String, usize)> {
    svg.split("<polyline")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find("/>").unwrap()];
            let attr = |name: &str| {
                let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                tag[start..start + tag[start..].find('"').unwrap()].to_string()
            };
            (attr("stroke"), attr("points").split_whitespace().count())
        })
        .collect()
}

fn count(svg: &str, color: &str, points: usize) -> usize {
    polylines(svg)
        .iter()
        .filter(|(c, n)| c == color && *n == points)
        .count()
}

fn text(svg: &str, s: &str) -> bool {
    svg.contains(&format!(">\n{s}\n</text>"))
}

fn check_svg_shape(svg: &str) {
    if let Ok(d) = std::env::var("PLOT_KEEP") {
        let n = std::fs::read_dir(&d).unwrap().count();
        std::fs::write(format!("{d}/{n}.svg"), svg).unwrap();
    }
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn two_runs_give_one_curve_each_in_every_panel() {
    let dir = tempfile::tempdir().unwrap();
    let runs = two_runs(dir.path());
    let out = dir.path().join("curves.svg");
    let report = plot_runs(&runs, &out, &CurveOptions::default()).unwrap();

    let known = [
        "loss",
        "mlm_loss",
        "nsp_loss",
        "mlm_accuracy",
        "mlm_accuracy_at_mask",
        "nsp_accuracy",
        "learning_rate",
        "grad_norm",
        "seq_per_s",
    ];
    assert_eq!(report.metrics, known);
    let labels: Vec<_> = report.runs.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["alpha", "beta"]);
    let skipped: Vec<_> = report.runs.iter().map(|r| r.skipped_lines).collect();
    assert_eq!(skipped, [2, 1]);
    assert_eq!(report.runs[0].train_records, TRAIN);
    assert_eq!(report.runs[0].eval_records, EVAL);

    let svg = std::fs::read_to_string(&out).unwrap();
    check_svg_shape(&svg);
    for m in known {
        assert!(text(&svg, m), "no caption {m}");
    }
    for (run, color) in ["alpha", "beta"].iter().zip(COLORS) {
        assert!(text(&svg, run) && text(&svg, &format!("{run} (eval)")));
        // Every metric but mlm_accuracy_at_mask is in the train records; six in the eval ones.
        assert_eq!(count(&svg, color, TRAIN), 8, "{run}'s train curves");
        assert_eq!(count(&svg, color, EVAL), 6, "{run}'s eval curves");
        // A marker per eval record in each of those panels, and one in each legend.
        let markers = svg
            .split("<circle")
            .skip(1)
            .filter(|c| c[..c.find("/>").unwrap()].contains(&format!("fill=\"{color}\"")))
            .count();
        assert_eq!(markers, 6 * EVAL + 6, "{run}'s eval markers");
    }
    assert!(!text(&svg, "examples_seen"), "not a default metric");
}

#[test]
fn wall_time_and_chosen_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let runs = two_runs(dir.path());
    let out = dir.path().join("time.svg");
    let opts = CurveOptions {
        x: XAxis::Time,
        metrics: Some(vec!["mlm_accuracy".into(), "examples_seen".into()]),
        title: Some("Two runs".into()),
    };
    let report = plot_runs(&runs, &out, &opts).unwrap();
    assert_eq!(report.metrics, ["mlm_accuracy", "examples_seen"]);
    let svg = std::fs::read_to_string(&out).unwrap();
    check_svg_shape(&svg);
    assert!(text(&svg, "Two runs") && text(&svg, "wall time (s)"));
    assert!(text(&svg, "examples_seen") && !text(&svg, "loss"));
    for color in COLORS {
        assert_eq!(count(&svg, color, TRAIN), 2);
        // The eval records have no elapsed_s: placed between the train records around them.
        assert_eq!(count(&svg, color, EVAL), 1);
    }
}

#[test]
fn the_command_writes_the_chart_and_reports_skipped_lines() {
    let dir = tempfile::tempdir().unwrap();
    let runs = two_runs(dir.path());
    let out = dir.path().join("cli.svg");
    let o = run_ok(
        tpu_run()
            .arg("plot")
            .args(&runs)
            .args([
                "--metrics",
                "loss,learning_rate",
                "--title",
                "CLI chart",
                "--out",
            ])
            .arg(&out),
    );
    let stdout = stdout(&o);
    let line = |run: &str| stdout.lines().find(|l| l.starts_with(run)).unwrap_or("");
    assert!(line("alpha").contains("2 line(s) skipped"), "{stdout}");
    assert!(line("beta").contains("1 line(s) skipped"), "{stdout}");
    assert!(
        line("alpha").contains(&format!("{TRAIN} train and {EVAL} eval")),
        "{stdout}"
    );
    assert!(stdout.contains("(loss, learning_rate)"), "{stdout}");
    let svg = std::fs::read_to_string(&out).unwrap();
    check_svg_shape(&svg);
    assert!(text(&svg, "CLI chart") && text(&svg, "learning_rate"));
    assert_eq!(count(&svg, COLORS[0], TRAIN), 2);
    assert_eq!(count(&svg, COLORS[1], TRAIN), 2);
}

#[test]
fn bad_inputs_are_errors_that_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let runs = two_runs(dir.path());
    let out = dir.path().join("x.svg");
    let fail = |args: &[&std::ffi::OsStr]| stderr(&run_fail(tpu_run().arg("plot").args(args)));
    let missing = dir.path().join("nowhere.jsonl");
    let e = fail(&[missing.as_os_str(), "--out".as_ref(), out.as_os_str()]);
    assert!(e.contains("nowhere.jsonl: no such file"), "{e}");
    let e = fail(&[
        runs[0].as_os_str(),
        "--metrics".as_ref(),
        "loss,accuracy".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(e.contains("unknown metric 'accuracy'"), "{e}");
    assert!(
        e.contains("available: examples, examples_seen, grad_norm, learning_rate"),
        "{e}"
    );
    let e = fail(&[runs[0].as_os_str()]);
    assert!(e.contains("--out"), "{e}");

    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "not json\n{\"kind\":\"summary\",\"step\":1}\n").unwrap();
    let e = plot_runs(&[junk], &out, &CurveOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("junk.jsonl: no usable records (1 line(s) skipped"),
        "{e}"
    );
    let e = plot_runs(
        &runs,
        &dir.path().join("no/such/dir/x.svg"),
        &CurveOptions::default(),
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("does its directory exist"),
        "{e:#}"
    );
    assert!(!out.exists());
}

#[test]
fn the_bench_chart_names_every_configuration() {
    let mut rng = StdRng::seed_from_u64(5);
    let entry = |rng: &mut StdRng, label: &str, base: f64, mfu: Option<f64>| {
        let step_times_s: Vec<f64> = (0..30).map(|_| base * rng.gen_range(0.9..1.3)).collect();
        let repeat_medians_s = step_times_s.chunks(10).map(|c| c[5]).collect();
        BenchPlotEntry {
            label: label.into(),
            step_times_s,
            repeat_medians_s,
            mfu,
        }
    };
    let entries = [
        entry(
            &mut rng,
            "base pretrain s128 b256 bf16 cudnn",
            0.21,
            Some(0.412),
        ),
        entry(
            &mut rng,
            "base pretrain s128 b256 f32 graph",
            0.55,
            Some(0.157),
        ),
        entry(&mut rng, "tiny pretrain s16 b4 f32 cpu", 0.004, None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.svg");
    if let Ok(keep) = std::env::var("PLOT_KEEP") {
        let _ = keep;
    }
    bench_report(&out, "bench on one H100", &entries).unwrap();
    let svg = std::fs::read_to_string(&out).unwrap();
    check_svg_shape(&svg);
    assert!(text(&svg, "bench on one H100"));
    for e in &entries {
        assert!(text(&svg, &e.label), "no label {}", e.label);
    }
    assert!(text(&svg, "41.2%") && text(&svg, "15.7%"));
    assert!(text(&svg, "n/a (peak FLOP/s of this device unknown)"));
    // Bars: each configuration's colour fills its step-time bar, its MFU bar where it has one,
    // and its box.
    let fills = |c: &str| svg.matches(&format!("fill=\"{c}\"")).count();
    assert_eq!(fills(COLORS[0]), 3, "{svg}");
    assert_eq!(fills("#2CA02C"), 2);
    // A median line (black, 3 px) in each configuration's box.
    let medians = svg
        .matches(r##"stroke="#000000" stroke-width="3""##)
        .count();
    assert_eq!(medians, 3);
}

#[test]
fn a_single_configuration_is_drawn_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("one.svg");
    let entry = BenchPlotEntry {
        label: "tiny & small <cpu>".into(),
        step_times_s: vec![0.012, 0.010, 0.011, 0.013],
        repeat_medians_s: vec![0.0115],
        mfu: Some(0.05),
    };
    bench_report(&out, "one", &[entry]).unwrap();
    let svg = std::fs::read_to_string(&out).unwrap();
    check_svg_shape(&svg);
    // The label is escaped, not markup; one colour for the bars and the box.
    assert!(text(&svg, "tiny &amp; small &lt;cpu&gt;"));
    assert!(text(&svg, "11.50 ms") && text(&svg, "5.0%"));
    assert_eq!(svg.matches(&format!("fill=\"{}\"", COLORS[0])).count(), 3);
}

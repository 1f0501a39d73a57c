//! The aligned table `tpu-run bench` prints: one row per configuration, the figures a
//! compiler engineer scans first; everything else is in the JSON lines.
use super::record::BenchRecord;

const HEADER: [&str; 14] = [
    "configuration",
    "build s",
    "compile s",
    "first step s",
    "median ms",
    "p10 ms",
    "p90 ms",
    "seq/s",
    "TFLOP/s",
    "MFU",
    "fusions",
    "custom calls",
    "peak GiB",
    "vs anchors / baseline",
];

/// The table of `records` as text, columns padded to their widest cell.
pub fn render(records: &[BenchRecord]) -> String {
    let rows: Vec<Vec<String>> = records.iter().map(row).collect();
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            // Text columns (the first and the last) left-aligned, figures right-aligned.
            if i == 0 || i + 1 == cells.len() {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            }
            s.push_str("  ");
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&HEADER.map(String::from));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

fn row(r: &BenchRecord) -> Vec<String> {
    let mut cells = vec![r.key.clone()];
    if let (Some(rust), Some(xla), None) = (&r.rust, &r.xla, &r.runtime) {
        // Compile only (a TPU topology): our build and XLA's compile, nothing timed.
        cells.push(format!("{:.2}", rust.build_s));
        cells.push(format!("{:.1}", xla.compile_s));
        cells.extend(std::iter::repeat_n("-".to_string(), HEADER.len() - 4));
        let gib = |b: Option<i64>| {
            b.map_or("?".into(), |b| {
                format!("{:.2}", b as f64 / (1u64 << 30) as f64)
            })
        };
        cells.push(format!(
            "compile only: arguments {} GiB, temporaries {} GiB, {:.3} TFLOP by XLA's cost analysis",
            gib(xla.argument_bytes),
            gib(xla.temp_bytes),
            xla.cost_flops.unwrap_or(0.0) / 1e12
        ));
        return cells;
    }
    let (Some(rust), Some(xla), Some(rt)) = (&r.rust, &r.xla, &r.runtime) else {
        let why = match (&r.skipped, &r.error) {
            (Some(s), _) => format!("skipped: {s}"),
            (_, Some(e)) => format!("failed: {e}"),
            _ => "not run".into(),
        };
        cells.extend(std::iter::repeat_n("-".to_string(), HEADER.len() - 2));
        cells.push(why);
        return cells;
    };
    let ms = |s: f64| format!("{:.2}", s * 1e3);
    cells.push(format!("{:.2}", rust.build_s));
    cells.push(format!("{:.1}", xla.compile_s));
    cells.push(format!("{:.1}", rt.time_to_first_step_s));
    cells.push(ms(rt.median_step_s));
    cells.push(ms(rt.p10_step_s));
    cells.push(ms(rt.p90_step_s));
    cells.push(format!("{:.1}", rt.seq_per_s));
    cells.push(format!("{:.1}", rt.model_tflops_per_s));
    cells.push(rt.mfu.map_or("-".into(), |m| format!("{:.1}%", m * 100.0)));
    let opt = xla.optimized.as_ref();
    cells.push(opt.map_or("-".into(), |o| o.fusions.to_string()));
    cells.push(opt.map_or("-".into(), |o| o.custom_call_count().to_string()));
    cells.push(rt.device_peak_bytes.map_or("-".into(), |b| {
        format!("{:.1}", b as f64 / (1u64 << 30) as f64)
    }));
    let mut notes: Vec<String> = r
        .anchors
        .iter()
        .map(|a| {
            let first = a
                .first_step_incl_compile_s
                .map_or(String::new(), |s| format!(" (first step {s:.1} s)"));
            match a.ratio {
                Some(x) => format!("{} {x:.2}x{first}", a.name),
                None => format!("{} n/a", a.name),
            }
        })
        .collect();
    if let Some(b) = &r.baseline {
        notes.push(match b.change_percent {
            Some(p) => format!("baseline {:+.1}% {}", p, b.verdict),
            None => format!("baseline {}", b.verdict),
        });
    }
    cells.push(notes.join(", "));
    cells
}

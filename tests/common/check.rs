//! Comparisons that report the worst element.

/// Asserts `|got - want| <= atol + rtol * |want|` elementwise (NaN matches NaN, inf matches the
/// same inf) and reports the worst element on failure.
#[track_caller]
pub fn assert_close(got: &[f64], want: &[f64], atol: f64, rtol: f64, what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: got {} elements, want {}",
        got.len(),
        want.len()
    );
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = if g.is_nan() && w.is_nan() || (g == w) {
            0.0
        } else if g.is_nan() || w.is_nan() || g.is_infinite() || w.is_infinite() {
            f64::INFINITY
        } else {
            (g - w).abs() - (atol + rtol * w.abs())
        };
        let worse = match worst {
            Some((_, e)) => excess > e,
            None => excess > 0.0,
        };
        if worse {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        let bad = got
            .iter()
            .zip(want)
            .filter(|(g, w)| !close(**g, **w, atol, rtol))
            .count();
        panic!(
            "{what}: {bad} of {} elements differ; worst at [{i}]: got {}, want {} (atol {atol}, rtol {rtol})",
            got.len(),
            got[i],
            want[i]
        );
    }
}

fn close(g: f64, w: f64, atol: f64, rtol: f64) -> bool {
    (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= atol + rtol * w.abs()
}

/// Exact equality with the first differing element reported.
#[track_caller]
pub fn assert_exact<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: element counts differ");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        let bad = (0..got.len()).filter(|&i| got[i] != want[i]).count();
        panic!(
            "{what}: {bad} of {} elements differ; first at [{i}]: got {:?}, want {:?}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

//! Order statistics for the bench chart.

/// The `q`-quantile (0..=1) of `sorted` (ascending, not empty) by linear interpolation between
/// the closest ranks (numpy's default), so p50 of an even count is the mean of the middle two.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let Some(&first) = sorted.first() else {
        return f64::NAN;
    };
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(lo + 1) {
        Some(&next) => sorted[lo] + (next - sorted[lo]) * frac,
        None => sorted.get(lo).copied().unwrap_or(first),
    }
}

/// `values` sorted ascending (they are finite: checked by the caller).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let v = sorted(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        // rank 0.1 * 3 = 0.3: 1 + 0.3 * (2 - 1)
        assert!((quantile(&v, 0.1) - 1.3).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}

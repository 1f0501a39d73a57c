//! Order statistics of step times and the noise-aware comparison with a baseline.

/// The `q`-quantile (0..=1) of `xs` by linear interpolation between order statistics (numpy's
/// default); `None` for no values.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// Median, 10th and 90th percentile of a set of step times.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
}

impl Summary {
    pub fn of(xs: &[f64]) -> Option<Summary> {
        Some(Summary {
            median: quantile(xs, 0.5)?,
            p10: quantile(xs, 0.1)?,
            p90: quantile(xs, 0.9)?,
        })
    }
}

/// Mean and sample standard deviation; the deviation is `None` for fewer than two values.
pub fn mean_sd(xs: &[f64]) -> Option<(f64, Option<f64>)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = (xs.len() > 1)
        .then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((mean, sd))
}

/// How a configuration's step time compares with the baseline's.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Slower by more than the noise allows.
    Regression,
    /// Faster by more than the noise allows.
    Improvement,
    /// Within the noise.
    Unchanged,
    /// One side has fewer than two repeats, so its noise is unknown.
    NotJudged(String),
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::Unchanged => "unchanged",
            Verdict::NotJudged(_) => "not judged",
        }
    }
}

/// How many standard errors of the difference count as a change. Three: with the handful of
/// repeats a benchmark affords, fewer would flag ordinary run-to-run drift.
pub const NOISE_SIGMAS: f64 = 3.0;

/// Compares the per-repeat median step times of a new run with a baseline's: the difference
/// of the means must exceed [`NOISE_SIGMAS`] standard errors (Welch's: each side's own
/// repeat-to-repeat spread over its repeat count) to count. The threshold comes from the noise
/// both runs measured with `--repeat`, not from a fixed percentage.
pub fn compare(new_medians: &[f64], old_medians: &[f64]) -> Verdict {
    let (Some((new_mean, new_sd)), Some((old_mean, old_sd))) =
        (mean_sd(new_medians), mean_sd(old_medians))
    else {
        return Verdict::NotJudged("no step times".into());
    };
    let (Some(new_sd), Some(old_sd)) = (new_sd, old_sd) else {
        return Verdict::NotJudged(format!(
            "needs --repeat >= 2 on both sides (new: {}, baseline: {})",
            new_medians.len(),
            old_medians.len()
        ));
    };
    let se = (new_sd.powi(2) / new_medians.len() as f64
        + old_sd.powi(2) / old_medians.len() as f64)
        .sqrt();
    let diff = new_mean - old_mean;
    if diff > NOISE_SIGMAS * se {
        Verdict::Regression
    } else if -diff > NOISE_SIGMAS * se {
        Verdict::Improvement
    } else {
        Verdict::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let xs = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quantile(&xs, 0.5), Some(3.0));
        assert_eq!(quantile(&xs, 0.1), Some(1.4));
        assert!((quantile(&xs, 0.9).unwrap() - 4.6).abs() < 1e-12);
        assert_eq!(quantile(&[2.0, 4.0], 0.5), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn regressions_beyond_the_measured_noise() {
        let old = [0.100, 0.101, 0.099];
        // 10% slower with ~1% noise: a regression.
        assert_eq!(compare(&[0.110, 0.111, 0.109], &old), Verdict::Regression);
        assert_eq!(compare(&[0.090, 0.091, 0.089], &old), Verdict::Improvement);
        // The same 10% within noisy repeats (spread ~20%) is not flagged.
        let noisy_old = [0.08, 0.12, 0.10];
        assert_eq!(compare(&[0.09, 0.13, 0.11], &noisy_old), Verdict::Unchanged);
        assert!(matches!(compare(&[0.2], &old), Verdict::NotJudged(_)));
    }
}

//! GLUE's metrics, as its evaluation (and scikit-learn / SciPy, which Hugging Face's
//! `glue_compute_metrics` calls) defines them: accuracy; F1 of the positive class `1` (MRPC,
//! QQP); Matthews correlation (CoLA); Pearson and Spearman correlation (STS-B; Spearman with
//! tied values given their average rank). Undefined values (a constant input to a
//! correlation) are `None`, never a made-up number; scikit-learn's conventions give F1 and
//! Matthews 0 when their denominators vanish.
use super::tasks::Metric;
use serde_json::{json, Map, Value};

/// The scores of one evaluation file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores {
    pub examples: usize,
    pub accuracy: Option<f64>,
    pub f1: Option<f64>,
    pub matthews: Option<f64>,
    pub pearson: Option<f64>,
    pub spearman: Option<f64>,
}

impl Scores {
    /// The defined scores as a JSON object (fractions, as GLUE reports them before x100).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("examples".into(), json!(self.examples));
        for (name, v) in [
            ("accuracy", self.accuracy),
            ("f1", self.f1),
            ("matthews_corrcoef", self.matthews),
            ("pearson", self.pearson),
            ("spearman", self.spearman),
        ] {
            if let Some(v) = v {
                m.insert(name.into(), json!(v));
            }
        }
        Value::Object(m)
    }

    /// `accuracy 84.31 f1 88.97` (percent).
    pub fn line(&self) -> String {
        let mut parts = vec![];
        for (name, v) in [
            ("accuracy", self.accuracy),
            ("f1", self.f1),
            ("matthews", self.matthews),
            ("pearson", self.pearson),
            ("spearman", self.spearman),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name} {:.2}", 100.0 * v));
            }
        }
        parts.join(" ")
    }
}

/// What a task's model predicted and what the file says, in example order.
#[derive(Clone, Copy, Debug)]
pub enum Outcomes<'a> {
    Classes {
        predicted: &'a [u32],
        gold: &'a [u32],
    },
    Scores {
        predicted: &'a [f32],
        gold: &'a [f32],
    },
}

/// The task's metrics of `outcomes`.
pub fn score(metric: Metric, outcomes: Outcomes) -> Scores {
    match outcomes {
        Outcomes::Classes { predicted, gold } => {
            let mut s = Scores {
                examples: gold.len(),
                ..Default::default()
            };
            match metric {
                Metric::Matthews => s.matthews = Some(matthews(predicted, gold)),
                Metric::AccuracyF1 => {
                    s.accuracy = accuracy(predicted, gold);
                    s.f1 = Some(f1_positive(predicted, gold));
                }
                _ => s.accuracy = accuracy(predicted, gold),
            }
            s
        }
        Outcomes::Scores { predicted, gold } => {
            let x: Vec<f64> = predicted.iter().map(|&v| f64::from(v)).collect();
            let y: Vec<f64> = gold.iter().map(|&v| f64::from(v)).collect();
            Scores {
                examples: gold.len(),
                pearson: pearson(&x, &y),
                spearman: spearman(&x, &y),
                ..Default::default()
            }
        }
    }
}

/// The fraction of equal pairs (`None` for no examples).
pub fn accuracy(predicted: &[u32], gold: &[u32]) -> Option<f64> {
    (!gold.is_empty()).then(|| {
        let hits = predicted.iter().zip(gold).filter(|(p, g)| p == g).count();
        hits as f64 / gold.len() as f64
    })
}

/// F1 of class 1: 2 tp / (2 tp + fp + fn); 0 when there is no positive at all.
pub fn f1_positive(predicted: &[u32], gold: &[u32]) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    for (&p, &g) in predicted.iter().zip(gold) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
    }
    let denominator = 2 * tp + fp + fn_;
    if denominator == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denominator as f64
    }
}

/// Matthews correlation in its multi-class form (Gorodkin's R_K, as scikit-learn computes it;
/// for two classes it is (tp tn - fp fn) / sqrt(...)); 0 when a marginal is constant.
pub fn matthews(predicted: &[u32], gold: &[u32]) -> f64 {
    let classes = predicted
        .iter()
        .chain(gold)
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1);
    let (mut p, mut t) = (vec![0f64; classes], vec![0f64; classes]);
    let mut correct = 0f64;
    for (&a, &b) in predicted.iter().zip(gold) {
        p[a as usize] += 1.0;
        t[b as usize] += 1.0;
        if a == b {
            correct += 1.0;
        }
    }
    let s = gold.len() as f64;
    let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
    let cov_yp = correct * s - dot(&t, &p);
    let cov_pp = s * s - dot(&p, &p);
    let cov_yy = s * s - dot(&t, &t);
    if cov_pp == 0.0 || cov_yy == 0.0 {
        0.0
    } else {
        cov_yp / (cov_pp * cov_yy).sqrt()
    }
}

/// Pearson's r (`None` when either input is constant or there are fewer than 2 pairs).
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let mean = |v: &[f64]| v[..n].iter().sum::<f64>() / n as f64;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxx > 0.0 && syy > 0.0).then(|| (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Spearman's rho: Pearson's r of the ranks, ties at their average rank.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// 1-based ranks, tied values sharing the mean of their positions (SciPy's `rankdata`
/// "average").
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && v[order[j]] == v[order[i]] {
            j += 1;
        }
        // Positions i..j (0-based) hold equal values: ranks i+1 ..= j, mean (i + 1 + j) / 2.
        let rank = (i + 1 + j) as f64 / 2.0;
        for &k in &order[i..j] {
            out[k] = rank;
        }
        i = j;
    }
    out
}

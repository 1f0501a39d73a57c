//! Which metrics get a panel: the known ones (what `tpu-run pretrain` writes to its train and eval
//! records) by default, in a fixed order, or those asked for by name.
use anyhow::{bail, Result};
use std::collections::BTreeSet;

/// A metric with a panel of its own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric {
    /// The field name in metrics.jsonl (and the panel's caption).
    pub name: &'static str,
    /// What it is, for the value axis.
    pub title: &'static str,
    /// Whether it tends to grow during training (the legend then goes below the curves).
    pub rising: bool,
}

const fn m(name: &'static str, title: &'static str, rising: bool) -> Metric {
    Metric {
        name,
        title,
        rising,
    }
}

/// The default panels, in order. Other numeric fields (`loss_scale`, `examples_seen`) can be
/// asked for with `--metrics`.
pub const KNOWN: [Metric; 9] = [
    m("loss", "loss (MLM + NSP)", false),
    m("mlm_loss", "masked-LM loss", false),
    m("nsp_loss", "next-sentence loss", false),
    m("mlm_accuracy", "masked-LM accuracy", true),
    m("mlm_accuracy_at_mask", "masked-LM accuracy at [MASK]", true),
    m("nsp_accuracy", "next-sentence accuracy", true),
    m("learning_rate", "learning rate", false),
    m("grad_norm", "gradient global norm", false),
    m("seq_per_s", "sequences per second", true),
];

/// The description of a known metric (`None` for any other field).
pub fn describe(name: &str) -> Option<Metric> {
    KNOWN.iter().copied().find(|k| k.name == name)
}

/// The metrics to draw: `requested` (each must be present in some run), or every known metric
/// present. `present`: the numeric fields of the runs' train and eval records.
pub fn select(requested: Option<&[String]>, present: &BTreeSet<&str>) -> Result<Vec<String>> {
    let available = || present.iter().copied().collect::<Vec<_>>().join(", ");
    let Some(requested) = requested else {
        let known: Vec<String> = KNOWN
            .iter()
            .filter(|k| present.contains(k.name))
            .map(|k| k.name.to_string())
            .collect();
        if known.is_empty() {
            bail!(
                "the runs have none of the usual metrics ({}); pick some with --metrics from: {}",
                KNOWN.map(|k| k.name).join(", "),
                available()
            );
        }
        return Ok(known);
    };
    let mut chosen: Vec<String> = Vec::new();
    for name in requested.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if !present.contains(name) {
            bail!(
                "unknown metric '{name}': no run has it; available: {}",
                available()
            );
        }
        if !chosen.iter().any(|c| c == name) {
            chosen.push(name.to_string());
        }
    }
    if chosen.is_empty() {
        bail!("--metrics names no metric; available: {}", available());
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present() -> BTreeSet<&'static str> {
        ["seq_per_s", "loss", "examples_seen", "mlm_accuracy"].into()
    }

    #[test]
    fn the_default_is_the_known_metrics_present_in_a_fixed_order() {
        let got = select(None, &present()).unwrap();
        assert_eq!(got, ["loss", "mlm_accuracy", "seq_per_s"]);
        let e = select(None, &["examples_seen"].into()).unwrap_err();
        assert!(e.to_string().contains("from: examples_seen"), "{e}");
    }

    #[test]
    fn requested_metrics_keep_their_order_and_unknown_ones_list_the_available() {
        let want = ["examples_seen".to_string(), "loss".into(), "loss".into()];
        assert_eq!(
            select(Some(&want), &present()).unwrap(),
            ["examples_seen", "loss"]
        );
        let e = select(Some(&["los".to_string()]), &present())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'los'") && e.contains("examples_seen, loss, mlm_accuracy, seq_per_s"),
            "{e}"
        );
        assert!(select(Some(&[" ".to_string()]), &present()).is_err());
    }

    #[test]
    fn only_known_metrics_have_a_description() {
        assert!(describe("mlm_accuracy").is_some_and(|m| m.rising));
        assert_eq!(describe("loss_scale"), None);
    }
}

//! `--layers`: which encoder layers to write, as extract_features.py names them: `-1` is the last
//! layer's output, `-N` the N-th from last, down to `-num_layers` (the first layer; the
//! embeddings are not among them).
use anyhow::{bail, Result};

/// The requested layers, in the order given (repeats allowed, as the original allows them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSelection {
    /// As the user wrote them (what the output's `index` says).
    pub indexes: Vec<i64>,
    /// 0-based encoder layer of each index.
    pub layers: Vec<usize>,
}

/// Parses `spec` (`-1,-2,-3,-4`) against a model of `num_layers` layers.
pub fn parse_layers(spec: &str, num_layers: usize) -> Result<LayerSelection> {
    let mut sel = LayerSelection {
        indexes: vec![],
        layers: vec![],
    };
    for part in spec.split(',') {
        let part = part.trim();
        let Ok(index) = part.parse::<i64>() else {
            bail!(
                "--layers {spec:?}: {part:?} is not an integer (give negative layer indexes such \
                 as -1,-2,-3,-4)"
            );
        };
        let n = num_layers as i64;
        if index >= 0 || index < -n {
            bail!(
                "--layers {spec:?}: {index} is not a layer of this {num_layers}-layer model; \
                 indexes count back from the last layer: -1 (the last) to -{num_layers} (the \
                 first)"
            );
        }
        sel.indexes.push(index);
        sel.layers.push((n + index) as usize);
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_indexes_count_back_from_the_last_layer() {
        let sel = parse_layers("-1,-2, -6,-1", 6).unwrap();
        assert_eq!(sel.indexes, [-1, -2, -6, -1]);
        assert_eq!(sel.layers, [5, 4, 0, 5]);
    }

    #[test]
    fn zero_positive_out_of_range_and_junk_are_refused() {
        for (spec, want) in [
            ("0", "0 is not a layer of this 6-layer model"),
            ("-7", "-7 is not a layer"),
            ("2", "2 is not a layer"),
            ("-1,x", "\"x\" is not an integer"),
            ("", "\"\" is not an integer"),
        ] {
            let msg = format!("{:#}", parse_layers(spec, 6).unwrap_err());
            assert!(
                msg.contains(want) && msg.contains("--layers"),
                "{spec}: {msg}"
            );
        }
    }
}

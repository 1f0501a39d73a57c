//! The packer (src/data/packing.rs) on random examples: every instance comes back whole from
//! the packed rows (tokens, token types, predictions with positions shifted back, NSP label),
//! rows stay within their limits, position ids restart per instance, nothing is split.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tpu_run::data::batch::HostExample;
use tpu_run::data::packing::{
    pack_examples, pack_first_fit_decreasing, Footprint, PackLimits, PackedBatch, Packer,
};

const SEQ: usize = 32;
const PREDS: usize = 5;

/// An unpacked example of `len` real tokens (then padding) with up to PREDS predictions at
/// distinct real positions, as create-data writes it.
fn example(r: &mut StdRng, len: usize) -> HostExample {
    let mut ex = HostExample {
        input_ids: vec![0; SEQ],
        input_mask: vec![0; SEQ],
        segment_ids: vec![0; SEQ],
        masked_lm_positions: vec![0; PREDS],
        masked_lm_ids: vec![0; PREDS],
        masked_lm_weights: vec![0.0; PREDS],
        next_sentence_label: r.gen_range(0..2),
    };
    let split = r.gen_range(1..=len);
    for t in 0..len {
        ex.input_ids[t] = r.gen_range(1..1000);
        ex.input_mask[t] = 1;
        ex.segment_ids[t] = i32::from(t >= split);
    }
    let n = r.gen_range(0..=PREDS.min(len));
    let mut chosen = rand::seq::index::sample(r, len, n).into_vec();
    chosen.sort_unstable();
    for (k, p) in chosen.into_iter().enumerate() {
        ex.masked_lm_positions[k] = p as i32;
        ex.masked_lm_ids[k] = r.gen_range(1..1000);
        ex.masked_lm_weights[k] = 1.0;
    }
    ex
}

fn examples(seed: u64, n: usize, lens: std::ops::RangeInclusive<usize>) -> Vec<HostExample> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = r.gen_range(lens.clone());
            example(&mut r, len)
        })
        .collect()
}

/// One instance as read back from a packed row, in unpacked terms.
#[derive(Debug, PartialEq)]
struct Instance {
    ids: Vec<i32>,
    types: Vec<i32>,
    /// (position in the instance, id, weight)
    predictions: Vec<(i32, i32, f32)>,
    label: i32,
}

/// The instance as the unpacked example describes it.
fn original(ex: &HostExample) -> Instance {
    let len = ex.input_mask.iter().filter(|&&m| m == 1).count();
    Instance {
        ids: ex.input_ids[..len].to_vec(),
        types: ex.segment_ids[..len].to_vec(),
        predictions: (0..PREDS)
            .filter(|&k| ex.masked_lm_weights[k] != 0.0)
            .map(|k| {
                (
                    ex.masked_lm_positions[k],
                    ex.masked_lm_ids[k],
                    ex.masked_lm_weights[k],
                )
            })
            .collect(),
        label: ex.next_sentence_label,
    }
}

/// Reads every row of `b` back into instances, checking the row's own invariants on the way:
/// instance numbers 1, 1, .., 2, .., then only padding; position ids 0.. per instance; NSP slot
/// n at instance n+1's first token; every prediction inside a real token.
fn unpack(b: &PackedBatch) -> Vec<Instance> {
    let l = b.limits;
    let (s, p, k) = (l.seq_len, l.max_predictions, l.max_instances);
    let mut out = vec![];
    for row in 0..b.batch_size {
        let mask = &b.input_mask[row * s..(row + 1) * s];
        let n = *mask.iter().max().unwrap() as usize;
        assert!(n <= k, "row {row} holds {n} instances, more than {k}");
        let mut starts = vec![];
        for t in 0..s {
            let m = mask[t] as usize;
            let prev = if t == 0 { 0 } else { mask[t - 1] as usize };
            if m != prev {
                assert!(
                    m == prev + 1 || m == 0,
                    "row {row}: instance {m} after {prev}"
                );
                assert!(
                    m != 0 || !mask[t..].iter().any(|&x| x != 0),
                    "row {row}: split"
                );
                if m != 0 {
                    starts.push(t);
                }
            }
            let start = starts.last().copied().unwrap_or(0);
            let want = if m == 0 { 0 } else { (t - start) as i32 };
            assert_eq!(b.position_ids[row * s + t], want, "row {row} token {t}");
        }
        assert_eq!(starts.len(), n, "row {row}: an instance number repeats");
        for slot in 0..k {
            let w = b.next_sentence_weights[row * k + slot];
            if let Some(&start) = starts.get(slot) {
                assert_eq!(w, 1.0);
                assert_eq!(b.next_sentence_positions[row * k + slot], start as i32);
            } else {
                assert_eq!(w, 0.0, "row {row}: unused NSP slot {slot} has a weight");
            }
        }
        let mut insts: Vec<Instance> = (0..n)
            .map(|i| {
                let end = starts
                    .get(i + 1)
                    .copied()
                    .unwrap_or_else(|| mask.iter().position(|&m| m == 0).unwrap_or(s));
                Instance {
                    ids: b.input_ids[row * s + starts[i]..row * s + end].to_vec(),
                    types: b.segment_ids[row * s + starts[i]..row * s + end].to_vec(),
                    predictions: vec![],
                    label: b.next_sentence_labels[row * k + i],
                }
            })
            .collect();
        for j in row * p..(row + 1) * p {
            let w = b.masked_lm_weights[j];
            if w == 0.0 {
                continue;
            }
            let pos = b.masked_lm_positions[j] as usize;
            let inst = mask[pos] as usize;
            assert!(
                inst >= 1,
                "row {row}: a prediction at padding position {pos}"
            );
            let local = (pos - starts[inst - 1]) as i32;
            insts[inst - 1]
                .predictions
                .push((local, b.masked_lm_ids[j], w));
        }
        out.extend(insts);
    }
    out
}

/// Sorts instances into a canonical order, to compare multisets.
fn canonical(mut v: Vec<Instance>) -> Vec<Instance> {
    v.sort_by(|a, b| (&a.ids, &a.types, a.label).cmp(&(&b.ids, &b.types, b.label)));
    v
}

fn limits(k: usize) -> PackLimits {
    PackLimits {
        seq_len: SEQ,
        max_predictions: PREDS + k,
        max_instances: k,
    }
}

#[test]
fn every_instance_comes_back_whole_from_the_packed_rows() {
    for (seed, k) in [(1, 2), (2, 3), (3, 4)] {
        let exs = examples(seed, 40, 2..=SEQ);
        let (batch, left) = pack_examples(&exs, limits(k), 40).unwrap();
        assert!(left.is_empty(), "40 rows hold 40 examples");
        let real: usize = batch.input_mask.iter().filter(|&&m| m != 0).count();
        let want: usize = exs
            .iter()
            .map(|e| e.input_mask.iter().sum::<i32>())
            .sum::<i32>() as usize;
        assert_eq!(real, want, "every real token is kept");
        assert_eq!(batch.real_tokens, want);
        assert_eq!(batch.instances, 40);
        let got = canonical(unpack(&batch));
        let want = canonical(exs.iter().map(original).collect());
        assert_eq!(got, want, "seed {seed}, k {k}");
        assert!(batch.rows < 40, "packing saved no row (seed {seed})");
    }
}

#[test]
fn bounded_rows_leave_the_rest_over_and_nothing_is_lost() {
    let exs = examples(4, 30, 8..=SEQ);
    let (batch, left) = pack_examples(&exs, limits(3), 6).unwrap();
    assert_eq!(batch.rows, 6);
    assert!(!left.is_empty());
    assert_eq!(batch.instances + left.len(), exs.len());
    let packed = canonical(unpack(&batch));
    let mut rest: Vec<Instance> = packed;
    rest.extend(left.iter().map(|&i| original(&exs[i])));
    assert_eq!(
        canonical(rest),
        canonical(exs.iter().map(original).collect())
    );
    // Every left-over instance found no row with room when its turn came, and rows only fill
    // up afterwards: no row of the final packing has room for any of them.
    let l = limits(3);
    for &i in &left {
        let fp = Footprint::of(&exs[i]).unwrap();
        for row in 0..6 {
            let mask = &batch.input_mask[row * SEQ..(row + 1) * SEQ];
            let tokens = mask.iter().filter(|&&m| m != 0).count();
            let n = *mask.iter().max().unwrap() as usize;
            let p = l.max_predictions;
            let preds = batch.masked_lm_weights[row * p..(row + 1) * p]
                .iter()
                .filter(|&&w| w != 0.0)
                .count();
            let room =
                tokens + fp.tokens <= SEQ && preds + fp.predictions <= p && n < l.max_instances;
            assert!(!room, "row {row} had room for left-over example {i}");
        }
    }
}

#[test]
fn first_fit_decreasing_places_longest_first() {
    let fp = |tokens| Footprint {
        tokens,
        predictions: 1,
    };
    // 20, 12, 12, 20 into rows of 32: the two 20s open rows, each 12 joins one of them.
    let fps = [fp(20), fp(12), fp(12), fp(20)];
    let p = pack_first_fit_decreasing(&fps, limits(3), 8);
    assert_eq!(p.rows, vec![vec![0, 1], vec![3, 2]]);
    assert!(p.left_over.is_empty());
    // The instance limit binds before the token limit: eight 2-token instances, k = 3.
    let p = pack_first_fit_decreasing(&[fp(2); 8], limits(3), 8);
    assert_eq!(
        p.rows.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 2]
    );
    // So does the prediction budget: 5 + 2 slots, instances of 4 predictions each.
    let heavy = Footprint {
        tokens: 4,
        predictions: 4,
    };
    let p = pack_first_fit_decreasing(&[heavy; 3], limits(2), 8);
    assert_eq!(p.rows.len(), 3);
    // Something larger than a row never fits.
    let mut packer = Packer::new(limits(2), 8);
    assert_eq!(packer.place(0, fp(SEQ + 1)), None);
    assert_eq!(packer.place(1, fp(SEQ)), Some(0));
}

#[test]
fn examples_packing_cannot_read_are_refused() {
    let mut r = StdRng::seed_from_u64(5);
    let mut holes = example(&mut r, 10);
    holes.input_mask[3] = 0;
    let err = pack_examples(&[holes], limits(2), 2).unwrap_err();
    assert!(err.contains("ones then zeros"), "{err}");
    let mut far = example(&mut r, 10);
    far.masked_lm_positions[0] = 12;
    far.masked_lm_weights[0] = 1.0;
    let err = pack_examples(&[far], limits(2), 2).unwrap_err();
    assert!(err.contains("outside the 10 real tokens"), "{err}");
    let mut empty = example(&mut r, 10);
    empty.input_mask = vec![0; SEQ];
    assert!(pack_examples(&[empty], limits(2), 2).is_err());
    let ex = example(&mut r, 10);
    let mut full = PackedBatch::new(1, limits(2));
    full.push_row(&[&ex]).unwrap();
    assert!(full.push_row(&[&ex]).is_err(), "a full batch takes no row");
    let mut b = PackedBatch::new(2, limits(2));
    assert!(b.push_row(&[&ex, &ex, &ex]).is_err(), "3 instances > k = 2");
    assert_eq!(b.rows, 0, "a refused row leaves nothing behind");
}

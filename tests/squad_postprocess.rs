//! SQuAD post-processing: n-best spans and predictions against run_squad's write_predictions
//! (tests/fixtures/squad/features_golden.json, deterministic logits), get_final_text cases, the
//! best valid span for random logits against a brute-force search written here, the output
//! files, and bad results.
mod squad_support;

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Deserialize;
use squad_support::{
    fixture, mix, mix_str, pseudo_logit, shared_squad, tokenizer, uncased_tokenizer, FNV_OFFSET,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use tpu_run::squad::examples::read_examples;
use tpu_run::squad::final_text::get_final_text;
use tpu_run::squad::postprocess::{best_indexes, compute_softmax, NbestEntry};
use tpu_run::squad::{
    convert_examples_to_features, make_predictions, FeatureConfig, InputFeature, PredictConfig,
    Predictions, RawResult, SquadDataset, SquadError, SquadTokenizer, WarningKind, Warnings,
};

#[derive(Deserialize)]
struct Golden {
    n_best_size: usize,
    max_answer_length: usize,
    configs: BTreeMap<String, GoldenConfig>,
    final_text: Vec<FinalTextCase>,
    whole_file: Option<WholeFile>,
}

#[derive(Deserialize)]
struct GoldenConfig {
    config: Config,
    predictions: HashMap<String, String>,
    nbest: HashMap<String, Vec<GoldenEntry>>,
}

#[derive(Deserialize, Clone, Copy)]
struct Config {
    max_seq_length: usize,
    doc_stride: usize,
    max_query_length: usize,
}

#[derive(Deserialize)]
struct GoldenEntry {
    text: String,
    probability: f64,
    start_logit: f64,
    end_logit: f64,
}

#[derive(Deserialize)]
struct FinalTextCase {
    pred_text: String,
    orig_text: String,
    do_lower_case: bool,
    #[serde(rename = "final")]
    final_text: String,
}

#[derive(Deserialize)]
struct WholeFile {
    file: String,
    predictions: WholePredictions,
}

#[derive(Deserialize)]
struct WholePredictions {
    count: usize,
    article_digests: Vec<String>,
    first: Vec<(String, String)>,
}

fn golden() -> Golden {
    serde_json::from_slice(&std::fs::read(fixture("features_golden.json")).unwrap()).unwrap()
}

/// The golden script's logits for every feature.
fn pseudo_results(features: &[InputFeature]) -> Vec<RawResult> {
    features
        .iter()
        .map(|f| {
            let n = f.input_ids.len() as u64;
            RawResult {
                unique_id: f.unique_id,
                start_logits: (0..n).map(|p| pseudo_logit(f.unique_id, p, 0)).collect(),
                end_logits: (0..n).map(|p| pseudo_logit(f.unique_id, p, 7)).collect(),
            }
        })
        .collect()
}

fn check_nbest(got: &[NbestEntry], want: &[GoldenEntry], what: &str) {
    let texts = |v: Vec<&str>| v.join(" | ");
    assert_eq!(
        texts(got.iter().map(|e| e.text.as_str()).collect()),
        texts(want.iter().map(|e| e.text.as_str()).collect()),
        "{what}: n-best texts"
    );
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (g.start_logit, g.end_logit),
            (w.start_logit, w.end_logit),
            "{what}: {:?}",
            g.text
        );
        assert!(
            (g.probability - w.probability).abs() <= 1e-12,
            "{what}: {:?} p {} vs {}",
            g.text,
            g.probability,
            w.probability
        );
    }
}

#[test]
fn predictions_match_run_squad() {
    let Some(tok) = uncased_tokenizer() else {
        return;
    };
    let g = golden();
    let predict = PredictConfig {
        n_best_size: g.n_best_size,
        max_answer_length: g.max_answer_length,
    };
    assert_eq!(predict, PredictConfig::default());
    let ds = SquadDataset::read(&fixture("mini-v1.1.json"), &mut Warnings::new()).unwrap();
    for (name, gc) in &g.configs {
        let config = FeatureConfig {
            max_seq_length: gc.config.max_seq_length,
            doc_stride: gc.config.doc_stride,
            max_query_length: gc.config.max_query_length,
        };
        let mut w = Warnings::new();
        let examples = read_examples(&ds, false, &mut w);
        let features =
            convert_examples_to_features(&examples, &tok, &config, false, &mut w).unwrap();
        let preds = make_predictions(
            &examples,
            &features,
            &pseudo_results(&features),
            &tok,
            &predict,
            &mut w,
        )
        .unwrap();
        assert_eq!(preds.answers.len(), gc.predictions.len(), "{name}");
        for ((id, answer), (nid, nbest)) in preds.answers.iter().zip(&preds.nbest) {
            assert_eq!(id, nid);
            assert_eq!(
                Some(answer),
                gc.predictions.get(id),
                "{name}: prediction for {id}"
            );
            check_nbest(nbest, &gc.nbest[id], &format!("{name} {id}"));
        }
    }
}

#[test]
fn final_text_cases_match_run_squad() {
    let (Some(lower), Some(cased)) = (uncased_tokenizer(), tokenizer(false)) else {
        return;
    };
    let g = golden();
    assert!(g.final_text.len() >= 15);
    for c in &g.final_text {
        let tok: &dyn SquadTokenizer = if c.do_lower_case { &lower } else { &cased };
        let got = get_final_text(&c.pred_text, &c.orig_text, tok).unwrap();
        assert_eq!(
            got, c.final_text,
            "get_final_text({:?}, {:?}, {})",
            c.pred_text, c.orig_text, c.do_lower_case
        );
    }
    // The cases the issue names, stated here as well.
    assert_eq!(
        get_final_text("steve smith", "Steve Smith's", &lower).unwrap(),
        "Steve Smith"
    );
    assert_eq!(
        get_final_text("cafe theatre", "Café Théâtre", &lower).unwrap(),
        "Café Théâtre"
    );
    assert_eq!(
        get_final_text("cafe", "Café Théâtre.", &lower).unwrap(),
        "Café"
    );
}

/// An independent search: every span in every window that is in the context, starts in its
/// max-context window, ends at or after its start and is short enough, best score first
/// (generation order on ties), texts de-duplicated, `n` kept.
fn brute_force_nbest(
    features: &[InputFeature],
    results: &[RawResult],
    words: &[String],
    max_len: usize,
    n: usize,
) -> Vec<(String, f64)> {
    let mut spans = Vec::new();
    for (f, r) in features.iter().zip(results) {
        let window = f.doc_offset..f.doc_offset + f.token_to_orig.len();
        for s in window.clone() {
            if !f.token_is_max_context[s - f.doc_offset] {
                continue;
            }
            for e in s..window.end.min(s + max_len) {
                let score = f64::from(r.start_logits[s]) + f64::from(r.end_logits[e]);
                let text = words
                    [f.token_to_orig[s - f.doc_offset]..=f.token_to_orig[e - f.doc_offset]]
                    .join(" ");
                spans.push((text, score));
            }
        }
    }
    spans.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    let mut seen = HashSet::new();
    spans.retain(|(t, _)| seen.insert(t.clone()));
    spans.truncate(n);
    spans
}

#[test]
fn best_valid_span_for_random_logits() {
    let Some(tok) = uncased_tokenizer() else {
        return;
    };
    // One WordPiece per word, lowercase, no punctuation: the answer text is the words.
    let context = "one two three four five six seven eight nine ten";
    let json = format!(
        r#"{{"version": "1.1", "data": [{{"title": "T", "paragraphs": [{{"context": "{context}", "qas": [
            {{"id": "q", "question": "which?", "answers": [{{"text": "two", "answer_start": 4}}]}}]}}]}}]}}"#
    );
    let ds = SquadDataset::from_json_str(&json, Path::new("r.json"), &mut Warnings::new()).unwrap();
    let examples = read_examples(&ds, false, &mut Warnings::new());
    // [CLS] which ? [SEP] + 7 context tokens + [SEP]: windows 0..=6 and 3..=9.
    let config = FeatureConfig {
        max_seq_length: 12,
        doc_stride: 3,
        max_query_length: 4,
    };
    let features =
        convert_examples_to_features(&examples, &tok, &config, false, &mut Warnings::new())
            .unwrap();
    assert_eq!(features.len(), 2);
    assert!(features
        .iter()
        .all(|f| f.token_to_orig.len() == 7 && f.doc_offset == 4));
    let words = &examples[0].doc.words;
    let mut rng = StdRng::seed_from_u64(5);
    for trial in 0..50 {
        let mut results: Vec<RawResult> = features
            .iter()
            .map(|f| RawResult {
                unique_id: f.unique_id,
                start_logits: (0..12).map(|_| rng.gen_range(-4.0f32..4.0)).collect(),
                end_logits: (0..12).map(|_| rng.gen_range(-4.0f32..4.0)).collect(),
            })
            .collect();
        // Traps that must never win: [CLS], a question token, the last [SEP] and padding-free
        // positions outside the context; end before start; a start outside its max-context
        // window (context token 6, "eta", in window 0).
        let r0 = &mut results[0];
        r0.start_logits[0] = 20.0;
        r0.end_logits[0] = 20.0;
        r0.start_logits[1] = 15.0;
        r0.end_logits[11] = 15.0;
        r0.start_logits[4 + 6] = 12.0;
        r0.end_logits[4 + 6] = 12.0;
        r0.start_logits[4 + 3] = 11.0;
        r0.end_logits[4 + 2] = 11.0;
        for max_answer_length in [1, 3, 30] {
            let predict = PredictConfig {
                n_best_size: 20,
                max_answer_length,
            };
            let mut w = Warnings::new();
            let preds =
                make_predictions(&examples, &features, &results, &tok, &predict, &mut w).unwrap();
            let want = brute_force_nbest(&features, &results, words, max_answer_length, 20);
            let got = &preds.nbest[0].1;
            let got_pairs: Vec<(&str, f64)> = got
                .iter()
                .map(|e| (e.text.as_str(), e.start_logit + e.end_logit))
                .collect();
            let want_pairs: Vec<(&str, f64)> = want.iter().map(|(t, s)| (t.as_str(), *s)).collect();
            assert_eq!(
                got_pairs, want_pairs,
                "trial {trial}, max_answer_length {max_answer_length}"
            );
            assert_eq!(preds.answers[0].1, want[0].0);
            // Probabilities: softmax of the scores, summing to 1.
            let scores: Vec<f64> = want.iter().map(|(_, s)| *s).collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            for (e, s) in got.iter().zip(&scores) {
                assert!((e.probability - (s - max).exp() / total).abs() < 1e-12);
            }
            assert!(w.is_empty(), "{w}");
        }
    }
}

#[test]
fn best_indexes_and_softmax() {
    // Stable on ties (lower position first), largest first, at most n.
    assert_eq!(
        best_indexes(&[1.0, 3.0, 2.0, 3.0, -0.0, 0.0], 4),
        vec![1, 3, 2, 0]
    );
    // -0.0 and 0.0 tie, as in Python.
    assert_eq!(best_indexes(&[1.0, -0.0, 0.0, -0.0], 4), vec![0, 1, 2, 3]);
    assert_eq!(best_indexes(&[1.0, 2.0], 20), vec![1, 0]);
    let p = compute_softmax(&[1.0, 2.0, 3.0]);
    let z = 1.0 + 1f64.exp() + 2f64.exp();
    for (got, want) in p.iter().zip([1.0 / z, 1f64.exp() / z, 2f64.exp() / z]) {
        assert!((got - want).abs() < 1e-15);
    }
    assert!(compute_softmax(&[]).is_empty());
    // Large logits do not overflow (the max is subtracted first).
    assert_eq!(compute_softmax(&[1000.0, 1000.0]), vec![0.5, 0.5]);
}

#[test]
fn output_files_round_trip() {
    let preds = Predictions {
        answers: vec![
            ("a1".into(), "Zoë \"Z\" Ångström".into()),
            ("b2".into(), String::new()),
        ],
        nbest: vec![
            (
                "a1".into(),
                vec![
                    NbestEntry {
                        text: "Zoë \"Z\" Ångström".into(),
                        probability: 0.75,
                        start_logit: 1.5,
                        end_logit: -0.25,
                    },
                    NbestEntry {
                        text: "Zoë".into(),
                        probability: 0.25,
                        start_logit: 1e-5,
                        end_logit: 2.0,
                    },
                ],
            ),
            (
                "b2".into(),
                vec![NbestEntry {
                    text: "empty".into(),
                    probability: 1.0,
                    start_logit: 0.0,
                    end_logit: 0.0,
                }],
            ),
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    preds.write(dir.path()).unwrap();
    let p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("predictions.json")).unwrap())
            .unwrap();
    assert_eq!(p, serde_json::json!({"a1": "Zoë \"Z\" Ångström", "b2": ""}));
    let text = std::fs::read_to_string(dir.path().join("nbest_predictions.json")).unwrap();
    // Python's float spelling, as run_squad's json.dumps writes it.
    assert!(
        text.contains("\"start_logit\": 1e-05") && text.contains("\"end_logit\": 0.0"),
        "{text}"
    );
    let n: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(n["a1"][1]["text"], "Zoë");
    assert_eq!(n["a1"][0]["probability"], 0.75);
    assert_eq!(n["b2"][0]["text"], "empty");
    // The predictions file is what squad-eval reads.
    let read = tpu_run::squad::read_predictions(&dir.path().join("predictions.json")).unwrap();
    assert_eq!(read["a1"], "Zoë \"Z\" Ångström");
    assert_eq!(Predictions::default().predictions_json(), "{}\n");
}

#[test]
fn bad_results_are_clear_errors() {
    let Some(tok) = uncased_tokenizer() else {
        return;
    };
    let ds = SquadDataset::read(&fixture("mini-v1.1.json"), &mut Warnings::new()).unwrap();
    let examples = read_examples(&ds, false, &mut Warnings::new());
    let config = FeatureConfig::default();
    let features =
        convert_examples_to_features(&examples, &tok, &config, false, &mut Warnings::new())
            .unwrap();
    let good = pseudo_results(&features);
    let predict = PredictConfig::default();
    let run = |results: &[RawResult]| {
        make_predictions(
            &examples,
            &features,
            results,
            &tok,
            &predict,
            &mut Warnings::new(),
        )
    };
    assert!(run(&good).is_ok());

    let missing = run(&good[1..]).unwrap_err();
    let msg = missing.to_string();
    assert!(
        msg.contains(&features[0].unique_id.to_string()) && msg.contains("p1-0"),
        "{msg}"
    );

    let mut short = good.clone();
    short[2].end_logits.pop();
    let msg = run(&short).unwrap_err().to_string();
    assert!(msg.contains("383 end logits"), "{msg}");

    let mut nan = good.clone();
    nan[3].start_logits[5] = f32::NAN;
    let err = run(&nan).unwrap_err();
    assert!(
        matches!(err, SquadError::Results(_)) && err.to_string().contains("non-finite"),
        "{err}"
    );

    let err = make_predictions(
        &examples,
        &features,
        &good,
        &tok,
        &PredictConfig {
            n_best_size: 0,
            max_answer_length: 30,
        },
        &mut Warnings::new(),
    )
    .unwrap_err();
    assert!(matches!(err, SquadError::Config(_)));

    // Features of other examples do not fit.
    let err = make_predictions(
        &examples[..1],
        &features,
        &good,
        &tok,
        &predict,
        &mut Warnings::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("only 1 examples"), "{err}");
}

#[test]
fn questions_without_features_are_predicted_empty_and_counted() {
    let Some(tok) = uncased_tokenizer() else {
        return;
    };
    let json = r#"{"version": "1.1", "data": [{"title": "T", "paragraphs": [
        {"context": "", "qas": [{"id": "e", "question": "?", "answers": [{"text": "x", "answer_start": 0}]}]},
        {"context": "Alpha beta.", "qas": [{"id": "ok", "question": "?", "answers": [{"text": "Alpha", "answer_start": 0}]}]}]}]}"#;
    let mut w = Warnings::new();
    let ds = SquadDataset::from_json_str(json, Path::new("e.json"), &mut w).unwrap();
    assert_eq!(w.count(WarningKind::EmptyContext), 1);
    assert_eq!(w.count(WarningKind::AnswerOutsideContext), 1);
    let examples = read_examples(&ds, false, &mut w);
    let features =
        convert_examples_to_features(&examples, &tok, &FeatureConfig::default(), false, &mut w)
            .unwrap();
    assert_eq!(features.len(), 1);
    // [CLS] ? [SEP] alpha beta . [SEP]: the context is positions 3..=5.
    let f = &features[0];
    assert_eq!((f.doc_offset, f.num_tokens), (3, 7));
    let logits = |best: usize, context: f32, other: f32| -> Vec<f32> {
        (0..384)
            .map(|p| match p {
                _ if p == best => 5.0,
                3..=5 => context,
                _ => other,
            })
            .collect()
    };
    let results = vec![RawResult {
        unique_id: f.unique_id,
        start_logits: logits(3, 0.0, 1.0),
        end_logits: logits(4, 0.0, 1.0),
    }];
    let predict = PredictConfig::default();
    let preds = make_predictions(&examples, &features, &results, &tok, &predict, &mut w).unwrap();
    assert_eq!(preds.answers[0], ("e".to_string(), "empty".to_string()));
    assert_eq!(preds.nbest[0].1.len(), 1);
    assert_eq!(preds.nbest[0].1[0].probability, 1.0);
    assert_eq!(
        preds.answers[1],
        ("ok".to_string(), "Alpha beta".to_string())
    );
    assert_eq!(w.count(WarningKind::NoFeatures), 1);
    assert!(w.samples(WarningKind::NoFeatures)[0].contains("\"e\""));
    assert_eq!(w.count(WarningKind::NoValidSpan), 0);

    // When no start/end among the 20 best lies in the context, there is no valid span: the
    // prediction is "empty" too, counted separately.
    let results = vec![RawResult {
        unique_id: f.unique_id,
        start_logits: logits(0, -9.0, 1.0),
        end_logits: logits(0, -9.0, 1.0),
    }];
    let preds = make_predictions(&examples, &features, &results, &tok, &predict, &mut w).unwrap();
    assert_eq!(preds.answers[1], ("ok".to_string(), "empty".to_string()));
    assert_eq!(w.count(WarningKind::NoValidSpan), 1);
}

#[test]
fn whole_shared_file_predictions_match_run_squad() {
    let Some(tok) = uncased_tokenizer() else {
        return;
    };
    let g = golden();
    let Some(wf) = g.whole_file else {
        panic!("the fixture lacks whole-file digests")
    };
    let Some(path) = shared_squad(&wf.file) else {
        return;
    };
    let ds = SquadDataset::read(&path, &mut Warnings::new()).unwrap();
    let mut w = Warnings::new();
    let examples = read_examples(&ds, false, &mut w);
    let features =
        convert_examples_to_features(&examples, &tok, &FeatureConfig::default(), false, &mut w)
            .unwrap();
    let preds = make_predictions(
        &examples,
        &features,
        &pseudo_results(&features),
        &tok,
        &PredictConfig::default(),
        &mut w,
    )
    .unwrap();
    assert_eq!(preds.answers.len(), wf.predictions.count);
    for ((id, text), (wid, wtext)) in preds.answers.iter().zip(&wf.predictions.first) {
        assert_eq!((id, text), (wid, wtext));
    }
    let mut digests = vec![FNV_OFFSET; ds.articles.len()];
    let mut article_of = HashMap::new();
    for (ai, a) in ds.articles.iter().enumerate() {
        for p in &a.paragraphs {
            for q in &p.qas {
                article_of.insert(q.id.clone(), ai);
            }
        }
    }
    for ((id, text), (_, nbest)) in preds.answers.iter().zip(&preds.nbest) {
        let a = article_of[id];
        digests[a] = mix_str(mix_str(digests[a], id), text);
        for e in nbest {
            digests[a] = mix_str(digests[a], &e.text);
            digests[a] = mix(digests[a], (e.start_logit * 1024.0).round() as i64 as u64);
            digests[a] = mix(digests[a], (e.end_logit * 1024.0).round() as i64 as u64);
        }
    }
    for (a, (got, want)) in digests
        .iter()
        .zip(&wf.predictions.article_digests)
        .enumerate()
    {
        assert_eq!(
            &format!("{got:016x}"),
            want,
            "predictions of article {a} ({:?}) differ",
            ds.articles[a].title
        );
    }
}

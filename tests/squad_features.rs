//! SQuAD featurization against google-research/bert's run_squad.py (bert-tensorflow 1.0.4):
//! every feature of hand-made examples under two window settings
//! (tests/fixtures/squad/features_golden.json, from tools/squad_features_golden.py), digests of
//! all features of the shared 24-article file, and hand-checked windows, max-context flags and
//! answer positions.
mod squad_support;

use serde::Deserialize;
use squad_support::{fixture, mix, shared_squad, uncased_tokenizer, FNV_OFFSET};
use std::collections::BTreeMap;
use tpu_run::squad::examples::read_examples;
use tpu_run::squad::features::{doc_spans, improve_answer_span, is_max_context, DocSpan};
use tpu_run::squad::{
    convert_examples_to_features, FeatureConfig, InputFeature, SquadDataset, SquadError,
    SquadTokenizer, WarningKind, Warnings,
};

#[derive(Deserialize)]
pub struct Golden {
    pub configs: BTreeMap<String, GoldenConfig>,
    pub whole_file: Option<WholeFile>,
}

#[derive(Deserialize)]
pub struct GoldenConfig {
    pub config: Config,
    pub train: GoldenMode,
    pub predict: GoldenMode,
}

#[derive(Deserialize, Clone, Copy)]
pub struct Config {
    max_seq_length: usize,
    doc_stride: usize,
    max_query_length: usize,
}

impl From<Config> for FeatureConfig {
    fn from(c: Config) -> FeatureConfig {
        FeatureConfig {
            max_seq_length: c.max_seq_length,
            doc_stride: c.doc_stride,
            max_query_length: c.max_query_length,
        }
    }
}

#[derive(Deserialize)]
pub struct GoldenMode {
    example_ids: Vec<String>,
    features: Vec<GoldenFeature>,
}

#[derive(Deserialize, Debug)]
struct GoldenFeature {
    unique_id: u64,
    example_index: usize,
    doc_span_index: usize,
    input_ids: Vec<i32>,
    doc_offset: usize,
    token_to_orig: Vec<usize>,
    token_is_max_context: Vec<bool>,
    start_position: Option<usize>,
    end_position: Option<usize>,
}

#[derive(Deserialize)]
pub struct WholeFile {
    file: String,
    predict: WholeMode,
    train: WholeMode,
}

#[derive(Deserialize)]
struct WholeMode {
    examples: usize,
    features: usize,
    answer_outside_window: usize,
    truncated_questions: usize,
    article_digests: Vec<String>,
}

fn golden() -> Golden {
    serde_json::from_slice(&std::fs::read(fixture("features_golden.json")).unwrap()).unwrap()
}

/// Compares one feature with the reference, field by field, including the padding.
fn check_feature(f: &InputFeature, g: &GoldenFeature, config: &FeatureConfig, what: &str) {
    let n = g.input_ids.len();
    assert_eq!(
        (f.unique_id, f.example_index, f.doc_span_index),
        (g.unique_id, g.example_index, g.doc_span_index),
        "{what}"
    );
    assert_eq!(f.num_tokens, n, "{what}: length");
    assert_eq!(f.token_ids(), &g.input_ids[..], "{what}: ids");
    assert_eq!(f.input_ids.len(), config.max_seq_length, "{what}");
    assert!(
        f.input_ids[n..].iter().all(|&x| x == 0),
        "{what}: padding ids"
    );
    let mask: Vec<i32> = (0..config.max_seq_length)
        .map(|i| i32::from(i < n))
        .collect();
    assert_eq!(f.input_mask, mask, "{what}: mask");
    let segments: Vec<i32> = (0..config.max_seq_length)
        .map(|i| i32::from(i >= g.doc_offset && i < n))
        .collect();
    assert_eq!(f.segment_ids, segments, "{what}: segments");
    assert_eq!(f.doc_offset, g.doc_offset, "{what}: doc offset");
    assert_eq!(f.token_to_orig, g.token_to_orig, "{what}: token_to_orig");
    assert_eq!(
        f.token_is_max_context, g.token_is_max_context,
        "{what}: max context"
    );
    assert_eq!(
        (f.start_position, f.end_position),
        (g.start_position, g.end_position),
        "{what}: answer"
    );
}

#[test]
fn hand_made_examples_match_run_squad() {
    let Some(tok) = uncased_tokenizer() else {
        return;
    };
    let g = golden();
    let ds = SquadDataset::read(&fixture("mini-v1.1.json"), &mut Warnings::new()).unwrap();
    assert_eq!(g.configs.len(), 2);
    for (name, gc) in &g.configs {
        let config = FeatureConfig::from(gc.config);
        for (mode, is_training, gm) in [("train", true, &gc.train), ("predict", false, &gc.predict)]
        {
            let mut w = Warnings::new();
            let examples = read_examples(&ds, is_training, &mut w);
            let ids: Vec<&str> = examples.iter().map(|e| e.qas_id.as_str()).collect();
            assert_eq!(ids, gm.example_ids, "{name} {mode}: examples");
            let features =
                convert_examples_to_features(&examples, &tok, &config, is_training, &mut w)
                    .unwrap();
            assert_eq!(
                features.len(),
                gm.features.len(),
                "{name} {mode}: feature count"
            );
            for (i, (f, gf)) in features.iter().zip(&gm.features).enumerate() {
                check_feature(f, gf, &config, &format!("{name} {mode} feature {i}"));
            }
            // Every question longer than max_query_length is counted, the others are not.
            let long = examples
                .iter()
                .filter(|e| {
                    tok.wordpiece_ids(&e.question_text).unwrap().len() > config.max_query_length
                })
                .count();
            assert!(long > 0, "{name}: the fixture has long questions");
            assert_eq!(
                w.count(WarningKind::QuestionTruncated),
                long,
                "{name} {mode}"
            );
            if is_training {
                // One question's text is not in its words; the windows missing an answer point at 0.
                assert_eq!(w.count(WarningKind::AnswerNotFound), 1);
                assert!(features.iter().any(|f| f.start_position == Some(0)) || name == "default");
            }
        }
    }
}

/// The feature digest of tools/squad_features_golden.py.
fn feature_digest(mut h: u64, f: &InputFeature) -> u64 {
    for x in [
        f.unique_id,
        f.example_index as u64,
        f.doc_span_index as u64,
        f.num_tokens as u64,
    ] {
        h = mix(h, x);
    }
    for seq in [&f.input_ids, &f.input_mask, &f.segment_ids] {
        for &x in seq.iter() {
            h = mix(h, x as u64);
        }
    }
    for (i, (&word, &max)) in f
        .token_to_orig
        .iter()
        .zip(&f.token_is_max_context)
        .enumerate()
    {
        h = mix(
            mix(mix(h, (f.doc_offset + i) as u64), word as u64),
            u64::from(max),
        );
    }
    for p in [f.start_position, f.end_position] {
        h = mix(h, p.map_or(u64::MAX, |p| p as u64));
    }
    h
}

#[test]
fn whole_shared_file_matches_run_squad() {
    let Some(tok) = uncased_tokenizer() else {
        return;
    };
    let g = golden();
    let Some(wf) = g.whole_file else {
        panic!("the fixture lacks whole-file digests; rerun tools/squad_features_golden.py with the shared file")
    };
    let Some(path) = shared_squad(&wf.file) else {
        return;
    };
    let ds = SquadDataset::read(&path, &mut Warnings::new()).unwrap();
    let mut article_of = std::collections::HashMap::new();
    for (ai, a) in ds.articles.iter().enumerate() {
        for p in &a.paragraphs {
            for q in &p.qas {
                article_of.insert(q.id.clone(), ai);
            }
        }
    }
    let config = FeatureConfig::default();
    for (mode, is_training, want) in [("predict", false, &wf.predict), ("train", true, &wf.train)] {
        let mut w = Warnings::new();
        let examples = read_examples(&ds, is_training, &mut w);
        assert_eq!(examples.len(), want.examples, "{mode}");
        let features =
            convert_examples_to_features(&examples, &tok, &config, is_training, &mut w).unwrap();
        assert_eq!(features.len(), want.features, "{mode}");
        assert_eq!(
            w.count(WarningKind::QuestionTruncated),
            want.truncated_questions,
            "{mode}"
        );
        let outside = features
            .iter()
            .filter(|f| is_training && f.start_position == Some(0))
            .count();
        assert_eq!(outside, want.answer_outside_window, "{mode}");
        let mut digests = vec![FNV_OFFSET; ds.articles.len()];
        for f in &features {
            let a = article_of[&examples[f.example_index].qas_id];
            digests[a] = feature_digest(digests[a], f);
        }
        let got: Vec<String> = digests.iter().map(|d| format!("{d:016x}")).collect();
        for (a, (got, want)) in got.iter().zip(&want.article_digests).enumerate() {
            assert_eq!(
                got, want,
                "{mode}: features of article {a} ({:?}) differ",
                ds.articles[a].title
            );
        }
    }
}

#[test]
fn windows_slide_by_doc_stride() {
    let spans = |n, max, stride| -> Vec<(usize, usize)> {
        doc_spans(n, max, stride)
            .iter()
            .map(|s| (s.start, s.length))
            .collect()
    };
    assert_eq!(spans(10, 4, 3), vec![(0, 4), (3, 4), (6, 4)]);
    // A stride longer than the window never skips tokens: the next window starts at its end.
    assert_eq!(spans(10, 4, 5), vec![(0, 4), (4, 4), (8, 2)]);
    assert_eq!(spans(3, 4, 2), vec![(0, 3)]);
    assert!(spans(0, 4, 2).is_empty());
}

#[test]
fn max_context_rule() {
    // run_squad's own example: "the man went to the store and bought a gallon of milk" with
    // spans A = 0..=4, B = 3..=7, C = 6..=10; "bought" (7) has 4 left / 0 right context in B and
    // 1 left / 3 right in C, so C is its max-context span.
    let s = |start, length| DocSpan { start, length };
    let spans = [s(0, 5), s(3, 5), s(6, 5)];
    assert!(!is_max_context(&spans, 1, 7));
    assert!(is_max_context(&spans, 2, 7));
    // "to" (3): A gives min(3, 1) = 1, B gives min(0, 4) = 0.
    assert!(is_max_context(&spans, 0, 3) && !is_max_context(&spans, 1, 3));
    // A token in one span only is max-context there.
    assert!(is_max_context(&spans, 0, 0) && is_max_context(&spans, 2, 10));
    // Equal scores: the first span wins; at equal context the longer span wins (+0.01 * length).
    let tie = [s(0, 5), s(2, 5)];
    assert!(is_max_context(&tie, 0, 3) && !is_max_context(&tie, 1, 3));
    let longer = [s(0, 5), s(1, 6)];
    assert!(is_max_context(&longer, 1, 3) && !is_max_context(&longer, 0, 3));
}

#[test]
fn answer_span_is_narrowed_to_its_wordpieces() {
    // Word "(1895-1943)." -> ( 1895 - 1943 ) . ; the answer "1895" is one of them.
    let doc = [7, 10, 11, 12, 13, 14, 15];
    assert_eq!(improve_answer_span(&doc, 1, 6, &[11]), (2, 2));
    assert_eq!(improve_answer_span(&doc, 1, 6, &[11, 12, 13]), (2, 4));
    // The first start wins, then the longest end.
    assert_eq!(improve_answer_span(&[5, 5, 5], 0, 2, &[5]), (0, 0));
    // Not there (e.g. "Japan" inside "japanese"): unchanged.
    assert_eq!(improve_answer_span(&doc, 1, 6, &[99]), (1, 6));
}

#[test]
fn hand_checked_windows_and_answer_positions() {
    let Some(tok) = uncased_tokenizer() else {
        return;
    };
    let context = "The leader was John Smith (1895-1943).";
    let json = format!(
        r#"{{"version": "1.1", "data": [{{"title": "T", "paragraphs": [{{"context": "{context}", "qas": [
            {{"id": "born", "question": "When?", "answers": [{{"text": "1895", "answer_start": 27}}]}},
            {{"id": "died", "question": "When?", "answers": [{{"text": "1943", "answer_start": 32}}]}}]}}]}}]}}"#
    );
    let ds = SquadDataset::from_json_str(
        &json,
        std::path::Path::new("hand.json"),
        &mut Warnings::new(),
    )
    .unwrap();
    let mut w = Warnings::new();
    let examples = read_examples(&ds, true, &mut w);
    // 12 positions: [CLS] when ? [SEP] + 7 context tokens + [SEP]; 11 context WordPieces, so
    // windows 0..=6 and 4..=10 (stride 4).
    let config = FeatureConfig {
        max_seq_length: 12,
        doc_stride: 4,
        max_query_length: 4,
    };
    let features = convert_examples_to_features(&examples, &tok, &config, true, &mut w).unwrap();
    assert!(w.is_empty(), "{w}");
    let tokens = |f: &InputFeature| -> Vec<String> {
        f.token_ids()
            .iter()
            .map(|&id| tok.id_to_token(id as u32).unwrap().to_string())
            .collect()
    };
    assert_eq!(features.len(), 4);
    assert_eq!(
        tokens(&features[0]),
        [
            "[CLS]", "when", "?", "[SEP]", "the", "leader", "was", "john", "smith", "(", "1895",
            "[SEP]"
        ]
    );
    assert_eq!(
        tokens(&features[1]),
        ["[CLS]", "when", "?", "[SEP]", "smith", "(", "1895", "-", "1943", ")", ".", "[SEP]"]
    );
    assert_eq!(features[1].token_to_orig, vec![4, 5, 5, 5, 5, 5, 5]);
    assert_eq!(
        features[0].segment_ids,
        vec![0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    );
    // Max context: tokens 0..=3 only in window 0; 4 and 5 (smith, "(") have more context in
    // window 0 (min(4,2), min(5,1)) than in window 1 (min(0,6), min(1,5)); 6.. belong to window 1.
    assert_eq!(
        features[0].token_is_max_context,
        vec![true, true, true, true, true, true, false]
    );
    assert_eq!(
        features[1].token_is_max_context,
        vec![false, false, true, true, true, true, true]
    );
    // "1895" (context token 6) is in both windows: position 4 + 6 = 10, then 4 + 2 = 6.
    assert_eq!(
        (features[0].start_position, features[0].end_position),
        (Some(10), Some(10))
    );
    assert_eq!(
        (features[1].start_position, features[1].end_position),
        (Some(6), Some(6))
    );
    // "1943" (context token 8) is not in window 0: both positions 0 there.
    assert_eq!(
        (features[2].start_position, features[2].end_position),
        (Some(0), Some(0))
    );
    assert_eq!(
        (features[3].start_position, features[3].end_position),
        (Some(8), Some(8))
    );
    assert_eq!(
        features.iter().map(|f| f.unique_id).collect::<Vec<_>>(),
        (1_000_000_000..1_000_000_004).collect::<Vec<_>>()
    );
}

#[test]
fn contexts_without_wordpieces_and_bad_settings() {
    let Some(tok) = uncased_tokenizer() else {
        return;
    };
    // U+200B is one run_squad word but no WordPiece (BERT deletes format characters).
    let json = r#"{"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "\u200b", "qas": [
        {"id": "zw", "question": "What?", "answers": [{"text": "\u200b", "answer_start": 0}]}]}]}]}"#;
    let mut w = Warnings::new();
    let ds = SquadDataset::from_json_str(json, std::path::Path::new("zw.json"), &mut w).unwrap();
    let examples = read_examples(&ds, false, &mut w);
    assert_eq!(examples.len(), 1);
    let features =
        convert_examples_to_features(&examples, &tok, &FeatureConfig::default(), false, &mut w)
            .unwrap();
    assert!(features.is_empty());
    assert_eq!(w.count(WarningKind::NoDocTokens), 1);
    assert!(w.samples(WarningKind::NoDocTokens)[0].contains("\"zw\""));

    for bad in [
        FeatureConfig {
            max_seq_length: 67,
            doc_stride: 128,
            max_query_length: 64,
        },
        FeatureConfig {
            doc_stride: 0,
            ..FeatureConfig::default()
        },
    ] {
        let err = convert_examples_to_features(&examples, &tok, &bad, false, &mut w).unwrap_err();
        assert!(matches!(err, SquadError::Config(_)), "{err}");
    }
    // A training example must carry its answer.
    let err =
        convert_examples_to_features(&examples, &tok, &FeatureConfig::default(), true, &mut w)
            .unwrap_err();
    assert!(err.to_string().contains("\"zw\""), "{err}");
}

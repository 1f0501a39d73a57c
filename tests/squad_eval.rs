//! The official SQuAD v1.1 evaluation rules: the worked examples and the whole-file oracle
//! values of ../shared/data/squad/EVAL_RULES.md, the official output format, and the
//! `tpu-run squad-eval` command.
mod cli_support;
mod squad_support;

use cli_support::{run_fail, run_ok, tpu_run};
use squad_support::shared_squad;
use std::collections::HashMap;
use std::path::Path;
use tpu_run::squad::eval::{
    evaluate, exact_match_score, f1_score, normalize_answer, read_predictions,
};
use tpu_run::squad::{SquadDataset, SquadError, Warnings};

/// One row of EVAL_RULES.md's worked-examples table: the best EM and F1 over the truths.
fn score(prediction: &str, truths: &[&str]) -> (bool, f64) {
    let em = truths.iter().any(|t| exact_match_score(prediction, t));
    let f1 = truths
        .iter()
        .map(|t| f1_score(prediction, t))
        .fold(0.0, f64::max);
    (em, f1)
}

#[test]
fn worked_examples_of_the_rules() {
    // (prediction, ground truths, normalized prediction, EM, F1) from EVAL_RULES.md.
    let rows: &[(&str, &[&str], &str, bool, f64)] = &[
        (
            "Denver Broncos",
            &["Denver Broncos"],
            "denver broncos",
            true,
            1.0,
        ),
        (
            "the Denver Broncos.",
            &["Denver Broncos"],
            "denver broncos",
            true,
            1.0,
        ),
        ("Denver", &["Denver Broncos"], "denver", false, 2.0 / 3.0),
        (
            "Broncos of Denver",
            &["Denver Broncos"],
            "broncos of denver",
            false,
            0.8,
        ),
        (
            "Denver Denver Broncos",
            &["Denver Broncos"],
            "denver denver broncos",
            false,
            0.8,
        ),
        ("U.S.", &["US"], "us", true, 1.0),
        ("well-known", &["well known"], "wellknown", false, 0.0),
        (
            "1990\u{2013}1995",
            &["1990 1995"],
            "1990\u{2013}1995",
            false,
            0.0,
        ),
        ("An apple a day", &["apple day"], "apple day", true, 1.0),
        ("the-end", &["end"], "theend", false, 0.0),
        (
            "Th\u{e9}\u{e2}tre  NATIONAL",
            &["th\u{e9}\u{e2}tre national"],
            "th\u{e9}\u{e2}tre national",
            true,
            1.0,
        ),
        ("", &["the"], "", true, 0.0),
        ("the the the", &["a an"], "", true, 0.0),
        (
            "Santa Clara",
            &[
                "Santa Clara, California",
                "Levi's Stadium",
                "Levi's Stadium in the San Francisco Bay Area at Santa Clara, California.",
            ],
            "santa clara",
            false,
            0.8,
        ),
    ];
    for &(pred, truths, normalized, em, f1) in rows {
        assert_eq!(normalize_answer(pred), normalized, "normalize {pred:?}");
        let (got_em, got_f1) = score(pred, truths);
        assert_eq!(got_em, em, "EM of {pred:?} vs {truths:?}");
        assert!(
            (got_f1 - f1).abs() < 1e-12,
            "F1 of {pred:?} vs {truths:?}: {got_f1} != {f1}"
        );
    }
}

#[test]
fn normalization_details() {
    // Non-ASCII punctuation stays; ASCII punctuation is deleted, not spaced.
    assert_eq!(
        normalize_answer("\u{201c}Levi's\u{201d} 1,000"),
        "\u{201c}levis\u{201d} 1000"
    );
    // Articles only as whole words; "a" next to a combining mark is still a whole word in
    // Python's regex (marks are not \w), and next to a letter it is not.
    assert_eq!(
        normalize_answer("theater another ant a"),
        "theater another ant"
    );
    assert_eq!(normalize_answer("a\u{301} b"), "\u{301} b");
    assert_eq!(normalize_answer("\u{e0} b"), "\u{e0} b");
    // Full Unicode lowercasing (final sigma too) and every Python whitespace.
    assert_eq!(
        normalize_answer("\u{3a3}\u{391}\u{3a3}"),
        "\u{3c3}\u{3b1}\u{3c2}"
    );
    assert_eq!(
        normalize_answer("a\tb\u{a0}c\u{1f}d\u{3000}e\u{85}f"),
        "b c d e f"
    );
    assert_eq!(normalize_answer(" \u{2003} "), "");
    // Multiset overlap: repeats count only as often as in the other side (overlap 2 of 4 and
    // 2 of 3: F1 = 2 * 1/2 * 2/3 / (1/2 + 2/3) = 4/7); articles are gone before counting.
    assert!((f1_score("x b b b", "b b c") - 4.0 / 7.0).abs() < 1e-15);
    assert!((f1_score("a b b b", "b b c") - 2.0 / 3.0).abs() < 1e-15);
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Predictions from the dataset: `pick` maps (question index, first ground truth) to an answer
/// (or `None` to omit the question).
fn predictions(
    ds: &SquadDataset,
    pick: impl Fn(usize, &str) -> Option<String>,
) -> HashMap<String, String> {
    ds.questions()
        .enumerate()
        .filter_map(|(i, (_, _, q))| pick(i, &q.answers[0].text).map(|a| (q.id.clone(), a)))
        .collect()
}

#[test]
fn whole_file_oracle_values() {
    let Some(path) = shared_squad("train-a-v1.1.json") else {
        return;
    };
    let mut warnings = Warnings::new();
    let ds = SquadDataset::read(&path, &mut warnings).unwrap();
    assert!(warnings.is_empty(), "{warnings}");
    assert_eq!(ds.num_questions(), 5696);

    let first = evaluate(&ds, &predictions(&ds, |_, t| Some(t.to_string()))).unwrap();
    assert_eq!((first.exact_match, first.f1), (100.0, 100.0));
    assert!(first.unanswered.is_empty());

    let first_word = evaluate(
        &ds,
        &predictions(&ds, |_, t| t.split_whitespace().next().map(str::to_string)),
    )
    .unwrap();
    assert_eq!(first_word.exact_match, 39.37851123595506);
    assert_eq!(first_word.f1, 68.22318061810634);
    assert_eq!(
        first_word.to_official_json(),
        r#"{"exact_match": 39.37851123595506, "f1": 68.22318061810634}"#
    );

    let empty = evaluate(&ds, &predictions(&ds, |_, _| Some(String::new()))).unwrap();
    assert_eq!((empty.exact_match, empty.f1), (0.0175561797752809, 0.0));
    assert_eq!(
        empty.to_official_json(),
        r#"{"exact_match": 0.0175561797752809, "f1": 0.0}"#
    );

    let even = evaluate(
        &ds,
        &predictions(&ds, |i, t| (i % 2 == 0).then(|| t.to_string())),
    )
    .unwrap();
    assert_eq!((even.exact_match, even.f1), (50.0, 50.0));
    assert_eq!(even.unanswered.len(), 5696 / 2);
    assert_eq!(
        even.to_official_json(),
        r#"{"exact_match": 50.0, "f1": 50.0}"#
    );
}

#[test]
fn squad_eval_command_prints_the_official_json() {
    let Some(path) = shared_squad("train-a-v1.1.json") else {
        return;
    };
    let mut warnings = Warnings::new();
    let ds = SquadDataset::read(&path, &mut warnings).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // First word of the first truth; one question left out, one unknown id added.
    let mut preds = predictions(&ds, |_, t| t.split_whitespace().next().map(str::to_string));
    let (_, _, dropped) = ds.questions().nth(7).unwrap();
    preds.remove(&dropped.id);
    preds.insert("not-in-the-dataset".into(), "x".into());
    let pred_path = write(
        dir.path(),
        "predictions.json",
        &serde_json::to_string(&preds).unwrap(),
    );
    let expected = evaluate(&ds, &preds).unwrap();

    let out = run_ok(tpu_run().arg("squad-eval").arg(&path).arg(&pred_path));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, format!("{}\n", expected.to_official_json()));
    // One question fewer right than with all first words: EM and F1 both drop.
    assert!(expected.exact_match <= 39.37851123595506 && expected.f1 < 68.22318061810634);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Unanswered question {} will receive score 0.",
            dropped.id
        )),
        "{stderr}"
    );

    // A broken predictions file is a clear error, not a score.
    let bad = write(dir.path(), "bad.json", r#"{"a": ["list"]}"#);
    let out = run_fail(tpu_run().arg("squad-eval").arg(&path).arg(&bad));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.json") && stderr.contains("one answer string"),
        "{stderr}"
    );
}

#[test]
fn small_dataset_by_hand() {
    // Two questions; the second is unanswered. Q1: best EM over truths 1, best F1 1.0.
    let data = r#"{"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Paris is the capital of France.",
        "qas": [{"id": "q1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}, {"text": "Paris is", "answer_start": 0}]},
                {"id": "q2", "question": "Country?", "answers": [{"text": "France", "answer_start": 24}]}]}]}]}"#;
    let ds =
        SquadDataset::from_json_str(data, Path::new("hand.json"), &mut Warnings::new()).unwrap();
    let preds: HashMap<String, String> = [("q1".to_string(), "paris is".to_string())].into();
    let r = evaluate(&ds, &preds).unwrap();
    assert_eq!(r.exact_match, 50.0);
    assert_eq!(r.f1, 50.0);
    assert_eq!(r.unanswered, vec!["q2".to_string()]);
    // "Paris" alone: EM 1 (first truth); F1 1.0 from the first truth, 2/3 from the second.
    let preds: HashMap<String, String> = [
        ("q1".to_string(), "Paris".to_string()),
        ("q2".to_string(), "France.".to_string()),
    ]
    .into();
    let r = evaluate(&ds, &preds).unwrap();
    assert_eq!((r.exact_match, r.f1), (100.0, 100.0));
}

#[test]
fn bad_prediction_files_and_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("notjson.json", "{\"q1\": ", "not valid JSON at line 1"),
        ("list.json", "[\"a\"]", "expected one JSON object"),
        (
            "number.json",
            "{\"q1\": 3}",
            "\"q1\" must be one answer string",
        ),
    ];
    for (name, text, want) in cases {
        let p = write(dir.path(), name, text);
        let err = read_predictions(&p).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains(want), "{msg}");
    }
    let missing = read_predictions(&dir.path().join("absent.json")).unwrap_err();
    assert!(matches!(missing, SquadError::Io { .. }), "{missing}");

    // A dataset without questions has no score; a question without answers cannot be scored.
    let empty = SquadDataset::from_json_str(
        r#"{"version": "1.1", "data": []}"#,
        Path::new("e.json"),
        &mut Warnings::new(),
    )
    .unwrap();
    assert!(matches!(
        evaluate(&empty, &HashMap::new()),
        Err(SquadError::NoQuestions { .. })
    ));
    let no_answers = SquadDataset::from_json_str(
        r#"{"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "q", "question": "?", "answers": []}]}]}]}"#,
        Path::new("n.json"),
        &mut Warnings::new(),
    )
    .unwrap();
    let preds: HashMap<String, String> = [("q".to_string(), "c".to_string())].into();
    let err = evaluate(&no_answers, &preds).unwrap_err();
    assert!(
        err.to_string().contains("n.json") && err.to_string().contains("\"q\""),
        "{err}"
    );
}

//! Reading SQuAD JSON and building examples: whitespace words with the character-to-word map,
//! answer word positions, run_squad's "could not find answer" rule, and every kind of bad input
//! as a clear error (naming file, article and question id) or a counted warning.
mod squad_support;

use std::path::Path;
use tpu_run::squad::examples::{read_examples, Document};
use tpu_run::squad::{SquadDataset, SquadError, WarningKind, Warnings};

fn parse(json: &str) -> (Result<SquadDataset, SquadError>, Warnings) {
    let mut w = Warnings::new();
    let r = SquadDataset::from_json_str(json, Path::new("bad-input.json"), &mut w);
    (r, w)
}

/// A one-paragraph dataset.
fn dataset(context: &str, qas: &str) -> String {
    format!(
        r#"{{"version": "1.1", "data": [{{"title": "Art", "paragraphs": [{{"context": {}, "qas": [{qas}]}}]}}]}}"#,
        serde_json::to_string(context).unwrap()
    )
}

fn qa(id: &str, answers: &[(&str, usize)]) -> String {
    let answers: Vec<String> = answers
        .iter()
        .map(|(t, s)| {
            format!(
                r#"{{"text": {}, "answer_start": {s}}}"#,
                serde_json::to_string(t).unwrap()
            )
        })
        .collect();
    format!(
        r#"{{"id": "{id}", "question": "Q {id}?", "answers": [{}]}}"#,
        answers.join(", ")
    )
}

#[test]
fn char_to_word_map_as_run_squad() {
    // run_squad's whitespace: space, \t, \r, \n and U+202F; U+00A0 is part of a word. Leading
    // whitespace maps to -1; whitespace after a word maps to that word.
    let d = Document::from_context(" \tAb  c\u{202f}d\u{a0}e\r\nf");
    assert_eq!(d.words, vec!["Ab", "c", "d\u{a0}e", "f"]);
    assert_eq!(
        d.char_to_word,
        vec![-1, -1, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 3]
    );
    let empty = Document::from_context("");
    assert!(empty.words.is_empty() && empty.char_to_word.is_empty());
}

#[test]
fn training_answers_on_words() {
    let context = "The leader was John Smith (1895-1943). Zoë Ångström directed it.";
    let json = dataset(
        context,
        &[
            qa("born", &[("1895", context.find("1895").unwrap())]),
            // answer_start counts characters, not bytes: "Ångström" comes after the 2-byte ë.
            qa(
                "who",
                &[("Ångström", context.chars().position(|c| c == 'Å').unwrap())],
            ),
            qa("two", &[("John Smith", 15), ("Smith", 20)]),
            // The text is not in its words ("john" vs "John"): skipped with a count.
            qa("case", &[("john", 15)]),
        ]
        .join(", "),
    );
    let (ds, mut w) = parse(&json);
    let ds = ds.unwrap();
    assert_eq!(w.count(WarningKind::AnswerStartMismatch), 1);
    let examples = read_examples(&ds, true, &mut w);
    let got: Vec<(&str, usize, usize)> = examples
        .iter()
        .map(|e| {
            let a = e.answer.as_ref().unwrap();
            (e.qas_id.as_str(), a.start_word, a.end_word)
        })
        .collect();
    // Words: The(0) leader(1) was(2) John(3) Smith(4) (1895-1943).(5) Zoë(6) Ångström(7)
    assert_eq!(got, vec![("born", 5, 5), ("who", 7, 7), ("two", 3, 4)]);
    assert_eq!(w.count(WarningKind::AnswerNotFound), 1);
    assert_eq!(w.count(WarningKind::FirstAnswerUsed), 1);
    assert!(w.samples(WarningKind::AnswerNotFound)[0].contains("\"case\""));
    // Prediction keeps every question, without answers.
    let all = read_examples(&ds, false, &mut Warnings::new());
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|e| e.answer.is_none()));
    // Questions of one paragraph share its words.
    assert!(std::sync::Arc::ptr_eq(&all[0].doc, &all[3].doc));
}

#[test]
fn malformed_json_names_the_position() {
    let (r, _) = parse("{\"version\": \"1.1\", \"data\": [\n  {\"title\": \"x\",, }]}");
    match r {
        Err(SquadError::Json {
            line,
            column,
            ref path,
            ..
        }) => {
            assert_eq!(line, 2);
            assert!(column > 0);
            assert_eq!(path, Path::new("bad-input.json"));
        }
        other => panic!("expected a JSON error, got {other:?}"),
    }
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("bad-input.json") && msg.contains("line 2"),
        "{msg}"
    );
}

#[test]
fn schema_errors_name_article_and_question() {
    let cases = [
        (
            r#"{"version": "1.1"}"#.to_string(),
            vec!["top level", "missing field \"data\""],
        ),
        (
            r#"{"data": {}}"#.to_string(),
            vec!["\"data\" must be a list, found an object"],
        ),
        (
            r#"{"data": [{"title": "Art", "paragraphs": [{"qas": []}]}]}"#.to_string(),
            vec![
                "data[0] (\"Art\"), paragraphs[0]",
                "missing field \"context\"",
            ],
        ),
        (
            dataset("c", r#"{"id": "q7", "question": 5, "answers": []}"#),
            vec![
                "qas[0] (id \"q7\")",
                "\"question\" must be a string, found a number",
            ],
        ),
        (
            dataset(
                "abc",
                r#"{"id": "q8", "question": "?", "answers": [{"text": "a", "answer_start": -1}]}"#,
            ),
            vec![
                "(id \"q8\"), answers[0]",
                "\"answer_start\" must be a non-negative integer",
                "-1",
            ],
        ),
        (
            dataset(
                "abc",
                r#"{"id": "q9", "question": "?", "answers": [{"text": "a", "answer_start": "0"}]}"#,
            ),
            vec![
                "(id \"q9\"), answers[0]",
                "\"answer_start\" must be a non-negative integer",
            ],
        ),
        (
            dataset(
                "abc",
                r#"{"id": "q1", "question": "?", "answers": [{"answer_start": 0}]}"#,
            ),
            vec!["(id \"q1\"), answers[0]", "missing field \"text\""],
        ),
    ];
    for (json, wants) in cases {
        let (r, _) = parse(&json);
        let err = r.unwrap_err();
        assert!(matches!(err, SquadError::Schema { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("bad-input.json: "), "{msg}");
        for want in wants {
            assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        }
    }
}

#[test]
fn duplicate_ids_are_an_error() {
    let (r, _) = parse(&dataset(
        "abc",
        &[qa("same", &[("a", 0)]), qa("same", &[("b", 1)])].join(", "),
    ));
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("\"same\" appears twice") && msg.contains("qas[0]") && msg.contains("qas[1]"),
        "{msg}"
    );
}

#[test]
fn bad_answer_start_is_counted_and_handled() {
    let context = "Alpha beta gamma.";
    let json = dataset(
        context,
        &[
            qa("ok", &[("beta", 6)]),
            // Off by one but still inside the word: counted; run_squad's word rule keeps it.
            qa("off", &[("beta", 5)]),
            // Past the end of the context: counted; training skips it.
            qa("past", &[("gamma.", 14)]),
            qa("empty-text", &[("", 3)]),
            r#"{"id": "none", "question": "?", "answers": []}"#.to_string(),
        ]
        .join(", "),
    );
    let (ds, mut w) = parse(&json);
    let ds = ds.unwrap();
    assert_eq!(w.count(WarningKind::AnswerStartMismatch), 1);
    assert_eq!(w.count(WarningKind::AnswerOutsideContext), 1);
    assert_eq!(w.count(WarningKind::EmptyAnswerText), 1);
    assert_eq!(w.count(WarningKind::NoAnswers), 1);
    let msg = &w.samples(WarningKind::AnswerStartMismatch)[0];
    assert!(
        msg.contains("bad-input.json")
            && msg.contains("(\"Art\")")
            && msg.contains("id \"off\"")
            && msg.contains("\" bet\""),
        "{msg}"
    );
    assert!(w.samples(WarningKind::AnswerOutsideContext)[0].contains("id \"past\""));
    let before = w.total();
    let examples = read_examples(&ds, true, &mut w);
    let ids: Vec<&str> = examples.iter().map(|e| e.qas_id.as_str()).collect();
    // "off": chars 5..9 = " bet" lie in words 0..1 ("Alpha beta"), which contain "beta".
    assert_eq!(ids, vec!["ok", "off"]);
    assert_eq!(
        examples[1]
            .answer
            .as_ref()
            .map(|a| (a.start_word, a.end_word)),
        Some((0, 1))
    );
    // The three skipped questions were counted when the file was read, not again.
    assert_eq!(w.total(), before);
    // Prediction keeps all five (the evaluation scores them against their texts).
    assert_eq!(read_examples(&ds, false, &mut w).len(), 5);
}

#[test]
fn empty_contexts_and_questions_are_counted() {
    let json = format!(
        r#"{{"version": "2.0", "data": [{{"title": "E", "paragraphs": [
            {{"context": " \n\t", "qas": [{}, {}]}},
            {{"context": "Real text.", "qas": [{{"id": "blank", "question": "  ", "answers": [{{"text": "Real", "answer_start": 0}}]}},
                {{"id": "imp", "question": "?", "answers": [], "is_impossible": true}}]}}]}}]}}"#,
        qa("e1", &[]),
        qa("e2", &[]),
    );
    let (ds, w) = parse(&json);
    let ds = ds.unwrap();
    assert_eq!(w.count(WarningKind::Version), 1);
    assert_eq!(w.count(WarningKind::EmptyContext), 1);
    assert!(w.samples(WarningKind::EmptyContext)[0].contains("2 question(s)"));
    assert_eq!(w.count(WarningKind::EmptyQuestion), 1);
    assert_eq!(w.count(WarningKind::Unanswerable), 1);
    assert_eq!(w.count(WarningKind::NoAnswers), 2);
    let text = w.to_string();
    assert!(
        text.contains("1 empty contexts") && text.contains("2 questions without answers"),
        "{text}"
    );
    assert_eq!(ds.num_questions(), 4);
}

#[test]
fn shared_file_reads_cleanly() {
    let Some(path) = squad_support::shared_squad("train-a-v1.1.json") else {
        return;
    };
    let mut w = Warnings::new();
    let ds = SquadDataset::read(&path, &mut w).unwrap();
    assert!(w.is_empty(), "{w}");
    assert_eq!(ds.articles.len(), 24);
    assert_eq!(ds.num_questions(), 5696);
    // Training uses the first of several answers, and every answer is found in its words.
    let examples = read_examples(&ds, true, &mut w);
    assert_eq!(examples.len(), 5696);
    assert_eq!(w.count(WarningKind::AnswerNotFound), 0);
    assert_eq!(w.count(WarningKind::FirstAnswerUsed), 5696 - 3);
}

//! WordPiece tokenization against google-research/bert's tokenization.py on tricky text, with
//! the real uncased vocab. Expected ids: tests/fixtures/tokenize_golden.json, produced by
//! tools/tokenize_golden.py running the reference (bert-tensorflow 1.0.4) itself.
use std::path::{Path, PathBuf};
use tpu_run::data::{assets, BertTokenizer};

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    do_lower_case: bool,
    tokens: Vec<String>,
    ids: Vec<u32>,
}

fn vocab() -> Option<PathBuf> {
    match assets::uncased_vocab() {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("SKIP: the uncased vocab is not available ({e:#})");
            None
        }
    }
}

fn golden() -> Golden {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenize_golden.json");
    serde_json::from_slice(&std::fs::read(&p).expect("fixture")).expect("fixture JSON")
}

#[test]
fn matches_reference_tokenizer_on_tricky_text() {
    let Some(vocab) = vocab() else { return };
    let g = golden();
    assert!(g.cases.len() >= 25, "fixture has {} cases", g.cases.len());
    let uncased = BertTokenizer::from_vocab_file(&vocab, true).unwrap();
    let cased = BertTokenizer::from_vocab_file(&vocab, false).unwrap();
    assert_eq!(uncased.vocab().len(), 30_522);
    let mut failures = Vec::new();
    for case in &g.cases {
        let tok = if case.do_lower_case { &uncased } else { &cased };
        let ids = tok.encode(&case.text).unwrap();
        let tokens = tok.tokenize(&case.text).unwrap();
        if ids != case.ids || tokens != case.tokens {
            failures.push(format!(
                "{:?} (lower={}):\n  expected {:?}\n  got      {:?}",
                case.text, case.do_lower_case, case.tokens, tokens
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn batch_encoding_equals_one_by_one() {
    let Some(vocab) = vocab() else { return };
    let g = golden();
    let tok = BertTokenizer::from_vocab_file(&vocab, true).unwrap();
    let texts: Vec<&str> = g.cases.iter().map(|c| c.text.as_str()).collect();
    let batch = tok.encode_batch(&texts).unwrap();
    for (t, ids) in texts.iter().zip(&batch) {
        assert_eq!(&tok.encode(t).unwrap(), ids, "{t:?}");
    }
}

#[test]
fn word_length_limit_is_200_characters() {
    let Some(vocab) = vocab() else { return };
    let tok = BertTokenizer::from_vocab_file(&vocab, true).unwrap();
    let unk = tok.vocab().id("[UNK]").unwrap();
    // 200 characters still go through WordPiece; 201 become one [UNK]. Accents are stripped
    // before counting (the reference counts the normalized word).
    assert_ne!(tok.encode(&"ab".repeat(100)).unwrap(), vec![unk]);
    assert_eq!(tok.encode(&("ab".repeat(100) + "a")).unwrap(), vec![unk]);
    assert_ne!(tok.encode(&"\u{e9}".repeat(200)).unwrap(), vec![unk]);
}

#[test]
fn bad_vocab_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.txt");
    let err = BertTokenizer::from_vocab_file(&missing, true)
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("nope.txt"), "{err:#}");
    let no_unk = dir.path().join("vocab.txt");
    std::fs::write(&no_unk, "[PAD]\nhello\n").unwrap();
    let err = BertTokenizer::from_vocab_file(&no_unk, true).err().unwrap();
    assert!(format!("{err:#}").contains("[UNK]"), "{err:#}");
    let binary = dir.path().join("bin.txt");
    std::fs::write(&binary, [0xff, 0xfe, b'\n']).unwrap();
    let err = BertTokenizer::from_vocab_file(&binary, true).err().unwrap();
    assert!(format!("{err:#}").contains("not UTF-8"), "{err:#}");
}

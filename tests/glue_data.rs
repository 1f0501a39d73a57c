//! The GLUE data path without a model: every task's train, dev and test files read from
//! hand-made fixtures in GLUE's exact layouts (tests/fixtures/glue, our own sentences), checked
//! against values written out by hand; bad files refused with the file and line named; metrics
//! against hand-computed values; features (layout, longest-first truncation) against hand-made
//! token lists on the real uncased vocabulary.
use std::path::{Path, PathBuf};
use tpu_run::glue::features::truncate_seq_pair;
use tpu_run::glue::metrics::{matthews, pearson, ranks, score, spearman, Outcomes};
use tpu_run::glue::submission::{submission_text, Prediction};
use tpu_run::glue::{
    convert_examples, read_examples, GlueExample, Label, Metric, Output, Split, Task,
};
use tpu_run::squad::BertSquadTokenizer;

fn fixture(task: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/glue")
        .join(task)
        .join(file)
}

fn read(task: Task, split: Split, file: &str) -> Vec<GlueExample> {
    read_examples(task, split, &fixture(task.name(), file))
        .unwrap_or_else(|e| panic!("{task} {file}: {e:#}"))
        .examples
}

fn ex(index: &str, a: &str, b: Option<&str>, label: Option<Label>, line: usize) -> GlueExample {
    GlueExample {
        line,
        index: index.into(),
        text_a: a.into(),
        text_b: b.map(str::to_string),
        label,
    }
}

#[test]
fn mrpc_as_run_classifier_reads_it() {
    let train = read(Task::Mrpc, Split::Train, "train.tsv");
    assert_eq!(train.len(), 4);
    // The byte-order mark before the header is dropped; quotes stay as text.
    assert_eq!(
        train[1],
        ex(
            "train-1",
            "He arrived on Monday.",
            Some("\"She left on Friday,\" he said."),
            Some(Label::Class(0)),
            3
        )
    );
    assert_eq!(train[0].label, Some(Label::Class(1)));
    let test = read(Task::Mrpc, Split::Test, "test.tsv");
    assert_eq!(
        test[1],
        ex(
            "1",
            "The bridge closed.",
            Some("Tickets sold out."),
            None,
            3
        )
    );
}

#[test]
fn cola_has_no_header_in_train_and_dev() {
    let train = read(Task::Cola, Split::Train, "train.tsv");
    assert_eq!(train.len(), 4);
    assert_eq!(
        train[1],
        ex(
            "train-1",
            "Cat the mat on sat.",
            None,
            Some(Label::Class(0)),
            2
        )
    );
    let test = read(Task::Cola, Split::Test, "test.tsv");
    assert_eq!(test[0], ex("0", "Birds fly.", None, None, 2));
}

#[test]
fn single_sentence_and_pair_tasks() {
    let sst = read(Task::Sst2, Split::Train, "train.tsv");
    assert_eq!(sst.len(), 16);
    assert_eq!(
        sst[1],
        ex(
            "train-1",
            "a dull and lifeless film ",
            None,
            Some(Label::Class(0)),
            3
        )
    );
    assert_eq!(
        read(Task::Sst2, Split::Test, "test.tsv")[1],
        ex("1", "worst sequel ever", None, None, 3)
    );
    let qnli = read(Task::Qnli, Split::Dev, "dev.tsv");
    assert_eq!(
        qnli[1],
        ex(
            "1",
            "What is the capital?",
            Some("Cars are fast."),
            Some(Label::Class(1)),
            3
        )
    );
    let rte = read(Task::Rte, Split::Train, "train.tsv");
    assert_eq!(
        rte[0].label,
        Some(Label::Class(0)),
        "entailment is RTE's label 0"
    );
    let wnli = read(Task::Wnli, Split::Train, "train.tsv");
    assert_eq!(wnli[0].label, Some(Label::Class(1)));
    assert_eq!(
        read(Task::Wnli, Split::Test, "test.tsv")[0],
        ex("0", "A.", Some("B."), None, 2)
    );
}

#[test]
fn qqp_passes_over_short_lines_and_counts_them() {
    let f = read_examples(Task::Qqp, Split::Train, &fixture("QQP", "train.tsv")).unwrap();
    assert_eq!(f.examples.len(), 3);
    assert_eq!(f.skipped_lines, vec![4]);
    assert!(f
        .describe()
        .contains("passed over 1 line(s) with missing columns (first: line 4)"));
    assert_eq!(
        f.examples[2],
        ex(
            "3",
            "Is coffee healthy?",
            Some("Is drinking coffee good for you?"),
            Some(Label::Class(1)),
            5
        )
    );
    let test = read(Task::Qqp, Split::Test, "test.tsv");
    assert_eq!(
        test[0],
        ex(
            "0",
            "What is Rust?",
            Some("What is the Rust language?"),
            None,
            2
        )
    );
}

#[test]
fn stsb_is_regression_and_mnli_reads_the_gold_label() {
    let sts = read(Task::StsB, Split::Train, "train.tsv");
    assert_eq!(sts[2].label, Some(Label::Score(4.2)));
    assert_eq!(sts[2].text_b.as_deref(), Some("Asian stocks climb."));
    assert_eq!(read(Task::StsB, Split::Test, "test.tsv")[1].label, None);
    assert_eq!(Task::StsB.output(), Output::Regression);

    let mnli = read(Task::Mnli, Split::Train, "train.tsv");
    let labels: Vec<_> = mnli.iter().map(|e| e.label).collect();
    // contradiction, entailment, neutral = 0, 1, 2 (run_classifier's MnliProcessor order).
    assert_eq!(
        labels,
        vec![
            Some(Label::Class(1)),
            Some(Label::Class(0)),
            Some(Label::Class(2))
        ]
    );
    // dev has five annotator labels before gold_label: the last column is the one read.
    let mm = read(Task::Mnli, Split::Dev, "dev_mismatched.tsv");
    assert_eq!(mm[0].label, Some(Label::Class(0)));
    assert_eq!(mm[0].text_a, "The report was late.");
    let files: Vec<&str> = Task::Mnli.dev_files().iter().map(|f| f.file).collect();
    assert_eq!(files, ["dev_matched.tsv", "dev_mismatched.tsv"]);
    let subs: Vec<&str> = Task::Mnli
        .test_files()
        .iter()
        .map(|f| f.submission)
        .collect();
    assert_eq!(subs, ["MNLI-m.tsv", "MNLI-mm.tsv"]);
}

#[test]
fn every_task_reads_its_fixtures() {
    for task in Task::ALL {
        let dir = fixture(task.name(), "");
        for (split, files) in [
            (Split::Train, vec![task.train_file()]),
            (
                Split::Dev,
                task.dev_files().iter().map(|f| f.file).collect(),
            ),
            (
                Split::Test,
                task.test_files().iter().map(|f| f.file).collect(),
            ),
        ] {
            for f in files {
                let got = read_examples(task, split, &dir.join(f))
                    .unwrap_or_else(|e| panic!("{task} {f}: {e:#}"));
                assert!(!got.examples.is_empty(), "{task} {f}");
                assert_eq!(
                    got.examples.iter().all(|e| e.label.is_some()),
                    split != Split::Test,
                    "{task} {f}"
                );
            }
        }
    }
}

fn err(task: Task, split: Split, body: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.tsv");
    std::fs::write(&p, body).unwrap();
    let e = read_examples(task, split, &p).unwrap_err();
    format!("{e:#}").replace(&p.display().to_string(), "FILE")
}

#[test]
fn bad_files_name_the_file_and_line() {
    let mrpc = std::fs::read(fixture("MRPC", "train.tsv")).unwrap();
    // Another task's file.
    assert_eq!(
        err(Task::Rte, Split::Train, &mrpc),
        "FILE line 1: header column 1 is 'Quality'; a RTE train file has 'index' there (is \
         --task right for this file?)"
    );
    // An unknown label.
    let mut bad = String::from_utf8(mrpc.clone()).unwrap();
    bad.push_str("2\t1\t2\tA.\tB.\n");
    assert_eq!(
        err(Task::Mrpc, Split::Train, bad.as_bytes()),
        "FILE line 6: label '2' is not one of MRPC's labels (0, 1)"
    );
    // A missing column.
    let mut short = String::from_utf8(mrpc.clone()).unwrap();
    short.push_str("1\t7\t8\tOnly one sentence.\n");
    assert_eq!(
        err(Task::Mrpc, Split::Train, short.as_bytes()),
        "FILE line 6: has 4 tab-separated column(s); the second text is column 5 (1-based)"
    );
    // Empty, header only, a CoLA test file read as train, a bad score, bad bytes.
    assert_eq!(
        err(Task::Mrpc, Split::Dev, b""),
        "FILE: is empty; a MRPC dev file starts with a header line"
    );
    assert_eq!(
        err(Task::Sst2, Split::Train, b"sentence\tlabel\n"),
        "FILE: has no examples; a SST-2 train file has one per line"
    );
    assert_eq!(
        err(
            Task::Cola,
            Split::Train,
            b"index\tsentence\n0\tBirds fly.\n"
        ),
        "FILE line 1: has 2 tab-separated column(s); the first text is column 4 (1-based) (is \
         this a CoLA train file?)"
    );
    let sts = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\
               \tscore\n0\tg\tf\ty\to\ts\ts\tA.\tB.\thigh\n";
    assert_eq!(
        err(Task::StsB, Split::Train, sts.as_bytes()),
        "FILE line 2: score 'high' is not a finite number (STS-B is scored 0 to 5) (is this a \
         STS-B train file?)"
    );
    assert_eq!(
        err(
            Task::Sst2,
            Split::Train,
            b"sentence\tlabel\nok\t1\nbad \xff\t0\n"
        ),
        "FILE line 3: is not UTF-8 (invalid byte at column 5); GLUE files are UTF-8"
    );
}

#[test]
fn metrics_match_hand_computed_values() {
    // 10 pairs: tp 4, fp 1, fn 2, tn 3.
    let gold = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0];
    let pred = [1, 1, 1, 1, 0, 0, 1, 0, 0, 0];
    let s = score(
        Metric::AccuracyF1,
        Outcomes::Classes {
            predicted: &pred,
            gold: &gold,
        },
    );
    assert_eq!(s.accuracy, Some(0.7));
    assert!((s.f1.unwrap() - 8.0 / 11.0).abs() < 1e-12); // 2*4 / (2*4 + 1 + 2)
                                                         // (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (12 - 2) / sqrt(5*6*4*5)
    let want = 10.0 / (600f64).sqrt();
    assert!((matthews(&pred, &gold) - want).abs() < 1e-12);
    assert_eq!(matthews(&[1, 1, 1], &[1, 0, 1]), 0.0, "constant prediction");
    // Three classes: Gorodkin's R_K from the confusion matrix (hand-computed: 0.5).
    let g3 = [0, 0, 1, 1, 2, 2];
    let p3 = [0, 1, 1, 1, 2, 0];
    // c = 4, s = 6, t = (2,2,2), p = (2,3,1): (4*6 - 12) / sqrt((36-14)(36-12)) = 12/sqrt(528)
    assert!((matthews(&p3, &g3) - 12.0 / 528f64.sqrt()).abs() < 1e-12);

    let x = [1.0, 2.0, 3.0, 4.0];
    let y = [2.0, 4.0, 5.0, 4.0];
    // mean x 2.5, mean y 3.75; sxy = 3.5, sxx = 5, syy = 4.75.
    assert!((pearson(&x, &y).unwrap() - 3.5 / (5.0f64 * 4.75).sqrt()).abs() < 1e-12);
    assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), vec![1.0, 4.0, 2.5, 2.5]);
    // ranks of y: 1, 2.5, 4, 2.5 against 1, 2, 3, 4: sxy = 3, syy = 4.5.
    assert!((spearman(&x, &y).unwrap() - 3.0 / (5.0f64 * 4.5).sqrt()).abs() < 1e-12);
    assert_eq!(pearson(&[1.0, 1.0], &[1.0, 2.0]), None, "undefined, not 0");
}

#[test]
fn submission_lines_use_the_files_index_and_label_names() {
    let test = read(Task::Mnli, Split::Test, "test_matched.tsv");
    let text = submission_text(
        Task::Mnli.output(),
        &test,
        &[Prediction::Class(1), Prediction::Class(2)],
    )
    .unwrap();
    assert_eq!(text, "index\tprediction\n0\tentailment\n1\tneutral\n");
    let sts = read(Task::StsB, Split::Test, "test.tsv");
    let text = submission_text(
        Output::Regression,
        &sts,
        &[Prediction::Score(1.23456), Prediction::Score(0.5)],
    )
    .unwrap();
    assert_eq!(text, "index\tprediction\n0\t1.235\n1\t0.500\n");
}

#[test]
fn pair_truncation_is_longest_first() {
    let (mut a, mut b) = (vec![1, 2, 3, 4, 5], vec![6, 7]);
    truncate_seq_pair(&mut a, &mut b, 4);
    assert_eq!((a, b), (vec![1, 2], vec![6, 7]));
    let (mut a, mut b) = (vec![1, 2, 3], vec![4, 5, 6]);
    truncate_seq_pair(&mut a, &mut b, 3);
    // Equal lengths: b loses first (run_classifier pops from tokens_b unless a is longer).
    assert_eq!((a, b), (vec![1, 2], vec![4]));
}

#[test]
fn features_lay_out_cls_a_sep_b_sep() {
    let vocab = match tpu_run::data::assets::uncased_vocab() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("SKIPPED: the uncased vocab is not available ({e:#})");
            return;
        }
    };
    let tok = BertSquadTokenizer::from_vocab_file(&vocab, true).unwrap();
    let id = |t: &str| -> i32 {
        use tpu_run::squad::SquadTokenizer;
        tok.token_to_id(t).unwrap() as i32
    };
    let examples = vec![
        ex(
            "0",
            "The cat sat.",
            Some("A dog ran."),
            Some(Label::Class(1)),
            2,
        ),
        ex(
            "1",
            "one two three four five six",
            Some("seven"),
            Some(Label::Class(0)),
            3,
        ),
    ];
    let f = convert_examples(&examples, &tok, 8, Output::Classes(&["0", "1"])).unwrap();
    let row = |v: &[i32], r: usize| v[r * 8..(r + 1) * 8].to_vec();
    let (cls, sep) = (id("[CLS]"), id("[SEP]"));
    assert_eq!(
        row(&f.input_ids, 0),
        vec![
            cls,
            id("the"),
            id("cat"),
            id("sat"),
            sep,
            id("a"),
            id("dog"),
            sep
        ],
        "4 + 4 tokens cut to 5: b loses a token on a tie, then the longer a, then b again"
    );
    // tokens_a 6 + tokens_b 1 > 5: a is cut to 4 ("one two three four").
    assert_eq!(
        row(&f.input_ids, 1),
        vec![
            cls,
            id("one"),
            id("two"),
            id("three"),
            id("four"),
            sep,
            id("seven"),
            sep
        ]
    );
    assert_eq!(row(&f.segment_ids, 1), vec![0, 0, 0, 0, 0, 0, 1, 1]);
    assert_eq!(row(&f.input_mask, 1), vec![1; 8]);
    assert_eq!(f.labels, vec![1, 0]);
    assert_eq!(f.truncated, 2);

    let single = vec![ex("0", "a film", None, None, 2)];
    let f = convert_examples(&single, &tok, 6, Output::Classes(&["0", "1"])).unwrap();
    assert_eq!(f.input_ids, vec![cls, id("a"), id("film"), sep, 0, 0]);
    assert_eq!(f.input_mask, vec![1, 1, 1, 1, 0, 0]);
    assert_eq!(f.segment_ids, vec![0; 6]);
    assert_eq!(f.truncated, 0);
}

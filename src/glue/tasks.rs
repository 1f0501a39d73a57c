//! The GLUE tasks and how their files are laid out: which file is train, dev and test, which
//! columns hold the texts, the label and the example's index, the header names that identify a
//! task's file, and the label set. MRPC, CoLA and MNLI are read as run_classifier.py's
//! processors read them; SST-2, QQP, STS-B, QNLI, RTE and WNLI (which run_classifier lacks) as
//! Hugging Face's GLUE processors (`transformers/data/processors/glue.py`) read them.
use std::fmt;

/// A GLUE task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Task {
    Cola,
    #[value(name = "sst-2", alias = "sst2")]
    Sst2,
    Mrpc,
    Qqp,
    #[value(name = "sts-b", alias = "stsb")]
    StsB,
    Mnli,
    Qnli,
    Rte,
    Wnli,
}

/// Which part of a task's data a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// One of these labels (their strings as the files and GLUE's submissions spell them).
    Classes(&'static [&'static str]),
    /// A similarity score (STS-B: 0 to 5), one output, MSE loss.
    Regression,
}

impl Output {
    /// The head's output count.
    pub fn num_outputs(self) -> usize {
        match self {
            Output::Classes(l) => l.len(),
            Output::Regression => 1,
        }
    }
}

/// Where a split's label is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelAt {
    Column(usize),
    /// The last column (MNLI's `gold_label` after a varying number of annotator labels).
    Last,
}

/// The columns of one split's file (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The header's expected names at the columns read (`None`: the file has no header line).
    /// A file whose header differs is another task's, or not GLUE's.
    pub header: Option<&'static [(usize, &'static str)]>,
    /// The name of the last header column when the label is [`LabelAt::Last`].
    pub last_header: Option<&'static str>,
    pub text_a: usize,
    pub text_b: Option<usize>,
    pub label: Option<LabelAt>,
    /// The column of the example's index (test files: the `index`/`id` a submission names).
    pub index: Option<usize>,
}

/// A dev or test file of a task with the name its results go under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalFile {
    /// `dev`, `dev_matched`, `test_mismatched`, ...
    pub name: &'static str,
    /// The file in the task's data directory.
    pub file: &'static str,
    /// GLUE's submission file for the test predictions (`MRPC.tsv`, `MNLI-m.tsv`).
    pub submission: &'static str,
}

impl EvalFile {
    const fn new(name: &'static str, file: &'static str, submission: &'static str) -> Self {
        Self {
            name,
            file,
            submission,
        }
    }
}

/// How a task is scored (GLUE's metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Accuracy,
    /// Accuracy and F1 of the positive class (label "1").
    AccuracyF1,
    Matthews,
    PearsonSpearman,
}

const BINARY: &[&str] = &["0", "1"];
const ENTAILMENT: &[&str] = &["entailment", "not_entailment"];
const NLI: &[&str] = &["contradiction", "entailment", "neutral"];

impl Task {
    pub const ALL: [Task; 9] = [
        Task::Cola,
        Task::Sst2,
        Task::Mrpc,
        Task::Qqp,
        Task::StsB,
        Task::Mnli,
        Task::Qnli,
        Task::Rte,
        Task::Wnli,
    ];

    /// GLUE's name of the task (`MRPC`, `SST-2`).
    pub fn name(self) -> &'static str {
        match self {
            Task::Cola => "CoLA",
            Task::Sst2 => "SST-2",
            Task::Mrpc => "MRPC",
            Task::Qqp => "QQP",
            Task::StsB => "STS-B",
            Task::Mnli => "MNLI",
            Task::Qnli => "QNLI",
            Task::Rte => "RTE",
            Task::Wnli => "WNLI",
        }
    }

    /// The lower-case name used in files and checkpoints (`mrpc`, `sts-b`).
    pub fn key(self) -> String {
        self.name().to_ascii_lowercase()
    }

    pub fn output(self) -> Output {
        match self {
            Task::Cola | Task::Sst2 | Task::Mrpc | Task::Qqp | Task::Wnli => {
                Output::Classes(BINARY)
            }
            Task::Qnli | Task::Rte => Output::Classes(ENTAILMENT),
            Task::Mnli => Output::Classes(NLI),
            Task::StsB => Output::Regression,
        }
    }

    pub fn metric(self) -> Metric {
        match self {
            Task::Cola => Metric::Matthews,
            Task::Mrpc | Task::Qqp => Metric::AccuracyF1,
            Task::StsB => Metric::PearsonSpearman,
            _ => Metric::Accuracy,
        }
    }

    /// QQP's files have lines with missing columns; Hugging Face's processor passes over them
    /// (we count and report them). Every other task's malformed line is an error.
    pub fn skips_short_lines(self) -> bool {
        self == Task::Qqp
    }

    pub fn train_file(self) -> &'static str {
        "train.tsv"
    }

    /// GLUE's submission file of the task's test predictions.
    pub fn submission_file(self) -> &'static str {
        match self {
            Task::Cola => "CoLA.tsv",
            Task::Sst2 => "SST-2.tsv",
            Task::Mrpc => "MRPC.tsv",
            Task::Qqp => "QQP.tsv",
            Task::StsB => "STS-B.tsv",
            Task::Mnli => "MNLI-m.tsv",
            Task::Qnli => "QNLI.tsv",
            Task::Rte => "RTE.tsv",
            Task::Wnli => "WNLI.tsv",
        }
    }

    /// The dev files, each scored (MNLI: matched and mismatched).
    pub fn dev_files(self) -> Vec<EvalFile> {
        self.eval_files("dev")
    }

    /// The test files, whose predictions go into GLUE's submission files.
    pub fn test_files(self) -> Vec<EvalFile> {
        self.eval_files("test")
    }

    fn eval_files(self, split: &'static str) -> Vec<EvalFile> {
        match (self, split) {
            (Task::Mnli, "dev") => vec![
                EvalFile::new("dev_matched", "dev_matched.tsv", "MNLI-m.tsv"),
                EvalFile::new("dev_mismatched", "dev_mismatched.tsv", "MNLI-mm.tsv"),
            ],
            (Task::Mnli, _) => vec![
                EvalFile::new("test_matched", "test_matched.tsv", "MNLI-m.tsv"),
                EvalFile::new("test_mismatched", "test_mismatched.tsv", "MNLI-mm.tsv"),
            ],
            (_, "dev") => vec![EvalFile::new("dev", "dev.tsv", self.submission_file())],
            _ => vec![EvalFile::new("test", "test.tsv", self.submission_file())],
        }
    }

    /// The columns of `split`'s file.
    pub fn layout(self, split: Split) -> Layout {
        let test = split == Split::Test;
        let none = Layout {
            header: None,
            last_header: None,
            text_a: 0,
            text_b: None,
            label: None,
            index: None,
        };
        match (self, test) {
            // run_classifier's ColaProcessor: train/dev have no header (source, label,
            // original label, sentence); test has `index\tsentence`.
            (Task::Cola, false) => Layout {
                text_a: 3,
                label: Some(LabelAt::Column(1)),
                ..none
            },
            (Task::Cola, true) => Layout {
                header: Some(&[(0, "index"), (1, "sentence")]),
                text_a: 1,
                index: Some(0),
                ..none
            },
            (Task::Sst2, false) => Layout {
                header: Some(&[(0, "sentence"), (1, "label")]),
                text_a: 0,
                label: Some(LabelAt::Column(1)),
                ..none
            },
            (Task::Sst2, true) => Layout {
                header: Some(&[(0, "index"), (1, "sentence")]),
                text_a: 1,
                index: Some(0),
                ..none
            },
            (Task::Mrpc, false) => Layout {
                header: Some(&[(0, "Quality"), (3, "#1 String"), (4, "#2 String")]),
                text_a: 3,
                text_b: Some(4),
                label: Some(LabelAt::Column(0)),
                ..none
            },
            (Task::Mrpc, true) => Layout {
                header: Some(&[(0, "index"), (3, "#1 String"), (4, "#2 String")]),
                text_a: 3,
                text_b: Some(4),
                index: Some(0),
                ..none
            },
            (Task::Qqp, false) => Layout {
                header: Some(&[
                    (0, "id"),
                    (3, "question1"),
                    (4, "question2"),
                    (5, "is_duplicate"),
                ]),
                text_a: 3,
                text_b: Some(4),
                label: Some(LabelAt::Column(5)),
                index: Some(0),
                ..none
            },
            (Task::Qqp, true) => Layout {
                header: Some(&[(0, "id"), (1, "question1"), (2, "question2")]),
                text_a: 1,
                text_b: Some(2),
                index: Some(0),
                ..none
            },
            (Task::StsB, _) => Layout {
                header: Some(&[(0, "index"), (7, "sentence1"), (8, "sentence2")]),
                last_header: (!test).then_some("score"),
                text_a: 7,
                text_b: Some(8),
                label: (!test).then_some(LabelAt::Last),
                index: Some(0),
            },
            (Task::Mnli, _) => Layout {
                header: Some(&[(0, "index"), (8, "sentence1"), (9, "sentence2")]),
                last_header: (!test).then_some("gold_label"),
                text_a: 8,
                text_b: Some(9),
                label: (!test).then_some(LabelAt::Last),
                index: Some(0),
            },
            (Task::Qnli, _) => Layout {
                header: Some(&[(0, "index"), (1, "question"), (2, "sentence")]),
                last_header: (!test).then_some("label"),
                text_a: 1,
                text_b: Some(2),
                label: (!test).then_some(LabelAt::Last),
                index: Some(0),
            },
            (Task::Rte | Task::Wnli, _) => Layout {
                header: Some(&[(0, "index"), (1, "sentence1"), (2, "sentence2")]),
                last_header: (!test).then_some("label"),
                text_a: 1,
                text_b: Some(2),
                label: (!test).then_some(LabelAt::Last),
                index: Some(0),
            },
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

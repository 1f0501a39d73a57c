//! Counted warnings: every question, answer or paragraph the pipeline cannot use as given is
//! counted under one kind, with the first few messages kept (and logged) so the user can find
//! them. Nothing is dropped without a count.
use std::collections::BTreeMap;
use std::fmt;

/// Messages kept (and logged) per kind; the rest are only counted.
pub const SAMPLES_PER_KIND: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WarningKind {
    /// The file's `version` is not "1.1" (read anyway, as the official script does).
    Version,
    /// An answer's text differs from the context at its `answer_start` (kept; in training the
    /// whitespace-word rule of run_squad then decides).
    AnswerStartMismatch,
    /// An answer runs past the end of its context (training skips the question).
    AnswerOutsideContext,
    /// A context that is empty or only whitespace (its questions get no features).
    EmptyContext,
    /// A question with an empty `question` text.
    EmptyQuestion,
    /// A question with no answers (training skips it).
    NoAnswers,
    /// An answer with empty text (training skips the question).
    EmptyAnswerText,
    /// A SQuAD 2.0 `is_impossible` question (training skips it; v1.1 has none).
    Unanswerable,
    /// Training: the answer's words do not contain its text (run_squad's "Could not find
    /// answer" rule); the question is skipped.
    AnswerNotFound,
    /// Training: a question with several answers; the first is used (run_squad requires one).
    FirstAnswerUsed,
    /// A question longer than `max_query_length` WordPieces, truncated.
    QuestionTruncated,
    /// A context without WordPiece tokens: the example gets no features.
    NoDocTokens,
    /// Prediction: an example without features; predicted "empty" (as run_squad does).
    NoFeatures,
    /// Prediction: no valid span in any window; predicted "empty" (as run_squad does).
    NoValidSpan,
}

impl WarningKind {
    pub fn describe(self) -> &'static str {
        match self {
            WarningKind::Version => "files whose version is not 1.1",
            WarningKind::AnswerStartMismatch => {
                "answers whose text differs from the context at answer_start"
            }
            WarningKind::AnswerOutsideContext => "answers running past the end of their context",
            WarningKind::EmptyContext => "empty contexts",
            WarningKind::EmptyQuestion => "empty questions",
            WarningKind::NoAnswers => "questions without answers",
            WarningKind::EmptyAnswerText => "answers with empty text",
            WarningKind::Unanswerable => "unanswerable (SQuAD 2.0) questions",
            WarningKind::AnswerNotFound => {
                "training questions skipped: answer not found in its words"
            }
            WarningKind::FirstAnswerUsed => "training questions with several answers (first used)",
            WarningKind::QuestionTruncated => "questions truncated to max_query_length",
            WarningKind::NoDocTokens => "contexts without WordPiece tokens",
            WarningKind::NoFeatures => "examples without features (predicted \"empty\")",
            WarningKind::NoValidSpan => "examples without a valid span (predicted \"empty\")",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Warnings {
    counts: BTreeMap<WarningKind, usize>,
    samples: BTreeMap<WarningKind, Vec<String>>,
}

impl Warnings {
    pub fn new() -> Warnings {
        Warnings::default()
    }

    /// Counts one occurrence; the first [`SAMPLES_PER_KIND`] messages of a kind are kept and
    /// logged.
    pub fn warn(&mut self, kind: WarningKind, message: impl Into<String>) {
        *self.counts.entry(kind).or_insert(0) += 1;
        let samples = self.samples.entry(kind).or_default();
        if samples.len() < SAMPLES_PER_KIND {
            let message = message.into();
            tracing::warn!("{message}");
            samples.push(message);
        }
    }

    pub fn count(&self, kind: WarningKind) -> usize {
        self.counts.get(&kind).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The kept messages of a kind, oldest first.
    pub fn samples(&self, kind: WarningKind) -> &[String] {
        self.samples.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// (kind, count) for every kind seen.
    pub fn counts(&self) -> impl Iterator<Item = (WarningKind, usize)> + '_ {
        self.counts.iter().map(|(k, n)| (*k, *n))
    }

    pub fn merge(&mut self, other: Warnings) {
        for (kind, n) in other.counts {
            *self.counts.entry(kind).or_insert(0) += n;
        }
        for (kind, msgs) in other.samples {
            let mine = self.samples.entry(kind).or_default();
            let room = SAMPLES_PER_KIND.saturating_sub(mine.len());
            mine.extend(msgs.into_iter().take(room));
        }
    }
}

/// One line per kind: `count description`, e.g. `3 questions truncated to max_query_length`.
impl fmt::Display for Warnings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.counts.is_empty() {
            return write!(f, "no warnings");
        }
        let mut first = true;
        for (kind, n) in &self.counts {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{n} {}", kind.describe())?;
        }
        Ok(())
    }
}

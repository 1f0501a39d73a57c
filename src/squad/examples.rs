//! SQuAD questions as run_squad's `read_squad_examples` builds them: the context split into
//! whitespace words with a character-to-word map, and (in training) the answer's first and last
//! word.
use super::json::SquadDataset;
use super::warnings::{WarningKind, Warnings};
use crate::data::normalizer::is_python_space;
use std::sync::Arc;

/// run_squad's `is_whitespace`: the characters that separate context words (note U+202F
/// NARROW NO-BREAK SPACE is one, U+00A0 is not).
pub fn is_squad_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\u{202f}')
}

/// A context split into words; shared by all questions of its paragraph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// The whitespace-separated words of the context.
    pub words: Vec<String>,
    /// For each character of the context (Python string index), the index of the word it
    /// belongs to; whitespace maps to the word before it, and leading whitespace to -1.
    pub char_to_word: Vec<isize>,
}

impl Document {
    pub fn from_context(context: &str) -> Document {
        let mut words: Vec<String> = Vec::new();
        let mut char_to_word = Vec::with_capacity(context.len());
        let mut prev_is_whitespace = true;
        for c in context.chars() {
            if is_squad_whitespace(c) {
                prev_is_whitespace = true;
            } else {
                match words.last_mut() {
                    Some(w) if !prev_is_whitespace => w.push(c),
                    _ => words.push(c.to_string()),
                }
                prev_is_whitespace = false;
            }
            char_to_word.push(words.len() as isize - 1);
        }
        Document {
            words,
            char_to_word,
        }
    }
}

/// The answer of a training example, in whitespace words (inclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerWords {
    pub text: String,
    pub start_word: usize,
    pub end_word: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SquadExample {
    pub qas_id: String,
    pub question_text: String,
    pub doc: Arc<Document>,
    /// Set for training examples only.
    pub answer: Option<AnswerWords>,
}

/// Python's `" ".join(text.split())`.
pub fn squash_python_whitespace(text: &str) -> String {
    text.split(is_python_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// All questions of `ds` in file order. For training (`is_training`), each needs an answer:
/// the first is used, and questions whose answer cannot be placed on the context's words are
/// skipped, each counted in `warnings` under its reason (run_squad raises on a question with
/// several answers and crashes on an answer outside its context; we count instead).
pub fn read_examples(
    ds: &SquadDataset,
    is_training: bool,
    warnings: &mut Warnings,
) -> Vec<SquadExample> {
    let mut examples = Vec::new();
    for (ai, article) in ds.articles.iter().enumerate() {
        for paragraph in &article.paragraphs {
            let doc = Arc::new(Document::from_context(&paragraph.context));
            for qa in &paragraph.qas {
                let answer = if is_training {
                    let Some(words) = training_answer(ds, ai, qa, &doc, warnings) else {
                        continue;
                    };
                    Some(words)
                } else {
                    None
                };
                examples.push(SquadExample {
                    qas_id: qa.id.clone(),
                    question_text: qa.question.clone(),
                    doc: Arc::clone(&doc),
                    answer,
                });
            }
        }
    }
    examples
}

/// The answer's words, or `None` (counted) when the question cannot be trained on. Warnings
/// already counted while reading the file (empty answer, answer outside its context, no
/// answers, unanswerable) are not counted twice.
fn training_answer(
    ds: &SquadDataset,
    article_index: usize,
    qa: &super::json::Question,
    doc: &Document,
    warnings: &mut Warnings,
) -> Option<AnswerWords> {
    let answer = qa.answers.first().filter(|_| !qa.is_impossible)?;
    if qa.answers.len() > 1 {
        warnings.warn(
            WarningKind::FirstAnswerUsed,
            format!(
                "{}: question {:?}: {} answers; training uses the first",
                ds.path.display(),
                qa.id,
                qa.answers.len()
            ),
        );
    }
    let len = answer.text.chars().count();
    if len == 0 {
        return None;
    }
    let last_char = answer.answer_start + len - 1;
    let (&start, &end) = (
        doc.char_to_word.get(answer.answer_start)?,
        doc.char_to_word.get(last_char)?,
    );
    let cleaned = squash_python_whitespace(&answer.text);
    let found = start >= 0 && {
        let actual = doc.words[start as usize..=end as usize].join(" ");
        actual.contains(&cleaned)
    };
    if !found {
        let title = &ds.articles[article_index].title;
        warnings.warn(
            WarningKind::AnswerNotFound,
            format!(
                "{}: article {title:?}, question {:?}: could not find answer {cleaned:?} in its \
                 context words; skipped in training",
                ds.path.display(),
                qa.id
            ),
        );
        return None;
    }
    Some(AnswerWords {
        text: answer.text.clone(),
        start_word: start as usize,
        end_word: end as usize,
    })
}

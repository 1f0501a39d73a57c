//! Reading SQuAD v1.1 JSON (`{"version": "1.1", "data": [{"title", "paragraphs": [{"context",
//! "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}`).
//!
//! The file is parsed with serde_json into a `Value` and then walked by hand, so that a missing
//! field or a wrong type is reported with its place (article, paragraph, question id) rather
//! than only a byte position. Problems that do not make the file unreadable (an answer whose
//! `answer_start` does not point at its text, an empty context, ...) are counted [`Warnings`].
use super::error::{Result, SquadError};
use super::examples::is_squad_whitespace;
use super::warnings::{WarningKind, Warnings};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The version the official evaluation expects.
pub const SQUAD_VERSION: &str = "1.1";

#[derive(Clone, Debug, PartialEq)]
pub struct SquadDataset {
    /// Where it was read from (named in errors and warnings).
    pub path: PathBuf,
    pub version: Option<String>,
    pub articles: Vec<Article>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Article {
    pub title: String,
    pub paragraphs: Vec<Paragraph>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Paragraph {
    pub context: String,
    pub qas: Vec<Question>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Question {
    pub id: String,
    pub question: String,
    pub answers: Vec<Answer>,
    /// SQuAD 2.0's flag; absent (false) in v1.1.
    pub is_impossible: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub text: String,
    /// Offset of the answer's first character in the context, in Unicode scalar values (Python
    /// string indices), not bytes.
    pub answer_start: usize,
}

impl SquadDataset {
    /// Reads and checks a SQuAD file; see the module docs for what is an error and what a
    /// counted warning.
    pub fn read(path: &Path, warnings: &mut Warnings) -> Result<SquadDataset> {
        let text = std::fs::read_to_string(path).map_err(|source| SquadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        SquadDataset::from_json_str(&text, path, warnings)
    }

    /// Parses SQuAD JSON text; `path` only names the source in messages.
    pub fn from_json_str(text: &str, path: &Path, warnings: &mut Warnings) -> Result<SquadDataset> {
        let root: Value = serde_json::from_str(text).map_err(|e| SquadError::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        Walker { path, warnings }.dataset(&root)
    }

    pub fn num_questions(&self) -> usize {
        self.questions().count()
    }

    /// Every question in file order, with its article and paragraph.
    pub fn questions(&self) -> impl Iterator<Item = (&Article, &Paragraph, &Question)> + '_ {
        self.articles.iter().flat_map(|a| {
            a.paragraphs
                .iter()
                .flat_map(move |p| p.qas.iter().map(move |q| (a, p, q)))
        })
    }
}

/// Where a value sits in the file, for messages.
fn article_loc(i: usize, title: &str) -> String {
    if title.is_empty() {
        format!("data[{i}]")
    } else {
        format!("data[{i}] ({title:?})")
    }
}

struct Walker<'a> {
    path: &'a Path,
    warnings: &'a mut Warnings,
}

impl Walker<'_> {
    fn schema(&self, location: &str, message: impl Into<String>) -> SquadError {
        SquadError::Schema {
            path: self.path.to_path_buf(),
            location: location.to_string(),
            message: message.into(),
        }
    }

    fn object<'v>(&self, v: &'v Value, location: &str) -> Result<&'v Map<String, Value>> {
        v.as_object()
            .ok_or_else(|| self.schema(location, format!("expected an object, found {}", kind(v))))
    }

    fn field<'v>(
        &self,
        obj: &'v Map<String, Value>,
        name: &str,
        location: &str,
    ) -> Result<&'v Value> {
        obj.get(name)
            .ok_or_else(|| self.schema(location, format!("missing field {name:?}")))
    }

    fn string(&self, obj: &Map<String, Value>, name: &str, location: &str) -> Result<String> {
        match self.field(obj, name, location)? {
            Value::String(s) => Ok(s.clone()),
            v => Err(self.schema(
                location,
                format!("{name:?} must be a string, found {}", kind(v)),
            )),
        }
    }

    fn array<'v>(
        &self,
        obj: &'v Map<String, Value>,
        name: &str,
        location: &str,
    ) -> Result<&'v [Value]> {
        match self.field(obj, name, location)? {
            Value::Array(a) => Ok(a),
            v => Err(self.schema(
                location,
                format!("{name:?} must be a list, found {}", kind(v)),
            )),
        }
    }

    fn dataset(mut self, root: &Value) -> Result<SquadDataset> {
        let top = self.object(root, "top level")?;
        let version = match top.get("version") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => Some(v.to_string()),
        };
        if version.as_deref() != Some(SQUAD_VERSION) {
            let found = version.as_deref().unwrap_or("none");
            self.warnings.warn(
                WarningKind::Version,
                format!(
                    "{}: version {found}, expected {SQUAD_VERSION}; read as SQuAD v1.1",
                    self.path.display()
                ),
            );
        }
        let data = self.array(top, "data", "top level")?;
        let mut seen_ids: HashMap<String, String> = HashMap::new();
        let mut articles = Vec::with_capacity(data.len());
        for (i, a) in data.iter().enumerate() {
            articles.push(self.article(i, a, &mut seen_ids)?);
        }
        Ok(SquadDataset {
            path: self.path.to_path_buf(),
            version,
            articles,
        })
    }

    fn article(
        &mut self,
        i: usize,
        a: &Value,
        seen_ids: &mut HashMap<String, String>,
    ) -> Result<Article> {
        let obj = self.object(a, &format!("data[{i}]"))?;
        let title = match obj.get("title") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let aloc = article_loc(i, &title);
        let paragraphs = self.array(obj, "paragraphs", &aloc)?;
        let mut out = Vec::with_capacity(paragraphs.len());
        for (j, p) in paragraphs.iter().enumerate() {
            let ploc = format!("{aloc}, paragraphs[{j}]");
            out.push(self.paragraph(&ploc, p, seen_ids)?);
        }
        Ok(Article {
            title,
            paragraphs: out,
        })
    }

    fn paragraph(
        &mut self,
        ploc: &str,
        p: &Value,
        seen_ids: &mut HashMap<String, String>,
    ) -> Result<Paragraph> {
        let obj = self.object(p, ploc)?;
        let context = self.string(obj, "context", ploc)?;
        let qas_json = self.array(obj, "qas", ploc)?;
        let context_chars: Vec<char> = context.chars().collect();
        let mut qas = Vec::with_capacity(qas_json.len());
        for (k, q) in qas_json.iter().enumerate() {
            let qloc = format!("{ploc}, qas[{k}]");
            let question = self.question(&qloc, q, &context_chars)?;
            let qloc = format!("{qloc} (id {:?})", question.id);
            if let Some(first) = seen_ids.insert(question.id.clone(), qloc.clone()) {
                return Err(SquadError::DuplicateId {
                    path: self.path.to_path_buf(),
                    id: question.id,
                    first,
                    second: qloc,
                });
            }
            qas.push(question);
        }
        if context.chars().all(is_squad_whitespace) {
            self.warnings.warn(
                WarningKind::EmptyContext,
                format!(
                    "{}: {ploc}: the context is empty; its {} question(s) get no features \
                     (skipped in training, predicted \"empty\")",
                    self.path.display(),
                    qas.len()
                ),
            );
        }
        Ok(Paragraph { context, qas })
    }

    fn question(&mut self, qloc: &str, q: &Value, context: &[char]) -> Result<Question> {
        let obj = self.object(q, qloc)?;
        let id = match self.field(obj, "id", qloc)? {
            Value::String(s) => s.clone(),
            // Some converted datasets use numeric ids; the evaluator compares them as strings.
            Value::Number(n) => n.to_string(),
            v => {
                return Err(self.schema(qloc, format!("\"id\" must be a string, found {}", kind(v))))
            }
        };
        let qloc = format!("{qloc} (id {id:?})");
        let question = self.string(obj, "question", &qloc)?;
        if question.trim().is_empty() {
            self.warnings.warn(
                WarningKind::EmptyQuestion,
                format!(
                    "{}: {qloc}: the question text is empty",
                    self.path.display()
                ),
            );
        }
        let is_impossible = match obj.get("is_impossible") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(self.schema(
                    &qloc,
                    format!("\"is_impossible\" must be true or false, found {}", kind(v)),
                ))
            }
        };
        let answers_json = self.array(obj, "answers", &qloc)?;
        let mut answers = Vec::with_capacity(answers_json.len());
        for (m, a) in answers_json.iter().enumerate() {
            let aloc = format!("{qloc}, answers[{m}]");
            answers.push(self.answer(&aloc, a, context)?);
        }
        if is_impossible {
            self.warnings.warn(
                WarningKind::Unanswerable,
                format!(
                    "{}: {qloc}: is_impossible (SQuAD 2.0); skipped in training",
                    self.path.display()
                ),
            );
        } else if answers.is_empty() {
            self.warnings.warn(
                WarningKind::NoAnswers,
                format!(
                    "{}: {qloc}: no answers; skipped in training",
                    self.path.display()
                ),
            );
        }
        Ok(Question {
            id,
            question,
            answers,
            is_impossible,
        })
    }

    fn answer(&mut self, aloc: &str, a: &Value, context: &[char]) -> Result<Answer> {
        let obj = self.object(a, aloc)?;
        let text = self.string(obj, "text", aloc)?;
        let start_value = self.field(obj, "answer_start", aloc)?;
        let answer_start = start_value.as_u64().ok_or_else(|| {
            self.schema(
                aloc,
                format!(
                    "\"answer_start\" must be a non-negative integer (a character offset into the \
                     context), found {start_value}"
                ),
            )
        })? as usize;
        let len = text.chars().count();
        if len == 0 {
            self.warnings.warn(
                WarningKind::EmptyAnswerText,
                format!("{}: {aloc}: the answer text is empty", self.path.display()),
            );
        } else if answer_start + len > context.len() {
            self.warnings.warn(
                WarningKind::AnswerOutsideContext,
                format!(
                    "{}: {aloc}: answer {text:?} at answer_start {answer_start} runs past the end \
                     of its context ({} characters)",
                    self.path.display(),
                    context.len()
                ),
            );
        } else if !context[answer_start..answer_start + len]
            .iter()
            .copied()
            .eq(text.chars())
        {
            let found: String = context[answer_start..answer_start + len].iter().collect();
            self.warnings.warn(
                WarningKind::AnswerStartMismatch,
                format!(
                    "{}: {aloc}: answer_start {answer_start} points at {found:?}, not at the \
                     answer text {text:?}",
                    self.path.display()
                ),
            );
        }
        Ok(Answer { text, answer_start })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

//! Errors of the SQuAD pipeline. Each names the file and, where it has one, the article, paragraph
//! and question id, and says what to do.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SquadError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: not valid JSON at line {line}, column {column}: {message}; a SQuAD file is one \
         JSON object {{\"version\": \"1.1\", \"data\": [...]}}"
    )]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// The JSON is well formed but a field is missing or has the wrong type.
    #[error("{path}: {location}: {message}")]
    Schema {
        path: PathBuf,
        /// `data[i] ("title"), paragraphs[j], qas[k] (id ...)`: where in the file.
        location: String,
        message: String,
    },
    #[error(
        "{path}: question id {id:?} appears twice ({first} and {second}); ids must be unique, \
         since predictions are keyed by id"
    )]
    DuplicateId {
        path: PathBuf,
        id: String,
        first: String,
        second: String,
    },
    #[error("invalid SQuAD setting: {0}")]
    Config(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Post-processing was given results that do not fit the features.
    #[error("model results: {0}")]
    Results(String),
    #[error("{path}: {message}")]
    Predictions { path: PathBuf, message: String },
    #[error("{path}: question {id:?} has no answers; the official evaluation cannot score it")]
    NoGroundTruth { path: PathBuf, id: String },
    #[error("{path}: the dataset has no questions, so EM and F1 are undefined")]
    NoQuestions { path: PathBuf },
}

pub type Result<T> = std::result::Result<T, SquadError>;

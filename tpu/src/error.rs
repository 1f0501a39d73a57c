//! Errors of the PJRT runtime. Every failure of a plugin, of the user's input or of the machine
//! becomes one of these; nothing in this crate aborts the process.
use hlo::ElementType;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PJRT call returned an error object.
    #[error("{call} failed: {message} (PJRT error code {code}: {})", code_name(*code))]
    Pjrt {
        code: i32,
        message: String,
        call: &'static str,
    },

    #[error("no PJRT {kind} plugin found ({searched}); install it with `{hint}`")]
    PluginNotFound {
        kind: String,
        searched: String,
        hint: String,
    },

    #[error("cannot load PJRT plugin {path}: {reason}")]
    Load { path: PathBuf, reason: String },

    #[error("the plugin's PJRT C API {version} has no `{entry}` (needs a newer plugin)")]
    ApiTooOld {
        entry: &'static str,
        version: String,
    },

    #[error("plugin C API major version {major} is not supported (this build supports major {supported})")]
    ApiMajor { major: i32, supported: i32 },

    #[error("installing the {kind} plugin failed: {reason}")]
    Install { kind: String, reason: String },

    #[error("refusing to create a libtpu client: {0}")]
    TpuSafety(String),

    #[error("argument count mismatch: the executable takes {expected} arguments, got {got}")]
    ArgCount { expected: usize, got: usize },

    #[error("argument {index}: element type mismatch: expected {expected}, got {got}")]
    ArgDtype {
        index: usize,
        expected: ElementType,
        got: ElementType,
    },

    #[error("argument {index}: dimensions mismatch: expected {expected:?}, got {got:?}")]
    ArgDims {
        index: usize,
        expected: Vec<i64>,
        got: Vec<i64>,
    },

    #[error(
        "device list mismatch: the executable runs on {expected} devices, got {got} argument lists"
    )]
    DeviceCount { expected: usize, got: usize },

    #[error("argument {index} on device list {device}: the buffer was deleted or donated by an earlier execute")]
    Deleted { device: usize, index: usize },

    #[error("element type mismatch: the buffer holds {buffer}, asked for {asked}")]
    Dtype {
        buffer: ElementType,
        asked: ElementType,
    },

    #[error("host data has {got} bytes but the shape {dims:?} of {dtype} needs {expected}")]
    HostSize {
        dtype: ElementType,
        dims: Vec<i64>,
        expected: usize,
        got: usize,
    },

    #[error("invalid dimensions {0:?}")]
    BadDims(Vec<i64>),

    #[error("the plugin returned an element type tpu-run does not handle (PJRT_Buffer_Type {0})")]
    UnsupportedType(i32),

    #[error("invalid option: {0}")]
    Option(String),

    #[error("lowering the module to HloModuleProto: {0}")]
    Lower(#[from] hlo::HloError),

    #[error("the plugin returned something unexpected: {0}")]
    Plugin(String),

    #[error("I/O error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The PJRT error code, where this is a PJRT error.
    pub fn pjrt_code(&self) -> Option<i32> {
        match self {
            Error::Pjrt { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Name of an absl status code as PJRT reports it.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "unknown code",
    }
}

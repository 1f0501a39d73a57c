//! Errors of the coordinator, as the caller of a blocking call sees them.
use tonic::{Code, Status};
use tpu::{KvError, KvErrorKind};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// The coordinator could not be reached or stopped answering.
    #[error("cannot reach the coordinator at {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    /// A wait ran out: for the other processes to register, for a key, at a barrier.
    #[error("{0}")]
    Timeout(String),
    /// Another process failed or left early: the run cannot go on. The message names it.
    #[error("the run failed: {0}")]
    RunFailed(String),
    /// The coordinator refused the request (wrong process id or count, a key written twice with
    /// different values, a process that sees other input files, ...).
    #[error("{0}")]
    Rejected(String),
    /// The coordinator refused this process's credentials: a missing or wrong token, or a
    /// session that is not this process's.
    #[error("the coordinator at {addr} refused this process: {detail}")]
    Denied { addr: String, detail: String },
    /// Process 0 could not write a coordinated checkpoint.
    #[error("{0}")]
    Checkpoint(String),
    /// The server could not start.
    #[error("starting the coordinator on {addr}: {detail}")]
    Serve { addr: String, detail: String },
}

impl CoordError {
    /// The error a client reports for a gRPC status from the coordinator at `addr`.
    pub(crate) fn from_status(status: Status, addr: &str) -> CoordError {
        let message = status.message().to_string();
        match status.code() {
            Code::DeadlineExceeded => CoordError::Timeout(message),
            Code::Aborted => CoordError::RunFailed(message),
            Code::InvalidArgument
            | Code::AlreadyExists
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::ResourceExhausted => CoordError::Rejected(message),
            Code::Unauthenticated | Code::PermissionDenied => CoordError::Denied {
                addr: addr.to_string(),
                detail: message,
            },
            _ => {
                // Transport failures say only "transport error"; the cause is in the sources.
                let mut detail = if message.is_empty() {
                    format!("{:?}", status.code())
                } else {
                    message
                };
                let mut source = std::error::Error::source(&status);
                while let Some(s) = source {
                    let text = s.to_string();
                    if !detail.contains(&text) {
                        detail = format!("{detail}: {text}");
                    }
                    source = s.source();
                }
                CoordError::Unreachable {
                    addr: addr.to_string(),
                    detail,
                }
            }
        }
    }
}

impl From<CoordError> for KvError {
    fn from(e: CoordError) -> KvError {
        let kind = match &e {
            CoordError::Timeout(_) => KvErrorKind::DeadlineExceeded,
            CoordError::RunFailed(_) => KvErrorKind::Aborted,
            CoordError::Unreachable { .. } | CoordError::Serve { .. } => KvErrorKind::Unavailable,
            CoordError::Rejected(m) if m.contains("already set") => KvErrorKind::AlreadyExists,
            CoordError::Rejected(_) => KvErrorKind::InvalidArgument,
            CoordError::Checkpoint(_) | CoordError::Denied { .. } => KvErrorKind::Internal,
        };
        KvError::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_errors_and_kv_codes() {
        let addr = "10.0.0.1:8476";
        let e = CoordError::from_status(Status::deadline_exceeded("key k not set"), addr);
        assert_eq!(e, CoordError::Timeout("key k not set".into()));
        assert_eq!(KvError::from(e).kind, KvErrorKind::DeadlineExceeded);
        let e = CoordError::from_status(Status::aborted("process 2 (host b) crashed"), addr);
        assert_eq!(e.to_string(), "the run failed: process 2 (host b) crashed");
        assert_eq!(KvError::from(e).kind, KvErrorKind::Aborted);
        let e = CoordError::from_status(Status::unavailable("connection refused"), addr);
        assert!(e.to_string().contains(addr), "{e}");
        assert_eq!(KvError::from(e).kind, KvErrorKind::Unavailable);
        let e = CoordError::from_status(Status::already_exists("key k is already set"), addr);
        assert_eq!(KvError::from(e).kind, KvErrorKind::AlreadyExists);
        let e = CoordError::from_status(Status::invalid_argument("process 9 of 2"), addr);
        assert_eq!(KvError::from(e).kind, KvErrorKind::InvalidArgument);
        let e = CoordError::from_status(Status::unauthenticated("no token"), addr);
        assert!(matches!(e, CoordError::Denied { .. }), "{e:?}");
        assert!(
            e.to_string().contains(addr) && e.to_string().contains("no token"),
            "{e}"
        );
        let e = CoordError::from_status(Status::resource_exhausted("limit on keys"), addr);
        assert_eq!(KvError::from(e).kind, KvErrorKind::InvalidArgument);
    }
}

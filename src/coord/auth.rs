//! The run secret and the per-registration session ids.
//!
//! Every RPC carries the run's token in gRPC metadata (`authorization: Bearer <token>`); the
//! server refuses a missing or wrong one with UNAUTHENTICATED before it decodes the request.
//! Register answers with a random session id; every later call carries it
//! (`x-tpu-run-session: <id>`) and it must belong to the process id the request names, so a
//! holder of the token cannot act as another process (PERMISSION_DENIED).
use super::error::CoordError;
use rand::RngCore;
use std::path::Path;
use subtle::ConstantTimeEq;

/// The environment variable a token may come from (when no token file is given).
pub const TOKEN_ENV: &str = "TPU_RUN_COORDINATOR_TOKEN";
/// The metadata key of the token (`Bearer <token>`), as HTTP's.
pub const AUTHORIZATION: &str = "authorization";
/// The metadata key of the session id Register returned.
pub const SESSION: &str = "x-tpu-run-session";

/// Bytes of randomness in a generated token (hex: twice as many characters).
const TOKEN_BYTES: usize = 32;
/// Bytes of randomness in a session id.
const SESSION_BYTES: usize = 16;

/// The run's shared secret. `Debug` never shows it, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// 32 random bytes from the operating system's generator, as hex.
    pub fn generate() -> Result<Token, CoordError> {
        random_hex(TOKEN_BYTES).map(Token)
    }

    /// A token given as text (surrounding whitespace, e.g. a file's newline, is dropped);
    /// `origin` names where it came from in errors. It must be printable ASCII without spaces,
    /// as an HTTP header value must.
    pub fn new(text: &str, origin: &str) -> Result<Token, CoordError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(CoordError::Rejected(format!(
                "the coordinator token from {origin} is empty"
            )));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CoordError::Rejected(format!(
                "the coordinator token from {origin} has characters other than printable ASCII \
                 without spaces (e.g. use the hex token process 0 generates)"
            )));
        }
        Ok(Token(t.to_string()))
    }

    /// The token in `path`; warns when others than its owner may read the file.
    pub fn from_file(path: &Path) -> Result<Token, CoordError> {
        let origin = format!("--coordinator-token-file {}", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| CoordError::Rejected(format!("reading {origin}: {e}")))?;
        warn_if_readable_by_others(path);
        Token::new(&text, &origin)
    }

    /// The token's text: for the one place it is shown (process 0 prints a generated token
    /// once) and for the metadata.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that does not depend on where they differ
    /// (subtle's constant-time comparison), so the token cannot be guessed byte by byte from
    /// response times. Only the length may leak; generated tokens all have the same.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

/// `n` random bytes from the OS generator, as lowercase hex.
pub(crate) fn random_hex(n: usize) -> Result<String, CoordError> {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| {
        CoordError::Rejected(format!(
            "the operating system's random generator failed: {e}"
        ))
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A fresh session id.
pub(crate) fn new_session_id() -> Result<String, CoordError> {
    random_hex(SESSION_BYTES)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "the coordinator token file {} can be read by other users (mode {:o}); \
                 anyone who reads it can join the run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Writes a generated token to `path` for the other processes: a new file (an existing one is
/// never overwritten), readable by its owner only.
pub fn write_token_file(path: &Path, token: &Token) -> Result<(), CoordError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let err = |e: std::io::Error| {
        CoordError::Rejected(format!(
            "writing the coordinator token to --coordinator-token-out {}: {e}",
            path.display()
        ))
    };
    let mut f = options.open(path).map_err(err)?;
    f.write_all(format!("{}\n", token.expose()).as_bytes())
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_compared_whole_and_never_printed() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(a.matches(a.expose().as_bytes()));
        assert!(!a.matches(b.expose().as_bytes()));
        assert!(!a.matches(&a.expose().as_bytes()[..63]));
        assert!(!a.matches(b""));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(Token::new(" s3cret\n", "t").unwrap().expose(), "s3cret");
        let e = Token::new("\n", "the environment").unwrap_err();
        assert!(
            e.to_string().contains("from the environment is empty"),
            "{e}"
        );
        assert!(Token::new("two words", "x").is_err());
    }

    #[test]
    fn token_files_are_read_and_written_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let t = Token::generate().unwrap();
        write_token_file(&path, &t).unwrap();
        assert_eq!(Token::from_file(&path).unwrap(), t);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Never overwritten.
        let e = write_token_file(&path, &t).unwrap_err();
        assert!(e.to_string().contains("--coordinator-token-out"), "{e}");
        let e = Token::from_file(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("--coordinator-token-file"), "{e}");
    }
}

//! Glob patterns over a bucket's listing (`s3://bucket/shards/*.tfrecord`): the objects under
//! the pattern's literal leading directory are listed once and matched with the same `glob`
//! rules local patterns follow (`*` and `?` stay within one `/`-separated segment, `**` spans
//! several, `[...]` classes).
use super::objects::{list_all, size};
use super::url::ObjectUrl;
use std::io;
use std::path::PathBuf;

fn is_meta(c: char) -> bool {
    matches!(c, '*' | '?' | '[')
}

/// The objects `pattern` (an object URL, possibly with glob characters) names, sorted; empty
/// when none matches.
pub fn expand(pattern: &ObjectUrl) -> io::Result<Vec<PathBuf>> {
    let as_path = |key: &str| PathBuf::from(pattern.join_root(key).to_string());
    let Some(first_meta) = pattern.key.find(is_meta) else {
        // No glob characters: the one object, if it exists.
        return match size(pattern) {
            Ok(_) => Ok(vec![as_path(&pattern.key)]),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(e),
        };
    };
    let glob = glob::Pattern::new(&pattern.key).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{pattern} is not a valid glob pattern: {e}"),
        )
    })?;
    let dir = match pattern.key[..first_meta].rfind('/') {
        Some(slash) => &pattern.key[..slash],
        None => "",
    };
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    Ok(list_all(&pattern.join_root(dir))?
        .into_iter()
        .filter(|(key, _)| glob.matches_with(key, options))
        .map(|(key, _)| as_path(&key))
        .collect())
}

impl ObjectUrl {
    /// The URL of `key` in this URL's bucket.
    fn join_root(&self, key: &str) -> ObjectUrl {
        ObjectUrl {
            key: key.trim_matches('/').to_string(),
            ..self.clone()
        }
    }
}

//! `gs://BUCKET/KEY` and `s3://BUCKET/KEY`: the object URLs tpu-run accepts wherever a path is
//! taken for data, checkpoints or outputs. Any other `scheme://` is refused by name, so a typo
//! (`gcs://`, `s3a://`, `http://`) is an error, not a local directory of that name.
use std::fmt;

/// The object stores tpu-run speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Google Cloud Storage.
    Gcs,
    /// Amazon S3 and S3-compatible servers (`AWS_ENDPOINT_URL`).
    S3,
}

impl Scheme {
    pub fn prefix(self) -> &'static str {
        match self {
            Scheme::Gcs => "gs://",
            Scheme::S3 => "s3://",
        }
    }
}

/// A bucket and a key (or key prefix: a "directory"); the key has no leading or trailing `/`
/// and may be empty (the bucket's root).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    pub scheme: Scheme,
    pub bucket: String,
    pub key: String,
}

/// Why a string that looks like a URL is not one tpu-run can use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "{url}: the URL scheme '{scheme}' is not supported; use a local path, \
         gs://BUCKET/PATH (Google Cloud Storage) or s3://BUCKET/PATH (S3 and S3-compatible \
         servers)"
    )]
    Scheme { url: String, scheme: String },
    #[error("{url}: no bucket name after '{prefix}' (write {prefix}BUCKET/PATH)")]
    NoBucket { url: String, prefix: &'static str },
    #[error(
        "{url}: '{bucket}' is not a bucket name (lower-case letters, digits, '-', '_' and '.')"
    )]
    Bucket { url: String, bucket: String },
    #[error("{url}: the object path has an empty, '.' or '..' segment; write it without them")]
    Segment { url: String },
}

/// `scheme://rest` when `s` starts with a URL scheme (RFC 3986: a letter, then letters, digits,
/// `+`, `-`, `.`).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let ok = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then_some((scheme, rest))
}

impl ObjectUrl {
    /// `Ok(None)` for a plain path; the URL for `gs://` and `s3://`; an error for any other
    /// scheme or a malformed bucket or key.
    pub fn parse(s: &str) -> Result<Option<ObjectUrl>, UrlError> {
        let Some((scheme, rest)) = split_scheme(s) else {
            return Ok(None);
        };
        let scheme = match scheme {
            "gs" => Scheme::Gcs,
            "s3" => Scheme::S3,
            other => {
                return Err(UrlError::Scheme {
                    url: s.into(),
                    scheme: other.into(),
                })
            }
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(UrlError::NoBucket {
                url: s.into(),
                prefix: scheme.prefix(),
            });
        }
        let bucket_ok = bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !bucket_ok {
            return Err(UrlError::Bucket {
                url: s.into(),
                bucket: bucket.into(),
            });
        }
        // One trailing '/' names the same prefix ("a directory"); any other empty segment is
        // a key object stores keep apart from the one without it, and a likely typo.
        let key = key.strip_suffix('/').unwrap_or(key);
        if !key.is_empty() && key.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
            return Err(UrlError::Segment { url: s.into() });
        }
        Ok(Some(ObjectUrl {
            scheme,
            bucket: bucket.into(),
            key: key.into(),
        }))
    }

    /// The URL of `name` under this key (`name` may hold `/`).
    pub fn join(&self, name: &str) -> ObjectUrl {
        let name = name.trim_matches('/');
        let key = match (self.key.is_empty(), name.is_empty()) {
            (_, true) => self.key.clone(),
            (true, false) => name.to_string(),
            (false, false) => format!("{}/{name}", self.key),
        };
        ObjectUrl {
            key,
            ..self.clone()
        }
    }

    /// The key as a "directory" prefix: empty for the bucket root, else `key/`.
    pub fn dir_prefix(&self) -> String {
        if self.key.is_empty() {
            String::new()
        } else {
            format!("{}/", self.key)
        }
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.scheme.prefix(), self.bucket)?;
        if !self.key.is_empty() {
            write!(f, "/{}", self.key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ObjectUrl {
        ObjectUrl::parse(s).unwrap().unwrap()
    }

    #[test]
    fn gs_and_s3_urls_parse_into_bucket_and_key() {
        let u = url("gs://my-bucket/bert/shards/part-0.tfrecord");
        assert_eq!(
            (u.scheme, u.bucket.as_str(), u.key.as_str()),
            (Scheme::Gcs, "my-bucket", "bert/shards/part-0.tfrecord")
        );
        let u = url("s3://data.example_1/run/");
        assert_eq!(
            (u.scheme, u.bucket.as_str(), u.key.as_str()),
            (Scheme::S3, "data.example_1", "run")
        );
        assert_eq!(u.to_string(), "s3://data.example_1/run");
        assert_eq!(
            u.join("step-00000003").to_string(),
            "s3://data.example_1/run/step-00000003"
        );
        assert_eq!(u.dir_prefix(), "run/");
        let root = url("s3://b");
        assert_eq!((root.key.as_str(), root.dir_prefix()), ("", String::new()));
        assert_eq!(root.join("x/y").to_string(), "s3://b/x/y");
        assert_eq!(url("gs://b/").to_string(), "gs://b");
    }

    #[test]
    fn plain_paths_are_not_urls() {
        for p in [
            "runs/pretrain",
            "/data/shards/*.tfrecord",
            "gs:/one-slash",
            "./s3://x",
            "",
        ] {
            assert_eq!(ObjectUrl::parse(p).unwrap(), None, "{p}");
        }
    }

    #[test]
    fn other_schemes_and_bad_buckets_or_keys_are_refused_by_name() {
        for (s, scheme) in [
            ("http://host/x", "http"),
            ("gcs://bucket/x", "gcs"),
            ("s3a://bucket/x", "s3a"),
            ("file:///tmp/x", "file"),
            ("az://c/x", "az"),
        ] {
            let e = ObjectUrl::parse(s).unwrap_err();
            assert_eq!(
                e,
                UrlError::Scheme {
                    url: s.into(),
                    scheme: scheme.into()
                }
            );
            let text = e.to_string();
            assert!(
                text.contains(&format!("'{scheme}' is not supported"))
                    && text.contains("gs://BUCKET/PATH")
                    && text.contains("s3://BUCKET/PATH"),
                "{text}"
            );
        }
        let e = ObjectUrl::parse("gs:///x").unwrap_err().to_string();
        assert!(e.contains("no bucket name after 'gs://'"), "{e}");
        let e = ObjectUrl::parse("s3://My_Bucket/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'My_Bucket' is not a bucket name"), "{e}");
        for s in ["s3://b/a//c", "gs://b/a/../c", "gs://b/./c", "s3://b//k"] {
            let e = ObjectUrl::parse(s).unwrap_err();
            assert_eq!(e, UrlError::Segment { url: s.into() }, "{s}");
        }
    }
}

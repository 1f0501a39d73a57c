//! The GCE metadata server's instance attributes, read the way Cloud TPU tooling reads them:
//! `GET http://metadata.google.internal/computeMetadata/v1/instance/attributes/NAME` with the
//! header `Metadata-Flavor: Google`, over plain HTTP/1.1 through hyper's client (already in
//! the tree through tonic) on a one-thread tokio runtime made for the call, so callers stay
//! synchronous.
//!
//! Bounded: each attempt has [`ATTEMPT_TIMEOUT`], at most [`ATTEMPTS`] attempts
//! [`RETRY_PAUSE`] apart (only on connection failures, time-outs and 5xx answers), answers of at
//! most [`MAX_BODY`] bytes. The server's address can be replaced, for tests, through
//! [`METADATA_URL_ENV`], and only by a loopback address: anything else is refused, so that no
//! setting can send this request, or trust its answer, off the machine.
use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use std::net::IpAddr;
use std::time::Duration;

/// Replaces the metadata server's base URL (`http://127.0.0.1:PORT` or `http://[::1]:PORT`).
pub const METADATA_URL_ENV: &str = "TPU_RUN_METADATA_URL";

/// Where instance attributes live under the server's base URL.
pub const ATTRIBUTES_PATH: &str = "/computeMetadata/v1/instance/attributes/";

pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
pub const ATTEMPTS: u32 = 3;
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);
pub const MAX_BODY: usize = 1 << 20;

/// A metadata server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// What to connect to: a host name (resolved when connecting) or an IP address.
    host: String,
    port: u16,
    /// The `Host` header and the base URL's authority, for messages.
    authority: String,
}

/// Why an attribute could not be read.
#[derive(Debug)]
pub enum AttributeError {
    /// The server answered 404: the attribute is not set on this instance.
    Missing,
    /// No usable answer (unreachable, time-out, another status, a body too big or not UTF-8).
    Failed(anyhow::Error),
}

impl Metadata {
    /// The GCE metadata server.
    pub fn google() -> Self {
        Self {
            host: "metadata.google.internal".into(),
            port: 80,
            authority: "metadata.google.internal".into(),
        }
    }

    /// The server at `url` (`http://IP[:PORT]`, optionally ending in '/'), where IP must be a
    /// loopback address: a stand-in for tests, never a way to ask another machine.
    pub fn loopback_override(url: &str) -> Result<Self> {
        let refuse = |why: &str| {
            anyhow!(
                "{METADATA_URL_ENV} is {url:?}: {why}. It replaces the metadata server for tests \
                 and may only name a loopback address, e.g. http://127.0.0.1:8080; unset it to \
                 use the TPU VM's metadata server"
            )
        };
        let authority = url
            .strip_prefix("http://")
            .ok_or_else(|| refuse("expected http://IP:PORT"))?;
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(refuse(
                "only http://IP:PORT is accepted (no path, query or user)",
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| refuse("the port is not a number from 1 to 65535"))?,
            ),
            _ => (authority, 80),
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = bare
            .parse()
            .map_err(|_| refuse("the host is not an IP address (a name could resolve anywhere)"))?;
        if !ip.is_loopback() {
            return Err(refuse("the address is not a loopback address"));
        }
        if port == 0 {
            return Err(refuse("the port is 0"));
        }
        Ok(Self {
            host: bare.to_string(),
            port,
            authority: authority.to_string(),
        })
    }

    /// The server `METADATA_URL_ENV`'s value names (checked as [`Metadata::loopback_override`]),
    /// else the GCE metadata server.
    pub fn from_override(value: Option<&str>) -> Result<Self> {
        match value {
            Some(url) => Self::loopback_override(url),
            None => Ok(Self::google()),
        }
    }

    /// The URL of attribute `name`, for messages.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}{ATTRIBUTES_PATH}{name}", self.authority)
    }

    /// Attribute `name`'s value.
    pub fn attribute(&self, name: &str) -> Result<String, AttributeError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AttributeError::Failed(anyhow!("starting a runtime: {e}")))?;
        let mut last = anyhow!("no attempt made");
        for attempt in 1..=ATTEMPTS {
            let answer = runtime.block_on(async {
                tokio::time::timeout(ATTEMPT_TIMEOUT, self.get(name))
                    .await
                    .unwrap_or_else(|_| {
                        Err(anyhow!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()))
                    })
            });
            match answer {
                Ok((200, body)) => {
                    return String::from_utf8(body)
                        .map_err(|_| AttributeError::Failed(anyhow!("the value is not UTF-8")))
                }
                Ok((404, _)) => return Err(AttributeError::Missing),
                Ok((status, _)) if status < 500 => {
                    return Err(AttributeError::Failed(anyhow!("HTTP status {status}")))
                }
                Ok((status, _)) => last = anyhow!("HTTP status {status}"),
                Err(e) => last = e,
            }
            if attempt < ATTEMPTS {
                std::thread::sleep(RETRY_PAUSE);
            }
        }
        Err(AttributeError::Failed(
            last.context(format!("{ATTEMPTS} attempts")),
        ))
    }

    /// One GET: the status and the body (up to [`MAX_BODY`] bytes).
    async fn get(&self, name: &str) -> Result<(u16, Vec<u8>)> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("connecting to {}", self.authority))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::get(format!("{ATTRIBUTES_PATH}{name}"))
            .header(hyper::header::HOST, &self.authority)
            .header("Metadata-Flavor", "Google")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer (at most {MAX_BODY} bytes): {e}"))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok((status, body))
    }
}

/// Reads attribute `name` (one of a TPU VM's) or says which one failed and how.
pub fn required(metadata: &Metadata, name: &str) -> Result<String> {
    match metadata.attribute(name) {
        Ok(v) => Ok(v),
        Err(AttributeError::Missing) => bail!(
            "the TPU VM metadata attribute {name} is not set ({} answered 404 Not Found); this \
             does not look like a Cloud TPU VM. Give --num-processes 1 for a one-host run, or \
             --num-processes, --process-id and --coordinator",
            metadata.url(name)
        ),
        Err(AttributeError::Failed(e)) => Err(e.context(format!(
            "reading the TPU VM metadata attribute {name} from {}; if this machine has no \
             metadata server, give --num-processes 1 for a one-host run, or --num-processes, \
             --process-id and --coordinator",
            metadata.url(name)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_overrides_are_accepted() {
        let m = Metadata::loopback_override("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            m.url("agent-worker-number"),
            "http://127.0.0.1:8080/computeMetadata/v1/instance/attributes/agent-worker-number"
        );
        assert!(Metadata::loopback_override("http://127.5.6.7").is_ok());
        let v6 = Metadata::loopback_override("http://[::1]:9").unwrap();
        assert_eq!(v6.host, "::1");
        for (bad, why) in [
            ("http://10.0.0.1:80", "not a loopback"),
            ("http://169.254.169.254", "not a loopback"),
            ("http://metadata.google.internal", "not an IP address"),
            ("http://localhost:80", "not an IP address"),
            ("https://127.0.0.1:80", "expected http://"),
            ("127.0.0.1:80", "expected http://"),
            ("http://127.0.0.1:80/computeMetadata", "no path"),
            ("http://user@127.0.0.1:80", "no path, query or user"),
            ("http://127.0.0.1:http", "port"),
            ("http://127.0.0.1:0", "port is 0"),
        ] {
            let e = Metadata::loopback_override(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with(METADATA_URL_ENV), "{bad}: {e}");
        }
        assert_eq!(Metadata::from_override(None).unwrap(), Metadata::google());
    }
}

//! The TPU VM's descriptions of its slice, parsed: a worker id, and the slice's workers in
//! worker order (`worker-network-endpoints` in the metadata, `TPU_WORKER_HOSTNAMES` in the
//! environment), in the formats JAX reads them (jax/_src/clusters/cloud_tpu_cluster.py).
use anyhow::{bail, Result};

/// At most this many workers (the largest slices have a few thousand hosts).
pub const MAX_WORKERS: usize = 65_536;

/// A worker id: a decimal number (surrounding whitespace ignored). `origin` names where the
/// text came from in errors (`metadata attribute agent-worker-number`, `TPU_WORKER_ID`).
pub fn worker_id(text: &str, origin: &str) -> Result<u32> {
    let t = text.trim();
    match t.parse::<u32>() {
        Ok(id) if t.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => bail!("{origin} is {t:?}; expected a worker number such as 0 or 3"),
    }
}

/// The metadata attribute `worker-network-endpoints`: comma-separated entries, one per worker
/// in worker order, each either `NAME:ID:IP` (fields separated by ':', the IP third) or, in the
/// newer format, a bare host name. Returns each worker's address (the IP, or the name).
pub fn worker_endpoints(text: &str) -> Result<Vec<String>> {
    const ORIGIN: &str = "metadata attribute worker-network-endpoints";
    entries(text, ORIGIN)?
        .into_iter()
        .map(|entry| {
            let fields: Vec<&str> = entry.split(':').collect();
            match fields.as_slice() {
                [host] if valid_host(host) => Ok(host.to_string()),
                [_, _, ip] if ip.parse::<std::net::Ipv4Addr>().is_ok() => Ok(ip.to_string()),
                _ => bail!(
                    "{ORIGIN}: the entry {entry:?} is neither NAME:ID:IP (an IPv4 address \
                     third) nor a host name"
                ),
            }
        })
        .collect()
}

/// `TPU_WORKER_HOSTNAMES`: comma-separated host names or addresses, one per worker in worker
/// order, each optionally with a `:PORT` (dropped, as JAX does: the coordinator has its own).
pub fn worker_hostnames(text: &str) -> Result<Vec<String>> {
    const ORIGIN: &str = "TPU_WORKER_HOSTNAMES";
    entries(text, ORIGIN)?
        .into_iter()
        .map(|entry| {
            let host = entry.split(':').next().unwrap_or("");
            if valid_host(host) {
                Ok(host.to_string())
            } else {
                bail!("{ORIGIN}: the entry {entry:?} is not a host name or IPv4 address")
            }
        })
        .collect()
}

/// The non-empty, trimmed, comma-separated entries of a worker list (at least one).
fn entries<'a>(text: &'a str, origin: &str) -> Result<Vec<&'a str>> {
    let text = text.trim();
    if text.is_empty() {
        bail!("{origin} is empty; expected one entry per worker, comma-separated");
    }
    let list: Vec<&str> = text.split(',').map(str::trim).collect();
    if list.len() > MAX_WORKERS {
        bail!(
            "{origin} lists {} workers, more than the {MAX_WORKERS} tpu-run accepts",
            list.len()
        );
    }
    if let Some(i) = list.iter().position(|e| e.is_empty()) {
        bail!("{origin}: entry {i} (counting from 0) is empty in {text:?}");
    }
    Ok(list)
}

/// A DNS name or an IPv4 address: letters, digits, '-', '_' and '.', not starting with '.' or
/// '-', at most 253 characters.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && !h.starts_with(['.', '-'])
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids() {
        assert_eq!(worker_id("3\n", "x").unwrap(), 3);
        assert_eq!(worker_id(" 0 ", "x").unwrap(), 0);
        for bad in ["", "-1", "+1", "1.0", "one", "99999999999"] {
            let e = worker_id(bad, "TPU_WORKER_ID").unwrap_err().to_string();
            assert!(e.starts_with("TPU_WORKER_ID is"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn endpoints_in_both_formats() {
        let old = "t1v-n-1234-w-0:8470:10.130.0.5,t1v-n-1234-w-1:8470:10.130.0.6\n";
        assert_eq!(
            worker_endpoints(old).unwrap(),
            vec!["10.130.0.5", "10.130.0.6"]
        );
        let new = "t1v-n-1234-w-0, t1v-n-1234-w-1";
        assert_eq!(
            worker_endpoints(new).unwrap(),
            vec!["t1v-n-1234-w-0", "t1v-n-1234-w-1"]
        );
        assert_eq!(worker_endpoints("w0:1:10.0.0.1").unwrap(), vec!["10.0.0.1"]);
    }

    #[test]
    fn malformed_endpoints_are_refused_naming_the_entry() {
        for (bad, needle) in [
            ("", "is empty"),
            ("w0:1:10.0.0.1,,w2:1:10.0.0.3", "entry 1"),
            ("w0:10.0.0.1", "\"w0:10.0.0.1\""),
            ("w0:1:not-an-ip", "\"w0:1:not-an-ip\""),
            ("w0:1:10.0.0.1:9", "\"w0:1:10.0.0.1:9\""),
            ("host name", "\"host name\""),
        ] {
            let e = worker_endpoints(bad).unwrap_err().to_string();
            assert!(e.contains("worker-network-endpoints"), "{bad:?}: {e}");
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }

    #[test]
    fn hostnames_drop_ports() {
        assert_eq!(
            worker_hostnames("w-0.svc:8471,w-1.svc,10.0.0.7").unwrap(),
            vec!["w-0.svc", "w-1.svc", "10.0.0.7"]
        );
        for bad in ["", " , ", ":8471", "w 0", "w0,,w1"] {
            let e = worker_hostnames(bad).unwrap_err().to_string();
            assert!(e.starts_with("TPU_WORKER_HOSTNAMES"), "{bad:?}: {e}");
        }
    }
}

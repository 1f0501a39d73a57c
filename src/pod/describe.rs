//! Reading `gcloud ... describe --format=json`: a TPU VM node (state, health, workers' addresses,
//! what it is made of) and a queued resource (its state, the node it asks for). Fields are the
//! Cloud TPU API's (v2 `Node`, `QueuedResource`) as gcloud prints them, in camelCase.
use super::gcloud::{Provisioning, Spec};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::process::Output;

/// What a describe answered.
#[derive(Debug)]
pub enum Described {
    /// The resource's JSON.
    Found(String),
    NotFound,
}

/// A describe's output: the JSON, "no such resource", or an error with gcloud's message.
pub fn described(out: &Output, what: &str) -> Result<Described> {
    if out.status.success() {
        return Ok(Described::Found(
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    // gcloud reports the API's NOT_FOUND as "... was not found" / "NOT_FOUND: ..."
    let lower = err.to_ascii_lowercase();
    if lower.contains("not_found") || lower.contains("not found") {
        return Ok(Described::NotFound);
    }
    bail!("describing {what} failed: {}", err.trim())
}

/// One worker (host) of the slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The internal address: the coordinator listens on worker 0's.
    pub ip: String,
    pub external_ip: Option<String>,
}

/// A TPU VM node as describe shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub state: String,
    pub health: Option<String>,
    pub health_description: Option<String>,
    pub spec: Spec,
    /// In worker order: `networkEndpoints[i]` is worker i.
    pub endpoints: Vec<Endpoint>,
    /// The queued resource that created it, if one did (its full resource name).
    pub queued_resource: Option<String>,
}

pub fn parse_node(json: &str) -> Result<Node> {
    let v: Value = serde_json::from_str(json).context("reading the TPU VM's describe output")?;
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let state = text("state").context("the TPU VM's describe output has no `state`")?;
    let endpoints = v
        .get("networkEndpoints")
        .and_then(Value::as_array)
        .map(|eps| eps.iter().filter_map(endpoint).collect())
        .unwrap_or_default();
    Ok(Node {
        state,
        health: text("health"),
        health_description: text("healthDescription"),
        spec: spec_of(&v).context("the TPU VM's describe output")?,
        endpoints,
        queued_resource: text("queuedResource"),
    })
}

fn endpoint(e: &Value) -> Option<Endpoint> {
    Some(Endpoint {
        ip: e.get("ipAddress")?.as_str()?.to_string(),
        external_ip: e
            .pointer("/accessConfig/externalIp")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// A node's (or a queued resource's node template's) type, image and provisioning.
fn spec_of(node: &Value) -> Result<Spec> {
    let text = |key: &str| {
        node.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("no `{key}`"))
    };
    let flag = |key: &str| {
        node.pointer(&format!("/schedulingConfig/{key}"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let provisioning = if flag("spot") {
        Provisioning::Spot
    } else if flag("preemptible") {
        Provisioning::Preemptible
    } else {
        Provisioning::Standard
    };
    Ok(Spec {
        accelerator_type: text("acceleratorType")?,
        runtime_version: text("runtimeVersion")?,
        provisioning,
    })
}

/// A queued resource as describe shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedResource {
    /// `state.state`: WAITING_FOR_RESOURCES, PROVISIONING, ACTIVE, SUSPENDED, FAILED, ...
    pub state: String,
    /// The node it asks for, when the output names one.
    pub spec: Option<Spec>,
}

pub fn parse_queued(json: &str) -> Result<QueuedResource> {
    let v: Value =
        serde_json::from_str(json).context("reading the queued resource's describe output")?;
    let state = v
        .pointer("/state/state")
        .and_then(Value::as_str)
        .context("the queued resource's describe output has no `state.state`")?
        .to_string();
    let spec = v.pointer("/tpu/nodeSpec/0/node").and_then(|node| {
        let mut s = spec_of(node).ok()?;
        // The tier is the queued resource's (`spot: {}`), not the node template's.
        if v.get("spot").is_some() {
            s.provisioning = Provisioning::Spot;
        }
        Some(s)
    });
    Ok(QueuedResource { state, spec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_gives_its_state_workers_and_spec() {
        let n = parse_node(
            r#"{"name": "projects/p/locations/z/nodes/bert-pod", "state": "READY",
                "health": "HEALTHY", "acceleratorType": "v5litepod-16",
                "runtimeVersion": "v2-alpha-tpuv5-lite",
                "schedulingConfig": {"preemptible": true, "spot": true},
                "networkEndpoints": [
                  {"ipAddress": "10.0.0.2", "port": 8470, "accessConfig": {"externalIp": "34.1.1.1"}},
                  {"ipAddress": "10.0.0.3", "port": 8470}]}"#,
        )
        .unwrap();
        assert_eq!(n.state, "READY");
        assert_eq!(n.health.as_deref(), Some("HEALTHY"));
        assert_eq!(n.spec.provisioning, Provisioning::Spot);
        assert_eq!(n.endpoints.len(), 2);
        assert_eq!(n.endpoints[0].external_ip.as_deref(), Some("34.1.1.1"));
        assert_eq!(n.endpoints[1].ip, "10.0.0.3");
        assert!(parse_node(r#"{"acceleratorType": "v4-8"}"#).is_err());
    }

    #[test]
    fn a_queued_resource_gives_its_state_and_node_template() {
        let q = parse_queued(
            r#"{"state": {"state": "SUSPENDED", "stateInitiator": "SERVICE"}, "spot": {},
                "tpu": {"nodeSpec": [{"nodeId": "bert-pod", "node": {
                  "acceleratorType": "v5litepod-16", "runtimeVersion": "v2-alpha-tpuv5-lite"}}]}}"#,
        )
        .unwrap();
        assert_eq!(q.state, "SUSPENDED");
        let s = q.spec.unwrap();
        assert_eq!(s.provisioning, Provisioning::Spot);
        assert_eq!(s.accelerator_type, "v5litepod-16");
    }

    #[test]
    fn not_found_is_an_answer_and_other_failures_are_errors() {
        use std::os::unix::process::ExitStatusExt;
        let out = |code: i32, err: &str| Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: vec![],
            stderr: err.as_bytes().to_vec(),
        };
        let nf = out(
            1,
            "ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: Resource ...",
        );
        assert!(matches!(described(&nf, "x").unwrap(), Described::NotFound));
        let denied = out(1, "ERROR: PERMISSION_DENIED: caller lacks tpu.nodes.get");
        let e = described(&denied, "TPU VM bert-pod")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PERMISSION_DENIED") && e.contains("bert-pod"),
            "{e}"
        );
    }
}

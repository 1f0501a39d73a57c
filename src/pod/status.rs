//! `tpu-run pod status`: the node's state, health and workers, and its queued resource's state.
use super::describe::{described, parse_node, parse_queued, Described, Node};
use super::exec::Gcloud;
use super::gcloud::{Provisioning, Target};
use anyhow::{bail, Result};

pub fn status(g: &Gcloud, t: &Target) -> Result<()> {
    if g.dry_run() {
        println!("{}", g.line(&t.describe_node()));
        if let Some(qr) = &t.queued_resource {
            println!("{}", g.line(&t.describe_queued(qr)));
        }
        return Ok(());
    }
    let what = format!("TPU VM {}", t.node);
    let node = match described(&g.capture(&t.describe_node())?, &what)? {
        Described::Found(json) => Some(parse_node(&json)?),
        Described::NotFound => None,
    };
    match &node {
        Some(n) => print!("{}", node_lines(&t.node, n)),
        None => println!("{what}: not found"),
    }
    let mut queued_found = false;
    if let Some(qr) = &t.queued_resource {
        let what_qr = format!("queued resource {qr}");
        match described(&g.capture(&t.describe_queued(qr))?, &what_qr)? {
            Described::Found(json) => {
                println!("{what_qr}: {}", parse_queued(&json)?.state);
                queued_found = true;
            }
            Described::NotFound => println!("{what_qr}: not found"),
        }
    }
    if node.is_none() && !queued_found {
        bail!(
            "{} does not exist; create it with `tpu-run pod create`",
            t.node
        );
    }
    Ok(())
}

/// The node, one fact a line.
pub fn node_lines(name: &str, n: &Node) -> String {
    let mut s = format!("TPU VM {name}: {}", n.state);
    if let Some(h) = &n.health {
        s.push_str(&format!(", health {h}"));
    }
    if let Some(d) = &n.health_description {
        s.push_str(&format!(" ({d})"));
    }
    let prov = match n.spec.provisioning {
        Provisioning::Standard => "on demand",
        Provisioning::Spot => "spot",
        Provisioning::Preemptible => "preemptible",
    };
    s.push_str(&format!(
        "\n  {}, runtime {}, {prov}\n",
        n.spec.accelerator_type, n.spec.runtime_version
    ));
    if let Some(q) = &n.queued_resource {
        s.push_str(&format!("  created by queued resource {q}\n"));
    }
    for (i, e) in n.endpoints.iter().enumerate() {
        s.push_str(&format!("  worker {i}: {}", e.ip));
        if let Some(x) = &e.external_ip {
            s.push_str(&format!(" (external {x})"));
        }
        s.push('\n');
    }
    s
}

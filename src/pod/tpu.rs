//! The TPU's lifecycle as `pod run` and `pod create` see it: is it ready, waiting until it is
//! (bounded), and creating it again after a preemption.
//!
//! Spot and preemptible TPUs cannot be restarted once preempted; Google's docs say to create
//! them again. A TPU VM is deleted and created with the same type, image and provisioning. A
//! queued resource whose node was preempted goes to SUSPENDED, where it is "no longer eligible
//! for further allocation": it is deleted with `--force` (which deletes its node too) and
//! created again, then waits in the queue for capacity like the first time.
use super::describe::{described, parse_node, parse_queued, Described, Node};
use super::exec::Gcloud;
use super::gcloud::{Spec, Target};
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

/// Node states on the way to READY.
const NODE_PENDING: &[&str] = &[
    "CREATING",
    "STARTING",
    "RESTARTING",
    "REPAIRING",
    "REIMAGING",
    "UNHIDING",
    "DELETING",
];
/// Node states it does not come back from: it must be created again.
const NODE_LOST: &[&str] = &["PREEMPTED", "TERMINATED"];
/// Queued-resource states on the way to a node (ACTIVE with no node yet: being provisioned).
const QUEUED_PENDING: &[&str] = &[
    "CREATING",
    "ACCEPTED",
    "WAITING_FOR_RESOURCES",
    "PROVISIONING",
    "ACTIVE",
    "DELETING",
];
/// Queued-resource states after a preemption.
const QUEUED_LOST: &[&str] = &["SUSPENDING", "SUSPENDED"];

/// A TPU that must be created again.
#[derive(Clone, Debug)]
pub struct Lost {
    /// What describe said, e.g. "TPU VM PREEMPTED" or "queued resource SUSPENDED".
    pub state: String,
    /// What it was made of, where describe still shows it.
    pub spec: Option<Spec>,
    /// Whether something is left to delete first (the node, or the queued resource).
    pub exists: bool,
}

/// Where the TPU stands now.
#[derive(Clone, Debug)]
pub enum Probe {
    Ready(Box<Node>),
    /// Coming up: being created, or a queued resource waiting for capacity.
    Pending(String),
    Lost(Lost),
}

/// One look at the node (and, when it does not exist yet, its queued resource).
pub fn probe(g: &Gcloud, t: &Target) -> Result<Probe> {
    let what = format!("TPU VM {}", t.node);
    if let Described::Found(json) = described(&g.capture(&t.describe_node())?, &what)? {
        let n = parse_node(&json)?;
        let s = n.state.as_str();
        if s == "READY" {
            return Ok(Probe::Ready(Box::new(n)));
        }
        if NODE_LOST.contains(&s) {
            return Ok(Probe::Lost(Lost {
                state: format!("TPU VM {s}"),
                spec: Some(n.spec),
                exists: true,
            }));
        }
        if NODE_PENDING.contains(&s) {
            return Ok(Probe::Pending(format!("TPU VM {s}")));
        }
        bail!(
            "{what} is {s}; `tpu-run pod run` needs it READY (start it with `gcloud compute tpus \
             tpu-vm start`, or delete it and create it again)"
        );
    }
    let Some(qr) = &t.queued_resource else {
        return Ok(Probe::Lost(Lost {
            state: format!("{what} not found"),
            spec: None,
            exists: false,
        }));
    };
    let what_qr = format!("queued resource {qr}");
    match described(&g.capture(&t.describe_queued(qr))?, &what_qr)? {
        Described::NotFound => Ok(Probe::Lost(Lost {
            state: format!("{what} and {what_qr} not found"),
            spec: None,
            exists: false,
        })),
        Described::Found(json) => {
            let q = parse_queued(&json)?;
            let s = q.state.as_str();
            if QUEUED_LOST.contains(&s) {
                Ok(Probe::Lost(Lost {
                    state: format!("{what_qr} {s}"),
                    spec: q.spec,
                    exists: true,
                }))
            } else if QUEUED_PENDING.contains(&s) {
                Ok(Probe::Pending(format!("{what_qr} {s}")))
            } else {
                bail!(
                    "{what_qr} is {s}; delete it (`tpu-run pod delete {} --queued-resource {qr}`) \
                     and create it again",
                    t.node
                )
            }
        }
    }
}

/// How long to wait for a TPU to come up, and how often to look.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    pub timeout: Duration,
    pub poll: Duration,
}

/// Ready, or lost: what waiting ends with.
pub enum Settled {
    Ready(Box<Node>),
    Lost(Lost),
}

/// Polls until the TPU is READY or lost, at most `w.timeout`, saying what it waits for.
pub fn wait_settled(g: &Gcloud, t: &Target, w: Waits) -> Result<Settled> {
    let start = Instant::now();
    let mut shown: Option<(String, Instant)> = None;
    loop {
        let state = match probe(g, t)? {
            Probe::Ready(n) => return Ok(Settled::Ready(n)),
            Probe::Lost(l) => return Ok(Settled::Lost(l)),
            Probe::Pending(state) => state,
        };
        let waited = start.elapsed();
        if waited >= w.timeout {
            bail!(
                "{} is still not READY after {} s ({state}; --wait-timeout {} s); see \
                 `tpu-run pod status {}`",
                t.node,
                waited.as_secs(),
                w.timeout.as_secs(),
                t.node
            );
        }
        // Say so when the state changes, and once a minute while it does not.
        let say = match &shown {
            Some((s, at)) => *s != state || at.elapsed() >= Duration::from_secs(60),
            None => true,
        };
        if say {
            eprintln!(
                "tpu-run pod: waiting for {}: {state} ({} s of at most {} s)",
                t.node,
                waited.as_secs(),
                w.timeout.as_secs()
            );
            shown = Some((state, Instant::now()));
        }
        std::thread::sleep(w.poll.min(w.timeout.saturating_sub(waited)));
    }
}

/// Creates the TPU again as `spec`, deleting what is left of it first.
pub fn recreate(g: &Gcloud, t: &Target, spec: &Spec, exists: bool) -> Result<()> {
    match &t.queued_resource {
        Some(qr) => {
            if exists {
                g.run(
                    &t.delete_queued(qr),
                    "deleting the suspended queued resource",
                )?;
            }
            g.run(
                &t.create_queued(qr, spec),
                "creating the queued resource again",
            )
        }
        None => {
            if exists {
                g.run(&t.delete_node(), "deleting the preempted TPU VM")?;
            }
            g.run(&t.create_vm(spec), "creating the TPU VM again")
        }
    }
}

/// The spec to recreate with: describe's, else the one seen while it was ready.
pub fn spec_for(lost: &Lost, seen: Option<&Spec>, t: &Target) -> Result<Spec> {
    lost.spec
        .clone()
        .or_else(|| seen.cloned())
        .with_context(|| {
            format!(
                "{} ({}) and its type is not known here; create it with `tpu-run pod create`",
                t.node, lost.state
            )
        })
}

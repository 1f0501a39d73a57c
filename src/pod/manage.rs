//! `tpu-run pod create`, `stop`, `delete` and `logs`: one or a few gcloud commands each.
use super::describe::{described, parse_node, Described};
use super::exec::Gcloud;
use super::gcloud::{Provisioning, Spec, Target, Workers};
use super::logs;
use super::plan;
use super::tpu::{self, Settled, Waits};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Creates the TPU VM, or the queued resource that creates it; with `wait`, until it is READY.
pub fn create(g: &Gcloud, t: &Target, spec: &Spec, wait: Option<Waits>) -> Result<()> {
    match &t.queued_resource {
        Some(qr) => {
            if spec.provisioning == Provisioning::Preemptible {
                bail!(
                    "queued resources take --spot, not --preemptible (gcloud's `queued-resources \
                     create` has no --preemptible)"
                );
            }
            g.run(&t.create_queued(qr, spec), "creating the queued resource")?;
        }
        // gcloud waits until the VM exists (or fails for want of capacity)
        None => g.run(&t.create_vm(spec), "creating the TPU VM")?,
    }
    let Some(w) = wait.filter(|_| !g.dry_run()) else {
        return Ok(());
    };
    match tpu::wait_settled(g, t, w)? {
        Settled::Ready(n) => {
            println!(
                "{} is READY: {} workers ({})",
                t.node,
                n.endpoints.len(),
                n.spec.accelerator_type
            );
            Ok(())
        }
        Settled::Lost(l) => bail!("{} did not come up: {}", t.node, l.state),
    }
}

/// SIGTERM to pretrain on every worker: each finishes its step, checkpoints and exits.
pub fn stop(g: &Gcloud, t: &Target) -> Result<()> {
    g.run(
        &t.ssh(Workers::All, &plan::stop_script()),
        "sending SIGTERM to pretrain on every worker",
    )
}

/// Deletes the TPU VM, or its queued resource with the VM (`--force`).
pub fn delete(g: &Gcloud, t: &Target) -> Result<()> {
    match &t.queued_resource {
        Some(qr) => g.run(
            &t.delete_queued(qr),
            "deleting the queued resource and its TPU VM",
        ),
        None => g.run(&t.delete_node(), "deleting the TPU VM"),
    }
}

/// Every worker's log into `dir`; the worker count from describe unless given.
pub fn fetch_logs(g: &Gcloud, t: &Target, workers: Option<u32>, dir: &Path) -> Result<()> {
    let n = match workers {
        Some(n) => n,
        None if g.dry_run() => bail!(
            "a dry run of `pod logs` needs --workers N (the slice's host count, which a real run \
             reads from describe)"
        ),
        None => {
            let what = format!("TPU VM {}", t.node);
            match described(&g.capture(&t.describe_node())?, &what)? {
                Described::Found(json) => parse_node(&json)?.endpoints.len() as u32,
                Described::NotFound => bail!("{what} not found: its logs went with it"),
            }
        }
    };
    let got = logs::fetch(g, t, n, dir).context("fetching the workers' logs")?;
    if !g.dry_run() {
        println!(
            "{} of {n} workers' logs are in {}",
            got.len(),
            dir.display()
        );
        if got.len() < n as usize {
            bail!(
                "{} workers' logs could not be fetched",
                n as usize - got.len()
            );
        }
    }
    Ok(())
}

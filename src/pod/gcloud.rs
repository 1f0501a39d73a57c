//! The `gcloud compute tpus` command lines `tpu-run pod` runs, built as argument lists in this one
//! place (the tests check them word for word). Flags are written `--flag=value`, one word each,
//! as the gcloud reference spells them, so a printed command reads the same as the docs.
use std::fmt;

/// How the TPU is provisioned; spot and preemptible TPUs can be taken back (preempted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provisioning {
    Standard,
    Spot,
    Preemptible,
}

/// What a TPU is made of: enough to create it again after a preemption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// e.g. `v5litepod-16`.
    pub accelerator_type: String,
    /// The TPU VM image, e.g. `v2-alpha-tpuv5-lite`.
    pub runtime_version: String,
    pub provisioning: Provisioning,
}

/// The TPU a `tpu-run pod` command acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The TPU VM (node) name.
    pub node: String,
    /// Unset: gcloud's configured `compute/zone`.
    pub zone: Option<String>,
    /// Unset: gcloud's configured `core/project`.
    pub project: Option<String>,
    /// The queued resource that holds the node, when it was created through one.
    pub queued_resource: Option<String>,
}

/// Which workers (hosts) of the slice an ssh or scp reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    All,
    One(u32),
}

impl fmt::Display for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workers::All => f.write_str("all"),
            Workers::One(i) => write!(f, "{i}"),
        }
    }
}

/// One gcloud invocation: its arguments, without the program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcloudCmd {
    pub args: Vec<String>,
}

impl Target {
    /// `compute tpus GROUP VERB RESOURCE --zone=.. --project=..`: the part every command shares.
    fn base(&self, group: &str, verb: &str, resource: &str) -> Vec<String> {
        let mut a = words(&["compute", "tpus", group, verb, resource]);
        a.extend(self.scope());
        a
    }

    /// A TPU VM, created at once (or failing when there is no capacity).
    pub fn create_vm(&self, spec: &Spec) -> GcloudCmd {
        let mut args = self.base("tpu-vm", "create", &self.node);
        args.push(format!("--accelerator-type={}", spec.accelerator_type));
        args.push(format!("--version={}", spec.runtime_version));
        match spec.provisioning {
            Provisioning::Standard => {}
            Provisioning::Spot => args.push("--spot".into()),
            Provisioning::Preemptible => args.push("--preemptible".into()),
        }
        GcloudCmd { args }
    }

    /// A queued resource that creates the node when capacity comes. gcloud's queued resources
    /// take `--spot` but have no `--preemptible`; a preemptible spec is asked for as spot.
    pub fn create_queued(&self, qr: &str, spec: &Spec) -> GcloudCmd {
        let mut args = self.base("queued-resources", "create", qr);
        args.push(format!("--node-id={}", self.node));
        args.push(format!("--accelerator-type={}", spec.accelerator_type));
        args.push(format!("--runtime-version={}", spec.runtime_version));
        if spec.provisioning != Provisioning::Standard {
            args.push("--spot".into());
        }
        GcloudCmd { args }
    }

    pub fn describe_node(&self) -> GcloudCmd {
        let mut args = self.base("tpu-vm", "describe", &self.node);
        args.push("--format=json".into());
        GcloudCmd { args }
    }

    pub fn describe_queued(&self, qr: &str) -> GcloudCmd {
        let mut args = self.base("queued-resources", "describe", qr);
        args.push("--format=json".into());
        GcloudCmd { args }
    }

    /// `--quiet`: no confirmation prompt.
    pub fn delete_node(&self) -> GcloudCmd {
        let mut args = self.base("tpu-vm", "delete", &self.node);
        args.push("--quiet".into());
        GcloudCmd { args }
    }

    /// `--force` deletes the queued resource's node with it, whatever the resource's state.
    pub fn delete_queued(&self, qr: &str) -> GcloudCmd {
        let mut args = self.base("queued-resources", "delete", qr);
        args.push("--force".into());
        args.push("--quiet".into());
        GcloudCmd { args }
    }

    /// `command` runs in the login shell of each chosen worker.
    pub fn ssh(&self, workers: Workers, command: &str) -> GcloudCmd {
        let mut args = self.base("tpu-vm", "ssh", &self.node);
        args.push(format!("--worker={workers}"));
        args.push(format!("--command={command}"));
        GcloudCmd { args }
    }

    /// Local files to `dest` (relative to the home directory) on every worker.
    pub fn scp_to_all(&self, sources: &[String], dest: &str) -> GcloudCmd {
        let mut args = words(&["compute", "tpus", "tpu-vm", "scp"]);
        args.extend(sources.iter().cloned());
        args.push(format!("{}:{dest}", self.node));
        args.extend(self.scope());
        args.push("--worker=all".into());
        GcloudCmd { args }
    }

    /// A file of one worker (`src` relative to its home directory) to a local path.
    pub fn scp_from(&self, worker: u32, src: &str, dest: &str) -> GcloudCmd {
        let mut args = words(&["compute", "tpus", "tpu-vm", "scp"]);
        args.push(format!("{}:{src}", self.node));
        args.push(dest.to_string());
        args.extend(self.scope());
        args.push(format!("--worker={worker}"));
        GcloudCmd { args }
    }

    /// `--zone=.. --project=..`, where given.
    fn scope(&self) -> Vec<String> {
        let mut a = vec![];
        if let Some(z) = &self.zone {
            a.push(format!("--zone={z}"));
        }
        if let Some(p) = &self.project {
            a.push(format!("--project={p}"));
        }
        a
    }
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            node: "bert-pod".into(),
            zone: Some("us-west4-a".into()),
            project: Some("my-proj".into()),
            queued_resource: None,
        }
    }

    fn spec(p: Provisioning) -> Spec {
        Spec {
            accelerator_type: "v5litepod-16".into(),
            runtime_version: "v2-alpha-tpuv5-lite".into(),
            provisioning: p,
        }
    }

    #[test]
    fn create_commands_carry_the_provisioning_flag() {
        let t = target();
        assert_eq!(
            t.create_vm(&spec(Provisioning::Preemptible)).args.join(" "),
            "compute tpus tpu-vm create bert-pod --zone=us-west4-a --project=my-proj \
             --accelerator-type=v5litepod-16 --version=v2-alpha-tpuv5-lite --preemptible"
        );
        assert!(!t
            .create_vm(&spec(Provisioning::Standard))
            .args
            .iter()
            .any(|a| a == "--spot" || a == "--preemptible"));
        assert_eq!(
            t.create_queued("qr1", &spec(Provisioning::Spot))
                .args
                .join(" "),
            "compute tpus queued-resources create qr1 --zone=us-west4-a --project=my-proj \
             --node-id=bert-pod --accelerator-type=v5litepod-16 \
             --runtime-version=v2-alpha-tpuv5-lite --spot"
        );
    }

    #[test]
    fn scp_names_the_node_on_the_remote_side_and_the_workers() {
        let t = Target {
            zone: None,
            project: None,
            ..target()
        };
        assert_eq!(
            t.scp_to_all(&["a".into(), "b".into()], "d/").args.join(" "),
            "compute tpus tpu-vm scp a b bert-pod:d/ --worker=all"
        );
        assert_eq!(
            t.scp_from(3, "d/log", "out/w3.log").args.join(" "),
            "compute tpus tpu-vm scp bert-pod:d/log out/w3.log --worker=3"
        );
    }
}

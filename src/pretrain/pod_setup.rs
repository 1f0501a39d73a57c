//! The zero-flag start of a pod run: the process settings a user left open (`--coordinator`,
//! `--num-processes`, `--process-id` and their `[device]` keys) filled in from the TPU VM's
//! environment ([`crate::tpu_pod`]) before the run starts.
//!
//! The run's token is not discovered: nothing a TPU VM's environment holds is a secret (its
//! metadata is readable by every process on the VM and by anyone who may view the project), so
//! a token derived from it would let others in. Every worker starts at once, so the token
//! process 0 would generate could not reach the others in time: a discovered run of several
//! workers needs the token given to each (`--coordinator-token-file` or
//! `TPU_RUN_COORDINATOR_TOKEN`), and says so before it starts.
use super::config::{Overrides, PretrainConfig};
use crate::backend::Backend;
use crate::coord::TOKEN_ENV;
use crate::tpu_pod::{self, Placement, PodEnv, ProcessFlags};
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;

/// The `[device]` process keys a config file sets (other keys are ignored here; the full
/// config is checked elsewhere).
#[derive(Default, Deserialize)]
struct FileKeys {
    #[serde(default)]
    device: FileDevice,
}

#[derive(Default, Deserialize)]
struct FileDevice {
    coordinator: Option<String>,
    num_processes: Option<u32>,
    process_id: Option<u32>,
}

/// The process settings given explicitly, on the command line (`o`) or in the config file's
/// text (`file`, already parsed once as the config, so errors here are only its own).
pub fn explicit_flags(file: Option<&str>, o: &Overrides) -> Result<ProcessFlags> {
    let keys: FileKeys = match file {
        Some(text) => toml::from_str(text).map_err(|e| anyhow!("config file: {e}"))?,
        None => FileKeys::default(),
    };
    Ok(ProcessFlags {
        coordinator: o.coordinator.clone().or(keys.device.coordinator),
        num_processes: o.num_processes.or(keys.device.num_processes),
        process_id: o.process_id.or(keys.device.process_id),
    })
}

/// Fills `cfg.device`'s process settings from the TPU VM's environment `env` where `flags`
/// leaves them open (see the module doc). `Ok(None)`: nothing was discovered.
pub fn place_on_tpu_pod(
    cfg: &mut PretrainConfig,
    flags: &ProcessFlags,
    env: &PodEnv,
    token_in_env: bool,
) -> Result<Option<Placement>> {
    let tpu = cfg.device.backend == Backend::Tpu;
    let Some(place) = tpu_pod::discover(tpu, flags, env)? else {
        return Ok(None);
    };
    if place.num_processes > 1 && cfg.device.coordinator_token_file.is_none() && !token_in_env {
        bail!(
            "{}: every worker needs the run's token, and all start at once, so none can be \
             generated and handed out. Make one where you launch the run (e.g. `head -c 32 \
             /dev/urandom | od -An -tx1 | tr -d ' \\n' > token; chmod 600 token`), copy it to \
             every worker and give it as --coordinator-token-file FILE (or the environment \
             variable {TOKEN_ENV})",
            place.describe()
        );
    }
    let d = &mut cfg.device;
    d.process_id = place.process_id;
    d.num_processes = place.num_processes;
    d.coordinator.clone_from(&place.coordinator);
    Ok(Some(place))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_flags_come_from_the_command_line_then_the_file() {
        let file = "[device]\nnum_processes = 4\ncoordinator = \"10.0.0.2:9000\"\n";
        let o = Overrides {
            num_processes: Some(2),
            ..Overrides::default()
        };
        let f = explicit_flags(Some(file), &o).unwrap();
        assert_eq!(f.num_processes, Some(2));
        assert_eq!(f.coordinator.as_deref(), Some("10.0.0.2:9000"));
        assert_eq!(f.process_id, None);
        let none = explicit_flags(Some("[train]\nsteps = 3\n"), &Overrides::default()).unwrap();
        assert_eq!(none, ProcessFlags::default());
        assert_eq!(
            explicit_flags(None, &Overrides::default()).unwrap(),
            ProcessFlags::default()
        );
    }
}

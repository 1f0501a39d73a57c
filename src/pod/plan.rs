//! What runs on the workers: the layout of the directory `tpu-run pod run` fills on each worker,
//! and the one-line shell scripts it sends over ssh (prepare, setup, start, stop).
//!
//! Every worker gets the same files in `~/tpu-run-pod/`: the binary, the pretrain config, the
//! run's coordinator token; `pretrain` writes its output to `pretrain.log` there and its pid to
//! `pretrain.pid` (what `tpu-run pod stop` signals and `tpu-run pod logs` fetches).
use super::quote;
use anyhow::{bail, Result};

/// On each worker, relative to the login user's home directory.
pub const REMOTE_DIR: &str = "tpu-run-pod";
pub const BINARY: &str = "tpu-run";
pub const CONFIG: &str = "pretrain.toml";
pub const TOKEN: &str = "coordinator-token";
pub const LOG: &str = "pretrain.log";
pub const PID: &str = "pretrain.pid";

/// The port worker 0 serves the coordinator on, unless `--coordinator-port` says otherwise.
pub const DEFAULT_COORDINATOR_PORT: u16 = 8476;

/// Flags `pod run` sets on each worker itself; given again after `--` they would contradict it.
const OWN_FLAGS: &[&str] = &[
    "--config",
    "--backend",
    "--coordinator",
    "--num-processes",
    "--process-id",
    "--coordinator-token-file",
    "--resume",
];

/// Refuses pretrain arguments that `pod run` sets per worker.
pub fn check_pretrain_args(extra: &[String]) -> Result<()> {
    for a in extra {
        let name = a.split('=').next().unwrap_or(a);
        if OWN_FLAGS.contains(&name) {
            bail!(
                "`{name}` is set by `tpu-run pod run` on each worker; leave it out of the \
                 pretrain arguments after `--`"
            );
        }
    }
    Ok(())
}

/// The worker's log, relative to its home directory.
pub fn remote_log() -> String {
    format!("{REMOTE_DIR}/{LOG}")
}

/// Before the copy: the directory the files go to (scp does not create it).
pub fn prepare_script() -> String {
    format!("mkdir -p {REMOTE_DIR}")
}

/// After the copy: the binary executable and the token private (scp keeps neither mode for
/// sure), libtpu installed unless one is found already, then the user's `--setup` command.
pub fn setup_script(user: Option<&str>) -> String {
    let mut s = format!(
        "cd {REMOTE_DIR} && chmod 700 {BINARY} && chmod 600 {TOKEN} && \
         {{ ./{BINARY} plugin list | grep -q '^tpu ' || ./{BINARY} plugin install tpu; }}"
    );
    if let Some(u) = user {
        s.push_str(&format!(" && ( {u} )"));
    }
    s
}

/// How every worker's `tpu-run pretrain` is started in one attempt.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Worker 0's internal address and the port: `--coordinator` on every worker.
    pub coordinator: String,
    pub num_processes: u32,
    /// A restart after a preemption: `--resume`, so the run continues from its last checkpoint.
    pub resume: bool,
    /// The user's pretrain arguments (after `--`).
    pub extra: Vec<String>,
}

impl Launch {
    /// The pretrain command of worker `process_id`, as words.
    pub fn pretrain_args(&self, process_id: u32) -> Vec<String> {
        let mut a: Vec<String> = vec![
            format!("./{BINARY}"),
            "pretrain".into(),
            "--config".into(),
            CONFIG.into(),
            "--backend".into(),
            "tpu".into(),
            "--coordinator".into(),
            self.coordinator.clone(),
            "--num-processes".into(),
            self.num_processes.to_string(),
            "--process-id".into(),
            process_id.to_string(),
            "--coordinator-token-file".into(),
            TOKEN.into(),
        ];
        if self.resume {
            a.push("--resume".into());
            // A fresh start's --no-resume would refuse the checkpoints a restart resumes from.
            a.extend(self.extra.iter().filter(|x| *x != "--no-resume").cloned());
        } else {
            a.extend(self.extra.iter().cloned());
        }
        a
    }

    /// Worker `process_id`'s start script. pretrain runs under nohup with its output in the log,
    /// so a dropped ssh connection (or Ctrl-C here) leaves it running; its pid goes to the pid
    /// file for `stop`. The script waits for it and exits with its status, which ssh passes back.
    /// `stream` (worker 0) also follows the log to ssh's output until pretrain ends.
    pub fn start_script(&self, process_id: u32, stream: bool) -> String {
        let cmd = quote::join(&self.pretrain_args(process_id));
        let mut s = format!(
            "cd {REMOTE_DIR} && : >{LOG} && {{ nohup {cmd} >>{LOG} 2>&1 </dev/null & \
             pid=$!; echo \"$pid\" >{PID}; "
        );
        if stream {
            s.push_str(&format!("tail -n +1 -f --pid=\"$pid\" {LOG} & "));
        }
        s.push_str("wait \"$pid\"; rc=$?; ");
        if stream {
            s.push_str("wait; "); // tail ends within a second of pretrain, its last lines shown
        }
        s.push_str("exit \"$rc\"; }");
        s
    }
}

/// SIGTERM to the worker's pretrain, when its pid file names a live pretrain process (not a
/// recycled pid): pretrain finishes its step, writes a checkpoint and exits. Prints what it did.
pub fn stop_script() -> String {
    format!(
        "cd {REMOTE_DIR} 2>/dev/null && pid=$(cat {PID} 2>/dev/null) && \
         kill -0 \"$pid\" 2>/dev/null && grep -qa pretrain \"/proc/$pid/cmdline\" && \
         kill -TERM \"$pid\" && \
         echo \"$(hostname): sent SIGTERM to tpu-run pretrain (pid $pid): it checkpoints and exits\" \
         || echo \"$(hostname): no tpu-run pretrain running\""
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(resume: bool) -> Launch {
        Launch {
            coordinator: "10.0.0.2:8476".into(),
            num_processes: 4,
            resume,
            extra: vec![
                "--data".into(),
                "/mnt/d/*.tfrecord".into(),
                "--no-resume".into(),
            ],
        }
    }

    #[test]
    fn each_worker_gets_its_process_id_and_a_restart_resumes() {
        let first = launch(false).pretrain_args(2).join(" ");
        assert!(first.contains("--coordinator 10.0.0.2:8476 --num-processes 4 --process-id 2 "));
        assert!(
            first.ends_with("--data /mnt/d/*.tfrecord --no-resume"),
            "{first}"
        );
        let again = launch(true).pretrain_args(2).join(" ");
        assert!(
            again.ends_with("--resume --data /mnt/d/*.tfrecord"),
            "{again}"
        );
    }

    #[test]
    fn only_worker_zero_streams_and_globs_reach_pretrain_unexpanded() {
        let w0 = launch(false).start_script(0, true);
        let w1 = launch(false).start_script(1, false);
        assert!(w0.contains("tail -n +1 -f") && !w1.contains("tail"));
        assert!(w1.contains("'/mnt/d/*.tfrecord'"), "{w1}");
        assert!(!w1.contains('\n'));
    }

    #[test]
    fn flags_pod_sets_are_refused_after_the_double_dash() {
        let err = |a: &[&str]| {
            check_pretrain_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&["--process-id", "1"]).contains("`--process-id`"));
        assert!(err(&["--coordinator=x:1"]).contains("`--coordinator`"));
        assert!(check_pretrain_args(&["--coordinator-bind".into(), "0.0.0.0:1".into()]).is_ok());
    }
}

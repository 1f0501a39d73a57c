//! Finding the gcloud executable and running it, or, in a dry run, printing what would run.
use super::gcloud::GcloudCmd;
use super::quote;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

/// The gcloud CLI as `tpu-run pod` uses it.
#[derive(Clone, Debug)]
pub struct Gcloud {
    program: PathBuf,
    /// How printed commands name the program: `gcloud`, or the `--gcloud` path as given.
    shown: String,
    dry_run: bool,
}

impl Gcloud {
    /// `explicit` (`--gcloud PATH`), else `gcloud` on PATH. A dry run runs nothing, so it needs
    /// no gcloud installed.
    pub fn locate(explicit: Option<&Path>, dry_run: bool) -> Result<Gcloud> {
        let (program, shown) = match explicit {
            Some(p) => {
                if !dry_run && !p.is_file() {
                    bail!("--gcloud {}: no such file", p.display());
                }
                (p.to_path_buf(), p.display().to_string())
            }
            None => match find_on_path("gcloud") {
                Some(p) => (p, "gcloud".to_string()),
                None if dry_run => (PathBuf::from("gcloud"), "gcloud".to_string()),
                None => bail!(
                    "gcloud (the Google Cloud CLI) was not found on PATH; install it \
                     (https://cloud.google.com/sdk/docs/install) or pass --gcloud PATH"
                ),
            },
        };
        Ok(Gcloud {
            program,
            shown,
            dry_run,
        })
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The command as one shell line, ready to paste.
    pub fn line(&self, cmd: &GcloudCmd) -> String {
        let mut words = vec![self.shown.clone()];
        words.extend(cmd.args.iter().cloned());
        quote::join(&words)
    }

    /// Runs `cmd` to the end on this terminal, so gcloud's own progress and prompts show; a dry
    /// run prints it instead. `what` names the step in the error.
    pub fn run(&self, cmd: &GcloudCmd, what: &str) -> Result<()> {
        if self.dry_run {
            println!("{}", self.line(cmd));
            return Ok(());
        }
        let status = self
            .command(cmd)
            .status()
            .with_context(|| format!("starting {}", self.program.display()))?;
        if !status.success() {
            bail!(
                "{what} failed ({}): {}",
                describe_exit(status),
                self.line(cmd)
            );
        }
        Ok(())
    }

    /// Runs `cmd` and keeps what it printed (describe), success or not: the caller reads the
    /// error text (a resource that does not exist is an answer, not a failure).
    pub fn capture(&self, cmd: &GcloudCmd) -> Result<Output> {
        self.command(cmd)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting {}", self.program.display()))
    }

    /// A process for `cmd`, for callers that spawn it themselves (the workers' launches).
    pub fn command(&self, cmd: &GcloudCmd) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&cmd.args);
        c
    }
}

/// "exit status 3", or the signal that ended the process.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "ended".to_string(),
    }
}

/// The first executable file called `name` in a PATH directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

//! Running the `tpu-run` binary from integration tests: one place that builds the command and
//! turns a failed (or unexpectedly successful) run into a panic that shows everything needed to
//! see why — the command line, the exit status, stdout and stderr.
// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The `tpu-run` binary Cargo built for these tests, with no arguments yet. It inherits the
/// test's environment: tests that depend on a variable set it themselves.
pub fn tpu_run() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tpu-run"))
}

/// Runs `cmd` to completion, capturing stdout and stderr; panics only if it could not start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

/// Runs `cmd`, which must succeed; its output.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(out.status.success(), "{}", report(cmd, &out, "failed"));
    out
}

/// Runs `cmd`, which must fail; its output.
pub fn run_fail(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(!out.status.success(), "{}", report(cmd, &out, "succeeded"));
    out
}

/// Stdout as text (invalid UTF-8 replaced).
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr as text (invalid UTF-8 replaced).
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stdout, a newline, then stderr: for checks that do not care which stream a line went to.
pub fn text(out: &Output) -> String {
    format!("{}\n{}", stdout(out), stderr(out))
}

fn report(cmd: &Command, out: &Output, what: &str) -> String {
    format!(
        "{cmd:?} {what} ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// Waits for `child` (spawned with its stdout and stderr piped), killing it once `limit` has
/// passed so that a hung child fails the test instead of hanging it; its status and output.
pub fn finish_within(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A loopback port free now, released for a child's coordinator to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

//! Fetching every worker's `pretrain.log` into a local directory, one scp per worker (each
//! worker's file has the same remote name, so `--worker=all` would overwrite one local copy).
use super::exec::Gcloud;
use super::gcloud::Target;
use super::plan::remote_log;
use super::stage::scp_word;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Fetches the logs of workers `0..workers` into `dir` as `worker-I.log`; a worker whose log
/// cannot be fetched is reported, not fatal. Returns the files fetched. In a dry run, prints
/// the commands.
pub fn fetch(g: &Gcloud, t: &Target, workers: u32, dir: &Path) -> Result<Vec<PathBuf>> {
    if !g.dry_run() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut got = vec![];
    for w in 0..workers {
        let local = dir.join(format!("worker-{w}.log"));
        let cmd = t.scp_from(w, &remote_log(), &scp_word(&local)?);
        if g.dry_run() {
            println!("{}", g.line(&cmd));
            continue;
        }
        let out = g.capture(&cmd)?;
        if out.status.success() {
            got.push(local);
        } else {
            eprintln!(
                "tpu-run pod: worker {w}'s log could not be fetched: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(got)
}

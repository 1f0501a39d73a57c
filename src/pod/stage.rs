//! The local side of a pod run: a directory (default `tpu-run-pod/<node>/`) holding the files
//! copied to every worker under the names the workers' scripts use, and the fetched logs.
//!
//! `stage/` has the binary (hard-linked when it can be, else copied), the pretrain config and a
//! fresh coordinator token (mode 600) for the run; one scp sends the three to every worker.
//! `logs/attempt-N/worker-I.log` are the workers' logs fetched after a failed attempt.
use super::plan::{BINARY, CONFIG, TOKEN};
use crate::coord::Token;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The local directory of a pod run.
#[derive(Clone, Debug)]
pub struct LocalDir {
    pub root: PathBuf,
}

impl LocalDir {
    pub fn new(root: PathBuf) -> LocalDir {
        LocalDir { root }
    }

    pub fn stage(&self) -> PathBuf {
        self.root.join("stage")
    }

    /// The three staged files, in the order they are copied.
    pub fn staged(&self) -> Vec<PathBuf> {
        [BINARY, CONFIG, TOKEN]
            .iter()
            .map(|f| self.stage().join(f))
            .collect()
    }

    pub fn attempt_logs(&self, attempt: u32) -> PathBuf {
        self.root.join("logs").join(format!("attempt-{attempt}"))
    }

    /// Fills `stage/` for a run: the binary, the config, a new token.
    pub fn fill(&self, binary: &Path, config: &Path) -> Result<()> {
        let dir = self.stage();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let [bin, cfg, token] = [BINARY, CONFIG, TOKEN].map(|f| dir.join(f));
        for f in [&bin, &cfg, &token] {
            remove_if_present(f)?;
        }
        if std::fs::hard_link(binary, &bin).is_err() {
            // another file system: a copy
            std::fs::copy(binary, &bin)
                .with_context(|| format!("copying {} to {}", binary.display(), bin.display()))?;
        }
        std::fs::copy(config, &cfg)
            .with_context(|| format!("copying {} to {}", config.display(), cfg.display()))?;
        let t = Token::generate()?;
        write_private(&token, &format!("{}\n", t.expose()))
    }
}

/// A local path as the single word gcloud scp takes: UTF-8, and without a `:`, which gcloud
/// would read as `INSTANCE:PATH`.
pub fn scp_word(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", p.display()))?;
    if s.contains(':') {
        bail!("{s}: gcloud scp would read a path with ':' as INSTANCE:PATH; choose another --local-dir");
    }
    Ok(s.to_string())
}

fn remove_if_present(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", p.display()))
        }
        _ => Ok(()),
    }
}

/// A new file only its owner can read.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_holds_the_files_under_the_workers_names_and_a_private_token() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (bin, cfg) = (tmp.path().join("my-bin"), tmp.path().join("c.toml"));
        std::fs::write(&bin, "binary").unwrap();
        std::fs::write(&cfg, "[train]\n").unwrap();
        let d = LocalDir::new(tmp.path().join("local"));
        d.fill(&bin, &cfg).unwrap();
        let first = std::fs::read_to_string(d.stage().join(TOKEN)).unwrap();
        d.fill(&bin, &cfg).unwrap(); // again: replaced, with a new token
        let staged = d.staged();
        assert_eq!(std::fs::read_to_string(&staged[0]).unwrap(), "binary");
        assert_eq!(std::fs::read_to_string(&staged[1]).unwrap(), "[train]\n");
        let token = std::fs::read_to_string(&staged[2]).unwrap();
        assert_eq!(token.trim().len(), 64);
        assert_ne!(token, first);
        let mode = std::fs::metadata(&staged[2]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(scp_word(Path::new("a:b")).is_err());
    }
}

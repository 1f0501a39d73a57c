//! An output directory that may be a bucket prefix. Files that are appended to as a run goes
//! (metrics.jsonl, TensorBoard events) or written by code that wants a file (create-data's
//! shards) are written into a local directory; for a bucket that directory is a private
//! staging copy under the per-user cache, uploaded with [`OutputDir::sync`] (each file as one
//! object under the prefix, replacing the previous upload) and removed on drop. Object stores
//! have no append, so this is how a growing log reaches a bucket: whole, at each sync.
use super::objects::{get, put_file};
use super::url::ObjectUrl;
use super::Location;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct OutputDir {
    local: PathBuf,
    remote: Option<ObjectUrl>,
}

impl OutputDir {
    /// `dir` itself when it is local (created); for a bucket URL a new staging directory
    /// holding the current objects named in `pull` (those that exist), so a resumed run
    /// continues them.
    pub fn open(dir: &Path, pull: &[&str]) -> io::Result<OutputDir> {
        let url = match Location::parse(dir)? {
            Location::Local(p) => {
                std::fs::create_dir_all(&p)?;
                return Ok(OutputDir {
                    local: p,
                    remote: None,
                });
            }
            Location::Object(url) => url,
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let local = tpu::plugin::cache_dir()
            .join("staging")
            .join(format!("{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&local)?;
        let out = OutputDir {
            local,
            remote: Some(url),
        };
        for name in pull {
            let Some(url) = out.remote.as_ref().map(|u| u.join(name)) else {
                continue;
            };
            match get(&url) {
                Ok(bytes) => std::fs::write(out.local.join(name), bytes)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("reading {url}: {e}"))),
            }
        }
        Ok(out)
    }

    /// Where to write.
    pub fn local(&self) -> &Path {
        &self.local
    }

    /// Where `rel` (a path inside [`OutputDir::local`]) ends up: the object URL for a bucket.
    pub fn shown(&self, local: &Path) -> PathBuf {
        match (&self.remote, local.strip_prefix(&self.local)) {
            (Some(url), Ok(rel)) => PathBuf::from(url.join(&rel.to_string_lossy()).to_string()),
            _ => local.to_path_buf(),
        }
    }

    /// Uploads every file of the staging directory (nothing for a local directory); returns
    /// how many.
    pub fn sync(&self) -> io::Result<usize> {
        let Some(url) = &self.remote else {
            return Ok(0);
        };
        let mut uploaded = 0;
        for (file, rel) in files_under(&self.local)? {
            let dest = url.join(&rel);
            put_file(&dest, &file)
                .map_err(|e| io::Error::new(e.kind(), format!("uploading to {dest}: {e}")))?;
            uploaded += 1;
        }
        Ok(uploaded)
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if self.remote.is_some() {
            // Best effort: a leftover staging copy costs disk space only.
            let _ = std::fs::remove_dir_all(&self.local);
        }
    }
}

/// Every file under `root` with its `/`-separated path relative to it, sorted.
fn files_under(root: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let mut out = vec![];
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                dirs.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((path, rel));
            }
        }
    }
    out.sort();
    Ok(out)
}

//! A persistent cache of compiled executables, so a second run of the same job loads its
//! programs instead of compiling them again.
//!
//! - **Key:** SHA-256 over the HloModuleProto bytes, the serialized compile options, the
//!   plugin (path, file size and modification time, C API version), the client's platform name
//!   and version, and every addressable device's kind. Anything that could change the compiled
//!   code changes the key; a stale entry is never found.
//! - **Entry:** `<key>.pjrt` = a magic line, the payload's length and SHA-256, then the plugin's
//!   serialized executable. A damaged entry (checksum, length, or a plugin that refuses it) is
//!   reported with a warning, removed and recompiled, never loaded.
//! - **Writes** go to a unique temporary file in the same directory and are renamed into place,
//!   so processes writing the same entry at once leave one whole entry.
//! - **Size bound:** after a store, the least recently used entries (by modification time,
//!   refreshed on every hit) are removed until the directory fits.
//! - A plugin that cannot serialize executables is said once; compiling goes on uncached.
use crate::client::Client;
use crate::error::Result;
use crate::executable::Executable;
use crate::options::CompileOptions;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

const MAGIC: &[u8] = b"tpu-run compiled executable v1\n";
/// Default bound of the cache directory.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// Where and how large.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// What a cached compile did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache; nothing compiled.
    Hit,
    /// Compiled and stored.
    Stored,
    /// Compiled; not stored (the plugin cannot serialize, or the write failed: warned).
    Uncached,
}

static SERIALIZE_UNSUPPORTED_SAID: AtomicBool = AtomicBool::new(false);

impl CompileCache {
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        Self {
            dir: dir.into(),
            max_bytes,
        }
    }

    /// `<per-user cache>/compiled`, bounded by [`DEFAULT_MAX_BYTES`].
    pub fn default_location() -> Self {
        Self::new(
            crate::plugin::cache_dir().join("compiled"),
            DEFAULT_MAX_BYTES,
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry key of compiling `module` with `options` on `client`.
    pub fn key(&self, client: &Client, module: &[u8], options: &[u8]) -> Result<String> {
        let mut h = Sha256::new();
        let mut part = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        part(module);
        part(options);
        let plugin = client.plugin();
        part(plugin.path().as_os_str().as_encoded_bytes());
        let (size, mtime) = match std::fs::metadata(plugin.path()) {
            Ok(m) => (
                m.len(),
                m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos()),
            ),
            Err(_) => (0, 0),
        };
        part(&size.to_le_bytes());
        part(&mtime.to_le_bytes());
        let (major, minor) = plugin.api_version();
        part(&major.to_le_bytes());
        part(&minor.to_le_bytes());
        part(client.platform_name()?.as_bytes());
        part(client.platform_version()?.as_bytes());
        for d in client.addressable_devices()? {
            part(d.kind().as_bytes());
        }
        Ok(hex(&h.finalize()))
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.pjrt"))
    }

    /// Loads the executable of `key` if a whole entry exists; a damaged one is removed with a
    /// warning. `load` turns the payload into an executable.
    pub(crate) fn lookup(
        &self,
        key: &str,
        load: impl FnOnce(&[u8]) -> Result<Executable>,
    ) -> Option<Executable> {
        let path = self.entry(key);
        let bytes = std::fs::read(&path).ok()?;
        let payload = match unframe(&bytes) {
            Ok(p) => p,
            Err(why) => {
                self.discard(&path, &why);
                return None;
            }
        };
        match load(payload) {
            Ok(exe) => {
                // Refresh the entry's age for the size bound (least recently used goes first).
                if let Ok(f) = std::fs::File::options().append(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
                Some(exe)
            }
            Err(e) => {
                self.discard(&path, &format!("the plugin could not load it ({e})"));
                None
            }
        }
    }

    fn discard(&self, path: &Path, why: &str) {
        tracing::warn!(
            "compile cache entry {} is unusable ({why}); removing it and compiling again",
            path.display()
        );
        let _ = std::fs::remove_file(path);
    }

    /// Stores `exe` under `key` (see the module docs); what happened.
    pub(crate) fn store(&self, key: &str, exe: &Executable) -> CacheOutcome {
        let payload = match exe.serialize() {
            Ok(p) => p,
            Err(e) => {
                if !SERIALIZE_UNSUPPORTED_SAID.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the plugin cannot serialize executables ({e}); compiling without the \
                         compile cache"
                    );
                }
                return CacheOutcome::Uncached;
            }
        };
        match self.write(key, &payload) {
            Ok(()) => {
                self.evict();
                CacheOutcome::Stored
            }
            Err(e) => {
                tracing::warn!(
                    "could not write the compile cache entry in {}: {e}",
                    self.dir.display()
                );
                CacheOutcome::Uncached
            }
        }
    }

    fn write(&self, key: &str, payload: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = self
            .dir
            .join(format!(".tmp-{key}-{}-{nanos}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&(payload.len() as u64).to_le_bytes())?;
            f.write_all(&Sha256::digest(payload))?;
            f.write_all(payload)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.entry(key))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Removes the oldest entries until the directory fits `max_bytes`.
    fn evict(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "pjrt"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, n, _)| n).sum();
        entries.sort();
        for (_, n, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(n);
            }
        }
    }

    /// Compiles `module` with `options` on `client` through the cache.
    pub fn compile(
        &self,
        client: &Client,
        module: &[u8],
        options: &CompileOptions,
    ) -> Result<(Executable, CacheOutcome)> {
        // Keyed by what the plugin gets, so an entry compiled before an adjustment of
        // `effective_compile_options` is never loaded in its place.
        let effective = client.effective_compile_options(options);
        let key = self.key(client, module, &effective.to_bytes()?)?;
        if let Some(exe) = self.lookup(&key, |p| client.load_compiled(p, module, options)) {
            return Ok((exe, CacheOutcome::Hit));
        }
        let exe = client.compile_uncached(module, options, None)?;
        let outcome = self.store(&key, &exe);
        Ok((exe, outcome))
    }
}

/// The payload of a whole entry, or why it is not one.
fn unframe(bytes: &[u8]) -> std::result::Result<&[u8], String> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| "not a compile cache entry of this version".to_string())?;
    if rest.len() < 40 {
        return Err("truncated header".into());
    }
    let (len, rest) = rest.split_at(8);
    let (digest, payload) = rest.split_at(32);
    let len = u64::from_le_bytes(len.try_into().map_err(|_| "bad length".to_string())?);
    if payload.len() as u64 != len {
        return Err(format!(
            "{} payload bytes, the header says {len}",
            payload.len()
        ));
    }
    if Sha256::digest(payload).as_slice() != digest {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_entries_are_told_apart() {
        let payload = b"executable bytes";
        let mut framed = MAGIC.to_vec();
        framed.extend((payload.len() as u64).to_le_bytes());
        framed.extend(Sha256::digest(payload));
        framed.extend(payload);
        assert_eq!(unframe(&framed).unwrap(), payload);
        let mut flipped = framed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(unframe(&flipped).unwrap_err(), "checksum mismatch");
        assert!(unframe(&framed[..framed.len() - 1])
            .unwrap_err()
            .contains("payload bytes"));
        assert!(unframe(b"other").is_err());
    }
}

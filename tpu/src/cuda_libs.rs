//! Makes the CUDA plugin work with no environment set by hand.
//!
//! The CUDA PJRT plugin (`jax-cuda13-pjrt` / `jax-cuda12-pjrt`) links only libc/libstdc++ and
//! `dlopen`s libcudart, cuBLAS, cuDNN, NCCL, ... by soname at run time. Those libraries come from
//! the `nvidia-*` wheels of a Python environment (`site-packages/nvidia/*/lib`), which are not on
//! the loader's search path. Setting `LD_LIBRARY_PATH` from inside the process does not help: the
//! dynamic loader reads it once, at process start. Instead we `dlopen` every library in those
//! folders by absolute path with `RTLD_NOW | RTLD_GLOBAL` before loading the plugin; a later
//! `dlopen("libcudart.so.13")` by soname then finds the already-loaded library. The libraries
//! depend on each other, so failed loads are retried until a round makes no progress.
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

struct Handle(#[allow(dead_code)] *mut libc::c_void);
// SAFETY: a dlopen handle is an opaque token; we never use it except to keep the library loaded.
unsafe impl Send for Handle {}

fn loaded() -> &'static Mutex<Vec<(PathBuf, Handle)>> {
    static L: OnceLock<Mutex<Vec<(PathBuf, Handle)>>> = OnceLock::new();
    L.get_or_init(|| Mutex::new(Vec::new()))
}

/// `nvidia/*/lib` folders to use for the plugin at `plugin`: those of the site-packages holding
/// the plugin first, then those of every other Python environment on the machine.
pub(crate) fn nvidia_lib_dirs(plugin: &Path) -> Vec<PathBuf> {
    let mut sites: Vec<PathBuf> = plugin
        .ancestors()
        .filter(|a| a.file_name().is_some_and(|n| n == "site-packages"))
        .map(Path::to_path_buf)
        .collect();
    for s in crate::plugin::python_site_dirs() {
        if !sites.contains(&s) {
            sites.push(s);
        }
    }
    let mut out = Vec::new();
    for s in sites {
        let nv = s.join("nvidia");
        let Ok(rd) = std::fs::read_dir(&nv) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path().join("lib"))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        if !dirs.is_empty() {
            out.extend(dirs);
            // One environment's set of CUDA libraries; mixing two would mix CUDA versions.
            break;
        }
    }
    out
}

/// Preloads the CUDA libraries for the plugin at `plugin` (idempotent).
pub(crate) fn preload_for(plugin: &Path) {
    let dirs = nvidia_lib_dirs(plugin);
    let mut files: Vec<PathBuf> = Vec::new();
    for d in &dirs {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                let n = e.file_name().to_string_lossy().to_string();
                if n.contains(".so") && p.is_file() {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    let Ok(mut done) = loaded().lock() else {
        return;
    };
    let mut pending: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| !done.iter().any(|(p, _)| p == f))
        .collect();
    loop {
        let before = pending.len();
        pending.retain(|f| {
            let Ok(c) = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()) else {
                return false;
            };
            // SAFETY: dlopen of a shared library by absolute path; its initializers run once.
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if h.is_null() {
                true
            } else {
                done.push((f.clone(), Handle(h)));
                false
            }
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    if !pending.is_empty() {
        tracing::debug!(?pending, "CUDA libraries that could not be preloaded");
    }
    tracing::debug!(dirs = ?dirs, loaded = done.len(), "preloaded CUDA libraries");
}

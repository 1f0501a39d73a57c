//! Device traces through a plugin's profiler extension (`PJRT_Extension_Type_Profiler`).
//!
//! A plugin that offers one (jax-cuda13-pjrt 0.11.2 does, with a 104-byte table; `xla-cpu-pjrt`
//! 0.0.1 does not: its chain holds PhaseCompile, FFI, MemoryDescriptions and Layouts) runs the
//! tsl profilers registered inside it between `start` and `stop`, and hands back an `XSpace`
//! protobuf, the format TensorBoard's profile plugin and XProf read. Inside the GPU plugin that
//! is the device tracer (CUPTI) only: host events (TraceMe) come from a framework's own host
//! tracer, which tpu-run does not have, so a session on a machine without a GPU records nothing
//! (an empty XSpace).
//!
//! ```no_run
//! # fn main() -> tpu::Result<()> {
//! let client = tpu::Client::cpu(&tpu::ClientOptions::cpu(1))?;
//! match client.plugin().profiler()? {
//!     None => eprintln!("this plugin offers no profiler"),
//!     Some(p) => {
//!         let session = p.start(&tpu::ProfileOptions::default())?;
//!         // ... run steps ...
//!         let xspace: Vec<u8> = session.stop_and_collect()?;
//!         # let _ = xspace;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The tsl profilers allow one session per process at a time; a second `start` fails with the
//! plugin's message.
use crate::error::{Error, Result};
use crate::ffi::{new_args, PJRT_Extension_Base};
use crate::plugin::Plugin;
use crate::profiler_ffi::{
    self as pf, PLUGIN_Profiler, PLUGIN_Profiler_Api, PLUGIN_Profiler_Error,
};

/// What the plugin's profilers record (`tensorflow.ProfileOptions`,
/// tsl/profiler/protobuf/profiler_options.proto). Level 0 turns a tracer off; the defaults are
/// JAX's: host level 2, device level 1, no Python tracer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileOptions {
    /// 0 off, 1 user TraceMe events, 2 also program execution, 3 verbose.
    pub host_tracer_level: u32,
    /// 0 off, 1 on (kernels, copies).
    pub device_tracer_level: u32,
    pub python_tracer_level: u32,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            host_tracer_level: 2,
            device_tracer_level: 1,
            python_tracer_level: 0,
        }
    }
}

/// The fields of `tensorflow.ProfileOptions` tpu-run sets, with the proto's field numbers.
#[derive(Clone, PartialEq, prost::Message)]
struct ProfileOptionsProto {
    #[prost(uint32, tag = "2")]
    host_tracer_level: u32,
    #[prost(uint32, tag = "3")]
    device_tracer_level: u32,
    #[prost(uint32, tag = "4")]
    python_tracer_level: u32,
    /// The tracers read the levels above only when `version >= 1`; below that they apply
    /// their own defaults.
    #[prost(uint32, tag = "5")]
    version: u32,
    /// `DeviceType`: 0 (UNSPECIFIED) enables every registered device profiler.
    #[prost(int32, tag = "6")]
    device_type: i32,
}

impl ProfileOptions {
    /// The serialized `tensorflow.ProfileOptions` passed to `PLUGIN_Profiler_Create`.
    pub fn to_proto_bytes(&self) -> Vec<u8> {
        use prost::Message;
        ProfileOptionsProto {
            host_tracer_level: self.host_tracer_level,
            device_tracer_level: self.device_tracer_level,
            python_tracer_level: self.python_tracer_level,
            version: 1,
            device_type: 0,
        }
        .encode_to_vec()
    }
}

/// Bound on the extension chain walk, so a corrupt (cyclic) chain cannot hang the process.
const MAX_EXTENSIONS: usize = 64;

/// The `type` of every node of an extension chain, in order.
///
/// # Safety
/// `start` must be NULL or the head of a chain of valid `PJRT_Extension_Base` nodes (static data
/// of a loaded plugin).
pub(crate) unsafe fn extension_types(start: *const PJRT_Extension_Base) -> Vec<i32> {
    let mut types = Vec::new();
    let mut node = start;
    while !node.is_null() && types.len() < MAX_EXTENSIONS {
        // SAFETY: guaranteed by the caller; every node starts with a PJRT_Extension_Base.
        let base = unsafe { &*node };
        types.push(base.type_);
        node = base.next;
    }
    types
}

/// The profiler table of an extension chain: `Ok(None)` when the chain has no profiler node,
/// an error when it has one that cannot be used.
///
/// # Safety
/// As [`extension_types`].
pub(crate) unsafe fn find_profiler(
    start: *const PJRT_Extension_Base,
) -> Result<Option<*const PLUGIN_Profiler_Api>> {
    let mut node = start;
    let mut seen = 0;
    while !node.is_null() && seen < MAX_EXTENSIONS {
        seen += 1;
        // SAFETY: guaranteed by the caller.
        let base = unsafe { &*node };
        if base.type_ != pf::PJRT_Extension_Type_Profiler {
            node = base.next;
            continue;
        }
        if base.struct_size < pf::PROFILER_API_FIELD_END {
            return Err(Error::Plugin(format!(
                "the plugin's profiler extension has struct_size {}, too small to hold the \
                 profiler table (needs {})",
                base.struct_size,
                pf::PROFILER_API_FIELD_END
            )));
        }
        // SAFETY: the node is a PJRT_Profiler_Extension (its type says so) and is large enough
        // to hold `profiler_api` (checked above).
        let ext = unsafe { &*(node as *const pf::PJRT_Profiler_Extension) };
        if ext.profiler_api.is_null() {
            return Err(Error::Plugin(
                "the plugin's profiler extension has no profiler table (profiler_api is NULL)"
                    .into(),
            ));
        }
        return Ok(Some(ext.profiler_api));
    }
    Ok(None)
}

/// A plugin's profiler table, checked to hold every entry tpu-run calls.
#[derive(Clone, Copy)]
struct Table(*const PLUGIN_Profiler_Api);

// SAFETY: the table is immutable static data of a plugin that is never unloaded; the tsl
// profiler entry points may be called from any thread.
unsafe impl Send for Table {}
// SAFETY: as above; the table has no interior mutability.
unsafe impl Sync for Table {}

impl Table {
    /// # Safety
    /// `raw` must point to a `PLUGIN_Profiler_Api` that lives for the rest of the process.
    unsafe fn new(raw: *const PLUGIN_Profiler_Api) -> Result<Table> {
        // SAFETY: guaranteed by the caller; `struct_size` is the first field of every version.
        let size = unsafe { (*raw).struct_size };
        if size < pf::PLUGIN_PROFILER_API_STRUCT_SIZE {
            return Err(Error::Plugin(format!(
                "the plugin's profiler table has struct_size {size}, smaller than the {} \
                 bytes of PLUGIN_Profiler_Api version 1 (needs a newer plugin)",
                pf::PLUGIN_PROFILER_API_STRUCT_SIZE
            )));
        }
        // SAFETY: the table holds every field we declare (size checked above).
        let t = unsafe { &*raw };
        let entries = [
            ("error_destroy", t.error_destroy.is_some()),
            ("error_message", t.error_message.is_some()),
            ("error_get_code", t.error_get_code.is_some()),
            ("create", t.create.is_some()),
            ("destroy", t.destroy.is_some()),
            ("start", t.start.is_some()),
            ("stop", t.stop.is_some()),
            ("collect_data", t.collect_data.is_some()),
        ];
        if let Some((name, _)) = entries.iter().find(|(_, present)| !present) {
            return Err(Error::Plugin(format!(
                "the plugin's profiler table has no `{name}` entry"
            )));
        }
        Ok(Table(raw))
    }

    fn raw(&self) -> &PLUGIN_Profiler_Api {
        // SAFETY: checked in `new`; the table is static data of a library never unloaded.
        unsafe { &*self.0 }
    }

    /// Turns a returned `PLUGIN_Profiler_Error*` into [`Error::Pjrt`] (the plugin's message and
    /// code), destroying it. NULL means success.
    fn take_error(&self, err: *mut PLUGIN_Profiler_Error, call: &'static str) -> Result<()> {
        if err.is_null() {
            return Ok(());
        }
        let t = self.raw();
        let mut message = String::from("(no message)");
        let mut code = 2; // UNKNOWN
        if let Some(f) = t.error_message {
            let mut a: pf::PLUGIN_Profiler_Error_Message_Args = new_args();
            a.error = err;
            // SAFETY: `err` is a live error of this plugin; args zeroed and sized.
            unsafe { f(&mut a) };
            // SAFETY: message/message_size describe bytes owned by `err`, alive until destroy.
            message = unsafe { crate::api::str_from(a.message, a.message_size) };
        }
        if let Some(f) = t.error_get_code {
            let mut a: pf::PLUGIN_Profiler_Error_GetCode_Args = new_args();
            a.error = err;
            // SAFETY: as above.
            let e2 = unsafe { f(&mut a) };
            if e2.is_null() {
                code = a.code;
            } else {
                self.destroy_error(e2);
            }
        }
        self.destroy_error(err);
        Err(Error::Pjrt {
            code,
            message,
            call,
        })
    }

    fn destroy_error(&self, err: *mut PLUGIN_Profiler_Error) {
        if let Some(f) = self.raw().error_destroy {
            let mut a: pf::PLUGIN_Profiler_Error_Destroy_Args = new_args();
            a.error = err;
            // SAFETY: `err` is a live error of this plugin, destroyed exactly once here.
            unsafe { f(&mut a) };
        }
    }
}

/// Calls a profiler table entry (checked present in `Table::new`) and converts its error.
macro_rules! profiler_call {
    ($table:expr, $entry:ident, $args:expr) => {{
        let table: &Table = $table;
        match table.raw().$entry {
            None => Err(Error::Plugin(format!(
                "the plugin's profiler table has no `{}` entry",
                stringify!($entry)
            ))),
            Some(f) => {
                // SAFETY: the entry has this signature per profiler_c_api.h; `$args` is an args
                // struct made by `new_args` whose pointers the caller keeps valid for the call.
                let err = unsafe { f($args) };
                table.take_error(err, concat!("PLUGIN_Profiler_", stringify!($entry)))
            }
        }
    }};
}

/// A plugin's profiler extension. Cheap to clone.
#[derive(Clone)]
pub struct Profiler {
    table: Table,
    // Ties the table to its plugin (which the registry never unloads anyway).
    _plugin: Option<Plugin>,
}

impl std::fmt::Debug for Profiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiler")
            .field("table_struct_size", &self.table.raw().struct_size)
            .finish()
    }
}

impl Plugin {
    /// The plugin's profiler extension, `Ok(None)` when the plugin offers none; an error when
    /// it offers one tpu-run cannot use (a table older than version 1, a missing entry).
    pub fn profiler(&self) -> Result<Option<Profiler>> {
        self.ensure_initialized()?;
        // SAFETY: the chain is static data of the loaded plugin (never unloaded).
        let found = unsafe { find_profiler(self.api().raw().extension_start) }?;
        let Some(raw) = found else { return Ok(None) };
        // SAFETY: the table is static data of the loaded plugin.
        let table = unsafe { Table::new(raw) }?;
        Ok(Some(Profiler {
            table,
            _plugin: Some(self.clone()),
        }))
    }

    /// `PJRT_Extension_Type` of every extension the plugin offers, in chain order
    /// (1 = profiler; see `pjrt_c_api.h`).
    pub fn extension_types(&self) -> Vec<i32> {
        // SAFETY: the chain is static data of the loaded plugin (never unloaded).
        unsafe { extension_types(self.api().raw().extension_start) }
    }
}

impl Profiler {
    /// Creates a profiler session with `options` and starts it.
    pub fn start(&self, options: &ProfileOptions) -> Result<ProfilerSession> {
        let bytes = options.to_proto_bytes();
        let mut a: pf::PLUGIN_Profiler_Create_Args = new_args();
        a.options = bytes.as_ptr() as *const std::ffi::c_char;
        a.options_size = bytes.len();
        profiler_call!(&self.table, create, &mut a)?;
        if a.profiler.is_null() {
            return Err(Error::Plugin(
                "PLUGIN_Profiler_Create returned no profiler".into(),
            ));
        }
        // From here on Drop destroys the profiler, also when Start fails.
        let mut session = ProfilerSession {
            profiler: self.clone(),
            raw: a.profiler,
            running: false,
        };
        let mut s: pf::PLUGIN_Profiler_Start_Args = new_args();
        s.profiler = session.raw;
        profiler_call!(&self.table, start, &mut s)?;
        session.running = true;
        Ok(session)
    }
}

/// A started profiler session. Dropping it without [`stop_and_collect`](Self::stop_and_collect)
/// stops it and discards the trace.
#[derive(Debug)]
pub struct ProfilerSession {
    profiler: Profiler,
    raw: *mut PLUGIN_Profiler,
    running: bool,
}

impl ProfilerSession {
    /// Stops the session and returns the trace: serialized `tensorflow.profiler.XSpace` bytes
    /// (empty when the plugin recorded nothing).
    pub fn stop_and_collect(mut self) -> Result<Vec<u8>> {
        self.stop()?;
        self.collect()
    }

    fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let mut a: pf::PLUGIN_Profiler_Stop_Args = new_args();
        a.profiler = self.raw;
        profiler_call!(&self.profiler.table, stop, &mut a)
    }

    /// `PLUGIN_Profiler_CollectData`. The header asks for two calls: the first (buffer NULL)
    /// reports the size, the second fills a caller buffer of that size. XLA's implementation
    /// (plugin_tracer_impl.cc) instead answers the first call with a pointer to its own buffer
    /// and ignores the second, and that buffer holds one extra zero byte after the message. Both
    /// are handled: a buffer returned by the first call is copied, else a second call fills ours;
    /// the stray byte is dropped so the result parses as an XSpace.
    fn collect(&mut self) -> Result<Vec<u8>> {
        let table = &self.profiler.table;
        let mut a: pf::PLUGIN_Profiler_CollectData_Args = new_args();
        a.profiler = self.raw;
        profiler_call!(table, collect_data, &mut a)?;
        let size = a.buffer_size_in_bytes;
        tracing::debug!(
            size,
            plugin_buffer = !a.buffer.is_null(),
            "PLUGIN_Profiler_CollectData"
        );
        if size == 0 {
            return Ok(Vec::new());
        }
        let bytes = if !a.buffer.is_null() {
            // SAFETY: the plugin returned `size` bytes at `buffer`, owned by the profiler object
            // and valid until the next call on it; copied before any further call.
            unsafe { crate::api::vec_from(a.buffer as *const u8, size) }
        } else {
            let mut buf = vec![0u8; size];
            a.buffer = buf.as_mut_ptr();
            profiler_call!(table, collect_data, &mut a)?;
            // The plugin writes at most the size it announced; never read past our buffer.
            buf.truncate(a.buffer_size_in_bytes.min(size));
            buf
        };
        Ok(strip_trailing_nul(bytes))
    }
}

impl Drop for ProfilerSession {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!("stopping the profiler: {e}");
        }
        let mut a: pf::PLUGIN_Profiler_Destroy_Args = new_args();
        a.profiler = self.raw;
        if let Err(e) = profiler_call!(&self.profiler.table, destroy, &mut a) {
            tracing::warn!("destroying the profiler: {e}");
        }
    }
}

/// Drops a final zero byte that follows a complete protobuf message. A zero byte there would be
/// a field tag 0, which no message contains, so it can only be padding; a zero that is part of a
/// field (the last byte of a varint or of a string) leaves the bytes before it incomplete and is
/// kept.
pub(crate) fn strip_trailing_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some((&0, head)) = bytes.split_last() {
        if ends_after_complete_fields(head) {
            bytes.pop();
        }
    }
    bytes
}

/// Whether `b` is a sequence of complete protobuf fields (wire types 0, 1, 2 and 5).
fn ends_after_complete_fields(b: &[u8]) -> bool {
    fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*pos)?;
            *pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut pos = 0;
    while pos < b.len() {
        let Some(tag) = varint(b, &mut pos) else {
            return false;
        };
        if tag >> 3 == 0 {
            return false;
        }
        let skip = match tag & 7 {
            0 => match varint(b, &mut pos) {
                Some(_) => 0,
                None => return false,
            },
            1 => 8,
            2 => match varint(b, &mut pos).and_then(|n| usize::try_from(n).ok()) {
                Some(n) => n,
                None => return false,
            },
            5 => 4,
            _ => return false,
        };
        pos = match pos.checked_add(skip) {
            Some(p) if p <= b.len() => p,
            _ => return false,
        };
    }
    true
}

#[cfg(test)]
#[path = "profiler_tests.rs"]
mod tests;

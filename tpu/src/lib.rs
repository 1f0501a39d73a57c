//! PJRT runtime: loads PJRT plugins with dlopen and compiles and runs HLO modules on them.
//!
//! ```no_run
//! use tpu::{Client, ClientOptions, CompileOptions};
//! # fn main() -> tpu::Result<()> {
//! # let module_bytes: Vec<u8> = Vec::new();
//! let client = Client::cpu(&ClientOptions::cpu(2))?; // installs the CPU plugin on first use
//! let dev = &client.addressable_devices()?[0];
//! let x = client.buffer_from_host(&[1.0f32, 2.0, 3.0], &[3], dev)?;
//! let exe = client.compile(&module_bytes, &CompileOptions::default())?;
//! let out = exe.execute(&[&x])?;
//! let values: Vec<f32> = out[0].to_host()?;
//! # let _ = values; Ok(()) }
//! ```
//!
//! Thread safety: `Plugin`, `Client`, `Device`, `Buffer` and `Executable` are `Send + Sync`. The
//! PJRT C API's objects are thread-safe by contract (frameworks call one client, executable and
//! buffer from many threads); every handle keeps an `Arc` to its client, so the client (and the
//! plugin library, which is never unloaded) outlives it; each PJRT object is destroyed once, in
//! `Drop`.

/// Calls a `PJRT_Api` entry with an args struct, after checking that the plugin's table has the
/// entry; converts a returned `PJRT_Error` into [`Error::Pjrt`].
macro_rules! pjrt {
    ($api:expr, $entry:ident, $args:expr) => {{
        let api: &$crate::api::Api = $api;
        match api.check(
            ::std::mem::offset_of!($crate::ffi::PJRT_Api, $entry),
            stringify!($entry),
        ) {
            Err(e) => Err(e),
            Ok(()) => match api.raw().$entry {
                None => Err(api.missing(stringify!($entry))),
                Some(f) => {
                    // SAFETY: the entry lies inside this plugin's table (checked above) and has
                    // this signature per pjrt_c_api.h; `$args` is an args struct made by
                    // `new_args` whose pointers the caller keeps valid for the call.
                    let err = unsafe { f($args) };
                    api.take_error(err, stringify!($entry))
                }
            },
        }
    }};
}

pub(crate) mod api;
pub mod buffer;
pub mod client;
pub mod compile_cache;
mod cuda_libs;
pub mod device;
pub mod error;
pub mod executable;
pub mod execution;
pub mod ffi;
pub mod host_malloc;
pub mod kv_store;
pub mod options;
pub mod pinned;
pub mod plugin;
pub mod profiler;
pub mod profiler_ffi;
pub mod topology;
pub mod tpu_host;
pub mod tpu_safety;

pub use buffer::{Buffer, HostArray};
pub use client::Client;
pub use compile_cache::{CacheOutcome, CompileCache};
pub use device::{Device, DeviceMemoryStats};
pub use error::{Error, Result};
pub use executable::{ArrayShape, CompiledMemoryStats, Executable};
pub use execution::Execution;
pub use kv_store::{KeyValueStore, KvError, KvErrorKind};
pub use options::{ClientOptions, CompileOptions, ExecuteOptions, OptionOverride, Value};
pub use plugin::{Plugin, PluginInfo, PluginKind};
pub use profiler::{ProfileOptions, Profiler, ProfilerSession};
pub use topology::{AotExecutable, DeviceDescription, Topology};

/// Compile-time proof that the handles are `Send + Sync`.
#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Plugin>();
    f::<Client>();
    f::<Device>();
    f::<Buffer>();
    f::<Executable>();
    f::<Topology>();
    f::<AotExecutable>();
}

//! `PJRT_Client`: created from a plugin with typed options; owns devices, buffers, executables.
use crate::api::{str_from, Api};
use crate::device::Device;
use crate::error::Result;
use crate::ffi::{self, new_args};
use crate::kv_store::{KeyValueStore, KvCallbacks};
use crate::options::{ClientOptions, NamedValueArray};
use crate::plugin::{Plugin, PluginKind};
use std::sync::Arc;

pub(crate) struct ClientInner {
    pub(crate) plugin: Plugin,
    pub(crate) raw: *mut ffi::PJRT_Client,
    /// The key-value callbacks' target, where the client was made with a store. Dropped after
    /// `PJRT_Client_Destroy` (fields drop after `Drop::drop`), since the plugin may call the
    /// callbacks until then.
    _kv: Option<Box<KvCallbacks>>,
    /// Where compiles go through, once enabled ([`Client::enable_compile_cache`]).
    pub(crate) compile_cache: std::sync::OnceLock<crate::compile_cache::CompileCache>,
}

// SAFETY: PJRT clients are thread-safe by the C API's contract (every framework calls one client
// from many threads; the header's functions take no thread affinity). The raw pointer is only
// destroyed in Drop, after every Buffer/Executable/Device (which hold an Arc to this) is gone.
unsafe impl Send for ClientInner {}
// SAFETY: as above; no Rust-side mutable state.
unsafe impl Sync for ClientInner {}

impl ClientInner {
    pub(crate) fn api(&self) -> &Api {
        self.plugin.api()
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        let mut a: ffi::PJRT_Client_Destroy_Args = new_args();
        a.client = self.raw;
        if let Err(e) = pjrt!(self.api(), PJRT_Client_Destroy, &mut a) {
            tracing::warn!("destroying PJRT client: {e}");
        }
    }
}

/// A PJRT client. Cheap to clone (shared handle); `Send + Sync`.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("plugin", &self.inner.plugin.path())
            .finish()
    }
}

impl Client {
    /// Creates a client. For libtpu, enforces the safety rule first (see `tpu_safety`).
    pub fn new(plugin: &Plugin, options: &ClientOptions) -> Result<Client> {
        Client::create(plugin, options, None)
    }

    /// Creates a client of a multi-process run: the plugin gets `store` as its cross-process
    /// key-value store (the get, try-get and put callbacks of `PJRT_Client_Create`), which it
    /// may call during creation and for as long as the client lives. Put the process's place in
    /// the run in `options` too ([`ClientOptions::for_process`] says what each plugin needs).
    pub fn with_kv_store(
        plugin: &Plugin,
        options: &ClientOptions,
        store: Arc<dyn KeyValueStore>,
    ) -> Result<Client> {
        Client::create(plugin, options, Some(KvCallbacks::new(store)))
    }

    fn create(
        plugin: &Plugin,
        options: &ClientOptions,
        kv: Option<Box<KvCallbacks>>,
    ) -> Result<Client> {
        plugin.ensure_initialized()?;
        if plugin.kind() == Some(PluginKind::Tpu) {
            crate::tpu_safety::check_libtpu_client_allowed()?;
        }
        let named = options.named_values()?;
        let array = NamedValueArray::new(&named);
        let mut a: ffi::PJRT_Client_Create_Args = new_args();
        a.create_options = array.values.as_ptr();
        a.num_options = array.values.len();
        if let Some(kv) = &kv {
            kv.install(&mut a);
        }
        pjrt!(plugin.api(), PJRT_Client_Create, &mut a)?;
        drop(array);
        if a.client.is_null() {
            return Err(crate::Error::Plugin(
                "PJRT_Client_Create returned no client".into(),
            ));
        }
        Ok(Client {
            inner: Arc::new(ClientInner {
                plugin: plugin.clone(),
                raw: a.client,
                _kv: kv,
                compile_cache: std::sync::OnceLock::new(),
            }),
        })
    }

    /// A client on the default CPU plugin (installed on first use).
    pub fn cpu(options: &ClientOptions) -> Result<Client> {
        Client::new(&Plugin::cpu_default()?, options)
    }

    pub fn plugin(&self) -> &Plugin {
        &self.inner.plugin
    }

    /// Routes every later compile of this client (and its clones) through `cache`. Once per
    /// client; a second call is ignored and returns false.
    pub fn enable_compile_cache(&self, cache: crate::compile_cache::CompileCache) -> bool {
        self.inner.compile_cache.set(cache).is_ok()
    }

    /// The cache compiles go through, if enabled.
    pub fn compile_cache(&self) -> Option<&crate::compile_cache::CompileCache> {
        self.inner.compile_cache.get()
    }

    pub(crate) fn api(&self) -> &Api {
        self.inner.api()
    }

    /// "cpu", "cuda", "tpu", ...
    pub fn platform_name(&self) -> Result<String> {
        let mut a: ffi::PJRT_Client_PlatformName_Args = new_args();
        a.client = self.inner.raw;
        pjrt!(self.api(), PJRT_Client_PlatformName, &mut a)?;
        // SAFETY: the string is owned by the client, which is alive.
        Ok(unsafe { str_from(a.platform_name, a.platform_name_size) })
    }

    pub fn platform_version(&self) -> Result<String> {
        let mut a: ffi::PJRT_Client_PlatformVersion_Args = new_args();
        a.client = self.inner.raw;
        pjrt!(self.api(), PJRT_Client_PlatformVersion, &mut a)?;
        // SAFETY: the string is owned by the client, which is alive.
        Ok(unsafe { str_from(a.platform_version, a.platform_version_size) })
    }

    pub fn process_index(&self) -> Result<i32> {
        let mut a: ffi::PJRT_Client_ProcessIndex_Args = new_args();
        a.client = self.inner.raw;
        pjrt!(self.api(), PJRT_Client_ProcessIndex, &mut a)?;
        Ok(a.process_index)
    }

    /// All devices, addressable or not.
    pub fn devices(&self) -> Result<Vec<Device>> {
        let mut a: ffi::PJRT_Client_Devices_Args = new_args();
        a.client = self.inner.raw;
        pjrt!(self.api(), PJRT_Client_Devices, &mut a)?;
        // SAFETY: the array is owned by the client, which is alive.
        let raws = unsafe { crate::api::vec_from(a.devices, a.num_devices) };
        raws.into_iter()
            .map(|d| Device::from_raw(&self.inner, d))
            .collect()
    }

    /// Devices this process can issue work to.
    pub fn addressable_devices(&self) -> Result<Vec<Device>> {
        let mut a: ffi::PJRT_Client_AddressableDevices_Args = new_args();
        a.client = self.inner.raw;
        pjrt!(self.api(), PJRT_Client_AddressableDevices, &mut a)?;
        // SAFETY: the array is owned by the client, which is alive.
        let raws =
            unsafe { crate::api::vec_from(a.addressable_devices, a.num_addressable_devices) };
        raws.into_iter()
            .map(|d| Device::from_raw(&self.inner, d))
            .collect()
    }
}

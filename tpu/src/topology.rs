//! Topologies and ahead-of-time compilation: `PJRT_TopologyDescription_*` and `PJRT_Compile`.
//!
//! A topology describes devices a plugin can compile for without having them (libtpu: any Cloud
//! TPU slice by name, e.g. `v5e:2x2`). [`Topology::compile`] gives an [`AotExecutable`]: not
//! loaded on any device, but it reports the compiler's memory sizes and cost analysis and
//! serializes for loading on the real hardware later. [`Client::topology`] and
//! [`Device::description`] give the same descriptions for a live client's devices.
//!
//! libtpu safety: every entry here that makes libtpu run code checks the rule of
//! [`crate::tpu_safety`] first (no network unless a TPU is present), like client creation does.
use crate::api::{str_from, vec_from, Api};
use crate::client::Client;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::executable::{cost_analysis_of, memory_stats_of, serialize_of, CompiledMemoryStats};
use crate::ffi::{self, new_args};
use crate::options::{read_named_values, CompileOptions, NamedValueArray, Value};
use crate::plugin::{Plugin, PluginKind};
use std::ffi::c_char;

/// What a plugin says about one device (live or described by a topology).
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceDescription {
    pub id: i32,
    pub process_index: i32,
    /// e.g. "TPU v5 lite", "cpu".
    pub kind: String,
    /// `PJRT_DeviceDescription_ToString`, e.g. "TPU_0(process=0,(0,0,0,0))".
    pub summary: String,
    /// Plugin-specific attributes (libtpu: `coords`, `core_on_chip`, ...); empty where none.
    pub attributes: Vec<(String, Value)>,
}

impl DeviceDescription {
    /// An attribute by name.
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Reads a plugin-owned description.
    ///
    /// # Safety
    /// `desc` must be a live `PJRT_DeviceDescription` of the plugin whose table is `api`, and stay
    /// alive during the call.
    pub(crate) unsafe fn read(api: &Api, desc: *mut ffi::PJRT_DeviceDescription) -> Result<Self> {
        if desc.is_null() {
            return Err(Error::Plugin(
                "the plugin returned a NULL device description".into(),
            ));
        }
        let mut id: ffi::PJRT_DeviceDescription_Id_Args = new_args();
        id.device_description = desc;
        pjrt!(api, PJRT_DeviceDescription_Id, &mut id)?;
        let mut p: ffi::PJRT_DeviceDescription_ProcessIndex_Args = new_args();
        p.device_description = desc;
        pjrt!(api, PJRT_DeviceDescription_ProcessIndex, &mut p)?;
        let mut k: ffi::PJRT_DeviceDescription_Kind_Args = new_args();
        k.device_description = desc;
        pjrt!(api, PJRT_DeviceDescription_Kind, &mut k)?;
        // SAFETY: owned by the description, alive (caller's guarantee).
        let kind = unsafe { str_from(k.device_kind, k.device_kind_size) };
        let mut t: ffi::PJRT_DeviceDescription_ToString_Args = new_args();
        t.device_description = desc;
        pjrt!(api, PJRT_DeviceDescription_ToString, &mut t)?;
        // SAFETY: as above.
        let summary = unsafe { str_from(t.to_string, t.to_string_size) };
        let mut a: ffi::PJRT_DeviceDescription_Attributes_Args = new_args();
        a.device_description = desc;
        let attributes = match pjrt!(api, PJRT_DeviceDescription_Attributes, &mut a) {
            // SAFETY: as above.
            Ok(()) => unsafe { read_named_values(a.attributes, a.num_attributes) },
            Err(e) if unsupported(&e) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(DeviceDescription {
            id: id.id,
            process_index: p.process_index,
            kind,
            summary,
            attributes,
        })
    }
}

fn unsupported(e: &Error) -> bool {
    matches!(e, Error::ApiTooOld { .. })
        || matches!(e, Error::Pjrt { code, .. } if *code == ffi::PJRT_Error_Code_UNIMPLEMENTED)
}

/// The libtpu rule before any topology call: libtpu (or a plugin we cannot name, which may be
/// libtpu under another file name) runs only without network where there is no TPU.
fn check_safety(plugin: &Plugin) -> Result<()> {
    match plugin.kind() {
        Some(PluginKind::Cpu) | Some(PluginKind::Cuda) => Ok(()),
        Some(PluginKind::Tpu) | None => crate::tpu_safety::check_libtpu_client_allowed(),
    }
}

/// Who owns the `PJRT_TopologyDescription`.
enum Owner {
    /// Made by `PJRT_TopologyDescription_Create`: destroyed in Drop.
    Plugin(Plugin),
    /// Returned by `PJRT_Client_TopologyDescription`: owned by the client, kept alive here.
    Client(Client),
}

/// A topology: the devices of a (possibly absent) system a plugin can compile for.
pub struct Topology {
    owner: Owner,
    raw: *mut ffi::PJRT_TopologyDescription,
    name: String,
}

// SAFETY: PJRT topology descriptions are immutable after creation and the C API's functions are
// thread-safe; the pointer is destroyed once, in Drop, and its plugin is never unloaded.
unsafe impl Send for Topology {}
// SAFETY: as above.
unsafe impl Sync for Topology {}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Owner::Plugin(p) = &self.owner {
            let mut a: ffi::PJRT_TopologyDescription_Destroy_Args = new_args();
            a.topology = self.raw;
            if let Err(e) = pjrt!(p.api(), PJRT_TopologyDescription_Destroy, &mut a) {
                tracing::warn!("destroying PJRT topology: {e}");
            }
        }
    }
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("name", &self.name)
            .finish()
    }
}

impl Topology {
    /// `PJRT_TopologyDescription_Create` with a topology name as the plugin spells it (libtpu:
    /// `v4:2x2x1`, `v5e:2x2`, `v5p:2x2x1`, ...) and plugin-specific options. Needs no device.
    pub fn create(plugin: &Plugin, name: &str, options: &[(String, Value)]) -> Result<Topology> {
        check_safety(plugin)?;
        plugin.ensure_initialized()?;
        let array = NamedValueArray::new(options);
        let mut a: ffi::PJRT_TopologyDescription_Create_Args = new_args();
        a.topology_name = name.as_ptr() as *const c_char;
        a.topology_name_size = name.len();
        a.create_options = array.values.as_ptr();
        a.num_options = array.values.len();
        pjrt!(plugin.api(), PJRT_TopologyDescription_Create, &mut a)?;
        drop(array);
        if a.topology.is_null() {
            return Err(Error::Plugin(
                "PJRT_TopologyDescription_Create returned no topology".into(),
            ));
        }
        Ok(Topology {
            owner: Owner::Plugin(plugin.clone()),
            raw: a.topology,
            name: name.to_string(),
        })
    }

    /// The name it was created with ("" for a client's runtime topology).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn plugin(&self) -> &Plugin {
        match &self.owner {
            Owner::Plugin(p) => p,
            Owner::Client(c) => c.plugin(),
        }
    }

    fn api(&self) -> &Api {
        self.plugin().api()
    }

    /// "tpu", "cpu", ...
    pub fn platform_name(&self) -> Result<String> {
        let mut a: ffi::PJRT_TopologyDescription_PlatformName_Args = new_args();
        a.topology = self.raw;
        pjrt!(self.api(), PJRT_TopologyDescription_PlatformName, &mut a)?;
        // SAFETY: owned by the topology, which is alive.
        Ok(unsafe { str_from(a.platform_name, a.platform_name_size) })
    }

    pub fn platform_version(&self) -> Result<String> {
        let mut a: ffi::PJRT_TopologyDescription_PlatformVersion_Args = new_args();
        a.topology = self.raw;
        pjrt!(self.api(), PJRT_TopologyDescription_PlatformVersion, &mut a)?;
        // SAFETY: owned by the topology, which is alive.
        Ok(unsafe { str_from(a.platform_version, a.platform_version_size) })
    }

    /// Every device of the topology, addressable or not.
    pub fn device_descriptions(&self) -> Result<Vec<DeviceDescription>> {
        let mut a: ffi::PJRT_TopologyDescription_GetDeviceDescriptions_Args = new_args();
        a.topology = self.raw;
        pjrt!(
            self.api(),
            PJRT_TopologyDescription_GetDeviceDescriptions,
            &mut a
        )?;
        // SAFETY: the array has the topology's lifetime.
        let raws = unsafe { vec_from(a.descriptions, a.num_descriptions) };
        raws.into_iter()
            // SAFETY: each description has the topology's lifetime.
            .map(|d| unsafe { DeviceDescription::read(self.api(), d) })
            .collect()
    }

    /// Platform-specific attributes of the whole topology; empty where the plugin has none.
    pub fn attributes(&self) -> Result<Vec<(String, Value)>> {
        let mut a: ffi::PJRT_TopologyDescription_Attributes_Args = new_args();
        a.topology = self.raw;
        match pjrt!(self.api(), PJRT_TopologyDescription_Attributes, &mut a) {
            // SAFETY: owned by the topology, which is alive.
            Ok(()) => Ok(unsafe { read_named_values(a.attributes, a.num_attributes) }),
            Err(e) if unsupported(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// A serialization of the topology (for cache keys and to recreate it later).
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let mut a: ffi::PJRT_TopologyDescription_Serialize_Args = new_args();
        a.topology = self.raw;
        pjrt!(self.api(), PJRT_TopologyDescription_Serialize, &mut a)?;
        // SAFETY: the bytes live until the deleter runs, right after the copy.
        let bytes = unsafe { vec_from(a.serialized_bytes as *const u8, a.serialized_bytes_size) };
        if let Some(del) = a.serialized_topology_deleter {
            // SAFETY: called exactly once on the object the plugin returned.
            unsafe { del(a.serialized_topology) };
        }
        Ok(bytes)
    }

    /// `PJRT_Compile`: compiles a serialized HloModuleProto for this topology, with no device.
    pub fn compile(&self, module: &[u8], options: &CompileOptions) -> Result<AotExecutable> {
        check_safety(self.plugin())?;
        let opts = options.to_bytes()?;
        let format = b"hlo";
        let mut program: ffi::PJRT_Program = new_args();
        program.code = module.as_ptr() as *mut c_char;
        program.code_size = module.len();
        program.format = format.as_ptr() as *const c_char;
        program.format_size = format.len();
        let mut a: ffi::PJRT_Compile_Args = new_args();
        a.topology = self.raw;
        a.program = &program;
        a.compile_options = opts.as_ptr() as *const c_char;
        a.compile_options_size = opts.len();
        if let Owner::Client(c) = &self.owner {
            a.client = c.inner.raw;
        }
        pjrt!(self.api(), PJRT_Compile, &mut a)?;
        if a.executable.is_null() {
            return Err(Error::Plugin("PJRT_Compile returned no executable".into()));
        }
        Ok(AotExecutable {
            plugin: self.plugin().clone(),
            raw: a.executable,
        })
    }

    /// Lowers an IR module and compiles it for this topology (see [`Topology::compile`]).
    pub fn compile_module(
        &self,
        module: &hlo::Module,
        options: &CompileOptions,
    ) -> Result<AotExecutable> {
        self.compile(&module.to_proto_bytes()?, options)
    }
}

impl Client {
    /// The runtime topology of this client (`PJRT_Client_TopologyDescription`), where the
    /// plugin offers one.
    pub fn topology(&self) -> Result<Topology> {
        let mut a: ffi::PJRT_Client_TopologyDescription_Args = new_args();
        a.client = self.inner.raw;
        pjrt!(self.api(), PJRT_Client_TopologyDescription, &mut a)?;
        if a.topology.is_null() {
            return Err(Error::Plugin(
                "PJRT_Client_TopologyDescription returned no topology".into(),
            ));
        }
        Ok(Topology {
            owner: Owner::Client(self.clone()),
            raw: a.topology,
            name: String::new(),
        })
    }
}

impl Device {
    /// The device's description, with the plugin's attributes (libtpu: coordinates, core).
    pub fn description(&self) -> Result<DeviceDescription> {
        let api = self.client.api();
        let mut d: ffi::PJRT_Device_GetDescription_Args = new_args();
        d.device = self.raw;
        pjrt!(api, PJRT_Device_GetDescription, &mut d)?;
        // SAFETY: the description is owned by the device, alive with the client we hold.
        unsafe { DeviceDescription::read(api, d.device_description) }
    }
}

/// An executable compiled for a topology and not loaded on any device.
pub struct AotExecutable {
    plugin: Plugin,
    raw: *mut ffi::PJRT_Executable,
}

// SAFETY: PJRT executables are thread-safe by the C API's contract; destroyed once in Drop.
unsafe impl Send for AotExecutable {}
// SAFETY: as above.
unsafe impl Sync for AotExecutable {}

impl Drop for AotExecutable {
    fn drop(&mut self) {
        let mut a: ffi::PJRT_Executable_Destroy_Args = new_args();
        a.executable = self.raw;
        if let Err(e) = pjrt!(self.plugin.api(), PJRT_Executable_Destroy, &mut a) {
            tracing::warn!("destroying PJRT executable: {e}");
        }
    }
}

impl AotExecutable {
    pub fn name(&self) -> Result<String> {
        let mut a: ffi::PJRT_Executable_Name_Args = new_args();
        a.executable = self.raw;
        pjrt!(self.plugin.api(), PJRT_Executable_Name, &mut a)?;
        // SAFETY: owned by the executable, which is alive.
        Ok(unsafe { str_from(a.executable_name, a.executable_name_size) })
    }

    /// Outputs per device (a tuple root counts its elements).
    pub fn num_outputs(&self) -> Result<usize> {
        let mut a: ffi::PJRT_Executable_NumOutputs_Args = new_args();
        a.executable = self.raw;
        pjrt!(self.plugin.api(), PJRT_Executable_NumOutputs, &mut a)?;
        Ok(a.num_outputs)
    }

    /// Per-device memory the compiler planned; `None` where the plugin does not say.
    pub fn memory_stats(&self) -> Result<Option<CompiledMemoryStats>> {
        // SAFETY: `raw` is alive until Drop.
        unsafe { memory_stats_of(self.plugin.api(), self.raw) }
    }

    /// The compiler's cost analysis (e.g. `flops`, `bytes accessed`); `None` where not offered.
    pub fn cost_analysis(&self) -> Result<Option<Vec<(String, Value)>>> {
        // SAFETY: `raw` is alive until Drop.
        unsafe { cost_analysis_of(self.plugin.api(), self.raw) }
    }

    /// The plugin's serialization, loadable on matching hardware with the same plugin build.
    pub fn serialize(&self) -> Result<Vec<u8>> {
        // SAFETY: `raw` is alive until Drop.
        unsafe { serialize_of(self.plugin.api(), self.raw) }
    }
}

//! Compiled executables: compile an HloModuleProto, serialize / load back (compile cache), output
//! shapes, memory stats, cost analysis, and execute on one or many devices with argument checks.
use crate::api::{str_from, vec_from, Api};
use crate::buffer::{from_pjrt_type, Buffer};
use crate::client::{Client, ClientInner};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::execution::Execution;
use crate::ffi::{self, new_args};
use crate::options::{read_named_values, CompileOptions, ExecuteOptions, Value};
use hlo::{proto, ElementType};
use prost::Message;
use std::ffi::c_char;
use std::sync::Arc;

/// `xla.HloModuleProtoWithConfig` (hlo.proto): only the module is read.
#[derive(Clone, PartialEq, prost::Message)]
struct HloModuleProtoWithConfig {
    #[prost(message, optional, tag = "1")]
    hlo_module: Option<proto::HloModuleProto>,
}

/// Shape of one array parameter or output.
pub type ArrayShape = (ElementType, Vec<i64>);

/// `PJRT_Executable_GetCompiledMemoryStats` (device memory, bytes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompiledMemoryStats {
    pub generated_code_size_in_bytes: i64,
    pub argument_size_in_bytes: i64,
    pub output_size_in_bytes: i64,
    pub alias_size_in_bytes: i64,
    pub temp_size_in_bytes: i64,
    pub host_generated_code_size_in_bytes: i64,
    pub host_argument_size_in_bytes: i64,
    pub host_output_size_in_bytes: i64,
    pub host_alias_size_in_bytes: i64,
    pub host_temp_size_in_bytes: i64,
}

/// A compiled, loaded executable.
pub struct Executable {
    client: Arc<ClientInner>,
    loaded: *mut ffi::PJRT_LoadedExecutable,
    exec: *mut ffi::PJRT_Executable,
    /// Per-device parameter shapes, checked before every execute. `None` for a parameter whose
    /// dims cannot be told (tuple parameter): only its presence is checked. Empty when no shape
    /// source was available (then only the device count is checked and the plugin's own byte-size
    /// check applies).
    params: Vec<Option<ArrayShape>>,
    params_known: bool,
    num_outputs: usize,
    devices: Vec<Device>,
}

// SAFETY: PJRT executables are thread-safe by the C API's contract (one executable is executed
// from many threads by every framework). Both pointers are destroyed exactly once in Drop, and
// the Arc keeps the client alive until then.
unsafe impl Send for Executable {}
// SAFETY: as above.
unsafe impl Sync for Executable {}

impl Drop for Executable {
    fn drop(&mut self) {
        let api = self.client.api();
        let mut a: ffi::PJRT_Executable_Destroy_Args = new_args();
        a.executable = self.exec;
        if let Err(e) = pjrt!(api, PJRT_Executable_Destroy, &mut a) {
            tracing::warn!("destroying PJRT executable: {e}");
        }
        let mut b: ffi::PJRT_LoadedExecutable_Destroy_Args = new_args();
        b.executable = self.loaded;
        if let Err(e) = pjrt!(api, PJRT_LoadedExecutable_Destroy, &mut b) {
            tracing::warn!("destroying PJRT loaded executable: {e}");
        }
    }
}

impl std::fmt::Debug for Executable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executable")
            .field("params", &self.params)
            .field("num_outputs", &self.num_outputs)
            .field("devices", &self.devices.len())
            .finish()
    }
}

fn shape_of(s: &proto::ShapeProto) -> Option<ArrayShape> {
    let pt = proto::PrimitiveType::try_from(s.element_type).ok()?;
    let et = ElementType::from_primitive_type(pt)?;
    Some((et, s.dimensions.clone()))
}

/// Parameter shapes of the entry computation of a serialized HloModuleProto.
pub fn module_parameter_shapes(module: &[u8]) -> Option<Vec<Option<ArrayShape>>> {
    let m = proto::HloModuleProto::decode(module).ok()?;
    let from_entry = m
        .computations
        .iter()
        .find(|c| c.id == m.entry_computation_id)
        .and_then(|c| c.program_shape.clone());
    let ps = m.host_program_shape.or(from_entry)?;
    Some(ps.parameters.iter().map(shape_of).collect())
}

impl Client {
    /// Compiles a serialized HloModuleProto (format "hlo"). Parameter shapes for the argument
    /// checks are read from the module's `host_program_shape` (per device: for SPMD programs the
    /// plugin's optimized program gives the shard shapes).
    pub fn compile(&self, module: &[u8], options: &CompileOptions) -> Result<Executable> {
        self.compile_with_shapes(module, options, None)
    }

    /// Lowers an IR module to HloModuleProto and compiles it (see [`Client::compile`]).
    pub fn compile_module(
        &self,
        module: &hlo::Module,
        options: &CompileOptions,
    ) -> Result<Executable> {
        self.compile(&module.to_proto_bytes()?, options)
    }

    /// Like [`Client::compile`], with the per-device parameter shapes given by the caller.
    pub fn compile_with_shapes(
        &self,
        module: &[u8],
        options: &CompileOptions,
        parameter_shapes: Option<Vec<ArrayShape>>,
    ) -> Result<Executable> {
        match (self.compile_cache(), parameter_shapes) {
            (Some(cache), None) => Ok(cache.compile(self, module, options)?.0),
            (_, shapes) => self.compile_uncached(module, options, shapes),
        }
    }

    /// Loads an executable of `module` from its serialized form (the compile cache), with the
    /// same parameter-shape checks as a fresh compile.
    pub(crate) fn load_compiled(
        &self,
        bytes: &[u8],
        module: &[u8],
        options: &CompileOptions,
    ) -> Result<Executable> {
        let mut a: ffi::PJRT_Executable_DeserializeAndLoad_Args = new_args();
        a.client = self.inner.raw;
        a.serialized_executable = bytes.as_ptr() as *const c_char;
        a.serialized_executable_size = bytes.len();
        pjrt!(self.api(), PJRT_Executable_DeserializeAndLoad, &mut a)?;
        let spmd = options.use_spmd_partitioning && options.num_partitions > 1;
        let params = if spmd {
            None
        } else {
            module_parameter_shapes(module)
        };
        Executable::from_loaded(&self.inner, a.loaded_executable, params)
    }

    /// `options` as this client's plugin gets them: on XLA:CPU,
    /// [`CompileOptions::for_cpu_plugin`] (programs over several devices without XNNPACK, which
    /// can deadlock their all-reduces on a machine with few cores); elsewhere unchanged.
    pub fn effective_compile_options<'a>(
        &self,
        options: &'a CompileOptions,
    ) -> std::borrow::Cow<'a, CompileOptions> {
        if options.device_count() > 1 && self.platform_name().is_ok_and(|p| p == "cpu") {
            options.for_cpu_plugin()
        } else {
            std::borrow::Cow::Borrowed(options)
        }
    }

    /// Compiles with the plugin, never through the cache, with
    /// [`Client::effective_compile_options`]. A CPU plugin too old to know the XNNPACK option
    /// ("No such compile option") gets the caller's options as they are.
    pub fn compile_uncached(
        &self,
        module: &[u8],
        options: &CompileOptions,
        parameter_shapes: Option<Vec<ArrayShape>>,
    ) -> Result<Executable> {
        let effective = self.effective_compile_options(options);
        if let std::borrow::Cow::Owned(adjusted) = &effective {
            match self.compile_exact(module, adjusted, parameter_shapes.clone()) {
                Err(e)
                    if e.to_string().contains(&format!(
                        "No such compile option: '{}'",
                        crate::options::CPU_XNNPACK_OPTION
                    )) => {}
                other => return other,
            }
        }
        self.compile_exact(module, options, parameter_shapes)
    }

    /// Compiles with exactly `options`.
    fn compile_exact(
        &self,
        module: &[u8],
        options: &CompileOptions,
        parameter_shapes: Option<Vec<ArrayShape>>,
    ) -> Result<Executable> {
        let opts = options.to_bytes()?;
        let format = b"hlo";
        let mut program: ffi::PJRT_Program = new_args();
        program.code = module.as_ptr() as *mut c_char;
        program.code_size = module.len();
        program.format = format.as_ptr() as *const c_char;
        program.format_size = format.len();
        let mut a: ffi::PJRT_Client_Compile_Args = new_args();
        a.client = self.inner.raw;
        a.program = &program;
        a.compile_options = opts.as_ptr() as *const c_char;
        a.compile_options_size = opts.len();
        pjrt!(self.api(), PJRT_Client_Compile, &mut a)?;
        let spmd = options.use_spmd_partitioning && options.num_partitions > 1;
        let params = match parameter_shapes {
            Some(p) => Some(p.into_iter().map(Some).collect()),
            None if spmd => None,
            None => module_parameter_shapes(module),
        };
        Executable::from_loaded(&self.inner, a.executable, params)
    }

    /// Loads an executable serialized by [`Executable::serialize`] (same plugin build only).
    pub fn deserialize_executable(&self, bytes: &[u8]) -> Result<Executable> {
        let mut a: ffi::PJRT_Executable_DeserializeAndLoad_Args = new_args();
        a.client = self.inner.raw;
        a.serialized_executable = bytes.as_ptr() as *const c_char;
        a.serialized_executable_size = bytes.len();
        pjrt!(self.api(), PJRT_Executable_DeserializeAndLoad, &mut a)?;
        Executable::from_loaded(&self.inner, a.loaded_executable, None)
    }
}

impl Executable {
    fn from_loaded(
        client: &Arc<ClientInner>,
        loaded: *mut ffi::PJRT_LoadedExecutable,
        params: Option<Vec<Option<ArrayShape>>>,
    ) -> Result<Executable> {
        if loaded.is_null() {
            return Err(Error::Plugin("the plugin returned no executable".into()));
        }
        let api = client.api();
        let mut g: ffi::PJRT_LoadedExecutable_GetExecutable_Args = new_args();
        g.loaded_executable = loaded;
        if let Err(e) = pjrt!(api, PJRT_LoadedExecutable_GetExecutable, &mut g) {
            let mut b: ffi::PJRT_LoadedExecutable_Destroy_Args = new_args();
            b.executable = loaded;
            let _ = pjrt!(api, PJRT_LoadedExecutable_Destroy, &mut b);
            return Err(e);
        }
        // From here on Drop destroys both objects.
        let mut exe = Executable {
            client: client.clone(),
            loaded,
            exec: g.executable,
            params: Vec::new(),
            params_known: false,
            num_outputs: 0,
            devices: Vec::new(),
        };
        let mut n: ffi::PJRT_Executable_NumOutputs_Args = new_args();
        n.executable = exe.exec;
        pjrt!(api, PJRT_Executable_NumOutputs, &mut n)?;
        exe.num_outputs = n.num_outputs;
        let mut d: ffi::PJRT_LoadedExecutable_AddressableDevices_Args = new_args();
        d.executable = loaded;
        pjrt!(api, PJRT_LoadedExecutable_AddressableDevices, &mut d)?;
        // SAFETY: the array is owned by the executable, which is alive.
        let raws = unsafe { vec_from(d.addressable_devices, d.num_addressable_devices) };
        exe.devices = raws
            .into_iter()
            .map(|r| Device::from_raw(client, r))
            .collect::<Result<_>>()?;
        let params = match params {
            Some(p) => Some(p),
            None => match exe.optimized_parameter_shapes() {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!("no parameter shapes for argument checks: {e}");
                    None
                }
            },
        };
        exe.params_known = params.is_some();
        exe.params = params.unwrap_or_default();
        Ok(exe)
    }

    /// Per-device parameter shapes from the plugin's optimized program.
    fn optimized_parameter_shapes(&self) -> Result<Vec<Option<ArrayShape>>> {
        let bytes = self.optimized_module()?;
        module_parameter_shapes(&bytes).ok_or_else(|| {
            Error::Plugin("cannot read parameter shapes from the optimized program".into())
        })
    }

    /// The optimized program as the plugin compiled it: (format, bytes). The CPU plugin answers
    /// with format "hlo_with_config" (an `HloModuleProtoWithConfig`).
    pub fn optimized_program(&self) -> Result<(String, Vec<u8>)> {
        let api = self.client.api();
        let mut program: ffi::PJRT_Program = new_args();
        let mut a: ffi::PJRT_Executable_OptimizedProgram_Args = new_args();
        a.executable = self.exec;
        a.program = &mut program;
        pjrt!(api, PJRT_Executable_OptimizedProgram, &mut a)?;
        let mut code = vec![0u8; program.code_size];
        program.code = code.as_mut_ptr() as *mut c_char;
        let mut b: ffi::PJRT_Executable_OptimizedProgram_Args = new_args();
        b.executable = self.exec;
        b.program = &mut program;
        pjrt!(api, PJRT_Executable_OptimizedProgram, &mut b)?;
        code.truncate(program.code_size);
        // SAFETY: the format string is owned by the plugin and outlives this call.
        let format = unsafe { str_from(program.format, program.format_size) };
        Ok((format, code))
    }

    /// The optimized program as serialized `HloModuleProto` bytes.
    pub fn optimized_module(&self) -> Result<Vec<u8>> {
        let (format, code) = self.optimized_program()?;
        match format.as_str() {
            "hlo" => Ok(code),
            "hlo_with_config" => HloModuleProtoWithConfig::decode(code.as_slice())
                .ok()
                .and_then(|w| w.hlo_module)
                .map(|m| m.encode_to_vec())
                .ok_or_else(|| {
                    Error::Plugin("cannot decode the optimized HloModuleProtoWithConfig".into())
                }),
            other => Err(Error::Plugin(format!(
                "optimized program in format {other:?}, expected \"hlo\" or \"hlo_with_config\""
            ))),
        }
    }

    pub fn client(&self) -> Client {
        Client {
            inner: self.client.clone(),
        }
    }

    /// Devices the executable runs on: argument list i goes to device i.
    pub fn addressable_devices(&self) -> &[Device] {
        &self.devices
    }

    /// Per-device parameter shapes checked at execute (`None`: not an array parameter);
    /// `None` when the shapes are unknown (see [`Client::compile_with_shapes`]).
    pub fn parameter_shapes(&self) -> Option<&[Option<ArrayShape>]> {
        self.params_known.then_some(self.params.as_slice())
    }

    /// Outputs per device (a tuple root is flattened into its elements).
    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    pub fn name(&self) -> Result<String> {
        let mut a: ffi::PJRT_Executable_Name_Args = new_args();
        a.executable = self.exec;
        pjrt!(self.client.api(), PJRT_Executable_Name, &mut a)?;
        // SAFETY: owned by the executable, which is alive.
        Ok(unsafe { str_from(a.executable_name, a.executable_name_size) })
    }

    pub fn num_replicas(&self) -> Result<usize> {
        let mut a: ffi::PJRT_Executable_NumReplicas_Args = new_args();
        a.executable = self.exec;
        pjrt!(self.client.api(), PJRT_Executable_NumReplicas, &mut a)?;
        Ok(a.num_replicas)
    }

    pub fn num_partitions(&self) -> Result<usize> {
        let mut a: ffi::PJRT_Executable_NumPartitions_Args = new_args();
        a.executable = self.exec;
        pjrt!(self.client.api(), PJRT_Executable_NumPartitions, &mut a)?;
        Ok(a.num_partitions)
    }

    /// Element types of the outputs.
    pub fn output_element_types(&self) -> Result<Vec<ElementType>> {
        let mut a: ffi::PJRT_Executable_OutputElementTypes_Args = new_args();
        a.executable = self.exec;
        pjrt!(
            self.client.api(),
            PJRT_Executable_OutputElementTypes,
            &mut a
        )?;
        // SAFETY: owned by the executable, which is alive.
        let raw = unsafe {
            vec_from(
                a.output_types as *const ffi::PJRT_Buffer_Type,
                a.num_output_types,
            )
        };
        raw.into_iter()
            .map(|t| from_pjrt_type(t).ok_or(Error::UnsupportedType(t)))
            .collect()
    }

    /// Dimensions of the outputs.
    pub fn output_dims(&self) -> Result<Vec<Vec<i64>>> {
        let mut a: ffi::PJRT_Executable_OutputDimensions_Args = new_args();
        a.executable = self.exec;
        pjrt!(self.client.api(), PJRT_Executable_OutputDimensions, &mut a)?;
        // SAFETY: both arrays are owned by the executable, which is alive; `dim_sizes` has
        // `num_outputs` entries and `dims` their sum.
        let sizes = unsafe { vec_from(a.dim_sizes, a.num_outputs) };
        let total = sizes
            .iter()
            .try_fold(0usize, |acc, &n| acc.checked_add(n))
            .ok_or_else(|| Error::Plugin("output dimension counts overflow".into()))?;
        // SAFETY: as above.
        let dims = unsafe { vec_from(a.dims, total) };
        let mut out = Vec::with_capacity(sizes.len());
        let mut at = 0;
        for s in sizes {
            out.push(dims[at..at + s].to_vec());
            at += s;
        }
        Ok(out)
    }

    /// Output shapes (element type, dims).
    pub fn output_shapes(&self) -> Result<Vec<ArrayShape>> {
        Ok(self
            .output_element_types()?
            .into_iter()
            .zip(self.output_dims()?)
            .collect())
    }

    /// A fingerprint of the compiled program, where the plugin offers one.
    pub fn fingerprint(&self) -> Result<Option<String>> {
        let mut a: ffi::PJRT_Executable_Fingerprint_Args = new_args();
        a.executable = self.exec;
        match pjrt!(self.client.api(), PJRT_Executable_Fingerprint, &mut a) {
            Ok(()) => {}
            Err(e) if unsupported(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        // SAFETY: owned by the executable, which is alive.
        let s = unsafe { str_from(a.executable_fingerprint, a.executable_fingerprint_size) };
        Ok((!s.is_empty()).then_some(s))
    }

    /// Compiled memory statistics; `None` where the plugin lacks them.
    pub fn memory_stats(&self) -> Result<Option<CompiledMemoryStats>> {
        // SAFETY: `exec` is alive until Drop.
        unsafe { memory_stats_of(self.client.api(), self.exec) }
    }

    /// Cost analysis properties (e.g. "flops"); `None` where the plugin lacks it.
    pub fn cost_analysis(&self) -> Result<Option<Vec<(String, Value)>>> {
        // SAFETY: `exec` is alive until Drop.
        unsafe { cost_analysis_of(self.client.api(), self.exec) }
    }

    /// A platform-specific serialization for a compile cache (same plugin build only).
    pub fn serialize(&self) -> Result<Vec<u8>> {
        // SAFETY: `exec` is alive until Drop.
        unsafe { serialize_of(self.client.api(), self.exec) }
    }

    /// Runs on a single device (the executable must have exactly one).
    pub fn execute(&self, args: &[&Buffer]) -> Result<Vec<Buffer>> {
        self.execute_with(args, &ExecuteOptions::default())
    }

    pub fn execute_with(&self, args: &[&Buffer], options: &ExecuteOptions) -> Result<Vec<Buffer>> {
        let mut out = self.execute_sharded_with(&[args.to_vec()], options)?;
        out.pop()
            .ok_or_else(|| Error::Plugin("execute returned no output list".into()))
    }

    /// Runs on every addressable device: argument list i goes to device i.
    pub fn execute_sharded(&self, args: &[Vec<&Buffer>]) -> Result<Vec<Vec<Buffer>>> {
        self.execute_sharded_with(args, &ExecuteOptions::default())
    }

    /// Checks count, dtype and dims of every argument against the executable's parameters.
    pub fn check_arguments(&self, args: &[Vec<&Buffer>]) -> Result<()> {
        if args.len() != self.devices.len() {
            return Err(Error::DeviceCount {
                expected: self.devices.len(),
                got: args.len(),
            });
        }
        for (dev, list) in args.iter().enumerate() {
            if self.params_known && list.len() != self.params.len() {
                return Err(Error::ArgCount {
                    expected: self.params.len(),
                    got: list.len(),
                });
            }
            for (index, b) in list.iter().enumerate() {
                if let Some(Some((et, dims))) = self.params.get(index) {
                    if b.element_type() != *et {
                        return Err(Error::ArgDtype {
                            index,
                            expected: *et,
                            got: b.element_type(),
                        });
                    }
                    if b.dims() != dims.as_slice() {
                        return Err(Error::ArgDims {
                            index,
                            expected: dims.clone(),
                            got: b.dims().to_vec(),
                        });
                    }
                }
                if b.is_deleted()? {
                    return Err(Error::Deleted { device: dev, index });
                }
            }
        }
        Ok(())
    }

    /// Runs on every device and waits for the results ([`Self::launch_sharded`], then
    /// [`Execution::wait`]).
    pub fn execute_sharded_with(
        &self,
        args: &[Vec<&Buffer>],
        options: &ExecuteOptions,
    ) -> Result<Vec<Vec<Buffer>>> {
        let (outputs, execution) = self.launch_sharded(args, options)?;
        execution.wait()?;
        Ok(outputs)
    }

    /// Launches on one device without waiting: the output buffers (ready when the execution
    /// is) and its completion. Donated arguments are consumed at launch.
    pub fn launch(&self, args: &[&Buffer]) -> Result<(Vec<Buffer>, Execution)> {
        let (mut outputs, execution) =
            self.launch_sharded(&[args.to_vec()], &ExecuteOptions::default())?;
        Ok((outputs.pop().unwrap_or_default(), execution))
    }

    /// Launches on every device (`args[d]` for device `d`) without waiting: each device's
    /// output buffers and the execution's completion. Reading an output waits for it; an
    /// execution error surfaces at [`Execution::wait`] and at any read of its outputs.
    pub fn launch_sharded(
        &self,
        args: &[Vec<&Buffer>],
        options: &ExecuteOptions,
    ) -> Result<(Vec<Vec<Buffer>>, Execution)> {
        self.check_arguments(args)?;
        let api = self.client.api();
        let num_devices = args.len();
        let num_args = args.first().map_or(0, |l| l.len());
        if args.iter().any(|l| l.len() != num_args) {
            return Err(Error::ArgCount {
                expected: num_args,
                got: args
                    .iter()
                    .map(|l| l.len())
                    .find(|&n| n != num_args)
                    .unwrap_or(0),
            });
        }
        let arg_ptrs: Vec<Vec<*mut ffi::PJRT_Buffer>> = args
            .iter()
            .map(|l| l.iter().map(|b| b.raw).collect())
            .collect();
        let arg_lists: Vec<*const *mut ffi::PJRT_Buffer> =
            arg_ptrs.iter().map(|l| l.as_ptr()).collect();
        let mut outputs: Vec<Vec<*mut ffi::PJRT_Buffer>> =
            vec![vec![std::ptr::null_mut(); self.num_outputs]; num_devices];
        let output_lists: Vec<*mut *mut ffi::PJRT_Buffer> =
            outputs.iter_mut().map(|l| l.as_mut_ptr()).collect();
        let mut events: Vec<*mut ffi::PJRT_Event> = vec![std::ptr::null_mut(); num_devices];
        let mut opts: ffi::PJRT_ExecuteOptions = new_args();
        opts.launch_id = options.launch_id;
        opts.non_donatable_input_indices = options.non_donatable_input_indices.as_ptr();
        opts.num_non_donatable_input_indices = options.non_donatable_input_indices.len();
        let mut a: ffi::PJRT_LoadedExecutable_Execute_Args = new_args();
        a.executable = self.loaded;
        a.options = &mut opts;
        a.argument_lists = arg_lists.as_ptr();
        a.num_devices = num_devices;
        a.num_args = num_args;
        a.output_lists = output_lists.as_ptr();
        a.device_complete_events = events.as_mut_ptr();
        pjrt!(api, PJRT_LoadedExecutable_Execute, &mut a)?;
        // Own the events and every output first, so each is destroyed exactly once whatever
        // happens next.
        let execution =
            Execution::new(self.client.clone(), events, "PJRT_LoadedExecutable_Execute");
        let mut result: Vec<Vec<Buffer>> = Vec::with_capacity(num_devices);
        let mut first_err: Option<Error> = None;
        for list in &outputs {
            let mut bufs = Vec::with_capacity(list.len());
            for &raw in list {
                match Buffer::from_raw(&self.client, raw) {
                    Ok(b) => bufs.push(b),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            result.push(bufs);
        }
        match first_err {
            Some(e) => {
                // The launched work may still use its arguments: let it finish first.
                let _ = execution.wait();
                Err(e)
            }
            None => Ok((result, execution)),
        }
    }
}

/// Compiled memory statistics; `None` where the plugin lacks them.
///
/// # Safety (this and the next two)
/// `exec` must be a live `PJRT_Executable` made by the plugin whose table is `api`.
pub(crate) unsafe fn memory_stats_of(
    api: &Api,
    exec: *mut ffi::PJRT_Executable,
) -> Result<Option<CompiledMemoryStats>> {
    let mut a: ffi::PJRT_Executable_GetCompiledMemoryStats_Args = new_args();
    a.executable = exec;
    match pjrt!(api, PJRT_Executable_GetCompiledMemoryStats, &mut a) {
        Ok(()) => {}
        Err(e) if unsupported(&e) => return Ok(None),
        Err(e) => return Err(e),
    }
    Ok(Some(CompiledMemoryStats {
        generated_code_size_in_bytes: a.generated_code_size_in_bytes,
        argument_size_in_bytes: a.argument_size_in_bytes,
        output_size_in_bytes: a.output_size_in_bytes,
        alias_size_in_bytes: a.alias_size_in_bytes,
        temp_size_in_bytes: a.temp_size_in_bytes,
        host_generated_code_size_in_bytes: a.host_generated_code_size_in_bytes,
        host_argument_size_in_bytes: a.host_argument_size_in_bytes,
        host_output_size_in_bytes: a.host_output_size_in_bytes,
        host_alias_size_in_bytes: a.host_alias_size_in_bytes,
        host_temp_size_in_bytes: a.host_temp_size_in_bytes,
    }))
}

/// Cost analysis properties (e.g. "flops"); `None` where the plugin lacks it.
pub(crate) unsafe fn cost_analysis_of(
    api: &Api,
    exec: *mut ffi::PJRT_Executable,
) -> Result<Option<Vec<(String, Value)>>> {
    let mut a: ffi::PJRT_Executable_GetCostAnalysis_Args = new_args();
    a.executable = exec;
    match pjrt!(api, PJRT_Executable_GetCostAnalysis, &mut a) {
        Ok(()) => {}
        Err(e) if unsupported(&e) => return Ok(None),
        Err(e) => return Err(e),
    }
    // SAFETY: owned by the executable, which the caller keeps alive.
    Ok(Some(unsafe {
        read_named_values(a.properties, a.num_properties)
    }))
}

/// A platform-specific serialization for a compile cache (same plugin build only).
pub(crate) unsafe fn serialize_of(api: &Api, exec: *mut ffi::PJRT_Executable) -> Result<Vec<u8>> {
    let mut a: ffi::PJRT_Executable_Serialize_Args = new_args();
    a.executable = exec;
    pjrt!(api, PJRT_Executable_Serialize, &mut a)?;
    // SAFETY: the bytes live as long as `serialized_executable`, freed right after.
    let bytes = unsafe { vec_from(a.serialized_bytes as *const u8, a.serialized_bytes_size) };
    if let Some(del) = a.serialized_executable_deleter {
        // SAFETY: called exactly once on the object the plugin returned.
        unsafe { del(a.serialized_executable) };
    }
    Ok(bytes)
}

fn unsupported(e: &Error) -> bool {
    matches!(e, Error::ApiTooOld { .. })
        || matches!(e, Error::Pjrt { code, .. } if *code == ffi::PJRT_Error_Code_UNIMPLEMENTED)
}

//! Hand-written `#[repr(C)]` declarations of the PJRT C API subset tpu-run uses.
//!
//! Layout source: `xla/pjrt/c/pjrt_c_api.h` of openxla/xla at `PJRT_API_MINOR 113`
//! (mirror mgoldfarb-nvidia/xla, commit 93f99a46ffdc61efd9d45a9710ed12f75e38ff5a), the newest copy of
//! the header reachable when this file was written. Its `PJRT_Api` table has 138 entries, i.e.
//! `PJRT_Api_STRUCT_SIZE` = 1144 bytes, which is exactly the `struct_size` reported by the newest
//! plugins measured (jax-cuda13-pjrt 0.12: C API 0.116; libtpu 0.0.52: C API 0.117), so every entry
//! those plugins expose has its slot here. Older plugins expose a prefix of the table (xla-cpu-pjrt
//! 0.0.1: C API 0.81, struct_size 984 = 118 entries); see [`entry_available`].
//!
//! Rules kept here:
//! - every args struct starts with `struct_size` and `extension_start`, fields in header order;
//! - `<NAME>::STRUCT_SIZE` is computed as the header's `PJRT_STRUCT_SIZE(type, last_field)` =
//!   `offset_of!(type, last_field) + size_of(last_field)`;
//! - args structs are only ever created with [`new_args`] (all zero, `struct_size` set);
//! - C enums are declared as `c_int` type aliases so that an all-zero struct is always valid and an
//!   unknown value coming from a newer plugin is never undefined behaviour.
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code
)]

use std::ffi::{c_char, c_int, c_void};
use std::mem::{offset_of, size_of};

/// Header version these declarations were laid out from.
pub const HEADER_MAJOR: i32 = 0;
pub const HEADER_MINOR: i32 = 113;
/// Number of function entries in our `PJRT_Api` declaration.
pub const API_NUM_ENTRIES: usize = 138;

// ------------------------------- opaque handles -------------------------------
macro_rules! opaque {
    ($($name:ident),* $(,)?) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
    )*};
}
opaque!(
    PJRT_Error,
    PJRT_Event,
    PJRT_Client,
    PJRT_Device,
    PJRT_Memory,
    PJRT_DeviceDescription,
    PJRT_TopologyDescription,
    PJRT_Executable,
    PJRT_LoadedExecutable,
    PJRT_Buffer,
    PJRT_SerializedExecutable,
    PJRT_ExecuteContext,
    PJRT_Buffer_MemoryLayout,
    PJRT_SerializedTopology,
);

#[repr(C)]
pub struct PJRT_Extension_Base {
    pub struct_size: usize,
    pub type_: c_int,
    pub next: *mut PJRT_Extension_Base,
}

// ----------------------------------- enums ------------------------------------
pub type PJRT_Error_Code = c_int;
pub const PJRT_Error_Code_OK: c_int = 0;
pub const PJRT_Error_Code_UNIMPLEMENTED: c_int = 12;

pub type PJRT_NamedValue_Type = c_int;
pub const PJRT_NamedValue_kString: c_int = 0;
pub const PJRT_NamedValue_kInt64: c_int = 1;
pub const PJRT_NamedValue_kInt64List: c_int = 2;
pub const PJRT_NamedValue_kFloat: c_int = 3;
pub const PJRT_NamedValue_kBool: c_int = 4;

/// `PJRT_Buffer_Type` (NOT the same numbering as XLA's `PrimitiveType`).
pub type PJRT_Buffer_Type = c_int;
pub const PJRT_Buffer_Type_INVALID: c_int = 0;
pub const PJRT_Buffer_Type_PRED: c_int = 1;
pub const PJRT_Buffer_Type_S8: c_int = 2;
pub const PJRT_Buffer_Type_S16: c_int = 3;
pub const PJRT_Buffer_Type_S32: c_int = 4;
pub const PJRT_Buffer_Type_S64: c_int = 5;
pub const PJRT_Buffer_Type_U8: c_int = 6;
pub const PJRT_Buffer_Type_U16: c_int = 7;
pub const PJRT_Buffer_Type_U32: c_int = 8;
pub const PJRT_Buffer_Type_U64: c_int = 9;
pub const PJRT_Buffer_Type_F16: c_int = 10;
pub const PJRT_Buffer_Type_F32: c_int = 11;
pub const PJRT_Buffer_Type_F64: c_int = 12;
pub const PJRT_Buffer_Type_BF16: c_int = 13;
pub const PJRT_Buffer_Type_F8E5M2: c_int = 16;
pub const PJRT_Buffer_Type_F8E4M3FN: c_int = 17;

pub type PJRT_HostBufferSemantics = c_int;
pub const PJRT_HostBufferSemantics_kImmutableOnlyDuringCall: c_int = 0;
pub const PJRT_HostBufferSemantics_kImmutableUntilTransferCompletes: c_int = 1;
pub const PJRT_HostBufferSemantics_kImmutableZeroCopy: c_int = 2;
pub const PJRT_HostBufferSemantics_kMutableZeroCopy: c_int = 3;

// ------------------------------ args struct helper ----------------------------

/// An args struct of the C API: `#[repr(C)]`, first field `struct_size: usize`, valid when all-zero.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, start with a `usize` `struct_size` field, and be valid when
/// every byte is zero (raw pointers, integers, bools, `Option<fn>`, unions of those).
pub unsafe trait Args: Sized {
    const STRUCT_SIZE: usize;
}

/// A zeroed args struct with `struct_size` set from the header constant.
pub fn new_args<T: Args>() -> T {
    // SAFETY: `Args` guarantees that the all-zero bit pattern is a valid `T`.
    let mut v: T = unsafe { std::mem::zeroed() };
    // SAFETY: `Args` guarantees `T` is repr(C) and starts with a `usize` struct_size field, so the
    // start of `v` is a properly aligned `usize`.
    unsafe { *(&mut v as *mut T as *mut usize) = T::STRUCT_SIZE };
    v
}

macro_rules! args {
    ($name:ident { $($f:ident : $t:ty,)* } last $lf:ident : $lt:ty) => {
        #[repr(C)]
        pub struct $name {
            pub struct_size: usize,
            pub extension_start: *mut PJRT_Extension_Base,
            $(pub $f: $t,)*
            pub $lf: $lt,
        }
        // SAFETY: repr(C), starts with struct_size, all fields are valid when zeroed.
        unsafe impl Args for $name {
            const STRUCT_SIZE: usize = offset_of!($name, $lf) + size_of::<$lt>();
        }
    };
}

// ------------------------------------ version ---------------------------------
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PJRT_Api_Version {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub major_version: c_int,
    pub minor_version: c_int,
}

// ------------------------------------ errors ----------------------------------
args!(PJRT_Error_Destroy_Args {} last error: *mut PJRT_Error);
args!(PJRT_Error_Message_Args {
    error: *const PJRT_Error,
    message: *const c_char,
} last message_size: usize);
args!(PJRT_Error_GetCode_Args {
    error: *const PJRT_Error,
} last code: PJRT_Error_Code);

// --------------------------------- named values -------------------------------
#[repr(C)]
#[derive(Clone, Copy)]
pub union PJRT_NamedValue_Value {
    pub string_value: *const c_char,
    pub int64_value: i64,
    pub int64_array_value: *const i64,
    pub float_value: f32,
    pub bool_value: bool,
}

#[repr(C)]
pub struct PJRT_NamedValue {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub name: *const c_char,
    pub name_size: usize,
    pub type_: PJRT_NamedValue_Type,
    pub value: PJRT_NamedValue_Value,
    pub value_size: usize,
}
// SAFETY: repr(C), starts with struct_size, all fields are valid when zeroed.
unsafe impl Args for PJRT_NamedValue {
    const STRUCT_SIZE: usize = offset_of!(PJRT_NamedValue, value_size) + size_of::<usize>();
}

// ------------------------------------ plugin ----------------------------------
#[repr(C)]
pub struct PJRT_Plugin_Initialize_Args {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
}
// SAFETY: repr(C), starts with struct_size, all fields are valid when zeroed.
unsafe impl Args for PJRT_Plugin_Initialize_Args {
    const STRUCT_SIZE: usize =
        offset_of!(PJRT_Plugin_Initialize_Args, extension_start) + size_of::<usize>();
}
args!(PJRT_Plugin_Attributes_Args {
    attributes: *const PJRT_NamedValue,
} last num_attributes: usize);

// ------------------------------------ events ----------------------------------
args!(PJRT_Event_Destroy_Args {} last event: *mut PJRT_Event);
args!(PJRT_Event_IsReady_Args { event: *mut PJRT_Event, } last is_ready: bool);
args!(PJRT_Event_Error_Args {} last event: *mut PJRT_Event);
args!(PJRT_Event_Await_Args {} last event: *mut PJRT_Event);

// ------------------------------- key-value store ------------------------------
// The caller of PJRT_Client_Create may pass a cross-process key-value store as callbacks
// (kv_store.rs implements them). Note: plugins built from XLA fill these args structs without
// setting `struct_size` or `extension_start` (pjrt_c_api_helpers.cc, CApiKeyValueStore), so
// callbacks must never read those two fields.

/// Given to the callbacks by the plugin: makes a `PJRT_Error` the callback returns on failure.
/// `message` only needs to live for the call (the plugin copies it).
pub type PJRT_CallbackError = Option<
    unsafe extern "C" fn(
        code: PJRT_Error_Code,
        message: *const c_char,
        message_size: usize,
    ) -> *mut PJRT_Error,
>;
/// Set by the callback: frees the `value` it returned (the plugin copies the value first).
pub type PJRT_KeyValueGetCallback_ValueDeleter = Option<unsafe extern "C" fn(value: *mut c_char)>;
pub type PJRT_KeyValueTryGetCallback_ValueDeleter =
    Option<unsafe extern "C" fn(value: *mut c_char)>;

args!(PJRT_KeyValueGetCallback_Args {
    key: *const c_char,
    key_size: usize,
    timeout_in_ms: c_int,
    callback_error: *mut PJRT_CallbackError,
    user_arg: *mut c_void,
    value: *mut c_char,
    value_size: usize,
} last value_deleter_callback: PJRT_KeyValueGetCallback_ValueDeleter);
args!(PJRT_KeyValueTryGetCallback_Args {
    key: *const c_char,
    key_size: usize,
    callback_error: *mut PJRT_CallbackError,
    user_arg: *mut c_void,
    value: *mut c_char,
    value_size: usize,
} last value_deleter_callback: PJRT_KeyValueTryGetCallback_ValueDeleter);
args!(PJRT_KeyValuePutCallback_Args {
    key: *const c_char,
    key_size: usize,
    value: *const c_char,
    value_size: usize,
    callback_error: *mut PJRT_CallbackError,
} last user_arg: *mut c_void);

/// Blocking get: returns the value once the key exists, or an error after `timeout_in_ms`.
pub type PJRT_KeyValueGetCallback =
    Option<unsafe extern "C" fn(args: *mut PJRT_KeyValueGetCallback_Args) -> *mut PJRT_Error>;
/// Non-blocking get: a NOT_FOUND error at once when the key does not exist.
pub type PJRT_KeyValueTryGetCallback =
    Option<unsafe extern "C" fn(args: *mut PJRT_KeyValueTryGetCallback_Args) -> *mut PJRT_Error>;
pub type PJRT_KeyValuePutCallback =
    Option<unsafe extern "C" fn(args: *mut PJRT_KeyValuePutCallback_Args) -> *mut PJRT_Error>;

// ------------------------------------ client ----------------------------------
args!(PJRT_Client_Create_Args {
    create_options: *const PJRT_NamedValue,
    num_options: usize,
    kv_get_callback: PJRT_KeyValueGetCallback,
    kv_get_user_arg: *mut c_void,
    kv_put_callback: PJRT_KeyValuePutCallback,
    kv_put_user_arg: *mut c_void,
    client: *mut PJRT_Client,
    kv_try_get_callback: PJRT_KeyValueTryGetCallback,
} last kv_try_get_user_arg: *mut c_void);
args!(PJRT_Client_Destroy_Args {} last client: *mut PJRT_Client);
args!(PJRT_Client_PlatformName_Args {
    client: *mut PJRT_Client,
    platform_name: *const c_char,
} last platform_name_size: usize);
args!(PJRT_Client_ProcessIndex_Args { client: *mut PJRT_Client, } last process_index: c_int);
args!(PJRT_Client_PlatformVersion_Args {
    client: *mut PJRT_Client,
    platform_version: *const c_char,
} last platform_version_size: usize);
args!(PJRT_Client_Devices_Args {
    client: *mut PJRT_Client,
    devices: *const *mut PJRT_Device,
} last num_devices: usize);
args!(PJRT_Client_AddressableDevices_Args {
    client: *mut PJRT_Client,
    addressable_devices: *const *mut PJRT_Device,
} last num_addressable_devices: usize);

#[repr(C)]
pub struct PJRT_Program {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub code: *mut c_char,
    pub code_size: usize,
    pub format: *const c_char,
    pub format_size: usize,
}
// SAFETY: repr(C), starts with struct_size, all fields are valid when zeroed.
unsafe impl Args for PJRT_Program {
    const STRUCT_SIZE: usize = offset_of!(PJRT_Program, format_size) + size_of::<usize>();
}

args!(PJRT_Client_Compile_Args {
    client: *mut PJRT_Client,
    program: *const PJRT_Program,
    compile_options: *const c_char,
    compile_options_size: usize,
} last executable: *mut PJRT_LoadedExecutable);

args!(PJRT_Client_BufferFromHostBuffer_Args {
    client: *mut PJRT_Client,
    data: *const c_void,
    type_: PJRT_Buffer_Type,
    dims: *const i64,
    num_dims: usize,
    byte_strides: *const i64,
    num_byte_strides: usize,
    host_buffer_semantics: PJRT_HostBufferSemantics,
    device: *mut PJRT_Device,
    memory: *mut PJRT_Memory,
    device_layout: *mut PJRT_Buffer_MemoryLayout,
    done_with_host_buffer: *mut PJRT_Event,
} last buffer: *mut PJRT_Buffer);

// ----------------------------- device descriptions ----------------------------
args!(PJRT_DeviceDescription_Id_Args {
    device_description: *mut PJRT_DeviceDescription,
} last id: c_int);
args!(PJRT_DeviceDescription_ProcessIndex_Args {
    device_description: *mut PJRT_DeviceDescription,
} last process_index: c_int);
args!(PJRT_DeviceDescription_Kind_Args {
    device_description: *mut PJRT_DeviceDescription,
    device_kind: *const c_char,
} last device_kind_size: usize);
args!(PJRT_DeviceDescription_ToString_Args {
    device_description: *mut PJRT_DeviceDescription,
    to_string: *const c_char,
} last to_string_size: usize);

args!(PJRT_DeviceDescription_Attributes_Args {
    device_description: *mut PJRT_DeviceDescription,
    num_attributes: usize,
} last attributes: *const PJRT_NamedValue);
args!(PJRT_DeviceDescription_DebugString_Args {
    device_description: *mut PJRT_DeviceDescription,
    debug_string: *const c_char,
} last debug_string_size: usize);

// ------------------------------------ devices ---------------------------------
args!(PJRT_Device_GetDescription_Args {
    device: *mut PJRT_Device,
} last device_description: *mut PJRT_DeviceDescription);
args!(PJRT_Device_IsAddressable_Args { device: *mut PJRT_Device, } last is_addressable: bool);
args!(PJRT_Device_LocalHardwareId_Args {
    device: *mut PJRT_Device,
} last local_hardware_id: c_int);
args!(PJRT_Device_MemoryStats_Args {
    device: *mut PJRT_Device,
    bytes_in_use: i64,
    peak_bytes_in_use: i64,
    peak_bytes_in_use_is_set: bool,
    num_allocs: i64,
    num_allocs_is_set: bool,
    largest_alloc_size: i64,
    largest_alloc_size_is_set: bool,
    bytes_limit: i64,
    bytes_limit_is_set: bool,
    bytes_reserved: i64,
    bytes_reserved_is_set: bool,
    peak_bytes_reserved: i64,
    peak_bytes_reserved_is_set: bool,
    bytes_reservable_limit: i64,
    bytes_reservable_limit_is_set: bool,
    largest_free_block_bytes: i64,
    largest_free_block_bytes_is_set: bool,
    pool_bytes: i64,
    pool_bytes_is_set: bool,
    peak_pool_bytes: i64,
    peak_pool_bytes_is_set: bool,
    peak_allocated_bytes: i64,
} last peak_allocated_bytes_is_set: bool);

// --------------------------------- topologies ---------------------------------
args!(PJRT_TopologyDescription_Create_Args {
    topology_name: *const c_char,
    topology_name_size: usize,
    create_options: *const PJRT_NamedValue,
    num_options: usize,
} last topology: *mut PJRT_TopologyDescription);
args!(PJRT_TopologyDescription_Destroy_Args {} last topology: *mut PJRT_TopologyDescription);
args!(PJRT_TopologyDescription_PlatformVersion_Args {
    topology: *mut PJRT_TopologyDescription,
    platform_version: *const c_char,
} last platform_version_size: usize);
args!(PJRT_TopologyDescription_PlatformName_Args {
    topology: *const PJRT_TopologyDescription,
    platform_name: *const c_char,
} last platform_name_size: usize);
args!(PJRT_TopologyDescription_GetDeviceDescriptions_Args {
    topology: *const PJRT_TopologyDescription,
    descriptions: *const *mut PJRT_DeviceDescription,
} last num_descriptions: usize);
pub type SerializedTopologyDeleter = Option<unsafe extern "C" fn(*mut PJRT_SerializedTopology)>;
args!(PJRT_TopologyDescription_Serialize_Args {
    topology: *mut PJRT_TopologyDescription,
    serialized_bytes: *const c_char,
    serialized_bytes_size: usize,
    serialized_topology: *mut PJRT_SerializedTopology,
} last serialized_topology_deleter: SerializedTopologyDeleter);
args!(PJRT_TopologyDescription_Attributes_Args {
    topology: *mut PJRT_TopologyDescription,
    attributes: *const PJRT_NamedValue,
} last num_attributes: usize);
args!(PJRT_Client_TopologyDescription_Args {
    client: *mut PJRT_Client,
} last topology: *mut PJRT_TopologyDescription);
// `PJRT_Compile`: compiles for a topology, with or without a client; the result is an unloaded
// `PJRT_Executable` (ahead-of-time compilation for devices this machine does not have).
args!(PJRT_Compile_Args {
    topology: *const PJRT_TopologyDescription,
    program: *const PJRT_Program,
    compile_options: *const c_char,
    compile_options_size: usize,
    client: *mut PJRT_Client,
} last executable: *mut PJRT_Executable);

// ---------------------------------- executables -------------------------------
args!(PJRT_Executable_Destroy_Args {} last executable: *mut PJRT_Executable);
args!(PJRT_LoadedExecutable_Destroy_Args {} last executable: *mut PJRT_LoadedExecutable);
args!(PJRT_LoadedExecutable_GetExecutable_Args {
    loaded_executable: *mut PJRT_LoadedExecutable,
} last executable: *mut PJRT_Executable);
args!(PJRT_Executable_Name_Args {
    executable: *mut PJRT_Executable,
    executable_name: *const c_char,
} last executable_name_size: usize);
args!(PJRT_Executable_NumReplicas_Args {
    executable: *mut PJRT_Executable,
} last num_replicas: usize);
args!(PJRT_Executable_NumPartitions_Args {
    executable: *mut PJRT_Executable,
} last num_partitions: usize);
args!(PJRT_LoadedExecutable_AddressableDevices_Args {
    executable: *mut PJRT_LoadedExecutable,
    addressable_devices: *const *mut PJRT_Device,
} last num_addressable_devices: usize);
args!(PJRT_Executable_OptimizedProgram_Args {
    executable: *mut PJRT_Executable,
} last program: *mut PJRT_Program);
args!(PJRT_Executable_NumOutputs_Args {
    executable: *mut PJRT_Executable,
} last num_outputs: usize);
args!(PJRT_Executable_SizeOfGeneratedCodeInBytes_Args {
    executable: *mut PJRT_Executable,
} last size_in_bytes: i64);
args!(PJRT_Executable_Fingerprint_Args {
    executable: *mut PJRT_Executable,
    executable_fingerprint: *const c_char,
} last executable_fingerprint_size: usize);
args!(PJRT_Executable_GetCostAnalysis_Args {
    executable: *mut PJRT_Executable,
    num_properties: usize,
} last properties: *const PJRT_NamedValue);
args!(PJRT_Executable_GetCompiledMemoryStats_Args {
    executable: *mut PJRT_Executable,
    generated_code_size_in_bytes: i64,
    argument_size_in_bytes: i64,
    output_size_in_bytes: i64,
    alias_size_in_bytes: i64,
    temp_size_in_bytes: i64,
    host_generated_code_size_in_bytes: i64,
    host_argument_size_in_bytes: i64,
    host_output_size_in_bytes: i64,
    host_alias_size_in_bytes: i64,
    host_temp_size_in_bytes: i64,
    peak_memory_in_bytes: i64,
    total_size_in_bytes: i64,
    total_allocation_bytes: i64,
    indefinite_allocations: i64,
} last peak_unpadded_heap_bytes: i64);
args!(PJRT_Executable_OutputElementTypes_Args {
    executable: *mut PJRT_Executable,
    output_types: *mut PJRT_Buffer_Type,
} last num_output_types: usize);
args!(PJRT_Executable_OutputDimensions_Args {
    executable: *mut PJRT_Executable,
    num_outputs: usize,
    dims: *const i64,
} last dim_sizes: *const usize);

pub type SerializedExecutableDeleter = Option<unsafe extern "C" fn(*mut PJRT_SerializedExecutable)>;
args!(PJRT_Executable_Serialize_Args {
    executable: *const PJRT_Executable,
    serialized_bytes: *const c_char,
    serialized_bytes_size: usize,
    serialized_executable: *mut PJRT_SerializedExecutable,
} last serialized_executable_deleter: SerializedExecutableDeleter);
args!(PJRT_Executable_DeserializeAndLoad_Args {
    client: *mut PJRT_Client,
    serialized_executable: *const c_char,
    serialized_executable_size: usize,
    loaded_executable: *mut PJRT_LoadedExecutable,
    overridden_serialized_compile_options: *const c_char,
    overridden_serialized_compile_options_size: usize,
} last load_options: *mut c_void);

args!(PJRT_ExecuteOptions {
    send_callbacks: *mut *mut c_void,
    recv_callbacks: *mut *mut c_void,
    num_send_ops: usize,
    num_recv_ops: usize,
    launch_id: c_int,
    non_donatable_input_indices: *const i64,
    num_non_donatable_input_indices: usize,
    context: *mut PJRT_ExecuteContext,
    call_location: *const c_char,
    num_tasks: usize,
    task_ids: *mut c_int,
    incarnation_ids: *mut i64,
    multi_slice_config: *mut c_void,
    use_major_to_minor_data_layout_for_callbacks: bool,
    hlo_output_callbacks: *mut c_void,
} last num_hlo_output_callbacks: usize);

args!(PJRT_LoadedExecutable_Execute_Args {
    executable: *mut PJRT_LoadedExecutable,
    options: *mut PJRT_ExecuteOptions,
    argument_lists: *const *const *mut PJRT_Buffer,
    num_devices: usize,
    num_args: usize,
    output_lists: *const *mut *mut PJRT_Buffer,
    device_complete_events: *mut *mut PJRT_Event,
} last execute_device: *mut PJRT_Device);

// ------------------------------------ buffers ---------------------------------
args!(PJRT_Buffer_Destroy_Args {} last buffer: *mut PJRT_Buffer);
args!(PJRT_Buffer_ElementType_Args { buffer: *mut PJRT_Buffer, } last type_: PJRT_Buffer_Type);
args!(PJRT_Buffer_Dimensions_Args {
    buffer: *mut PJRT_Buffer,
    dims: *const i64,
} last num_dims: usize);
args!(PJRT_Buffer_ToHostBuffer_Args {
    src: *mut PJRT_Buffer,
    host_layout: *mut PJRT_Buffer_MemoryLayout,
    dst: *mut c_void,
    dst_size: usize,
} last event: *mut PJRT_Event);
args!(PJRT_Buffer_OnDeviceSizeInBytes_Args {
    buffer: *mut PJRT_Buffer,
} last on_device_size_in_bytes: usize);
args!(PJRT_Buffer_IsDeleted_Args { buffer: *mut PJRT_Buffer, } last is_deleted: bool);
args!(PJRT_Buffer_Device_Args { buffer: *mut PJRT_Buffer, } last device: *mut PJRT_Device);
args!(PJRT_Buffer_ReadyEvent_Args { buffer: *mut PJRT_Buffer, } last event: *mut PJRT_Event);

// ---------------------------------- API table ---------------------------------

/// Generic signature for entries tpu-run does not call (same ABI: one pointer in, one pointer out).
pub type Unused = Option<unsafe extern "C" fn(*mut c_void) -> *mut PJRT_Error>;
type F<A> = Option<unsafe extern "C" fn(*mut A) -> *mut PJRT_Error>;

/// `PJRT_Api`: the function table returned by `GetPjrtApi()`, in header order (138 entries).
#[repr(C)]
pub struct PJRT_Api {
    pub struct_size: usize,
    pub extension_start: *mut PJRT_Extension_Base,
    pub pjrt_api_version: PJRT_Api_Version,

    pub PJRT_Error_Destroy: Option<unsafe extern "C" fn(*mut PJRT_Error_Destroy_Args)>,
    pub PJRT_Error_Message: Option<unsafe extern "C" fn(*mut PJRT_Error_Message_Args)>,
    pub PJRT_Error_GetCode: F<PJRT_Error_GetCode_Args>,

    pub PJRT_Plugin_Initialize: F<PJRT_Plugin_Initialize_Args>,
    pub PJRT_Plugin_Attributes: F<PJRT_Plugin_Attributes_Args>,

    pub PJRT_Event_Destroy: F<PJRT_Event_Destroy_Args>,
    pub PJRT_Event_IsReady: F<PJRT_Event_IsReady_Args>,
    pub PJRT_Event_Error: F<PJRT_Event_Error_Args>,
    pub PJRT_Event_Await: F<PJRT_Event_Await_Args>,
    pub PJRT_Event_OnReady: Unused,

    pub PJRT_Client_Create: F<PJRT_Client_Create_Args>,
    pub PJRT_Client_Destroy: F<PJRT_Client_Destroy_Args>,
    pub PJRT_Client_PlatformName: F<PJRT_Client_PlatformName_Args>,
    pub PJRT_Client_ProcessIndex: F<PJRT_Client_ProcessIndex_Args>,
    pub PJRT_Client_PlatformVersion: F<PJRT_Client_PlatformVersion_Args>,
    pub PJRT_Client_Devices: F<PJRT_Client_Devices_Args>,
    pub PJRT_Client_AddressableDevices: F<PJRT_Client_AddressableDevices_Args>,
    pub PJRT_Client_LookupDevice: Unused,
    pub PJRT_Client_LookupAddressableDevice: Unused,
    pub PJRT_Client_AddressableMemories: Unused,
    pub PJRT_Client_Compile: F<PJRT_Client_Compile_Args>,
    pub PJRT_Client_DefaultDeviceAssignment: Unused,
    pub PJRT_Client_BufferFromHostBuffer: F<PJRT_Client_BufferFromHostBuffer_Args>,

    pub PJRT_DeviceDescription_Id: F<PJRT_DeviceDescription_Id_Args>,
    pub PJRT_DeviceDescription_ProcessIndex: F<PJRT_DeviceDescription_ProcessIndex_Args>,
    pub PJRT_DeviceDescription_Attributes: F<PJRT_DeviceDescription_Attributes_Args>,
    pub PJRT_DeviceDescription_Kind: F<PJRT_DeviceDescription_Kind_Args>,
    pub PJRT_DeviceDescription_DebugString: F<PJRT_DeviceDescription_DebugString_Args>,
    pub PJRT_DeviceDescription_ToString: F<PJRT_DeviceDescription_ToString_Args>,

    pub PJRT_Device_GetDescription: F<PJRT_Device_GetDescription_Args>,
    pub PJRT_Device_IsAddressable: F<PJRT_Device_IsAddressable_Args>,
    pub PJRT_Device_LocalHardwareId: F<PJRT_Device_LocalHardwareId_Args>,
    pub PJRT_Device_AddressableMemories: Unused,
    pub PJRT_Device_DefaultMemory: Unused,
    pub PJRT_Device_MemoryStats: F<PJRT_Device_MemoryStats_Args>,

    pub PJRT_Memory_Id: Unused,
    pub PJRT_Memory_Kind: Unused,
    pub PJRT_Memory_DebugString: Unused,
    pub PJRT_Memory_ToString: Unused,
    pub PJRT_Memory_AddressableByDevices: Unused,

    pub PJRT_Executable_Destroy: F<PJRT_Executable_Destroy_Args>,
    pub PJRT_Executable_Name: F<PJRT_Executable_Name_Args>,
    pub PJRT_Executable_NumReplicas: F<PJRT_Executable_NumReplicas_Args>,
    pub PJRT_Executable_NumPartitions: F<PJRT_Executable_NumPartitions_Args>,
    pub PJRT_Executable_NumOutputs: F<PJRT_Executable_NumOutputs_Args>,
    pub PJRT_Executable_SizeOfGeneratedCodeInBytes:
        F<PJRT_Executable_SizeOfGeneratedCodeInBytes_Args>,
    pub PJRT_Executable_GetCostAnalysis: F<PJRT_Executable_GetCostAnalysis_Args>,
    pub PJRT_Executable_OutputMemoryKinds: Unused,
    pub PJRT_Executable_OptimizedProgram: F<PJRT_Executable_OptimizedProgram_Args>,
    pub PJRT_Executable_Serialize: F<PJRT_Executable_Serialize_Args>,

    pub PJRT_LoadedExecutable_Destroy: F<PJRT_LoadedExecutable_Destroy_Args>,
    pub PJRT_LoadedExecutable_GetExecutable: F<PJRT_LoadedExecutable_GetExecutable_Args>,
    pub PJRT_LoadedExecutable_AddressableDevices: F<PJRT_LoadedExecutable_AddressableDevices_Args>,
    pub PJRT_LoadedExecutable_Delete: Unused,
    pub PJRT_LoadedExecutable_IsDeleted: Unused,
    pub PJRT_LoadedExecutable_Execute: F<PJRT_LoadedExecutable_Execute_Args>,
    pub PJRT_Executable_DeserializeAndLoad: F<PJRT_Executable_DeserializeAndLoad_Args>,
    pub PJRT_LoadedExecutable_Fingerprint: Unused,

    pub PJRT_Buffer_Destroy: F<PJRT_Buffer_Destroy_Args>,
    pub PJRT_Buffer_ElementType: F<PJRT_Buffer_ElementType_Args>,
    pub PJRT_Buffer_Dimensions: F<PJRT_Buffer_Dimensions_Args>,
    pub PJRT_Buffer_UnpaddedDimensions: Unused,
    pub PJRT_Buffer_DynamicDimensionIndices: Unused,
    pub PJRT_Buffer_GetMemoryLayout: Unused,
    pub PJRT_Buffer_OnDeviceSizeInBytes: F<PJRT_Buffer_OnDeviceSizeInBytes_Args>,
    pub PJRT_Buffer_Device: F<PJRT_Buffer_Device_Args>,
    pub PJRT_Buffer_Memory: Unused,
    pub PJRT_Buffer_Delete: Unused,
    pub PJRT_Buffer_IsDeleted: F<PJRT_Buffer_IsDeleted_Args>,
    pub PJRT_Buffer_CopyToDevice: Unused,
    pub PJRT_Buffer_ToHostBuffer: F<PJRT_Buffer_ToHostBuffer_Args>,
    pub PJRT_Buffer_IsOnCpu: Unused,
    pub PJRT_Buffer_ReadyEvent: F<PJRT_Buffer_ReadyEvent_Args>,
    pub PJRT_Buffer_UnsafePointer: Unused,
    pub PJRT_Buffer_IncreaseExternalReferenceCount: Unused,
    pub PJRT_Buffer_DecreaseExternalReferenceCount: Unused,
    pub PJRT_Buffer_OpaqueDeviceMemoryDataPointer: Unused,

    pub PJRT_CopyToDeviceStream_Destroy: Unused,
    pub PJRT_CopyToDeviceStream_AddChunk: Unused,
    pub PJRT_CopyToDeviceStream_TotalBytes: Unused,
    pub PJRT_CopyToDeviceStream_GranuleSize: Unused,
    pub PJRT_CopyToDeviceStream_CurrentBytes: Unused,

    pub PJRT_TopologyDescription_Create: F<PJRT_TopologyDescription_Create_Args>,
    pub PJRT_TopologyDescription_Destroy: F<PJRT_TopologyDescription_Destroy_Args>,
    pub PJRT_TopologyDescription_PlatformName: F<PJRT_TopologyDescription_PlatformName_Args>,
    pub PJRT_TopologyDescription_PlatformVersion: F<PJRT_TopologyDescription_PlatformVersion_Args>,
    pub PJRT_TopologyDescription_GetDeviceDescriptions:
        F<PJRT_TopologyDescription_GetDeviceDescriptions_Args>,
    pub PJRT_TopologyDescription_Serialize: F<PJRT_TopologyDescription_Serialize_Args>,
    pub PJRT_TopologyDescription_Attributes: F<PJRT_TopologyDescription_Attributes_Args>,

    pub PJRT_Compile: F<PJRT_Compile_Args>,

    pub PJRT_Executable_OutputElementTypes: F<PJRT_Executable_OutputElementTypes_Args>,
    pub PJRT_Executable_OutputDimensions: F<PJRT_Executable_OutputDimensions_Args>,
    pub PJRT_Buffer_CopyToMemory: Unused,
    pub PJRT_Client_CreateViewOfDeviceBuffer: Unused,
    pub PJRT_Executable_Fingerprint: F<PJRT_Executable_Fingerprint_Args>,
    pub PJRT_Client_TopologyDescription: F<PJRT_Client_TopologyDescription_Args>,
    pub PJRT_Executable_GetCompiledMemoryStats: F<PJRT_Executable_GetCompiledMemoryStats_Args>,
    pub PJRT_Memory_Kind_Id: Unused,
    pub PJRT_ExecuteContext_Create: Unused,
    pub PJRT_ExecuteContext_Destroy: Unused,
    pub PJRT_Buffer_CopyRawToHost: Unused,
    pub PJRT_AsyncHostToDeviceTransferManager_Destroy: Unused,
    pub PJRT_AsyncHostToDeviceTransferManager_TransferData: Unused,
    pub PJRT_Client_CreateBuffersForAsyncHostToDevice: Unused,
    pub PJRT_AsyncHostToDeviceTransferManager_RetrieveBuffer: Unused,
    pub PJRT_AsyncHostToDeviceTransferManager_Device: Unused,
    pub PJRT_AsyncHostToDeviceTransferManager_BufferCount: Unused,
    pub PJRT_AsyncHostToDeviceTransferManager_BufferSize: Unused,
    pub PJRT_AsyncHostToDeviceTransferManager_SetBufferError: Unused,
    pub PJRT_AsyncHostToDeviceTransferManager_AddMetadata: Unused,
    pub PJRT_Client_DmaMap: Unused,
    pub PJRT_Client_DmaUnmap: Unused,
    pub PJRT_Client_CreateUninitializedBuffer: Unused,
    pub PJRT_Client_UpdateGlobalProcessInfo: Unused,
    pub PJRT_TopologyDescription_Deserialize: Unused,
    pub PJRT_Client_CreateAliasBuffer: Unused,
    pub PJRT_Client_FulfillAliasBuffer: Unused,
    pub PJRT_LoadedExecutable_GetDeviceAssignment: Unused,
    pub PJRT_Client_CreateErrorBuffer: Unused,
    pub PJRT_AsyncHostToDeviceTransferManager_TransferLiteral: Unused,
    pub PJRT_Buffer_CopyRawToHostFuture: Unused,
    pub PJRT_Device_PoisonExecution: Unused,
    pub PJRT_Device_CreateAsyncTrackingEvent: Unused,
    pub PJRT_AsyncTrackingEvent_Destroy: Unused,
    pub PJRT_Executable_GetCompileOptions: Unused,
    pub PJRT_Buffer_DonateWithControlDependency: Unused,
    pub PJRT_Event_Create: Unused,
    pub PJRT_Event_Set: Unused,
    pub PJRT_Device_GetAttributes: Unused,
    pub PJRT_Client_Load: Unused,
    pub PJRT_LoadedExecutable_AddressableDeviceLogicalIds: Unused,
    pub PJRT_Buffer_Bitcast: Unused,
    pub PJRT_Error_ForEachPayload: Unused,
    pub PJRT_TopologyDescription_Fingerprint: Unused,
    pub PJRT_Executable_ParameterMemoryKinds: Unused,
    pub PJRT_Device_ClearMemoryStats: Unused,
    pub PJRT_TopologyDescription_MakeCanonicalShapeForMemorySpace: Unused,
    pub PJRT_TopologyDescription_GetMemorySpaceKindIds: Unused,
}

/// `PJRT_Api_STRUCT_SIZE` of the header we laid out from.
pub const PJRT_API_STRUCT_SIZE: usize =
    offset_of!(PJRT_Api, PJRT_TopologyDescription_GetMemorySpaceKindIds) + size_of::<Unused>();

/// Whether a plugin whose `PJRT_Api.struct_size` is `api_struct_size` has the table entry at byte
/// `entry_offset` (an `offset_of!(PJRT_Api, <entry>)`).
pub fn entry_available(api_struct_size: usize, entry_offset: usize) -> bool {
    entry_offset + size_of::<Unused>() <= api_struct_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_table_matches_measured_plugin_sizes() {
        // 40 bytes of header fields, then one pointer per entry.
        assert_eq!(offset_of!(PJRT_Api, PJRT_Error_Destroy), 40);
        assert_eq!(PJRT_API_STRUCT_SIZE, 40 + API_NUM_ENTRIES * 8);
        // libtpu 0.0.52 (0.117) and jax-cuda13-pjrt 0.12 (0.116) report 1144.
        assert_eq!(PJRT_API_STRUCT_SIZE, 1144);
        // xla-cpu-pjrt 0.0.1 (0.81) reports 984: its last entry is GetDeviceAssignment.
        let off = offset_of!(PJRT_Api, PJRT_LoadedExecutable_GetDeviceAssignment);
        assert_eq!(off + 8, 984);
        assert!(entry_available(984, off));
        assert!(!entry_available(
            984,
            offset_of!(PJRT_Api, PJRT_Client_CreateErrorBuffer)
        ));
        assert!(entry_available(
            984,
            offset_of!(PJRT_Api, PJRT_Executable_GetCompiledMemoryStats)
        ));
    }

    #[test]
    fn struct_sizes_follow_the_header_rule() {
        assert_eq!(PJRT_Error_Destroy_Args::STRUCT_SIZE, 24);
        assert_eq!(PJRT_NamedValue::STRUCT_SIZE, 56);
        assert_eq!(PJRT_Plugin_Initialize_Args::STRUCT_SIZE, 16);
        assert_eq!(PJRT_Client_Create_Args::STRUCT_SIZE, 88);
        // Key-value callback args: sizes and offsets gcc computes from the 0.81 header (the
        // layout is the same in 0.113).
        assert_eq!(PJRT_KeyValueGetCallback_Args::STRUCT_SIZE, 80);
        assert_eq!(offset_of!(PJRT_KeyValueGetCallback_Args, timeout_in_ms), 32);
        assert_eq!(
            offset_of!(PJRT_KeyValueGetCallback_Args, callback_error),
            40
        );
        assert_eq!(offset_of!(PJRT_KeyValueGetCallback_Args, value_size), 64);
        assert_eq!(PJRT_KeyValueTryGetCallback_Args::STRUCT_SIZE, 72);
        assert_eq!(
            offset_of!(PJRT_KeyValueTryGetCallback_Args, callback_error),
            32
        );
        assert_eq!(PJRT_KeyValuePutCallback_Args::STRUCT_SIZE, 64);
        assert_eq!(
            offset_of!(PJRT_KeyValuePutCallback_Args, callback_error),
            48
        );
        assert_eq!(offset_of!(PJRT_Client_Create_Args, kv_get_callback), 32);
        assert_eq!(offset_of!(PJRT_Client_Create_Args, kv_try_get_callback), 72);
        assert_eq!(PJRT_Program::STRUCT_SIZE, 48);
        assert_eq!(PJRT_Client_BufferFromHostBuffer_Args::STRUCT_SIZE, 120);
        assert_eq!(PJRT_LoadedExecutable_Execute_Args::STRUCT_SIZE, 80);
        assert_eq!(PJRT_Error_GetCode_Args::STRUCT_SIZE, 28);
        // Topology and deviceless compile (0.113 layout).
        assert_eq!(PJRT_TopologyDescription_Create_Args::STRUCT_SIZE, 56);
        assert_eq!(PJRT_Compile_Args::STRUCT_SIZE, 64);
        assert_eq!(
            PJRT_TopologyDescription_GetDeviceDescriptions_Args::STRUCT_SIZE,
            40
        );
        assert_eq!(PJRT_TopologyDescription_Serialize_Args::STRUCT_SIZE, 56);
        assert_eq!(PJRT_TopologyDescription_Attributes_Args::STRUCT_SIZE, 40);
        assert_eq!(PJRT_DeviceDescription_Attributes_Args::STRUCT_SIZE, 40);
        assert_eq!(PJRT_Client_TopologyDescription_Args::STRUCT_SIZE, 32);
        // Structs only grow between minor versions: ours are never smaller than the sizes gcc
        // computes from the CPU plugin's own 0.81 header.
        let at_0_81: [(usize, usize); 19] = [
            (PJRT_Client_BufferFromHostBuffer_Args::STRUCT_SIZE, 120),
            (PJRT_LoadedExecutable_Execute_Args::STRUCT_SIZE, 80),
            (PJRT_ExecuteOptions::STRUCT_SIZE, 112),
            (PJRT_Client_Create_Args::STRUCT_SIZE, 88),
            (PJRT_Client_Compile_Args::STRUCT_SIZE, 56),
            (PJRT_Program::STRUCT_SIZE, 48),
            (PJRT_NamedValue::STRUCT_SIZE, 56),
            (PJRT_Device_MemoryStats_Args::STRUCT_SIZE, 185),
            (
                PJRT_Executable_GetCompiledMemoryStats_Args::STRUCT_SIZE,
                112,
            ),
            (PJRT_Executable_Serialize_Args::STRUCT_SIZE, 56),
            (PJRT_Executable_DeserializeAndLoad_Args::STRUCT_SIZE, 64),
            (PJRT_Buffer_ToHostBuffer_Args::STRUCT_SIZE, 56),
            (PJRT_Executable_OutputDimensions_Args::STRUCT_SIZE, 48),
            (PJRT_Executable_OutputElementTypes_Args::STRUCT_SIZE, 40),
            (PJRT_Executable_GetCostAnalysis_Args::STRUCT_SIZE, 40),
            (PJRT_Error_GetCode_Args::STRUCT_SIZE, 28),
            (PJRT_Executable_OptimizedProgram_Args::STRUCT_SIZE, 32),
            (PJRT_DeviceDescription_Kind_Args::STRUCT_SIZE, 40),
            (PJRT_Plugin_Attributes_Args::STRUCT_SIZE, 32),
        ];
        for (i, (ours, old)) in at_0_81.iter().enumerate() {
            assert!(ours >= old, "struct #{i}: {ours} < {old}");
        }
        // Appended after 0.81 (the 0.113 layout): ExecuteOptions, MemoryStats, DeserializeAndLoad.
        assert_eq!(PJRT_ExecuteOptions::STRUCT_SIZE, 144);
        assert_eq!(PJRT_Executable_DeserializeAndLoad_Args::STRUCT_SIZE, 72);
        let a: PJRT_Client_Create_Args = new_args();
        assert_eq!(a.struct_size, PJRT_Client_Create_Args::STRUCT_SIZE);
        assert!(a.client.is_null());
    }
}

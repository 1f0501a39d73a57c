//! Hand-written `#[repr(C)]` declarations of the PJRT profiler extension.
//!
//! Layout sources (openxla/xla): `xla/pjrt/c/pjrt_c_api_profiler_extension.h` at
//! `PJRT_API_PROFILER_EXTENSION_VERSION 1` (commit 759921959c8f5d9a289dc066593464e76de8def9) and
//! `xla/backends/profiler/plugin/profiler_c_api.h` at `PLUGIN_PROFILER_VERSION 1`. The extension
//! is a node of the `PJRT_Api.extension_start` chain with type `PJRT_Extension_Type_Profiler`
//! (1 in `pjrt_c_api.h`); it points to a `PLUGIN_Profiler_Api` table whose entries take args
//! structs sized by the header rule (`offset_of(last field) + size_of(last field)`), like the
//! PJRT API's own. Newer headers append entries after `collect_data` (consume, serialize);
//! tpu-run uses none of them, so the table is declared up to `collect_data`.
//!
//! The profiler's args structs differ from PJRT's: they have no `extension_start`, and the error
//! args carry a `priv` pointer instead. Errors are the plugin's own `PLUGIN_Profiler_Error`
//! objects, read and destroyed through the table's `error_*` entries (never `PJRT_Error_*`).
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code
)]

use crate::ffi::{Args, PJRT_Extension_Base};
use std::ffi::{c_char, c_int, c_void};
use std::mem::{offset_of, size_of};

/// `PJRT_Extension_Type_Profiler` in `pjrt_c_api.h` (the second value of the enum).
pub const PJRT_Extension_Type_Profiler: c_int = 1;

#[repr(C)]
pub struct PLUGIN_Profiler {
    _private: [u8; 0],
}
#[repr(C)]
pub struct PLUGIN_Profiler_Error {
    _private: [u8; 0],
}

/// Declares a profiler args struct (first field `struct_size`, no `extension_start`) and its
/// `STRUCT_SIZE` by the header rule.
macro_rules! profiler_args {
    ($name:ident { $($f:ident : $t:ty,)* } last $lf:ident : $lt:ty) => {
        #[repr(C)]
        pub struct $name {
            pub struct_size: usize,
            $(pub $f: $t,)*
            pub $lf: $lt,
        }
        // SAFETY: repr(C), starts with struct_size, all fields are valid when zeroed.
        unsafe impl Args for $name {
            const STRUCT_SIZE: usize = offset_of!($name, $lf) + size_of::<$lt>();
        }
    };
}

profiler_args!(PLUGIN_Profiler_Error_Destroy_Args {
    priv_: *mut c_void,
} last error: *mut PLUGIN_Profiler_Error);
profiler_args!(PLUGIN_Profiler_Error_Message_Args {
    priv_: *mut c_void,
    error: *const PLUGIN_Profiler_Error,
    message: *const c_char,
} last message_size: usize);
profiler_args!(PLUGIN_Profiler_Error_GetCode_Args {
    priv_: *mut c_void,
    error: *const PLUGIN_Profiler_Error,
} last code: c_int);
profiler_args!(PLUGIN_Profiler_Create_Args {
    options: *const c_char,
    options_size: usize,
} last profiler: *mut PLUGIN_Profiler);
profiler_args!(PLUGIN_Profiler_Destroy_Args {} last profiler: *mut PLUGIN_Profiler);
profiler_args!(PLUGIN_Profiler_Start_Args {} last profiler: *mut PLUGIN_Profiler);
profiler_args!(PLUGIN_Profiler_Stop_Args {} last profiler: *mut PLUGIN_Profiler);
profiler_args!(PLUGIN_Profiler_CollectData_Args {
    profiler: *mut PLUGIN_Profiler,
    buffer: *mut u8,
} last buffer_size_in_bytes: usize);

pub type P<A> = Option<unsafe extern "C" fn(*mut A) -> *mut PLUGIN_Profiler_Error>;

/// `PLUGIN_Profiler_Api`, up to `collect_data`.
#[repr(C)]
pub struct PLUGIN_Profiler_Api {
    pub struct_size: usize,
    pub priv_: *mut c_void,
    pub error_destroy: Option<unsafe extern "C" fn(*mut PLUGIN_Profiler_Error_Destroy_Args)>,
    pub error_message: Option<unsafe extern "C" fn(*mut PLUGIN_Profiler_Error_Message_Args)>,
    pub error_get_code: P<PLUGIN_Profiler_Error_GetCode_Args>,
    pub create: P<PLUGIN_Profiler_Create_Args>,
    pub destroy: P<PLUGIN_Profiler_Destroy_Args>,
    pub start: P<PLUGIN_Profiler_Start_Args>,
    pub stop: P<PLUGIN_Profiler_Stop_Args>,
    pub collect_data: P<PLUGIN_Profiler_CollectData_Args>,
}

/// `PLUGIN_Profiler_Api_STRUCT_SIZE`: a table must be at least this large to hold every entry
/// tpu-run calls.
pub const PLUGIN_PROFILER_API_STRUCT_SIZE: usize = offset_of!(PLUGIN_Profiler_Api, collect_data)
    + size_of::<P<PLUGIN_Profiler_CollectData_Args>>();

/// `PJRT_Profiler_Extension` (version 1): the chain node, then the table.
/// `traceme_context_id` is only meaningful when the struct is passed as an args extension.
#[repr(C)]
pub struct PJRT_Profiler_Extension {
    pub base: PJRT_Extension_Base,
    pub profiler_api: *const PLUGIN_Profiler_Api,
    pub traceme_context_id: i64,
}

/// `PJRT_Profiler_Extension_STRUCT_SIZE`.
pub const PJRT_PROFILER_EXTENSION_STRUCT_SIZE: usize =
    offset_of!(PJRT_Profiler_Extension, traceme_context_id) + size_of::<i64>();

/// The smallest extension node from which `profiler_api` can be read.
pub const PROFILER_API_FIELD_END: usize =
    offset_of!(PJRT_Profiler_Extension, profiler_api) + size_of::<*const PLUGIN_Profiler_Api>();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::new_args;

    /// Sizes by the header rule on LP64 (gcc's `offsetof + sizeof` of each last field).
    #[test]
    fn struct_sizes_follow_the_headers() {
        assert_eq!(size_of::<PJRT_Extension_Base>(), 24);
        assert_eq!(PLUGIN_Profiler_Error_Destroy_Args::STRUCT_SIZE, 24);
        assert_eq!(PLUGIN_Profiler_Error_Message_Args::STRUCT_SIZE, 40);
        assert_eq!(PLUGIN_Profiler_Error_GetCode_Args::STRUCT_SIZE, 28);
        assert_eq!(PLUGIN_Profiler_Create_Args::STRUCT_SIZE, 32);
        assert_eq!(PLUGIN_Profiler_Destroy_Args::STRUCT_SIZE, 16);
        assert_eq!(PLUGIN_Profiler_Start_Args::STRUCT_SIZE, 16);
        assert_eq!(PLUGIN_Profiler_Stop_Args::STRUCT_SIZE, 16);
        assert_eq!(PLUGIN_Profiler_CollectData_Args::STRUCT_SIZE, 32);
        assert_eq!(offset_of!(PLUGIN_Profiler_CollectData_Args, buffer), 16);
        assert_eq!(offset_of!(PLUGIN_Profiler_Create_Args, profiler), 24);
        // struct_size, priv, then eight entries.
        assert_eq!(PLUGIN_PROFILER_API_STRUCT_SIZE, 16 + 8 * 8);
        assert_eq!(offset_of!(PLUGIN_Profiler_Api, create), 40);
        assert_eq!(PJRT_PROFILER_EXTENSION_STRUCT_SIZE, 40);
        assert_eq!(PROFILER_API_FIELD_END, 32);
        let a: PLUGIN_Profiler_CollectData_Args = new_args();
        assert_eq!(a.struct_size, 32);
        assert!(a.buffer.is_null());
    }
}

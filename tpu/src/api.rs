//! Checked access to a plugin's `PJRT_Api` table: version and `struct_size` checks before every
//! entry, PJRT_Error objects turned into [`Error::Pjrt`] (and destroyed), events awaited and
//! destroyed.
use crate::error::{Error, Result};
use crate::ffi::{self, new_args, PJRT_Api};
use std::ffi::c_char;

/// The function table of one loaded plugin. The table is static data inside the plugin library,
/// which tpu-run never unloads, so the pointer stays valid for the life of the process.
pub(crate) struct Api {
    raw: *const PJRT_Api,
    pub major: i32,
    pub minor: i32,
    pub struct_size: usize,
}

// SAFETY: the table is immutable static data of a library that is never unloaded; the PJRT C API
// requires its functions to be callable from any thread.
unsafe impl Send for Api {}
// SAFETY: as above; `Api` itself holds no interior mutability.
unsafe impl Sync for Api {}

/// Checks the plugin's major version and table size. Separate from `Api` so it can be tested with
/// made-up numbers.
pub(crate) fn check_entry(
    major: i32,
    minor: i32,
    struct_size: usize,
    entry_offset: usize,
    entry: &'static str,
) -> Result<()> {
    if major != ffi::HEADER_MAJOR {
        return Err(Error::ApiMajor {
            major,
            supported: ffi::HEADER_MAJOR,
        });
    }
    if !ffi::entry_available(struct_size, entry_offset) {
        return Err(Error::ApiTooOld {
            entry,
            version: format!("{major}.{minor} (PJRT_Api struct_size {struct_size})"),
        });
    }
    Ok(())
}

impl Api {
    /// # Safety
    /// `raw` must be the non-null pointer returned by a plugin's `GetPjrtApi`, and the library
    /// must stay loaded for the rest of the process.
    pub(crate) unsafe fn from_raw(raw: *const PJRT_Api) -> Result<Api> {
        // SAFETY: guaranteed by the caller; the first fields of PJRT_Api have been stable since
        // the first C API release (struct_size, extension/priv pointer, PJRT_Api_Version).
        let (struct_size, major, minor) = unsafe {
            let api = &*raw;
            (
                api.struct_size,
                api.pjrt_api_version.major_version,
                api.pjrt_api_version.minor_version,
            )
        };
        if major != ffi::HEADER_MAJOR {
            return Err(Error::ApiMajor {
                major,
                supported: ffi::HEADER_MAJOR,
            });
        }
        if struct_size < std::mem::offset_of!(PJRT_Api, PJRT_Error_GetCode) + 8 {
            return Err(Error::Plugin(format!(
                "PJRT_Api struct_size {struct_size} is too small to be a PJRT plugin"
            )));
        }
        Ok(Api {
            raw,
            major,
            minor,
            struct_size,
        })
    }

    pub(crate) fn raw(&self) -> &PJRT_Api {
        // SAFETY: see `from_raw`; fields beyond `struct_size` are never read without a
        // `check_entry` first (all reads of entries go through `pjrt!`).
        unsafe { &*self.raw }
    }

    pub(crate) fn version(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    pub(crate) fn check(&self, entry_offset: usize, entry: &'static str) -> Result<()> {
        check_entry(
            self.major,
            self.minor,
            self.struct_size,
            entry_offset,
            entry,
        )
    }

    pub(crate) fn missing(&self, entry: &'static str) -> Error {
        Error::ApiTooOld {
            entry,
            version: format!("{} (entry is NULL)", self.version()),
        }
    }

    /// Turns a returned `PJRT_Error*` into a Rust error, destroying it. NULL means success.
    pub(crate) fn take_error(&self, err: *mut ffi::PJRT_Error, call: &'static str) -> Result<()> {
        if err.is_null() {
            return Ok(());
        }
        let mut message = String::from("(no message)");
        let mut code = 2; // UNKNOWN
        let raw = self.raw();
        // The three error entries sit at the start of the table (checked in from_raw).
        if let Some(f) = raw.PJRT_Error_Message {
            let mut a: ffi::PJRT_Error_Message_Args = new_args();
            a.error = err;
            // SAFETY: `err` is a live error object returned by this plugin; args zeroed + sized.
            unsafe { f(&mut a) };
            // SAFETY: message/message_size describe bytes owned by `err`, alive until destroy.
            message = unsafe { str_from(a.message, a.message_size) };
        }
        if let Some(f) = raw.PJRT_Error_GetCode {
            let mut a: ffi::PJRT_Error_GetCode_Args = new_args();
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

    fn destroy_error(&self, err: *mut ffi::PJRT_Error) {
        if let Some(f) = self.raw().PJRT_Error_Destroy {
            let mut a: ffi::PJRT_Error_Destroy_Args = new_args();
            a.error = err;
            // SAFETY: `err` is a live error object of this plugin, destroyed exactly once here.
            unsafe { f(&mut a) };
        }
    }

    /// Awaits `event` (if not NULL), then destroys it. Returns the event's error, if any.
    pub(crate) fn await_event(
        &self,
        event: *mut ffi::PJRT_Event,
        what: &'static str,
    ) -> Result<()> {
        if event.is_null() {
            return Ok(());
        }
        let mut a: ffi::PJRT_Event_Await_Args = new_args();
        a.event = event;
        let awaited = pjrt!(self, PJRT_Event_Await, &mut a).map_err(|e| match e {
            Error::Pjrt { code, message, .. } => Error::Pjrt {
                code,
                message,
                call: what,
            },
            other => other,
        });
        let destroyed = self.destroy_event(event);
        awaited.and(destroyed)
    }

    pub(crate) fn destroy_event(&self, event: *mut ffi::PJRT_Event) -> Result<()> {
        if event.is_null() {
            return Ok(());
        }
        let mut a: ffi::PJRT_Event_Destroy_Args = new_args();
        a.event = event;
        pjrt!(self, PJRT_Event_Destroy, &mut a)
    }
}

/// Copies `len` bytes at `ptr` into a String (lossy UTF-8). NULL gives "".
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable bytes.
pub(crate) unsafe fn str_from(ptr: *const c_char, len: usize) -> String {
    if ptr.is_null() || len == 0 {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
    String::from_utf8_lossy(bytes).into_owned()
}

/// Copies `len` items at `ptr` into a Vec. NULL gives an empty Vec.
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable, initialised `T`s.
pub(crate) unsafe fn vec_from<T: Copy>(ptr: *const T, len: usize) -> Vec<T> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn old_plugin_lacks_new_entries() {
        // xla-cpu-pjrt 0.0.1 reports C API 0.81 and struct_size 984.
        let off = offset_of!(PJRT_Api, PJRT_Executable_GetCompileOptions);
        let err = check_entry(0, 81, 984, off, "PJRT_Executable_GetCompileOptions").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::ApiTooOld { .. }));
        assert!(msg.contains("PJRT_Executable_GetCompileOptions"), "{msg}");
        assert!(msg.contains("0.81"), "{msg}");
        assert!(msg.contains("984"), "{msg}");
        // An entry inside the table is fine.
        let off = offset_of!(PJRT_Api, PJRT_Executable_GetCompiledMemoryStats);
        check_entry(0, 81, 984, off, "x").unwrap();
        // A fake, much older plugin (struct_size 600) lacks OutputElementTypes.
        let off = offset_of!(PJRT_Api, PJRT_Executable_OutputElementTypes);
        assert!(check_entry(0, 20, 600, off, "PJRT_Executable_OutputElementTypes").is_err());
    }

    #[test]
    fn other_major_is_refused() {
        let err = check_entry(1, 0, 2000, 40, "PJRT_Error_Destroy").unwrap_err();
        assert!(matches!(err, Error::ApiMajor { major: 1, .. }));
    }
}

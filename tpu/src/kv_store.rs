//! A cross-process key-value store handed to `PJRT_Client_Create`, as multi-process clients need
//! (XLA's GPU plugin exchanges device topologies and NCCL ids through it; libtpu receives it too).
//!
//! Rust code implements [`KeyValueStore`]; [`KvCallbacks`] turns it into the C API's three
//! callbacks (get, try-get, put) with one `user_arg`. The callbacks are `extern "C"` trampolines
//! that never unwind into the plugin: a failure or a panic of the store becomes a `PJRT_Error`
//! made with the `callback_error` function the plugin passes in, with the matching error code
//! (NOT_FOUND for a missing key in try-get, DEADLINE_EXCEEDED for a get that timed out).
//! Values go back to the plugin in `malloc`ed memory with `free` as the deleter, because the
//! deleter receives only the pointer.
use crate::ffi::{
    self, PJRT_CallbackError, PJRT_KeyValueGetCallback_Args, PJRT_KeyValuePutCallback_Args,
    PJRT_KeyValueTryGetCallback_Args,
};
use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

/// What kind of failure a key-value operation had; it picks the PJRT (absl) error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvErrorKind {
    /// The key does not exist (try-get).
    NotFound,
    /// The key did not appear within the timeout (get).
    DeadlineExceeded,
    /// The key exists with another value (put).
    AlreadyExists,
    /// The store cannot be reached (the coordinator is gone).
    Unavailable,
    /// The run was aborted (another process failed).
    Aborted,
    /// The key or value is not acceptable.
    InvalidArgument,
    Internal,
}

impl KvErrorKind {
    /// The absl status code PJRT uses for this kind.
    pub fn pjrt_code(self) -> ffi::PJRT_Error_Code {
        match self {
            KvErrorKind::NotFound => 5,
            KvErrorKind::DeadlineExceeded => 4,
            KvErrorKind::AlreadyExists => 6,
            KvErrorKind::Unavailable => 14,
            KvErrorKind::Aborted => 10,
            KvErrorKind::InvalidArgument => 3,
            KvErrorKind::Internal => 13,
        }
    }
}

/// A failed key-value operation: its kind and a message for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KvError {
    pub kind: KvErrorKind,
    pub message: String,
}

impl KvError {
    pub fn new(kind: KvErrorKind, message: impl Into<String>) -> Self {
        KvError {
            kind,
            message: message.into(),
        }
    }
}

/// A key-value store shared by all processes of a run. Implementations must be thread-safe
/// (plugins call from their own threads) and blocking.
pub trait KeyValueStore: Send + Sync {
    /// The value of `key`, waiting up to `timeout` for it to be put
    /// (`KvErrorKind::DeadlineExceeded` after that).
    fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, KvError>;
    /// The value of `key` if it exists now.
    fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Sets `key`. Keys are written once: putting another value for an existing key is
    /// `KvErrorKind::AlreadyExists`.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
}

/// The longest wait a get callback passes on to the store. XLA sends an infinite timeout as
/// `timeout_in_ms` = -1 (an int64 millisecond count narrowed to C int); that becomes this.
pub const MAX_CALLBACK_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Timeout of a get callback: negative (infinite, after XLA's narrowing) becomes
/// [`MAX_CALLBACK_WAIT`].
pub fn callback_timeout(timeout_in_ms: c_int) -> Duration {
    if timeout_in_ms < 0 {
        MAX_CALLBACK_WAIT
    } else {
        Duration::from_millis(timeout_in_ms as u64)
    }
}

/// The store behind the callbacks' `user_arg`. Boxed, so the pointer handed to the plugin stays
/// put; the client keeps it alive until after `PJRT_Client_Destroy`, because plugins keep the
/// callbacks and call them later (the GPU plugin fetches NCCL ids at the first execute).
pub(crate) struct KvCallbacks {
    store: Arc<dyn KeyValueStore>,
}

impl KvCallbacks {
    pub(crate) fn new(store: Arc<dyn KeyValueStore>) -> Box<KvCallbacks> {
        Box::new(KvCallbacks { store })
    }

    /// Sets the three callbacks and their user args in `args`. `self` must outlive the client.
    pub(crate) fn install(&self, args: &mut ffi::PJRT_Client_Create_Args) {
        let user_arg = self as *const KvCallbacks as *mut c_void;
        args.kv_get_callback = Some(kv_get);
        args.kv_get_user_arg = user_arg;
        args.kv_try_get_callback = Some(kv_try_get);
        args.kv_try_get_user_arg = user_arg;
        args.kv_put_callback = Some(kv_put);
        args.kv_put_user_arg = user_arg;
    }
}

/// The store behind a callback's `user_arg`.
///
/// # Safety
/// `user_arg` must be the pointer [`KvCallbacks::install`] set, with the `KvCallbacks` alive.
unsafe fn store_of<'a>(user_arg: *mut c_void) -> Result<&'a dyn KeyValueStore, KvError> {
    if user_arg.is_null() {
        return Err(KvError::new(
            KvErrorKind::Internal,
            "key-value callback called without its user_arg",
        ));
    }
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { &*(user_arg as *const KvCallbacks) }.store.as_ref())
}

/// The key of a callback, as UTF-8.
///
/// # Safety
/// `key` must be NULL or point to `key_size` readable bytes.
unsafe fn key_of<'a>(key: *const c_char, key_size: usize) -> Result<&'a str, KvError> {
    let bytes: &[u8] = if key.is_null() || key_size == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(key as *const u8, key_size) }
    };
    std::str::from_utf8(bytes).map_err(|_| {
        KvError::new(
            KvErrorKind::InvalidArgument,
            format!(
                "key-value store key is not UTF-8: {}",
                String::from_utf8_lossy(bytes)
            ),
        )
    })
}

/// Runs `f`, turning a panic into an error so that it never unwinds into the plugin.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, KvError>) -> Result<T, KvError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        Err(KvError::new(
            KvErrorKind::Internal,
            format!("key-value store {what} panicked: {detail}"),
        ))
    })
}

/// Makes the plugin's error object for `err` with the `callback_error` function it passed.
///
/// # Safety
/// `callback_error` must be what the plugin put in the callback's args.
unsafe fn plugin_error(
    callback_error: *mut PJRT_CallbackError,
    err: &KvError,
) -> *mut ffi::PJRT_Error {
    // SAFETY: a non-null pointer from the plugin points to its (function pointer) value.
    let make = if callback_error.is_null() {
        None
    } else {
        unsafe { *callback_error }
    };
    let Some(make) = make else {
        // Every plugin built from XLA passes it; without it there is no way to report the
        // failure, and returning success would hand the plugin a value that does not exist.
        eprintln!(
            "tpu-run: the PJRT plugin called a key-value callback without `callback_error`; \
             cannot report: {err}"
        );
        std::process::abort();
    };
    let message = err.message.as_bytes();
    // SAFETY: `make` is the plugin's function; the message bytes live for the call.
    unsafe {
        make(
            err.kind.pjrt_code(),
            message.as_ptr() as *const c_char,
            message.len(),
        )
    }
}

/// A copy of `value` in `malloc`ed memory (at least one byte, so never NULL on success).
fn malloc_copy(value: &[u8]) -> Result<*mut c_char, KvError> {
    // SAFETY: malloc with a non-zero size; NULL is checked.
    let ptr = unsafe { libc::malloc(value.len().max(1)) } as *mut u8;
    if ptr.is_null() {
        return Err(KvError::new(
            KvErrorKind::Internal,
            format!("out of memory copying a {}-byte value", value.len()),
        ));
    }
    // SAFETY: `ptr` has room for `value.len()` bytes and does not overlap `value`.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), ptr, value.len()) };
    Ok(ptr as *mut c_char)
}

/// The deleter the plugin calls on a value a get returned.
unsafe extern "C" fn free_value(value: *mut c_char) {
    // SAFETY: `value` came from `malloc_copy` (or is NULL, which free accepts).
    unsafe { libc::free(value as *mut c_void) };
}

unsafe extern "C" fn kv_get(args: *mut PJRT_KeyValueGetCallback_Args) -> *mut ffi::PJRT_Error {
    if args.is_null() {
        eprintln!("tpu-run: the PJRT plugin called the key-value get callback with NULL args");
        std::process::abort();
    }
    // SAFETY: the plugin passes a valid args struct for the duration of the call.
    let a = unsafe { &mut *args };
    let result = guarded("get", || {
        // SAFETY: user_arg is ours (installed with the callback); key/key_size from the plugin.
        let store = unsafe { store_of(a.user_arg) }?;
        let key = unsafe { key_of(a.key, a.key_size) }?;
        let value = store.get(key, callback_timeout(a.timeout_in_ms))?;
        Ok((malloc_copy(&value)?, value.len()))
    });
    match result {
        Ok((ptr, len)) => {
            a.value = ptr;
            a.value_size = len;
            a.value_deleter_callback = Some(free_value);
            std::ptr::null_mut()
        }
        // SAFETY: callback_error is the plugin's.
        Err(e) => unsafe { plugin_error(a.callback_error, &e) },
    }
}

unsafe extern "C" fn kv_try_get(
    args: *mut PJRT_KeyValueTryGetCallback_Args,
) -> *mut ffi::PJRT_Error {
    if args.is_null() {
        eprintln!("tpu-run: the PJRT plugin called the key-value try-get callback with NULL args");
        std::process::abort();
    }
    // SAFETY: the plugin passes a valid args struct for the duration of the call.
    let a = unsafe { &mut *args };
    let result = guarded("try-get", || {
        // SAFETY: user_arg is ours (installed with the callback); key/key_size from the plugin.
        let store = unsafe { store_of(a.user_arg) }?;
        let key = unsafe { key_of(a.key, a.key_size) }?;
        match store.try_get(key)? {
            Some(value) => Ok((malloc_copy(&value)?, value.len())),
            None => Err(KvError::new(
                KvErrorKind::NotFound,
                format!("key `{key}` not found in the key-value store"),
            )),
        }
    });
    match result {
        Ok((ptr, len)) => {
            a.value = ptr;
            a.value_size = len;
            a.value_deleter_callback = Some(free_value);
            std::ptr::null_mut()
        }
        // SAFETY: callback_error is the plugin's.
        Err(e) => unsafe { plugin_error(a.callback_error, &e) },
    }
}

unsafe extern "C" fn kv_put(args: *mut PJRT_KeyValuePutCallback_Args) -> *mut ffi::PJRT_Error {
    if args.is_null() {
        eprintln!("tpu-run: the PJRT plugin called the key-value put callback with NULL args");
        std::process::abort();
    }
    // SAFETY: the plugin passes a valid args struct for the duration of the call.
    let a = unsafe { &mut *args };
    let result = guarded("put", || {
        // SAFETY: user_arg is ours; key and value point to bytes alive for the call.
        let store = unsafe { store_of(a.user_arg) }?;
        let key = unsafe { key_of(a.key, a.key_size) }?;
        let value: &[u8] = if a.value.is_null() || a.value_size == 0 {
            &[]
        } else {
            // SAFETY: the plugin's value/value_size, alive for the call.
            unsafe { std::slice::from_raw_parts(a.value as *const u8, a.value_size) }
        };
        store.put(key, value)
    });
    match result {
        Ok(()) => std::ptr::null_mut(),
        // SAFETY: callback_error is the plugin's.
        Err(e) => unsafe { plugin_error(a.callback_error, &e) },
    }
}

#[cfg(test)]
mod tests {
    //! The trampolines called the way XLA's plugins call them (pjrt_c_api_helpers.cc:
    //! args on the stack with struct_size left unset, `callback_error` a pointer to a function
    //! that makes the error, the value copied and then freed with the deleter).
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// The error object our fake plugin makes: code and message, as the real ones keep.
    struct FakeError {
        code: c_int,
        message: String,
    }

    unsafe extern "C" fn make_fake_error(
        code: c_int,
        message: *const c_char,
        size: usize,
    ) -> *mut ffi::PJRT_Error {
        // SAFETY: the trampoline passes its message bytes, alive for this call.
        let bytes = unsafe { std::slice::from_raw_parts(message as *const u8, size) };
        Box::into_raw(Box::new(FakeError {
            code,
            message: String::from_utf8_lossy(bytes).into_owned(),
        })) as *mut ffi::PJRT_Error
    }

    fn take_fake_error(e: *mut ffi::PJRT_Error) -> Option<(c_int, String)> {
        if e.is_null() {
            return None;
        }
        // SAFETY: made by make_fake_error, taken once.
        let b = unsafe { Box::from_raw(e as *mut FakeError) };
        Some((b.code, b.message))
    }

    /// An in-memory store that records the timeouts it was given, and panics on key "boom".
    #[derive(Default)]
    struct MapStore {
        map: Mutex<HashMap<String, Vec<u8>>>,
        timeouts: Mutex<Vec<Duration>>,
    }

    impl KeyValueStore for MapStore {
        fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, KvError> {
            self.timeouts.lock().unwrap().push(timeout);
            if key == "boom" {
                panic!("store exploded on {key}");
            }
            self.map.lock().unwrap().get(key).cloned().ok_or_else(|| {
                KvError::new(KvErrorKind::DeadlineExceeded, format!("{key} never came"))
            })
        }
        fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            Ok(self.map.lock().unwrap().get(key).cloned())
        }
        fn put(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
            let mut m = self.map.lock().unwrap();
            match m.get(key) {
                Some(v) if v != value => Err(KvError::new(
                    KvErrorKind::AlreadyExists,
                    format!("{key} exists"),
                )),
                _ => {
                    m.insert(key.into(), value.to_vec());
                    Ok(())
                }
            }
        }
    }

    /// The callbacks and user args as a plugin receives them.
    fn installed(
        store: Arc<dyn KeyValueStore>,
    ) -> (Box<KvCallbacks>, ffi::PJRT_Client_Create_Args) {
        let cb = KvCallbacks::new(store);
        let mut args: ffi::PJRT_Client_Create_Args = ffi::new_args();
        cb.install(&mut args);
        (cb, args)
    }

    /// Calls the get callback like XLA's CApiKeyValueStore::Get; returns the value or the error.
    fn plugin_get(
        c: &ffi::PJRT_Client_Create_Args,
        key: &str,
        timeout_in_ms: c_int,
    ) -> Result<Vec<u8>, (c_int, String)> {
        let mut make: PJRT_CallbackError = Some(make_fake_error);
        // SAFETY: zeroed then overwritten with garbage struct_size, as the plugin leaves it.
        let mut a: PJRT_KeyValueGetCallback_Args = unsafe { std::mem::zeroed() };
        a.struct_size = 0xdead_beef;
        a.key = key.as_ptr() as *const c_char;
        a.key_size = key.len();
        a.timeout_in_ms = timeout_in_ms;
        a.callback_error = &mut make;
        a.user_arg = c.kv_get_user_arg;
        // SAFETY: the trampoline with valid args.
        let err = unsafe { (c.kv_get_callback.unwrap())(&mut a) };
        if let Some(e) = take_fake_error(err) {
            return Err(e);
        }
        // SAFETY: the value the callback returned, freed with its deleter as the plugin does.
        let v = unsafe { std::slice::from_raw_parts(a.value as *const u8, a.value_size) }.to_vec();
        assert!(!a.value.is_null());
        unsafe { (a.value_deleter_callback.unwrap())(a.value) };
        Ok(v)
    }

    fn plugin_try_get(
        c: &ffi::PJRT_Client_Create_Args,
        key: &str,
    ) -> Result<Vec<u8>, (c_int, String)> {
        let mut make: PJRT_CallbackError = Some(make_fake_error);
        // SAFETY: as in plugin_get.
        let mut a: PJRT_KeyValueTryGetCallback_Args = unsafe { std::mem::zeroed() };
        a.key = key.as_ptr() as *const c_char;
        a.key_size = key.len();
        a.callback_error = &mut make;
        a.user_arg = c.kv_try_get_user_arg;
        // SAFETY: the trampoline with valid args.
        let err = unsafe { (c.kv_try_get_callback.unwrap())(&mut a) };
        if let Some(e) = take_fake_error(err) {
            return Err(e);
        }
        // SAFETY: as in plugin_get.
        let v = unsafe { std::slice::from_raw_parts(a.value as *const u8, a.value_size) }.to_vec();
        unsafe { (a.value_deleter_callback.unwrap())(a.value) };
        Ok(v)
    }

    fn plugin_put(
        c: &ffi::PJRT_Client_Create_Args,
        key: &str,
        value: &[u8],
    ) -> Result<(), (c_int, String)> {
        let mut make: PJRT_CallbackError = Some(make_fake_error);
        // SAFETY: as in plugin_get.
        let mut a: PJRT_KeyValuePutCallback_Args = unsafe { std::mem::zeroed() };
        a.key = key.as_ptr() as *const c_char;
        a.key_size = key.len();
        a.value = value.as_ptr() as *const c_char;
        a.value_size = value.len();
        a.callback_error = &mut make;
        a.user_arg = c.kv_put_user_arg;
        // SAFETY: the trampoline with valid args.
        let err = unsafe { (c.kv_put_callback.unwrap())(&mut a) };
        match take_fake_error(err) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    #[test]
    fn callbacks_round_trip_values_and_report_errors_with_codes() {
        let store = Arc::new(MapStore::default());
        let (_cb, c) = installed(store.clone());
        assert!(
            c.kv_get_user_arg == c.kv_put_user_arg && c.kv_put_user_arg == c.kv_try_get_user_arg
        );

        // Binary values, including NUL bytes and the empty value, survive both directions.
        let value: Vec<u8> = (0..=255u8).rev().chain([0, 0, 7]).collect();
        plugin_put(&c, "gpu:local_topology/cuda/1", &value).unwrap();
        plugin_put(&c, "empty", b"").unwrap();
        assert_eq!(
            plugin_get(&c, "gpu:local_topology/cuda/1", 250).unwrap(),
            value
        );
        assert_eq!(
            plugin_try_get(&c, "gpu:local_topology/cuda/1").unwrap(),
            value
        );
        assert_eq!(plugin_get(&c, "empty", 10).unwrap(), Vec::<u8>::new());
        assert_eq!(
            store.map.lock().unwrap()["gpu:local_topology/cuda/1"],
            value
        );

        // Timeouts reach the store; XLA's infinite (-1 after narrowing) becomes the cap.
        plugin_get(&c, "empty", -1).unwrap();
        assert_eq!(
            *store.timeouts.lock().unwrap(),
            vec![
                Duration::from_millis(250),
                Duration::from_millis(10),
                MAX_CALLBACK_WAIT
            ]
        );

        // Errors: code and message as absl statuses.
        let (code, msg) = plugin_try_get(&c, "missing").unwrap_err();
        assert_eq!((code, msg.contains("missing")), (5, true), "{msg}");
        let (code, msg) = plugin_get(&c, "missing", 5).unwrap_err();
        assert_eq!((code, msg.as_str()), (4, "missing never came"));
        let (code, msg) = plugin_put(&c, "empty", b"other").unwrap_err();
        assert_eq!((code, msg.as_str()), (6, "empty exists"));

        // A panicking store becomes an INTERNAL error, not an unwind into C.
        let (code, msg) = plugin_get(&c, "boom", 5).unwrap_err();
        assert_eq!(code, 13);
        assert!(
            msg.contains("panicked") && msg.contains("store exploded on boom"),
            "{msg}"
        );
    }

    #[test]
    fn non_utf8_keys_are_invalid_arguments() {
        let (_cb, c) = installed(Arc::new(MapStore::default()));
        let mut make: PJRT_CallbackError = Some(make_fake_error);
        let key = [0xffu8, 0xfe, b'k'];
        // SAFETY: as in plugin_get.
        let mut a: PJRT_KeyValueTryGetCallback_Args = unsafe { std::mem::zeroed() };
        a.key = key.as_ptr() as *const c_char;
        a.key_size = key.len();
        a.callback_error = &mut make;
        a.user_arg = c.kv_try_get_user_arg;
        // SAFETY: the trampoline with valid args.
        let err = unsafe { (c.kv_try_get_callback.unwrap())(&mut a) };
        let (code, msg) = take_fake_error(err).unwrap();
        assert_eq!(code, 3);
        assert!(msg.contains("not UTF-8"), "{msg}");
    }
}

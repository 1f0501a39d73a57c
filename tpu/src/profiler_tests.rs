//! The profiler extension against a fake plugin table written in Rust: the chain walk, both
//! CollectData conventions, error conversion, and that every profiler and error object the fake
//! hands out is destroyed exactly once.
use super::*;
use crate::ffi::Args;
use crate::profiler_ffi as pf;
use std::ffi::{c_char, c_int};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

/// The fakes count live objects in statics, so their tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static LIVE_PROFILERS: AtomicUsize = AtomicUsize::new(0);
static LIVE_ERRORS: AtomicUsize = AtomicUsize::new(0);

/// An XSpace with `hostnames = ["h"]` (field 4, length-delimited).
const XSPACE: [u8; 3] = [0x22, 0x01, b'h'];

#[derive(Clone, Copy, PartialEq)]
enum Collect {
    /// XLA's plugin_tracer_impl.cc: its own buffer from the first call, one extra zero byte.
    PluginBuffer,
    /// The header's protocol: size first, then the caller's buffer is filled.
    CallerBuffer,
}

struct FakeProfiler {
    options: Vec<u8>,
    started: bool,
    stopped: bool,
    collect: Collect,
    own: Vec<u8>,
}

struct FakeError {
    message: String,
    code: c_int,
}

fn fake_error(message: &str, code: c_int) -> *mut PLUGIN_Profiler_Error {
    LIVE_ERRORS.fetch_add(1, SeqCst);
    Box::into_raw(Box::new(FakeError {
        message: message.into(),
        code,
    })) as *mut PLUGIN_Profiler_Error
}

unsafe extern "C" fn error_destroy(a: *mut pf::PLUGIN_Profiler_Error_Destroy_Args) {
    LIVE_ERRORS.fetch_sub(1, SeqCst);
    drop(unsafe { Box::from_raw((*a).error as *mut FakeError) });
}
unsafe extern "C" fn error_message(a: *mut pf::PLUGIN_Profiler_Error_Message_Args) {
    let e = unsafe { &*((*a).error as *const FakeError) };
    unsafe {
        (*a).message = e.message.as_ptr() as *const c_char;
        (*a).message_size = e.message.len();
    }
}
unsafe extern "C" fn error_get_code(
    a: *mut pf::PLUGIN_Profiler_Error_GetCode_Args,
) -> *mut PLUGIN_Profiler_Error {
    unsafe { (*a).code = (*((*a).error as *const FakeError)).code };
    null_mut()
}

fn options_of(a: &pf::PLUGIN_Profiler_Create_Args) -> Vec<u8> {
    unsafe { std::slice::from_raw_parts(a.options as *const u8, a.options_size) }.to_vec()
}

unsafe extern "C" fn create_plugin_buffer(
    a: *mut pf::PLUGIN_Profiler_Create_Args,
) -> *mut PLUGIN_Profiler_Error {
    create(unsafe { &mut *a }, Collect::PluginBuffer)
}
unsafe extern "C" fn create_caller_buffer(
    a: *mut pf::PLUGIN_Profiler_Create_Args,
) -> *mut PLUGIN_Profiler_Error {
    create(unsafe { &mut *a }, Collect::CallerBuffer)
}
fn create(a: &mut pf::PLUGIN_Profiler_Create_Args, collect: Collect) -> *mut PLUGIN_Profiler_Error {
    if a.struct_size < pf::PLUGIN_Profiler_Create_Args::STRUCT_SIZE {
        return fake_error("Create_Args too small", 3);
    }
    LIVE_PROFILERS.fetch_add(1, SeqCst);
    a.profiler = Box::into_raw(Box::new(FakeProfiler {
        options: options_of(a),
        started: false,
        stopped: false,
        collect,
        own: Vec::new(),
    })) as *mut PLUGIN_Profiler;
    null_mut()
}
unsafe extern "C" fn destroy(
    a: *mut pf::PLUGIN_Profiler_Destroy_Args,
) -> *mut PLUGIN_Profiler_Error {
    LIVE_PROFILERS.fetch_sub(1, SeqCst);
    drop(unsafe { Box::from_raw((*a).profiler as *mut FakeProfiler) });
    null_mut()
}
fn fake(p: *mut PLUGIN_Profiler) -> &'static mut FakeProfiler {
    unsafe { &mut *(p as *mut FakeProfiler) }
}
unsafe extern "C" fn start(a: *mut pf::PLUGIN_Profiler_Start_Args) -> *mut PLUGIN_Profiler_Error {
    fake(unsafe { (*a).profiler }).started = true;
    null_mut()
}
unsafe extern "C" fn start_busy(
    _a: *mut pf::PLUGIN_Profiler_Start_Args,
) -> *mut PLUGIN_Profiler_Error {
    fake_error("Another profiling session active.", 9)
}
unsafe extern "C" fn stop(a: *mut pf::PLUGIN_Profiler_Stop_Args) -> *mut PLUGIN_Profiler_Error {
    fake(unsafe { (*a).profiler }).stopped = true;
    null_mut()
}
unsafe extern "C" fn collect_data(
    a: *mut pf::PLUGIN_Profiler_CollectData_Args,
) -> *mut PLUGIN_Profiler_Error {
    let a = unsafe { &mut *a };
    let p = fake(a.profiler);
    if !p.stopped {
        return fake_error("collect before stop", 9);
    }
    // Records the options it was created with, so the test sees what reached the plugin.
    let mut data = XSPACE.to_vec();
    data.extend([0x12, p.options.len() as u8]);
    data.extend(&p.options);
    match p.collect {
        Collect::PluginBuffer => {
            if a.buffer.is_null() {
                p.own = data;
                p.own.push(0);
                a.buffer = p.own.as_mut_ptr();
                a.buffer_size_in_bytes = p.own.len();
            }
        }
        Collect::CallerBuffer => {
            if a.buffer.is_null() {
                a.buffer_size_in_bytes = data.len();
            } else {
                let out = unsafe { std::slice::from_raw_parts_mut(a.buffer, data.len()) };
                out.copy_from_slice(&data);
            }
        }
    }
    null_mut()
}

fn table(create: pf::P<pf::PLUGIN_Profiler_Create_Args>) -> pf::PLUGIN_Profiler_Api {
    pf::PLUGIN_Profiler_Api {
        struct_size: pf::PLUGIN_PROFILER_API_STRUCT_SIZE,
        priv_: null_mut(),
        error_destroy: Some(error_destroy),
        error_message: Some(error_message),
        error_get_code: Some(error_get_code),
        create,
        destroy: Some(destroy),
        start: Some(start),
        stop: Some(stop),
        collect_data: Some(collect_data),
    }
}

fn profiler_of(t: &'static pf::PLUGIN_Profiler_Api) -> Result<Profiler> {
    Ok(Profiler {
        table: unsafe { Table::new(t) }?,
        _plugin: None,
    })
}

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

fn ext(type_: c_int, struct_size: usize, next: *const PJRT_Extension_Base) -> PJRT_Extension_Base {
    PJRT_Extension_Base {
        struct_size,
        type_,
        next: next as *mut _,
    }
}

#[test]
fn chain_walk_finds_the_profiler_node() {
    let api = leak(table(Some(create_plugin_buffer)));
    let prof = leak(pf::PJRT_Profiler_Extension {
        base: ext(1, pf::PJRT_PROFILER_EXTENSION_STRUCT_SIZE, null()),
        profiler_api: api,
        traceme_context_id: 0,
    });
    // The CPU plugin's chain (PhaseCompile, FFI, MemoryDescriptions, Layouts), then a profiler.
    let layouts = leak(ext(4, 72, &prof.base));
    let mem = leak(ext(6, 40, layouts));
    let ffi = leak(ext(5, 48, mem));
    let head = leak(ext(9, 64, ffi));
    unsafe {
        assert_eq!(extension_types(head), vec![9, 5, 6, 4, 1]);
        assert_eq!(find_profiler(head).unwrap(), Some(api as *const _));
        // Without the profiler node there is none.
        let no_prof = leak(ext(9, 64, leak(ext(4, 72, null()))));
        assert_eq!(find_profiler(no_prof).unwrap(), None);
        assert_eq!(find_profiler(null()).unwrap(), None);
    }
}

#[test]
fn unusable_profiler_nodes_are_errors() {
    let api = leak(table(Some(create_plugin_buffer)));
    let null_table = leak(pf::PJRT_Profiler_Extension {
        base: ext(1, pf::PJRT_PROFILER_EXTENSION_STRUCT_SIZE, null()),
        profiler_api: null(),
        traceme_context_id: 0,
    });
    let e = unsafe { find_profiler(&null_table.base) }.unwrap_err();
    assert!(e.to_string().contains("profiler_api is NULL"), "{e}");
    let small = leak(pf::PJRT_Profiler_Extension {
        base: ext(1, 24, null()),
        profiler_api: api,
        traceme_context_id: 0,
    });
    let e = unsafe { find_profiler(&small.base) }.unwrap_err();
    assert!(e.to_string().contains("struct_size 24"), "{e}");
    // A version-0 table (no error entries) and a table with a NULL entry.
    let mut old = table(Some(create_plugin_buffer));
    old.struct_size = 40;
    let e = profiler_of(leak(old)).unwrap_err();
    assert!(e.to_string().contains("struct_size 40"), "{e}");
    let mut holes = table(Some(create_plugin_buffer));
    holes.stop = None;
    let e = profiler_of(leak(holes)).unwrap_err();
    assert!(e.to_string().contains("`stop`"), "{e}");
}

fn check_round_trip(create: pf::P<pf::PLUGIN_Profiler_Create_Args>) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = LIVE_PROFILERS.load(SeqCst);
    let p = profiler_of(leak(table(create))).unwrap();
    let opts = ProfileOptions {
        host_tracer_level: 3,
        ..ProfileOptions::default()
    };
    let session = p.start(&opts).unwrap();
    assert_eq!(LIVE_PROFILERS.load(SeqCst), before + 1);
    let bytes = session.stop_and_collect().unwrap();
    assert_eq!(LIVE_PROFILERS.load(SeqCst), before, "profiler destroyed");
    // The fake's XSpace, then the options it received, and no stray zero byte.
    let encoded = opts.to_proto_bytes();
    assert_eq!(&bytes[..3], &XSPACE);
    assert_eq!(&bytes[5..], &encoded[..]);
    assert_eq!(bytes.len(), 5 + encoded.len());
}

#[test]
fn collect_copies_the_plugins_own_buffer_without_its_padding() {
    check_round_trip(Some(create_plugin_buffer));
}

#[test]
fn collect_fills_a_caller_buffer() {
    check_round_trip(Some(create_caller_buffer));
}

#[test]
fn plugin_errors_carry_message_and_code_and_are_destroyed() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (profilers, errors) = (LIVE_PROFILERS.load(SeqCst), LIVE_ERRORS.load(SeqCst));
    let mut t = table(Some(create_plugin_buffer));
    t.start = Some(start_busy);
    let p = profiler_of(leak(t)).unwrap();
    let e = p.start(&ProfileOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("PLUGIN_Profiler_start"), "{msg}");
    assert!(msg.contains("Another profiling session active."), "{msg}");
    assert_eq!(e.pjrt_code(), Some(9));
    // The profiler created before the failed start and the error are both gone.
    assert_eq!(LIVE_PROFILERS.load(SeqCst), profilers);
    assert_eq!(LIVE_ERRORS.load(SeqCst), errors);
}

#[test]
fn dropping_a_session_stops_and_destroys_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = LIVE_PROFILERS.load(SeqCst);
    let p = profiler_of(leak(table(Some(create_plugin_buffer)))).unwrap();
    let session = p.start(&ProfileOptions::default()).unwrap();
    let raw = session.raw;
    assert!(fake(raw).started && !fake(raw).stopped);
    drop(session);
    assert_eq!(LIVE_PROFILERS.load(SeqCst), before);
}

#[test]
fn default_options_encode_the_levels_with_version_1() {
    // host_tracer_level 2 (field 2), device_tracer_level 1 (field 3), version 1 (field 5);
    // zero-valued fields are not written.
    assert_eq!(
        ProfileOptions::default().to_proto_bytes(),
        vec![0x10, 2, 0x18, 1, 0x28, 1]
    );
}

#[test]
fn only_a_padding_zero_is_stripped() {
    assert_eq!(
        strip_trailing_nul(vec![0x22, 1, b'h', 0]),
        vec![0x22, 1, b'h']
    );
    // A varint field whose value is 0, and a string ending in a zero byte, keep it.
    assert_eq!(strip_trailing_nul(vec![0x08, 0]), vec![0x08, 0]);
    assert_eq!(
        strip_trailing_nul(vec![0x22, 2, b'h', 0]),
        vec![0x22, 2, b'h', 0]
    );
    assert_eq!(strip_trailing_nul(vec![0]), Vec::<u8>::new());
    assert_eq!(strip_trailing_nul(vec![]), Vec::<u8>::new());
    // A truncated length-delimited field is not complete.
    assert_eq!(
        strip_trailing_nul(vec![0x22, 5, b'h', 0]),
        vec![0x22, 5, b'h', 0]
    );
}

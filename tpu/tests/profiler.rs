//! The profiler extension of the real XLA CPU plugin: `xla-cpu-pjrt` 0.0.1 offers none (its
//! extension chain, measured 2026-12: PhaseCompile 9, FFI 5, MemoryDescriptions 6, Layouts 4),
//! and tpu-run says so with `Ok(None)` rather than failing. The session itself is tested against
//! a fake plugin table (src/profiler_tests.rs).
use tpu::{Client, ClientOptions};

/// `PJRT_Extension_Type_Profiler` in pjrt_c_api.h.
const PROFILER: i32 = 1;

#[test]
fn the_cpu_plugin_offers_no_profiler() {
    let client = Client::cpu(&ClientOptions::cpu(1)).expect("CPU PJRT client");
    let plugin = client.plugin();
    let types = plugin.extension_types();
    // The chain walk reads the plugin's real nodes: the pinned plugin has these four.
    assert_eq!(types, vec![9, 5, 6, 4], "extension chain of {plugin:?}");
    assert!(!types.contains(&PROFILER));
    assert!(plugin.profiler().expect("walking the chain").is_none());
}

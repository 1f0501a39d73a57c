//! The profiler extension of the real XLA CPU plugin: `xla-cpu-pjrt` 0.0.1 offers none (its
//! extension chain, measured 2026-12: PhaseCompile 9, FFI 5, MemoryDescriptions 6, Layouts 4),
//! and tpu-run says so with `Ok(None)` rather than failing. The session itself is tested against
//! a fake plugin table (src/profiler_tests.rs).
use prost::Message;
use tpu::{Client, ClientOptions, Plugin, PluginKind, ProfileOptions};

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

/// The start of `tensorflow.profiler.XSpace` (xplane.proto): planes 1 { name 2 }, hostnames 4.
#[derive(Clone, PartialEq, prost::Message)]
struct XSpaceNames {
    #[prost(message, repeated, tag = "1")]
    planes: Vec<XPlaneName>,
    #[prost(string, repeated, tag = "4")]
    hostnames: Vec<String>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct XPlaneName {
    #[prost(string, tag = "2")]
    name: String,
}

/// A real session on XLA's GPU plugin (jax-cuda13-pjrt 0.11.2 offers the extension:
/// struct_size 40, a 104-byte table). No GPU is needed for the protocol: create, start, stop,
/// collect and destroy succeed, and what the plugin returns parses whole as an XSpace. The plugin
/// answers CollectData with its own buffer and one extra zero byte (measured: 1 byte for a
/// session that recorded nothing, as the plugin holds only the device tracer and there is no
/// GPU here), which a parser rejects unless it is dropped. With a GPU the space has its planes.
/// Skips where no CUDA plugin is found (CI); `TPU_RUN_PLUGIN=.../xla_cuda_plugin.so` points it
/// at one.
#[test]
fn the_cuda_plugin_profiles_a_session_even_without_a_gpu() {
    let plugin = match Plugin::discover(PluginKind::Cuda, None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipped: no CUDA PJRT plugin ({e})");
            return;
        }
    };
    assert!(plugin.extension_types().contains(&PROFILER));
    let profiler = plugin
        .profiler()
        .expect("a usable profiler extension")
        .expect("XLA's GPU plugin offers a profiler");
    let session = profiler.start(&ProfileOptions::default()).expect("start");
    let bytes = session.stop_and_collect().expect("stop and collect");
    let space = XSpaceNames::decode(bytes.as_slice()).expect("an XSpace");
    let names: Vec<_> = space.planes.iter().map(|p| p.name.as_str()).collect();
    eprintln!("{} bytes, planes {names:?}", bytes.len());
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("/device:") || n.starts_with("/host:")),
        "{names:?}"
    );
    // A second session after the first is over works as well.
    let again = profiler.start(&ProfileOptions::default()).expect("restart");
    XSpaceNames::decode(again.stop_and_collect().expect("collect").as_slice()).expect("an XSpace");
}

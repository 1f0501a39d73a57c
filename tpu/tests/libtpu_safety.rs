//! libtpu off-TPU: refused while the network is up; under `unshare --net`, client creation fails
//! within a second with a clear error. Skipped when libtpu is not installed, or when `unshare`
//! is unavailable. Never reaches the network: nothing of libtpu runs outside the namespace.
use std::time::{Duration, Instant};
use tpu::{Client, ClientOptions, Error, Plugin, PluginKind};

const CHILD_ENV: &str = "TPU_RUN_LIBTPU_CHILD";

fn libtpu() -> Option<std::path::PathBuf> {
    tpu::plugin::find(PluginKind::Tpu, None).filter(|p| p.is_file())
}

#[test]
fn libtpu_is_refused_with_network_up() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let Some(path) = libtpu() else {
        eprintln!("skipped: libtpu not installed");
        return;
    };
    if !tpu::plugin::tpu_devices_present_here()
        && !tpu::tpu_safety::non_loopback_interfaces_up().is_empty()
    {
        // Loading is allowed (only the version table is read); initializing or creating a
        // client is refused before libtpu runs.
        let err = Plugin::load(&path).unwrap_err();
        assert!(err.to_string().contains("unshare --net"), "{err}");
        assert!(matches!(err, Error::TpuSafety(_)), "{err}");
    }
}

#[test]
fn libtpu_without_network_fails_fast() {
    let Some(path) = libtpu() else {
        eprintln!("skipped: libtpu not installed");
        return;
    };
    if std::env::var_os(CHILD_ENV).is_none() {
        // Re-run this test alone in a fresh network namespace (only loopback, down).
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new("unshare")
            .args(["--net", "--map-root-user"])
            .arg(&exe)
            .args([
                "--exact",
                "libtpu_without_network_fails_fast",
                "--nocapture",
            ])
            .env(CHILD_ENV, "1")
            .status();
        match status {
            Ok(s) if s.success() => {}
            // libtest exits with 101 when the child's test failed; unshare itself fails with 1.
            Ok(s) if s.code() == Some(101) => panic!("child failed: {s}"),
            other => eprintln!("skipped: cannot run under unshare --net: {other:?}"),
        }
        return;
    }
    // Child: inside the namespace.
    assert!(tpu::tpu_safety::non_loopback_interfaces_up().is_empty());
    let t = Instant::now();
    let plugin = Plugin::load(&path).unwrap();
    assert_eq!(plugin.api_version().0, 0);
    assert_eq!(std::env::var("TPU_SKIP_MDS_QUERY").as_deref(), Ok("1"));
    let err = Client::new(&plugin, &ClientOptions::default()).unwrap_err();
    let elapsed = t.elapsed();
    eprintln!("libtpu off-TPU: {err} after {elapsed:?}");
    assert!(matches!(err, Error::Pjrt { .. }), "{err}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

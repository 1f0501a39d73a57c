//! libtpu's environment as `Plugin::load` prepares it (`tpu_safety::prepare_libtpu_env_at`), on
//! fake machines in temp dirs: a TPU host (device nodes and a TPU chip on the PCI bus) keeps
//! `TPU_SKIP_MDS_QUERY` as the user left it; anywhere else it is set to 1, whatever it was, and
//! a client is allowed only without network, as before. One test function: it changes this
//! process's environment, so nothing may run beside it.
use tpu::tpu_host::{fake_host, GOOGLE_PCI_VENDOR};
use tpu::tpu_safety::{check_libtpu_client_allowed_at, prepare_libtpu_env_at, SKIP_MDS_QUERY_ENV};

const V5E: (&str, &str) = (GOOGLE_PCI_VENDOR, "0x0063");

fn skip() -> Option<String> {
    std::env::var(SKIP_MDS_QUERY_ENV).ok()
}

#[test]
fn the_metadata_server_is_skipped_off_a_tpu_host_only() {
    let t = tempfile::tempdir().unwrap();
    let (tpu_vm, bare, nodes_only) = (
        t.path().join("tpu-vm"),
        t.path().join("bare"),
        t.path().join("vfio-nodes"),
    );
    fake_host(&tpu_vm, true, Some(V5E)).unwrap();
    fake_host(&bare, false, None).unwrap();
    fake_host(&nodes_only, true, None).unwrap();
    let network_up = [("eth0".to_string(), libc::IFF_UP as u32)];

    // A TPU host: not set, and what the user set stays.
    std::env::remove_var(SKIP_MDS_QUERY_ENV);
    prepare_libtpu_env_at(&tpu_vm);
    assert_eq!(skip(), None);
    check_libtpu_client_allowed_at(&tpu_vm, &network_up, skip().as_deref()).unwrap();
    std::env::set_var(SKIP_MDS_QUERY_ENV, "true");
    prepare_libtpu_env_at(&tpu_vm);
    assert_eq!(skip().as_deref(), Some("true"));

    // No TPU: set to 1 whatever it was, and a client needs the network off, as before.
    for machine in [&bare, &nodes_only] {
        std::env::remove_var(SKIP_MDS_QUERY_ENV);
        prepare_libtpu_env_at(machine);
        assert_eq!(skip().as_deref(), Some("1"), "{}", machine.display());
        std::env::set_var(SKIP_MDS_QUERY_ENV, "0");
        prepare_libtpu_env_at(machine);
        assert_eq!(skip().as_deref(), Some("1"), "{}", machine.display());
    }
    let err = check_libtpu_client_allowed_at(&bare, &network_up, Some("1")).unwrap_err();
    assert!(err.to_string().contains("unshare --net"), "{err}");
    check_libtpu_client_allowed_at(&bare, &[], Some("1")).unwrap();
    let err = check_libtpu_client_allowed_at(&bare, &[], None).unwrap_err();
    assert!(err.to_string().contains("TPU_SKIP_MDS_QUERY=1"), "{err}");
}

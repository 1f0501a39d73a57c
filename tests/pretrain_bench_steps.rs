//! `pretrain --bench-steps`: the record carries the startup breakdown, each phase measured and
//! together no longer than the time to the first step they lead up to.
mod cli_support;
use cli_support::{run_ok, stdout, tpu_run};
use serde_json::Value;

#[test]
fn the_bench_record_breaks_the_time_to_the_first_step_down() {
    let out = run_ok(
        tpu_run()
            .args(["pretrain", "--synthetic-data", "--preset", "tiny"])
            .args(["--backend", "cpu", "--batch-size", "4", "--seq-len", "16"])
            .args(["--max-predictions", "2", "--bench-steps", "3"])
            .arg("--no-compile-cache"),
    );
    let stdout = stdout(&out);
    assert!(
        stdout.lines().any(|l| l.starts_with("startup:")
            && l.contains("host state")
            && l.contains("first step")),
        "{stdout}"
    );
    let record: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let startup = &record["startup"];
    let phase = |k: &str| {
        startup[k]
            .as_f64()
            .unwrap_or_else(|| panic!("startup.{k} missing: {record}"))
    };
    let phases = [
        "client_s",
        "build_s",
        "compile_s",
        "state_s",
        "upload_s",
        "first_step_s",
    ];
    for k in phases {
        assert!(phase(k) >= 0.0, "{record}");
    }
    // The compile is the compile the record reports (rounded to 10 ms there).
    assert!((phase("compile_s") - record["compile_s"].as_f64().unwrap()).abs() <= 0.006);
    assert!(
        phase("compile_s") > 0.0 && phase("first_step_s") > 0.0,
        "{record}"
    );
    let sum: f64 = phases.iter().map(|k| phase(k)).sum();
    let ttfs = record["time_to_first_step_s"].as_f64().unwrap();
    // The record rounds the time to the first step to 10 ms.
    assert!(
        sum <= ttfs + 0.006,
        "phases {sum} s > time to first step {ttfs} s: {record}"
    );
}

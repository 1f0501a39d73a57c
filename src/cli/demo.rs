//! `tpu-run demo`: build, print, compile and run a small program; check it against Rust.
use super::DeviceArgs;
use crate::backend::open_client;
use crate::examples::example;
use crate::run::{max_rel_error, run_once};
use anyhow::{bail, Result};

pub fn run(a: &DeviceArgs) -> Result<()> {
    let ex = example("mlp", 0)?;
    println!("== {}: {}", ex.name, ex.about);
    println!("{}", hlo::text::to_text(&ex.module));
    let client = open_client(a.backend, a.plugin.as_deref(), a.cpu_devices)?;
    let plugin = client.plugin();
    let (major, minor) = plugin.api_version();
    println!(
        "== plugin {} (PJRT C API {major}.{minor}), platform {} {}",
        plugin.path().display(),
        client.platform_name()?,
        client.platform_version()?
    );
    let r = run_once(&client, &ex.module, &ex.inputs)?;
    println!(
        "== compiled in {:.1} ms, executed in {:.3} ms",
        r.compile_time.as_secs_f64() * 1e3,
        r.execute_time.as_secs_f64() * 1e3
    );
    println!("h = tanh(x @ w + b), first row: {:.5?}", &r.outputs[0][..8]);
    println!("row sums of h:                  {:.5?}", r.outputs[1]);
    println!("Rust reference row sums:        {:.5?}", ex.expected[1]);
    let err = max_rel_error(&r.outputs, &ex.expected)?;
    if err > ex.tolerance {
        bail!(
            "results differ from the Rust reference: max relative error {err:.3e} > {:.1e}",
            ex.tolerance
        );
    }
    println!(
        "OK: max relative error vs the Rust reference {err:.2e} (tolerance {:.0e})",
        ex.tolerance
    );
    Ok(())
}

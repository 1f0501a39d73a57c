//! `tpu-run plugin install|list`.
use crate::backend::Backend;
use anyhow::Result;

pub fn install(backend: Backend) -> Result<()> {
    let i = tpu::plugin::install(backend.plugin_kind())?;
    println!(
        "installed {} {} at {}",
        i.package,
        i.version,
        i.path.display()
    );
    Ok(())
}

pub fn list() -> Result<()> {
    let found = tpu::plugin::list();
    if found.is_empty() {
        println!("no PJRT plugin found; install one with `tpu-run plugin install cpu|cuda|tpu`");
        return Ok(());
    }
    println!("{:<8} {:<20} {:<7} path", "platform", "package", "C API");
    for p in found {
        let api = match p.api_version {
            Ok((major, minor)) => format!("{major}.{minor}"),
            Err(e) => format!("error: {e}"),
        };
        println!(
            "{:<8} {:<20} {:<7} {}",
            p.kind.name(),
            p.package_version.unwrap_or_else(|| "?".into()),
            api,
            p.path.display()
        );
    }
    Ok(())
}

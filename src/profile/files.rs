//! Where the trace files go: `DIR/plugins/profile/<run>/<host>.xplane.pb` is the layout
//! TensorBoard's profile plugin (and XProf) read, with `<run>` a UTC time
//! `YYYY_MM_DD_HH_MM_SS` as `jax.profiler` names it; `DIR/trace.json` and `DIR/layers.tsv` sit
//! beside `plugins/`, with `unmapped.tsv` and `kernels.tsv`.
use super::scopes::{ps_to_ms, DeviceTime};
use super::xplane::XSpace;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY_MM_DD_HH_MM_SS` (UTC) of `t`.
pub fn run_name(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}_{m:02}_{d:02}_{:02}_{:02}_{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month, day) of a count of days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The host name for the file name: the space's own, else this machine's, reduced to
/// `[A-Za-z0-9._-]` so it is one plain path component.
pub fn host_name(space: &XSpace) -> String {
    let raw = space
        .hostnames
        .iter()
        .find(|h| !h.trim().is_empty())
        .cloned()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_matches('.');
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean.into()
    }
}

/// A new run folder under `DIR/plugins/profile/` (`<run>`, or `<run>_<n>` when that exists).
pub fn new_run_dir(dir: &Path, run: &str) -> Result<PathBuf> {
    let base = dir.join("plugins").join("profile");
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    for n in 0..1000 {
        let name = if n == 0 {
            run.to_string()
        } else {
            format!("{run}_{n}")
        };
        let path = base.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    anyhow::bail!("{} holds 1000 runs named {run}", base.display())
}

/// `scope<TAB>device_ms<TAB>events`, largest first, then one `(unmapped)` row.
pub fn layers_tsv(time: &DeviceTime) -> String {
    let mut out = String::from("scope\tdevice_ms\tevents\n");
    for (scope, ps, n) in &time.per_scope {
        out.push_str(&format!("{scope}\t{:.6}\t{n}\n", ps_to_ms(*ps)));
    }
    out.push_str(&format!(
        "(unmapped)\t{:.6}\t{}\n",
        ps_to_ms(time.unmapped_ps),
        time.unmapped_events
    ));
    out
}

/// `label<TAB>device_ms<TAB>events` of the unmapped events by kind, largest first.
pub fn unmapped_tsv(time: &DeviceTime) -> String {
    let mut out = String::from("event\tdevice_ms\tevents\n");
    for (label, ps, n) in &time.unmapped_kinds {
        out.push_str(&format!("{label}\t{:.6}\t{n}\n", ps_to_ms(*ps)));
    }
    out
}

/// `scope<TAB>kernel<TAB>device_ms<TAB>events<TAB>mean_us` per (layer-folded scope, kernel),
/// largest first.
pub fn kernels_tsv(time: &DeviceTime) -> String {
    let mut out = String::from("scope\tkernel\tdevice_ms\tevents\tmean_us\n");
    for ((scope, kernel), ps, n) in &time.per_kernel {
        let mean_us = ps_to_ms(*ps) * 1e3 / (*n).max(1) as f64;
        out.push_str(&format!(
            "{scope}\t{kernel}\t{:.6}\t{n}\t{mean_us:.2}\n",
            ps_to_ms(*ps)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn run_names_are_utc_calendar_times() {
        assert_eq!(run_name(UNIX_EPOCH), "1970_01_01_00_00_00");
        // 2024-02-29T13:05:09Z (a leap day) = 1709211909.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_211_909);
        assert_eq!(run_name(t), "2024_02_29_13_05_09");
        // 2026-12-31T23:59:59Z = 1798761599.
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(run_name(t), "2026_12_31_23_59_59");
    }

    #[test]
    fn host_names_become_one_path_component() {
        let space = |h: &str| XSpace {
            hostnames: vec![h.into()],
            ..Default::default()
        };
        assert_eq!(host_name(&space("gpu-7.example")), "gpu-7.example");
        assert_eq!(host_name(&space("../a/b c")), "_a_b_c");
        assert_eq!(host_name(&space("..")), "localhost");
    }
}

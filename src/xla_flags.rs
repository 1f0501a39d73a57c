//! `--xla-flag NAME=VALUE`: XLA debug options for every program this process compiles, passed
//! to the plugin as compile-option overrides (`CompileOptionsProto.env_option_overrides`,
//! which XLA applies to its `DebugOptions` by field name). Unlike the `XLA_FLAGS` environment
//! variable, which plugins read once at load, they take effect per compile and are recorded
//! with benchmark results.
use anyhow::{bail, Result};
use std::sync::Mutex;
use tpu::{CompileOptions, OptionOverride};

static FLAGS: Mutex<Vec<(String, OptionOverride)>> = Mutex::new(Vec::new());

/// Parses `NAME=VALUE`: `true`/`false` are booleans, integers and decimals numbers, anything
/// else a string (as XLA's flag parser would read them).
pub fn parse(flag: &str) -> Result<(String, OptionOverride)> {
    let Some((name, value)) = flag.split_once('=') else {
        bail!("--xla-flag {flag:?}: expected NAME=VALUE, e.g. xla_gpu_autotune_level=0");
    };
    let name = name.trim().trim_start_matches("--");
    if !name.starts_with("xla_")
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!(
            "--xla-flag {flag:?}: {name:?} is not an XLA debug option name (lower-case, \
             starting with xla_, as in xla/xla.proto's DebugOptions)"
        );
    }
    let value = value.trim();
    let parsed = match value {
        "true" => OptionOverride::Bool(true),
        "false" => OptionOverride::Bool(false),
        v => match (v.parse::<i64>(), v.parse::<f64>()) {
            (Ok(i), _) => OptionOverride::Int(i),
            (_, Ok(d)) if v.contains('.') => OptionOverride::Double(d),
            _ => OptionOverride::Str(v.to_string()),
        },
    };
    Ok((name.to_string(), parsed))
}

/// Sets the flags every later compile gets (replacing earlier ones).
pub fn set_global(flags: &[String]) -> Result<()> {
    let parsed = flags.iter().map(|f| parse(f)).collect::<Result<Vec<_>>>()?;
    *FLAGS.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
    Ok(())
}

/// Adds `NAME=VALUE` to the global flags unless the user set `NAME`; whether it was added.
pub fn add_default(flag: &str) -> Result<bool> {
    let (name, value) = parse(flag)?;
    let mut flags = FLAGS.lock().unwrap_or_else(|e| e.into_inner());
    if flags.iter().any(|(n, _)| *n == name) {
        return Ok(false);
    }
    flags.push((name, value));
    Ok(true)
}

/// The flags set with [`set_global`], as `NAME=VALUE` strings (for reports).
pub fn global() -> Vec<String> {
    FLAGS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(name, v)| format!("{name}={}", display(v)))
        .collect()
}

/// Adds the global flags to `options`; they win over the program's own choices, since the
/// user asked for them.
pub fn apply(options: &mut CompileOptions) {
    for (name, value) in FLAGS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        options
            .env_option_overrides
            .insert(name.clone(), value.clone());
    }
}

fn display(v: &OptionOverride) -> String {
    match v {
        OptionOverride::Str(s) => s.clone(),
        OptionOverride::Bool(b) => b.to_string(),
        OptionOverride::Int(i) => i.to_string(),
        OptionOverride::Double(d) => d.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed() {
        assert_eq!(
            parse("xla_gpu_autotune_level=0").unwrap(),
            ("xla_gpu_autotune_level".into(), OptionOverride::Int(0))
        );
        assert_eq!(
            parse("--xla_gpu_enable_latency_hiding_scheduler=true")
                .unwrap()
                .1,
            OptionOverride::Bool(true)
        );
        assert_eq!(
            parse("xla_gpu_memory_limit_slop_factor=0.95").unwrap().1,
            OptionOverride::Double(0.95)
        );
        assert_eq!(
            parse("xla_gpu_enable_command_buffer=FUSION,CUBLAS")
                .unwrap()
                .1,
            OptionOverride::Str("FUSION,CUBLAS".into())
        );
        assert!(parse("xla_gpu_autotune_level").is_err());
        assert!(parse("autotune=1").is_err());
        assert!(parse("xla_GPU=1").is_err());
    }

    #[test]
    fn a_default_yields_to_the_users_setting() {
        let name = "xla_tpu_run_test_only_flag";
        assert!(add_default(&format!("{name}=1")).unwrap());
        assert!(!add_default(&format!("{name}=2")).unwrap(), "already set");
        assert!(global().contains(&format!("{name}=1")));
        let mut options = CompileOptions::default();
        apply(&mut options);
        assert_eq!(options.env_option_overrides[name], OptionOverride::Int(1));
        FLAGS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(n, _)| n != name);
    }
}

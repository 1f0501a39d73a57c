//! The coordinator settings of a multi-process `tpu-run pretrain` (the `[device]
//! coordinator_*` keys and `--coordinator-*` flags) turned into the coordinator's server and
//! client configurations: where the run's token comes from, TLS files, timeouts.
use super::config::DeviceSection;
use crate::coord::{self, ClientConfig, ServerConfig, ServerTls, Token, TOKEN_ENV};
use anyhow::{anyhow, bail, Context, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The run's token: `--coordinator-token-file`, else `$TPU_RUN_COORDINATOR_TOKEN`, else (process
/// 0 only) a new one, printed once on stderr for the operator to hand to the other processes
/// and written to `--coordinator-token-out` when asked. It is never logged.
pub fn run_token(d: &DeviceSection) -> Result<Token> {
    if let Some(path) = &d.coordinator_token_file {
        return Ok(Token::from_file(path)?);
    }
    if let Some(text) = std::env::var_os(TOKEN_ENV) {
        let text = text
            .into_string()
            .map_err(|_| anyhow!("the environment variable {TOKEN_ENV} is not UTF-8 text"))?;
        return Ok(Token::new(
            &text,
            &format!("the environment variable {TOKEN_ENV}"),
        )?);
    }
    if d.process_id != 0 {
        bail!(
            "process {}: no coordinator token: give this process the run's token (the one \
             process 0 printed, or your own secret given to every process) with \
             --coordinator-token-file FILE (device.coordinator_token_file) or the environment \
             variable {TOKEN_ENV}",
            d.process_id
        );
    }
    let token = Token::generate()?;
    if let Some(out) = &d.coordinator_token_out {
        coord::write_token_file(out, &token)?;
    }
    let written = match &d.coordinator_token_out {
        Some(out) => format!(" (also written to {})", out.display()),
        None => String::new(),
    };
    // Printed, not logged: the one place the token appears.
    eprintln!(
        "tpu-run: no coordinator token was given, so process 0 generated one for this run{written}:\n\
         tpu-run: coordinator token: {}\n\
         tpu-run: start every other process with it, as the environment variable \
         {TOKEN_ENV}=<token> or in a file only you can read (chmod 600) given as \
         --coordinator-token-file FILE; it is not shown again",
        token.expose()
    );
    Ok(token)
}

fn seconds(s: f64) -> Duration {
    // check_processes has made sure it is positive and finite.
    Duration::from_secs_f64(s)
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
}

/// Where process 0 listens, and how.
pub fn server_config(d: &DeviceSection, token: Token) -> Result<ServerConfig> {
    let mut c = ServerConfig::new(d.num_processes, token);
    c.heartbeat_interval = seconds(d.coordinator_heartbeat_interval);
    c.heartbeat_timeout = seconds(d.coordinator_heartbeat_timeout);
    if let (Some(cert), Some(key)) = (&d.coordinator_tls_cert, &d.coordinator_tls_key) {
        c.tls = Some(ServerTls {
            cert_pem: read(cert, "--coordinator-tls-cert")?,
            key_pem: read(key, "--coordinator-tls-key")?,
        });
    }
    Ok(c)
}

/// The address process 0 listens on (`--coordinator-bind`, else the `--coordinator` host).
pub fn listen_on(d: &DeviceSection, coordinator: &str) -> Result<SocketAddr> {
    Ok(coord::bind_address(
        coordinator,
        d.coordinator_bind.as_deref(),
    )?)
}

/// How every process connects.
pub fn client_config(d: &DeviceSection, token: Token) -> Result<ClientConfig> {
    let mut c = ClientConfig::new(token);
    c.local_device_count = d.num_devices.unwrap_or(0);
    c.connect_timeout = seconds(d.coordinator_connect_timeout);
    c.register_timeout = seconds(d.coordinator_join_timeout);
    if let Some(ca) = &d.coordinator_tls_ca {
        c.tls_ca_pem = Some(read(ca, "--coordinator-tls-ca")?);
    }
    Ok(c)
}

/// How long to wait for the others at a coordinated point.
pub fn wait_timeout(d: &DeviceSection) -> Duration {
    seconds(d.coordinator_wait_timeout)
}

/// How long process 0 keeps the coordinator up after it failed, so that the others hear why
/// (three heartbeat intervals: each process asks once per interval).
pub fn failure_linger(d: &DeviceSection) -> Duration {
    seconds(d.coordinator_heartbeat_interval) * 3
}

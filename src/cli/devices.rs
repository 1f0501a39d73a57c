//! `tpu-run devices`: what a backend's plugin offers (platform, device kinds, chips and cores,
//! coordinates, process index, memory), or, with `--topology`, the devices of a TPU slice
//! described by libtpu without the hardware.
use super::DeviceArgs;
use crate::backend::{open_client, Backend};
use crate::tpu_target::{reexec_without_network, TpuTarget};
use anyhow::{Context, Result};
use clap::Args;
use tpu::{DeviceDescription, Plugin, PluginKind, Topology, Value};

#[derive(Args, Clone)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Describe a TPU topology by name instead (e.g. v5e:2x2, v4:2x2x1); needs libtpu, no TPU.
    #[arg(long)]
    pub topology: Option<String>,
    /// A PJRT_TopologyDescription_Create option name=value (repeatable), with --topology.
    #[arg(long = "topology-option", requires = "topology")]
    pub topology_options: Vec<String>,
}

pub fn run(a: &DevicesArgs) -> Result<()> {
    let uses_libtpu = a.topology.is_some() || a.device.backend == Backend::Tpu;
    if let Some(t) = &a.topology {
        TpuTarget::parse(&format!("tpu:{t}"), &a.topology_options)?;
    }
    if uses_libtpu {
        if let Some(code) = reexec_without_network()? {
            std::process::exit(code);
        }
    }
    match &a.topology {
        Some(t) => describe_topology(a, t),
        None => describe_client(&a.device),
    }
}

fn describe_topology(a: &DevicesArgs, name: &str) -> Result<()> {
    let target = TpuTarget::parse(&format!("tpu:{name}"), &a.topology_options)?;
    let plugin = Plugin::discover(PluginKind::Tpu, a.device.plugin.as_deref())
        .context("loading libtpu (install it with `tpu-run plugin install tpu`)")?;
    let topo = Topology::create(&plugin, &target.topology, &target.options)
        .with_context(|| format!("creating the TPU topology {:?}", target.topology))?;
    let (major, minor) = plugin.api_version();
    println!(
        "topology {} (no hardware): platform {} {} (PJRT C API {major}.{minor})",
        target.topology,
        topo.platform_name()?,
        first_line(&topo.platform_version()?),
    );
    let attrs = topo.attributes()?;
    if !attrs.is_empty() {
        println!("  attributes: {}", attributes_text(&attrs));
    }
    print_devices(&topo.device_descriptions()?, |_| None);
    Ok(())
}

fn describe_client(a: &DeviceArgs) -> Result<()> {
    let client = match open_client(a.backend, a.plugin.as_deref(), a.cpu_devices) {
        Ok(c) => c,
        Err(e) if a.backend == Backend::Tpu && !tpu::plugin::tpu_devices_present_here() => {
            return Err(e.context(
                "this machine has no TPU (no /dev/accel* or /dev/vfio device). To see a TPU \
                 slice's devices without one: `tpu-run devices --topology v5e:2x2`; to compile \
                 for it: `tpu-run compile --target tpu:v5e:2x2`",
            ))
        }
        Err(e) => return Err(e),
    };
    let (major, minor) = client.plugin().api_version();
    println!(
        "platform {} {} (PJRT C API {major}.{minor}), process {}",
        client.platform_name()?,
        first_line(&client.platform_version()?),
        client.process_index()?
    );
    if let Ok(topo) = client.topology() {
        if let Ok(attrs) = topo.attributes() {
            if !attrs.is_empty() {
                println!("  topology attributes: {}", attributes_text(&attrs));
            }
        }
    }
    let devices = client.devices()?;
    let descriptions = devices
        .iter()
        .map(|d| d.description())
        .collect::<tpu::Result<Vec<_>>>()?;
    print_devices(&descriptions, |i| {
        let d = &devices[i];
        let mem = match d.memory_stats() {
            Ok(Some(m)) => match m.bytes_limit {
                Some(limit) => format!(
                    "allocator: {} in use, limit {}",
                    bytes_text(m.bytes_in_use),
                    bytes_text(limit)
                ),
                None => format!("allocator: {} in use", bytes_text(m.bytes_in_use)),
            },
            Ok(None) => "no allocator statistics".into(),
            Err(e) => format!("memory stats failed: {e}"),
        };
        Some(format!(
            "local id {}, addressable {}, {mem}",
            d.local_hardware_id(),
            d.is_addressable()
        ))
    });
    Ok(())
}

/// Prints a summary (kinds, chips, cores per device, processes) and one line per device.
fn print_devices(devices: &[DeviceDescription], extra: impl Fn(usize) -> Option<String>) {
    let mut kinds: Vec<&str> = devices.iter().map(|d| d.kind.as_str()).collect();
    kinds.dedup();
    let mut chips: Vec<&Value> = devices
        .iter()
        .filter_map(|d| d.attribute("coords"))
        .collect();
    chips.sort_by_key(|v| v.to_string());
    chips.dedup();
    let mut processes: Vec<i32> = devices.iter().map(|d| d.process_index).collect();
    processes.sort_unstable();
    processes.dedup();
    let cores = devices
        .first()
        .and_then(|d| d.attribute("num_cores"))
        .map(|v| format!(", {v} core(s) per device"))
        .unwrap_or_default();
    let chip_text = if chips.is_empty() {
        String::new()
    } else {
        format!(" on {} chips", chips.len())
    };
    println!(
        "  {} devices{chip_text} of kind {}{cores}, {} process(es)",
        devices.len(),
        kinds.join(", "),
        processes.len()
    );
    for (i, d) in devices.iter().enumerate() {
        let attrs: Vec<(String, Value)> = d
            .attributes
            .iter()
            .filter(|(n, _)| n != "device_memory_bytes_limit")
            .cloned()
            .collect();
        let memory = match d.attribute("device_memory_bytes_limit") {
            Some(Value::Int64(v)) => format!(", device memory {}", bytes_text(*v)),
            _ => String::new(),
        };
        let tail = extra(i).map(|s| format!(", {s}")).unwrap_or_default();
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" {}", attributes_text(&attrs))
        };
        println!(
            "  device {} process {}: {}{attrs}{memory}{tail}",
            d.id, d.process_index, d.kind
        );
    }
}

fn attributes_text(attrs: &[(String, Value)]) -> String {
    let mut sorted: Vec<&(String, Value)> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(n, v)| match v {
            // Some plugins put whole protos in attributes (CUDA: `target_config`).
            Value::Str(s) if s.len() > 64 || s.contains('\n') => {
                format!("{n}=<{} bytes of text>", s.len())
            }
            Value::Str(s) => format!("{n}={s}"),
            other => format!("{n}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn bytes_text(b: i64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

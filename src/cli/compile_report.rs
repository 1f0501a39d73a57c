//! What `tpu-run compile` prints about a compiled program: the compiler's memory sizes next to
//! the estimate from tensor sizes, and its cost analysis.
use crate::tpu_target::MemoryEstimate;
use tpu::{CompiledMemoryStats, Value};

pub(super) fn replicas_text(n: i64) -> String {
    if n == 1 {
        "one device".into()
    } else {
        format!("{n} replicas, one per device")
    }
}

pub(super) fn gib(bytes: i64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Bytes of device memory the executable needs at its peak, as far as the compiler's stats tell:
/// arguments and outputs (an aliased output reuses its argument's buffer) plus temporaries.
pub fn compiled_total(m: &CompiledMemoryStats) -> i64 {
    m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
}

pub(super) fn report(
    mem: Option<CompiledMemoryStats>,
    cost: Option<Vec<(String, Value)>>,
    estimate: &MemoryEstimate,
    hbm: Option<i64>,
) {
    match mem {
        Some(m) => {
            let total = compiled_total(&m);
            println!("memory per device (compiler):");
            println!(
                "  arguments       {:>14} B  {}",
                m.argument_size_in_bytes,
                mib(m.argument_size_in_bytes.max(0) as u64)
            );
            println!(
                "  outputs         {:>14} B  {}",
                m.output_size_in_bytes,
                mib(m.output_size_in_bytes.max(0) as u64)
            );
            println!(
                "  aliased (donated) {:>12} B  {}",
                m.alias_size_in_bytes,
                mib(m.alias_size_in_bytes.max(0) as u64)
            );
            println!(
                "  temporaries     {:>14} B  {}",
                m.temp_size_in_bytes,
                mib(m.temp_size_in_bytes.max(0) as u64)
            );
            println!(
                "  generated code  {:>14} B  {}",
                m.generated_code_size_in_bytes,
                mib(m.generated_code_size_in_bytes.max(0) as u64)
            );
            let share = hbm
                .filter(|&h| h > 0)
                .map(|h| {
                    format!(
                        " = {:.1}% of the device's memory",
                        100.0 * total as f64 / h as f64
                    )
                })
                .unwrap_or_default();
            println!(
                "  total (args + outputs - aliased + temps) {}{share}",
                mib(total.max(0) as u64)
            );
            if estimate.total() > 0 {
                println!(
                    "  estimate from sizes: {} (params {}, optimizer {}, gradients {}, batch {}, activations {}, outputs {}); compiler/estimate = {:.2}",
                    mib(estimate.total()),
                    mib(estimate.params),
                    mib(estimate.optimizer),
                    mib(estimate.gradients),
                    mib(estimate.batch),
                    mib(estimate.activations),
                    mib(estimate.outputs),
                    total as f64 / estimate.total() as f64
                );
            }
        }
        None => println!("memory: the plugin does not report compiled memory sizes"),
    }
    match cost {
        Some(props) if !props.is_empty() => {
            let mut shown: Vec<&(String, Value)> = props
                .iter()
                .filter(|(n, v)| match (n.as_str(), v) {
                    ("flops" | "transcendentals" | "bytes accessed", _) => true,
                    // libtpu reports a negative placeholder when it has no estimate.
                    ("optimal_seconds", Value::Float(s)) => *s >= 0.0,
                    _ => false,
                })
                .collect();
            shown.sort_by(|x, y| x.0.cmp(&y.0));
            let text: Vec<String> = shown.iter().map(|(n, v)| format!("{n} {v}")).collect();
            println!("cost analysis: {}", text.join(", "));
        }
        _ => println!("cost analysis: not offered by the plugin"),
    }
}

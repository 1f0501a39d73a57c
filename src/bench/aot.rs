//! `tpu-run bench --backend tpu --topology v5e:2x2`: compile-only figures of the pretraining
//! step for a TPU slice, no TPU needed. libtpu's deviceless compiler
//! ([`tpu::Topology::compile`]) builds the step `tpu-run pretrain` would run on that slice
//! (data-parallel over every device of it), and the record gets our build figures, the
//! compile time, XLA's cost analysis and memory sizes; nothing is timed.
use super::matrix::{BenchConfig, Task};
use super::measure::cost_value;
use super::record::{BenchRecord, Environment, RustSide, XlaSide};
use crate::pretrain::program::train_step_module;
use crate::pretrain::PretrainConfig;
use crate::tpu_target::TpuTarget;
use anyhow::{anyhow, Context, Result};
use std::time::Instant;
use tpu::{Plugin, PluginKind, Topology};

/// A TPU slice opened for compiling: libtpu and the topology.
pub struct AotTarget {
    pub plugin: Plugin,
    pub topology: Topology,
    pub name: String,
    /// Devices of the slice: the step's replicas.
    pub devices: usize,
    pub device_kind: String,
}

impl AotTarget {
    /// Loads libtpu (`plugin`, else discovery) and creates `topology` with `options`
    /// (`name=value`, as `tpu-run compile --topology-option` takes them).
    pub fn open(
        topology: &str,
        options: &[String],
        plugin: Option<&std::path::Path>,
    ) -> Result<AotTarget> {
        let target = TpuTarget::parse(&format!("tpu:{topology}"), options)?;
        let plugin = Plugin::discover(PluginKind::Tpu, plugin)
            .context("loading libtpu (install it with `tpu-run plugin install tpu`)")?;
        let topo = Topology::create(&plugin, &target.topology, &target.options)
            .with_context(|| format!("creating the TPU topology {:?}", target.topology))?;
        let devices = topo.device_descriptions()?;
        let device_kind = devices
            .first()
            .map(|d| d.kind.clone())
            .ok_or_else(|| anyhow!("the topology {:?} has no device", target.topology))?;
        Ok(AotTarget {
            plugin,
            topology: topo,
            name: target.topology,
            devices: devices.len(),
            device_kind,
        })
    }

    /// Compiles `c`'s pretraining step (from `run`, the run config of `c`) for the slice.
    pub fn compile(&self, c: &BenchConfig, run: &PretrainConfig, env: &Environment) -> BenchRecord {
        let mut record = BenchRecord::new(c.clone(), env.clone());
        record.env.platform = Some("tpu".into());
        record.env.device_kind = Some(format!("{} ({})", self.device_kind, self.name));
        if c.task != Task::Pretrain {
            record.skipped = Some("compile-only runs cover the pretraining step".into());
            return record;
        }
        match self.compile_step(run) {
            Ok((rust, xla)) => {
                record.rust = Some(rust);
                record.xla = Some(xla);
            }
            Err(e) => record.error = Some(format!("{e:#}")),
        }
        record
    }

    fn compile_step(&self, run: &PretrainConfig) -> Result<(RustSide, XlaSide)> {
        let step = train_step_module(run, self.devices)?;
        let t = Instant::now();
        let exe = self
            .topology
            .compile(&step.proto, &step.options)
            .context("compiling with libtpu for the topology (no TPU needed)")?;
        let compile_s = t.elapsed().as_secs_f64();
        let memory = exe.memory_stats()?;
        let cost = exe.cost_analysis()?.unwrap_or_default();
        let rust = RustSide {
            build_s: step.build.build_s,
            ir_instructions: step.build.ir_instructions,
            proto_bytes: step.build.proto_bytes,
        };
        let m = memory.as_ref();
        let xla = XlaSide {
            compile_s,
            optimized: None,
            cost_flops: cost_value(&cost, "flops"),
            cost_bytes_accessed: cost_value(&cost, "bytes accessed"),
            argument_bytes: m.map(|m| m.argument_size_in_bytes),
            output_bytes: m.map(|m| m.output_size_in_bytes),
            alias_bytes: m.map(|m| m.alias_size_in_bytes),
            temp_bytes: m.map(|m| m.temp_size_in_bytes),
            generated_code_bytes: m.map(|m| m.generated_code_size_in_bytes),
            notes: vec![
                "compile only: an ahead-of-time executable offers no optimized module here, \
                 and nothing was timed"
                    .into(),
            ],
        };
        Ok((rust, xla))
    }
}

//! The `tpu-run` command line: argument definitions and dispatch to one module per command.
mod bench;
mod compile;
mod compile_program;
mod compile_report;
mod create_data;
mod demo;
mod devices;
mod export_hf;
mod extract_features;
mod finetune;
mod finetune_glue;
mod hlo_dump;
mod plot;
mod plugin;
mod pod;
mod pretrain;
mod selftest;
mod squad_eval;

use crate::backend::Backend;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "tpu-run",
    version,
    about = "BERT as XLA HLO, compiled and run through PJRT plugins"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Compile every program afresh: neither load nor store compiled executables in the
    /// per-user compile cache (also: TPU_RUN_COMPILE_CACHE=off).
    #[arg(long, global = true)]
    no_compile_cache: bool,
    /// An XLA debug option for every program this invocation compiles, NAME=VALUE
    /// (repeatable), e.g. xla_gpu_enable_latency_hiding_scheduler=true.
    #[arg(long = "xla-flag", global = true, value_name = "NAME=VALUE")]
    xla_flags: Vec<String>,
}

/// Where to run: the backend and, optionally, an explicit plugin file.
#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// Device backend (its PJRT plugin is found or, for cpu, installed on first use).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
    /// Path of a PJRT plugin shared library; overrides discovery.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Number of virtual CPU devices (CPU backend only).
    #[arg(long, default_value_t = 1)]
    pub cpu_devices: i64,
}

#[derive(Subcommand)]
enum Command {
    /// Build a small program, print its HLO, compile and run it, check the results.
    Demo(DeviceArgs),
    /// Run every example program and compare with Rust references (and optionally a saved run).
    Selftest(selftest::SelftestArgs),
    /// HLO tools.
    #[command(subcommand)]
    Hlo(HloCommand),
    /// Manage PJRT plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// List the devices a backend's plugin offers, or those of a TPU topology (--topology).
    Devices(devices::DevicesArgs),
    /// Compile a program ahead of time for a TPU topology (no TPU needed) or the CPU plugin.
    Compile(compile::CompileArgs),
    /// Make BERT pretraining TFRecord shards from text (google-research/bert's format).
    CreateData(create_data::CreateDataArgs),
    /// Score SQuAD v1.1 predictions by the official rules: prints {"exact_match": .., "f1": ..}.
    SquadEval(squad_eval::SquadEvalArgs),
    /// Fine-tune from pre-trained weights (SQuAD v1.1, GLUE), predict and score.
    #[command(subcommand)]
    Finetune(finetune::FinetuneCommand),
    /// Split a SQuAD file by article into training and validation files (deterministic).
    SquadSplit(finetune::SquadSplitArgs),
    /// BERT pretraining (MLM + NSP): TOML config + flags; --demo runs a small complete example.
    Pretrain(Box<pretrain::PretrainArgs>),
    /// Per-token hidden states of chosen layers for lines of text (extract_features.py).
    ExtractFeatures(extract_features::ExtractFeaturesArgs),
    /// Write a checkpoint's weights, or (--init) those pretrain starts from, as a Hugging Face
    /// BertForPreTraining directory (model.safetensors + config.json).
    ExportHf(export_hf::ExportHfArgs),
    /// Benchmark train steps: compile time, step time, memory, MFU, XLA's optimized program,
    /// side by side with the JAX/PyTorch anchors and an earlier run.
    Bench(Box<bench::BenchArgs>),
    /// Draw the training and eval curves of runs (their metrics.jsonl) into one SVG chart.
    Plot(plot::PlotArgs),
    /// A Cloud TPU slice through gcloud: create, run pretraining on every worker, status,
    /// logs, stop, delete (--dry-run prints the gcloud commands).
    #[command(subcommand)]
    Pod(pod::PodCommand),
}

#[derive(Subcommand)]
enum HloCommand {
    /// Print the HLO text of an example program (and optionally write its HloModuleProto).
    Dump(hlo_dump::DumpArgs),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Fetch a plugin wheel with pip and unpack it into the per-user cache.
    Install {
        /// The backend whose plugin wheel to fetch.
        #[arg(value_enum)]
        backend: Backend,
    },
    /// Show every plugin found: path, package version, platform, C API version.
    List,
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.no_compile_cache {
        crate::backend::disable_compile_cache();
    }
    crate::xla_flags::set_global(&cli.xla_flags)?;
    match cli.command {
        Command::Demo(a) => demo::run(&a),
        Command::Selftest(a) => selftest::run(&a),
        Command::Hlo(HloCommand::Dump(a)) => hlo_dump::run(&a),
        Command::Plugin(PluginCommand::Install { backend }) => plugin::install(backend),
        Command::Plugin(PluginCommand::List) => plugin::list(),
        Command::Devices(a) => devices::run(&a),
        Command::Compile(a) => compile::run(&a),
        Command::CreateData(a) => create_data::run(&a),
        Command::SquadEval(a) => squad_eval::run(&a),
        Command::Pretrain(a) => pretrain::run_cmd(&a),
        Command::Finetune(c) => finetune::run(&c),
        Command::SquadSplit(a) => finetune::run_split(&a),
        Command::ExtractFeatures(a) => extract_features::run(&a),
        Command::ExportHf(a) => export_hf::run(&a),
        Command::Plot(a) => plot::run(&a),
        Command::Bench(a) => bench::run_cmd(&a),
        Command::Pod(c) => pod::run(&c),
    }
}

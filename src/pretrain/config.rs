//! The pretraining run's settings: a TOML file (serde + the `toml` crate, unknown keys are an
//! error) whose every field has a default, then command-line overrides on top.
//!
//! ```toml
//! [model]        # preset = "tiny" | ... | "large", or config_file = "bert_config.json"
//! [data]         # train = "shards/*.tfrecord", eval = "...", seq_len, max_predictions,
//!                # pack, max_instances_per_row
//! [train]        # batch_size, steps, warmup_steps, learning_rate, end_learning_rate, schedule,
//!                # optimizer, adam_beta2, precision, fp8_amax_history, fp8_margin, seed
//! [eval]         # interval, batches
//! [checkpoint]   # dir, interval, keep_last, resume
//! [device]       # backend = "cpu" | "cuda" | "tpu", plugin = "/path/to/pjrt_plugin.so", num_devices,
//!                # attention = "auto" | "graph" | "cudnn"; several processes (one per host):
//!                # coordinator = "host:port", num_processes, process_id, and the
//!                # coordinator_* settings (token file, bind address, TLS, timeouts)
//! [output]       # dir (metrics.jsonl, TensorBoard events), log_every, tensorboard
//! ```
//! See `configs/pretrain-tiny.toml` for a complete, commented example.
pub use super::overrides::Overrides;
use crate::backend::{resolve_execution, AttentionChoice, Backend};
use crate::model::fp8::fp8_setup;
use crate::model::{BatchShapes, BertConfig, ComputeDtype, Execution, HiddenAct};
use crate::train::{
    DelayedScaling, OptimizerKind, Schedule, ScheduleKind, StepConfig, WeightDecay,
};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    pub model: ModelSection,
    pub data: DataSection,
    pub train: TrainSection,
    pub eval: EvalSection,
    pub checkpoint: CheckpointSection,
    pub device: DeviceSection,
    pub output: OutputSection,
}

/// The model: a preset or a config file, then optional size overrides (for models smaller than
/// the presets, e.g. the demo's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    pub preset: String,
    /// A google-research `bert_config.json` or Hugging Face `config.json`; replaces the preset.
    pub config_file: Option<PathBuf>,
    pub vocab_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub max_position_embeddings: Option<usize>,
    /// `gelu` (exact erf), `gelu_new` (tanh form) or `relu`.
    pub hidden_act: Option<HiddenAct>,
    pub hidden_dropout_prob: Option<f64>,
    pub attention_probs_dropout_prob: Option<f64>,
    /// Pad the vocabulary to a multiple of this (128 on TPU).
    pub pad_vocab_to: Option<usize>,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            preset: "tiny".into(),
            config_file: None,
            vocab_size: None,
            hidden_size: None,
            num_hidden_layers: None,
            num_attention_heads: None,
            intermediate_size: None,
            max_position_embeddings: None,
            hidden_act: None,
            hidden_dropout_prob: None,
            attention_probs_dropout_prob: None,
            pad_vocab_to: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// Training shards: comma-separated paths or glob patterns (create-data's output); each
    /// may be a `gs://` / `s3://` URL, globbed over the bucket's listing.
    pub train: Option<String>,
    /// Held-out shards for evaluation (same forms).
    pub eval: Option<String>,
    /// Random batches instead of files (benchmarks): no data needed.
    pub synthetic: bool,
    /// Skip damaged training records, logging and counting each, instead of stopping.
    pub skip_corrupt: bool,
    pub seq_len: usize,
    pub max_predictions: usize,
    pub shuffle_buffer: usize,
    /// Shards read at once.
    pub cycle_length: usize,
    pub prefetch_batches: usize,
    /// Records of a work unit in a multi-process run (the coordinator hands out units of
    /// this many consecutive records of one file; see src/data/units.rs).
    pub unit_records: u64,
    /// Pack several short instances into each training row (src/data/packing.rs):
    /// `train.batch_size` then counts packed rows, each with up to `max_instances_per_row`
    /// instances and `max_predictions + max_instances_per_row` prediction slots.
    pub pack: bool,
    /// Instances (NSP slots) per packed row.
    pub max_instances_per_row: usize,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            train: None,
            eval: None,
            synthetic: false,
            skip_corrupt: false,
            seq_len: 128,
            max_predictions: 20,
            shuffle_buffer: 10_000,
            cycle_length: 4,
            prefetch_batches: 4,
            unit_records: crate::data::units::DEFAULT_UNIT_RECORDS,
            pack: false,
            max_instances_per_row: 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSection {
    /// Sequences per optimizer step over all devices (the global batch: each of the
    /// `device.num_devices` replicas gets `batch_size / num_devices` of them, split again into
    /// `accumulation_steps` micro-batches).
    pub batch_size: usize,
    /// Total optimizer steps (the schedule decays to its end here).
    pub steps: u64,
    pub warmup_steps: u64,
    pub learning_rate: f64,
    /// Where the linear or cosine decay ends at `steps` (BERT's polynomial_decay
    /// `end_learning_rate`: 0). A floor keeps short runs learning to their last step.
    pub end_learning_rate: f64,
    /// `linear` (BERT: warmup then linear decay to 0), `cosine` or `constant`.
    pub schedule: ScheduleKind,
    /// `adam_weight_decay` (BERT), `adamw`, `lamb` or `sgd`.
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    /// Global-norm clipping threshold (BERT: 1.0); 0 turns clipping off.
    pub clip_norm: f64,
    /// Decay of Adam's second-moment average (adam_weight_decay, adamw, lamb; BERT: 0.999).
    /// 0.98 (RoBERTa's choice) tolerates a higher learning rate in short runs.
    pub adam_beta2: f64,
    /// `f32`, `bf16` (bf16 matmul inputs and activations, f32 master weights and statistics) or
    /// `fp8` (bf16, with the encoder's dense layers as FP8 matmuls under delayed scaling). The
    /// run's one precision: the model's [`Execution`] and the step's policy both come from it
    /// ([`PretrainConfig::execution`], [`PretrainConfig::step_config`]).
    pub precision: ComputeDtype,
    /// fp8: steps of amax history each per-tensor scale is computed from (Transformer Engine's
    /// `amax_history_len`).
    pub fp8_amax_history: usize,
    /// fp8: the scaled amax lands at `fp8_max * 2^-margin` (Transformer Engine's `margin`).
    pub fp8_margin: f64,
    pub accumulation_steps: u32,
    /// Seeds initialization, data order and dropout.
    pub seed: u64,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            batch_size: 32,
            steps: 1000,
            warmup_steps: 100,
            learning_rate: 1e-4,
            end_learning_rate: 0.0,
            schedule: ScheduleKind::Linear,
            optimizer: OptimizerKind::AdamWeightDecay,
            weight_decay: 0.01,
            clip_norm: 1.0,
            adam_beta2: 0.999,
            precision: ComputeDtype::F32,
            fp8_amax_history: 16,
            fp8_margin: 0.0,
            accumulation_steps: 1,
            seed: 12345,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSection {
    /// Evaluate every this many steps (and at the end); 0: only at the end.
    pub interval: u64,
    /// Batches per evaluation; 0: the whole eval set.
    pub batches: usize,
    /// Defaults to the training batch size.
    pub batch_size: Option<usize>,
    /// The vocab's `[MASK]` id (103 in BERT's uncased and cased vocabs), for the accuracy at
    /// masked inputs.
    pub mask_token_id: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointSection {
    /// Defaults to `<output.dir>/checkpoints`. A `gs://` / `s3://` URL keeps the checkpoints
    /// in a bucket.
    pub dir: Option<PathBuf>,
    /// Save every this many steps (and at the end); 0: only at the end.
    pub interval: u64,
    pub keep_last: usize,
    /// Continue from the directory's latest checkpoint when there is one.
    pub resume: bool,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            dir: None,
            interval: 1000,
            keep_last: crate::ckpt::DEFAULT_KEEP_LAST,
            resume: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceSection {
    /// `cpu`, `cuda` or `tpu`.
    pub backend: Backend,
    /// A PJRT plugin file; overrides discovery.
    pub plugin: Option<PathBuf>,
    /// Devices the train step runs on, data-parallel (one replica each; gradients averaged
    /// across them inside the step). Unset: every device of a TPU host, 1 on CPU and CUDA (see
    /// [`default_num_devices`]). On CPU the plugin is asked for this many virtual devices. A run
    /// may resume on another count; it is then not bit-exact (shards and dropout bits differ).
    pub num_devices: Option<u32>,
    /// Self-attention kernel: `auto` (cuDNN fused attention on cuda with bf16, else graph),
    /// `graph` or `cudnn`.
    pub attention: AttentionChoice,
    /// Multi-process runs (one process per host of a pod slice, or per GPU): worker 0's
    /// address, `HOST:PORT`. Process 0 serves the coordinator there; every process connects.
    pub coordinator: Option<String>,
    /// Processes of the run; each drives `num_devices` local devices, so the step has
    /// `num_processes x num_devices` replicas and `train.batch_size` splits over all of them.
    pub num_processes: u32,
    /// This process's index, `0..num_processes` (0 serves the coordinator, writes metrics,
    /// evaluates and checkpoints).
    pub process_id: u32,
    /// A file holding the run's secret (the same on every process). Unset: the environment
    /// variable `TPU_RUN_COORDINATOR_TOKEN`, else process 0 generates one and prints it.
    pub coordinator_token_file: Option<PathBuf>,
    /// Process 0 writes the token it generated to this new file (mode 600), for the others.
    pub coordinator_token_out: Option<PathBuf>,
    /// The address process 0 listens on, `HOST:PORT` (default: `coordinator` itself;
    /// `0.0.0.0:PORT` for every interface).
    pub coordinator_bind: Option<String>,
    /// TLS: process 0's certificate chain and private key (PEM).
    pub coordinator_tls_cert: Option<PathBuf>,
    pub coordinator_tls_key: Option<PathBuf>,
    /// TLS: the CA every process (0 included) verifies the coordinator's certificate with.
    pub coordinator_tls_ca: Option<PathBuf>,
    /// Seconds a process keeps trying to reach the coordinator (process 0 may start later).
    pub coordinator_connect_timeout: f64,
    /// Seconds to wait for every process to join.
    pub coordinator_join_timeout: f64,
    /// Seconds between heartbeats (process 0's value applies to every process).
    pub coordinator_heartbeat_interval: f64,
    /// Seconds without a heartbeat after which a process counts as lost and the run fails
    /// (process 0's value applies to every process; must exceed the interval).
    pub coordinator_heartbeat_timeout: f64,
    /// Seconds a process waits for the others at a coordinated point (resume decision, file
    /// lists, barriers, checkpoints, the end); generous, as a process may still be compiling.
    /// A failed process ends these waits at once, not this limit.
    pub coordinator_wait_timeout: f64,
}

impl Default for DeviceSection {
    fn default() -> Self {
        Self {
            backend: Backend::Cpu,
            plugin: None,
            num_devices: None,
            attention: AttentionChoice::Auto,
            coordinator: None,
            num_processes: 1,
            process_id: 0,
            coordinator_token_file: None,
            coordinator_token_out: None,
            coordinator_bind: None,
            coordinator_tls_cert: None,
            coordinator_tls_key: None,
            coordinator_tls_ca: None,
            coordinator_connect_timeout: 120.0,
            coordinator_join_timeout: 300.0,
            coordinator_heartbeat_interval: 1.0,
            coordinator_heartbeat_timeout: 30.0,
            coordinator_wait_timeout: 1800.0,
        }
    }
}

/// The device count when `device.num_devices` is unset, given the devices the client has: all
/// of a TPU host's chips (what a TPU VM is for, and what the original BERT's TPUEstimator used).
/// CPU: 1, because the CPU plugin's devices are virtual (it makes as many as the client asks
/// for, 1 unless told otherwise, all sharing the same cores), so more replicas add all-reduce
/// work and no compute. CUDA: 1, as before this setting existed; a GPU host's other GPUs may be
/// busy with other jobs, so using them is opted into with `--num-devices`.
pub fn default_num_devices(backend: Backend, available: usize) -> usize {
    match backend {
        Backend::Tpu => available.max(1),
        Backend::Cpu | Backend::Cuda => 1,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSection {
    /// metrics.jsonl, TensorBoard events and (by default) checkpoints go here; a `gs://` /
    /// `s3://` URL is written through a local staging copy uploaded at each checkpoint.
    pub dir: PathBuf,
    /// Log and record training metrics every this many steps.
    pub log_every: u64,
    /// Also write TensorBoard event files into `<dir>/tensorboard`.
    pub tensorboard: bool,
    /// Show the progress bar (when stderr is a terminal).
    pub progress: bool,
}

impl Default for OutputSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("runs/pretrain"),
            log_every: 10,
            tensorboard: true,
            progress: true,
        }
    }
}

impl PretrainConfig {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| anyhow!("{origin}: {e}"))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("writing the config as TOML")
    }

    /// Settings that are valid but almost certainly not what was meant, as warning lines.
    pub fn warnings(&self) -> Vec<String> {
        let t = &self.train;
        let mut out = vec![];
        if t.warmup_steps > t.steps {
            let peak = t.learning_rate * t.steps as f64 / t.warmup_steps as f64;
            out.push(format!(
                "train.warmup_steps ({}) exceeds train.steps ({}): the learning rate is still \
                 warming up when the run ends and peaks at {peak:.3e}, not train.learning_rate \
                 ({:.3e})",
                t.warmup_steps, t.steps, t.learning_rate
            ));
        }
        out
    }

    /// Checks everything that can be checked without opening files; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        let d = &self.data;
        let positive = [
            ("train.batch_size", t.batch_size as u64),
            ("train.steps", t.steps),
            ("train.accumulation_steps", u64::from(t.accumulation_steps)),
            ("data.seq_len", d.seq_len as u64),
            ("data.max_predictions", d.max_predictions as u64),
            ("data.shuffle_buffer", d.shuffle_buffer as u64),
            ("data.cycle_length", d.cycle_length as u64),
            ("data.unit_records", d.unit_records),
            ("data.max_instances_per_row", d.max_instances_per_row as u64),
            ("checkpoint.keep_last", self.checkpoint.keep_last as u64),
            ("output.log_every", self.output.log_every),
        ];
        for (field, v) in positive {
            if v == 0 {
                bail!("config: {field} must be at least 1");
            }
        }
        if self.device.num_devices == Some(0) {
            bail!("config: device.num_devices must be at least 1");
        }
        self.check_locations()?;
        self.check_processes()?;
        self.check_batch_split(self.device.num_devices.unwrap_or(1) as usize)?;
        if d.max_predictions > d.seq_len {
            bail!(
                "config: data.max_predictions {} exceeds data.seq_len {}",
                d.max_predictions,
                d.seq_len
            );
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            bail!(
                "config: train.learning_rate must be finite and > 0, got {}",
                t.learning_rate
            );
        }
        if !(t.clip_norm.is_finite() && t.clip_norm >= 0.0) {
            bail!(
                "config: train.clip_norm must be finite and >= 0, got {}",
                t.clip_norm
            );
        }
        if !(t.end_learning_rate.is_finite()
            && (0.0..=t.learning_rate).contains(&t.end_learning_rate))
        {
            bail!(
                "config: train.end_learning_rate must be between 0 and train.learning_rate ({}), \
                 got {}",
                t.learning_rate,
                t.end_learning_rate
            );
        }
        if !(0.0..1.0).contains(&t.adam_beta2) {
            bail!(
                "config: train.adam_beta2 must be in [0, 1), got {} (BERT: 0.999)",
                t.adam_beta2
            );
        }
        if d.pack && (d.synthetic || self.device.num_processes > 1) {
            bail!(
                "config: data.pack (--pack) packs the shards of data.train as one process reads \
                 them; it takes neither synthetic data nor several processes yet"
            );
        }
        if !d.synthetic && d.train.is_none() {
            bail!("config: no training data; set data.train (or --data), or use --synthetic-data");
        }
        if self.eval.batch_size == Some(0) {
            bail!("config: eval.batch_size must be at least 1");
        }
        if let Some(f) = self.step_config()?.fp8 {
            f.check()
                .context("config: train.fp8_amax_history and train.fp8_margin")?;
        }
        let model = self.bert_config()?;
        if d.seq_len > model.max_position_embeddings {
            bail!(
                "config: data.seq_len {} exceeds the model's max_position_embeddings {}",
                d.seq_len,
                model.max_position_embeddings
            );
        }
        Ok(())
    }

    /// Paths that may be `gs://` / `s3://` URLs: any other scheme, or a malformed bucket or
    /// key, is refused before anything runs.
    fn check_locations(&self) -> Result<()> {
        let d = &self.data;
        for (field, patterns) in [
            ("data.train (--data)", &d.train),
            ("data.eval (--eval-data)", &d.eval),
        ] {
            let each = patterns.iter().flat_map(|s| s.split(',')).map(str::trim);
            for p in each.filter(|p| !p.is_empty()) {
                crate::storage::check(Path::new(p)).map_err(|e| anyhow!("config: {field}: {e}"))?;
            }
        }
        for (field, path) in [
            (
                "checkpoint.dir (--checkpoint-dir)",
                self.checkpoint.dir.as_deref(),
            ),
            ("output.dir (--output-dir)", Some(self.output.dir.as_path())),
        ] {
            if let Some(p) = path {
                crate::storage::check(p).map_err(|e| anyhow!("config: {field}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The process settings of a multi-process run: `process_id < num_processes`, and a
    /// coordinator address when there are several.
    pub fn check_processes(&self) -> Result<()> {
        let d = &self.device;
        if d.num_processes == 0 {
            bail!("config: device.num_processes (--num-processes) must be at least 1");
        }
        if d.process_id >= d.num_processes {
            bail!(
                "config: device.process_id (--process-id) is {}, it must be below \
                 device.num_processes (--num-processes) {}: the processes are numbered \
                 0..{}",
                d.process_id,
                d.num_processes,
                d.num_processes
            );
        }
        match d.coordinator.as_deref() {
            None if d.num_processes > 1 => bail!(
                "config: {} processes need device.coordinator (--coordinator HOST:PORT): worker \
                 0's address, the same on every process",
                d.num_processes
            ),
            Some(addr)
                if addr
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) =>
            {
                bail!(
                    "config: device.coordinator (--coordinator) {addr:?} is not HOST:PORT \
                     (e.g. 10.130.0.5:8476)"
                )
            }
            _ => {}
        }
        self.check_coordinator_settings()
    }

    /// The coordinator's timeouts (positive, finite; heartbeat interval below its timeout)
    /// and TLS files (certificate and key together; the CA wherever a certificate is served).
    fn check_coordinator_settings(&self) -> Result<()> {
        let d = &self.device;
        for (key, flag, v) in [
            (
                "connect_timeout",
                "connect-timeout",
                d.coordinator_connect_timeout,
            ),
            ("join_timeout", "join-timeout", d.coordinator_join_timeout),
            (
                "heartbeat_interval",
                "heartbeat-interval",
                d.coordinator_heartbeat_interval,
            ),
            (
                "heartbeat_timeout",
                "heartbeat-timeout",
                d.coordinator_heartbeat_timeout,
            ),
            ("wait_timeout", "wait-timeout", d.coordinator_wait_timeout),
        ] {
            // At most a day: the coordinator cuts longer waits to that anyway.
            if !(v > 0.0 && v <= 86_400.0) {
                bail!(
                    "config: device.coordinator_{key} (--coordinator-{flag}) is {v} s; it must \
                     be a number of seconds above 0 and at most 86400"
                );
            }
        }
        if d.coordinator_heartbeat_interval >= d.coordinator_heartbeat_timeout {
            bail!(
                "config: device.coordinator_heartbeat_interval (--coordinator-heartbeat-interval) \
                 {} s must be below device.coordinator_heartbeat_timeout \
                 (--coordinator-heartbeat-timeout) {} s (several heartbeats must fit in the \
                 timeout)",
                d.coordinator_heartbeat_interval,
                d.coordinator_heartbeat_timeout
            );
        }
        if d.coordinator_tls_cert.is_some() != d.coordinator_tls_key.is_some() {
            bail!(
                "config: device.coordinator_tls_cert (--coordinator-tls-cert) and \
                 device.coordinator_tls_key (--coordinator-tls-key) go together: process 0 \
                 serves TLS with both"
            );
        }
        if d.coordinator_tls_cert.is_some() && d.coordinator_tls_ca.is_none() {
            bail!(
                "config: with --coordinator-tls-cert every process, process 0 included (it is a \
                 client of its own coordinator), needs --coordinator-tls-ca (device.\
                 coordinator_tls_ca) to verify it"
            );
        }
        Ok(())
    }

    /// The global batch must split evenly into `devices` local replica shards on each of
    /// `device.num_processes` processes, of `train.accumulation_steps` micro-batches each.
    pub fn check_batch_split(&self, devices: usize) -> Result<()> {
        let t = &self.train;
        let k = t.accumulation_steps as usize;
        let processes = self.device.num_processes.max(1) as usize;
        let devices = devices.max(1);
        let parts = k * devices * processes;
        if !t.batch_size.is_multiple_of(parts) {
            if processes > 1 {
                bail!(
                    "config: train.batch_size {} does not split evenly over {processes} \
                     process(es) x {devices} device(s) x {k} micro-batch(es) \
                     (device.num_processes x device.num_devices x train.accumulation_steps); \
                     make it a multiple of {parts}",
                    t.batch_size
                );
            }
            bail!(
                "config: train.batch_size {} does not split evenly over {devices} device(s) x \
                 {k} micro-batch(es) (device.num_devices x train.accumulation_steps); make it a \
                 multiple of {parts}",
                t.batch_size
            );
        }
        Ok(())
    }

    /// The model: preset or file, the size overrides (the architecture; how it runs is
    /// [`Self::execution`]).
    pub fn bert_config(&self) -> Result<BertConfig> {
        let m = &self.model;
        let mut cfg = match &m.config_file {
            Some(path) => BertConfig::from_file(path)?,
            None => BertConfig::preset(&m.preset).context("config: model.preset")?,
        };
        fn set<T: Copy>(dst: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *dst = v;
            }
        }
        set(&mut cfg.vocab_size, m.vocab_size);
        if let Some(h) = m.hidden_size {
            cfg.hidden_size = h;
            if m.intermediate_size.is_none() {
                cfg.intermediate_size = 4 * h;
            }
        }
        set(&mut cfg.num_hidden_layers, m.num_hidden_layers);
        set(&mut cfg.num_attention_heads, m.num_attention_heads);
        set(&mut cfg.intermediate_size, m.intermediate_size);
        set(&mut cfg.max_position_embeddings, m.max_position_embeddings);
        set(&mut cfg.hidden_dropout_prob, m.hidden_dropout_prob);
        set(
            &mut cfg.attention_probs_dropout_prob,
            m.attention_probs_dropout_prob,
        );
        if let Some(act) = m.hidden_act {
            cfg.hidden_act = act;
        }
        if m.pad_vocab_to.is_some() {
            cfg.pad_vocab_to = m.pad_vocab_to;
        }
        cfg.validate().context("config: [model]")?;
        Ok(cfg)
    }

    /// How the run computes `model` (its [`Self::bert_config`]): `train.precision` and the
    /// attention kernel `device.attention` picks on `device.backend`.
    pub fn execution(&self, model: &BertConfig) -> Result<Execution> {
        resolve_execution(
            self.device.backend,
            self.train.precision,
            self.device.attention,
            model,
            self.train.seed,
        )
        .context("config: device.attention")
    }

    /// Optimizer, schedule, clipping, accumulation, and what follows from the run's
    /// [`Self::execution`]: the precision policy ([`Execution::step_policy`]) and the FP8
    /// scaling of the model's FP8 matmuls.
    pub fn step_config(&self) -> Result<StepConfig> {
        let model = self.bert_config()?;
        let exec = self.execution(&model)?;
        let t = &self.train;
        let decay = WeightDecay::bert(t.weight_decay);
        let optimizer = t.optimizer.build(decay, t.adam_beta2);
        let schedule = match t.schedule {
            ScheduleKind::Linear => Schedule::linear(
                t.learning_rate,
                t.warmup_steps,
                t.steps,
                t.end_learning_rate,
            ),
            ScheduleKind::Cosine => {
                if t.steps <= t.warmup_steps {
                    bail!(
                        "config: the cosine schedule needs train.steps {} > train.warmup_steps {}",
                        t.steps,
                        t.warmup_steps
                    );
                }
                Schedule::WarmupCosine {
                    init_lr: t.learning_rate,
                    warmup_steps: t.warmup_steps,
                    total_steps: t.steps,
                    end_lr: t.end_learning_rate,
                }
            }
            ScheduleKind::Constant => Schedule::Constant {
                lr: t.learning_rate,
            },
        };
        let recipe = DelayedScaling {
            history_len: t.fp8_amax_history,
            margin: t.fp8_margin,
        };
        Ok(StepConfig {
            optimizer,
            schedule,
            clip_norm: (t.clip_norm > 0.0).then_some(t.clip_norm),
            accumulation_steps: t.accumulation_steps,
            policy: exec.step_policy(),
            replicas: 1,
            fp8: fp8_setup(&model, exec, &recipe),
        })
    }

    pub fn mask_token_id(&self) -> u32 {
        self.eval.mask_token_id.unwrap_or(103)
    }

    /// The training batch of `rows` rows as the step takes it: padded, or packed
    /// (`data.pack`) with `max_instances_per_row` NSP slots and, as Graphcore's packed BERT,
    /// one more prediction slot per instance (each instance rounds its 15% up by at most one).
    pub fn batch_shapes(&self, rows: usize) -> BatchShapes {
        let d = &self.data;
        let k = d.pack.then_some(d.max_instances_per_row);
        BatchShapes {
            batch_size: rows,
            seq_len: d.seq_len,
            max_predictions: d.max_predictions + k.unwrap_or(0),
            max_instances_per_row: k,
        }
    }

    /// Evaluation's batch: always padded (the eval program reads the shards as they are).
    pub fn eval_shapes(&self) -> BatchShapes {
        BatchShapes {
            batch_size: self.eval_batch_size(),
            seq_len: self.data.seq_len,
            max_predictions: self.data.max_predictions,
            max_instances_per_row: None,
        }
    }

    pub fn eval_batch_size(&self) -> usize {
        self.eval.batch_size.unwrap_or(self.train.batch_size)
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.checkpoint
            .dir
            .clone()
            .unwrap_or_else(|| self.output.dir.join("checkpoints"))
    }

    /// The optimizer's settings as recorded in checkpoints.
    pub fn optimizer_json(&self) -> serde_json::Value {
        let t = &self.train;
        serde_json::json!({
            "learning_rate": t.learning_rate,
            "end_learning_rate": t.end_learning_rate,
            "schedule": t.schedule.name(),
            "warmup_steps": t.warmup_steps,
            "steps": t.steps,
            "weight_decay": t.weight_decay,
            "clip_norm": t.clip_norm,
            "adam_beta2": t.adam_beta2,
            "accumulation_steps": t.accumulation_steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_overrides_and_errors_naming_the_field() {
        let text = r#"
            [model]
            preset = "mini"
            [data]
            train = "shards/*.tfrecord"
            seq_len = 64
            [train]
            batch_size = 8
            optimizer = "lamb"
        "#;
        let mut c = PretrainConfig::from_toml_str(text, "x.toml").unwrap();
        assert_eq!(c.model.preset, "mini");
        assert_eq!(c.data.seq_len, 64);
        assert_eq!(c.train.steps, TrainSection::default().steps);
        c.apply(&Overrides {
            batch_size: Some(16),
            no_resume: true,
            ..Default::default()
        });
        assert_eq!(c.train.batch_size, 16);
        assert!(!c.checkpoint.resume);
        c.apply(&Overrides {
            resume: true,
            ..Default::default()
        });
        assert!(c.checkpoint.resume, "--resume overrides resume = false");
        c.validate().unwrap();
        assert_eq!(c.bert_config().unwrap().hidden_size, 256);

        let err = PretrainConfig::from_toml_str("[train]\nbatch_sise = 3\n", "y.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("y.toml") && err.contains("batch_sise"),
            "{err}"
        );
        assert_eq!(c.train.optimizer, OptimizerKind::Lamb);
    }

    #[test]
    fn named_values_parse_with_their_aliases_and_bad_ones_name_key_and_choices() {
        let text =
            "[model]\nhidden_act = \"gelu_pytorch_tanh\"\n[train]\nprecision = \"bfloat16\"\n\
                    optimizer = \"bert_adam\"\nschedule = \"bert\"\n[device]\nbackend = \"gpu\"\n\
                    attention = \"graph\"\n";
        let c = PretrainConfig::from_toml_str(text, "t.toml").unwrap();
        assert_eq!(c.model.hidden_act, Some(HiddenAct::GeluTanh));
        assert_eq!(c.train.precision, ComputeDtype::Bf16);
        assert_eq!(c.train.optimizer, OptimizerKind::AdamWeightDecay);
        assert_eq!(c.train.schedule, ScheduleKind::Linear);
        assert_eq!(c.device.backend, Backend::Cuda);
        assert_eq!(c.device.attention, AttentionChoice::Graph);
        // Written back with the canonical names.
        let back = c.to_toml().unwrap();
        assert!(
            back.contains("precision = \"bf16\"") && back.contains("backend = \"cuda\""),
            "{back}"
        );
        // serde lists the aliases among the choices.
        for (text, key, choices) in [
            (
                "[train]\nprecision = \"fp16x\"\n",
                "precision",
                &["f32", "bf16", "fp8"][..],
            ),
            (
                "[train]\noptimizer = \"adagrad\"\n",
                "optimizer",
                &["adam_weight_decay", "adamw", "lamb", "sgd"],
            ),
            (
                "[train]\nschedule = \"step\"\n",
                "schedule",
                &["linear", "cosine", "constant"],
            ),
            (
                "[device]\nbackend = \"rocm\"\n",
                "backend",
                &["cpu", "cuda", "tpu"],
            ),
            (
                "[device]\nattention = \"flash\"\n",
                "attention",
                &["auto", "graph", "cudnn"],
            ),
            (
                "[model]\nhidden_act = \"swish\"\n",
                "hidden_act",
                &["gelu", "gelu_new", "relu"],
            ),
        ] {
            let e = PretrainConfig::from_toml_str(text, "run.toml")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("run.toml: ")
                    && e.contains(key)
                    && e.contains("unknown variant")
                    && choices.iter().all(|c| e.contains(&format!("`{c}`"))),
                "{e}"
            );
        }
    }

    #[test]
    fn the_sample_config_parses_and_validates() {
        let text = include_str!("../../configs/pretrain-tiny.toml");
        let c = PretrainConfig::from_toml_str(text, "configs/pretrain-tiny.toml").unwrap();
        c.validate().unwrap();
        assert_eq!(c.data.train.as_deref(), Some("shards/train/*.tfrecord"));
        assert_eq!(c.eval.interval, 500);
        let mut defaults = PretrainConfig::default();
        defaults.data.train = c.data.train.clone();
        defaults.data.eval = c.data.eval.clone();
        defaults.eval.interval = c.eval.interval;
        assert_eq!(c, defaults, "the sample's other values are the defaults");
    }

    #[test]
    fn packing_shapes_the_train_batch_only_and_is_checked() {
        let mut c = PretrainConfig::from_toml_str("[data]\ntrain = \"x\"\n", "t").unwrap();
        c.apply(&Overrides {
            pack: true,
            max_instances_per_row: Some(4),
            ..Overrides::default()
        });
        c.validate().unwrap();
        let s = c.batch_shapes(8);
        assert_eq!((s.max_predictions, s.max_instances_per_row), (24, Some(4)));
        let e = c.eval_shapes();
        assert_eq!((e.max_predictions, e.max_instances_per_row), (20, None));
        c.data.pack = false;
        assert_eq!(c.batch_shapes(8).max_instances_per_row, None);
        c.data.pack = true;
        c.data.synthetic = true;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("data.pack"), "{err}");
        c.data.synthetic = false;
        c.data.max_instances_per_row = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("data.max_instances_per_row"), "{err}");
    }

    #[test]
    fn end_learning_rate_and_adam_beta2_reach_the_step_and_are_checked() {
        let text = "[data]\nsynthetic = true\n[train]\nsteps = 50\nwarmup_steps = 5\n\
                    learning_rate = 1e-3\nend_learning_rate = 4e-4\nadam_beta2 = 0.98\n";
        let mut c = PretrainConfig::from_toml_str(text, "t.toml").unwrap();
        c.validate().unwrap();
        let step = c.step_config().unwrap();
        assert_eq!(
            step.schedule,
            Schedule::WarmupPolynomialDecay {
                init_lr: 1e-3,
                warmup_steps: 5,
                total_steps: 50,
                end_lr: 4e-4,
                power: 1.0
            }
        );
        assert_eq!(c.optimizer_json()["adam_beta2"], 0.98);
        c.train.end_learning_rate = 2e-3;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("train.end_learning_rate"), "{e}");
        c.train.end_learning_rate = 0.0;
        c.train.adam_beta2 = 1.0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("train.adam_beta2"), "{e}");
        // BERT's defaults: decay to 0, beta2 0.999.
        let d = PretrainConfig::default();
        assert_eq!(
            (d.train.end_learning_rate, d.train.adam_beta2),
            (0.0, 0.999)
        );
    }

    #[test]
    fn fp8_precision_gives_the_step_its_scaling_state() {
        let text = "[data]\nsynthetic = true\n[model]\npreset = \"tiny\"\n[train]\n\
                    precision = \"fp8\"\nfp8_amax_history = 8\nfp8_margin = 1.0\n";
        let mut c = PretrainConfig::from_toml_str(text, "t.toml").unwrap();
        c.validate().unwrap();
        let f = c.step_config().unwrap().fp8.unwrap();
        assert_eq!((f.recipe.history_len, f.recipe.margin), (8, 1.0));
        // tiny: 2 layers of query, key, value, attention output, FFN in and out.
        assert_eq!(f.layers.len(), 12);
        assert_eq!(f.state_specs().len(), 12 * 3 * 2);
        c.train.fp8_amax_history = 0;
        let e = format!("{:#}", c.validate().unwrap_err());
        assert!(e.contains("train.fp8_amax_history"), "{e}");
        c.train.precision = ComputeDtype::Bf16;
        c.validate().unwrap();
        assert!(c.step_config().unwrap().fp8.is_none());
    }

    #[test]
    fn train_precision_alone_decides_the_model_execution_and_the_step_policy() {
        let mut c = PretrainConfig::from_toml_str("[data]\nsynthetic = true\n", "t").unwrap();
        let model = c.bert_config().unwrap();
        for p in [ComputeDtype::F32, ComputeDtype::Bf16, ComputeDtype::Fp8] {
            c.train.precision = p;
            // The architecture does not change with the precision.
            assert_eq!(c.bert_config().unwrap(), model);
            let exec = c.execution(&model).unwrap();
            assert_eq!(exec, Execution::new(p));
            let step = c.step_config().unwrap();
            assert_eq!(step.policy, exec.step_policy());
            assert_eq!(step.fp8.is_some(), p == ComputeDtype::Fp8);
        }
        c.train.precision = ComputeDtype::F32;
        c.device.attention = AttentionChoice::Cudnn;
        let e = format!("{:#}", c.validate().unwrap_err());
        assert!(e.contains("device.attention") && e.contains("cuda"), "{e}");
    }

    #[test]
    fn process_settings_are_checked_with_errors_naming_the_flags() {
        let mut c = PretrainConfig::default();
        c.data.synthetic = true;
        c.train.batch_size = 12;
        c.validate().unwrap();
        c.apply(&Overrides {
            num_processes: Some(2),
            process_id: Some(1),
            ..Default::default()
        });
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--coordinator HOST:PORT"), "{e}");
        c.device.coordinator = Some("10.0.0.1".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("\"10.0.0.1\" is not HOST:PORT"), "{e}");
        c.apply(&Overrides {
            coordinator: Some("10.0.0.1:8476".into()),
            ..Default::default()
        });
        c.validate().unwrap();
        c.device.process_id = 2;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("--process-id) is 2") && e.contains("0..2"),
            "{e}"
        );
        c.device.process_id = 0;
        c.device.num_processes = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--num-processes) must be at least 1"), "{e}");
        // 12 rows over 2 processes x 2 devices x 2 micro-batches: 8 parts do not divide 12.
        c.device.num_processes = 2;
        c.device.num_devices = Some(2);
        c.train.accumulation_steps = 2;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("over 2 process(es) x 2 device(s) x 2 micro-batch(es)")
                && e.contains("multiple of 8"),
            "{e}"
        );
        c.train.batch_size = 16;
        c.validate().unwrap();
        // Local devices are checked the same way once the client says how many there are.
        let e = c.check_batch_split(3).unwrap_err().to_string();
        assert!(e.contains("multiple of 12"), "{e}");
        // One process keeps the single-process wording.
        c.device.num_processes = 1;
        let e = c.check_batch_split(3).unwrap_err().to_string();
        assert!(e.contains("over 3 device(s) x 2 micro-batch(es)"), "{e}");
    }

    #[test]
    fn bucket_paths_are_accepted_and_other_schemes_refused_naming_the_flag() {
        let mut c = PretrainConfig::default();
        c.data.synthetic = true;
        c.data.train = Some("gs://b/shards/*.tfrecord, local/*.tfrecord".into());
        c.data.eval = Some("s3://b/eval/*.tfrecord".into());
        c.checkpoint.dir = Some("s3://b/ckpt".into());
        c.output.dir = "gs://b/run".into();
        c.validate().unwrap();
        assert_eq!(c.checkpoint_dir(), PathBuf::from("s3://b/ckpt"));
        c.checkpoint.dir = None;
        assert_eq!(c.checkpoint_dir(), PathBuf::from("gs://b/run/checkpoints"));
        for (set, flag, scheme) in [
            (0, "data.train (--data)", "http"),
            (1, "data.eval (--eval-data)", "gcs"),
            (2, "checkpoint.dir (--checkpoint-dir)", "s3a"),
            (3, "output.dir (--output-dir)", "file"),
        ] {
            let mut bad = c.clone();
            let url = format!("{scheme}://b/x");
            match set {
                0 => bad.data.train = Some(format!("a/*.tfrecord,{url}")),
                1 => bad.data.eval = Some(url),
                2 => bad.checkpoint.dir = Some(url.into()),
                _ => bad.output.dir = url.into(),
            }
            let e = bad.validate().unwrap_err().to_string();
            assert!(
                e.contains(flag) && e.contains(&format!("'{scheme}' is not supported")),
                "{e}"
            );
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let mut c = PretrainConfig::default();
        c.data.train = Some("a/*.tfrecord".into());
        c.model.hidden_size = Some(64);
        let text = c.to_toml().unwrap();
        assert_eq!(PretrainConfig::from_toml_str(&text, "t").unwrap(), c);
    }

    #[test]
    fn a_warmup_longer_than_the_run_is_a_warning() {
        let mut c = PretrainConfig::default();
        c.train.steps = 100;
        c.train.warmup_steps = 100;
        assert!(c.warnings().is_empty());
        c.train.warmup_steps = 400;
        let w = c.warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("warmup_steps (400) exceeds train.steps (100)"),
            "{}",
            w[0]
        );
    }
}

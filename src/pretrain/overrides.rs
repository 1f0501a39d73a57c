//! The command-line overrides of a pretraining run config: declared once, as the flags of
//! `tpu-run pretrain` (flattened into its arguments; `tpu-run compile` sets a few of them), and
//! applied on top of the TOML file's values. Each help line names the config key it replaces.
use super::config::PretrainConfig;
use crate::backend::{AttentionChoice, Backend};
use crate::model::ComputeDtype;
use crate::train::OptimizerKind;
use clap::Args;
use std::path::PathBuf;

/// Command-line values that replace the file's (each `None` or `false` leaves the file's value).
#[derive(Args, Clone, Debug, Default)]
pub struct Overrides {
    /// Model preset: tiny, mini, small, medium, base, large (model.preset, default tiny).
    #[arg(long)]
    pub preset: Option<String>,
    /// Model config file (bert_config.json or Hugging Face config.json); replaces the preset
    /// (model.config_file).
    #[arg(long)]
    pub model_config: Option<PathBuf>,
    /// Training shards: paths or glob patterns, comma-separated; gs://BUCKET/... and
    /// s3://BUCKET/... patterns are matched against the bucket's listing and read as streams
    /// (data.train).
    #[arg(long = "data", value_name = "DATA")]
    pub train_data: Option<String>,
    /// Held-out shards for evaluation, same forms as --data (data.eval).
    #[arg(long)]
    pub eval_data: Option<String>,
    /// Random batches instead of files (data.synthetic).
    #[arg(long)]
    pub synthetic_data: bool,
    /// Skip damaged training records (bad CRC or framing, undecodable or out-of-range values)
    /// instead of stopping: each is logged with its file and byte offset and counted in the run
    /// summary (the rest of a shard whose framing is broken is skipped with it;
    /// data.skip_corrupt).
    #[arg(long)]
    pub skip_corrupt: bool,
    /// Device backend (device.backend, default cpu).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// PJRT plugin file; overrides discovery (device.plugin).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Devices to train on, data-parallel (default: every chip of a TPU host, 1 on CPU and
    /// CUDA; on CPU this many virtual devices are made). --batch-size stays the global batch
    /// (device.num_devices).
    #[arg(long, value_name = "N")]
    pub num_devices: Option<u32>,
    /// Self-attention kernel (device.attention, default auto).
    #[arg(long, value_enum)]
    pub attention: Option<AttentionChoice>,
    /// Multi-process runs (one process per host of a pod slice, or per GPU): worker 0's
    /// address HOST:PORT, the same on every process; process 0 serves the coordinator there
    /// (device.coordinator).
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: Option<String>,
    /// Processes of a multi-process run (default 1); each drives --num-devices local devices
    /// (device.num_processes).
    #[arg(long, value_name = "N")]
    pub num_processes: Option<u32>,
    /// This process's index in 0..--num-processes (0 serves the coordinator, writes metrics
    /// and checkpoints; device.process_id).
    #[arg(long, value_name = "K")]
    pub process_id: Option<u32>,
    /// A file holding the run's secret, the same on every process (keep it private: chmod
    /// 600). Unset: $TPU_RUN_COORDINATOR_TOKEN, else process 0 generates a token and prints it.
    #[arg(long, value_name = "FILE")]
    pub coordinator_token_file: Option<PathBuf>,
    /// Process 0 writes the token it generated to this new file (mode 600).
    #[arg(long, value_name = "FILE")]
    pub coordinator_token_out: Option<PathBuf>,
    /// The address process 0 listens on (default: the --coordinator address itself; give
    /// 0.0.0.0:PORT to listen on every interface).
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator_bind: Option<String>,
    /// TLS certificate chain (PEM) process 0 serves the coordinator with.
    #[arg(long, value_name = "FILE")]
    pub coordinator_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --coordinator-tls-cert.
    #[arg(long, value_name = "FILE")]
    pub coordinator_tls_key: Option<PathBuf>,
    /// The CA (PEM) every process verifies the coordinator's certificate with; turns TLS on.
    #[arg(long, value_name = "FILE")]
    pub coordinator_tls_ca: Option<PathBuf>,
    /// Seconds to keep trying to reach the coordinator (default 120).
    #[arg(long, value_name = "SECONDS")]
    pub coordinator_connect_timeout: Option<f64>,
    /// Seconds to wait for every process to join (default 300).
    #[arg(long, value_name = "SECONDS")]
    pub coordinator_join_timeout: Option<f64>,
    /// Seconds between heartbeats (default 1; process 0's applies).
    #[arg(long, value_name = "SECONDS")]
    pub coordinator_heartbeat_interval: Option<f64>,
    /// Seconds of silence after which a process is lost and the run fails (default 30;
    /// process 0's applies).
    #[arg(long, value_name = "SECONDS")]
    pub coordinator_heartbeat_timeout: Option<f64>,
    /// Seconds to wait for the other processes at a coordinated point: barriers, the resume
    /// decision, checkpoints (default 1800).
    #[arg(long, value_name = "SECONDS")]
    pub coordinator_wait_timeout: Option<f64>,
    /// Sequences per optimizer step over all devices of all processes (train.batch_size,
    /// default 32).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Tokens per sequence; must match the shards (data.seq_len, default 128).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Masked-LM predictions per sequence; must match the shards (data.max_predictions,
    /// default 20).
    #[arg(long)]
    pub max_predictions: Option<usize>,
    /// Pack several short instances into each row (data.pack): --batch-size then counts packed
    /// rows.
    #[arg(long)]
    pub pack: bool,
    /// Instances per packed row (data.max_instances_per_row, default 3).
    #[arg(long, value_name = "K")]
    pub max_instances_per_row: Option<usize>,
    /// Total optimizer steps; the schedule decays to its end here (train.steps, default 1000).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Steps of linear learning-rate warmup (train.warmup_steps, default 100).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Peak learning rate, reached after the warmup (train.learning_rate, default 1e-4).
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// The optimizer (train.optimizer, default adam_weight_decay).
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Compute precision (train.precision, default f32); fp8 takes train.fp8_amax_history and
    /// train.fp8_margin.
    #[arg(long, value_enum)]
    pub precision: Option<ComputeDtype>,
    /// Micro-batches per step, gradient accumulation (train.accumulation_steps, default 1).
    #[arg(long)]
    pub accumulation_steps: Option<u32>,
    /// Seeds initialization, data order and dropout (train.seed, default 12345).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Evaluate every N steps and at the end; 0: only at the end (eval.interval, default 0).
    #[arg(long)]
    pub eval_interval: Option<u64>,
    /// Batches per evaluation; 0: the whole eval set (eval.batches, default 0).
    #[arg(long)]
    pub eval_batches: Option<usize>,
    /// Where checkpoints go (default: <output-dir>/checkpoints); a gs:// or s3:// prefix
    /// keeps them in a bucket, each committed by a manifest written last (checkpoint.dir).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Save a checkpoint every N steps and at the end; 0: only at the end
    /// (checkpoint.interval, default 1000).
    #[arg(long)]
    pub checkpoint_interval: Option<u64>,
    /// Checkpoints kept, the newest N (checkpoint.keep_last).
    #[arg(long)]
    pub keep_last: Option<usize>,
    /// Never resume: start from scratch (refused when the checkpoint directory has checkpoints).
    #[arg(long)]
    pub no_resume: bool,
    /// Resume from the latest checkpoint when there is one (the default; overrides
    /// `checkpoint.resume = false` in the config). `tpu-run pod run` restarts with it.
    #[arg(long, conflicts_with = "no_resume")]
    pub resume: bool,
    /// Where metrics.jsonl, TensorBoard events and (by default) checkpoints go; a gs:// or
    /// s3:// prefix gets them uploaded at every checkpoint and at the end (output.dir, default
    /// runs/pretrain).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Log and record training metrics every N steps (output.log_every, default 10).
    #[arg(long)]
    pub log_every: Option<u64>,
}

impl PretrainConfig {
    /// Applies command-line overrides.
    pub fn apply(&mut self, o: &Overrides) {
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        /// For settings that are optional in the file too.
        fn set_some<T: Clone>(dst: &mut Option<T>, v: &Option<T>) {
            if v.is_some() {
                dst.clone_from(v);
            }
        }
        if let Some(p) = &o.preset {
            self.model.preset = p.clone();
            self.model.config_file = None;
        }
        set_some(&mut self.model.config_file, &o.model_config);
        set_some(&mut self.data.train, &o.train_data);
        set_some(&mut self.data.eval, &o.eval_data);
        self.data.synthetic |= o.synthetic_data;
        self.data.skip_corrupt |= o.skip_corrupt;
        let d = &mut self.device;
        set(&mut d.backend, &o.backend);
        set_some(&mut d.plugin, &o.plugin);
        set_some(&mut d.num_devices, &o.num_devices);
        set(&mut d.attention, &o.attention);
        set_some(&mut d.coordinator, &o.coordinator);
        set(&mut d.num_processes, &o.num_processes);
        set(&mut d.process_id, &o.process_id);
        set_some(&mut d.coordinator_token_file, &o.coordinator_token_file);
        set_some(&mut d.coordinator_token_out, &o.coordinator_token_out);
        set_some(&mut d.coordinator_tls_cert, &o.coordinator_tls_cert);
        set_some(&mut d.coordinator_tls_key, &o.coordinator_tls_key);
        set_some(&mut d.coordinator_tls_ca, &o.coordinator_tls_ca);
        set_some(&mut d.coordinator_bind, &o.coordinator_bind);
        set(
            &mut d.coordinator_connect_timeout,
            &o.coordinator_connect_timeout,
        );
        set(&mut d.coordinator_join_timeout, &o.coordinator_join_timeout);
        set(
            &mut d.coordinator_heartbeat_interval,
            &o.coordinator_heartbeat_interval,
        );
        set(
            &mut d.coordinator_heartbeat_timeout,
            &o.coordinator_heartbeat_timeout,
        );
        set(&mut d.coordinator_wait_timeout, &o.coordinator_wait_timeout);
        set(&mut self.train.batch_size, &o.batch_size);
        set(&mut self.data.seq_len, &o.seq_len);
        set(&mut self.data.max_predictions, &o.max_predictions);
        self.data.pack |= o.pack;
        set(
            &mut self.data.max_instances_per_row,
            &o.max_instances_per_row,
        );
        set(&mut self.train.steps, &o.steps);
        set(&mut self.train.warmup_steps, &o.warmup_steps);
        set(&mut self.train.learning_rate, &o.learning_rate);
        set(&mut self.train.optimizer, &o.optimizer);
        set(&mut self.train.precision, &o.precision);
        set(&mut self.train.accumulation_steps, &o.accumulation_steps);
        set(&mut self.train.seed, &o.seed);
        set(&mut self.eval.interval, &o.eval_interval);
        set(&mut self.eval.batches, &o.eval_batches);
        set_some(&mut self.checkpoint.dir, &o.checkpoint_dir);
        set(&mut self.checkpoint.interval, &o.checkpoint_interval);
        set(&mut self.checkpoint.keep_last, &o.keep_last);
        if o.no_resume {
            self.checkpoint.resume = false;
        }
        if o.resume {
            self.checkpoint.resume = true;
        }
        set(&mut self.output.dir, &o.output_dir);
        set(&mut self.output.log_every, &o.log_every);
    }
}

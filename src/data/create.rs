//! `create-data`: text files -> TFRecord shards of BERT pretraining examples, with
//! google-research/bert create_pretraining_data.py's semantics (and random stream: the same
//! input, vocab, flags and seed give the same examples).
use super::documents::{expand_inputs, read_documents, ReadStats};
use super::instances::{create_training_instances, Instance, InstanceConfig, VocabInfo};
use super::masking::{MaskingConfig, SpecialIds};
use super::pyrandom::PyRandom;
pub use super::sentences::InputFormat;
use super::tokenize::BertTokenizer;
use super::writer::{ShardWriter, WrittenShard};
use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// create_pretraining_data.py's flags (same defaults) plus the shard count and input layout.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CreateDataConfig {
    pub max_seq_length: usize,
    pub max_predictions_per_seq: usize,
    pub masked_lm_prob: f64,
    pub short_seq_prob: f64,
    pub dupe_factor: usize,
    pub random_seed: u64,
    pub do_lower_case: bool,
    pub whole_word_masking: bool,
    pub num_shards: usize,
    pub input_format: InputFormat,
}

impl Default for CreateDataConfig {
    fn default() -> Self {
        CreateDataConfig {
            max_seq_length: 128,
            max_predictions_per_seq: 20,
            masked_lm_prob: 0.15,
            short_seq_prob: 0.1,
            dupe_factor: 10,
            random_seed: 12345,
            do_lower_case: true,
            whole_word_masking: false,
            num_shards: 1,
            input_format: InputFormat::Auto,
        }
    }
}

impl CreateDataConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_seq_length < 5 {
            return Err(anyhow!(
                "--max-seq-length {} is too small: [CLS] A [SEP] B [SEP] needs at least 5",
                self.max_seq_length
            ));
        }
        if self.max_predictions_per_seq == 0 {
            return Err(anyhow!("--max-predictions-per-seq must be at least 1"));
        }
        for (name, p) in [
            ("--masked-lm-prob", self.masked_lm_prob),
            ("--short-seq-prob", self.short_seq_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(anyhow!("{name} {p} is not a probability in [0, 1]"));
            }
        }
        if self.dupe_factor == 0 {
            return Err(anyhow!("--dupe-factor must be at least 1"));
        }
        if self.num_shards == 0 {
            return Err(anyhow!("--num-shards must be at least 1"));
        }
        Ok(())
    }

    fn instance_config(&self) -> InstanceConfig {
        InstanceConfig {
            max_seq_length: self.max_seq_length,
            short_seq_prob: self.short_seq_prob,
            dupe_factor: self.dupe_factor,
            masking: MaskingConfig {
                masked_lm_prob: self.masked_lm_prob,
                max_predictions: self.max_predictions_per_seq,
                whole_word: self.whole_word_masking,
            },
        }
    }
}

/// What a run read and wrote, with the statistics that show the masking is right.
#[derive(Clone, Debug, Default)]
pub struct CreateDataSummary {
    pub read: ReadStats,
    pub documents: usize,
    pub instances: usize,
    /// Tokens of all instances, [CLS]/[SEP] included, padding excluded.
    pub tokens: u64,
    pub masked: u64,
    /// Masked positions now holding [MASK] / their original token / another token.
    pub masked_as_mask: u64,
    pub masked_kept: u64,
    pub masked_random: u64,
    pub random_next: u64,
    pub shards: Vec<WrittenShard>,
}

impl CreateDataSummary {
    pub fn masked_fraction(&self) -> f64 {
        self.masked as f64 / self.tokens.max(1) as f64
    }

    fn add(&mut self, inst: &Instance, mask_id: u32) {
        self.instances += 1;
        self.tokens += inst.tokens.len() as u64;
        self.random_next += u64::from(inst.is_random_next);
        for (&p, &label) in inst.masked.positions.iter().zip(&inst.masked.labels) {
            self.masked += 1;
            match inst.tokens.get(p as usize) {
                Some(&t) if t == mask_id => self.masked_as_mask += 1,
                Some(&t) if t == label => self.masked_kept += 1,
                _ => self.masked_random += 1,
            }
        }
    }
}

impl std::fmt::Display for CreateDataSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |n: u64, d: u64| 100.0 * n as f64 / d.max(1) as f64;
        writeln!(
            f,
            "read {} files ({:.1} MB): {} documents, {} sentences, {} tokens",
            self.read.files.len(),
            self.read.bytes as f64 / 1e6,
            self.documents,
            self.read.sentences,
            self.read.tokens
        )?;
        writeln!(
            f,
            "wrote {} instances, {} tokens; masked {:.2}% of tokens ({:.1}% [MASK], {:.1}% kept, \
             {:.1}% random); random next sentence {:.1}%",
            self.instances,
            self.tokens,
            100.0 * self.masked_fraction(),
            pct(self.masked_as_mask, self.masked),
            pct(self.masked_kept, self.masked),
            pct(self.masked_random, self.masked),
            pct(self.random_next, self.instances as u64)
        )?;
        for bad in &self.read.lossy_files {
            writeln!(
                f,
                "dropped {} invalid UTF-8 byte sequence(s) in {} (the first on line {})",
                bad.sequences,
                bad.path.display(),
                bad.first_line
            )?;
        }
        for s in &self.shards {
            writeln!(
                f,
                "  {} ({} records, {:.1} MB)",
                s.path.display(),
                s.records,
                s.bytes as f64 / 1e6
            )?;
        }
        Ok(())
    }
}

fn bar(show: bool, len: u64, what: &str, bytes: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let template = if bytes {
        "{msg:>12} [{bar:40}] {bytes}/{total_bytes} ({eta})"
    } else {
        "{msg:>12} [{bar:40}] {pos}/{len} ({eta})"
    };
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// Reads, tokenizes and builds the (shuffled) instances, as `create_training_instances` does.
pub fn create_instances(
    files: &[PathBuf],
    tokenizer: &BertTokenizer,
    cfg: &CreateDataConfig,
    show_progress: bool,
) -> Result<(Vec<Instance>, ReadStats, usize)> {
    cfg.validate()?;
    let vocab = tokenizer.vocab();
    let hint = "(--vocab)";
    let special = SpecialIds {
        cls: vocab.required("[CLS]", hint)?,
        sep: vocab.required("[SEP]", hint)?,
        mask: vocab.required("[MASK]", hint)?,
    };
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let pb = bar(show_progress, total, "tokenizing", true);
    let (mut docs, stats) = read_documents(files, tokenizer, cfg.input_format, &pb)?;
    pb.finish_and_clear();
    if docs.is_empty() {
        return Err(anyhow!(
            "the input has no text: every line of {} file(s) is empty or tokenizes to nothing",
            files.len()
        ));
    }
    let n_docs = docs.len();
    let pb = bar(
        show_progress,
        (n_docs * cfg.dupe_factor) as u64,
        "instances",
        false,
    );
    let is_cont = |id: u32| tokenizer.is_continuation(id);
    let info = VocabInfo {
        special,
        is_continuation: &is_cont,
        words: &vocab.words,
    };
    let mut rng = PyRandom::new(cfg.random_seed);
    let instances = create_training_instances(
        &mut docs,
        &cfg.instance_config(),
        &info,
        &mut rng,
        &mut || pb.inc(1),
    );
    pb.finish_and_clear();
    Ok((instances, stats, n_docs))
}

/// The whole command: expand `inputs` (paths, globs, comma lists), tokenize with `vocab`, build
/// instances and write `cfg.num_shards` shards into `output_dir` (a directory, or a `gs://` /
/// `s3://` prefix the shards are uploaded to once written).
pub fn create_pretraining_data(
    inputs: &[String],
    vocab: &Path,
    output_dir: &Path,
    cfg: &CreateDataConfig,
    show_progress: bool,
) -> Result<CreateDataSummary> {
    cfg.validate()?;
    let files = expand_inputs(inputs)?;
    let tokenizer = BertTokenizer::from_vocab_file(vocab, cfg.do_lower_case)?;
    let (instances, read, documents) = create_instances(&files, &tokenizer, cfg, show_progress)?;
    let mask_id = tokenizer.vocab().required("[MASK]", "(--vocab)")?;
    let mut summary = CreateDataSummary {
        read,
        documents,
        ..Default::default()
    };
    // A bucket output (gs:// / s3://) is written locally first, then uploaded shard by shard.
    let out = crate::storage::OutputDir::open(output_dir, &[])
        .with_context(|| format!("opening the output directory {}", output_dir.display()))?;
    let mut writer = ShardWriter::create(
        out.local(),
        cfg.num_shards,
        cfg.max_seq_length,
        cfg.max_predictions_per_seq,
    )?;
    let pb = bar(show_progress, instances.len() as u64, "writing", false);
    for inst in &instances {
        writer.write(inst)?;
        summary.add(inst, mask_id);
        pb.inc(1);
    }
    pb.finish_and_clear();
    summary.shards = writer.finish()?;
    out.sync()
        .with_context(|| format!("uploading the shards to {}", output_dir.display()))?;
    for shard in &mut summary.shards {
        shard.path = out.shown(&shard.path);
    }
    Ok(summary)
}

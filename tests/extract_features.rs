//! `tpu-run extract-features` through the binary on the CPU plugin, with all-MiniLM-L6-v2:
//! the JSON lines against PyTorch/transformers (tests/fixtures/extract_features_golden.json, from
//! tools/extract_features_golden.py, laid out as extract_features.py does), the .npy arrays
//! against the JSON lines, and the errors a user can cause.
//!
//! Without the model (no cached copy and no PyPI access) these tests print why and pass without
//! checking.
mod cli_support;
use base64::Engine;
use cli_support::{output, stderr, stdout, tpu_run};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

const INPUT: &str = "tests/fixtures/extract_features_input.txt";

fn minilm() -> Option<PathBuf> {
    match tpu_run::data::assets::minilm_dir() {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("SKIPPED: all-MiniLM-L6-v2 is not available ({e:#})");
            None
        }
    }
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `tpu-run extract-features ARGS`, run; its output and its stdout followed by its stderr.
fn extract_features(args: &[&str]) -> (Output, String) {
    let out = output(
        tpu_run()
            .arg("extract-features")
            .args(args)
            .env("RUST_BACKTRACE", "0"),
    );
    let text = stdout(&out) + &stderr(&out);
    (out, text)
}

fn f32s_b64(v: &Value) -> Vec<f32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("valid base64");
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn golden() -> Value {
    let text = std::fs::read_to_string(fixture("tests/fixtures/extract_features_golden.json"))
        .expect("golden file");
    serde_json::from_str(&text).expect("golden JSON")
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("output file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn tokens_of(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|t| t.as_str().expect("string").to_string())
        .collect()
}

/// Runs the golden's configuration (batches of 3: the last of the 8 examples is padded).
fn run_golden_config(init: &Path, out: &Path, extra: &[&str]) -> String {
    let (o, text) = extract_features(
        &[
            &[
                "--init",
                init.to_str().unwrap(),
                "--input",
                fixture(INPUT).to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--layers",
                "-1,-2,-3,-4,-6",
                "--max-seq-length",
                "32",
                "--batch-size",
                "3",
            ][..],
            extra,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{text}");
    text
}

#[test]
fn jsonl_output_matches_transformers_for_every_token_and_layer() {
    let Some(model) = minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("features.jsonl");
    let text = run_golden_config(&model, &out, &[]);
    assert!(text.contains("8 lines -> 8 examples (2 pairs"), "{text}");
    assert!(text.contains("1 empty lines"), "{text}");
    assert!(text.contains("2 examples were truncated"), "{text}");
    assert!(text.contains("imported 101 parameters"), "{text}");

    let g = golden();
    let hidden = g["hidden_size"].as_u64().unwrap() as usize;
    let want_layers: Vec<i64> = g["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let lines = read_jsonl(&out);
    let examples = g["examples"].as_array().unwrap();
    assert_eq!(lines.len(), examples.len());
    let mut worst = 0f64;
    for (i, (line, ex)) in lines.iter().zip(examples).enumerate() {
        assert_eq!(line["linex_index"], i);
        let want_tokens = tokens_of(&ex["tokens"]);
        let features = line["features"].as_array().unwrap();
        let got_tokens: Vec<String> = features
            .iter()
            .map(|f| f["token"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got_tokens, want_tokens, "line {i}");
        for (j, &index) in want_layers.iter().enumerate() {
            let want = f32s_b64(&ex["layers"][index.to_string()]);
            assert_eq!(want.len(), want_tokens.len() * hidden);
            for (t, f) in features.iter().enumerate() {
                let layer = &f["layers"][j];
                assert_eq!(layer["index"], index);
                let values = layer["values"].as_array().unwrap();
                assert_eq!(values.len(), hidden);
                for (k, v) in values.iter().enumerate() {
                    let d = (v.as_f64().unwrap() - f64::from(want[t * hidden + k])).abs();
                    worst = worst.max(d);
                    assert!(
                        d <= 1e-4,
                        "line {i} token {t} layer {index} value {k}: {v} vs {}",
                        want[t * hidden + k]
                    );
                }
            }
        }
    }
    eprintln!("largest difference from transformers: {worst:.2e}");
}

/// An .npy file's shape and its f32 values.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': ("));
    let shape = header
        .split_once("'shape': (")
        .unwrap()
        .1
        .split_once(')')
        .unwrap()
        .0
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data = bytes[10 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, data)
}

#[test]
fn npy_arrays_hold_the_jsonl_values_unrounded() {
    let Some(model) = minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("features.jsonl");
    let dir = tmp.path().join("arrays");
    run_golden_config(&model, &jsonl, &[]);
    let text = run_golden_config(&model, &dir, &["--format", "npy"]);
    assert!(text.contains("layer_-6.npy"), "{text}");
    let lines = read_jsonl(&jsonl);
    let tokens = read_jsonl(&dir.join("tokens.jsonl"));
    assert_eq!(tokens.len(), lines.len());
    for (j, index) in [-1, -2, -3, -4, -6].into_iter().enumerate() {
        let (shape, data) = read_npy(&dir.join(format!("layer_{index}.npy")));
        assert_eq!(shape, [8, 32, 384]);
        assert_eq!(data.len(), 8 * 32 * 384);
        for (i, (line, toks)) in lines.iter().zip(&tokens).enumerate() {
            assert_eq!(toks["linex_index"], i);
            let features = line["features"].as_array().unwrap();
            let want_tokens: Vec<&str> = features
                .iter()
                .map(|f| f["token"].as_str().unwrap())
                .collect();
            assert_eq!(tokens_of(&toks["tokens"]), want_tokens);
            let row = &data[i * 32 * 384..(i + 1) * 32 * 384];
            for (t, f) in features.iter().enumerate() {
                let values = f["layers"][j]["values"].as_array().unwrap();
                for (k, v) in values.iter().enumerate() {
                    let d = (f64::from(row[t * 384 + k]) - v.as_f64().unwrap()).abs();
                    // Rounding to 6 decimals moves a value by at most 5e-7 (plus f32 spacing).
                    assert!(
                        d <= 5.1e-7,
                        "layer {index} line {i} token {t} value {k}: {d}"
                    );
                }
            }
            assert!(
                row[features.len() * 384..].iter().all(|&x| x == 0.0),
                "padding of line {i} is zero"
            );
        }
    }
}

#[test]
fn user_errors_name_the_flag_file_or_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.jsonl");
    let missing = tmp.path().join("no-such-input.txt");
    let model = minilm();
    // Without the model, --init points at a directory that is not one; the input is read first.
    let init = model.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let args = |input: &Path, layers: &str| -> Vec<String> {
        [
            "--init",
            init.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--layers",
            layers,
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let (o, text) = extract_features(&refs);
        assert!(!o.status.success(), "{text}");
        assert!(!text.contains("panicked"), "{text}");
        text
    };
    let text = run(args(&missing, "-1"));
    assert!(
        text.contains("--input") && text.contains("no-such-input.txt"),
        "{text}"
    );
    let bad = tmp.path().join("bad.txt");
    std::fs::write(&bad, b"a fine line\nnot \xc3\x28 fine\n").unwrap();
    let text = run(args(&bad, "-1"));
    assert!(
        text.contains("bad.txt") && text.contains("line 2: invalid UTF-8"),
        "{text}"
    );
    assert!(!out.exists(), "no output after an error");

    let Some(_) = model else { return };
    let input = fixture(INPUT);
    for (layers, want) in [
        ("0", "0 is not a layer of this 6-layer model"),
        ("-1,-7", "-7 is not a layer of this 6-layer model"),
        ("-1,last", "\"last\" is not an integer"),
    ] {
        let text = run(args(&input, layers));
        assert!(text.contains("--layers") && text.contains(want), "{text}");
    }
    let mut a = args(&input, "-1");
    a.extend(["--max-seq-length", "1000"].map(String::from));
    let text = run(a);
    assert!(text.contains("max_position_embeddings 512"), "{text}");
}

/// MiniLM's weights as one of our checkpoints: the same features, byte for byte, as from the
/// Hugging Face directory.
#[test]
fn a_tpu_run_checkpoint_gives_the_hugging_face_directorys_features() {
    let Some(model) = minilm() else { return };
    let src = tpu_run::import::Pretrained::open(&model).unwrap();
    let specs = tpu_run::model::params::encoder_param_specs(&src.config);
    let (set, _) = src.load(&specs, 0).unwrap();
    let params = set
        .iter()
        .map(|(n, t)| {
            let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
            (
                n.to_string(),
                hlo::Literal::from_slice(&t.data, &dims).unwrap(),
            )
        })
        .collect();
    let mut state = tpu_run::ckpt::State::new(7, params, vec![]);
    state.model_config = serde_json::to_value(&src.config).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("checkpoints");
    tpu_run::ckpt::Store::new(&store).save(&state).unwrap();

    let (from_hf, from_ours) = (tmp.path().join("hf.jsonl"), tmp.path().join("ours.jsonl"));
    run_golden_config(&model, &from_hf, &[]);
    let vocab = model.join("vocab.txt");
    let text = run_golden_config(&store, &from_ours, &["--vocab", vocab.to_str().unwrap()]);
    assert!(
        text.contains("imported 101 parameters") && text.contains("tpu-run checkpoint, step 7"),
        "{text}"
    );
    assert!(
        text.contains("not used by this model: bert.pooler"),
        "{text}"
    );
    assert!(
        std::fs::read(&from_hf).unwrap() == std::fs::read(&from_ours).unwrap(),
        "the two outputs differ"
    );
    // Without --vocab a checkpoint of ours has no vocabulary: the error says what to pass.
    let (o, text) = extract_features(&[
        "--init",
        store.to_str().unwrap(),
        "--input",
        fixture(INPUT).to_str().unwrap(),
        "--output",
        from_ours.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && text.contains("--vocab FILE"),
        "{text}"
    );
}

/// google-research/bert's TF checkpoint format (a 2-layer model of hidden size 8, written by
/// TensorFlow: tests/fixtures/tf_ckpt).
#[test]
fn a_tf_checkpoint_loads_and_gives_every_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "tok0 tok1 ||| tok2\r\ntok3\n").unwrap();
    let out = tmp.path().join("out.jsonl");
    let (o, text) = extract_features(&[
        "--init",
        fixture("tests/fixtures/tf_ckpt").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--layers=-1,-2",
        "--max-seq-length",
        "8",
    ]);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("TensorFlow"), "{text}");
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 2);
    let tokens: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            l["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["token"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        tokens,
        [
            vec!["[CLS]", "tok0", "tok1", "[SEP]", "tok2", "[SEP]"],
            vec!["[CLS]", "tok3", "[SEP]"]
        ]
    );
    for f in lines.iter().flat_map(|l| l["features"].as_array().unwrap()) {
        let layers = f["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(
            (layers[0]["index"].as_i64(), layers[1]["index"].as_i64()),
            (Some(-1), Some(-2))
        );
        for layer in layers {
            let v = layer["values"].as_array().unwrap();
            assert_eq!(v.len(), 8);
            // LayerNorm outputs: finite, not all equal.
            assert!(v.iter().all(|x| x.as_f64().unwrap().is_finite()));
            assert!(v.iter().any(|x| x != &v[0]), "{v:?}");
        }
    }
}

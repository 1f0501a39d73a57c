//! TFRecord framing and tf.train.Example encoding against bytes written by TensorFlow
//! (tests/fixtures/tfrecord_golden.json, from tools/tfrecord_golden.py), write/read round trips
//! and the damaged-file cases (each error names the file and the byte offset).
use rand::{Rng, SeedableRng};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use tpu_run::data::example::PretrainingExample;
use tpu_run::data::tfrecord::{frame, masked_crc32c, RecordReader, RecordWriter};
use tpu_run::data::DataError;

#[derive(serde::Deserialize)]
struct Golden {
    seq_len: usize,
    max_predictions: usize,
    example_values: std::collections::BTreeMap<String, Vec<f64>>,
    payloads_hex: Vec<String>,
    file_hex: String,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn golden() -> Golden {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tfrecord_golden.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn golden_example(g: &Golden) -> PretrainingExample {
    let ints = |k: &str| {
        g.example_values[k]
            .iter()
            .map(|&v| v as i64)
            .collect::<Vec<_>>()
    };
    PretrainingExample {
        input_ids: ints("input_ids"),
        input_mask: ints("input_mask"),
        segment_ids: ints("segment_ids"),
        masked_lm_positions: ints("masked_lm_positions"),
        masked_lm_ids: ints("masked_lm_ids"),
        masked_lm_weights: g.example_values["masked_lm_weights"]
            .iter()
            .map(|&v| v as f32)
            .collect(),
        next_sentence_label: ints("next_sentence_labels")[0],
    }
}

#[test]
fn example_bytes_equal_tensorflow_deterministic_serialization() {
    let g = golden();
    let ex = golden_example(&g);
    assert_eq!(ex.encode(), hex(&g.payloads_hex[0]));
    let back =
        PretrainingExample::decode(&hex(&g.payloads_hex[0]), g.seq_len, g.max_predictions).unwrap();
    assert_eq!(back, ex);
}

#[test]
fn framing_equals_tensorflow_writer_bytes() {
    let g = golden();
    let payloads: Vec<Vec<u8>> = g.payloads_hex.iter().map(|h| hex(h)).collect();
    let file = hex(&g.file_hex);
    // frame() and RecordWriter both give TensorFlow's bytes.
    let framed: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    assert_eq!(framed, file);
    let mut w = RecordWriter::new(Vec::new());
    for p in &payloads {
        w.write_record(p).unwrap();
    }
    assert_eq!(w.records(), 3);
    assert_eq!(w.bytes(), file.len() as u64);
    assert_eq!(w.finish().unwrap(), file);
    // Reading TensorFlow's file gives the payloads and their offsets.
    let mut r = RecordReader::new(Cursor::new(file.clone()), Path::new("golden"), true);
    let mut offset = 0u64;
    for p in &payloads {
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.offset, offset);
        assert_eq!(&rec.data, p);
        offset += 16 + p.len() as u64;
    }
    assert!(r.next_record().unwrap().is_none());
    // The empty record's header CRC, checked by hand: masked CRC32C of eight zero bytes.
    assert_eq!(
        &file[offset_of(&payloads, 1) as usize + 8..][..4],
        &masked_crc32c(&[0; 8]).to_le_bytes()
    );
}

fn offset_of(payloads: &[Vec<u8>], i: usize) -> u64 {
    payloads[..i].iter().map(|p| 16 + p.len() as u64).sum()
}

/// Random payloads (lengths 0..=70_000, a few large) written to a file.
fn write_random_file(dir: &Path, seed: u64, n: usize) -> (PathBuf, Vec<Vec<u8>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let payloads: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let len = match i % 5 {
                0 => 0,
                1 => rng.gen_range(60_000..70_000),
                _ => rng.gen_range(1..600),
            };
            (0..len).map(|_| rng.gen()).collect()
        })
        .collect();
    let path = dir.join(format!("random-{seed}.tfrecord"));
    let mut w = RecordWriter::create(&path).unwrap();
    for p in &payloads {
        w.write_record(p).unwrap();
    }
    w.finish().unwrap();
    (path, payloads)
}

fn read_all(path: &Path) -> Result<Vec<Vec<u8>>, DataError> {
    let mut r = RecordReader::open_at(path, 0, true)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push(rec.data);
    }
    Ok(out)
}

#[test]
fn write_then_read_round_trip_and_seek() {
    let dir = tempfile::tempdir().unwrap();
    let (path, payloads) = write_random_file(dir.path(), 1, 23);
    assert_eq!(read_all(&path).unwrap(), payloads);
    // Reopening at a record's offset continues from that record.
    let start = offset_of(&payloads, 7);
    let mut r = RecordReader::open_at(&path, start, true).unwrap();
    assert_eq!(r.next_record().unwrap().unwrap().data, payloads[7]);
    assert_eq!(r.offset(), offset_of(&payloads, 8));
}

fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupt_length_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (path, payloads) = write_random_file(dir.path(), 2, 12);
    let at = offset_of(&payloads, 6);
    flip(&path, at + 3);
    let err = read_all(&path).unwrap_err();
    match &err {
        DataError::CorruptLength { path: p, offset } => {
            assert_eq!(p, &path);
            assert_eq!(*offset, at);
        }
        other => panic!("expected CorruptLength, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains(&format!("byte {at}")),
        "{msg}"
    );
    // Damage to the length's own CRC is the same error.
    let (path, payloads) = write_random_file(dir.path(), 3, 4);
    let at = offset_of(&payloads, 2);
    flip(&path, at + 9);
    assert!(
        matches!(read_all(&path), Err(DataError::CorruptLength { offset, .. }) if offset == at)
    );
}

#[test]
fn corrupt_data_is_reported_and_reading_can_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (path, payloads) = write_random_file(dir.path(), 4, 9);
    let bad = 3; // a 1..600-byte record
    let at = offset_of(&payloads, bad);
    flip(&path, at + 12 + payloads[bad].len() as u64 / 2);
    let mut r = RecordReader::open_at(&path, 0, true).unwrap();
    let mut got = Vec::new();
    let mut errors = Vec::new();
    loop {
        match r.next_record() {
            Ok(Some(rec)) => got.push(rec.data),
            Ok(None) => break,
            Err(e) => errors.push(e),
        }
    }
    assert_eq!(errors.len(), 1);
    match &errors[0] {
        DataError::CorruptData {
            path: p,
            offset,
            len,
        } => {
            assert_eq!((p, *offset, *len), (&path, at, payloads[bad].len() as u64));
        }
        other => panic!("expected CorruptData, got {other}"),
    }
    let mut expected = payloads.clone();
    expected.remove(bad);
    assert_eq!(got, expected);
    // A damaged data CRC (footer) is caught the same way; without verification it is not.
    let (path, payloads) = write_random_file(dir.path(), 5, 3);
    let end_of_1 = offset_of(&payloads, 2);
    flip(&path, end_of_1 - 2);
    assert!(matches!(
        read_all(&path),
        Err(DataError::CorruptData { .. })
    ));
    let mut r = RecordReader::open_at(&path, 0, false).unwrap();
    let mut n = 0;
    while r.next_record().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn truncated_files_name_file_offset_and_missing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, payloads) = write_random_file(dir.path(), 6, 8);
    let full = std::fs::read(&path).unwrap();
    let last = offset_of(&payloads, 7);
    let last_len = payloads[7].len() as u64;
    // Cut inside the header, inside the data, inside the footer CRC.
    for (cut, what) in [
        (last + 5, "header"),
        (last + 12 + last_len / 2, "data"),
        (last + 12 + last_len + 2, "CRC"),
    ] {
        let p = dir.path().join(format!("cut-{cut}.tfrecord"));
        std::fs::write(&p, &full[..cut as usize]).unwrap();
        let err = read_all(&p).unwrap_err();
        match &err {
            DataError::Truncated {
                path: ep, offset, ..
            } => {
                assert_eq!((ep, *offset), (&p, last), "{what}: {err}");
            }
            other => panic!("{what}: expected Truncated, got {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains(&format!("byte {last}")),
            "{msg}"
        );
        assert!(msg.contains(what), "{msg}");
    }
    // A length that runs past the end of the file is reported before anything is allocated.
    let p = dir.path().join("huge.tfrecord");
    let len = (1u64 << 40).to_le_bytes();
    let mut bytes = len.to_vec();
    bytes.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    bytes.extend_from_slice(b"tiny");
    std::fs::write(&p, &bytes).unwrap();
    assert!(matches!(
        read_all(&p),
        Err(DataError::Truncated { offset: 0, .. })
    ));
    // An empty file has no records; a missing one is an I/O error naming it.
    let empty = dir.path().join("empty.tfrecord");
    std::fs::write(&empty, b"").unwrap();
    assert!(read_all(&empty).unwrap().is_empty());
    let err = read_all(&dir.path().join("missing.tfrecord")).unwrap_err();
    assert!(err.to_string().contains("missing.tfrecord"), "{err}");
}

#[test]
fn malformed_examples_name_the_feature() {
    let g = golden();
    let ex = golden_example(&g);
    let bytes = ex.encode();
    let err = PretrainingExample::decode(&bytes, 16, g.max_predictions).unwrap_err();
    assert!(
        err.contains("input_ids") && err.contains("expected 16"),
        "{err}"
    );
    let err = PretrainingExample::decode(&bytes, g.seq_len, 5).unwrap_err();
    assert!(
        err.contains("masked_lm_positions") || err.contains("masked_lm_weights"),
        "{err}"
    );
    let err = PretrainingExample::decode(b"\xff\xff\xff", 8, 3).unwrap_err();
    assert!(err.contains("not a tf.train.Example"), "{err}");
    let mut missing = ex.to_example();
    missing
        .features
        .as_mut()
        .unwrap()
        .feature
        .remove("segment_ids");
    let err =
        PretrainingExample::decode(&prost::Message::encode_to_vec(&missing), 8, 3).unwrap_err();
    assert!(err.contains("segment_ids is missing"), "{err}");
}

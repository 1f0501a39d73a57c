//! A bounded pass of every fuzz target (fuzz/targets.rs) on stable: each file of its committed
//! corpus (fuzz/corpus/<target>: seeds, and inputs coverage-guided fuzzing found interesting),
//! then seeded mutations of each (bit flips, byte changes, truncations, duplicated and deleted
//! ranges, interesting integers). A panic fails the test with the target and the input, written
//! to a file to reproduce. The long coverage-guided runs use cargo-fuzz (fuzz/README.md).
#[path = "../fuzz/targets.rs"]
mod targets;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use targets::{Target, TARGETS};

/// Mutations per corpus file: enough to walk off every seed's happy path, small enough for CI.
const MUTATIONS: usize = 2000;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = b.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                b[i] = rng.gen();
            }
            2 => b.truncate(rng.gen_range(0..=len)),
            3 if len > 0 => {
                let (i, j) = (rng.gen_range(0..len), rng.gen_range(0..len));
                let (lo, hi) = (i.min(j), i.max(j).min(i.min(j) + 64));
                let piece = b[lo..hi].to_vec();
                let at = rng.gen_range(0..=b.len());
                b.splice(at..at, piece);
            }
            4 if len > 0 => {
                let i = rng.gen_range(0..len);
                let j = (i + rng.gen_range(1..=16)).min(len);
                b.drain(i..j);
            }
            5 if len >= 8 => {
                // An integer field made extreme: lengths, counts, offsets, dims.
                let i = rng.gen_range(0..=len - 8);
                let v: u64 = [0, 1, u64::MAX, i64::MAX as u64, u32::MAX as u64, 1 << 40]
                    [rng.gen_range(0..6)];
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                let at = rng.gen_range(0..=len);
                let ascii = [
                    b'"', b'{', b'}', b'[', b']', b',', b':', b'0', b'-', b'9', b'e',
                ];
                b.insert(at, ascii[rng.gen_range(0..ascii.len())]);
            }
        }
    }
    b
}

fn run_guarded(target: &str, f: Target, input: &[u8], what: &str) {
    let result = std::panic::catch_unwind(|| f(input));
    if result.is_err() {
        let out = std::env::temp_dir().join(format!("fuzz-replay-{target}.bin"));
        let _ = std::fs::write(&out, input);
        panic!(
            "fuzz target {target} panicked on {what} ({} bytes, written to {})",
            input.len(),
            out.display()
        );
    }
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations_of_it() {
    for (target, f) in TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target} has no seed");
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for (path, bytes) in &files {
            run_guarded(target, *f, bytes, &path.display().to_string());
            for k in 0..MUTATIONS {
                let m = mutate(&mut rng, bytes);
                run_guarded(
                    target,
                    *f,
                    &m,
                    &format!("mutation {k} of {}", path.display()),
                );
            }
        }
    }
}

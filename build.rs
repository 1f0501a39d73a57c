//! Compiles the .proto files in proto/ with protox (pure Rust), so no system protoc is needed (as
//! hlo/build.rs does for the XLA protos): the tf.train.Example subset with prost-build, and the
//! coordinator's gRPC service (src/coord) with tonic-build.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    git_commit();
    let files = [
        "tensorflow/feature.proto",
        "tensorflow/example.proto",
        // checkpoint index values (src/import/bundle_proto.rs)
        "tensorflow/tensor_bundle.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed=proto/{f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    // BTreeMap keeps the feature map sorted by name, so serialization is deterministic (the same
    // bytes as TensorFlow's `SerializeToString(deterministic=True)`).
    prost_build::Config::new()
        .btree_map(["."])
        .compile_fds(fds)?;

    let coordinator = "tpu_run/coordinator.proto";
    println!("cargo:rerun-if-changed=proto/{coordinator}");
    let fds = protox::compile([coordinator], ["proto"])?;
    tonic_build::configure()
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}

/// `TPU_RUN_GIT_COMMIT`: the commit being built, for `tpu-run bench` records ("unknown" outside
/// a git checkout or without git). Rebuilt when HEAD or the branch it names moves.
fn git_commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TPU_RUN_GIT_COMMIT={commit}");
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

//! Compiles the .proto files in proto/ with protox (pure Rust), so no system protoc is needed (as
//! hlo/build.rs does for the XLA protos): the tf.train.Example subset with prost-build, and the
//! coordinator's gRPC service (src/coord) with tonic-build.
fn main() -> Result<(), Box<dyn std::error::Error>> {
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

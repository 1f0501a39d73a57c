//! Compiles the XLA .proto subset in ../proto with protox (pure Rust), so no system protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "xla/xla_data.proto",
        "xla/hlo.proto",
        "xla/compile_options.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed=../proto/{f}");
    }
    let fds = protox::compile(files, ["../proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}

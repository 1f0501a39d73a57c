//! Where a training run's time goes before its first step (`tpu-run pretrain` prints it in
//! its summary; `--bench-steps` and `tpu-run bench` record it).

/// Where a run's time goes before its first step: seconds opening the plugin's client,
/// building and lowering the step, compiling it (or loading it from the compile cache),
/// making the host state (initializing or reading a checkpoint) and placing it on the devices;
/// then the first step itself, from its launch to its loss on the host (with the first run's
/// own costs, such as loading kernels), where the command measures it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Startup {
    pub client_s: f64,
    pub build_s: f64,
    pub compile_s: f64,
    pub state_s: f64,
    pub upload_s: f64,
    pub first_step_s: Option<f64>,
}

impl Startup {
    /// One line: each phase in seconds.
    pub fn describe(&self) -> String {
        let first = self
            .first_step_s
            .map(|s| format!(", first step {s:.2} s"))
            .unwrap_or_default();
        format!(
            "client {:.2} s, build {:.2} s, compile {:.2} s, host state {:.2} s, upload {:.2} s{first}",
            self.client_s, self.build_s, self.compile_s, self.state_s, self.upload_s
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "client_s": self.client_s,
            "build_s": self.build_s,
            "compile_s": self.compile_s,
            "state_s": self.state_s,
            "upload_s": self.upload_s,
            "first_step_s": self.first_step_s,
        })
    }
}

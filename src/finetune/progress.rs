//! What the run tells the user: lines on stdout (or stderr, when stdout carries the JSON
//! summary), and a progress bar (indicatif) on stderr while training, drawn only on a terminal;
//! without one, a log line every `log_every` steps takes its place.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Where messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Library callers and tests: nothing printed.
    Quiet,
    Stdout,
    Stderr,
}

pub struct Console {
    output: Output,
    bar: ProgressBar,
}

impl Console {
    pub fn new(output: Output) -> Self {
        Self {
            output,
            bar: ProgressBar::hidden(),
        }
    }

    /// Prints one message (around the bar, if one is drawn).
    pub fn say(&self, msg: &str) {
        match self.output {
            Output::Quiet => {}
            Output::Stdout => self.bar.suspend(|| println!("{msg}")),
            Output::Stderr => self.bar.suspend(|| eprintln!("{msg}")),
        }
    }

    /// Starts a bar over `total` steps when messages are shown, `enabled` and stderr is a
    /// terminal.
    pub fn start_bar(&mut self, total: u64, enabled: bool) {
        if self.output == Output::Quiet || !enabled || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let template = "{prefix:>5} [{bar:30}] {pos}/{len} {msg} ETA {eta}";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix("train");
        self.bar = bar;
    }

    pub fn bar_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    pub fn set_step(&self, step: u64, loss: f32, lr: f32, seq_per_s: f64) {
        self.bar.set_position(step);
        self.bar
            .set_message(format!("loss {loss:.4} lr {lr:.2e} {seq_per_s:.1} seq/s"));
    }

    pub fn finish_bar(&mut self) {
        self.bar.finish_and_clear();
        self.bar = ProgressBar::hidden();
    }
}

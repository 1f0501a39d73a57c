//! What the run tells the user: lines on stdout (or stderr, when stdout carries the JSON
//! summary), and the training progress bar ([`crate::train::progress`]), drawn only on a terminal;
//! without one, a log line every `log_every` steps takes its place.
use crate::train::progress::TrainBar;

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
    bar: TrainBar,
}

impl Console {
    pub fn new(output: Output) -> Self {
        Self {
            output,
            bar: TrainBar::hidden(),
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
        self.bar = TrainBar::new(0, total, enabled && self.output != Output::Quiet);
    }

    pub fn bar_visible(&self) -> bool {
        self.bar.is_visible()
    }

    pub fn set_step(&self, step: u64, loss: f32, lr: f32, seq_per_s: f64) {
        self.bar.set_step(step);
        self.bar
            .set_message(format!("loss {loss:.4} lr {lr:.2e} {seq_per_s:.1} seq/s"));
    }

    pub fn finish_bar(&mut self) {
        self.bar.finish();
        self.bar = TrainBar::hidden();
    }
}

//! The progress bar of every training loop (indicatif): step of total, the loop's own message
//! (loss, accuracies or learning rate, seq/s) and ETA, on stderr. Drawn only when asked for
//! and stderr is a terminal; log lines go around it through [`TrainBar::suspend`].
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct TrainBar {
    bar: ProgressBar,
}

impl TrainBar {
    /// A bar that draws nothing.
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
        }
    }

    /// A bar over steps `start..total`, drawn only when `enabled` and stderr is a terminal.
    pub fn new(start: u64, total: u64, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let template = "{prefix:>5} [{bar:30}] {pos}/{len} {msg} ETA {eta}";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix("train");
        bar.set_position(start);
        Self { bar }
    }

    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    pub fn set_step(&self, step: u64) {
        self.bar.set_position(step);
    }

    /// What the bar shows after the position.
    pub fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }

    /// Runs `f` (which prints or logs) with the bar cleared, then redraws it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

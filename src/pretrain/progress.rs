//! The progress bar (indicatif): step, loss, MLM/NSP accuracy, seq/s and ETA. Hidden when
//! stderr is not a terminal or the run asks for none; log lines go around it.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bar: ProgressBar,
}

/// The numbers the bar shows after each logged step.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shown {
    pub loss: f32,
    pub mlm_accuracy: f32,
    pub nsp_accuracy: f32,
    pub seq_per_s: f64,
}

impl Progress {
    /// A bar over steps `start..total`, drawn only when `enabled` and stderr is a terminal.
    pub fn new(start: u64, total: u64, enabled: bool) -> Self {
        let bar = if enabled && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = "{prefix:>5} [{bar:30}] {pos}/{len} {msg} ETA {eta}";
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix("train");
            bar
        } else {
            ProgressBar::hidden()
        };
        bar.set_position(start);
        Self { bar }
    }

    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    pub fn set_step(&self, step: u64) {
        self.bar.set_position(step);
    }

    pub fn show(&self, s: &Shown) {
        self.bar.set_message(format!(
            "loss {:.4} mlm_acc {:.3} nsp_acc {:.3} {:.1} seq/s",
            s.loss, s.mlm_accuracy, s.nsp_accuracy, s.seq_per_s
        ));
    }

    /// Runs `f` (which prints or logs) with the bar cleared, then redraws it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

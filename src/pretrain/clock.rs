//! The training loop's clock: when each step's results reached the host, which intervals held
//! an evaluation or a checkpoint, and how long the loop waited for its input feed. From it the
//! steady-state throughput, measured as the synthetic bench measures it (src/pretrain/bench.rs:
//! the median interval between consecutive results after a warm-up), so the two compare.
use crate::bench::measure::median;
use std::time::{Duration, Instant};

/// Intervals not counted at the start of an invocation (after its first step, which carries
/// first-run costs), as many as the bench leaves untimed.
pub const WARMUP_INTERVALS: usize = 2;

/// The steady state of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Steady {
    pub seq_per_s: f64,
    pub median_step_s: f64,
    /// Intervals the median is over.
    pub steps: usize,
}

/// Time the loop waited for batches from the feed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostWait {
    /// Over every batch after the first (which waits for the readers to start).
    pub total: Duration,
    pub longest: Duration,
    /// `total` over the loop's time from the first step's launch to its end.
    pub fraction: f64,
}

#[derive(Debug, Default)]
pub struct StepClock {
    /// When each step's results reached the host, and whether the interval ending there
    /// ran an evaluation or a checkpoint.
    ready: Vec<(Instant, bool)>,
    hook_since_ready: bool,
    waits: Vec<Duration>,
    loop_start: Option<Instant>,
}

impl StepClock {
    /// The loop starts: its first batch is there.
    pub fn start(&mut self) {
        self.loop_start.get_or_insert_with(Instant::now);
    }

    /// A step's results reached the host now.
    pub fn step_ready(&mut self) {
        self.ready
            .push((Instant::now(), std::mem::take(&mut self.hook_since_ready)));
    }

    /// An evaluation or a checkpoint ran since the last step's results: the interval to the
    /// next step's is not a steady one.
    pub fn hook_ran(&mut self) {
        self.hook_since_ready = true;
    }

    /// The loop waited `d` for a batch (not counting the first).
    pub fn waited(&mut self, d: Duration) {
        self.waits.push(d);
    }

    /// Seconds of each steady interval: after the warm-up, without evaluations or checkpoints.
    pub fn steady_intervals(&self) -> Vec<f64> {
        self.ready
            .windows(2)
            .skip(WARMUP_INTERVALS)
            .filter(|w| !w[1].1)
            .map(|w| (w[1].0 - w[0].0).as_secs_f64())
            .collect()
    }

    /// The median steady step as seq/s of `seqs_per_step` sequences (the batch size, or the
    /// mean instances per step of packed rows); `None` without a steady interval (too few
    /// steps).
    pub fn steady(&self, seqs_per_step: f64) -> Option<Steady> {
        let xs = self.steady_intervals();
        let m = median(&xs);
        (m > 0.0).then(|| Steady {
            seq_per_s: seqs_per_step / m,
            median_step_s: m,
            steps: xs.len(),
        })
    }

    pub fn host_wait(&self) -> HostWait {
        let total: Duration = self.waits.iter().sum();
        let span = self.loop_start.map_or(0.0, |t| t.elapsed().as_secs_f64());
        HostWait {
            total,
            longest: self.waits.iter().copied().max().unwrap_or_default(),
            fraction: if span > 0.0 {
                total.as_secs_f64() / span
            } else {
                0.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock with results at the given millisecond offsets; `hooks` marks the intervals
    /// (by the index of the step ending them) that ran a hook.
    fn clock(ms: &[u64], hooks: &[usize]) -> StepClock {
        let t0 = Instant::now();
        let mut c = StepClock::default();
        for (i, &m) in ms.iter().enumerate() {
            if hooks.contains(&i) {
                c.hook_ran();
            }
            c.ready
                .push((t0 + Duration::from_millis(m), c.hook_since_ready));
            c.hook_since_ready = false;
        }
        c
    }

    #[test]
    fn the_steady_median_skips_the_warm_up_and_hook_intervals() {
        // Step times 500, 300 (warm-up), then 100, 110, 900 (a checkpoint ran), 120.
        let ms = [0, 500, 800, 900, 1010, 1910, 2030];
        let c = clock(&ms, &[5]);
        assert_eq!(c.steady_intervals().len(), 3);
        let s = c.steady(32.0).unwrap();
        assert!((s.median_step_s - 0.110).abs() < 1e-9, "{s:?}");
        assert!((s.seq_per_s - 32.0 / 0.110).abs() < 1e-6);
        assert_eq!(s.steps, 3);
        // Without the mark the checkpoint's interval counts and the median moves to
        // (110 + 120) / 2.
        let all = clock(&ms, &[]);
        assert!((all.steady(32.0).unwrap().median_step_s - 0.115).abs() < 1e-9);
    }

    #[test]
    fn too_few_steps_have_no_steady_state() {
        assert_eq!(clock(&[0, 500, 800], &[]).steady(8.0), None);
        assert!(clock(&[0, 500, 800, 900], &[]).steady(8.0).is_some());
        assert_eq!(StepClock::default().steady(8.0), None);
    }

    #[test]
    fn host_waits_add_up_against_the_loop_time() {
        let mut c = StepClock::default();
        assert_eq!(c.host_wait(), HostWait::default());
        c.start();
        c.waited(Duration::from_millis(3));
        c.waited(Duration::from_millis(7));
        std::thread::sleep(Duration::from_millis(20));
        let w = c.host_wait();
        assert_eq!(w.total, Duration::from_millis(10));
        assert_eq!(w.longest, Duration::from_millis(7));
        assert!(w.fraction > 0.0 && w.fraction <= 0.5, "{w:?}");
    }
}

//! Send stage: progress while a send runs — a bar with rate and ETA on a
//! terminal, a plain log line every few seconds under cron, nothing with
//! `-q`. Elapsed time only (a monotonic clock); no wall-clock reads.
//! Imports no other stage.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress of one send.
pub struct Progress {
    bar: Option<ProgressBar>,
    log: bool,
    quiet: bool,
    total: u64,
    done: u64,
    /// Readers frozen beside the send already in `total`.
    frozen: u64,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    /// Progress over `total` messages; silent when `quiet`, or while there
    /// are none.
    pub fn new(total: u64, quiet: bool) -> Progress {
        let now = Instant::now();
        let mut progress = Progress {
            bar: None,
            log: false,
            quiet,
            total: 0,
            done: 0,
            frozen: 0,
            started: now,
            last_log: now,
        };
        progress.add(total);
        progress
    }

    /// `more` messages to send (readers frozen meanwhile).
    pub fn add(&mut self, more: u64) {
        self.total += more;
        if let Some(bar) = &self.bar {
            bar.inc_length(more);
            return;
        }
        if self.quiet || self.log || self.total == 0 {
            return;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(self.total);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} messages · {per_sec} · ETA {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_position(self.done);
            self.bar = Some(bar);
        } else {
            self.log = true;
        }
    }

    /// `frozen` readers frozen beside the send so far: those not counted
    /// yet are more messages to send.
    pub fn frozen_so_far(&mut self, frozen: u64) {
        if frozen > self.frozen {
            self.add(frozen - self.frozen);
            self.frozen = frozen;
        }
    }

    /// One more message settled (sent, deferred, failed…).
    pub fn step(&mut self) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if self.log && self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    /// Clears the bar; under cron, a last line.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        } else if self.log {
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        format!(
            "send: {} of {} messages settled ({:.1}/s)",
            self.done,
            self.total,
            self.done as f64 / seconds
        )
    }
}

//! The progress display of `profiler run` on stderr.

use crate::measure::runner::RunObserver;
use crate::measure::samples::RequestSample;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Progress on stderr: a bar on a terminal, a line every 5 s otherwise, nothing with -q.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    started: Instant,
    last_line: std::cell::Cell<Instant>,
    done: std::cell::Cell<u64>,
    tokens: std::cell::Cell<u64>,
    total: Option<u64>,
    duration: Option<Duration>,
}

impl Progress {
    pub fn new(quiet: bool, total: Option<u64>, duration: Option<Duration>) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let b = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new(duration.map(|d| d.as_secs()).unwrap_or(0)),
            };
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        let now = Instant::now();
        Progress {
            bar,
            plain: !quiet && !terminal,
            started: now,
            last_line: std::cell::Cell::new(now),
            done: Default::default(),
            tokens: Default::default(),
            total,
            duration,
        }
    }

    fn rate(&self) -> f64 {
        self.tokens.get() as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    fn update(&self) {
        if let Some(b) = &self.bar {
            if self.total.is_some() {
                b.set_position(self.done.get());
            } else {
                b.set_position(self.started.elapsed().as_secs());
            }
            b.set_message(format!(
                "requests {} | {:.1} tok/s",
                self.done.get(),
                self.rate()
            ));
        } else if self.plain && self.last_line.get().elapsed() >= Duration::from_secs(5) {
            self.last_line.set(Instant::now());
            let of = match (self.total, self.duration) {
                (Some(t), _) => format!("{}/{t} requests", self.done.get()),
                (None, Some(d)) => format!(
                    "{} requests, {:.0}/{:.0} s",
                    self.done.get(),
                    self.started.elapsed().as_secs_f64(),
                    d.as_secs_f64()
                ),
                _ => format!("{} requests", self.done.get()),
            };
            eprintln!(
                "progress: {of}, {:.1} tok/s, {:.0} s elapsed",
                self.rate(),
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl RunObserver for Progress {
    fn tokens(&self, n: usize) {
        self.tokens.set(self.tokens.get() + n as u64);
    }

    fn request(&self, _: &RequestSample) {
        self.done.set(self.done.get() + 1);
        self.update();
    }
}

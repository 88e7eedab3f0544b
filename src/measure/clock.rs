//! Where measured times come from: the monotonic clock in runs, a clock that only moves
//! when told to in tests, so that the times the loops compute can be checked exactly.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A monotonic clock: time elapsed since an origin of its own.
pub trait Clock {
    /// Time since the clock's origin; never decreases.
    fn now(&self) -> Duration;
}

/// The system's monotonic clock ([`Instant`]).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock(Instant);

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock that stands still until [`FakeClock::advance`]: deterministic times for tests.
#[derive(Debug, Default)]
pub struct FakeClock(Cell<Duration>);

impl FakeClock {
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.set(self.0.get() + d);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.0.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_clock_moves_only_when_told() {
        let c = FakeClock::default();
        assert_eq!(c.now(), Duration::ZERO);
        c.advance(Duration::from_millis(5));
        c.advance(Duration::from_millis(2));
        assert_eq!(c.now(), Duration::from_millis(7));
        let m = MonotonicClock::new();
        let (a, b) = (m.now(), m.now());
        assert!(b >= a);
    }
}

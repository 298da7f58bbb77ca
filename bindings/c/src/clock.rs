//! The caller's clock. C passes `now` as nanoseconds of a monotonic clock it reads itself
//! (`CLOCK_MONOTONIC`); the engine wants `Instant`s. The ABI reads the system clock exactly
//! once, when an endpoint is created, to pair the caller's `now_ns` with an `Instant`;
//! every later conversion is arithmetic from that pair.
//!
//! quiche reads the system clock for its own timers, so the caller's clock must run at
//! the rate of `CLOCK_MONOTONIC` (its origin is free).

use std::time::{Duration, Instant};

/// Converts between the caller's nanoseconds and `Instant`s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base_ns: u64,
    base: Instant,
}

impl Clock {
    /// Pairs the caller's `now_ns` with the system's `Instant::now()`.
    pub(crate) fn new(now_ns: u64) -> Self {
        Self {
            base_ns: now_ns,
            base: Instant::now(),
        }
    }

    /// The `Instant` of the caller's `ns`. Times before the base map to the base (the
    /// caller's clock is monotonic; an earlier time is a caller error with a defined
    /// outcome), times too far ahead saturate.
    pub(crate) fn instant(&self, ns: u64) -> Instant {
        let ahead = Duration::from_nanos(ns.saturating_sub(self.base_ns));
        self.base
            .checked_add(ahead)
            .unwrap_or_else(|| self.base + Duration::from_secs(u64::from(u32::MAX)))
    }

    /// The caller's nanoseconds of `at` (saturating at both ends).
    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        let ahead = at.saturating_duration_since(self.base).as_nanos();
        self.base_ns
            .saturating_add(u64::try_from(ahead).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_and_instants_convert_both_ways() {
        let clock = Clock::new(5_000_000_000);
        let later = clock.instant(5_250_000_000);
        assert_eq!(
            later - clock.instant(5_000_000_000),
            Duration::from_millis(250)
        );
        assert_eq!(clock.nanos(later), 5_250_000_000);
        // Before the base: the base.
        assert_eq!(clock.instant(1), clock.instant(5_000_000_000));
        assert_eq!(
            clock.nanos(
                clock
                    .base
                    .checked_sub(Duration::from_secs(1))
                    .expect("a second ago")
            ),
            5_000_000_000
        );
    }
}

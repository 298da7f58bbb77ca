//! Connections on paths longer than a LAN, and the largest flight one of them received in
//! a round trip: what the host's receiving socket must hold (`Endpoint::long_paths`,
//! `Endpoint::received_flight`, `crate::socket_buffers`).
//!
//! Across a long path whose link does not cap the rate below what the ends move, the
//! receiving socket is the path's only queue: a sender's congestion window arrives as a
//! burst whenever the receiving process is off its CPU, and what does not fit is lost,
//! which CUBIC takes for congestion. TCP's receiver grows its buffer to twice what the
//! application read in the last round trip (Linux's `tcp_rcv_space_adjust`); a QUIC
//! socket's buffer is the host's to size, so the engine measures the same thing: the
//! bytes each long-path connection receives per round trip.

use std::time::{Duration, Instant};

/// The long-path connections of an endpoint, and the largest flight one of them received
/// since the endpoint last had none.
#[derive(Debug, Default)]
pub(super) struct LongPaths {
    count: usize,
    largest_flight: usize,
}

impl LongPaths {
    pub(super) fn count(&self) -> usize {
        self.count
    }

    pub(super) fn largest_flight(&self) -> usize {
        self.largest_flight
    }

    /// A connection's path became long.
    pub(super) fn add(&mut self) {
        self.count += 1;
    }

    /// A long path's connection closed or moved to a short path. With none left, the
    /// flights measured are forgotten: the host's buffers go back, and the next long path
    /// is measured afresh.
    pub(super) fn remove(&mut self) {
        self.count = self.count.saturating_sub(1);
        if self.count == 0 {
            self.largest_flight = 0;
        }
    }

    /// A long path's connection received `bytes` in one round trip.
    pub(super) fn observe_flight(&mut self, bytes: usize) {
        if self.count > 0 {
            self.largest_flight = self.largest_flight.max(bytes);
        }
    }
}

/// Counts what one connection receives, one round trip at a time.
#[derive(Debug, Default)]
pub(super) struct FlightMeter {
    /// When the round trip being counted began, and what arrived in it so far.
    window: Option<(Instant, usize)>,
}

impl FlightMeter {
    /// Counts a datagram of `len` bytes received at `now` on a path whose smallest round
    /// trip is `rtt`. Returns the bytes of the window this datagram ends, if it ends one:
    /// a window ends at the first datagram at least `rtt` after it began.
    ///
    /// Not scaled to the window's length: a window the peer left idle after a burst
    /// counts the burst, which the socket had to hold all the same; a window that took in
    /// two bursts less than `rtt` apart (the round trip shrank) counts both, which errs
    /// toward the larger buffer.
    pub(super) fn on_received(&mut self, now: Instant, len: usize, rtt: Duration) -> Option<usize> {
        let Some((started, bytes)) = self.window else {
            self.window = Some((now, len));
            return None;
        };
        if now.saturating_duration_since(started) < rtt.max(Duration::from_micros(1)) {
            self.window = Some((started, bytes + len));
            return None;
        }
        self.window = Some((now, len));
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(20);

    #[test]
    fn a_flight_is_what_arrives_in_one_round_trip() {
        let start = Instant::now();
        let mut meter = FlightMeter::default();
        assert_eq!(meter.on_received(start, 1000, RTT), None);
        for ms in 1..20 {
            let at = start + Duration::from_millis(ms);
            assert_eq!(meter.on_received(at, 1000, RTT), None, "{ms} ms");
        }
        // The datagram 20 ms in ends the first round trip and begins the next.
        assert_eq!(meter.on_received(start + RTT, 1000, RTT), Some(20_000));
        assert_eq!(
            meter.on_received(start + RTT * 2, 500, RTT),
            Some(1000),
            "only the datagram that began it"
        );
    }

    #[test]
    fn a_burst_counts_whole_however_long_the_peer_is_quiet_after_it() {
        let start = Instant::now();
        let mut meter = FlightMeter::default();
        for _ in 0..40 {
            meter.on_received(start, 1000, RTT);
        }
        assert_eq!(meter.on_received(start + RTT * 50, 1, RTT), Some(40_000));
    }

    #[test]
    fn bursts_a_round_trip_apart_are_measured_one_each() {
        let start = Instant::now();
        let mut meter = FlightMeter::default();
        let mut flights = Vec::new();
        // Bursts of 10 datagrams at once, a round trip (and a little more: the receiver
        // is busy) apart.
        for (round, bytes) in [(0, 1000), (1, 2000), (2, 4000), (3, 8000)] {
            let at = start + RTT * 11 / 10 * round;
            for _ in 0..10 {
                flights.extend(meter.on_received(at, bytes, RTT));
            }
        }
        assert_eq!(flights, [10_000, 20_000, 40_000]);
    }

    #[test]
    fn the_largest_flight_is_kept_while_a_long_path_is_open() {
        let mut paths = LongPaths::default();
        paths.observe_flight(5_000);
        assert_eq!(paths.largest_flight(), 0, "no long path: nothing to keep");
        paths.add();
        paths.add();
        paths.observe_flight(5_000);
        paths.observe_flight(3_000);
        assert_eq!(paths.largest_flight(), 5_000);
        paths.remove();
        assert_eq!(paths.largest_flight(), 5_000, "one long path left");
        paths.remove();
        assert_eq!((paths.count(), paths.largest_flight()), (0, 0));
        paths.remove();
        assert_eq!(paths.count(), 0, "never below zero");
    }
}

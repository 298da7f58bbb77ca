//! The load of `veil bench udp`, without I/O: which packets to send when, what each one
//! carries, and what came back. Every path (direct UDP, the proxied tunnel, raw QUIC
//! DATAGRAM frames) is driven by this same generator, so their figures count the same way.
//!
//! A packet starts with a 16-byte header: the step id (u32), a sequence number (u32) and
//! the sending time in nanoseconds since the step started (u64), all big-endian; the rest
//! up to the payload size is a fixed pattern. An echo is matched by its step id, so late
//! echoes of an earlier step are never counted in a later one.

use std::time::{Duration, Instant};

/// Bytes of the header every packet starts with.
pub(crate) const HEADER_LEN: usize = 16;
/// Ping-pong: how long to wait for one echo before counting it lost and sending the next.
const PING_TIMEOUT: Duration = Duration::from_millis(200);
/// After the last paced packet, how long late echoes are still counted.
const DRAIN: Duration = Duration::from_millis(300);
/// Pacing granularity: the generator wakes up at most this often (tokio's timer
/// resolution); at 200,000 packets/s it sends 200 per wake-up.
const TICK: Duration = Duration::from_millis(1);

/// How a step offers its load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `rate` packets per second, evenly over `duration`.
    Paced { rate: u64, duration: Duration },
    /// `count` round trips, one packet in flight at a time.
    PingPong { count: u64 },
}

/// One measurement on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) id: u32,
    pub(crate) mode: Mode,
    /// UDP payload bytes per packet (at least [`HEADER_LEN`]).
    pub(crate) payload: usize,
}

/// What one step measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepResult {
    /// Packets the generator offered (including those its transport refused at once).
    pub(crate) sent: u64,
    /// Of those, packets the sending side refused at once (a full QUIC datagram queue).
    pub(crate) refused: u64,
    /// Echoes that came back and matched this step.
    pub(crate) received: u64,
    /// Echoes of the wrong size (never expected: counted so that they cannot hide).
    pub(crate) malformed: u64,
    /// From the first packet sent to the last one sent (paced), or to the last echo
    /// (ping-pong).
    pub(crate) elapsed: Duration,
    /// Round trip of every echo, sorted.
    pub(crate) rtts: Vec<Duration>,
}

impl StepResult {
    /// Echoed packets per second over the sending window.
    pub(crate) fn echoed_per_s(&self) -> f64 {
        per_second(self.received, self.elapsed)
    }

    /// Offered packets per second over the sending window.
    pub(crate) fn offered_per_s(&self) -> f64 {
        per_second(self.sent, self.elapsed)
    }

    /// Share of the offered packets that did not come back.
    pub(crate) fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        ratio(self.sent.saturating_sub(self.received), self.sent)
    }
}

// Display arithmetic: f64 is exact enough for rates.
#[allow(clippy::cast_precision_loss)]
fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

#[allow(clippy::cast_precision_loss)]
fn ratio(part: u64, whole: u64) -> f64 {
    part as f64 / whole as f64
}

/// The generator of one step.
#[derive(Debug)]
pub(crate) struct Generator {
    step: Step,
    started: Instant,
    result: StepResult,
    /// Ping-pong: when the packet in flight was sent.
    in_flight: Option<Instant>,
    /// When the last packet was sent.
    last_sent: Option<Instant>,
    /// When the last echo came.
    last_echo: Option<Instant>,
}

impl Generator {
    /// A generator whose clock starts at `now`.
    pub(crate) fn new(step: Step, now: Instant) -> Self {
        Self {
            step: Step {
                payload: step.payload.max(HEADER_LEN),
                ..step
            },
            started: now,
            result: StepResult::default(),
            in_flight: None,
            last_sent: None,
            last_echo: None,
        }
    }

    /// Payload bytes of every packet.
    pub(crate) fn payload_len(&self) -> usize {
        self.step.payload
    }

    /// How many packets are due now.
    pub(crate) fn due(&mut self, now: Instant) -> u64 {
        match self.step.mode {
            Mode::Paced { rate, duration } => {
                let elapsed = now.saturating_duration_since(self.started).min(duration);
                let owed = u128::from(rate) * elapsed.as_nanos() / 1_000_000_000;
                u64::try_from(owed)
                    .unwrap_or(u64::MAX)
                    .saturating_sub(self.result.sent)
            }
            Mode::PingPong { count } => {
                if self.result.sent >= count {
                    return 0;
                }
                match self.in_flight {
                    Some(at) if now.saturating_duration_since(at) < PING_TIMEOUT => 0,
                    _ => {
                        self.in_flight = None;
                        1
                    }
                }
            }
        }
    }

    /// Writes the next packet into `out` (its first [`Self::payload_len`] bytes); returns
    /// that length. `out` shorter than the payload: nothing is written, 0.
    pub(crate) fn fill(&mut self, now: Instant, out: &mut [u8]) -> usize {
        let len = self.step.payload;
        let Some(packet) = out.get_mut(..len) else {
            return 0;
        };
        let sent_ns = u64::try_from(now.saturating_duration_since(self.started).as_nanos())
            .unwrap_or(u64::MAX);
        let seq = u32::try_from(self.result.sent).unwrap_or(u32::MAX);
        let (header, rest) = packet.split_at_mut(HEADER_LEN);
        header[..4].copy_from_slice(&self.step.id.to_be_bytes());
        header[4..8].copy_from_slice(&seq.to_be_bytes());
        header[8..].copy_from_slice(&sent_ns.to_be_bytes());
        for (i, byte) in rest.iter_mut().enumerate() {
            // A pattern, not zeros: nothing on the way may profit from compressible data.
            *byte = u8::try_from(i % 251).unwrap_or(0);
        }
        self.result.sent += 1;
        self.last_sent = Some(now);
        if matches!(self.step.mode, Mode::PingPong { .. }) {
            self.in_flight = Some(now);
        }
        len
    }

    /// The transport refused the packet last filled (a full send queue): it is lost.
    pub(crate) fn refused(&mut self) {
        self.result.refused += 1;
    }

    /// An echo arrived at `now`.
    pub(crate) fn on_echo(&mut self, now: Instant, packet: &[u8]) {
        let Some(header) = packet.get(..HEADER_LEN) else {
            self.result.malformed += 1;
            return;
        };
        let (id, sent_ns) = (
            u32::from_be_bytes([header[0], header[1], header[2], header[3]]),
            u64::from_be_bytes([
                header[8], header[9], header[10], header[11], header[12], header[13], header[14],
                header[15],
            ]),
        );
        if id != self.step.id {
            return; // a late echo of an earlier step
        }
        if packet.len() != self.step.payload {
            self.result.malformed += 1;
            return;
        }
        let sent_at = self.started + Duration::from_nanos(sent_ns);
        self.result
            .rtts
            .push(now.saturating_duration_since(sent_at));
        self.result.received += 1;
        self.last_echo = Some(now);
        self.in_flight = None;
    }

    /// When the generator wants to run next, if it is not done.
    pub(crate) fn next_wake(&self, now: Instant) -> Instant {
        match self.step.mode {
            Mode::Paced { duration, .. } => {
                let end = self.started + duration;
                if now < end {
                    (now + TICK).min(end)
                } else {
                    end + DRAIN
                }
            }
            Mode::PingPong { .. } => match self.in_flight {
                Some(at) => at + PING_TIMEOUT,
                None => now,
            },
        }
    }

    /// Everything was sent and either every echo came back or the drain time is over.
    pub(crate) fn done(&self, now: Instant) -> bool {
        match self.step.mode {
            Mode::Paced { rate, duration } => {
                let end = self.started + duration;
                let all_sent = now >= end || self.result.sent >= rate_total(rate, duration);
                let all_back = self.result.received + self.result.refused >= self.result.sent;
                all_sent && (all_back || now >= end + DRAIN)
            }
            Mode::PingPong { count } => self.result.sent >= count && self.in_flight.is_none(),
        }
    }

    /// The figures, rtts sorted.
    pub(crate) fn finish(mut self) -> StepResult {
        let first = self.started;
        let last = match self.step.mode {
            Mode::Paced { .. } => self.last_sent,
            Mode::PingPong { .. } => self.last_echo.or(self.last_sent),
        };
        self.result.elapsed = last.map_or(Duration::ZERO, |l| l.saturating_duration_since(first));
        self.result.rtts.sort_unstable();
        self.result
    }
}

/// Packets a paced step sends in all.
fn rate_total(rate: u64, duration: Duration) -> u64 {
    u64::try_from(u128::from(rate) * duration.as_nanos() / 1_000_000_000).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paced(rate: u64, millis: u64) -> Step {
        Step {
            id: 7,
            mode: Mode::Paced {
                rate,
                duration: Duration::from_millis(millis),
            },
            payload: 1200,
        }
    }

    #[test]
    fn pacing_owes_packets_in_proportion_to_time() {
        let start = Instant::now();
        let mut generator = Generator::new(paced(10_000, 1000), start);
        assert_eq!(generator.due(start), 0);
        assert_eq!(generator.due(start + Duration::from_millis(10)), 100);
        let mut buf = [0; 1500];
        for _ in 0..60 {
            assert_eq!(generator.fill(start, &mut buf), 1200);
        }
        assert_eq!(generator.due(start + Duration::from_millis(10)), 40);
        // Past the end, the total is capped.
        assert_eq!(generator.due(start + Duration::from_secs(5)), 10_000 - 60);
    }

    #[test]
    fn echoes_are_timed_and_matched_to_their_step() {
        let start = Instant::now();
        let mut generator = Generator::new(paced(1000, 10), start);
        let mut packet = vec![0; 1200];
        generator.fill(start + Duration::from_micros(100), &mut packet);
        generator.on_echo(start + Duration::from_micros(350), &packet);
        // Another step's echo, and a truncated one.
        let mut other = packet.clone();
        other[..4].copy_from_slice(&8u32.to_be_bytes());
        generator.on_echo(start, &other);
        generator.on_echo(start, &packet[..100]);
        let result = generator.finish();
        assert_eq!((result.sent, result.received, result.malformed), (1, 1, 1));
        assert_eq!(result.rtts, [Duration::from_micros(250)]);
    }

    #[test]
    fn a_paced_step_ends_after_the_drain_when_echoes_are_missing() {
        let start = Instant::now();
        let mut generator = Generator::new(paced(1000, 10), start);
        let mut buf = [0; 1200];
        let end = start + Duration::from_millis(10);
        for _ in 0..generator.due(end) {
            generator.fill(end, &mut buf);
        }
        assert!(!generator.done(end));
        assert_eq!(generator.next_wake(end), end + DRAIN);
        assert!(generator.done(end + DRAIN));
        let result = generator.finish();
        assert_eq!(result.sent, 10);
        assert!((result.loss() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn ping_pong_keeps_one_packet_in_flight_and_gives_up_on_a_lost_one() {
        let start = Instant::now();
        let step = Step {
            id: 1,
            mode: Mode::PingPong { count: 2 },
            payload: 64,
        };
        let mut generator = Generator::new(step, start);
        let mut packet = [0; 64];
        assert_eq!(generator.due(start), 1);
        generator.fill(start, &mut packet);
        assert_eq!(generator.due(start + Duration::from_millis(1)), 0);
        // Lost: after the timeout the next one is due.
        assert_eq!(generator.due(start + PING_TIMEOUT), 1);
        let later = start + PING_TIMEOUT;
        generator.fill(later, &mut packet);
        generator.on_echo(later + Duration::from_micros(40), &packet);
        assert!(generator.done(later + Duration::from_micros(40)));
        let result = generator.finish();
        assert_eq!((result.sent, result.received), (2, 1));
        assert_eq!(result.rtts, [Duration::from_micros(40)]);
    }
}

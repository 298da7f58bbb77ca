//! Acknowledgements that wait, briefly, for bytes to carry them.
//!
//! quiche acknowledges at the next `send` after any packet that asks for it, and the
//! engine asks quiche for packets after every batch of datagrams. In an exchange of small
//! messages through a tunnel, each side then sends an ACK-only packet for every message
//! and, a moment later, the answer that could have carried that ACK: two datagrams where
//! one would do, and on the other side a second wake-up, a second receive and a second
//! trip through quiche for the ACK alone.
//!
//! So after a lone 1-RTT datagram, when nothing else is waiting to leave, the engine waits
//! up to `QuicConfig::ack_delay` (1 ms by default) before asking quiche for packets. Bytes the host writes in the
//! meantime (the answer) go at once, with the ACK; otherwise the ACK goes when the wait
//! ends. quiche stamps the wait into the ACK frame's delay, so the peer's RTT estimate does
//! not grow.
//# RFC 9000 §13.2.1: "An endpoint MUST acknowledge all ack-eliciting Initial and Handshake
//# packets immediately and all ack-eliciting 0-RTT and 1-RTT packets within its advertised
//# max_ack_delay"
//# RFC 9000 §13.2.2: "A receiver SHOULD send an ACK frame after receiving at least two
//# ack-eliciting packets."
//!
//! Nothing waits where waiting could slow a transfer: a second large datagram, more than
//! [`LONE_AT_MOST`] datagrams, a handshake packet, stream bytes written and not yet sent, a
//! packet held for pacing, or a last flight that ended with a full-size packet (the sender
//! may be held by its congestion window, which the peer's packets may just have opened)
//! each mean asking quiche at once.
//!
//! Which datagrams count. The RFC counts ack-eliciting packets, and an ACK-only packet is
//! not one; but what a packet holds is known only inside quiche, which does not say. Counting
//! every datagram made each ACK-only packet breed another: a side that received one beside
//! a message acknowledged at once, its answer followed in a second datagram, the other
//! side received that answer beside the ACK, and so on, so that back-to-back tunnels on one
//! connection sent 12 datagrams each where 6 carry them (docs/PERFORMANCE.md). So a
//! datagram small enough to be an ACK alone ([`ACK_SIZED`]) does not count as a second
//! packet, as TCP counts full-sized segments for its own rule of two:
//# RFC 5681 §4.2: "an ACK SHOULD be generated for at least every second full-sized segment"
//# RFC 9000 §13.2.2: "Knowledge of network conditions, knowledge of the peer's congestion
//# controller, or further research and experimentation might suggest alternative
//# acknowledgment strategies with better performance characteristics."
//!
//! The cost when small datagrams were in fact messages: up to [`LONE_AT_MOST`] of them
//! are acknowledged up to the delay later (quiche reports the wait in the ACK frame, so
//! the peer's RTT estimate does not grow), and only while nothing else is sent.
//!
//! Long paths only, when asked (`QuicConfig::ack_delay_paths`, `long`). The wait is a
//! trade of a packet for time, and on a short path (a LAN, a host's own: smallest round
//! trip under [`LONG_PATH_RTT`](crate::LONG_PATH_RTT)) the time is the larger part. There an exchange of small messages takes tens of
//! microseconds, about what a wake-up of a halted vCPU takes, and an acknowledgement that
//! rides on the next message is read by the peer ahead of that message's bytes, on its
//! way to the write that wakes the next process. Sent at once instead, the ACK reaches the
//! peer while the answer is still being made: the peer handles it off the answer's path,
//! and is still running when the answer comes. On two vCPUs that took the 64-byte round
//! trip through a tunnel from a median 216 µs to 196 (p50 of twelve alternated runs in
//! three placements; 283 to 197 where the client and the edge share a vCPU), for two more
//! datagrams per round trip: about a quarter more instructions at the edge, though no
//! more CPU time per round trip that could be told from the noise (docs/PERFORMANCE.md,
//! "Acknowledgements at once on short paths").
//!
//! Across a long path the wait costs nothing a round trip would show, and a busy edge's
//! CPU is what it saves, so it stays there. It is not the default: the fourth of four CI
//! runs of the engine memory test (12,000 tunnels finished and then reset by their target, on one
//! connection) saw the client retire its connection for stream credit the edge withheld
//! for over 5 s, and acknowledgements that arrive before the client's reset are what
//! makes quiche 0.30 keep such a stream (`Endpoint::tunnel_abort`); until that is
//! understood, the wait stays on every path.

use std::time::{Duration, Instant};

/// Largest datagram that may hold nothing but an acknowledgement: a short header (1 byte,
/// a connection ID of up to 20, a packet number of up to 4), the AEAD tag (16) and an ACK
/// frame of a few ranges (up to 23). Anything larger surely asked for an acknowledgement.
const ACK_SIZED: usize = 64;

/// Most datagrams received between two looks at quiche that may still be a lone message
/// and acknowledgements of our own packets.
const LONE_AT_MOST: u32 = 3;

/// What a connection received since it last asked quiche for packets.
#[derive(Debug, Default)]
pub(crate) struct AckDelay {
    /// Datagrams received since then.
    received: u32,
    /// Those of them too large to hold only an acknowledgement ([`ACK_SIZED`]).
    large: u32,
    /// One of them had a long header (Initial, 0-RTT, Handshake): acknowledged at once.
    long_header: bool,
    /// When the owed acknowledgement goes, whatever else happens.
    due: Option<Instant>,
}

impl AckDelay {
    /// A datagram arrived for the connection.
    pub(crate) fn received(&mut self, datagram: &[u8]) {
        self.received = self.received.saturating_add(1);
        if datagram.len() > ACK_SIZED {
            self.large = self.large.saturating_add(1);
        }
        //# RFC 9000 §17.2: "Header Form: The most significant bit (0x80) of byte 0 (the
        //# first byte) is set to 1 for long headers."
        self.long_header |= datagram.first().is_some_and(|first| first & 0x80 != 0);
    }

    /// quiche was asked for packets: whatever acknowledgement was owed has gone.
    pub(crate) fn sent(&mut self) {
        *self = Self::default();
    }

    /// When the owed acknowledgement must go, if one waits.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether the connection may wait before asking quiche for packets (and from now on
    /// it waits at most until [`AckDelay::due`], `delay` after the first look); `quiet`:
    /// nothing else wants to leave.
    pub(crate) fn defer(&mut self, now: Instant, delay: Duration, quiet: bool) -> bool {
        let lone =
            (1..=LONE_AT_MOST).contains(&self.received) && self.large <= 1 && !self.long_header;
        if delay.is_zero() || !quiet || !lone || self.due.is_some_and(|due| due <= now) {
            return false;
        }
        self.due.get_or_insert(now + delay);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK_DELAY: Duration = Duration::from_millis(1);
    const SHORT: &[u8] = &[0x40, 1, 2, 3];
    const LONG: &[u8] = &[0xc0, 0, 0, 0, 1];

    #[test]
    fn a_lone_short_packet_waits_until_due_and_no_longer() {
        let now = Instant::now();
        let mut ack = AckDelay::default();
        ack.received(SHORT);
        assert!(ack.defer(now, ACK_DELAY, true));
        assert_eq!(ack.due(), Some(now + ACK_DELAY));
        // A later look keeps the first deadline.
        assert!(ack.defer(now + ACK_DELAY / 2, ACK_DELAY, true));
        assert_eq!(ack.due(), Some(now + ACK_DELAY));
        assert!(!ack.defer(now + ACK_DELAY, ACK_DELAY, true), "due: it goes");
        ack.sent();
        assert_eq!(ack.due(), None);
        assert!(
            !ack.defer(now, ACK_DELAY, true),
            "nothing received, nothing to wait for"
        );
    }

    #[test]
    fn an_ack_sized_datagram_beside_a_message_still_waits() {
        let now = Instant::now();
        let mut ack = AckDelay::default();
        ack.received(&[0x40; ACK_SIZED]);
        ack.received(&[0x40; 1200]);
        assert!(ack.defer(now, ACK_DELAY, true));
    }

    #[test]
    fn two_large_packets_many_small_a_long_header_or_other_output_go_at_once() {
        let now = Instant::now();
        let mut two = AckDelay::default();
        two.received(&[0x40; ACK_SIZED + 1]);
        two.received(&[0x40; ACK_SIZED + 1]);
        assert!(!two.defer(now, ACK_DELAY, true));

        let mut many = AckDelay::default();
        for _ in 0..=LONE_AT_MOST {
            many.received(SHORT);
        }
        assert!(!many.defer(now, ACK_DELAY, true));

        let mut long = AckDelay::default();
        long.received(LONG);
        assert!(!long.defer(now, ACK_DELAY, true));

        let mut busy = AckDelay::default();
        busy.received(SHORT);
        assert!(!busy.defer(now, ACK_DELAY, false));

        let mut off = AckDelay::default();
        off.received(SHORT);
        assert!(
            !off.defer(now, Duration::ZERO, true),
            "0: acknowledged at once"
        );

        let mut empty = AckDelay::default();
        empty.received(&[]);
        assert!(
            empty.defer(now, ACK_DELAY, true),
            "an empty datagram is not a long header"
        );
    }
}

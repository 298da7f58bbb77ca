//! Turns: how a connection's send capacity is shared among the tunnels waiting for it.
//!
//! Every tunnel of a connection draws on one congestion window and one connection-level
//! flow-control window. When they are full, each `tunnel_send` takes what is left, and
//! tunnels that got nothing wait for `TunnelWritable`. A host writes in the order those
//! events come, and the first writers take the capacity that freed up. quiche reports
//! writable streams in the order they became so, which puts a tunnel that just wrote (and
//! is writable again at once) ahead of the ones it left without room: measured with 100
//! downloads on one connection, one tunnel took 92% of the bytes and half of them none.
//!
//! So the engine orders each round itself, round-robin by stream: the tunnels after the
//! last one whose bytes the connection took (`Conn::send_turn`) come first, then the rest
//! from the lowest stream. Each waiting tunnel gets its turn at the front once per cycle.
//! quiche then interleaves the streams that hold data in its packets, a frame at a time:
//! every tunnel's stream is sent at one urgency and incremental (`wire::TUNNEL_PRIORITY`;
//! RFC 9218's default is not incremental, which quiche sends in stream order).
//!
//! Bursts. quiche takes those turns a packet at a time: with 100 busy tunnels each packet
//! of a train carries another tunnel's bytes, and the receiving host moves 1 to 2 KB per
//! tunnel per read and per write to its socket. On loopback that cost took the total of
//! 100 downloads from 470 to 150 MiB/s (docs/PERFORMANCE.md, "Bursts"). So the tunnel whose
//! write took the last of the connection's room *leads* ([`Lead`]): its stream is sent one
//! urgency ahead of the others (`wire::set_lead`), so the bytes it took leave as one run of
//! packets, and each round of `TunnelWritable` starts with it ([`Lead::round_after`]) until
//! it has written [`LEAD_QUANTUM`] bytes: a deficit round-robin, each turn worth about one
//! quantum, which keeps the shares even (letting whoever was cut short next take the lead
//! moved more bytes but left the smallest of 20 tunnels at half to three quarters of an
//! even share). A lead also ends after [`LEAD_TIME`], and the same tunnel does not lead
//! twice in a row. A tunnel whose writes fit is never cut short, so an interactive tunnel
//! beside bulk ones stays in the common rotation. The time bound also keeps quiche's dead
//! head (`crate::transmit`) from stalling the connection behind a lead with nothing to
//! send: the lead is alone at its urgency, so quiche cannot rotate past it, but it ends by
//! the clock.

use std::time::{Duration, Instant};

/// Bytes a lead may write before it goes back into the rotation: enough to make a
/// receiver's reads and writes large, small enough to delay the other tunnels by about
/// 0.6 ms at 400 MiB/s. 256 KiB moved more than 64 KiB with 100 busy tunnels (207 and 225
/// against 177 and 157 MiB/s, in separate sittings).
pub(super) const LEAD_QUANTUM: usize = 256 * 1024;

/// The longest a lead lasts. On a slow path the quantum takes long to leave (50 ms at
/// 10 Mbit/s), and the others would wait behind it; there a lead ends by the clock.
pub(super) const LEAD_TIME: Duration = Duration::from_millis(5);

impl super::Conn {
    /// Sets the priorities a [`Change`] of lead asks for. A demoted stream may be quiche's
    /// dead head among the others: the next `send` gets its retries (`Held::wrote`).
    pub(super) fn apply_lead(&mut self, change: Change) {
        if let Some(stream) = change.demote {
            crate::wire::set_lead(&mut self.wire, stream, false);
            self.held.wrote();
        }
        if let Some(stream) = change.promote {
            crate::wire::set_lead(&mut self.wire, stream, true);
        }
    }
}

/// Which tunnel of a connection leads, and for how long still.
#[derive(Debug, Default)]
pub(super) struct Lead {
    /// The leading stream, the bytes it may still write as the lead, and when its lead ends.
    current: Option<(u64, usize, Instant)>,
    /// The stream that led last: it cannot lead again before another has.
    last: Option<u64>,
}

/// What [`Lead`] asks of the connection's priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Change {
    /// Sent ahead of the others from now on.
    pub(super) promote: Option<u64>,
    /// Back into the common rotation.
    pub(super) demote: Option<u64>,
}

impl Change {
    pub(super) const NONE: Self = Self {
        promote: None,
        demote: None,
    };
}

impl Lead {
    /// `stream`'s tunnel wrote: `taken` bytes went to quiche, `cut` if fewer than offered
    /// (the connection's room is spent).
    pub(super) fn wrote(&mut self, stream: u64, taken: usize, cut: bool, now: Instant) -> Change {
        if let Some((lead, left, until)) = self.current {
            if lead == stream {
                let left = left.saturating_sub(taken);
                if left == 0 {
                    return self.end();
                }
                self.current = Some((lead, left, until));
                return Change::NONE;
            }
        }
        if !cut || taken == 0 || self.last == Some(stream) {
            return Change::NONE;
        }
        let demote = self.current.map(|(lead, ..)| lead);
        self.current = Some((stream, LEAD_QUANTUM.saturating_sub(taken), now + LEAD_TIME));
        self.last = demote;
        Change {
            promote: Some(stream),
            demote,
        }
    }

    /// Where the next round of `TunnelWritable` starts ([`in_turn`]): with the lead while
    /// one leads, so that it writes first until its quantum is spent (a deficit
    /// round-robin: each tunnel's turn is worth about one quantum), else after
    /// `send_turn`, the last tunnel served.
    pub(super) fn round_after(&self, send_turn: u64) -> u64 {
        match self.current {
            // Stream IDs of one kind are 4 apart; before stream 0 is "after every stream".
            Some((lead, ..)) => lead.wrapping_sub(1),
            None => send_turn,
        }
    }

    /// When the lead ends by the clock, if a tunnel leads.
    pub(super) fn ends_at(&self) -> Option<Instant> {
        self.current.map(|(.., until)| until)
    }

    /// Ends a lead whose time is up by `now`.
    pub(super) fn expire(&mut self, now: Instant) -> Change {
        match self.current {
            Some((.., until)) if until <= now => self.end(),
            _ => Change::NONE,
        }
    }

    fn end(&mut self) -> Change {
        let Some((lead, ..)) = self.current.take() else {
            return Change::NONE;
        };
        self.last = Some(lead);
        Change {
            promote: None,
            demote: Some(lead),
        }
    }
}

/// Orders `(stream, tunnel)` pairs for one round of `TunnelWritable`: the streams after
/// `turn` in ascending order, then the others from the lowest.
pub(super) fn in_turn<T>(writable: &mut [(u64, T)], turn: u64) {
    writable.sort_unstable_by_key(|&(stream, _)| (stream <= turn, stream));
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::{Change, LEAD_QUANTUM, LEAD_TIME, Lead, in_turn};

    fn promote(stream: u64, demote: Option<u64>) -> Change {
        Change {
            promote: Some(stream),
            demote,
        }
    }

    fn demote(stream: u64) -> Change {
        Change {
            promote: None,
            demote: Some(stream),
        }
    }

    const NONE: Change = Change::NONE;

    #[test]
    fn a_cut_write_leads_and_the_next_one_takes_over() {
        let now = Instant::now();
        let mut lead = Lead::default();
        assert_eq!(lead.wrote(0, 1000, false, now), NONE, "a write that fits");
        assert_eq!(lead.wrote(0, 0, true, now), NONE, "nothing taken");
        assert_eq!(lead.wrote(0, 1000, true, now), promote(0, None));
        assert_eq!(lead.wrote(4, 1000, false, now), NONE);
        assert_eq!(lead.wrote(4, 1000, true, now), promote(4, Some(0)));
        assert_eq!(lead.ends_at(), Some(now + LEAD_TIME));
    }

    #[test]
    fn a_round_starts_with_the_lead() {
        let now = Instant::now();
        let mut lead = Lead::default();
        let mut round: Vec<(u64, ())> = [0, 4, 8, 12].iter().map(|&s| (s, ())).collect();
        in_turn(&mut round, lead.round_after(4));
        assert_eq!(
            round.iter().map(|&(s, ())| s).collect::<Vec<_>>(),
            [8, 12, 0, 4]
        );
        lead.wrote(12, 1000, true, now);
        in_turn(&mut round, lead.round_after(12));
        assert_eq!(
            round.iter().map(|&(s, ())| s).collect::<Vec<_>>(),
            [12, 0, 4, 8]
        );
        lead.wrote(0, 1000, true, now);
        in_turn(&mut round, lead.round_after(0));
        assert_eq!(
            round.iter().map(|&(s, ())| s).collect::<Vec<_>>(),
            [0, 4, 8, 12]
        );
    }

    #[test]
    fn a_lead_ends_after_its_quantum_and_does_not_lead_twice_in_a_row() {
        let now = Instant::now();
        let mut lead = Lead::default();
        assert_eq!(lead.wrote(8, 1000, true, now), promote(8, None));
        assert_eq!(lead.wrote(8, LEAD_QUANTUM - 1001, true, now), NONE);
        assert_eq!(lead.wrote(8, 1, true, now), demote(8));
        assert_eq!(lead.ends_at(), None);
        assert_eq!(lead.wrote(8, 1000, true, now), NONE, "led last");
        assert_eq!(lead.wrote(12, 1000, true, now), promote(12, None));
        assert_eq!(lead.wrote(8, 1000, true, now), promote(8, Some(12)));
    }

    #[test]
    fn a_lead_ends_by_the_clock() {
        let now = Instant::now();
        let mut lead = Lead::default();
        assert_eq!(lead.expire(now), NONE);
        lead.wrote(0, 1000, true, now);
        assert_eq!(lead.expire(now + LEAD_TIME / 2), NONE);
        assert_eq!(lead.expire(now + LEAD_TIME), demote(0));
        assert_eq!(lead.ends_at(), None);
        assert_eq!(lead.wrote(0, 1000, true, now), NONE, "led last");
    }

    #[test]
    fn a_round_starts_after_the_last_stream_served_and_wraps() {
        let mut round: Vec<(u64, ())> = [0, 4, 8, 12, 16].iter().map(|&s| (s, ())).collect();
        in_turn(&mut round, 8);
        let order: Vec<u64> = round.iter().map(|&(s, ())| s).collect();
        assert_eq!(order, [12, 16, 0, 4, 8]);
        in_turn(&mut round, 16);
        let order: Vec<u64> = round.iter().map(|&(s, ())| s).collect();
        assert_eq!(order, [0, 4, 8, 12, 16]);
    }
}

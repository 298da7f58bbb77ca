//! Shutting down, both roles, with every deadline coming out of `poll_timeout`: the whole
//! sequence is the engine's, so every host (tokio, glommio, C) ends the same way and only
//! has to keep polling until [`Endpoint::is_closed`].
//!
//! 1. [`Endpoint::shutdown`]: an edge sends HTTP/3 GOAWAY on every connection (see
//!    `drain`) and a client takes no new tunnels.
//! 2. **Draining**: open TCP tunnels go on until they end, and until the peer has
//!    acknowledged the end of every tunnel that finished (a FIN that is written is not yet
//!    delivered: a `CONNECTION_CLOSE` sent on top of it would cut it, since quiche sends
//!    no stream data once closing). UDP tunnels have no end of their own and do not hold
//!    the drain up. At `drain` the rest is cut.
//! 3. Then every connection sends `CONNECTION_CLOSE` with the plan's code; the tunnels
//!    still there are reported lost at once ([`Endpoint::close`]).
//! 4. **Closing**: until each connection's closing period is over, or `grace` passes;
//!    then the connections are dropped and `is_closed` holds.

use std::time::{Duration, Instant};

use super::Endpoint;

/// How [`Endpoint::shutdown`] proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownPlan {
    /// How long open tunnels may take to end before they are cut.
    pub drain: Duration,
    /// The application error code of the `CONNECTION_CLOSE` frames (HTTP/3:
    /// `H3_NO_ERROR`, 0x100, for a clean shutdown).
    pub close_code: u64,
    /// How long connections may take to close once `CONNECTION_CLOSE` is sent.
    pub grace: Duration,
}

impl Default for ShutdownPlan {
    fn default() -> Self {
        Self {
            drain: Duration::from_secs(30),
            close_code: super::H3_NO_ERROR,
            grace: Duration::from_secs(2),
        }
    }
}

/// Where a shutdown is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    Draining { until: Instant, plan: ShutdownPlan },
    Closing { until: Instant },
}

/// Finished tunnels' streams the engine watches until quiche forgets them, which it does
/// once the peer has acknowledged every byte and the FIN. Checked in batches, so that the
/// list costs O(1) per finished tunnel however long the connection lives.
#[derive(Default)]
pub(super) struct Ended {
    streams: Vec<u64>,
    /// Length after the last check: the next check comes at twice it.
    checked_len: usize,
}

impl Ended {
    /// Length at which a batch check is due, at least.
    const MIN_CHECK: usize = 64;

    pub(super) fn push(&mut self, stream: u64) {
        self.streams.push(stream);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Whether the list has grown enough since the last check to check it again.
    pub(super) fn check_due(&self) -> bool {
        self.streams.len() >= Self::MIN_CHECK.max(2 * self.checked_len)
    }

    /// Forgets the streams for which `gone` holds.
    pub(super) fn retain_live(&mut self, mut gone: impl FnMut(u64) -> bool) {
        self.streams.retain(|&stream| !gone(stream));
        self.checked_len = self.streams.len();
    }
}

impl Endpoint {
    /// Starts a graceful shutdown (see the module documentation). Idempotent: a second call
    /// changes nothing. Poll until [`is_closed`](Self::is_closed); `poll_timeout` carries
    /// every deadline of the sequence.
    pub fn shutdown(&mut self, now: Instant, plan: ShutdownPlan) {
        self.clock = now;
        if self.shutdown.is_some() {
            return;
        }
        tracing::info!(
            tunnels = self.tunnels.len(),
            drain = ?plan.drain,
            "shutting down"
        );
        self.go_away(now);
        self.shutdown = Some(Phase::Draining {
            until: now + plan.drain,
            plan,
        });
        // Ends acknowledged long ago may still be listed: an idle connection would not
        // look again before the drain's deadline.
        let handles: Vec<u64> = self.conns.keys().copied().collect();
        for handle in handles {
            self.prune_ended(handle);
        }
        self.advance_shutdown(now);
    }

    /// When the shutdown next needs `handle_timeout`: now, once the drain is done early.
    pub(super) fn shutdown_deadline(&self) -> Option<Instant> {
        match self.shutdown? {
            Phase::Draining { .. } if self.drained() => Some(self.clock),
            Phase::Draining { until, .. } | Phase::Closing { until } => Some(until),
        }
    }

    /// Moves the shutdown on (from `handle_timeout` and `shutdown`).
    pub(super) fn advance_shutdown(&mut self, now: Instant) {
        match self.shutdown {
            Some(Phase::Draining { until, plan }) if self.drained() || now >= until => {
                let open = self.tunnels.len();
                if open > 0 {
                    tracing::info!(tunnels = open, "drain over; cutting the tunnels left");
                }
                self.close(now, plan.close_code, b"shutting down");
                self.shutdown = Some(Phase::Closing {
                    until: now + plan.grace,
                });
            }
            Some(Phase::Closing { until }) if now >= until => {
                let handles: Vec<u64> = self.conns.keys().copied().collect();
                for handle in handles {
                    self.remove_conn(now, handle);
                }
                self.stateless.clear();
            }
            _ => {}
        }
    }

    /// Whether nothing holds the drain up: no tunnel but UDP ones (requested, waiting and
    /// opening ones count), and every finished tunnel's end acknowledged.
    fn drained(&self) -> bool {
        self.tunnels.values().all(|tunnel| tunnel.udp.is_some())
            && self
                .conns
                .values()
                .all(|conn| conn.ended.is_empty() && conn.fins_waiting.is_empty())
    }

    /// Drops the finished streams quiche has forgotten from `handle`'s watch list: always
    /// while draining, otherwise when the list has grown enough (see [`Ended`]).
    pub(super) fn prune_ended(&mut self, handle: u64) {
        let draining = matches!(self.shutdown, Some(Phase::Draining { .. }));
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        if conn.ended.is_empty() || !(draining || conn.ended.check_due()) {
            return;
        }
        let quic = &mut conn.wire;
        conn.ended.retain_live(|stream| {
            matches!(
                quic.stream_capacity(stream),
                Err(quiche::Error::InvalidStreamState(_))
            )
        });
    }

    /// Drops the HTTP/3 state of removed tunnels' streams that quiche's transport has
    /// forgotten, when the list has grown enough (see [`Ended`]): without it, a connection
    /// that carries many tunnels ended by a reset grows by some hundred bytes each.
    pub(super) fn prune_leftovers(&mut self, handle: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        if !conn.leftovers.check_due() {
            return;
        }
        let (wire, http) = (&mut conn.wire, &mut conn.http);
        conn.leftovers.retain_live(|stream| {
            let gone = matches!(
                wire.stream_capacity(stream),
                Err(quiche::Error::InvalidStreamState(_))
            );
            if gone {
                if let Some(http) = http.as_mut() {
                    http.forget_stream(wire, stream);
                }
            }
            gone
        });
    }
}

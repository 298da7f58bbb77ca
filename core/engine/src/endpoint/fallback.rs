//! A client's choice of transport with `Transport::Auto`: HTTP/3 first, HTTP/2 over TCP
//! when HTTP/3 does not answer soon enough, and HTTP/3 again later.
//!
//! Many networks block or throttle UDP. An auto client starts a QUIC attempt; if it has
//! not completed its handshake [`FALLBACK_DELAY`] later while tunnels wait, a TCP attempt
//! races it (the host dials: `Event::TcpDial`). The first to be established carries new
//! tunnels; a losing attempt that is still connecting is closed. A TCP winner is kept for
//! `ClientConfig::h3_retry`, after which a QUIC attempt races it in the background: if it
//! is established, new tunnels go back to HTTP/3 while the tunnels already on HTTP/2 finish
//! there. The same race runs at every reconnect.
//!
//! State: `Client::conn` is where new tunnels go (established or still connecting);
//! `Client::racer` is at most one attempt of the other transport.

use std::time::{Duration, Instant};

use super::{Endpoint, RoleState};
use crate::config::Transport;

/// How long an auto client's QUIC attempt has to be established before a TCP attempt
/// races it: a round trip or two on most paths, and short enough that a user behind a UDP
/// block barely notices. (Happy Eyeballs v2 waits 250 ms between families, RFC 8305 §5.)
pub const FALLBACK_DELAY: Duration = Duration::from_millis(300);

impl Endpoint {
    /// Auto: starts the racing attempt when it is due (see the module documentation).
    pub(super) fn race(&mut self, now: Instant) {
        if self.closing {
            return;
        }
        let Some((at, over_tcp)) = self.next_race() else {
            return;
        };
        if at > now {
            return;
        }
        let racer = if over_tcp {
            tracing::debug!("trying HTTP/3 again beside the HTTP/2 connection");
            self.start_quic_attempt()
        } else {
            tracing::debug!("HTTP/3 has not answered: racing HTTP/2 over TCP");
            self.start_tcp_attempt(now)
        };
        if let RoleState::Client(client) = &mut self.role {
            if over_tcp {
                client.h3_again_at = None;
            }
            client.racer = racer;
        }
    }

    /// When [`race`](Self::race) has something to do next, for `poll_timeout`.
    pub(super) fn race_deadline(&self) -> Option<Instant> {
        self.next_race().map(|(at, _)| at)
    }

    /// When a racing attempt is due, and whether the current connection is over TCP (an
    /// HTTP/3 probe is due then) or a QUIC attempt not yet established (HTTP/2 races it,
    /// if tunnels wait). `None`: no race to run.
    fn next_race(&self) -> Option<(Instant, bool)> {
        let RoleState::Client(client) = &self.role else {
            return None;
        };
        if client.transport != Transport::Auto || client.racer.is_some() {
            return None;
        }
        let conn = self.conns.get(client.conn?)?;
        match (conn.wire.is_tcp(), conn.http.is_some()) {
            (true, true) => client.h3_again_at.map(|at| (at, true)),
            (false, false) if !client.pending.is_empty() => {
                let due = client.attempt_at + FALLBACK_DELAY;
                Some((client.race_after.map_or(due, |after| due.max(after)), false))
            }
            _ => None,
        }
    }

    /// A client connection was established: the race, if any, is decided.
    pub(super) fn settle_race(&mut self, now: Instant, handle: u64) {
        let RoleState::Client(client) = &mut self.role else {
            return;
        };
        if client.transport != Transport::Auto {
            return;
        }
        let over_tcp = self.conns.get(handle).is_some_and(|c| c.wire.is_tcp());
        client.race_after = None;
        client.race_backoff = client.reconnect_initial;
        let loser = if client.racer == Some(handle) {
            client.racer = None;
            let previous = client.conn.replace(handle);
            tracing::debug!(
                connection = handle,
                transport = if over_tcp { "HTTP/2" } else { "HTTP/3" },
                "new tunnels go to the racing connection"
            );
            // A previous connection that is established (HTTP/2, after HTTP/3 came back)
            // keeps carrying its tunnels; one still connecting is given up.
            previous.filter(|&old| self.conns.get(old).is_some_and(|c| c.http.is_none()))
        } else if client.conn == Some(handle) {
            client.racer.take()
        } else {
            None
        };
        if let RoleState::Client(client) = &mut self.role {
            if over_tcp && client.h3_again_at.is_none() {
                client.h3_again_at = Some(now + client.h3_retry);
            } else if !over_tcp {
                client.h3_again_at = None;
            }
        }
        if let Some(loser) = loser {
            if let Some(conn) = self.conns.get_mut(loser) {
                let _ = conn.wire.close(true, 0, b"another transport won");
            }
            self.remove_conn(now, loser);
        }
    }

    /// A client connection went away. Returns whether it was the racer (then HTTP/3, if
    /// that was the racer, is tried again later). A lost current attempt is replaced as
    /// always (a racer still connecting races the new attempt: an established one would
    /// already be current).
    pub(super) fn lost_in_race(&mut self, now: Instant, handle: u64) -> bool {
        let RoleState::Client(client) = &mut self.role else {
            return false;
        };
        if client.racer == Some(handle) {
            client.racer = None;
            let on_tcp = client
                .conn
                .and_then(|current| self.conns.get(current))
                .is_some_and(|c| c.wire.is_tcp());
            if on_tcp {
                client.h3_again_at = Some(now + client.h3_retry);
            } else {
                // HTTP/2 failed beside an HTTP/3 attempt still unanswered: race again
                // only after a backoff of its own.
                client.race_after = Some(now + client.race_backoff);
                client.race_backoff = (client.race_backoff * 2).min(client.reconnect_max);
            }
            return true;
        }
        false
    }
}

//! TCP tunnels that carry nothing for `QuicConfig::tcp_idle_timeout` are reset and reported
//! closed (`CloseReason::IdleTimeout`), as UDP tunnels are after `udp_idle_timeout`
//! (`endpoint::udp`). A tunnel's activity is what its host sends and reads; deadlines sit
//! in an ordered set and are checked lazily: an expired entry whose tunnel moved meanwhile
//! is put back at its new deadline, so a busy tunnel costs no timer work per byte.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{Endpoint, TunnelState};
use crate::H3_CONNECT_ERROR;
use crate::types::{CloseReason, Event, TunnelId};

/// The idle deadlines of TCP tunnels.
#[derive(Default)]
pub(super) struct IdleTimers {
    timeout: Option<Duration>,
    set: BTreeSet<(Instant, TunnelId)>,
}

impl IdleTimers {
    pub(super) fn new(timeout: Option<Duration>) -> Self {
        Self {
            timeout: timeout.filter(|t| !t.is_zero()),
            set: BTreeSet::new(),
        }
    }

    /// `QuicConfig::tcp_idle_timeout`: a TCP tunnel's unless its rule says otherwise.
    pub(super) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Starts watching a tunnel that opened at `now` and may stay quiet for `timeout`.
    pub(super) fn watch(&mut self, id: TunnelId, now: Instant, timeout: Option<Duration>) {
        if let Some(timeout) = timeout {
            self.set.insert((now + timeout, id));
        }
    }

    /// The earliest deadline.
    pub(super) fn first(&self) -> Option<Instant> {
        self.set.first().map(|&(at, _)| at)
    }
}

impl Endpoint {
    /// Resets the TCP tunnels idle past their deadline; re-arms the others.
    pub(super) fn expire_idle_tcp(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.idle.set.first() {
            if at > now {
                return;
            }
            self.idle.set.remove(&(at, id));
            let Some(tunnel) = self.tunnels.get(&id) else {
                continue;
            };
            if tunnel.udp.is_some() || !matches!(tunnel.state, TunnelState::Open) {
                continue;
            }
            let (Some(last), Some(timeout)) =
                (tunnel.last_activity, tunnel.tcp_idle(self.idle.timeout))
            else {
                continue;
            };
            let deadline = last + timeout;
            if deadline > now {
                self.idle.set.insert((deadline, id));
                continue;
            }
            tracing::debug!(tunnel = ?id, "TCP tunnel idle, reset");
            self.reset_tcp_tunnel(id, CloseReason::IdleTimeout);
        }
    }

    /// Ends a TCP tunnel on the engine's own account (a timeout): resets its stream and
    /// tells the host, which closes its TCP side with RST.
    pub(super) fn reset_tcp_tunnel(&mut self, id: TunnelId, reason: CloseReason) {
        self.note_end(id, crate::audit::Ending::Closed(reason));
        if let Some((handle, stream)) = self.remove_tunnel(id) {
            if let Some(conn) = self.conns.get_mut(handle) {
                conn.abort_stream(stream, H3_CONNECT_ERROR);
            }
            self.queue_send(handle);
        }
        self.events
            .push_back(Event::TunnelClosed { tunnel: id, reason });
    }
}

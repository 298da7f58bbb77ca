//! TCP tunnels that carry nothing for `QuicConfig::tcp_idle_timeout` are reset and reported
//! closed (`CloseReason::IdleTimeout`), as UDP tunnels are after `udp_idle_timeout`
//! (`endpoint::udp`). A tunnel's activity is what its host sends and reads; deadlines sit
//! in an ordered set and are checked lazily: an expired entry whose tunnel moved meanwhile
//! is put back at its new deadline, so a busy tunnel costs no timer work per byte.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{Endpoint, TunnelState, shutdown_stream};
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

    /// Starts watching a tunnel that opened at `now`.
    pub(super) fn watch(&mut self, id: TunnelId, now: Instant) {
        if let Some(timeout) = self.timeout {
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
        let Some(timeout) = self.idle.timeout else {
            return;
        };
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
            let Some(last) = tunnel.last_activity else {
                continue;
            };
            let deadline = last + timeout;
            if deadline > now {
                self.idle.set.insert((deadline, id));
                continue;
            }
            tracing::debug!(tunnel = ?id, "TCP tunnel idle, reset");
            self.note_end(id, crate::audit::Ending::Closed(CloseReason::IdleTimeout));
            if let Some((handle, stream)) = self.remove_tunnel(id) {
                if let Some(conn) = self.conns.get_mut(handle) {
                    shutdown_stream(&mut conn.wire, stream, H3_CONNECT_ERROR);
                }
                self.queue_send(handle);
            }
            self.events.push_back(Event::TunnelClosed {
                tunnel: id,
                reason: CloseReason::IdleTimeout,
            });
        }
    }
}

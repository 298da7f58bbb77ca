//! A tunnel's timeouts, judged once when it opens: how long it may stay quiet (an edge
//! rule's `idle_timeout_ms`, else `QuicConfig::tcp_idle_timeout` or `udp_idle_timeout` for
//! its kind) and how long it may live at all (the rule's `max_duration_ms`, else
//! `QuicConfig::tunnel_max_duration`). Past its maximum duration a tunnel ends however
//! busy it is: a TCP tunnel is reset, a UDP or IP tunnel's stream finished, and the host
//! is told `CloseReason::MaxDuration`.
//!
//! Deadlines sit in an ordered set, one entry per tunnel that has a limit; an entry whose
//! tunnel ended earlier falls out when due.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{Endpoint, RoleState, TunnelState};
use crate::rules::RuleTimeouts;
use crate::types::{CloseReason, TunnelId};

/// The maximum-duration deadlines of open tunnels.
#[derive(Default)]
pub(super) struct Lifetimes {
    /// `QuicConfig::tunnel_max_duration`.
    default: Option<Duration>,
    set: BTreeSet<(Instant, TunnelId)>,
}

impl Lifetimes {
    pub(super) fn new(default: Option<Duration>) -> Self {
        Self {
            default: default.filter(|limit| !limit.is_zero()),
            set: BTreeSet::new(),
        }
    }

    /// The earliest deadline.
    pub(super) fn first(&self) -> Option<Instant> {
        self.set.first().map(|&(at, _)| at)
    }
}

impl Endpoint {
    /// What the edge's rules say of `id`'s timeouts (nothing, for a client's tunnel).
    fn rule_timeouts(&self, id: TunnelId) -> RuleTimeouts {
        let RoleState::Edge(edge) = &self.role else {
            return RuleTimeouts::default();
        };
        self.tunnels
            .get(&id)
            .and_then(|tunnel| tunnel.request.as_deref())
            .map(|request| edge.rules.timeouts_for(&edge.rule_query(request)))
            .unwrap_or_default()
    }

    /// A tunnel opens now: its timeouts are settled and its clocks start.
    pub(super) fn start_clocks(&mut self, id: TunnelId) {
        let timeouts = self.rule_timeouts(id);
        let now = self.clock;
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        tunnel.state = TunnelState::Open;
        tunnel.last_activity = Some(now);
        tunnel.idle_override = timeouts.idle;
        // A UDP or IP tunnel's idle clock starts with its encoding (`udp_opened`).
        if tunnel.udp.is_none() {
            self.idle
                .watch(id, now, tunnel.tcp_idle(self.idle.timeout()));
        }
        if let Some(limit) = timeouts.max_duration.or(self.lifetimes.default) {
            self.lifetimes.set.insert((now + limit, id));
        }
    }

    /// Ends the tunnels past their maximum duration.
    pub(super) fn expire_lifetimes(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.lifetimes.set.first() {
            if at > now {
                return;
            }
            self.lifetimes.set.remove(&(at, id));
            let Some(tunnel) = self.tunnels.get(&id) else {
                continue;
            };
            tracing::debug!(tunnel = ?id, "tunnel lived its maximum duration");
            if tunnel.udp.is_some() {
                //# RFC 9298 §3.1: "UDP proxies MAY choose to close sockets due to a period
                //# of inactivity, but they MUST close the request stream when closing the
                //# socket."
                self.end_udp_tunnel(id, CloseReason::MaxDuration);
            } else {
                self.reset_tcp_tunnel(id, CloseReason::MaxDuration);
            }
        }
    }
}

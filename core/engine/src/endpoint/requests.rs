//! Edge: requests handed to the host and not answered yet.
//!
//! Every request the engine reports as [`Event::TunnelRequest`](crate::Event) gets an
//! answer: the host's (`accept_tunnel`, `refuse_tunnel`), or, when the host does not serve
//! its kind, the engine's at once (501), or, when the host has not answered within
//! `EdgeConfig::request_timeout`, the engine's then (504). A client never waits on a
//! request that nobody will answer.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Endpoint, TunnelState};
use crate::types::{Refusal, TunnelId};

/// Unanswered requests by deadline, earliest first.
#[derive(Default)]
pub(super) struct Unanswered {
    set: BTreeSet<(Instant, TunnelId)>,
}

impl Unanswered {
    pub(super) fn first(&self) -> Option<Instant> {
        self.set.first().map(|&(at, _)| at)
    }

    pub(super) fn insert(&mut self, deadline: Instant, id: TunnelId) {
        self.set.insert((deadline, id));
    }

    /// Forgets a request once it is answered (or its tunnel is gone).
    pub(super) fn remove(&mut self, deadline: Instant, id: TunnelId) {
        self.set.remove(&(deadline, id));
    }

    /// Takes the requests whose deadline is at or before `now`.
    fn take_due(&mut self, now: Instant) -> Vec<TunnelId> {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.set.first() {
            if at > now {
                break;
            }
            self.set.remove(&(at, id));
            due.push(id);
        }
        due
    }
}

impl Endpoint {
    /// Refuses the requests whose host did not answer in time.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        for id in self.unanswered.take_due(now) {
            let still_waiting = self
                .tunnels
                .get(&id)
                .is_some_and(|tunnel| matches!(tunnel.state, TunnelState::Requested { .. }));
            if still_waiting {
                tracing::info!(tunnel = ?id, "the host did not answer a request in time");
                //# RFC 9209 §2.3.7: "connection_timeout: The intermediary encountered a
                //# timeout when trying to connect to the next hop."
                let _ = self.refuse_tunnel(id, Refusal::ConnectionTimeout);
            }
        }
    }
}

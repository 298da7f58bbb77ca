//! Edge: questions put to the host and not answered yet.
//!
//! Every request the engine reports as [`Event::TunnelRequest`](crate::Event) gets an
//! answer: the host's (`accept_tunnel`, `refuse_tunnel`), or, when the host does not serve
//! its kind, the engine's at once (501), or, when the host has not answered within
//! `EdgeConfig::request_timeout`, the engine's then (504). A client never waits on a
//! request that nobody will answer. The same deadline bounds the hooks' "ask the host"
//! verdicts: a tunnel decision not given in time refuses the request (504), an ingress
//! decision not given in time closes the connection.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Endpoint, H3_INTERNAL_ERROR, Ingress, TunnelState};
use crate::types::{CloseReason, Event, Refusal, TunnelId};

/// What waits for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Question {
    /// A `TunnelRequest` or a `TunnelDecision`.
    Tunnel(TunnelId),
    /// An `IngressDecision`, by connection.
    Ingress(u64),
}

/// Unanswered questions by deadline, earliest first.
#[derive(Default)]
pub(super) struct Unanswered {
    set: BTreeSet<(Instant, Question)>,
}

impl Unanswered {
    pub(super) fn first(&self) -> Option<Instant> {
        self.set.first().map(|&(at, _)| at)
    }

    pub(super) fn insert(&mut self, deadline: Instant, question: Question) {
        self.set.insert((deadline, question));
    }

    /// Forgets a question once it is answered (or its tunnel or connection is gone).
    pub(super) fn remove(&mut self, deadline: Instant, question: Question) {
        self.set.remove(&(deadline, question));
    }

    /// Takes the questions whose deadline is at or before `now`.
    fn take_due(&mut self, now: Instant) -> Vec<Question> {
        let mut due = Vec::new();
        while let Some(&(at, question)) = self.set.first() {
            if at > now {
                break;
            }
            self.set.remove(&(at, question));
            due.push(question);
        }
        due
    }
}

impl Endpoint {
    /// Refuses the requests, and closes the connections, whose host did not answer in time.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        for question in self.unanswered.take_due(now) {
            match question {
                Question::Tunnel(id) => self.expire_tunnel_question(id),
                Question::Ingress(handle) => self.expire_ingress_question(now, handle),
            }
        }
    }

    fn expire_tunnel_question(&mut self, id: TunnelId) {
        let Some(tunnel) = self.tunnels.get(&id) else {
            return;
        };
        //# RFC 9209 §2.3.7: "connection_timeout: The intermediary encountered a
        //# timeout when trying to connect to the next hop."
        match tunnel.state {
            TunnelState::Requested { .. } => {
                tracing::info!(tunnel = ?id, "the host did not answer a request in time");
                if self.refuse_tunnel(id, Refusal::ConnectionTimeout).is_ok() {
                    // The host may still be dialling for it: tell it to stop.
                    self.events.push_back(Event::TunnelClosed {
                        tunnel: id,
                        reason: CloseReason::RequestTimeout,
                    });
                }
            }
            TunnelState::Sniffing { .. } => self.sniff_expired(id),
            TunnelState::Deciding { .. } => {
                tracing::info!(tunnel = ?id, "the host did not decide on a request in time");
                self.reject_deciding(id, Refusal::ConnectionTimeout);
            }
            _ => {}
        }
    }

    fn expire_ingress_question(&mut self, now: Instant, handle: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        if matches!(conn.ingress, Ingress::Asked { .. }) {
            tracing::info!(
                connection = handle,
                "the host did not decide on a connection in time"
            );
            conn.ingress = Ingress::Decided;
            //# RFC 9114 §8.1: "H3_INTERNAL_ERROR (0x0102): An internal error has occurred
            //# in the HTTP stack."
            let _ = conn.wire.close(true, H3_INTERNAL_ERROR, b"");
            self.process(now, handle);
        }
    }
}

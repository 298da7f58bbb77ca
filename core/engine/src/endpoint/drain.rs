//! Graceful drain with HTTP/3 GOAWAY (RFC 9114 §5.2).
//!
//! - Edge: [`Endpoint::go_away`] sends GOAWAY on every connection, naming the first
//!   request it will not process, and stops accepting connections. Tunnels already open
//!   (and requests already in flight below that ID) carry on; requests at or above it are
//!   rejected with `H3_REQUEST_REJECTED` and never reach the host.
//! - Client: a GOAWAY retires its connection for new tunnels (they go to a fresh one, with
//!   the usual reconnect backoff), open tunnels finish on it, and requests the edge will
//!   not process are moved back to the waiting queue to be sent again on the next
//!   connection, as the RFC allows.

use std::time::Instant;

use super::{Endpoint, H3_REQUEST_CANCELLED, H3_REQUEST_REJECTED, RoleState, TunnelState};
use crate::types::TunnelId;

impl Endpoint {
    /// Edge: starts a graceful drain. Sends HTTP/3 GOAWAY on every connection (and on those
    /// that finish their handshake later), refuses new connections, and rejects requests
    /// that arrive at or above each GOAWAY's ID with `H3_REQUEST_REJECTED`, so that clients
    /// retry them elsewhere. Open tunnels are untouched: call [`close`](Self::close) when
    /// they are done or the drain's deadline passes. A client has nothing to drain: no-op.
    pub fn go_away(&mut self, now: Instant) {
        self.clock = now;
        if !matches!(self.role, RoleState::Edge(_)) {
            return;
        }
        self.draining = true;
        let handles: Vec<u64> = self.conns.keys().copied().collect();
        for handle in handles {
            self.send_goaway(handle);
        }
    }

    /// Edge, draining: sends this connection its GOAWAY once HTTP/3 is up. Idempotent.
    pub(super) fn send_goaway(&mut self, handle: u64) {
        if !self.draining {
            return;
        }
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let Some(h3) = conn.http.as_mut() else {
            return;
        };
        if conn.goaway_sent.is_some() {
            return;
        }
        //# RFC 9114 §5.2: "The GOAWAY frame contains an identifier that indicates to the
        //# receiver the range of requests or pushes that were or might be processed in this
        //# connection. The server sends a client-initiated bidirectional stream ID"
        let id = conn.largest_request.map_or(0, |id| id + 4);
        // quiche refuses the frame (`StreamBlocked`) while the connection may send nothing
        // more, as under a bulk transfer that fills the congestion window; until it is
        // taken, requests are still processed, and every poll of the connection's input
        // tries again (`poll_h3`).
        match h3.send_goaway(&mut conn.wire, id) {
            Ok(()) => {
                conn.goaway_sent = Some(id);
                self.queue_send(handle);
            }
            Err(error) => {
                tracing::debug!(connection = handle, %error, "GOAWAY not taken yet");
            }
        }
    }

    /// Edge: whether a request on `stream` comes at or above the GOAWAY this connection
    /// sent; if so it is rejected here, unprocessed.
    pub(super) fn reject_after_goaway(&mut self, handle: u64, stream: u64) -> bool {
        let Some(conn) = self.conns.get_mut(handle) else {
            return false;
        };
        if conn.goaway_sent.is_none_or(|id| stream < id) {
            return false;
        }
        //# RFC 9114 §5.2: "Upon sending a GOAWAY frame, the endpoint SHOULD explicitly
        //# cancel (see Sections 4.1.1 and 7.2.3) any requests or pushes that have
        //# identifiers greater than or equal to the one indicated, in order to clean up
        //# transport state for the affected streams. The endpoint SHOULD continue to do so
        //# as more requests or pushes arrive."
        //# RFC 9114 §4.1.1: "When the server cancels a request without performing any
        //# application processing, the request is considered "rejected". The server SHOULD
        //# abort its response stream with the error code H3_REQUEST_REJECTED."
        conn.abort_stream(stream, H3_REQUEST_REJECTED);
        self.stats.tunnels_refused += 1;
        self.queue_send(handle);
        true
    }

    /// Client: the edge sent GOAWAY naming `first_rejected`. New tunnels go to a fresh
    /// connection; requests at or above the ID go back to the queue.
    pub(super) fn on_goaway(&mut self, handle: u64, first_rejected: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        conn.goaway = true;
        let RoleState::Client(client) = &mut self.role else {
            return;
        };
        if client.conn == Some(handle) {
            client.conn = None;
        }
        //# RFC 9114 §5.2: "Upon receipt of a GOAWAY frame, if the client has already sent
        //# requests with a stream ID greater than or equal to the identifier contained in
        //# the GOAWAY frame, those requests will not be processed. Clients can safely retry
        //# unprocessed requests on a different HTTP connection."
        let mut unprocessed: Vec<(u64, TunnelId)> = conn
            .streams
            .iter()
            .filter(|&(&stream, _)| stream >= first_rejected)
            .map(|(&stream, &id)| (stream, id))
            .collect();
        unprocessed.sort_unstable();
        for (stream, id) in unprocessed.into_iter().rev() {
            self.requeue(handle, stream, id);
        }
    }

    /// Client: the edge rejected a request it did not process (`H3_REQUEST_REJECTED`) on
    /// a connection it is draining; the request goes back to the queue. Returns whether it
    /// did.
    pub(super) fn retry_rejected(&mut self, handle: u64, stream: u64, code: u64) -> bool {
        //# RFC 9114 §4.1.1: "The client can treat requests rejected by the server as though
        //# they had never been sent at all, thereby allowing them to be retried later."
        // Only after a GOAWAY: a connection that rejects and stays current would get the
        // request again at once.
        let Some(conn) = self.conns.get(handle) else {
            return false;
        };
        if code != H3_REQUEST_REJECTED || !conn.goaway {
            return false;
        }
        let Some(&id) = conn.streams.get(&stream) else {
            return false;
        };
        self.requeue(handle, stream, id)
    }

    /// Client: moves a tunnel whose request the edge will not process back to the front
    /// of the waiting queue, cancelling its stream. Returns whether it did.
    fn requeue(&mut self, handle: u64, stream: u64, id: TunnelId) -> bool {
        let now = self.clock;
        let Some(tunnel) = self.tunnels.get(&id) else {
            return false;
        };
        let TunnelState::AwaitingResponse { target, deadline } = &tunnel.state else {
            return false;
        };
        if self.closing || *deadline <= now || !tunnel.may_send_again() {
            return false;
        }
        let waiting = TunnelState::Waiting {
            target: target.clone(),
            deadline: *deadline,
        };
        let Some(old) = self.tunnels.remove(&id) else {
            return false;
        };
        self.tunnels.insert(id, old.for_a_new_request(waiting));
        if let Some(conn) = self.conns.get_mut(handle) {
            conn.streams.remove(&stream);
            conn.abort_stream(stream, H3_REQUEST_CANCELLED);
        }
        if let RoleState::Client(client) = &mut self.role {
            client.pending.push_front(id);
        }
        self.queue_send(handle);
        true
    }
}

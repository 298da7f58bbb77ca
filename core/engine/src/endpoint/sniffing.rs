//! Edge: reading a TCP tunnel's first bytes for the server name its client asks for (a TLS
//! `ClientHello`'s SNI, an HTTP/1 request's `Host`), so that rules can match on it
//! (`sni = ["*.example.com"]`), whatever address the client dials.
//!
//! A request is sniffed only when a rule on the server name comes before the first rule
//! that matches it without one (`rules::RequestRuling::needs_sni`): every other request
//! goes the usual way. A sniffed request is answered 200 by the engine at once (the client
//! sends its first bytes only after a 2xx), its bytes are read into a bounded buffer until
//! veil-proto's `sniff` answers, the client finishes, [`SNIFF_LIMIT`] bytes are in, or
//! [`SNIFF_WAIT`] passes (a protocol whose server speaks first); then the rules decide
//! with the name, and the tunnel hook and the host come after as for any request. The
//! host's `accept_tunnel` sends nothing more, and a refusal after the 200 can only be a
//! reset (`H3_CONNECT_ERROR`): what the client sees of a target that refused.
//!
//! The bytes read stay in the tunnel ([`FirstBytes`]) and are the first `tunnel_recv`
//! returns: nothing is lost, and nothing beyond the first flight is copied.

use std::time::Duration;

use veil_proto::sniff::{SNIFF_LIMIT, Sniffed, sniff};

use super::hooks::{EdgeRequest, Screening};
use super::requests::Question;
use super::{Endpoint, Receiving, RoleState, Tunnel, TunnelState};
use crate::H3_CONNECT_ERROR;
use crate::types::{Event, TunnelId};

/// How long the edge waits for a client's first bytes before the rules decide without a
/// server name: long enough for a client that writes at once (TLS, HTTP) on any path
/// that sent its request, short enough for a protocol whose server speaks first (SSH,
/// SMTP) to notice no more than a slow connect.
pub(crate) const SNIFF_WAIT: Duration = Duration::from_secs(1);

/// The first bytes of a sniffed tunnel, kept for the host.
pub(crate) struct FirstBytes {
    bytes: Vec<u8>,
    /// How many the host has read.
    read: usize,
}

impl FirstBytes {
    /// Copies what the host has not read yet into `out`; `None` once all of it was read
    /// (or `out` is empty).
    pub(super) fn take(&mut self, out: &mut [u8]) -> Option<usize> {
        let rest = self.bytes.get(self.read..).unwrap_or_default();
        let len = rest.len().min(out.len());
        if len == 0 {
            return None;
        }
        out[..len].copy_from_slice(&rest[..len]);
        self.read += len;
        Some(len)
    }

    fn unread(&self) -> bool {
        self.read < self.bytes.len()
    }

    /// Hands over what the host has not read yet (to the HTTP inspector, which reads
    /// before the host does).
    pub(super) fn drain(&mut self) -> Vec<u8> {
        let rest = self.bytes.get(self.read..).unwrap_or_default().to_vec();
        self.read = self.bytes.len();
        rest
    }
}

impl Endpoint {
    /// A TCP request that a rule on the server name may decide: a tunnel that the engine
    /// answers 200 itself, then reads.
    pub(super) fn start_sniffing(&mut self, handle: u64, stream: u64, request: EdgeRequest) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let id = TunnelId(self.next_tunnel);
        self.next_tunnel += 1;
        conn.streams.insert(stream, id);
        let trail = self.new_trail();
        let mut tunnel = Tunnel::new(Some(handle), TunnelState::Accepting);
        tunnel.stream = stream;
        tunnel.trail = trail;
        tunnel.created = Some(self.clock);
        tunnel.request = Some(Box::new(request));
        tunnel.sniffed = Some(Box::new(FirstBytes {
            bytes: Vec::new(),
            read: 0,
        }));
        self.tunnels.insert(id, tunnel);
        self.stats.tunnels_total += 1;
        self.retry_accept(handle, id);
        self.queue_send(handle);
    }

    /// The engine's 200 of a sniffed tunnel went out: read until the name is known.
    pub(super) fn sniff_answered(&mut self, handle: u64, id: TunnelId) {
        let deadline = self.clock + SNIFF_WAIT;
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        tunnel.state = TunnelState::Sniffing { deadline };
        self.unanswered.insert(deadline, Question::Tunnel(id));
        if tunnel.receiving == Receiving::Deferred {
            tunnel.receiving = Receiving::Open;
            self.read_first_bytes(handle, id);
        }
    }

    /// Reads what arrived on a sniffing tunnel, and decides once the bytes tell.
    pub(super) fn read_first_bytes(&mut self, handle: u64, id: TunnelId) {
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        let (stream, Some(first)) = (tunnel.stream, tunnel.sniffed.as_mut()) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let Some(h3) = conn.http.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 4096];
        while first.bytes.len() < SNIFF_LIMIT {
            let room = (SNIFF_LIMIT - first.bytes.len()).min(chunk.len());
            match h3.recv_body(&mut conn.wire, stream, &mut chunk[..room]) {
                Ok(len) if len > 0 => first.bytes.extend_from_slice(&chunk[..len]),
                _ => break,
            }
        }
        let finished = conn.wire.stream_finished(stream);
        let name = match sniff(&first.bytes) {
            Sniffed::NeedMore if !finished && first.bytes.len() < SNIFF_LIMIT => return,
            Sniffed::TlsServerName(name) | Sniffed::HttpHost(name) => Some(name.to_owned()),
            _ => None,
        };
        self.queue_send(handle);
        self.sniffed(id, name);
    }

    /// The sniff of a tunnel is over (with a name, or without one: nothing told, or
    /// `SNIFF_WAIT` passed): the rules decide again, then the hook and the host.
    pub(super) fn sniffed(&mut self, id: TunnelId, name: Option<String>) {
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        let TunnelState::Sniffing { deadline } = tunnel.state else {
            return;
        };
        self.unanswered.remove(deadline, Question::Tunnel(id));
        let Some(request) = tunnel.request.as_deref_mut() else {
            return;
        };
        request.sni = name.map(String::into_boxed_str);
        request.sniffed = true;
        tracing::debug!(tunnel = ?id, sni = request.sni.as_deref(), "sniffed");
        let RoleState::Edge(edge) = &self.role else {
            return;
        };
        match edge.screen(request) {
            Err(refusal) => {
                tracing::debug!(tunnel = ?id, ?refusal, "refused on its server name");
                self.note_end(id, crate::audit::Ending::Refused(refusal));
                self.stats.refused(Some(refusal.proxy_error()));
                self.reset_answered(id);
            }
            Ok(Screening::Pass | Screening::Sniff) => self.consult_tunnel_hook_again(id),
        }
    }

    /// Host: `accept_tunnel` on a sniffed tunnel, whose 200 is out: it opens at once, and
    /// the bytes read so far are the host's to read.
    pub(super) fn open_sniffed(&mut self, id: TunnelId) {
        self.start_clocks(id);
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        if let Some(trail) = tunnel.trail.as_mut() {
            trail.opened = Some(self.clock);
        }
        let unread = tunnel.sniffed.as_ref().is_some_and(|first| first.unread());
        let deferred = tunnel.receiving == Receiving::Deferred;
        if deferred {
            tunnel.receiving = Receiving::Open;
        }
        let finished = tunnel.conn.is_some_and(|handle| {
            self.conns
                .get(handle)
                .is_some_and(|conn| conn.wire.stream_finished(tunnel.stream))
        });
        if unread || deferred || finished {
            self.events.push_back(Event::TunnelReadable { tunnel: id });
        }
    }

    /// Ends a tunnel whose 200 went out, refused: both directions reset with
    /// `H3_CONNECT_ERROR`, as when a target refuses. No event: its host never saw it, or
    /// refused it itself.
    pub(super) fn reset_answered(&mut self, id: TunnelId) {
        if let Some((handle, stream)) = self.remove_tunnel(id) {
            if let Some(conn) = self.conns.get_mut(handle) {
                //# RFC 9114 §4.4: "A TCP connection error is signaled by abruptly
                //# terminating the stream."
                conn.abort_stream(stream, H3_CONNECT_ERROR);
            }
            self.queue_send(handle);
        }
    }

    /// `SNIFF_WAIT` passed on a sniffing tunnel: decide without a name.
    pub(super) fn sniff_expired(&mut self, id: TunnelId) {
        self.sniffed(id, None);
    }
}

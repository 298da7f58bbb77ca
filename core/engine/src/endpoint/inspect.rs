//! Edge: HTTP/1.1 inside a tunnel, shown to the `http_request` hook request by request
//! (for tunnels the tunnel hook passed with `TunnelVerdict::Inspect`).
//!
//! The client's bytes go from quiche through an [`HttpInspector`] to the host's
//! `tunnel_recv`: veil-proto's `RequestStream` says where each request head and each body
//! lies; a head waits for the hook, then goes on as it was, or edited, or not at all. Body
//! bytes (and the chunked coding's framing) pass through as they are, without a copy
//! beyond the one into the host's buffer. A denied request, or a stream that is not
//! HTTP/1.1, ends the client's direction there: the host gets a FIN (the origin answers
//! what came before and closes), and the client gets the denial's response after those
//! answers, then the end of the tunnel. Nothing about the requests is kept.

use veil_proto::http1::{
    HeadEdits, Limits, ProxyErrorType, ProxyName, ProxyStatus, RequestStream, Response, StatusCode,
    Step,
};

use super::{Endpoint, Receiving, RoleState, Sending, TunnelState};
use crate::error::TunnelError;
use crate::policy::{HttpRequestQuery, HttpVerdict};
use crate::types::{Recv, TunnelId};

/// Bytes read from quiche at a time while a head is incomplete.
const READ_CHUNK: usize = 16 * 1024;

/// The proxy name in the denial's Proxy-Status.
const VEIL: ProxyName<'static> = match ProxyName::new("veil") {
    Ok(name) => name,
    Err(_) => panic!("a valid proxy name"),
};

/// One inspected tunnel's client direction.
pub(super) struct HttpInspector {
    stream: RequestStream,
    /// Read from quiche, not handed to the host yet: at most a head's limit and a chunk.
    pending: Vec<u8>,
    /// A head, as the hook left it, for the host; `ready_at` of it handed over.
    ready: Vec<u8>,
    ready_at: usize,
    /// Bytes at the front of `pending` classified as pass-through.
    body: usize,
    /// The client's FIN was read from quiche.
    eof: bool,
    /// A request asked to change protocol (`Connection: upgrade`, a WebSocket): once it is
    /// through, the rest of the stream is not HTTP/1.1 and passes as it is. The edge does
    /// not read the origin's answer, so a refused upgrade also ends the inspection: the
    /// tunnel hook that asks for inspection should refuse upgrades it does not want.
    upgrade: bool,
    /// A request was denied (or the stream is not HTTP/1.1): nothing more goes to the host.
    denied: bool,
    /// The response the client is owed after the host's own bytes (what is left of it).
    pub(super) denial: Vec<u8>,
}

impl HttpInspector {
    pub(super) fn new() -> Self {
        Self {
            stream: RequestStream::new(Limits::default()),
            pending: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            body: 0,
            eof: false,
            upgrade: false,
            denied: false,
            denial: Vec::new(),
        }
    }

    /// Copies what is ready for the host into `out`: a head the hook has seen, then body
    /// bytes as they are; `None` when nothing is.
    fn deliver(&mut self, out: &mut [u8]) -> Option<usize> {
        if self.ready_at < self.ready.len() {
            let rest = &self.ready[self.ready_at..];
            let len = rest.len().min(out.len());
            out[..len].copy_from_slice(&rest[..len]);
            self.ready_at += len;
            return Some(len);
        }
        if self.body > 0 && !self.pending.is_empty() && !self.denied {
            let len = self.body.min(self.pending.len()).min(out.len());
            out[..len].copy_from_slice(&self.pending[..len]);
            self.pending.drain(..len);
            self.body -= len;
            self.stream.consume(len);
            return Some(len);
        }
        None
    }

    /// Starts with the bytes read while sniffing (they come first).
    pub(super) fn seed(&mut self, first: &mut super::sniffing::FirstBytes) {
        self.pending = first.drain();
    }

    /// Ends the client's direction with a response of `status` owed to the client.
    fn deny(&mut self, status: u16) {
        let status = StatusCode::new(status)
            .filter(|s| (400..600).contains(&s.as_u16()))
            .unwrap_or(StatusCode::FORBIDDEN);
        let response = Response::new(status)
            .with_proxy_status(ProxyStatus::new(VEIL).error(ProxyErrorType::HttpRequestDenied))
            .with_connection_close();
        let mut head = vec![0; response.encoded_len()];
        let len = response.encode(&mut head).unwrap_or(0);
        head.truncate(len);
        self.denial = head;
        self.denied = true;
        self.pending.clear();
        self.body = 0;
    }
}

/// What the splitter found at the front of the pending bytes, its borrow of them ended.
enum Next {
    /// A head: `len` bytes to replace with `head` (the hook's), or a status to deny with.
    Head {
        len: usize,
        upgrade: bool,
        head: Result<Vec<u8>, u16>,
    },
    /// Pass-through bytes.
    Body(usize),
    NeedMore,
    /// Not HTTP/1.1 (or beyond a limit): end with this status.
    Refuse(u16),
}

/// The head the host gets for `request` (the first `request.len()` bytes of `pending`)
/// under the hook's `verdict`, or the status of a denial.
fn rewrite(
    request: &veil_proto::http1::OriginRequest<'_>,
    pending: &[u8],
    verdict: HttpVerdict,
) -> Result<Vec<u8>, u16> {
    match verdict {
        HttpVerdict::Allow => Ok(pending[..request.len()].to_vec()),
        HttpVerdict::Deny { status } => Err(status),
        HttpVerdict::Edit { remove, add } => {
            let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
            let add: Vec<(&str, &str)> =
                add.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let edits = HeadEdits::new(&remove, &add).map_err(|error| {
                tracing::debug!(?error, "the http_request hook's edit is refused");
                500u16
            })?;
            let mut head = vec![0; request.head_len_with(&edits)];
            let written = request.write_head(&edits, &mut head).map_err(|_| 500u16)?;
            head.truncate(written);
            Ok(head)
        }
    }
}

impl Endpoint {
    /// `tunnel_recv` on an inspected tunnel.
    pub(super) fn inspected_recv(
        &mut self,
        id: TunnelId,
        out: &mut [u8],
    ) -> Result<Recv, TunnelError> {
        loop {
            let tunnel = self
                .tunnels
                .get_mut(&id)
                .ok_or(TunnelError::UnknownTunnel)?;
            let Some(inspector) = tunnel.inspector.as_deref_mut() else {
                return Err(TunnelError::InvalidState);
            };
            if let Some(len) = inspector.deliver(out) {
                return Ok(Recv { len, fin: false });
            }
            if inspector.denied {
                return Ok(self.inspected_fin(id));
            }
            if inspector.upgrade && inspector.stream.at_boundary() {
                inspector.upgrade = false;
                inspector.stream.pass_through();
            }
            let next = match inspector.stream.step(&inspector.pending) {
                Ok(Step::Head(request)) => {
                    let RoleState::Edge(edge) = &self.role else {
                        return Err(TunnelError::InvalidState);
                    };
                    let Some(edge_request) = tunnel.request.as_deref() else {
                        return Err(TunnelError::InvalidState);
                    };
                    let query = HttpRequestQuery {
                        tunnel: id,
                        target: &edge_request.target,
                        client: edge_request.client,
                        token_name: edge_request
                            .client
                            .token_index
                            .and_then(|index| edge.tokens.get(index))
                            .map(crate::config::Token::name),
                        certificate_identity: edge_request.certificate_identity.as_deref(),
                        request: &request,
                        head: &inspector.pending[..request.len()],
                    };
                    let verdict = self.policy.http_request(&query);
                    Next::Head {
                        len: request.len(),
                        upgrade: request.has_connection_option("upgrade"),
                        head: rewrite(&request, &inspector.pending, verdict),
                    }
                }
                Ok(Step::Body { len }) => Next::Body(len),
                Ok(Step::NeedMore) => Next::NeedMore,
                Err(error) => {
                    tracing::debug!(tunnel = ?id, ?error, "not HTTP/1.1: the tunnel's requests end");
                    Next::Refuse(error.status().as_u16())
                }
            };
            match next {
                Next::Head {
                    len,
                    upgrade,
                    head: Ok(head),
                } => {
                    inspector.upgrade = upgrade;
                    inspector.stream.consume(len);
                    inspector.pending.drain(..len);
                    inspector.ready = head;
                    inspector.ready_at = 0;
                }
                Next::Head {
                    head: Err(status), ..
                }
                | Next::Refuse(status) => {
                    tracing::debug!(tunnel = ?id, status, "http request denied");
                    inspector.deny(status);
                    self.stop_reading(id);
                }
                Next::Body(len) => inspector.body = len,
                Next::NeedMore if inspector.eof => {
                    // The client finished: between requests, or in the middle of a head
                    // nobody will complete (dropped).
                    inspector.pending.clear();
                    return Ok(self.inspected_fin(id));
                }
                Next::NeedMore => {
                    if self.read_for_inspection(id)? == 0 {
                        let eof = self
                            .tunnels
                            .get(&id)
                            .and_then(|t| t.inspector.as_deref())
                            .is_some_and(|i| i.eof);
                        if !eof {
                            return Ok(Recv { len: 0, fin: false });
                        }
                    }
                }
            }
        }
    }

    /// Reads what quiche holds of an inspected tunnel's client direction into its
    /// inspector (a chunk at most); returns how many bytes came.
    fn read_for_inspection(&mut self, id: TunnelId) -> Result<usize, TunnelError> {
        self.notice_stopped(id);
        let tunnel = self
            .tunnels
            .get_mut(&id)
            .ok_or(TunnelError::UnknownTunnel)?;
        let (handle, stream) = (tunnel.conn.ok_or(TunnelError::InvalidState)?, tunnel.stream);
        let Some(inspector) = tunnel.inspector.as_deref_mut() else {
            return Err(TunnelError::InvalidState);
        };
        let conn = self.conns.get_mut(handle).ok_or(TunnelError::Stream)?;
        let h3 = conn.http.as_mut().ok_or(TunnelError::Stream)?;
        let start = inspector.pending.len();
        inspector.pending.resize(start + READ_CHUNK, 0);
        let read = h3.recv_body(&mut conn.wire, stream, &mut inspector.pending[start..]);
        let len = match read {
            Ok(len) => len,
            Err(quiche::h3::Error::Done) => 0,
            Err(quiche::h3::Error::TransportError(quiche::Error::StreamReset(code))) => {
                inspector.pending.truncate(start);
                self.peer_reset(handle, stream, code);
                return Err(TunnelError::Stream);
            }
            Err(error) => {
                inspector.pending.truncate(start);
                tracing::debug!(tunnel = ?id, %error, "tunnel receive failed");
                self.fail_tunnel(id);
                return Err(TunnelError::Stream);
            }
        };
        inspector.pending.truncate(start + len);
        inspector.eof = conn.wire.stream_finished(stream);
        self.queue_send(handle);
        Ok(len)
    }

    /// Stops reading the client's direction of a tunnel whose requests were denied: what
    /// it still sends is not for the origin.
    fn stop_reading(&mut self, id: TunnelId) {
        let Some(tunnel) = self.tunnels.get(&id) else {
            return;
        };
        let (Some(handle), stream) = (tunnel.conn, tunnel.stream) else {
            return;
        };
        if let Some(conn) = self.conns.get_mut(handle) {
            let _ = conn
                .wire
                .stream_shutdown(stream, quiche::Shutdown::Read, super::H3_NO_ERROR);
        }
        self.queue_send(handle);
    }

    /// The client's direction of an inspected tunnel is over for the host: the FIN.
    fn inspected_fin(&mut self, id: TunnelId) -> Recv {
        // Already looked for if HTTP/3 read the FIN before, or from now on.
        let (handle, watched) = self.tunnels.get_mut(&id).map_or((None, false), |tunnel| {
            let before = std::mem::replace(&mut tunnel.receiving, Receiving::FinDelivered);
            (tunnel.conn, before == Receiving::FinRead)
        });
        self.finish_if_done(id);
        if !watched && self.tunnels.contains_key(&id) {
            if let Some(conn) = handle.and_then(|h| self.conns.get_mut(h)) {
                conn.peer_finished.push(id);
            }
        }
        Recv { len: 0, fin: true }
    }

    /// Writes what is left of a denial's response ahead of the host's FIN; `true` once it
    /// is all out (or there is none).
    pub(super) fn flush_denial(&mut self, id: TunnelId) -> bool {
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return true;
        };
        let (Some(handle), stream) = (tunnel.conn, tunnel.stream) else {
            return true;
        };
        let Some(inspector) = tunnel.inspector.as_deref_mut() else {
            return true;
        };
        if inspector.denial.is_empty() {
            return true;
        }
        let Some(conn) = self.conns.get_mut(handle) else {
            return true;
        };
        let Some(h3) = conn.http.as_mut() else {
            return true;
        };
        if let Ok(taken) = h3.send_body(&mut conn.wire, stream, &inspector.denial, false) {
            inspector.denial.drain(..taken);
            if taken > 0 {
                conn.held.wrote();
            }
        }
        let done = inspector.denial.is_empty();
        if !done {
            let _ = conn.wire.stream_writable(stream, 1);
        }
        self.queue_send(handle);
        done
    }

    /// Tunnels whose denial waits for room, and whose FIN waits behind it: on again.
    pub(super) fn retry_denials(&mut self, ids: Vec<TunnelId>) {
        for id in ids {
            if self.flush_denial(id) {
                if let Some(tunnel) = self.tunnels.get_mut(&id) {
                    if tunnel.sending == Sending::FinQueued
                        && matches!(tunnel.state, TunnelState::Open)
                    {
                        tunnel.sending = Sending::Open { blocked: false };
                        let _ = self.tunnel_finish(id);
                    }
                }
            }
        }
    }
}

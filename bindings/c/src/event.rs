//! Events as C reads them: one flat, tagged struct with inline text, so that nothing in
//! an event needs freeing and nothing in it points into the endpoint.

use std::ffi::c_char;
use std::fmt::Write as _;

use veil_engine::{
    ClientIdentity, CloseReason, Event, RefusedReason, TunnelId, TunnelKind, TunnelTarget,
};

use crate::addr::veil_sockaddr;
use crate::tunnel::veil_tunnel_kind;

/// Bytes of `veil_event.host` and `veil_event.text`, NUL included. A DNS name has at most
/// 253 characters.
pub const VEIL_EVENT_TEXT_LEN: usize = 256;

/// What happened (the tag of `veil_event`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_event_kind {
    /// A QUIC connection completed its handshake. `connection`, `peer`.
    VEIL_EVENT_CONNECTION_ESTABLISHED = 1,
    /// A QUIC connection is gone. `connection`, `text` (a reason, free of secrets).
    VEIL_EVENT_CONNECTION_LOST = 2,
    /// Edge: a tunnel request passed authentication and target checks. `tunnel`,
    /// `tunnel_kind`, `host`, `port`, `peer` (the client), `connection`, `token_index`.
    /// Check egress for every address a name resolves to (`veil_endpoint_check_egress`),
    /// dial, then `veil_endpoint_accept_tunnel` or `veil_endpoint_refuse_tunnel`.
    VEIL_EVENT_TUNNEL_REQUEST = 3,
    /// Client: the edge answered 2xx; the tunnel carries data. `tunnel`.
    VEIL_EVENT_TUNNEL_OPENED = 4,
    /// Client: the tunnel will not open; its id is dead. `tunnel`, `refused`, `status`,
    /// `error_code`, `text` (the raw `proxy-status` value, if any).
    VEIL_EVENT_TUNNEL_REFUSED = 5,
    /// Bytes (or the peer's FIN) can be read. Edge-triggered: call
    /// `veil_endpoint_tunnel_recv` until it returns `VEIL_DONE`, or this event does not
    /// come again. `tunnel`.
    VEIL_EVENT_TUNNEL_READABLE = 6,
    /// A tunnel whose last send took less than offered can take more. `tunnel`.
    VEIL_EVENT_TUNNEL_WRITABLE = 7,
    /// The tunnel is over; its id is dead. `tunnel`, `close`, `error_code`.
    VEIL_EVENT_TUNNEL_CLOSED = 8,
    /// UDP tunnel: datagrams are queued. Edge-triggered: call
    /// `veil_endpoint_tunnel_recv_datagram` until it returns `VEIL_DONE`, or this event does
    /// not come again. `tunnel`.
    VEIL_EVENT_TUNNEL_DATAGRAMS = 9,
    /// Edge: the ingress hook answered `VEIL_INGRESS_ASK`. `connection`, `peer`, `host`
    /// (the TLS server name, empty when none). Answer with `veil_endpoint_decide_ingress`.
    VEIL_EVENT_INGRESS_DECISION = 10,
    /// Edge: the tunnel hook answered `VEIL_TUNNEL_ASK`. The fields of
    /// `VEIL_EVENT_TUNNEL_REQUEST`. Answer with `veil_endpoint_decide_tunnel`.
    VEIL_EVENT_TUNNEL_DECISION = 11,
    /// Client with `VEIL_TRANSPORT_H2` or `_AUTO`: connect a TCP socket to `peer` (the
    /// edge) for `connection`, then call `veil_endpoint_tcp_connected`, or
    /// `veil_endpoint_tcp_closed` if it failed.
    VEIL_EVENT_TCP_DIAL = 12,
}

/// Why a client's tunnel did not open (`veil_event.refused`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_refused_reason {
    /// Not a `VEIL_EVENT_TUNNEL_REFUSED` event.
    VEIL_REFUSED_NONE = 0,
    /// The edge answered with a non-2xx `status` (and maybe a `proxy-status` in `text`).
    VEIL_REFUSED_STATUS = 1,
    /// No connection to the edge before the pending deadline, or the endpoint is closing.
    VEIL_REFUSED_EDGE_UNAVAILABLE = 2,
    /// The connection was lost before the edge answered.
    VEIL_REFUSED_CONNECTION_LOST = 3,
    /// The edge reset the request stream with HTTP/3 error `error_code`.
    VEIL_REFUSED_RESET = 4,
    /// The edge's answer was not a valid HTTP/3 response to a CONNECT.
    VEIL_REFUSED_MALFORMED_RESPONSE = 5,
    /// A reason this version of the ABI has no code for.
    VEIL_REFUSED_OTHER = 6,
    /// UDP tunnel: the edge's SETTINGS do not enable Extended CONNECT (RFC 9220); the
    /// request was never sent.
    VEIL_REFUSED_EXTENDED_CONNECT_UNSUPPORTED = 7,
}

/// Why a tunnel ended (`veil_event.close`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_close_reason {
    /// Not a `VEIL_EVENT_TUNNEL_CLOSED` event.
    VEIL_CLOSE_NONE = 0,
    /// Both directions finished cleanly.
    VEIL_CLOSE_FINISHED = 1,
    /// The peer reset the stream with HTTP/3 error `error_code` (`0x010f`,
    /// `H3_CONNECT_ERROR`: the far side's TCP connection was reset). When it comes after
    /// `veil_tunnel_recv` reported the FIN, the peer had finished and then stopped reading
    /// ours: every byte it sent was delivered, so close the local connection cleanly (read
    /// and discard until it closes), not with RST, which would drop what it has not read.
    VEIL_CLOSE_RESET = 2,
    /// The QUIC connection carrying the tunnel closed.
    VEIL_CLOSE_CONNECTION_LOST = 3,
    /// A reason this version of the ABI has no code for.
    VEIL_CLOSE_OTHER = 4,
    /// No datagram (UDP tunnel) or no byte (TCP tunnel, reset) either way for the
    /// configured idle timeout.
    VEIL_CLOSE_IDLE_TIMEOUT = 5,
    /// Edge: the embedder did not answer the tunnel's request in time; the engine refused it
    /// (504): stop what was started for it (close a dial under way).
    VEIL_CLOSE_REQUEST_TIMEOUT = 6,
    /// The tunnel lived its maximum duration (`tunnel_max_duration_ms`, or its rule's
    /// `max_duration_ms`): the engine reset it (close the TCP side with RST) or finished
    /// a UDP tunnel's stream.
    VEIL_CLOSE_MAX_DURATION = 7,
    /// Client, optimistic tunnels (`veil_config_set_optimistic`): the tunnel was reported
    /// open when its request left, and the edge then refused it with HTTP `status`. What
    /// was sent is lost: close the local connection with RST, as for a reset.
    VEIL_CLOSE_REFUSED = 8,
}

/// One event from `veil_endpoint_poll_event`. `kind` says which fields are meaningful
/// (see `veil_event_kind`); the others are zero. Plain data: copy it, keep it, nothing to
/// free; the text fields are NUL-terminated (truncated if longer).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct veil_event {
    /// What happened.
    pub kind: veil_event_kind,
    /// The tunnel (tunnel events).
    pub tunnel: u64,
    /// The QUIC connection (connection events and `VEIL_EVENT_TUNNEL_REQUEST`).
    pub connection: u64,
    /// The peer (`CONNECTION_ESTABLISHED`) or the requesting client (`TUNNEL_REQUEST`).
    pub peer: veil_sockaddr,
    /// `TUNNEL_REQUEST`: what the tunnel carries.
    pub tunnel_kind: veil_tunnel_kind,
    /// `TUNNEL_REQUEST`: the target host, a lowercased DNS name or an IP address (IPv6
    /// without brackets).
    pub host: [c_char; VEIL_EVENT_TEXT_LEN],
    /// `TUNNEL_REQUEST`: the target port.
    pub port: u16,
    /// `TUNNEL_REQUEST`: index of the token the client presented, in the order of
    /// `veil_config_add_token`; -1 when the edge has no tokens.
    pub token_index: i64,
    /// `TUNNEL_REFUSED`: why.
    pub refused: veil_refused_reason,
    /// `TUNNEL_REFUSED` with `VEIL_REFUSED_STATUS`, or `TUNNEL_CLOSED` with
    /// `VEIL_CLOSE_REFUSED`: the HTTP status (403, 407, 502, …).
    pub status: u16,
    /// `TUNNEL_CLOSED`: why.
    pub close: veil_close_reason,
    /// `TUNNEL_CLOSED` with `VEIL_CLOSE_RESET`, `TUNNEL_REFUSED` with
    /// `VEIL_REFUSED_RESET`: the HTTP/3 error code.
    pub error_code: u64,
    /// `CONNECTION_LOST`: the reason; `TUNNEL_REFUSED`: the `proxy-status` field value.
    pub text: [c_char; VEIL_EVENT_TEXT_LEN],
}

impl veil_event {
    fn new(kind: veil_event_kind) -> Self {
        Self {
            kind,
            tunnel: 0,
            connection: 0,
            peer: veil_sockaddr::unspecified(),
            tunnel_kind: veil_tunnel_kind::VEIL_TUNNEL_STREAM,
            host: [0; VEIL_EVENT_TEXT_LEN],
            port: 0,
            token_index: -1,
            refused: veil_refused_reason::VEIL_REFUSED_NONE,
            status: 0,
            close: veil_close_reason::VEIL_CLOSE_NONE,
            error_code: 0,
            text: [0; VEIL_EVENT_TEXT_LEN],
        }
    }

    fn tunnel(kind: veil_event_kind, tunnel: u64) -> Self {
        Self {
            tunnel,
            ..Self::new(kind)
        }
    }

    /// A tunnel request (TCP or UDP) or decision with its target and client.
    fn request(
        kind: veil_event_kind,
        tunnel_kind: veil_tunnel_kind,
        tunnel: TunnelId,
        target: &TunnelTarget,
        client: ClientIdentity,
    ) -> Self {
        let mut event = Self {
            tunnel: tunnel.0,
            connection: client.connection.0,
            peer: client.peer.into(),
            tunnel_kind,
            port: target.port,
            token_index: c_token_index(client.token_index),
            ..Self::new(kind)
        };
        copy_host(&mut event.host, target);
        event
    }

    /// `VEIL_EVENT_TUNNEL_REFUSED` with its reason.
    fn refused(tunnel: TunnelId, reason: RefusedReason) -> Self {
        let mut event = Self::tunnel(veil_event_kind::VEIL_EVENT_TUNNEL_REFUSED, tunnel.0);
        event.refused = match reason {
            RefusedReason::Status {
                status,
                proxy_status,
                ..
            } => {
                event.status = status;
                copy_text(&mut event.text, proxy_status.as_deref().unwrap_or(""));
                veil_refused_reason::VEIL_REFUSED_STATUS
            }
            RefusedReason::EdgeUnavailable => veil_refused_reason::VEIL_REFUSED_EDGE_UNAVAILABLE,
            RefusedReason::ConnectionLost => veil_refused_reason::VEIL_REFUSED_CONNECTION_LOST,
            RefusedReason::Reset { code } => {
                event.error_code = code;
                veil_refused_reason::VEIL_REFUSED_RESET
            }
            RefusedReason::MalformedResponse => {
                veil_refused_reason::VEIL_REFUSED_MALFORMED_RESPONSE
            }
            RefusedReason::ExtendedConnectUnsupported => {
                veil_refused_reason::VEIL_REFUSED_EXTENDED_CONNECT_UNSUPPORTED
            }
            _ => veil_refused_reason::VEIL_REFUSED_OTHER,
        };
        event
    }

    /// `VEIL_EVENT_TUNNEL_CLOSED` with its reason.
    fn closed(tunnel: TunnelId, reason: CloseReason) -> Self {
        let mut event = Self::tunnel(veil_event_kind::VEIL_EVENT_TUNNEL_CLOSED, tunnel.0);
        event.close = match reason {
            CloseReason::Finished => veil_close_reason::VEIL_CLOSE_FINISHED,
            CloseReason::Reset { code } => {
                event.error_code = code;
                veil_close_reason::VEIL_CLOSE_RESET
            }
            CloseReason::ConnectionLost => veil_close_reason::VEIL_CLOSE_CONNECTION_LOST,
            CloseReason::IdleTimeout => veil_close_reason::VEIL_CLOSE_IDLE_TIMEOUT,
            CloseReason::RequestTimeout => veil_close_reason::VEIL_CLOSE_REQUEST_TIMEOUT,
            CloseReason::MaxDuration => veil_close_reason::VEIL_CLOSE_MAX_DURATION,
            CloseReason::Refused { status } => {
                event.status = status;
                veil_close_reason::VEIL_CLOSE_REFUSED
            }
            _ => veil_close_reason::VEIL_CLOSE_OTHER,
        };
        event
    }

    /// The C form of an engine event; `None` for an event this version does not know
    /// (the engine's `Event` may grow), which the caller skips.
    pub(crate) fn from_engine(event: Event) -> Option<Self> {
        use veil_event_kind::{
            VEIL_EVENT_CONNECTION_ESTABLISHED, VEIL_EVENT_CONNECTION_LOST,
            VEIL_EVENT_TUNNEL_DATAGRAMS, VEIL_EVENT_TUNNEL_OPENED, VEIL_EVENT_TUNNEL_READABLE,
            VEIL_EVENT_TUNNEL_WRITABLE,
        };
        Some(match event {
            Event::TcpDial { connection, to } => Self {
                connection: connection.0,
                peer: to.into(),
                ..Self::new(veil_event_kind::VEIL_EVENT_TCP_DIAL)
            },
            Event::ConnectionEstablished { connection, peer } => Self {
                connection: connection.0,
                peer: peer.into(),
                ..Self::new(VEIL_EVENT_CONNECTION_ESTABLISHED)
            },
            Event::ConnectionLost { connection, reason } => {
                let mut event = Self {
                    connection: connection.0,
                    ..Self::new(VEIL_EVENT_CONNECTION_LOST)
                };
                copy_text(&mut event.text, &reason);
                event
            }
            Event::TunnelRequest {
                tunnel,
                kind,
                target,
                client,
            } => {
                // A kind this version of the ABI cannot name: the engine reports only the
                // kinds `veil_config_set_tunnel_kinds` allowed, all of them named.
                Self::request(
                    veil_event_kind::VEIL_EVENT_TUNNEL_REQUEST,
                    c_tunnel_kind(kind)?,
                    tunnel,
                    &target,
                    client,
                )
            }
            Event::TunnelDecision {
                tunnel,
                kind,
                target,
                client,
            } => Self::request(
                veil_event_kind::VEIL_EVENT_TUNNEL_DECISION,
                c_tunnel_kind(kind)?,
                tunnel,
                &target,
                client,
            ),
            Event::IngressDecision {
                connection,
                peer,
                server_name,
            } => {
                let mut event = Self {
                    connection: connection.0,
                    peer: peer.into(),
                    ..Self::new(veil_event_kind::VEIL_EVENT_INGRESS_DECISION)
                };
                copy_text(&mut event.host, server_name.as_deref().unwrap_or(""));
                event
            }
            Event::TunnelDatagrams { tunnel } => {
                Self::tunnel(VEIL_EVENT_TUNNEL_DATAGRAMS, tunnel.0)
            }
            Event::TunnelOpened { tunnel } => Self::tunnel(VEIL_EVENT_TUNNEL_OPENED, tunnel.0),
            Event::TunnelRefused { tunnel, reason } => Self::refused(tunnel, reason),
            Event::TunnelReadable { tunnel } => Self::tunnel(VEIL_EVENT_TUNNEL_READABLE, tunnel.0),
            Event::TunnelWritable { tunnel } => Self::tunnel(VEIL_EVENT_TUNNEL_WRITABLE, tunnel.0),
            Event::TunnelClosed { tunnel, reason } => Self::closed(tunnel, reason),
            _ => return None,
        })
    }
}

/// Copies `text` into a fixed C buffer, truncated at a character boundary, NUL-terminated.
/// The C name of a tunnel kind; `None` for one this version of the ABI cannot name.
pub(crate) fn c_tunnel_kind(kind: TunnelKind) -> Option<veil_tunnel_kind> {
    match kind {
        TunnelKind::Stream => Some(veil_tunnel_kind::VEIL_TUNNEL_STREAM),
        TunnelKind::Udp => Some(veil_tunnel_kind::VEIL_TUNNEL_UDP),
        _ => None,
    }
}

/// A client's token index as C reads it: -1 when there is none.
pub(crate) fn c_token_index(index: Option<usize>) -> i64 {
    index
        .and_then(|index| i64::try_from(index).ok())
        .unwrap_or(-1)
}

/// Writes a target's host (a name, or an IP address without brackets) into `out`.
pub(crate) fn copy_host(out: &mut [c_char; VEIL_EVENT_TEXT_LEN], target: &TunnelTarget) {
    let mut host = String::new();
    let _ = write!(host, "{}", target.host);
    copy_text(out, &host);
}

pub(crate) fn copy_text(out: &mut [c_char; VEIL_EVENT_TEXT_LEN], text: &str) {
    let mut end = text.len().min(VEIL_EVENT_TEXT_LEN - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    for (slot, byte) in out
        .iter_mut()
        .zip(text.as_bytes().get(..end).unwrap_or_default())
    {
        *slot = c_char::from_ne_bytes([*byte]);
    }
    if let Some(nul) = out.get_mut(end) {
        *nul = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::net::SocketAddr;

    use veil_engine::ConnectionHandle;

    use super::*;

    fn text(buf: &[c_char; VEIL_EVENT_TEXT_LEN]) -> String {
        // SAFETY: copy_text always leaves a NUL inside the buffer.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_tunnel_request_carries_target_and_client() {
        let peer: SocketAddr = "[2001:db8::7]:5555".parse().expect("address");
        let event = veil_event::from_engine(Event::TunnelRequest {
            tunnel: TunnelId(9),
            kind: TunnelKind::Stream,
            target: TunnelTarget::new("2001:db8::1".parse::<std::net::IpAddr>().expect("ip"), 443),
            client: ClientIdentity {
                peer,
                token_index: Some(2),
                connection: ConnectionHandle(4),
            },
        })
        .expect("known event");
        assert_eq!(event.kind, veil_event_kind::VEIL_EVENT_TUNNEL_REQUEST);
        assert_eq!((event.tunnel, event.connection, event.port), (9, 4, 443));
        assert_eq!(text(&event.host), "2001:db8::1");
        assert_eq!(event.token_index, 2);
        // SAFETY: `event.peer` is initialised.
        let read = unsafe { crate::addr::read(&raw const event.peer) };
        assert_eq!(read, Ok(peer));
    }

    #[test]
    fn long_text_is_truncated_on_a_character_boundary() {
        let reason = "é".repeat(200);
        let event = veil_event::from_engine(Event::ConnectionLost {
            connection: ConnectionHandle(1),
            reason,
        })
        .expect("known event");
        let text = text(&event.text);
        assert_eq!(text.len(), 254);
        assert!(text.chars().all(|c| c == 'é'));
    }
}

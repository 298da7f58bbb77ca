//! veil's sans-IO engine.
//!
//! Drives quiche and quiche's HTTP/3 for both roles (client and edge). No sockets, no
//! runtime, no threads: the caller feeds datagrams and time in, and drains datagrams,
//! timeouts and events out. See [`Endpoint`].
//!
//! # Run loop (every driver)
//!
//! 1. One input: [`Endpoint::handle_datagram`], [`Endpoint::handle_timeout`], or a call
//!    from the host (`open_tunnel`, `accept_tunnel`, `tunnel_send`, …).
//! 2. Drain [`Endpoint::poll_transmit`] (send each [`Transmit`], splitting GSO batches if
//!    the socket cannot) and [`Endpoint::poll_event`].
//! 3. Re-arm one timer at [`Endpoint::poll_timeout`], then wait.
//!
//! # Roles
//!
//! - **Edge**: every CONNECT or CONNECT-UDP that passes authentication
//!   (`proxy-authorization: Bearer`), authority validation and, for IP literals, egress
//!   policy, and that the [`Policy`] hooks pass, becomes [`Event::TunnelRequest`], with its
//!   [`TunnelKind`]; the host resolves names, dials the address (and from the local
//!   address) [`Endpoint::egress_for`] picks, and answers [`Endpoint::accept_tunnel`] or
//!   [`Endpoint::refuse_tunnel`] with a [`Refusal`] (a status and an RFC 9209
//!   Proxy-Status). Every request is answered: a kind the host does not serve
//!   ([`EdgeConfig::serves`]) gets 501 from the engine, and a request the host leaves
//!   unanswered for [`EdgeConfig::request_timeout`] gets 504. [`Endpoint::shutdown`] runs
//!   the whole graceful shutdown.
//!   [`Endpoint::go_away`] starts a graceful drain: HTTP/3 GOAWAY on every connection, no
//!   new connections; open tunnels finish, clients send new ones elsewhere.
//! - **Client**: [`Endpoint::open_tunnel`] multiplexes every tunnel on one QUIC connection
//!   to the edge, connecting on demand and reconnecting with backoff; tunnels opened while
//!   it is down wait in a bounded queue until a deadline.
//!
//! # Tunnels
//!
//! A tunnel is one HTTP/3 CONNECT stream. `tunnel_send` returns how much quiche took
//! (flow control bounds it; `TunnelWritable` says when to retry), `tunnel_recv` reads
//! straight from quiche (`TunnelReadable` is edge-triggered), `tunnel_finish` sends FIN
//! (half-close), `tunnel_abort` resets both ways with [`H3_CONNECT_ERROR`] (a direction the
//! host already finished is left to deliver its bytes and FIN: the peer is only asked to
//! stop sending, reads to the FIN, then sees the tunnel close as reset).
//!
//! # UDP tunnels (CONNECT-UDP, RFC 9298)
//!
//! [`Endpoint::open_udp_tunnel`] sends an Extended CONNECT (`:protocol connect-udp`, the
//! target in a `:path` expanded from the configured URI template); the edge checks it like
//! a CONNECT and reports [`Event::TunnelRequest`] of kind [`TunnelKind::Udp`], answered
//! with the same `accept_tunnel` / `refuse_tunnel`. UDP payloads go with
//! `tunnel_send_datagram` (dropped and counted, never fragmented, when they do not fit;
//! in capsules, queued behind the stream up to a bound first) and come from
//! `tunnel_recv_datagram` ([`Event::TunnelDatagrams`] is edge-triggered). Each tunnel
//! sends in QUIC DATAGRAM frames when both sides negotiated HTTP/3 datagrams and in
//! DATAGRAM capsules on its stream otherwise, decided when it opens; it receives both.
//! A UDP tunnel ends with its stream: `tunnel_finish` (FIN, the peer's engine answers
//! with its own), `tunnel_abort`, or the idle timeout ([`CloseReason::IdleTimeout`]).
//!
//! # Time
//!
//! quiche reads the system clock for its own timers (loss detection, idle timeout,
//! pacing), so the engine is not time-pure; everything else uses the caller's `now`.

pub mod audit;
mod cid;
mod config;
mod connect;
mod dns;
pub mod egress;
mod endpoint;
mod error;
/// The HTTP/2 on-ramp's session (RFC 9113), for hosts that accept CONNECT tunnels over
/// TCP+TLS. Public only for the fuzz targets and the interop tests; not a stable API.
#[doc(hidden)]
pub mod h1;
pub mod h2;
mod ip;
pub mod lanes;
mod map;
pub mod metrics;
pub mod policy;
mod raw_echo;
pub mod relay;
mod reset;
mod retry;
pub mod rules;
pub mod socket_buffers;
mod steer;
mod tcp;
mod tls;
mod transmit;
mod transport;
mod types;
mod udp;
mod wire;

pub use audit::AuditRecord;
pub use cid::{CidLayout, GENERATION_BYTE};
pub use config::{
    AckDelayPaths, ClientConfig, Config, CongestionControl, EdgeConfig, Pem, QuicConfig,
    RetryPolicy, RoleConfig, Secret, Token, Transport, Verify, format_fingerprint,
    parse_fingerprint,
};
pub use dns::DnsCacheConfig;
pub use endpoint::{
    CONNECTION_ATTEMPT_DELAY, EgressPlan, Endpoint, FALLBACK_DELAY, IpDelivery,
    MAX_EARLY_RESETS_PER_10S, MAX_RESOLVED, ProxyProtocolVersion, ShutdownPlan, TCP_LAST_WRITES,
    TcpRefused,
};
pub use error::{ConfigError, OpenError, TunnelError};
pub use policy::{
    DefaultPolicy, Egress, EgressQuery, EgressVerdict, FlowProtocol, HttpRequestQuery, HttpVerdict,
    IngressQuery, IngressVerdict, IpFlowQuery, IpFlowVerdict, Policy, TagError, Tags, TunnelQuery,
    TunnelVerdict,
};
pub use raw_echo::RawEcho;
pub use steer::{BpfInstruction, driver_steering, upgrade_steering};
pub use types::{
    ClientIdentity, CloseReason, ConnectionHandle, DURATION_BUCKETS_MS, DurationHistogram,
    EndpointStats, Event, Host, Http2Bounds, IP_DROP_CAUSES, InvalidTarget, IpDropCounts, IpFlowId,
    IpFlowProtocol, Name, REFUSAL_ERRORS, Recv, RecvMeta, Refusal, RefusalCounts, RefusedReason,
    Role, Transmit, TunnelId, TunnelKind, TunnelKinds, TunnelTarget,
};
pub use veil_proto::http1::ProxyErrorType;
/// CONNECT-IP's vocabulary, from veil-proto: what a client asks to reach and what the edge
/// assigns and routes.
pub use veil_proto::masque::ip::{
    IpAddressRange, IpPrefix, IpProto, Scope as IpScope, Target as IpScopeTarget,
};

/// With pacing on, a packet whose release time is at most this far ahead is sent now;
/// later ones are held until their time.
pub const PACING_HORIZON: std::time::Duration = std::time::Duration::from_millis(1);

/// A connection whose smallest round trip during its handshake took longer than this is
/// on a path longer than a LAN ([`Endpoint::long_paths`]): a LAN's or a host's own round
/// trips take well under a millisecond, a handshake's a little more (the peer's
/// certificate work is inside it), and paths between cities take more.
pub const LONG_PATH_RTT: std::time::Duration = std::time::Duration::from_millis(5);

/// HTTP/3 error code for a CONNECT tunnel whose target connection was reset or failed.
//# RFC 9114 §8.1: "H3_CONNECT_ERROR (0x010f): The TCP connection established in response
//# to a CONNECT request was reset or abnormally closed."
pub const H3_CONNECT_ERROR: u64 = 0x010f;

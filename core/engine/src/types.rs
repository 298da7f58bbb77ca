//! The values that cross the [`Endpoint`](crate::Endpoint) API: datagram metadata, ids,
//! events and the answers a host gives.

use std::fmt;
use std::net::SocketAddr;

use veil_proto::http1::ProxyErrorType;
pub use veil_proto::masque::udp::{Host, Name};

/// Where a received datagram came from and which local address it arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// The peer's address.
    pub from: SocketAddr,
    /// The local address the datagram was received on (`IP_PKTINFO` or the bound address).
    pub to: SocketAddr,
}

/// A datagram (or a GSO batch of them) that [`Endpoint::poll_transmit`](crate::Endpoint::poll_transmit)
/// wrote into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// Local address to send from.
    pub from: SocketAddr,
    /// Bytes written at the start of the buffer.
    pub len: usize,
    /// `Some(n)`: the `len` bytes are consecutive datagrams of `n` bytes each (the last may
    /// be shorter), to be sent with UDP GSO or split by the caller. `None`: one datagram.
    pub segment_size: Option<usize>,
}

/// Names one tunnel (one CONNECT stream) for its whole life. Never reused by an endpoint.
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug, PartialOrd, Ord)]
pub struct TunnelId(pub u64);

/// Names one flow that an edge with `EdgeConfig::ip_decap` took out of a CONNECT-IP tunnel
/// (`Event::IpFlowOpened`). Never reused by an endpoint, even for the same 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpFlowId(pub u64);

/// What a decapsulated flow carries (`Event::IpFlowOpened`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFlowProtocol {
    /// UDP: the host relays payloads through a UDP socket connected to the destination.
    Udp,
    /// ICMP or `ICMPv6` echo: the host relays whole ICMP messages through a ping socket
    /// (`SOCK_DGRAM`, `IPPROTO_ICMP`/`IPPROTO_ICMPV6`) to the destination.
    IcmpEcho,
}

/// Names one QUIC connection of an endpoint. Never reused by an endpoint.
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnectionHandle(pub u64);

/// What a tunnel carries.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// HTTP/3 CONNECT (RFC 9114 §4.4): a TCP byte stream.
    Stream,
    /// CONNECT-UDP (RFC 9298): UDP payloads in HTTP Datagrams.
    Udp,
    /// CONNECT-IP (RFC 9484): IP packets in HTTP Datagrams, to and from addresses the
    /// edge assigns from its pools (`EdgeConfig::ip_pools`).
    Ip,
}

/// The kinds of tunnel an edge's host serves (`EdgeConfig::serves`). The engine answers a
/// request of any other kind itself, with 501 (RFC 9110 §15.6.2: "the server does not
/// support the functionality required to fulfill the request"), so that no request waits
/// for a host that will never answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelKinds {
    stream: bool,
    udp: bool,
    ip: bool,
}

impl TunnelKinds {
    /// Every kind the engine knows.
    pub const ALL: Self = Self {
        stream: true,
        udp: true,
        ip: true,
    };
    /// No kind at all: every request is answered 501.
    pub const NONE: Self = Self {
        stream: false,
        udp: false,
        ip: false,
    };

    /// Only `kind`.
    #[must_use]
    pub const fn only(kind: TunnelKind) -> Self {
        Self::NONE.with(kind)
    }

    /// These kinds and `kind`.
    #[must_use]
    pub const fn with(self, kind: TunnelKind) -> Self {
        match kind {
            TunnelKind::Stream => Self {
                stream: true,
                ..self
            },
            TunnelKind::Udp => Self { udp: true, ..self },
            TunnelKind::Ip => Self { ip: true, ..self },
        }
    }

    /// Whether `kind` is among them.
    pub const fn contains(self, kind: TunnelKind) -> bool {
        match kind {
            TunnelKind::Stream => self.stream,
            TunnelKind::Udp => self.udp,
            TunnelKind::Ip => self.ip,
        }
    }
}

impl Default for TunnelKinds {
    fn default() -> Self {
        Self::ALL
    }
}

/// Which side an endpoint plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens tunnels to an edge.
    Client,
    /// Accepts tunnels from clients.
    Edge,
}

/// Where a tunnel goes: a host (DNS name or IP address) and a TCP port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TunnelTarget {
    /// A validated, lowercased DNS name, or an IP address.
    pub host: Host,
    /// The port; CONNECT targets always carry one.
    pub port: u16,
}

impl TunnelTarget {
    /// A target at `host`:`port`.
    pub fn new(host: impl Into<Host>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl std::str::FromStr for TunnelTarget {
    type Err = InvalidTarget;

    /// Parses `host:port` as the edge parses a CONNECT `:authority`: IPv6 in brackets, a
    /// port of 1–65535, and every spelling of an address read as that address.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        crate::connect::parse_target(text).ok_or(InvalidTarget)
    }
}

/// A text that is not a `host:port` target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTarget;

impl fmt::Display for InvalidTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "not a HOST:PORT target (a DNS name or an IP address, IPv6 in brackets; port 1 to \
             65535)",
        )
    }
}

impl std::error::Error for InvalidTarget {}

impl fmt::Display for TunnelTarget {
    /// `host:port`, with IPv6 addresses in brackets: the form of an HTTP authority.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(std::net::IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

/// Who asked for a tunnel, as far as the edge knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The client's address as the edge sees it.
    pub peer: SocketAddr,
    /// Index in `EdgeConfig::tokens` of the token the client presented; `None` when the
    /// edge has no tokens configured. `Endpoint::token_name` gives its name.
    pub token_index: Option<usize>,
    /// The connection the request arrived on.
    pub connection: ConnectionHandle,
}

/// Why the edge refuses a tunnel. Each maps to an HTTP status and an RFC 9209
/// Proxy-Status error type, sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The target address is forbidden by egress policy: 403, `destination_ip_prohibited`.
    Prohibited,
    /// Policy denies this request (for example a name on a blocklist): 403,
    /// `http_request_denied`.
    Denied,
    /// The name did not resolve: 502, `dns_error`.
    DnsError,
    /// The resolver did not answer in time: 504, `dns_timeout`.
    DnsTimeout,
    /// The target refused the TCP connection: 502, `connection_refused`.
    ConnectionRefused,
    /// The TCP connection attempt timed out: 504, `connection_timeout`.
    ConnectionTimeout,
    /// No route to the target: 502, `destination_ip_unroutable`.
    Unreachable,
    /// The edge is at its limit of outbound connections: 503, `connection_limit_reached`.
    ConnectionLimit,
    /// Anything else that went wrong on the edge: 500, `proxy_internal_error`.
    Internal,
}

impl Refusal {
    /// Every refusal, for tests and tables.
    pub const ALL: [Self; 9] = [
        Self::Prohibited,
        Self::Denied,
        Self::DnsError,
        Self::DnsTimeout,
        Self::ConnectionRefused,
        Self::ConnectionTimeout,
        Self::Unreachable,
        Self::ConnectionLimit,
        Self::Internal,
    ];

    /// The refusal a failed dial, socket or bind becomes, for every host alike: refused
    /// and timed-out connections, unreachable hosts and networks keep their meaning;
    /// anything else is the edge's own failure.
    pub fn from_io_error(error: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match error.kind() {
            ErrorKind::ConnectionRefused => Self::ConnectionRefused,
            ErrorKind::TimedOut => Self::ConnectionTimeout,
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => Self::Unreachable,
            _ => Self::Internal,
        }
    }

    /// [`from_io_error`](Self::from_io_error) for an OS error number (`errno`), as a host
    /// written in C has it.
    pub fn from_errno(errno: i32) -> Self {
        Self::from_io_error(&std::io::Error::from_raw_os_error(errno))
    }

    /// The HTTP status the client receives.
    pub const fn status(self) -> u16 {
        match self {
            Self::Prohibited | Self::Denied => 403,
            Self::DnsError | Self::ConnectionRefused | Self::Unreachable => 502,
            Self::DnsTimeout | Self::ConnectionTimeout => 504,
            Self::ConnectionLimit => 503,
            Self::Internal => 500,
        }
    }

    /// The Proxy-Status error type the client receives (RFC 9209 §2.3).
    pub const fn proxy_error(self) -> ProxyErrorType {
        match self {
            Self::Prohibited => ProxyErrorType::DestinationIpProhibited,
            Self::Denied => ProxyErrorType::HttpRequestDenied,
            Self::DnsError => ProxyErrorType::DnsError,
            Self::DnsTimeout => ProxyErrorType::DnsTimeout,
            Self::ConnectionRefused => ProxyErrorType::ConnectionRefused,
            Self::ConnectionTimeout => ProxyErrorType::ConnectionTimeout,
            Self::Unreachable => ProxyErrorType::DestinationIpUnroutable,
            Self::ConnectionLimit => ProxyErrorType::ConnectionLimitReached,
            Self::Internal => ProxyErrorType::ProxyInternalError,
        }
    }

    /// The refusal an edge's answer stands for: the one whose status and Proxy-Status
    /// error type these are; `None` for an answer no refusal gives (a 400, a 407, a 501,
    /// or an edge that is not veil).
    pub fn from_response(status: u16, proxy_error: Option<ProxyErrorType>) -> Option<Self> {
        let error = proxy_error?;
        Self::ALL
            .into_iter()
            .find(|refusal| refusal.status() == status && refusal.proxy_error() == error)
    }
}

/// Why a client's tunnel did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusedReason {
    /// The edge answered with a status other than 2xx.
    Status {
        /// The HTTP status (`407` missing token, `403` wrong token or forbidden target, …).
        status: u16,
        /// The Proxy-Status error type, when the edge sent one veil knows.
        proxy_error: Option<ProxyErrorType>,
        /// The raw `proxy-status` field value, when present.
        proxy_status: Option<String>,
    },
    /// No connection to the edge could be had before the pending deadline, or the endpoint
    /// is closing.
    EdgeUnavailable,
    /// The connection was lost before the edge answered (and the pending deadline had
    /// passed, so the request was not retried on a new connection).
    ConnectionLost,
    /// The edge reset the request stream before answering, with this HTTP/3 error code.
    Reset {
        /// The application error code from `RESET_STREAM` or `STOP_SENDING`.
        code: u64,
    },
    /// The edge's answer was not valid HTTP/3 for a CONNECT (no `:status`, 1xx only, …).
    MalformedResponse,
    /// The edge's SETTINGS do not enable Extended CONNECT (RFC 9220), which a UDP tunnel
    /// needs; the request was never sent.
    ExtendedConnectUnsupported,
}

impl RefusedReason {
    /// The edge's [`Refusal`], when its answer was one (a status and Proxy-Status error
    /// type that a refusal gives).
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Self::Status {
                status,
                proxy_error,
                ..
            } => Refusal::from_response(*status, *proxy_error),
            _ => None,
        }
    }
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Both directions finished cleanly (FIN sent and FIN received and read).
    Finished,
    /// The peer reset the stream (or asked us to stop sending) with this HTTP/3 error code;
    /// `H3_CONNECT_ERROR` (0x010f) means the target connection was reset.
    ///
    /// When it comes after `tunnel_recv` reported the FIN, the peer had finished its
    /// direction and then stopped ours: everything it sent was delivered. A host then
    /// closes its side cleanly (the tokio adapter half-closes, reads and discards until the
    /// application closes), not with a TCP reset, which would drop what is still unread.
    Reset {
        /// The application error code from `RESET_STREAM` or `STOP_SENDING`.
        code: u64,
    },
    /// The QUIC connection carrying the tunnel closed.
    ConnectionLost,
    /// A UDP tunnel carried no datagram either way for `QuicConfig::udp_idle_timeout` (the
    /// engine finished its stream), or a TCP tunnel no byte for
    /// `QuicConfig::tcp_idle_timeout` (the engine reset it: close the TCP side with RST).
    IdleTimeout,
    /// The tunnel lived its maximum duration (`QuicConfig::tunnel_max_duration`, or its
    /// edge rule's `max_duration_ms`): the engine reset it (TCP: close the TCP side with
    /// RST) or finished its stream (UDP, IP).
    MaxDuration,
    /// Edge: the host did not answer the `TunnelRequest` within the request timeout, and
    /// the engine refused it itself (504, `connection_timeout`): stop what was started for
    /// it (a dial still under way must not hold a socket for nobody).
    RequestTimeout,
    /// Client, optimistic tunnels (`ClientConfig::optimistic`): the host heard
    /// `TunnelOpened` when the request left, and the edge then answered with this non-2xx
    /// `status`. Whatever the host sent is lost with the tunnel: close the TCP side with
    /// RST, as for a reset.
    Refused {
        /// The edge's HTTP status (`403` forbidden target, `502` target unreachable, …).
        status: u16,
    },
}

/// What [`Endpoint::poll_event`](crate::Endpoint::poll_event) reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// `TunnelRequest` holds a DNS name inline (up to 253 bytes) rather than on the heap; events
// are a handful per tunnel, so their size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// Client (`Transport::H2`): connect a TCP socket to `to` (the edge's TCP listener)
    /// for `connection`, then call `Endpoint::tcp_connected`, or `Endpoint::tcp_closed` if
    /// it failed; from then on move its bytes as for the edge's TCP on-ramp
    /// (`tcp_input`, `poll_tcp_ready`, `tcp_transmit`, close on `ConnectionLost`).
    TcpDial {
        /// The connection the socket is for.
        connection: ConnectionHandle,
        /// The edge's address.
        to: SocketAddr,
    },
    /// A QUIC connection completed its handshake (and HTTP/3 is set up on it).
    ConnectionEstablished {
        /// The connection.
        connection: ConnectionHandle,
        /// The peer's address.
        peer: SocketAddr,
    },
    /// A QUIC connection is gone (closed by either side, timed out or failed its handshake).
    ConnectionLost {
        /// The connection.
        connection: ConnectionHandle,
        /// A human-readable reason, free of secrets.
        reason: String,
    },
    /// Edge: a request passed authentication and target checks, and is of a kind the host
    /// serves (`EdgeConfig::serves`). Answer it with `accept_tunnel` or `refuse_tunnel`
    /// within `EdgeConfig::request_timeout`, or the engine refuses it (504,
    /// `connection_timeout`) and a late answer gets `UnknownTunnel`.
    ///
    /// - [`TunnelKind::Stream`] (CONNECT): check egress policy for names, resolve, dial.
    /// - [`TunnelKind::Udp`] (CONNECT-UDP, RFC 9298; IP literals were checked against
    ///   egress policy already): check names, resolve once, bind and connect a UDP socket.
    TunnelRequest {
        /// The tunnel to answer.
        tunnel: TunnelId,
        /// What it carries.
        kind: TunnelKind,
        /// Where the client wants to go.
        target: TunnelTarget,
        /// Who asks.
        client: ClientIdentity,
    },
    /// Edge: the ingress hook asked the host about a new connection
    /// ([`IngressVerdict::Ask`](crate::IngressVerdict::Ask)). No request on it is read until
    /// `Endpoint::decide_ingress` answers, within `EdgeConfig::request_timeout` or the
    /// engine closes the connection.
    IngressDecision {
        /// The connection.
        connection: ConnectionHandle,
        /// The client's address.
        peer: SocketAddr,
        /// The TLS server name it asked for (SNI), if any.
        server_name: Option<String>,
    },
    /// Edge: the tunnel hook asked the host about a request
    /// ([`TunnelVerdict::Ask`](crate::TunnelVerdict::Ask)). Answer with
    /// `Endpoint::decide_tunnel` within `EdgeConfig::request_timeout`, or the engine
    /// refuses it (504); a pass or redirect then becomes a `TunnelRequest`.
    TunnelDecision {
        /// The tunnel to decide on.
        tunnel: TunnelId,
        /// What it would carry.
        kind: TunnelKind,
        /// Where the client wants to go.
        target: TunnelTarget,
        /// Who asks.
        client: ClientIdentity,
    },
    /// Client: the edge assigned addresses or advertised routes on an IP tunnel (each
    /// capsule replaces what the last said): read them with `ip_tunnel_addresses` and
    /// `ip_tunnel_routes`, and give them to the TUN device.
    IpTunnelConfigured {
        /// The tunnel.
        tunnel: TunnelId,
    },
    /// Edge with `EdgeConfig::ip_decap`: the first packet of a new flow came out of a
    /// CONNECT-IP tunnel, passed the engine's checks and the `ip_flow` hook. Open a socket
    /// to `destination` (UDP, or a ping socket for ICMP echo), then read the flow with
    /// `ip_flow_recv` and answer with `ip_flow_send`.
    IpFlowOpened {
        /// The flow.
        flow: IpFlowId,
        /// The tunnel it came out of.
        tunnel: TunnelId,
        /// What it carries.
        protocol: IpFlowProtocol,
        /// Where the client sent it (port 0 for ICMP echo).
        destination: SocketAddr,
    },
    /// Edge with `EdgeConfig::ip_decap`: payloads are queued on this flow. Edge-triggered,
    /// like `TunnelDatagrams`: call `ip_flow_recv` until it returns `Ok(None)`.
    IpFlowReadable {
        /// The flow.
        flow: IpFlowId,
    },
    /// Edge with `EdgeConfig::ip_decap`: the flow is over (idle for
    /// `QuicConfig::udp_idle_timeout`, its tunnel ended, or the host closed it); close its
    /// socket. Its id is dead; a later packet of the same 5-tuple opens a new flow.
    IpFlowClosed {
        /// The flow.
        flow: IpFlowId,
    },
    /// Datagrams are queued for this UDP tunnel. Edge-triggered: call
    /// `tunnel_recv_datagram` until it returns `Ok(None)`, or this event does not come
    /// again.
    TunnelDatagrams {
        /// The tunnel.
        tunnel: TunnelId,
    },
    /// Client: the edge answered 2xx; the tunnel carries bytes both ways.
    TunnelOpened {
        /// The tunnel.
        tunnel: TunnelId,
    },
    /// Client: the tunnel will not open. Its id is dead.
    TunnelRefused {
        /// The tunnel.
        tunnel: TunnelId,
        /// Why.
        reason: RefusedReason,
    },
    /// Bytes (or the peer's FIN) can be read. Edge-triggered: call `tunnel_recv` until it
    /// returns 0 bytes, or this event does not come again.
    TunnelReadable {
        /// The tunnel.
        tunnel: TunnelId,
    },
    /// A tunnel whose last `tunnel_send` took less than offered can take more.
    TunnelWritable {
        /// The tunnel.
        tunnel: TunnelId,
    },
    /// The tunnel is over; its id is dead.
    TunnelClosed {
        /// The tunnel.
        tunnel: TunnelId,
        /// Why.
        reason: CloseReason,
    },
}

/// What one `tunnel_recv` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recv {
    /// Bytes written to the start of the caller's buffer.
    pub len: usize,
    /// The peer finished its direction and every byte before the FIN has been read.
    pub fin: bool,
}

/// Counters of an endpoint, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointStats {
    /// Connections currently alive.
    pub connections: usize,
    /// Connections ever created (accepted by an edge, dialled by a client).
    pub connections_total: u64,
    /// Of `connections_total`, those over TCP (TLS and HTTP/2: the edge's TCP on-ramp).
    pub tcp_connections_total: u64,
    /// HTTP/2 (the TCP on-ramp): how often each bound against a known attack acted.
    pub http2_bounds: Http2Bounds,
    /// Edge, HTTP/3: connections closed for resetting more than
    /// `MAX_EARLY_RESETS_PER_10S` requests before their answer (rapid reset).
    pub http3_rapid_reset_floods: u64,
    /// Connections that ended.
    pub connections_lost: u64,
    /// Tunnels currently alive (requested, opening or open).
    pub tunnels: usize,
    /// Tunnels ever created.
    pub tunnels_total: u64,
    /// Tunnels refused (edge: answered non-2xx; client: received non-2xx or gave up).
    pub tunnels_refused: u64,
    /// Edge: requests refused for missing or wrong credentials.
    pub auth_failures: u64,
    /// Datagrams dropped: unparsable, unroutable, too short Initials, Initials beyond a
    /// full queue of Retries, over the connection limit.
    pub datagrams_dropped: u64,
    /// Version negotiation packets sent.
    pub version_negotiations: u64,
    /// Stateless resets sent (edge: answers to packets for connections it does not know).
    pub stateless_resets: u64,
    /// Edge: Retry packets sent (address validation, `EdgeConfig::retry`).
    pub retries: u64,
    /// Edge: requests whose name the cache of resolved names answered
    /// (`Endpoint::cached_addresses`), and those it did not.
    pub dns_cache_hits: u64,
    /// See `dns_cache_hits`.
    pub dns_cache_misses: u64,
    /// Edge: Initials dropped for a Retry token of ours that was forged, expired or from
    /// another address.
    pub retry_tokens_invalid: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagrams sent (GSO segments counted one by one).
    pub datagrams_sent: u64,
    /// UDP payloads handed to QUIC (a DATAGRAM frame) or to a request stream (a DATAGRAM
    /// capsule) for sending.
    pub udp_datagrams_sent: u64,
    /// UDP payloads queued for the host, whichever way they came.
    pub udp_datagrams_received: u64,
    /// UDP payloads dropped for being larger than the connection can carry in one
    /// DATAGRAM frame now (never fragmented), or than 65527 bytes.
    pub udp_dropped_oversize: u64,
    /// UDP payloads dropped because a queue was full: a tunnel's receive queue
    /// (`udp_tunnel_queue_len`), quiche's DATAGRAM send queue (`datagram_queue_len`), or a
    /// request stream without room for a whole capsule.
    pub udp_dropped_queue_full: u64,
    /// HTTP Datagrams dropped for a Context ID other than 0 (none is registered).
    pub udp_dropped_unknown_context: u64,
    /// HTTP Datagrams dropped for naming a stream that carries no live tunnel (not yet
    /// created, closed, or never a request).
    pub udp_dropped_unknown_tunnel: u64,
    /// HTTP Datagrams dropped for having no complete Context ID.
    pub udp_dropped_malformed: u64,
    /// UDP payloads sent or received as DATAGRAM capsules on a request stream (the
    /// fallback when HTTP/3 datagrams were not negotiated); also in the sent/received
    /// counts.
    pub udp_capsule_datagrams: u64,
    /// Audit records dropped because the host did not drain `poll_audit` fast enough.
    pub audit_dropped: u64,
    /// Bytes the host read from tunnels (`tunnel_recv`): an edge's from its clients.
    pub tunnel_bytes_received: u64,
    /// Bytes the host sent into tunnels (taken by `tunnel_send`): an edge's to its clients.
    pub tunnel_bytes_sent: u64,
    /// How long tunnels took to open: an edge's from the request to the host's accept
    /// (resolving and dialling), a client's from `open_tunnel` to the edge's 2xx.
    pub tunnel_setup: DurationHistogram,
    /// How long after it was asked for a tunnel's first byte reached its host (an edge:
    /// the client's first bytes; a client: the target's first answer).
    pub tunnel_first_byte: DurationHistogram,
    /// Edge: requests refused, by the Proxy-Status error type the client was given (also
    /// counted in `tunnels_refused`).
    pub refusals: RefusalCounts,
    /// QUIC packets sent, on every connection (those gone and those open).
    pub quic_packets_sent: u64,
    /// QUIC packets declared lost, on every connection.
    pub quic_packets_lost: u64,
    /// Smoothed round-trip times of connections, taken when they end.
    pub quic_rtt: DurationHistogram,
    /// CONNECT-IP: packets that passed the checks, each way (client: sent into tunnels
    /// and received from them; edge: from clients to the off-ramp and back).
    pub ip_packets_forwarded: u64,
    /// CONNECT-IP: ICMP errors the engine answered with instead of forwarding a packet
    /// (Time Exceeded, Packet Too Big, administratively prohibited).
    pub ip_icmp_answers: u64,
    /// CONNECT-IP: packets dropped, by cause.
    pub ip_dropped: IpDropCounts,
    /// CONNECT-IP, edge: new flows inside tunnels, each shown to the `ip_flow` hook once.
    pub ip_flows: u64,
    /// CONNECT-IP, edge: flows forgotten to make room in a tunnel's full flow table
    /// (`EdgeConfig::ip_flows_per_tunnel`) before they were idle.
    pub ip_flows_evicted: u64,
    /// CONNECT-IP, edge: pool addresses held by open tunnels.
    pub ip_addresses_assigned: usize,
    /// CONNECT-IP, edge with `EdgeConfig::ip_decap`: flows opened for the host
    /// (`Event::IpFlowOpened`).
    pub ip_decap_flows_opened: u64,
    /// CONNECT-IP, edge with `EdgeConfig::ip_decap`: flows open now.
    pub ip_decap_flows: usize,
}

/// CONNECT-IP packets dropped, by cause (`EndpointStats::ip_dropped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IpDropCounts {
    counts: [u64; IP_DROP_CAUSES.len()],
}

/// How often each HTTP/2 bound acted (`EndpointStats::http2_bounds`): streams refused
/// beyond `SETTINGS_MAX_CONCURRENT_STREAMS`, header lists over the size limit (HPACK
/// bombs), and connections closed for rapid resets (CVE-2023-44487), CONTINUATION floods
/// and control frames the peer made us owe without reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Http2Bounds {
    /// Streams refused at the concurrency limit.
    pub streams_refused: u64,
    /// Header lists over the size limit.
    pub header_lists_too_large: u64,
    /// Connections closed for rapid resets.
    pub rapid_reset: u64,
    /// Connections closed for CONTINUATION floods.
    pub continuation: u64,
    /// Connections closed for control-frame floods.
    pub control_frames: u64,
}

impl Http2Bounds {
    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Self) {
        self.streams_refused += other.streams_refused;
        self.header_lists_too_large += other.header_lists_too_large;
        self.rapid_reset += other.rapid_reset;
        self.continuation += other.continuation;
        self.control_frames += other.control_frames;
    }

    /// The counts with the label metrics give each.
    pub fn by_bound(&self) -> [(&'static str, u64); 5] {
        [
            ("streams_refused", self.streams_refused),
            ("header_list_too_large", self.header_lists_too_large),
            ("rapid_reset", self.rapid_reset),
            ("continuation_flood", self.continuation),
            ("control_frame_flood", self.control_frames),
        ]
    }

    pub(crate) fn from_session(stats: &crate::h2::Stats) -> Self {
        Self {
            streams_refused: stats.streams_refused,
            header_lists_too_large: stats.header_lists_too_large,
            rapid_reset: stats.rapid_reset_floods,
            continuation: stats.continuation_floods,
            control_frames: stats.control_frame_floods,
        }
    }
}

/// The causes of [`IpDropCounts`], as metrics label them: not a valid IP packet; from a
/// client with a source the edge did not assign; outside the tunnel's scope; refused by
/// egress policy or rules where no ICMP error could say so; to an address nobody was
/// assigned; outside the advertised routes; link-local; hop limit expired; too big for the
/// tunnel; an ICMP error held back by the rate limit; of a flow the `ip_flow` hook
/// refused; and at an edge with `EdgeConfig::ip_decap`: a fragment (never reassembled); a
/// packet of no flow the engine takes apart and that no ICMP error could answer; a
/// decapsulated flow's queue full; a new flow in a tunnel with
/// `EdgeConfig::ip_flows_per_tunnel` flows open.
pub const IP_DROP_CAUSES: [&str; 15] = [
    "malformed",
    "spoofed_source",
    "out_of_scope",
    "forbidden",
    "not_assigned",
    "not_routed",
    "link_local",
    "hop_limit_expired",
    "too_big",
    "rate_limited",
    "flow_refused",
    "fragment",
    "not_decapsulated",
    "queue_full",
    "flow_limit",
];

impl IpDropCounts {
    /// Counts one drop for `cause` (one of [`IP_DROP_CAUSES`]; others are not counted).
    pub(crate) fn add(&mut self, cause: &str) {
        if let Some(i) = IP_DROP_CAUSES.iter().position(|c| *c == cause) {
            if let Some(count) = self.counts.get_mut(i) {
                *count += 1;
            }
        }
    }

    /// The drops for `cause` (0 for a name not in [`IP_DROP_CAUSES`]).
    pub fn get(&self, cause: &str) -> u64 {
        IP_DROP_CAUSES
            .iter()
            .position(|c| *c == cause)
            .and_then(|i| self.counts.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Every drop, whatever its cause.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: Self) {
        for (count, more) in self.counts.iter_mut().zip(other.counts) {
            *count += more;
        }
    }

    /// Every cause's name with its count, for metrics.
    pub fn by_cause(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        IP_DROP_CAUSES
            .iter()
            .copied()
            .zip(self.counts.iter().copied())
    }
}

/// The Proxy-Status error types an edge refuses with, in the order of
/// [`RefusalCounts::counts`] (a last count holds the others).
pub const REFUSAL_ERRORS: [ProxyErrorType; 10] = [
    ProxyErrorType::HttpRequestError,
    ProxyErrorType::HttpRequestDenied,
    ProxyErrorType::DestinationIpProhibited,
    ProxyErrorType::DnsError,
    ProxyErrorType::DnsTimeout,
    ProxyErrorType::ConnectionRefused,
    ProxyErrorType::ConnectionTimeout,
    ProxyErrorType::DestinationIpUnroutable,
    ProxyErrorType::ConnectionLimitReached,
    ProxyErrorType::ProxyInternalError,
];

/// Refusals counted by Proxy-Status error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefusalCounts {
    /// One count per [`REFUSAL_ERRORS`] entry, then one for any other (or none).
    pub counts: [u64; REFUSAL_ERRORS.len() + 1],
}

impl RefusalCounts {
    /// Counts one refusal with `error`.
    pub fn count(&mut self, error: Option<ProxyErrorType>) {
        let index = error
            .and_then(|error| REFUSAL_ERRORS.iter().position(|known| *known == error))
            .unwrap_or(REFUSAL_ERRORS.len());
        self.counts[index] += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
    }
}

impl EndpointStats {
    /// Counts a refused request (edge), by the error type its client is given.
    pub(crate) fn refused(&mut self, error: Option<ProxyErrorType>) {
        self.tunnels_refused += 1;
        self.refusals.count(error);
    }
}

/// Upper bounds of [`DurationHistogram`]'s buckets, in milliseconds; a last bucket holds
/// the rest.
pub const DURATION_BUCKETS_MS: [u64; 11] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000];

/// Durations counted by bucket, for a Prometheus histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DurationHistogram {
    /// How many fell in each bucket of [`DURATION_BUCKETS_MS`] (not cumulative), and, last,
    /// how many were longer.
    pub counts: [u64; DURATION_BUCKETS_MS.len() + 1],
    /// The sum of every duration, in microseconds.
    pub sum_micros: u64,
}

impl DurationHistogram {
    /// Counts one duration.
    pub fn record(&mut self, duration: std::time::Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        // A bucket holds what is at most its bound ("le"), as Prometheus reads it.
        let bucket = DURATION_BUCKETS_MS
            .iter()
            .position(|&bound| micros <= bound * 1000)
            .unwrap_or(DURATION_BUCKETS_MS.len());
        self.counts[bucket] += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// How many durations were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }
}

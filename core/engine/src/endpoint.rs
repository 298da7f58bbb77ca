//! The [`Endpoint`]: one per UDP socket, both roles.
//!
//! # How it is built
//!
//! - Connections live in a table by [`ConnectionHandle`]; incoming datagrams find theirs by
//!   destination connection ID (`routes`). An edge creates a connection only for a
//!   well-sized Initial of a supported version and answers other versions with Version
//!   Negotiation. A client has at most one current connection to its edge (older ones that
//!   received GOAWAY finish their tunnels).
//! - Tunnels live in a table by [`TunnelId`]; each connection maps its stream IDs to them.
//! - After every input the touched connection is processed (HTTP/3 events, writability,
//!   waiting responses, client queue, reaping) and put in the send queue; received
//!   datagrams are processed at the next poll, once per batch rather than per packet; `poll_transmit`
//!   takes connections from that queue in turn, one batch each, so one busy connection
//!   cannot starve the others.
//! - Backpressure: the engine never copies tunnel bytes into buffers of its own. A send
//!   goes straight into quiche's stream buffer (bounded by flow control) and returns how
//!   much fitted; a receive reads straight from quiche, so an unread tunnel holds back only
//!   its own stream's flow-control credit.

mod ack_delay;
mod auditing;
mod conns;
mod decap;
mod drain;
mod ends;
mod fallback;
mod fin;
mod hooks;
mod idle;
mod inspect;
mod ip;
mod ip_sniff;
mod lifetime;
mod long_paths;
mod optimistic;
mod paths;
mod preamble;
mod requests;
mod shutdown;
mod sniffing;
mod tcp;
mod timers;
mod turns;
mod udp;

pub use ends::MAX_EARLY_RESETS_PER_10S;
pub use fallback::FALLBACK_DELAY;
pub use hooks::{CONNECTION_ATTEMPT_DELAY, EgressPlan};
pub use ip::{IpDelivery, MAX_RESOLVED};
pub use preamble::ProxyProtocolVersion;
pub use shutdown::ShutdownPlan;
pub use tcp::{TCP_LAST_WRITES, TcpRefused};

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use quiche::h3;

use crate::H3_CONNECT_ERROR;
use crate::cid::{CID_LEN, CidLayout, new_connection_id};
use crate::config::{ClientConfig, Config, EdgeConfig, RoleConfig, Secret, Token};
use crate::connect::{self, ErrorResponse, Response};
use crate::egress::{EgressPolicy, IpNet};
use crate::error::{ConfigError, OpenError, TunnelError};
use crate::map::HashMap;
use crate::policy::Tags;
use crate::policy::{DefaultPolicy, IngressQuery, IngressVerdict, Policy};
use crate::reset::StatelessReset;
use crate::retry::{Checked, RetryGate};
use crate::transmit::{Held, Step, transmit_batch};
use crate::types::{
    ClientIdentity, CloseReason, ConnectionHandle, EndpointStats, Event, Recv, RecvMeta, Refusal,
    RefusedReason, Role, Transmit, TunnelId, TunnelKinds, TunnelTarget,
};
use crate::udp::flow::UdpFlow;
use crate::udp::request as udp_request;
use crate::wire::{Http, Wire};
use crate::{LONG_PATH_RTT, PACING_HORIZON, tls, transport};
use ack_delay::AckDelay;

/// The smallest datagram that may carry a client's first Initial (RFC 9000 §14.1).
const MIN_INITIAL_LEN: usize = 1200;

/// Version Negotiation and Stateless Reset packets waiting to be sent, at most; more are
/// not answered.
const MAX_STATELESS: usize = 64;

/// Client: how long a connection attempt may go without a word from the edge, while
/// tunnels wait for it, before a fresh attempt replaces it (`Endpoint::client_connect`).
/// About the first retransmission of the handshake (quiche's initial RTT is 333 ms): at
/// most one new attempt a second while the edge does not answer.
const STALE_ATTEMPT: Duration = Duration::from_secs(1);

/// HTTP/3 error codes used on streams (RFC 9114 §8.1).
const H3_NO_ERROR: u64 = h3::WireErrorCode::NoError as u64;
const H3_REQUEST_REJECTED: u64 = h3::WireErrorCode::RequestRejected as u64;
const H3_REQUEST_CANCELLED: u64 = h3::WireErrorCode::RequestCancelled as u64;
const H3_MESSAGE_ERROR: u64 = h3::WireErrorCode::MessageError as u64;
const H3_INTERNAL_ERROR: u64 = h3::WireErrorCode::InternalError as u64;
const H3_EXCESSIVE_LOAD: u64 = h3::WireErrorCode::ExcessiveLoad as u64;

/// A sans-IO QUIC + HTTP/3 endpoint for one UDP socket.
///
/// Run loop for every driver: feed one input (`handle_datagram` or `handle_timeout`), then
/// drain `poll_transmit` and `poll_event`, then re-arm the timer from `poll_timeout`, then
/// wait. Tunnel calls (`open_tunnel`, `tunnel_send`, …) are inputs too: drain after them.
///
/// quiche reads the system clock for its own timers; everything else here uses the `now`
/// the caller passes.
///
/// # Methods by group
///
/// - **Build**: [`new`](Self::new), [`with_policy`](Self::with_policy) /
///   [`set_policy`](Self::set_policy) (edge hooks), [`with_cid_layout`](Self::with_cid_layout)
///   (one endpoint per core).
/// - **Inputs** (each may queue transmits and events): [`handle_datagram`](Self::handle_datagram),
///   [`handle_timeout`](Self::handle_timeout).
/// - **Commands, both roles**: [`tunnel_send`](Self::tunnel_send),
///   [`tunnel_recv`](Self::tunnel_recv), [`tunnel_finish`](Self::tunnel_finish),
///   [`tunnel_abort`](Self::tunnel_abort), [`tunnel_send_datagram`](Self::tunnel_send_datagram),
///   [`tunnel_recv_datagram`](Self::tunnel_recv_datagram), [`close`](Self::close),
///   [`shutdown`](Self::shutdown).
/// - **Commands, client**: [`open_tunnel`](Self::open_tunnel),
///   [`open_udp_tunnel`](Self::open_udp_tunnel).
/// - **Commands, edge**: answers to [`Event::TunnelRequest`]:
///   [`egress_for`](Self::egress_for) (where to dial), [`accept_tunnel`](Self::accept_tunnel),
///   [`refuse_tunnel`](Self::refuse_tunnel); answers to the hooks' questions:
///   [`decide_ingress`](Self::decide_ingress), [`decide_tunnel`](Self::decide_tunnel);
///   [`go_away`](Self::go_away).
/// - **Outputs**, polled in this order after every input or command:
///   [`poll_transmit`](Self::poll_transmit) until `None`, [`poll_event`](Self::poll_event)
///   until `None` (acting on an event is a command: poll again after it), then
///   [`poll_timeout`](Self::poll_timeout) to re-arm the one timer.
/// - **Getters**: [`role`](Self::role), [`local_addr`](Self::local_addr),
///   [`certificate_fingerprint`](Self::certificate_fingerprint), [`stats`](Self::stats),
///   [`is_closed`](Self::is_closed), [`token_name`](Self::token_name),
///   [`tunnel_tags`](Self::tunnel_tags), [`tunnel_kind`](Self::tunnel_kind),
///   [`tunnel_max_datagram_payload`](Self::tunnel_max_datagram_payload),
///   [`check_egress`](Self::check_egress).
pub struct Endpoint {
    role: RoleState,
    quic_config: quiche::Config,
    h3_config: h3::Config,
    /// Connections, and the connection IDs that lead to each.
    conns: conns::ConnTable,
    /// Names this endpoint's core in the IDs it issues (see [`CidLayout`]).
    pub(crate) cid_layout: Option<CidLayout>,
    tunnels: HashMap<TunnelId, Tunnel>,
    /// CONNECT-IP: the pace of the ICMP errors the edge sends.
    icmp_limiter: crate::ip::forward::IcmpLimiter,
    events: VecDeque<Event>,
    /// Connections that may have packets to send, each at most once.
    send_queue: VecDeque<u64>,
    /// TCP connections that may have bytes to write, each at most once (`endpoint::tcp`).
    tcp_ready: VecDeque<u64>,
    /// Version Negotiation and Stateless Reset packets: bytes, destination, source.
    stateless: VecDeque<(Vec<u8>, SocketAddr, SocketAddr)>,
    next_conn: u64,
    next_tunnel: u64,
    stats: EndpointStats,
    closing: bool,
    /// Where `shutdown` is, once called.
    shutdown: Option<shutdown::Phase>,
    /// Edge: `go_away` was called; no new connections, GOAWAY on every connection.
    draining: bool,
    fingerprint: Option<[u8; 32]>,
    pacing: bool,
    /// `QuicConfig::ack_delay` (`endpoint::ack_delay`).
    ack_delay: Duration,
    /// `QuicConfig::ack_delay_paths`.
    ack_delay_paths: crate::AckDelayPaths,
    /// Connections whose path is longer than a LAN, and the largest flight one received
    /// (`Endpoint::long_paths`, `Endpoint::received_flight`).
    long_paths: long_paths::LongPaths,
    keep_alive: Option<Duration>,
    /// A connection with no traffic for this long closes (`QuicConfig::max_idle_timeout`;
    /// the TCP on-ramp's connections keep it too).
    idle_timeout: Duration,
    /// Reused buffer for discarding bytes of streams nobody reads.
    scratch: Vec<u8>,
    /// Connections that received datagrams since they were last processed, and the time
    /// of the latest: a batch of datagrams is processed once, at the next poll.
    unprocessed: Vec<u64>,
    received_at: Option<Instant>,
    /// CONNECT-UDP settings and the idle timers of UDP tunnels.
    udp: udp::UdpSettings,
    /// The latest `now` the caller gave: the time of calls that take none.
    clock: Instant,
    /// Every connection's next deadline, ordered.
    conn_timers: timers::ConnTimers,
    /// Edge: requests reported to the host and not answered yet, by deadline.
    unanswered: requests::Unanswered,
    /// Edge: the hooks consulted at ingress and for every request.
    policy: Box<dyn Policy>,
    /// Edge: records of finished tunnels for the host (`EdgeConfig::audit`).
    audit: VecDeque<crate::AuditRecord>,
    /// The idle deadlines of TCP tunnels (`QuicConfig::tcp_idle_timeout`).
    idle: idle::IdleTimers,
    /// The maximum-duration deadlines of tunnels (`QuicConfig::tunnel_max_duration`).
    lifetimes: lifetime::Lifetimes,
    /// Edge with `EdgeConfig::ip_decap`: the flows taken out of IP tunnels.
    decap: decap::DecapFlows,
    /// Edge: when flows held for their QUIC server name (`endpoint::ip_sniff`) are due,
    /// with their tunnel; entries of flows settled earlier fall out when due.
    ip_sniff_deadlines: std::collections::BTreeSet<(Instant, TunnelId)>,
}

enum RoleState {
    Client(Client),
    Edge(Edge),
}

struct Edge {
    reset: StatelessReset,
    /// Address validation with Retry (`crate::retry`).
    retry: RetryGate,
    /// What names resolved to (`crate::dns`); boxed, as a client has none.
    dns: Box<crate::dns::DnsCache>,
    tokens: Vec<Token>,
    egress: EgressPolicy,
    max_connections: usize,
    serves: TunnelKinds,
    request_timeout: Duration,
    /// Keep audit records.
    audit: bool,
    /// `EdgeConfig::tenant`, for the records.
    tenant: Option<Box<str>>,
    /// Boxed: compiled rules are large, and the role enum should not be.
    rules: Box<crate::rules::EdgeRules>,
    /// CONNECT-IP: the addresses clients get (`EdgeConfig::ip_pools`).
    ip_pool: crate::ip::pool::AddressPool,
    /// CONNECT-IP: the size of each tunnel's flow table (`EdgeConfig::ip_flows_per_tunnel`).
    ip_flows_per_tunnel: usize,
    /// CONNECT-IP: the engine takes packets apart into flows (`EdgeConfig::ip_decap`).
    ip_decap: bool,
    /// The TCP on-ramp's TLS context (`tcp::accept_tcp`): the QUIC one's certificate.
    tcp_tls: Option<boring::ssl::SslContext>,
    /// TCP connections start with a PROXY protocol header (`EdgeConfig::proxy_protocol`).
    proxy_protocol: bool,
    /// The PROXY header sent to origins (`EdgeConfig::egress_proxy_protocol`).
    egress_proxy_protocol: Option<ProxyProtocolVersion>,
}

struct Client {
    edge_addr: SocketAddr,
    local_addr: SocketAddr,
    server_name: String,
    token: Option<Secret>,
    reconnect_initial: Duration,
    reconnect_max: Duration,
    max_pending: usize,
    pending_deadline: Duration,
    /// The connection new tunnels go to.
    conn: Option<u64>,
    /// No connection attempt before this.
    retry_at: Option<Instant>,
    /// When the current connection attempt started (see [`STALE_ATTEMPT`]).
    attempt_at: Instant,
    /// Delay before the next attempt after a loss.
    backoff: Duration,
    /// Tunnels waiting for a connection (or for stream credit), oldest first.
    pending: VecDeque<TunnelId>,
    /// How it reaches the edge (`ClientConfig::transport`).
    transport: crate::config::Transport,
    /// The TCP transport's TLS context (ALPN h2, the QUIC context's verification).
    tcp_tls: Option<boring::ssl::SslContext>,
    /// `Transport::Auto`: an attempt of the other transport racing `conn`
    /// (`endpoint::fallback`).
    racer: Option<u64>,
    /// `Transport::Auto` on HTTP/2: when to try HTTP/3 again.
    h3_again_at: Option<Instant>,
    /// `ClientConfig::h3_retry`.
    h3_retry: Duration,
    /// `Transport::Auto`: no HTTP/2 race before this, after a racer failed (a refused TCP
    /// connection fails at once: without it the client would dial in a tight loop).
    race_after: Option<Instant>,
    /// The wait after the next failed racer; doubles up to `reconnect_max`.
    race_backoff: Duration,
    /// `ClientConfig::optimistic`.
    optimistic: bool,
}

/// How long a connection's path is, for the host's socket buffers (`Endpoint::long_paths`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathLength {
    /// A LAN, a host's own: or not known (no handshake yet, no TCP connection measured).
    Short,
    /// Its smallest RTT (the handshake's, or its new path's after a move), `rtt`, was
    /// over [`LONG_PATH_RTT`].
    Long { rtt: Duration },
    /// The peer moved to another path (`endpoint::paths`): counted as the old path was
    /// until the new one's smallest RTT is known.
    Moved { was_long: bool },
}

impl PathLength {
    /// Whether `Endpoint::long_paths` counts the connection.
    fn is_long(self) -> bool {
        matches!(self, Self::Long { .. } | Self::Moved { was_long: true })
    }
}

struct Conn {
    handle: ConnectionHandle,
    /// QUIC, or TLS and HTTP/2 over TCP (`crate::wire`).
    wire: Wire,
    /// HTTP/3 or HTTP/2, once the handshake is done and the ingress hook let it in.
    http: Option<Http>,
    peer: SocketAddr,
    local: SocketAddr,
    streams: HashMap<u64, TunnelId>,
    /// The connection IDs that lead here (kept by `conns::ConnTable`).
    routes: Vec<Vec<u8>>,
    queued: bool,
    /// In `Endpoint::unprocessed`.
    unprocessed: bool,
    held: Held,
    /// What it received since it last asked quiche for packets (`endpoint::ack_delay`).
    ack: AckDelay,
    /// Its path's length, as its smallest RTT tells (the handshake's, then less as quiche
    /// measures less), or its new path's after the peer moved (`Endpoint::long_paths`).
    path_length: PathLength,
    /// What it receives per round trip while its path is long (`Endpoint::received_flight`).
    flight: long_paths::FlightMeter,
    /// Client: no new requests go here (the edge sent GOAWAY, or the connection retired).
    goaway: bool,
    /// Client: whether the edge seems to withhold stream credit (`credit_withheld`).
    credit: Credit,
    /// Edge: the ID of the GOAWAY sent on this connection (the first request it rejects).
    goaway_sent: Option<u64>,
    largest_request: Option<u64>,
    /// Refusals waiting for stream capacity.
    error_responses: VecDeque<(u64, ErrorResponse)>,
    /// Accepted tunnels whose 200 waits for stream capacity.
    accepting: Vec<TunnelId>,
    keep_alive_at: Option<Instant>,
    /// QUIC DATAGRAM frames taken from quiche so far; quiche's count beyond it were dropped
    /// by quiche's full receive queue.
    datagrams_taken: usize,
    /// TCP tunnels whose peer's FIN was read while our direction is still open: the ones a
    /// `STOP_SENDING` could reach unnoticed (see `Endpoint::notice_stops`). Entries whose
    /// tunnel has gone or finished are dropped at the next look.
    peer_finished: Vec<TunnelId>,
    /// Streams whose FIN waits for stream credit for its empty DATA frame (`endpoint::fin`);
    /// their tunnel may be gone. Usually empty.
    fins_waiting: Vec<u64>,
    /// Streams of tunnels that finished, until quiche forgets them (the peer acknowledged
    /// their end): what a shutdown waits for before `CONNECTION_CLOSE`.
    ended: shutdown::Ended,
    /// Streams of every tunnel removed, until quiche's transport forgets them; then their
    /// HTTP/3 state is dropped too (`Http::forget_stream`: quiche 0.30 keeps it for ever
    /// for a stream that ended with a reset of ours).
    leftovers: shutdown::Ended,
    /// The stream of the last tunnel whose bytes the connection took: the next round of
    /// `TunnelWritable` starts after it (`endpoint::turns`).
    send_turn: u64,
    /// The tunnel whose bytes are sent ahead of the others for a while (`endpoint::turns`,
    /// bursts).
    lead: turns::Lead,
    /// Client: requests whose optimistic tunnel the host finished and then aborted before
    /// the edge answered; our read is stopped when the answer comes
    /// (`endpoint::optimistic`). Usually empty.
    abandoned: Vec<u64>,
    /// This connection's entry in `Endpoint::conn_timers`.
    timer: Option<Instant>,
    /// Edge: where the ingress hook's verdict stands.
    ingress: Ingress,
    /// Edge: the identity of the client's certificate (mutual TLS), once established.
    certificate_identity: Option<Box<str>>,
    /// Edge, after the client's address changed (`endpoint::paths`): the address it left
    /// and the validated one it moved to. Datagrams quiche still sends on the old path go
    /// to the new address instead.
    moved: Option<(SocketAddr, SocketAddr)>,
    /// Edge, HTTP/3: requests the peer reset before they were answered, in the current
    /// window (`endpoint::ends`, the rapid reset bound).
    early_resets: crate::h2::RateWindow,
}

/// Edge: the ingress hook's verdict on a connection. Its HTTP/3 layer (and so every
/// request on it) waits until the verdict is `Accepted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ingress {
    /// The handshake has not completed; the hook has not been asked.
    Pending,
    /// The hook asked the host (`Event::IngressDecision`); refused by the engine at
    /// `deadline`.
    Asked { deadline: Instant },
    /// Served.
    Accepted,
    /// Closed by a verdict or its deadline.
    Decided,
}

/// One tunnel: its request's state, and each direction's.
struct Tunnel {
    conn: Option<u64>,
    stream: u64,
    state: TunnelState,
    /// Our direction: the host's bytes to the peer.
    sending: Sending,
    /// The peer's direction: its bytes to the host.
    receiving: Receiving,
    /// A UDP or IP tunnel's datagram state; `None` for a TCP tunnel.
    udp: Option<Box<UdpFlow>>,
    /// An IP tunnel's addresses and routes (with `udp` carrying its packets).
    ip: Option<Box<ip::IpTunnel>>,
    /// Edge: the request it answers (target, client, tags).
    request: Option<Box<hooks::EdgeRequest>>,
    /// Edge: the engine answered 200 itself to read the first bytes for their server name
    /// (`endpoint::sniffing`); they wait here for the host.
    sniffed: Option<Box<sniffing::FirstBytes>>,
    /// Edge: the client's HTTP/1.1 requests, shown to the `http_request` hook
    /// (`TunnelVerdict::Inspect`).
    inspector: Option<Box<inspect::HttpInspector>>,
    /// Edge: what the audit record will say (`EdgeConfig::audit`).
    trail: Option<Box<crate::audit::Trail>>,
    /// When it was asked for (the start of `EndpointStats::tunnel_setup`).
    created: Option<Instant>,
    /// When its host last sent or read a byte (or it opened): its idle deadline's start.
    /// `None` until it opens.
    last_activity: Option<Instant>,
    /// Edge: its rule's idle timeout (`idle_timeout_ms`), set when it opens.
    idle_override: crate::rules::Limit,
    /// Client: how far it went before the edge's answer (`endpoint::optimistic`).
    early: optimistic::Early,
}

/// Our direction of a tunnel (host → peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// Open. `blocked`: the last send took less than offered, so a `TunnelWritable` is
    /// owed when the stream has room (or, before the 200, once it is out).
    Open { blocked: bool },
    /// `tunnel_finish` came while the FIN could not go yet (the 200, or the rest of a
    /// capsule, waits for room): it follows them.
    FinQueued,
    /// The FIN is written (or owed to the stream by `endpoint::fin`).
    Finished,
    /// The peer stopped it (`STOP_SENDING`) with `code` while we still read theirs: the
    /// tunnel closes as reset once their FIN has been read.
    Stopped { code: u64 },
}

impl Sending {
    /// Nothing more goes this way: finished, or stopped by the peer.
    fn is_over(self) -> bool {
        matches!(self, Self::Finished | Self::Stopped { .. })
    }

    /// The host may send no more bytes: over, or its FIN is queued.
    fn is_closed(self) -> bool {
        !matches!(self, Self::Open { .. })
    }
}

/// The peer's direction of a tunnel (peer → host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receiving {
    Open,
    /// Edge: bytes or the FIN arrived before the host could read (the request is being
    /// decided or answered): `TunnelReadable` is owed once the 200 is out.
    Deferred,
    /// HTTP/3 read the peer's FIN (it does so itself when no data comes before it); the
    /// host has not read it yet. The tunnel is in `peer_finished`.
    FinRead,
    /// `tunnel_recv` handed the peer's FIN to the host.
    FinDelivered,
}

enum TunnelState {
    /// Client: waiting in the queue for a connection.
    Waiting {
        target: TunnelTarget,
        deadline: Instant,
    },
    /// Client: request sent, no final response yet.
    AwaitingResponse {
        target: TunnelTarget,
        deadline: Instant,
    },
    /// Edge: the engine answered 200 and reads the client's first bytes for the server
    /// name they ask for; the rules decide when they are in, or at `deadline`.
    Sniffing { deadline: Instant },
    /// Edge: the tunnel hook asked the host (`Event::TunnelDecision`); refused by the
    /// engine at `deadline`.
    Deciding { deadline: Instant },
    /// Edge: reported to the host, no answer yet; refused by the engine at `deadline`.
    Requested { deadline: Instant },
    /// Edge: accepted, the 200 waits for stream capacity.
    Accepting,
    /// Carrying bytes.
    Open,
}

impl Endpoint {
    /// Builds an endpoint: TLS context, QUIC and HTTP/3 settings; an edge without a
    /// certificate generates a self-signed one here. A client connects on its first
    /// `open_tunnel`, not here.
    pub fn new(config: Config, now: Instant) -> Result<Self, ConfigError> {
        let Config { role, quic } = config;
        let udp_template = match &role {
            RoleConfig::Edge(edge) => edge.udp_path_template.clone(),
            RoleConfig::Client(client) => client.udp_path_template.clone(),
        };
        let (tls, fingerprint, role) = match role {
            RoleConfig::Edge(edge) => {
                let tls = tls::edge_context(&edge)?;
                let material = match &edge.stateless_reset_key {
                    Some(secret) => Some(secret.expose().as_bytes().to_vec()),
                    None => tls.configured_key_der,
                };
                let reset = StatelessReset::new(material.as_deref()).map_err(|source| {
                    ConfigError::Tls {
                        what: "stateless reset key",
                        source,
                    }
                })?;
                let mut state = Edge::new(edge, reset, now)?;
                state.tcp_tls = Some(tls.tcp);
                (tls.builder, Some(tls.fingerprint), RoleState::Edge(state))
            }
            RoleConfig::Client(client) => {
                let tls = tls::client_context(&client.verify, client.certificate.as_ref())?;
                let tcp_tls = tls::client_tcp_context(&client.verify, client.certificate.as_ref())?;
                let mut state = Client::new(client, now);
                state.tcp_tls = Some(tcp_tls);
                (tls, None, RoleState::Client(state))
            }
        };
        Ok(Self {
            quic_config: transport::quic_config(&quic, tls)?,
            h3_config: transport::h3_config()?,
            keep_alive: quic.keep_alive_interval,
            idle_timeout: quic.max_idle_timeout,
            pacing: quic.pacing,
            ack_delay: quic.ack_delay,
            ack_delay_paths: quic.ack_delay_paths,
            long_paths: long_paths::LongPaths::default(),
            role,
            conns: conns::ConnTable::default(),
            cid_layout: None,
            tunnels: HashMap::default(),
            events: VecDeque::new(),
            send_queue: VecDeque::new(),
            tcp_ready: VecDeque::new(),
            stateless: VecDeque::new(),
            next_conn: 0,
            next_tunnel: 0,
            stats: EndpointStats::default(),
            closing: false,
            shutdown: None,
            draining: false,
            fingerprint,
            scratch: vec![0; 4096],
            // Linux's defaults for the ICMP errors a host sends (`icmp_msgs_per_sec`,
            // `icmp_msgs_burst`).
            icmp_limiter: crate::ip::forward::IcmpLimiter::new(1000, 50),
            unprocessed: Vec::new(),
            received_at: None,
            udp: udp::UdpSettings::new(&quic, udp_template)?,
            clock: now,
            conn_timers: timers::ConnTimers::default(),
            unanswered: requests::Unanswered::default(),
            policy: Box::new(DefaultPolicy),
            audit: VecDeque::new(),
            idle: idle::IdleTimers::new(quic.tcp_idle_timeout),
            lifetimes: lifetime::Lifetimes::new(quic.tunnel_max_duration),
            decap: decap::DecapFlows::new(&quic),
            ip_sniff_deadlines: std::collections::BTreeSet::new(),
        })
    }

    /// The role this endpoint plays.
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Client(_) => Role::Client,
            RoleState::Edge(_) => Role::Edge,
        }
    }

    /// Edge: SHA-256 of the DER of the certificate it serves (self-signed or loaded), to
    /// print for clients that pin it. `None` on a client.
    pub fn certificate_fingerprint(&self) -> Option<[u8; 32]> {
        self.fingerprint
    }

    /// The local address a client's connections use (`None` on an edge, which answers
    /// from the address each datagram arrived on).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.role {
            RoleState::Client(client) => Some(client.local_addr),
            RoleState::Edge(_) => None,
        }
    }

    /// Feeds one received UDP datagram. The buffer may be modified (decrypted in place).
    /// Datagrams that belong to no connection and cannot start one are dropped and
    /// counted.
    pub fn handle_datagram(&mut self, now: Instant, meta: RecvMeta, datagram: &mut [u8]) {
        self.clock = now;
        self.stats.datagrams_received += 1;
        let Some(handle) = self.route(meta, datagram) else {
            self.stats.datagrams_dropped += 1;
            return;
        };
        let is_client = matches!(self.role, RoleState::Client(_));
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        // A client's socket may be bound to an unspecified address: its connection keeps
        // the one local address it started with, whatever `meta.to` says.
        let to = if is_client { conn.local } else { meta.to };
        let info = quiche::RecvInfo {
            from: meta.from,
            to,
        };
        conn.held.received();
        conn.ack.received(datagram);
        // Counted before quiche opens it: junk with a valid connection ID counts too, which
        // at most grows the host's buffers to `socket_buffers::LONG_PATH_BUFFER_MAX`.
        if let PathLength::Long { rtt } = conn.path_length {
            if let Some(flight) = conn.flight.on_received(now, datagram.len(), rtt) {
                self.long_paths.observe_flight(flight);
            }
        }
        if let Some(Err(error)) = conn.wire.quic_mut().map(|quic| quic.recv(datagram, info)) {
            tracing::debug!(connection = handle, %error, "datagram not accepted");
        }
        // HTTP/3 events, writability and the rest wait for the next poll, so that a batch
        // of datagrams (a GRO train, a recvmmsg batch) is processed once, not per packet.
        // So does the connection's timer: `process` refreshes it, and until then
        // `poll_timeout` answers `received_at` and `handle_timeout` processes first. (A
        // refresh here cost about 500 instructions per datagram, ahead of the write that
        // carries its bytes on.)
        if !conn.unprocessed {
            conn.unprocessed = true;
            self.unprocessed.push(handle);
        }
        self.received_at = Some(now);
    }

    /// Processes the connections that received datagrams since the last poll.
    fn process_received(&mut self) {
        let Some(now) = self.received_at.take() else {
            return;
        };
        for handle in std::mem::take(&mut self.unprocessed) {
            let Some(conn) = self.conns.get_mut(handle) else {
                continue;
            };
            conn.unprocessed = false;
            self.process(now, handle);
        }
    }

    /// Tells the endpoint that `now` has come; call it when `poll_timeout` is due (calling
    /// it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = now;
        self.process_received();
        // Only connections with a deadline by then can have anything to do.
        for handle in self.conn_timers.due(now + PACING_HORIZON) {
            let Some(conn) = self.conns.get_mut(handle) else {
                continue;
            };
            let mut touched = false;
            if conn.wire.timeout_instant().is_some_and(|at| at <= now) {
                conn.wire.on_timeout(now);
                touched = true;
            }
            if conn
                .held
                .release_at()
                .is_some_and(|at| at <= now + PACING_HORIZON)
            {
                touched = true;
            }
            let ended = conn.lead.expire(now);
            if ended != turns::Change::NONE {
                conn.apply_lead(ended);
                touched = true;
            }
            if conn.ack.due().is_some_and(|at| at <= now) {
                // `process` finds it due and sends.
                touched = true;
            }
            if conn.credit.recheck_at().is_some_and(|at| at <= now) {
                // `flush_pending`, from `process`, looks again.
                touched = true;
            }
            if conn.keep_alive_at.is_some_and(|at| at <= now) && conn.http.is_some() {
                conn.keep_alive_at = None;
                if conn
                    .wire
                    .quic_mut()
                    .is_some_and(|quic| quic.send_ack_eliciting().is_ok())
                {
                    touched = true;
                }
            }
            if touched {
                self.process(now, handle);
            }
            self.refresh_timer(handle);
        }
        self.expire_pending(now);
        self.expire_requests(now);
        self.expire_idle_udp(now);
        self.expire_idle_decap(now);
        self.expire_ip_sniffing(now);
        self.expire_idle_tcp(now);
        self.expire_lifetimes(now);
        self.client_connect(now);
        self.advance_shutdown(now);
    }

    /// Writes the next datagram, or GSO batch of same-size datagrams of one connection and
    /// path, to the start of `out`. `out` must hold at least `max_send_udp_payload_size`
    /// bytes (or the PMTU when discovery is on); a larger `out` (up to 64 KiB) lets the
    /// engine batch up to 64 segments. `None`: nothing to send now.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        self.clock = now;
        self.process_received();
        if let Some((packet, to, from)) = self.stateless.pop_front() {
            let len = packet.len();
            out.get_mut(..len)?.copy_from_slice(&packet);
            self.stats.datagrams_sent += 1;
            return Some(Transmit {
                to,
                from,
                len,
                segment_size: None,
            });
        }
        for _ in 0..self.send_queue.len() {
            let handle = self.send_queue.pop_front()?;
            let Some(conn) = self.conns.get_mut(handle) else {
                continue;
            };
            conn.queued = false;
            let Some(quic) = conn.wire.quic_mut() else {
                // A TCP connection's bytes go out through `poll_tcp_transmit`.
                continue;
            };
            let horizon = quic.max_release_into_future().max(PACING_HORIZON);
            let pacing = self.pacing.then_some(now + horizon);
            let step = transmit_batch(quic, &mut conn.held, out, pacing);
            conn.ack.sent();
            if let Step::Sent { more, .. } = step {
                if more {
                    conn.queued = true;
                    self.send_queue.push_back(handle);
                }
                // A retired connection (`goaway`: the edge's GOAWAY, or credit it
                // withholds) is left to its idle timeout once its last tunnel ended: no
                // close that could cut bytes still unacknowledged, and the edge forgets
                // the streams it kept when the connection goes.
                //# RFC 9114 §5.2: "Once all accepted requests and pushes have been
                //# processed, the endpoint can permit the connection to become idle, or it
                //# MAY initiate an immediate closure of the connection."
                let idle_retired = conn.goaway && conn.streams.is_empty();
                if let Some(every) = self
                    .keep_alive
                    .filter(|_| !conn.wire.is_server() && !idle_retired)
                {
                    conn.keep_alive_at = Some(now + every);
                }
            }
            let closed = conn.wire.is_closed();
            let moved = conn.moved;
            self.refresh_timer(handle);
            match step {
                Step::Sent {
                    mut transmit,
                    segments,
                    ..
                } => {
                    if let Some((old, new)) = moved.filter(|&(old, _)| old == transmit.to) {
                        tracing::trace!(connection = handle, %old, %new, "old path's datagram redirected");
                        transmit.to = new;
                    }
                    self.stats.datagrams_sent += u64::try_from(segments).unwrap_or(u64::MAX);
                    return Some(transmit);
                }
                Step::Held => {}
                Step::Idle => {
                    if closed {
                        self.reap(now, handle);
                    }
                }
            }
        }
        None
    }

    /// When `handle_timeout` should be called next; `None`: no timer needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.received_at.is_some() {
            // Datagrams wait to be processed: now, by the caller's clock.
            return self.received_at;
        }
        let conns = self.conn_timers.first();
        debug_assert_eq!(conns, self.scanned_conn_deadline(), "connection timer set");
        let client = match &self.role {
            RoleState::Client(client) if !client.pending.is_empty() => {
                let deadlines = client
                    .pending
                    .iter()
                    .filter_map(|id| self.tunnels.get(id).and_then(Tunnel::deadline));
                let retry = client.retry_at.filter(|_| client.conn.is_none());
                let stale = self.stale_attempt().map(|(_, at)| at);
                deadlines.chain(retry).chain(stale).min()
            }
            _ => None,
        };
        conns
            .into_iter()
            .chain(client)
            .chain(self.udp.next_timer())
            .chain(self.decap.next_timer())
            .chain(self.ip_sniff_deadlines.first().map(|&(at, _)| at))
            .chain(self.idle.first())
            .chain(self.lifetimes.first())
            .chain(self.unanswered.first())
            .chain(self.shutdown_deadline())
            .chain(self.race_deadline())
            .min()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.process_received();
        self.events.pop_front()
    }

    /// Client: opens a CONNECT tunnel to `target`. The endpoint connects to the edge on the
    /// first call and reconnects with backoff when the connection dies; meanwhile tunnels
    /// wait in a bounded queue until `pending_deadline`, then fail with
    /// `TunnelRefused { reason: EdgeUnavailable }`. The answer comes as `TunnelOpened` or
    /// `TunnelRefused`.
    pub fn open_tunnel(
        &mut self,
        now: Instant,
        target: &TunnelTarget,
    ) -> Result<TunnelId, OpenError> {
        self.open_with(now, target, None)
    }

    /// Client: queues a tunnel (a UDP one with `udp`) and sends its request when it can.
    fn open_with(
        &mut self,
        now: Instant,
        target: &TunnelTarget,
        udp: Option<Box<UdpFlow>>,
    ) -> Result<TunnelId, OpenError> {
        self.clock = now;
        let RoleState::Client(client) = &mut self.role else {
            return Err(OpenError::NotClient);
        };
        if self.closing || self.shutdown.is_some() {
            return Err(OpenError::Closing);
        }
        if client.pending.len() >= client.max_pending {
            return Err(OpenError::QueueFull);
        }
        let id = TunnelId(self.next_tunnel);
        self.next_tunnel += 1;
        let deadline = now + client.pending_deadline;
        client.pending.push_back(id);
        let waiting = TunnelState::Waiting {
            target: target.clone(),
            deadline,
        };
        let mut tunnel = match udp {
            Some(flow) => Tunnel::udp(None, waiting, flow),
            None => Tunnel::new(None, waiting),
        };
        tunnel.created = Some(now);
        self.tunnels.insert(id, tunnel);
        self.stats.tunnels_total += 1;
        self.client_connect(now);
        self.flush_pending();
        Ok(id)
    }

    /// Edge: answers a `TunnelRequest` with 200; the tunnel then carries bytes.
    pub fn accept_tunnel(&mut self, tunnel: TunnelId) -> Result<(), TunnelError> {
        let entry = self
            .tunnels
            .get_mut(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        let TunnelState::Requested { deadline } = entry.state else {
            return Err(TunnelError::InvalidState);
        };
        self.unanswered
            .remove(deadline, requests::Question::Tunnel(tunnel));
        if let Some(trail) = entry.trail.as_mut() {
            trail.opened = Some(self.clock);
        }
        if let Some(created) = entry.created {
            self.stats
                .tunnel_setup
                .record(self.clock.saturating_duration_since(created));
        }
        if entry.sniffed.is_some() {
            // The 200 went out before the first bytes were read.
            self.open_sniffed(tunnel);
            return Ok(());
        }
        entry.state = TunnelState::Accepting;
        let handle = entry.conn.ok_or(TunnelError::InvalidState)?;
        self.retry_accept(handle, tunnel);
        // Packets that came before the 200 are taken apart now (`EdgeConfig::ip_decap`).
        self.decapsulate_due();
        self.queue_send(handle);
        Ok(())
    }

    /// Edge: answers a `TunnelRequest` with the status and Proxy-Status of `refusal`; the
    /// tunnel id is dead afterwards.
    pub fn refuse_tunnel(&mut self, tunnel: TunnelId, refusal: Refusal) -> Result<(), TunnelError> {
        let entry = self
            .tunnels
            .get(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        if !matches!(entry.state, TunnelState::Requested { .. }) {
            return Err(TunnelError::InvalidState);
        }
        if refusal == Refusal::DnsError {
            self.remember_unresolved(tunnel);
        }
        self.note_end(tunnel, crate::audit::Ending::Refused(refusal));
        let Some(entry) = self.tunnels.get(&tunnel) else {
            return Ok(());
        };
        if entry.sniffed.is_some() {
            // After its 200 a tunnel can only be reset.
            self.stats.refused(Some(refusal.proxy_error()));
            self.reset_answered(tunnel);
            return Ok(());
        }
        let Some((handle, stream)) = self.remove_tunnel(tunnel) else {
            return Ok(());
        };
        self.stats.refused(Some(refusal.proxy_error()));
        if let Some(conn) = self.conns.get_mut(handle) {
            send_error_response(conn, stream, ErrorResponse::from_refusal(refusal));
        }
        self.queue_send(handle);
        Ok(())
    }

    /// Edge: whether egress policy lets a tunnel go to `ip`, for adapters that resolved a
    /// name. `Err(Refusal::Prohibited)` is the refusal to give. A client has no policy and
    /// always answers `Ok`.
    pub fn check_egress(&self, ip: IpAddr) -> Result<(), Refusal> {
        match &self.role {
            RoleState::Edge(edge) => edge.egress.check(ip).map_err(|_| Refusal::Prohibited),
            RoleState::Client(_) => Ok(()),
        }
    }

    /// Edge: consults `policy`'s hooks from now on (see [`crate::policy`]); the default
    /// accepts every connection and hands every request to the host.
    #[must_use]
    pub fn with_policy(mut self, policy: impl Policy + 'static) -> Self {
        self.set_policy(policy);
        self
    }

    /// Edge: [`with_policy`](Self::with_policy) on an endpoint already in place.
    pub fn set_policy(&mut self, policy: impl Policy + 'static) {
        self.policy = Box::new(policy);
    }

    /// Edge: [`set_policy`](Self::set_policy) with a policy already boxed (one a factory
    /// made).
    pub fn set_boxed_policy(&mut self, policy: Box<dyn Policy>) {
        self.policy = policy;
    }

    /// Edge: the name of the token at `index` (a `ClientIdentity::token_index`), which logs
    /// and rules may show: never the secret.
    pub fn token_name(&self, index: usize) -> Option<&str> {
        match &self.role {
            RoleState::Edge(edge) => edge.tokens.get(index).map(Token::name),
            RoleState::Client(_) => None,
        }
    }

    /// Sends bytes on an open tunnel. Returns how many were taken; fewer than offered (or
    /// 0) means the stream is blocked: wait for `TunnelWritable`. A UDP tunnel carries
    /// datagrams, not bytes: `Err(NotStream)`.
    pub fn tunnel_send(&mut self, tunnel: TunnelId, data: &[u8]) -> Result<usize, TunnelError> {
        let entry = self
            .tunnels
            .get_mut(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        if entry.udp.is_some() {
            return Err(TunnelError::NotStream);
        }
        match entry.state {
            TunnelState::Open => {}
            TunnelState::Accepting if !entry.sending.is_closed() => {
                entry.sending = Sending::Open { blocked: true };
                return Ok(0);
            }
            TunnelState::Accepting => return Err(TunnelError::WriteClosed),
            TunnelState::AwaitingResponse { .. } | TunnelState::Waiting { .. } => {
                if let Some(answer) = self.early_send(tunnel) {
                    return answer;
                }
            }
            _ => return Err(TunnelError::InvalidState),
        }
        let Some(entry) = self.tunnels.get_mut(&tunnel) else {
            return Err(TunnelError::UnknownTunnel);
        };
        if entry.sending.is_closed() {
            return Err(TunnelError::WriteClosed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let (handle, stream) = (entry.conn.ok_or(TunnelError::InvalidState)?, entry.stream);
        let conn = self.conns.get_mut(handle).ok_or(TunnelError::Stream)?;
        let h3 = conn.http.as_mut().ok_or(TunnelError::Stream)?;
        match h3.send_body(&mut conn.wire, stream, data, false) {
            Ok(taken) => {
                entry.sending = Sending::Open {
                    blocked: taken < data.len(),
                };
                if let Some(trail) = entry.trail.as_mut() {
                    trail.bytes_to_client += taken as u64;
                }
                self.stats.tunnel_bytes_sent += taken as u64;
                // Only QUIC interleaves tunnels packet by packet; HTTP/2 has its own frames.
                let mut lead = turns::Change::NONE;
                if taken > 0 {
                    conn.send_turn = stream;
                    conn.held.wrote();
                    if conn.wire.quic().is_some() {
                        lead = conn
                            .lead
                            .wrote(stream, taken, taken < data.len(), self.clock);
                        conn.apply_lead(lead);
                    }
                    entry.last_activity = Some(self.clock);
                    if entry.early == optimistic::Early::Opened {
                        entry.early = optimistic::Early::Sent;
                    }
                }
                self.queue_send(handle);
                if lead != turns::Change::NONE {
                    // The lead's end is one of the connection's deadlines.
                    self.refresh_timer(handle);
                }
                Ok(taken)
            }
            Err(h3::Error::Done | h3::Error::StreamBlocked) => {
                entry.sending = Sending::Open { blocked: true };
                Ok(0)
            }
            Err(error) if self.early_send_stopped(tunnel, &error) => Ok(0),
            Err(h3::Error::TransportError(quiche::Error::StreamStopped(code))) => {
                self.write_stopped(handle, stream, code);
                Err(TunnelError::WriteClosed)
            }
            // quiche forgot the stream: both directions were done, so the peer's FIN was
            // read (HTTP/3 reads one that follows no data itself, before the host does) and
            // our open direction was stopped, as in `tunnel_finish`. A closed direction,
            // not a broken stream: the FIN still reaches the host.
            Err(h3::Error::TransportError(quiche::Error::InvalidStreamState(_))) => {
                self.write_stopped(handle, stream, H3_REQUEST_CANCELLED);
                Err(TunnelError::WriteClosed)
            }
            Err(error) => {
                tracing::debug!(?tunnel, %error, "tunnel send failed");
                self.fail_tunnel(tunnel);
                Err(TunnelError::Stream)
            }
        }
    }

    /// Finishes our direction (FIN), after the bytes already sent. Idempotent.
    ///
    /// A UDP tunnel ends with its stream: no datagram goes out after this, and the tunnel
    /// closes (`TunnelClosed { Finished }`) when the peer's FIN arrives, which a veil peer
    /// sends at once.
    pub fn tunnel_finish(&mut self, tunnel: TunnelId) -> Result<(), TunnelError> {
        let entry = self
            .tunnels
            .get_mut(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        match entry.sending {
            Sending::Stopped { .. } => return Err(TunnelError::WriteClosed),
            Sending::Finished | Sending::FinQueued => return Ok(()),
            Sending::Open { .. } => {}
        }
        let capsule_waits = entry
            .udp
            .as_ref()
            .is_some_and(|flow| !flow.capsule_backlog.is_empty());
        match entry.state {
            // The FIN follows the rest of a capsule once the stream has room for it.
            TunnelState::Open if capsule_waits => {
                entry.sending = Sending::FinQueued;
                return Ok(());
            }
            TunnelState::Open => {}
            // The FIN follows the 200 once the stream has room for it.
            TunnelState::Accepting => {
                entry.sending = Sending::FinQueued;
                return Ok(());
            }
            TunnelState::AwaitingResponse { .. } | TunnelState::Waiting { .. } => {
                if !self.early_finish(tunnel)? {
                    return Ok(());
                }
            }
            _ => return Err(TunnelError::InvalidState),
        }
        let Some(entry) = self.tunnels.get(&tunnel) else {
            return Err(TunnelError::UnknownTunnel);
        };
        let (handle, stream) = (entry.conn.ok_or(TunnelError::InvalidState)?, entry.stream);
        let udp = entry.udp.is_some();
        // A denied HTTP request's response goes after the host's bytes, before the FIN.
        if !self.flush_denial(tunnel) {
            if let Some(entry) = self.tunnels.get_mut(&tunnel) {
                entry.sending = Sending::FinQueued;
            }
            return Ok(());
        }
        // On an empty DATA frame, so that quiche cannot lose it; it may wait for credit, and
        // is the engine's to send from here on (`endpoint::fin`).
        match self.write_fin(handle, stream) {
            Ok(()) => {}
            Err(h3::Error::TransportError(quiche::Error::StreamStopped(code))) => {
                self.write_stopped(handle, stream, code);
                return Err(TunnelError::WriteClosed);
            }
            // quiche forgets a stream once both directions are done: the peer's FIN was
            // read and, since our side was still open, the peer must have stopped it (quiche
            // answers a STOP_SENDING with its own RESET_STREAM). Its code went with the
            // stream. A closed direction, not a broken stream: the FIN the engine read still
            // reaches the host.
            Err(h3::Error::TransportError(quiche::Error::InvalidStreamState(_))) if !udp => {
                self.write_stopped(handle, stream, H3_REQUEST_CANCELLED);
                return Err(TunnelError::WriteClosed);
            }
            Err(error) => {
                tracing::debug!(?tunnel, %error, "tunnel finish failed");
                self.fail_tunnel(tunnel);
                return Err(TunnelError::Stream);
            }
        }
        // A UDP tunnel then lasts until the peer's FIN (or its idle timeout).
        if udp {
            if let Some(conn) = self.conns.get_mut(handle) {
                udp::purge_datagrams(&mut conn.wire, stream);
            }
        }
        if let Some(entry) = self.tunnels.get_mut(&tunnel) {
            entry.sending = Sending::Finished;
        }
        self.finish_if_done(tunnel);
        Ok(())
    }

    /// Reads received bytes into `out`. `len == 0 && !fin`: nothing more now, wait for
    /// `TunnelReadable`. `fin`: the peer finished its direction and everything before it
    /// has been read. On a UDP tunnel: `Err(NotStream)`.
    pub fn tunnel_recv(&mut self, tunnel: TunnelId, out: &mut [u8]) -> Result<Recv, TunnelError> {
        let received = self.recv_bytes(tunnel, out);
        if let Ok(recv) = &received {
            self.stats.tunnel_bytes_received += recv.len as u64;
            if recv.len > 0 {
                let now = self.clock;
                if let Some(entry) = self.tunnels.get_mut(&tunnel) {
                    entry.last_activity = Some(now);
                    // The first byte: its delay since the request, once.
                    if let Some(created) = entry.created.take() {
                        self.stats
                            .tunnel_first_byte
                            .record(now.saturating_duration_since(created));
                    }
                }
            }
            if let Some(trail) = self.tunnels.get_mut(&tunnel).and_then(|t| t.trail.as_mut()) {
                trail.bytes_from_client += recv.len as u64;
            }
        }
        received
    }

    /// [`tunnel_recv`](Self::tunnel_recv) without the audit count.
    fn recv_bytes(&mut self, tunnel: TunnelId, out: &mut [u8]) -> Result<Recv, TunnelError> {
        let entry = self
            .tunnels
            .get_mut(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        if entry.udp.is_some() {
            return Err(TunnelError::NotStream);
        }
        if !matches!(entry.state, TunnelState::Open) {
            // Optimistic: open to the host, nothing to read before the edge's answer.
            if entry.early.told_open() {
                return Ok(Recv::default());
            }
            return Err(TunnelError::InvalidState);
        }
        if entry.receiving == Receiving::FinDelivered {
            return Ok(Recv { len: 0, fin: true });
        }
        let inspect = entry.request.as_ref().is_some_and(|r| r.inspect);
        if inspect && entry.inspector.is_none() {
            let mut inspector = Box::new(inspect::HttpInspector::new());
            if let Some(first) = entry.sniffed.as_mut() {
                inspector.seed(first);
            }
            entry.inspector = Some(inspector);
        }
        if entry.inspector.is_some() {
            return self.inspected_recv(tunnel, out);
        }
        if let Some(len) = entry.sniffed.as_mut().and_then(|first| first.take(out)) {
            // The first bytes, read while sniffing, come before anything quiche holds.
            return Ok(Recv { len, fin: false });
        }
        let (handle, stream) = (entry.conn.ok_or(TunnelError::InvalidState)?, entry.stream);
        // Before reading: quiche forgets a stream once its last byte is read and our
        // direction is over, and with it whether the peer stopped ours.
        self.notice_stopped(tunnel);
        let conn = self.conns.get_mut(handle).ok_or(TunnelError::Stream)?;
        let h3 = conn.http.as_mut().ok_or(TunnelError::Stream)?;
        let len = match h3.recv_body(&mut conn.wire, stream, out) {
            Ok(len) => len,
            Err(h3::Error::Done) => 0,
            Err(h3::Error::TransportError(quiche::Error::StreamReset(code))) => {
                self.peer_reset(handle, stream, code);
                return Err(TunnelError::Stream);
            }
            Err(error) => {
                tracing::debug!(?tunnel, %error, "tunnel receive failed");
                self.fail_tunnel(tunnel);
                return Err(TunnelError::Stream);
            }
        };
        // Reading returned flow-control credit to the peer: a window update may be due. It
        // goes with an acknowledgement that waits (`endpoint::ack_delay`), if one does.
        if self
            .conns
            .get(handle)
            .is_some_and(|conn| conn.ack.due().is_none())
        {
            self.queue_send(handle);
        }
        let finished = self
            .conns
            .get(handle)
            .is_some_and(|conn| conn.wire.stream_finished(stream));
        if !finished {
            return Ok(Recv { len, fin: false });
        }
        // Already looked for since HTTP/3 read the FIN, or from now on.
        let watched = self.tunnels.get_mut(&tunnel).is_some_and(|entry| {
            std::mem::replace(&mut entry.receiving, Receiving::FinDelivered) == Receiving::FinRead
        });
        self.finish_if_done(tunnel);
        if !watched && self.tunnels.contains_key(&tunnel) {
            if let Some(conn) = self.conns.get_mut(handle) {
                conn.peer_finished.push(tunnel);
            }
        }
        Ok(Recv { len, fin: true })
    }

    /// Graceful shutdown: GOAWAY, then `CONNECTION_CLOSE` with `error_code` and `reason` on
    /// every connection; a client stops reconnecting and refuses waiting tunnels with
    /// `EdgeUnavailable`. Poll until `is_closed`.
    pub fn close(&mut self, now: Instant, error_code: u64, reason: &[u8]) {
        self.closing = true;
        if let RoleState::Client(client) = &mut self.role {
            let waiting: Vec<TunnelId> = client.pending.drain(..).collect();
            for id in waiting {
                self.refuse_waiting(id, RefusedReason::EdgeUnavailable);
            }
        }
        let handles: Vec<u64> = self.conns.keys().copied().collect();
        for handle in handles {
            if let Some(conn) = self.conns.get_mut(handle) {
                conn.close(error_code, reason);
                // Nothing more will cross: the host hears of its tunnels now, not after the
                // closing period.
                let ids: Vec<TunnelId> = conn.streams.drain().map(|(_, id)| id).collect();
                self.lose_tunnels(now, ids);
            }
            self.refresh_timer(handle);
            self.queue_send(handle);
            self.reap(now, handle);
        }
    }

    /// Whether every connection has drained (after `close`, or before any connection).
    pub fn is_closed(&self) -> bool {
        self.conns.is_empty() && self.stateless.is_empty()
    }

    /// Tunnels alive now (requested, opening or open): `stats().tunnels`, without
    /// gathering every other counter. A client host with lanes passes it to
    /// [`LanePicker::pick_counting`](crate::lanes::LanePicker::pick_counting).
    pub fn tunnel_count(&self) -> usize {
        self.tunnels.len()
    }

    /// Connections whose path is longer than a LAN: their smallest round trip took over
    /// [`LONG_PATH_RTT`] during the handshake and still does (quiche's smallest RTT falls
    /// as the connection carries more; a handshake on a busy host can take that long on
    /// loopback), or, after the peer moved to another path (a NAT rebinding,
    /// `endpoint::paths`), the new path's does.
    ///
    /// For the host's socket buffers. Across such a path whose link does not cap the
    /// rate, the receiving socket is the path's only queue, and the kernel's default size
    /// (208 KiB on Debian) is a small part of the bandwidth-delay product: over a 20 ms
    /// path a tunnel moved 12 MiB/s at the kernel's size and 90 at 1 MiB. Where every
    /// path is short (a LAN, loopback) and a receiver is held by its CPU, a larger buffer
    /// is only a longer queue: CUBIC fills it, and round trips beside a saturating
    /// transfer on the same connection waited about 10 ms instead of about 1.3
    /// (docs/PERFORMANCE.md, "The default socket buffers"). So a host grows its QUIC
    /// socket's buffers while this is above zero, and leaves the kernel's otherwise.
    pub fn long_paths(&self) -> usize {
        self.long_paths.count()
    }

    /// The most bytes a connection on a long path (see [`long_paths`](Self::long_paths))
    /// received in one round trip since the endpoint last had none such: the flight its
    /// peer keeps in the air, which the receiving socket must hold while the host is off
    /// its CPU. 0 without a long path.
    ///
    /// For the host's socket buffers, which grow to about twice it as it grows
    /// ([`BufferSizer`](crate::socket_buffers::BufferSizer)), as Linux grows a TCP
    /// receiver's buffer to twice what was read in a round trip: a buffer that holds
    /// less loses the bursts that would let the flight grow.
    pub fn received_flight(&self) -> usize {
        self.long_paths.largest_flight()
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        // Packet counts: those of connections gone (kept as they end), and of those open.
        let (sent, lost) = self
            .conns
            .values()
            .fold((0u64, 0u64), |(sent, lost), conn| {
                let Some(stats) = conn.wire.quic().map(quiche::Connection::stats) else {
                    return (sent, lost);
                };
                (sent + stats.sent as u64, lost + stats.lost as u64)
            });
        // HTTP/2 bounds: those of connections gone, and of those open.
        let mut http2_bounds = self.stats.http2_bounds;
        for conn in self.conns.values() {
            if let Some(session) = conn.wire.tcp().and_then(crate::tcp::TcpConn::session) {
                http2_bounds.merge(&crate::types::Http2Bounds::from_session(&session.stats()));
            }
        }
        EndpointStats {
            http2_bounds,
            connections: self.conns.len(),
            tunnels: self.tunnels.len(),
            ip_addresses_assigned: match &self.role {
                RoleState::Edge(edge) => edge.ip_pool.in_use(),
                RoleState::Client(_) => 0,
            },
            quic_packets_sent: self.stats.quic_packets_sent + sent,
            quic_packets_lost: self.stats.quic_packets_lost + lost,
            ip_decap_flows: self.decap.len(),
            ..self.stats
        }
    }
}

// Routing and connection setup.
impl Endpoint {
    /// The connection a datagram belongs to, creating it for an edge's valid Initial.
    fn route(&mut self, meta: RecvMeta, datagram: &mut [u8]) -> Option<u64> {
        let len = datagram.len();
        let header = quiche::Header::from_slice(datagram, CID_LEN).ok()?;
        if let Some(handle) = self.conns.route(header.dcid.as_ref()) {
            return Some(handle);
        }
        if let RoleState::Client(client) = &self.role {
            // A Stateless Reset carries no connection ID of ours (its bytes are random but
            // for the token at the end): quiche recognises it when it fails to decrypt it.
            //# RFC 9000 §10.3.1: "An endpoint detects a potential Stateless Reset using the
            //# trailing 16 bytes of the UDP datagram."
            let from_edge = meta.from == client.edge_addr;
            return client
                .conn
                .filter(|_| from_edge && header.ty == quiche::Type::Short);
        }
        if header.ty == quiche::Type::Short {
            self.reset_stateless(meta, &header.dcid, len);
            return None;
        }
        self.accept(meta, &header, len)
    }

    /// Edge: answers a short-header packet for a connection it does not know (one it had
    /// before a restart, or another edge's) with a Stateless Reset, so that the client
    /// gives the connection up at once instead of at its idle timeout.
    //# RFC 9000 §10.3: "An endpoint that receives packets that it cannot process sends a
    //# stateless reset in response."
    fn reset_stateless(&mut self, meta: RecvMeta, dcid: &[u8], len: usize) {
        let RoleState::Edge(edge) = &self.role else {
            return;
        };
        if self.stateless.len() >= MAX_STATELESS {
            return;
        }
        if let Some(packet) = edge.reset.packet(dcid, len) {
            self.stateless.push_back((packet, meta.from, meta.to));
            self.stats.stateless_resets += 1;
        }
    }

    /// Edge: a new connection for an Initial nobody routes, if it may start one.
    fn accept(&mut self, meta: RecvMeta, header: &quiche::Header<'_>, len: usize) -> Option<u64> {
        let RoleState::Edge(edge) = &mut self.role else {
            return None;
        };
        if matches!(
            header.ty,
            quiche::Type::Short | quiche::Type::VersionNegotiation
        ) {
            return None;
        }
        //# RFC 9000 §5.2.2: "If a server receives a packet that indicates an unsupported
        //# version and if the packet is large enough to initiate a new connection for any
        //# supported version, the server SHOULD send a Version Negotiation packet"
        if !quiche::version_is_supported(header.version) {
            if len >= MIN_INITIAL_LEN {
                self.negotiate_version(meta, header);
            }
            return None;
        }
        if header.ty != quiche::Type::Initial {
            return None;
        }
        //# RFC 9000 §14.1: "A server MUST discard an Initial packet that is carried in a UDP
        //# datagram with a payload that is smaller than the smallest allowed maximum
        //# datagram size of 1200 bytes."
        if len < MIN_INITIAL_LEN
            || self.closing
            || self.draining
            || self.conns.len() >= edge.max_connections
        {
            return None;
        }
        let token = header.token.as_deref().filter(|token| !token.is_empty());
        let checked = token.map_or(Checked::NotOurs, |token| {
            edge.retry.check(token, meta.from, self.clock)
        });
        let (scid, odcid) = match checked {
            // After our Retry the client's Initial goes to the connection ID the Retry
            // gave it, which is ours (made with this engine's layout) and stays.
            Checked::Valid(odcid) => (header.dcid.to_vec(), Some(odcid)),
            //# RFC 9000 §8.1.3: "If the token is invalid, then the server SHOULD proceed
            //# as if the client did not have a validated address, including potentially
            //# sending a Retry packet."
            // A client takes one Retry per attempt: a second would be ignored, so ours
            // that fail are dropped, counted.
            Checked::Invalid => {
                self.stats.retry_tokens_invalid += 1;
                return None;
            }
            Checked::NotOurs => {
                if edge.retry.wants_retry(self.clock) {
                    self.send_retry(meta, header);
                    return None;
                }
                (new_connection_id(self.cid_layout)?.to_vec(), None)
            }
        };
        let RoleState::Edge(edge) = &self.role else {
            return None;
        };
        let scid = quiche::ConnectionId::from_vec(scid);
        // The token goes to the client in the transport parameters of this connection.
        self.quic_config
            .set_stateless_reset_token(Some(edge.reset.token(&scid)?));
        let odcid = odcid.map(quiche::ConnectionId::from_vec);
        let quic = quiche::accept(
            &scid,
            odcid.as_ref(),
            meta.to,
            meta.from,
            &mut self.quic_config,
        )
        .map_err(|error| tracing::debug!(%error, "accept failed"))
        .ok()?;
        let handle = self.insert_conn(Wire::Quic(quic), meta.to, meta.from);
        // The client keeps using the DCID it chose until it learns ours.
        self.add_route(handle, scid.to_vec());
        if odcid.is_none() {
            self.add_route(handle, header.dcid.to_vec());
        }
        Some(handle)
    }

    /// Edge: answers a tokenless Initial with a Retry (RFC 9000 §17.2.5) whose token
    /// vouches for the client's address and its original connection ID, and whose Source
    /// Connection ID is the one the client's next Initial goes to.
    fn send_retry(&mut self, meta: RecvMeta, header: &quiche::Header<'_>) {
        let RoleState::Edge(edge) = &self.role else {
            return;
        };
        // A flood faster than the host sends: the Initial is dropped, counted.
        if self.stateless.len() >= MAX_STATELESS {
            self.stats.datagrams_dropped += 1;
            return;
        }
        let Some(new_scid) = new_connection_id(self.cid_layout) else {
            return;
        };
        let Some(token) = edge.retry.token(meta.from, &header.dcid, self.clock) else {
            return;
        };
        let mut packet = vec![0; MIN_INITIAL_LEN];
        if let Ok(len) = quiche::retry(
            &header.scid,
            &header.dcid,
            &new_scid,
            &token,
            header.version,
            &mut packet,
        ) {
            packet.truncate(len);
            self.stateless.push_back((packet, meta.from, meta.to));
            self.stats.retries += 1;
        }
    }

    fn negotiate_version(&mut self, meta: RecvMeta, header: &quiche::Header<'_>) {
        if self.stateless.len() >= MAX_STATELESS {
            return;
        }
        let mut packet = vec![0; MIN_INITIAL_LEN];
        if let Ok(len) = quiche::negotiate_version(&header.scid, &header.dcid, &mut packet) {
            packet.truncate(len);
            self.stateless.push_back((packet, meta.from, meta.to));
            self.stats.version_negotiations += 1;
        }
    }

    fn insert_conn(&mut self, wire: Wire, local: SocketAddr, peer: SocketAddr) -> u64 {
        let handle = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            handle,
            Conn {
                handle: ConnectionHandle(handle),
                wire,
                http: None,
                peer,
                local,
                streams: HashMap::default(),
                routes: Vec::new(),
                queued: false,
                unprocessed: false,
                held: Held::default(),
                ack: AckDelay::default(),
                path_length: PathLength::Short,
                flight: long_paths::FlightMeter::default(),
                goaway: false,
                credit: Credit::Flowing,
                goaway_sent: None,
                largest_request: None,
                error_responses: VecDeque::new(),
                accepting: Vec::new(),
                keep_alive_at: None,
                datagrams_taken: 0,
                peer_finished: Vec::new(),
                fins_waiting: Vec::new(),
                ended: shutdown::Ended::default(),
                leftovers: shutdown::Ended::default(),
                abandoned: Vec::new(),
                send_turn: 0,
                lead: turns::Lead::default(),
                timer: None,
                ingress: Ingress::Pending,
                certificate_identity: None,
                moved: None,
                early_resets: crate::h2::RateWindow::default(),
            },
        );
        self.refresh_timer(handle);
        self.stats.connections_total += 1;
        handle
    }

    fn add_route(&mut self, handle: u64, cid: Vec<u8>) {
        self.conns.add_route(handle, cid);
    }

    /// Client: the current connection attempt, if tunnels wait for it and it has heard
    /// nothing from the edge, and when it goes stale ([`STALE_ATTEMPT`] after it started).
    fn stale_attempt(&self) -> Option<(u64, Instant)> {
        let RoleState::Client(client) = &self.role else {
            return None;
        };
        let handle = client.conn?;
        let conn = self.conns.get(handle)?;
        let unanswered = !conn.wire.is_established()
            && !conn.wire.is_closed()
            && conn.wire.quic().is_some_and(|quic| quic.stats().recv == 0);
        (unanswered && !client.pending.is_empty())
            .then_some((handle, client.attempt_at + STALE_ATTEMPT))
    }

    /// Client: starts a connection when tunnels wait, none is current and backoff allows.
    ///
    /// An attempt the edge has not answered for [`STALE_ATTEMPT`] while tunnels wait is
    /// replaced by a fresh one, at once: quiche backs off its handshake's retransmissions
    /// (1, 2, 4, 8, 16 s apart) until the idle timeout, so an attempt started while the
    /// path was dark would otherwise keep tunnels waiting for up to that long after the
    /// path's return.
    fn client_connect(&mut self, now: Instant) {
        if let Some((handle, at)) = self.stale_attempt().filter(|&(_, at)| at <= now) {
            tracing::debug!(connection = handle, since = ?at, "no answer from the edge: a fresh attempt");
            if let Some(conn) = self.conns.get_mut(handle) {
                let _ = conn.wire.close(false, 0, b"no answer");
            }
            self.remove_conn(now, handle);
            if let RoleState::Client(client) = &mut self.role {
                client.retry_at = None;
            }
        }
        self.race(now);
        let RoleState::Client(client) = &mut self.role else {
            return;
        };
        if self.closing
            || client.conn.is_some()
            || client.pending.is_empty()
            || client.retry_at.is_some_and(|at| at > now)
        {
            return;
        }
        // An auto client that fell back to HTTP/2 reconnects there until HTTP/3 is due.
        let over_tcp = match client.transport {
            crate::config::Transport::H2 => true,
            crate::config::Transport::Auto => client.h3_again_at.is_some_and(|at| at > now),
            _ => false,
        };
        let attempt = if over_tcp {
            self.start_tcp_attempt(now)
        } else {
            self.start_quic_attempt()
        };
        let RoleState::Client(client) = &mut self.role else {
            return;
        };
        let Some(handle) = attempt else {
            client.schedule_retry(now);
            return;
        };
        client.retry_at = None;
        client.attempt_at = now;
        client.conn = Some(handle);
    }

    /// Client: a new QUIC connection to the edge, its first packets queued.
    fn start_quic_attempt(&mut self) -> Option<u64> {
        let RoleState::Client(client) = &mut self.role else {
            return None;
        };
        let attempt = new_connection_id(self.cid_layout).and_then(|scid| {
            tls::connect(
                &client.server_name,
                &scid,
                client.local_addr,
                client.edge_addr,
                &mut self.quic_config,
            )
            .map_err(|error| tracing::warn!(%error, "cannot start a connection"))
            .ok()
            .map(|quic| (scid, quic))
        });
        let (scid, quic) = attempt?;
        let (local, edge) = (client.local_addr, client.edge_addr);
        let handle = self.insert_conn(Wire::Quic(quic), local, edge);
        self.add_route(handle, scid.to_vec());
        self.queue_send(handle);
        Some(handle)
    }

    fn queue_send(&mut self, handle: u64) {
        if let Some(conn) = self.conns.get_mut(handle) {
            if !conn.queued {
                conn.queued = true;
                if conn.wire.is_tcp() {
                    self.tcp_ready.push_back(handle);
                } else {
                    self.send_queue.push_back(handle);
                }
            }
        }
    }
}

// Processing a connection after input.
impl Endpoint {
    fn process(&mut self, now: Instant, handle: u64) {
        self.drain_path_events(handle);
        if let Some(conn) = self.conns.get_mut(handle) {
            // A long path is measured again as quiche's smallest RTT falls (a handshake on
            // a busy host can take over `LONG_PATH_RTT` on loopback; the exchanges after
            // it say what the path is), and a moved one once quiche has its new path's.
            if matches!(
                conn.path_length,
                PathLength::Moved { .. } | PathLength::Long { .. }
            ) {
                conn.measure_path(&mut self.long_paths);
            }
        }
        self.setup_h3(handle);
        self.poll_h3(handle);
        self.take_quic_datagrams(now, handle);
        self.retry_responses(handle);
        self.notice_stops(handle);
        self.poll_writable(handle);
        self.decapsulate_due();
        self.prune_ended(handle);
        self.prune_leftovers(handle);
        // A GOAWAY may have retired the current connection: waiting tunnels need another.
        self.client_connect(now);
        self.flush_pending();
        if !self.reap(now, handle) {
            let wait = self.ack_may_wait(now, handle);
            self.refresh_timer(handle);
            if !wait {
                self.queue_send(handle);
            }
        }
    }

    /// Whether the connection may wait for bytes to carry the acknowledgement it owes
    /// before asking quiche for packets (`endpoint::ack_delay`).
    fn ack_may_wait(&mut self, now: Instant, handle: u64) -> bool {
        let Some(conn) = self.conns.get_mut(handle) else {
            return false;
        };
        let quiet = conn.held.quiet()
            && conn.wire.quic().is_some_and(|quic| {
                quic.is_established() && !quic.is_draining() && quic.local_error().is_none()
            });
        // With `AckDelayPaths::Long`, on a short path the acknowledgement goes at once
        // (`endpoint::ack_delay`, "Long paths only").
        let delay =
            if conn.path_length.is_long() || self.ack_delay_paths == crate::AckDelayPaths::All {
                self.ack_delay
            } else {
                Duration::ZERO
            };
        conn.ack.defer(now, delay, quiet)
    }

    /// Creates the HTTP/3 layer once the handshake completes.
    fn setup_h3(&mut self, handle: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        if conn.http.is_some() || !conn.wire.is_established() {
            return;
        }
        if let RoleState::Edge(edge) = &self.role {
            match conn.ingress {
                Ingress::Accepted => {}
                Ingress::Asked { .. } | Ingress::Decided => return,
                Ingress::Pending => {
                    conn.certificate_identity = conn
                        .wire
                        .peer_cert()
                        .as_deref()
                        .and_then(tls::certificate_identity)
                        .map(String::into_boxed_str);
                    let server_name = conn.wire.server_name();
                    let query = IngressQuery {
                        peer: conn.peer,
                        server_name,
                        alpn: conn.wire.application_proto(),
                        certificate_identity: conn.certificate_identity.as_deref(),
                    };
                    match self.policy.ingress(&query) {
                        IngressVerdict::Accept => conn.ingress = Ingress::Accepted,
                        IngressVerdict::Close { error_code } => {
                            tracing::debug!(connection = handle, peer = %conn.peer, "ingress hook: closed");
                            conn.ingress = Ingress::Decided;
                            let _ = conn.wire.close(true, error_code, b"");
                            return;
                        }
                        IngressVerdict::Ask => {
                            let deadline = self.clock + edge.request_timeout;
                            conn.ingress = Ingress::Asked { deadline };
                            self.unanswered
                                .insert(deadline, requests::Question::Ingress(handle));
                            self.events.push_back(Event::IngressDecision {
                                connection: conn.handle,
                                peer: conn.peer,
                                server_name: server_name.map(str::to_owned),
                            });
                            return;
                        }
                    }
                }
            }
        }
        conn.measure_path(&mut self.long_paths);
        match Http::new(&mut conn.wire, &self.h3_config) {
            Ok(http) => conn.http = Some(http),
            Err(error) => {
                tracing::debug!(connection = handle, %error, "HTTP/3 setup failed");
                let _ = conn.wire.close(true, H3_INTERNAL_ERROR, b"");
                return;
            }
        }
        self.events.push_back(Event::ConnectionEstablished {
            connection: conn.handle,
            peer: conn.peer,
        });
        self.send_goaway(handle);
        if let RoleState::Client(client) = &mut self.role {
            if client.conn == Some(handle) || client.racer == Some(handle) {
                client.backoff = client.reconnect_initial;
            }
            let now = self.clock;
            self.settle_race(now, handle);
        }
    }

    fn poll_h3(&mut self, handle: u64) {
        // A GOAWAY that found no room (a saturated congestion window) goes out as soon as
        // the peer's acknowledgements make some, before the requests that came with them
        // are read: they are judged against it.
        self.send_goaway(handle);
        loop {
            let Some(conn) = self.conns.get_mut(handle) else {
                return;
            };
            let Some(h3) = conn.http.as_mut() else {
                return;
            };
            match h3.poll(&mut conn.wire) {
                Ok((stream, event)) => self.on_h3_event(handle, stream, event),
                Err(h3::Error::Done) => return,
                Err(error) => {
                    tracing::debug!(connection = handle, %error, "HTTP/3 error");
                    let _ =
                        conn.wire
                            .close(true, h3::WireErrorCode::GeneralProtocolError as u64, b"");
                    return;
                }
            }
        }
    }

    fn on_h3_event(&mut self, handle: u64, stream: u64, event: h3::Event) {
        match event {
            h3::Event::Headers { list, .. } => match self.role {
                RoleState::Edge(_) => self.on_request(handle, stream, &list),
                RoleState::Client(_) => self.on_response(handle, stream, &list),
            },
            h3::Event::Data => self.on_readable(handle, stream, false),
            h3::Event::Finished => self.on_readable(handle, stream, true),
            h3::Event::Reset(code) => self.peer_reset(handle, stream, code),
            // For a GOAWAY, quiche gives its ID in place of a stream.
            h3::Event::GoAway => self.on_goaway(handle, stream),
            h3::Event::PriorityUpdate => {}
        }
    }

    /// Edge: a request head arrived.
    fn on_request(&mut self, handle: u64, stream: u64, headers: &[h3::Header]) {
        if !matches!(self.role, RoleState::Edge(_)) {
            return;
        }
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        if conn.streams.contains_key(&stream) {
            // Trailers on a tunnel carry nothing for us.
            return;
        }
        if self.reject_after_goaway(handle, stream) {
            return;
        }
        let RoleState::Edge(edge) = &self.role else {
            return;
        };
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        conn.largest_request = conn.largest_request.max(Some(stream));
        let template = self.udp.template();
        match connect::check_request(headers, &edge.tokens, &template) {
            Ok(accepted)
                if !edge.serves.contains(accepted.kind)
                    || (accepted.kind == crate::types::TunnelKind::Ip
                        && edge.ip_pool.is_empty()) =>
            {
                tracing::debug!(kind = ?accepted.kind, "a kind of tunnel the host does not serve");
                self.stats.refused(ErrorResponse::NOT_SERVED.proxy_error);
                send_error_response(conn, stream, ErrorResponse::NOT_SERVED);
            }
            Ok(accepted) => {
                let request = hooks::EdgeRequest {
                    kind: accepted.kind,
                    ip_scope: accepted.ip_scope,
                    target: accepted.target,
                    client: ClientIdentity {
                        peer: conn.peer,
                        token_index: accepted.token_index,
                        connection: conn.handle,
                    },
                    tags: Tags::new(),
                    certificate_identity: conn.certificate_identity.clone(),
                    sni: None,
                    sniffed: false,
                    inspect: false,
                };
                match edge.screen(&request) {
                    Err(refusal) => {
                        self.stats.refused(Some(refusal.proxy_error()));
                        send_error_response(conn, stream, ErrorResponse::from_refusal(refusal));
                        if edge.audit {
                            let record = auditing::audit_refused(edge, &request, refusal);
                            self.push_audit(record);
                        }
                    }
                    Ok(hooks::Screening::Sniff) => self.start_sniffing(handle, stream, request),
                    Ok(hooks::Screening::Pass) => self.consult_tunnel_hook(handle, stream, request),
                }
            }
            Err(rejection) => {
                self.stats.refused(rejection.proxy_error);
                if rejection.is_auth() {
                    self.stats.auth_failures += 1;
                }
                send_error_response(conn, stream, rejection);
            }
        }
    }

    /// Client: a response head arrived.
    fn on_response(&mut self, handle: u64, stream: u64, headers: &[h3::Header]) {
        let Some(&id) = self
            .conns
            .get(handle)
            .and_then(|conn| conn.streams.get(&stream))
        else {
            self.answer_abandoned(handle, stream);
            return;
        };
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        if !matches!(tunnel.state, TunnelState::AwaitingResponse { .. }) {
            return;
        }
        let mut response = connect::parse_response(headers);
        if response == Response::Success
            && tunnel.udp.is_some()
            && udp_request::success_is_malformed(headers)
        {
            response = Response::Malformed;
        }
        let (reason, code) = match response {
            Response::Informational => return,
            Response::Success => {
                let is_udp = tunnel.udp.is_some();
                let created = tunnel.created;
                let told_open = tunnel.early.told_open();
                self.start_clocks(id);
                if !told_open {
                    self.events.push_back(Event::TunnelOpened { tunnel: id });
                }
                if let Some(created) = created {
                    self.stats
                        .tunnel_setup
                        .record(self.clock.saturating_duration_since(created));
                }
                if is_udp {
                    self.udp_opened(handle, id);
                }
                return;
            }
            Response::Refused {
                status,
                proxy_error,
                proxy_status,
            } => (
                RefusedReason::Status {
                    status,
                    proxy_error,
                    proxy_status,
                },
                H3_REQUEST_CANCELLED,
            ),
            Response::Malformed => (RefusedReason::MalformedResponse, H3_MESSAGE_ERROR),
        };
        let early = tunnel.early;
        self.remove_tunnel(id);
        if let Some(conn) = self.conns.get_mut(handle) {
            conn.abort_stream(stream, code);
        }
        self.report_refused(id, early, reason);
    }

    /// Bytes (or the FIN) arrived on a stream.
    fn on_readable(&mut self, handle: u64, stream: u64, finished: bool) {
        let id = self
            .conns
            .get(handle)
            .and_then(|conn| conn.streams.get(&stream).copied());
        let Some(tunnel) = id.and_then(|id| self.tunnels.get_mut(&id)) else {
            self.discard(handle, stream);
            return;
        };
        let Some(id) = id else { return };
        if tunnel.udp.is_some() && matches!(tunnel.state, TunnelState::Open) {
            self.read_capsules(handle, id);
            return;
        }
        match tunnel.state {
            TunnelState::Open if tunnel.receiving != Receiving::FinDelivered => {
                self.events.push_back(Event::TunnelReadable { tunnel: id });
                // HTTP/3 read the peer's FIN (itself, when no data came before it): quiche
                // may forget the stream before the host reads the FIN, and a stop of our
                // direction with it, so it is looked for after each batch of input from
                // now on (`notice_stops`).
                if finished && tunnel.udp.is_none() && tunnel.receiving == Receiving::Open {
                    tunnel.receiving = Receiving::FinRead;
                    if let Some(conn) = self.conns.get_mut(handle) {
                        conn.peer_finished.push(id);
                    }
                }
            }
            TunnelState::Sniffing { .. } => self.read_first_bytes(handle, id),
            // Read once the 200 is out (`retry_accept`), whatever the answer took.
            TunnelState::Deciding { .. }
            | TunnelState::Requested { .. }
            | TunnelState::Accepting => {
                tunnel.receiving = Receiving::Deferred;
            }
            TunnelState::AwaitingResponse { .. } if finished => {
                // An end without a response head: the request stream is given up both
                // ways, so that it does not stay open in quiche.
                let early = tunnel.early;
                self.remove_tunnel(id);
                if let Some(conn) = self.conns.get_mut(handle) {
                    conn.abort_stream(stream, H3_MESSAGE_ERROR);
                }
                self.report_refused(id, early, RefusedReason::MalformedResponse);
            }
            _ => {}
        }
    }

    /// Reads and drops whatever a stream without a tunnel holds, so that it cannot pin
    /// flow-control credit.
    fn discard(&mut self, handle: u64, stream: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let Some(h3) = conn.http.as_mut() else {
            return;
        };
        while let Ok(len) = h3.recv_body(&mut conn.wire, stream, &mut self.scratch) {
            if len == 0 {
                break;
            }
        }
    }

    /// A stream failed locally in a way quiche does not explain: reset it, report it.
    fn fail_tunnel(&mut self, id: TunnelId) {
        self.note_end(id, crate::audit::Ending::Failed);
        if let Some((handle, stream)) = self.remove_tunnel(id) {
            if let Some(conn) = self.conns.get_mut(handle) {
                conn.abort_stream(stream, H3_INTERNAL_ERROR);
            }
            self.queue_send(handle);
        }
        self.events.push_back(Event::TunnelClosed {
            tunnel: id,
            reason: CloseReason::Reset {
                code: H3_INTERNAL_ERROR,
            },
        });
    }

    /// Sends refusals and acceptances that waited for stream capacity.
    fn retry_responses(&mut self, handle: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        for _ in 0..conn.error_responses.len() {
            let Some((stream, rejection)) = conn.error_responses.pop_front() else {
                break;
            };
            send_error_response(conn, stream, rejection);
        }
        if conn.accepting.is_empty() {
            return;
        }
        for id in std::mem::take(&mut conn.accepting) {
            self.retry_accept(handle, id);
        }
    }

    /// Edge: sends the 200 of an accepted tunnel, if the stream has room for it.
    fn retry_accept(&mut self, handle: u64, id: TunnelId) {
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        if !matches!(tunnel.state, TunnelState::Accepting) {
            return;
        }
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let Some(h3) = conn.http.as_mut() else {
            return;
        };
        let headers: &[h3::Header] = if tunnel.udp.is_some() {
            &udp_request::accept_headers()
        } else {
            &connect::accept_headers()
        };
        let answered = h3.send_response(&mut conn.wire, tunnel.stream, headers, false);
        if answered.is_ok() {
            conn.held.wrote();
        }
        match answered {
            Ok(()) if tunnel.sniffed.is_some() => self.sniff_answered(handle, id),
            Ok(()) => {
                let readable = tunnel.receiving == Receiving::Deferred;
                if readable {
                    tunnel.receiving = Receiving::Open;
                }
                let writable = tunnel.sending == Sending::Open { blocked: true };
                let fin = tunnel.sending == Sending::FinQueued;
                if writable || fin {
                    // The FIN goes now, through `tunnel_finish` (which ignores a queued one).
                    tunnel.sending = Sending::Open { blocked: false };
                }
                let is_udp = tunnel.udp.is_some();
                let is_ip = tunnel.ip.is_some();
                self.start_clocks(id);
                if is_udp {
                    self.udp_opened(handle, id);
                    if is_ip {
                        self.ip_opened(handle, id);
                    }
                    if readable {
                        self.read_capsules(handle, id);
                    }
                } else {
                    if readable {
                        self.events.push_back(Event::TunnelReadable { tunnel: id });
                    }
                    if writable {
                        self.events.push_back(Event::TunnelWritable { tunnel: id });
                    }
                }
                if fin {
                    let _ = self.tunnel_finish(id);
                }
            }
            Err(h3::Error::StreamBlocked) => conn.accepting.push(id),
            Err(error) => {
                tracing::debug!(?id, %error, "cannot send 200");
                self.fail_tunnel(id);
            }
        }
    }

    /// Reports `TunnelWritable` for blocked tunnels with room again, and notices streams the
    /// peer stopped.
    fn poll_writable(&mut self, handle: u64) {
        let mut stopped = Vec::new();
        let mut capsule_backlogs = Vec::new();
        let mut denials = Vec::new();
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let mut fins = Vec::new();
        let mut writable = Vec::new();
        while let Some(stream) = conn.wire.stream_writable_next() {
            if conn.fins_waiting.contains(&stream) {
                fins.push(stream);
            }
            let Some(&id) = conn.streams.get(&stream) else {
                continue;
            };
            let Some(tunnel) = self.tunnels.get_mut(&id) else {
                continue;
            };
            if let Err(quiche::Error::StreamStopped(code)) = conn.wire.stream_capacity(stream) {
                //# RFC 9114 §4.1.1: "Clients MUST NOT discard complete responses as a
                //# result of having their request terminated abruptly"
                // An edge that refuses also stops our request stream; its response follows.
                if !matches!(tunnel.state, TunnelState::AwaitingResponse { .. }) {
                    stopped.push((stream, code));
                }
                continue;
            }
            if tunnel
                .udp
                .as_ref()
                .is_some_and(|flow| !flow.capsule_backlog.is_empty())
            {
                capsule_backlogs.push(id);
            }
            if tunnel
                .inspector
                .as_ref()
                .is_some_and(|inspector| !inspector.denial.is_empty())
            {
                denials.push(id);
            }
            let sends = match tunnel.state {
                TunnelState::Open => true,
                TunnelState::AwaitingResponse { .. } => tunnel.early.told_open(),
                _ => false,
            };
            if tunnel.sending == (Sending::Open { blocked: true }) && sends {
                tunnel.sending = Sending::Open { blocked: false };
                writable.push((stream, id));
            }
        }
        turns::in_turn(&mut writable, conn.lead.round_after(conn.send_turn));
        self.events.extend(
            writable
                .into_iter()
                .map(|(_, tunnel)| Event::TunnelWritable { tunnel }),
        );
        for (stream, code) in stopped {
            self.write_stopped(handle, stream, code);
        }
        for id in capsule_backlogs {
            self.flush_capsule_backlog(handle, id);
        }
        self.retry_denials(denials);
        self.retry_fins(handle, fins);
    }

    /// Client: sends the requests of waiting tunnels on the current connection.
    fn flush_pending(&mut self) {
        let RoleState::Client(client) = &mut self.role else {
            return;
        };
        let Some(handle) = client.conn else {
            return;
        };
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let Some(h3) = conn.http.as_mut() else {
            return;
        };
        let mut sent = Vec::new();
        let extended = h3.extended_connect(&conn.wire);
        let (mut later, mut unsupported) = (Vec::new(), Vec::new());
        let now = self.clock;
        let (credit_before, mut retired) = (conn.credit, false);
        while let Some(&id) = client.pending.front() {
            let Some(tunnel) = self.tunnels.get_mut(&id) else {
                client.pending.pop_front();
                continue;
            };
            let TunnelState::Waiting { target, deadline } = &tunnel.state else {
                client.pending.pop_front();
                continue;
            };
            if tunnel.udp.is_some() && extended != Some(true) {
                client.pending.pop_front();
                match extended {
                    None => later.push(id),
                    Some(_) => unsupported.push(id),
                }
                continue;
            }
            let headers = match tunnel.udp.as_deref() {
                None => connect::request_headers(target, client.token.as_ref()),
                Some(flow) => udp_request::request_headers(
                    match flow.carries {
                        crate::udp::flow::Carries::Udp => udp_request::PROTOCOL,
                        crate::udp::flow::Carries::Ip => crate::ip::request::PROTOCOL,
                    },
                    &udp_request::proxy_authority(&client.server_name, client.edge_addr.port()),
                    &flow.path,
                    client.token.as_ref(),
                ),
            };
            match h3.send_request(&mut conn.wire, &headers, false) {
                Ok(stream) => {
                    conn.held.wrote();
                    conn.credit = Credit::Flowing;
                    client.pending.pop_front();
                    tunnel.state = TunnelState::AwaitingResponse {
                        target: target.clone(),
                        deadline: *deadline,
                    };
                    tunnel.conn = Some(handle);
                    tunnel.stream = stream;
                    conn.streams.insert(stream, id);
                    sent.push(id);
                }
                Err(h3::Error::TransportError(quiche::Error::StreamLimit)) => {
                    if conn.retire_if_credit_withheld(now) {
                        client.conn = None;
                        retired = true;
                    }
                    break;
                }
                Err(h3::Error::StreamBlocked) => break,
                Err(error) => {
                    // GOAWAY received or the connection is failing: wait for the next one.
                    tracing::debug!(connection = handle, %error, "cannot send a request");
                    conn.goaway = true;
                    client.conn = None;
                    break;
                }
            }
        }
        for id in later.into_iter().rev() {
            client.pending.push_front(id);
        }
        let optimistic = client.optimistic;
        for id in unsupported {
            self.refuse_waiting(id, RefusedReason::ExtendedConnectUnsupported);
        }
        if !sent.is_empty() {
            for id in sent {
                self.request_sent(optimistic, id);
            }
            self.queue_send(handle);
        }
        // A starved connection's recheck is one of its deadlines (also when `open_tunnel`,
        // not `process`, got here).
        let credit_after = self.conns.get(handle).map(|conn| conn.credit);
        if credit_after != Some(credit_before) {
            self.refresh_timer(handle);
        }
        if retired {
            self.client_connect(now);
        }
    }

    /// Client: refuses waiting tunnels whose deadline has passed.
    fn expire_pending(&mut self, now: Instant) {
        let RoleState::Client(client) = &mut self.role else {
            return;
        };
        let tunnels = &self.tunnels;
        let (expired, waiting): (Vec<TunnelId>, Vec<TunnelId>) =
            client.pending.iter().partition(|id| {
                tunnels
                    .get(id)
                    .and_then(Tunnel::deadline)
                    .is_none_or(|deadline| deadline <= now)
            });
        if expired.is_empty() {
            return;
        }
        client.pending = waiting.into();
        for id in expired {
            self.refuse_waiting(id, RefusedReason::EdgeUnavailable);
        }
    }

    fn refuse_waiting(&mut self, id: TunnelId, reason: RefusedReason) {
        if let Some(tunnel) = self.tunnels.remove(&id) {
            self.report_refused(id, tunnel.early, reason);
        }
    }

    /// Forgets a tunnel; returns its connection and stream when it had them.
    fn remove_tunnel(&mut self, id: TunnelId) -> Option<(u64, u64)> {
        let tunnel = self.tunnels.remove(&id)?;
        self.audit_tunnel(id, &tunnel);
        self.release_ip_addresses(id, &tunnel);
        if let Some(deadline) = tunnel.question_deadline() {
            self.unanswered
                .remove(deadline, requests::Question::Tunnel(id));
        }
        if let RoleState::Client(client) = &mut self.role {
            if matches!(tunnel.state, TunnelState::Waiting { .. }) {
                client.pending.retain(|&waiting| waiting != id);
            }
        }
        let handle = tunnel.conn?;
        if let Some(conn) = self.conns.get_mut(handle) {
            conn.streams.remove(&tunnel.stream);
            // Only quiche's HTTP/3 layer needs the cleanup; HTTP/2 forgets streams itself.
            if conn.wire.quic().is_some() {
                conn.leftovers.push(tunnel.stream);
            }
            if tunnel.udp.is_some() {
                udp::purge_datagrams(&mut conn.wire, tunnel.stream);
            }
        }
        Some((handle, tunnel.stream))
    }

    /// Removes a closed connection and ends what it carried. Returns whether it did.
    fn reap(&mut self, now: Instant, handle: u64) -> bool {
        if !self.conns.get(handle).is_some_and(|c| c.wire.is_closed()) {
            return false;
        }
        self.remove_conn(now, handle)
    }

    /// Removes a connection, closed or not, and ends what it carried. Returns whether it
    /// was there.
    fn remove_conn(&mut self, now: Instant, handle: u64) -> bool {
        let Some(conn) = self.conns.remove(handle) else {
            return false;
        };
        self.forget_timer(handle, conn.timer);
        if conn.path_length.is_long() {
            self.long_paths.remove();
        }
        // What the connection counted, kept past its end (see `stats`).
        if let Some(session) = conn.wire.tcp().and_then(crate::tcp::TcpConn::session) {
            let bounds = crate::types::Http2Bounds::from_session(&session.stats());
            self.stats.http2_bounds.merge(&bounds);
        }
        if let Some(quic) = conn.wire.quic() {
            let stats = quic.stats();
            self.stats.quic_packets_sent += stats.sent as u64;
            self.stats.quic_packets_lost += stats.lost as u64;
            if let Some(path) = quic.path_stats().next() {
                self.stats.quic_rtt.record(path.rtt);
            }
        }
        if let Ingress::Asked { deadline } = conn.ingress {
            self.unanswered
                .remove(deadline, requests::Question::Ingress(handle));
        }
        let ids: Vec<TunnelId> = conn.streams.values().copied().collect();
        let requeue = self.lose_tunnels(now, ids);
        let reason = conn.wire.describe_close();
        tracing::debug!(connection = handle, %reason, "connection closed");
        self.stats.connections_lost += 1;
        self.events.push_back(Event::ConnectionLost {
            connection: conn.handle,
            reason,
        });
        if let RoleState::Client(client) = &mut self.role {
            for id in requeue.into_iter().rev() {
                client.pending.push_front(id);
            }
        }
        let raced = self.lost_in_race(now, handle);
        if let RoleState::Client(client) = &mut self.role {
            if client.conn == Some(handle) && !raced {
                client.conn = None;
                client.schedule_retry(now);
            }
        }
        self.client_connect(now);
        true
    }

    /// Ends the tunnels `ids` of a connection that is gone or going: a client's request
    /// still in time waits for the next connection (returned, oldest first, for the
    /// caller to queue), everything else is reported refused or closed as lost.
    fn lose_tunnels(&mut self, now: Instant, mut ids: Vec<TunnelId>) -> Vec<TunnelId> {
        ids.sort_unstable();
        let mut requeue = Vec::new();
        for id in ids {
            let Some(mut tunnel) = self.tunnels.remove(&id) else {
                continue;
            };
            self.release_ip_addresses(id, &tunnel);
            if let Some(trail) = tunnel.trail.as_mut() {
                trail.end(crate::audit::Ending::Closed(CloseReason::ConnectionLost));
            }
            self.audit_tunnel(id, &tunnel);
            if let Some(deadline) = tunnel.question_deadline() {
                self.unanswered
                    .remove(deadline, requests::Question::Tunnel(id));
            }
            match tunnel.state {
                // The edge never answered: the request waits for the next connection. Sending
                // it again is safe for CONNECT: if the lost connection's edge did dial, it
                // closes that target connection along with the QUIC connection.
                TunnelState::AwaitingResponse {
                    ref target,
                    deadline,
                } if !self.closing && deadline > now && tunnel.may_send_again() => {
                    requeue.push(id);
                    let waiting = TunnelState::Waiting {
                        target: target.clone(),
                        deadline,
                    };
                    self.tunnels.insert(id, tunnel.for_a_new_request(waiting));
                }
                TunnelState::AwaitingResponse { .. } => {
                    self.report_refused(id, tunnel.early, RefusedReason::ConnectionLost);
                }
                _ => self.events.push_back(Event::TunnelClosed {
                    tunnel: id,
                    reason: CloseReason::ConnectionLost,
                }),
            }
        }
        requeue
    }
}

impl Edge {
    fn new(config: EdgeConfig, reset: StatelessReset, now: Instant) -> Result<Self, ConfigError> {
        let retry_key = reset
            .derive(b"veil retry token key v1")
            .ok_or(ConfigError::Tls {
                what: "retry token key",
                source: boring::error::ErrorStack::get(),
            })?;
        Ok(Self {
            retry: RetryGate::new(config.retry, retry_key, now),
            dns: Box::new(crate::dns::DnsCache::new(config.dns_cache)),
            reset,
            egress: EgressPolicy::new(
                config
                    .egress_allow
                    .iter()
                    .map(|prefix| {
                        prefix
                            .parse::<IpNet>()
                            .map_err(|_| ConfigError::InvalidEgressPrefix(prefix.clone()))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            ip_pool: crate::ip::pool::AddressPool::new(
                &config
                    .ip_pools
                    .iter()
                    .map(|prefix| {
                        prefix
                            .parse::<IpNet>()
                            .map_err(|_| ConfigError::InvalidIpPool(prefix.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            ip_flows_per_tunnel: config.ip_flows_per_tunnel,
            ip_decap: config.ip_decap,
            tcp_tls: None,
            proxy_protocol: config.proxy_protocol,
            egress_proxy_protocol: config.egress_proxy_protocol,
            tokens: config.tokens,
            max_connections: config.max_connections,
            serves: config.serves,
            request_timeout: config.request_timeout,
            audit: config.audit,
            tenant: config.tenant.as_deref().map(Into::into),
            rules: Box::new(
                crate::rules::EdgeRules::new(&config.rules).map_err(ConfigError::InvalidRule)?,
            ),
        })
    }
}

impl Client {
    fn new(config: ClientConfig, now: Instant) -> Self {
        let local_addr = config.local_addr.unwrap_or(match config.edge_addr {
            SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        });
        Self {
            edge_addr: config.edge_addr,
            local_addr,
            server_name: config.server_name,
            token: config.token,
            reconnect_initial: config.reconnect_initial,
            reconnect_max: config.reconnect_max,
            max_pending: config.max_pending_tunnels,
            pending_deadline: config.pending_deadline,
            conn: None,
            retry_at: None,
            attempt_at: now,
            backoff: config.reconnect_initial,
            pending: VecDeque::new(),
            transport: config.transport,
            tcp_tls: None,
            racer: None,
            h3_again_at: None,
            h3_retry: config.h3_retry,
            race_after: None,
            race_backoff: config.reconnect_initial,
            optimistic: config.optimistic,
        }
    }

    /// The next attempt waits the current backoff, which then doubles up to the maximum.
    fn schedule_retry(&mut self, now: Instant) {
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.reconnect_max);
    }
}

impl Conn {
    /// Client: notes that no request may go out for want of stream credit; retires the
    /// connection (no new requests go here) once the edge has held most of its credit for
    /// nothing for longer than the grace. Returns whether it did.
    fn retire_if_credit_withheld(&mut self, now: Instant) -> bool {
        let (withheld, grace) = (credit_withheld(self), credit_grace(self));
        if !self.credit.starved(withheld, now, grace) {
            return false;
        }
        tracing::warn!(
            connection = self.handle.0,
            tunnels = self.streams.len(),
            "the edge withholds stream credit for ended tunnels; new tunnels go to a fresh \
             connection, and this one idles out after its last"
        );
        self.goaway = true;
        true
    }

    fn close(&mut self, error_code: u64, reason: &[u8]) {
        if let Some(h3) = self.http.as_mut() {
            // A server names the first request it will not process; a client has no
            // pushes to name.
            let id = if self.wire.is_server() {
                let next = self.largest_request.map_or(0, |id| id + 4);
                // A later GOAWAY must not name a larger ID (RFC 9114 §5.2).
                self.goaway_sent.map_or(next, |sent| sent.min(next))
            } else {
                0
            };
            let _ = h3.send_goaway(&mut self.wire, id);
        }
        let _ = self.wire.close(true, error_code, reason);
    }
}

impl Tunnel {
    fn new(conn: Option<u64>, state: TunnelState) -> Self {
        Self {
            conn,
            stream: 0,
            state,
            sending: Sending::Open { blocked: false },
            receiving: Receiving::Open,
            udp: None,
            ip: None,
            request: None,
            sniffed: None,
            inspector: None,
            trail: None,
            created: None,
            last_activity: None,
            idle_override: crate::rules::Limit::Global,
            early: optimistic::Early::Off,
        }
    }

    /// Client: the tunnel to queue again (`waiting`) when its request went on a connection
    /// that is lost or going: its age, how far it went before the answer, its direction's
    /// state, and its datagram and IP state emptied for a new request.
    fn for_a_new_request(self, waiting: TunnelState) -> Self {
        let mut again = Self::new(None, waiting);
        again.created = self.created;
        again.early = self.early;
        again.sending = self.sending;
        again.udp = self.udp.map(|mut flow| {
            flow.reset();
            flow
        });
        again.ip = self.ip.map(ip::IpTunnel::for_a_new_request);
        again
    }

    /// Client: whether its request may be sent again on another connection: not once
    /// bytes or the FIN followed it (optimistic), which cannot be sent again.
    fn may_send_again(&self) -> bool {
        self.early != optimistic::Early::Sent
    }

    /// How long this TCP tunnel may stay quiet, given `QuicConfig::tcp_idle_timeout`.
    fn tcp_idle(&self, global: Option<Duration>) -> Option<Duration> {
        self.idle_override.or(global)
    }

    /// How long this UDP or IP tunnel may stay quiet, given
    /// `QuicConfig::udp_idle_timeout`.
    fn udp_idle(&self, global: Duration) -> Option<Duration> {
        self.idle_override.or(Some(global))
    }

    /// An edge tunnel's question to the host and its deadline, while one is open.
    fn question_deadline(&self) -> Option<Instant> {
        match self.state {
            TunnelState::Sniffing { deadline }
            | TunnelState::Deciding { deadline }
            | TunnelState::Requested { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// A client tunnel's pending deadline.
    fn deadline(&self) -> Option<Instant> {
        match &self.state {
            TunnelState::Waiting { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }
}

/// Sends a refusal (with FIN) and asks the client to stop sending; if the stream has no
/// room, the refusal waits on the connection.
fn send_error_response(conn: &mut Conn, stream: u64, rejection: ErrorResponse) {
    let Some(h3) = conn.http.as_mut() else {
        return;
    };
    let headers = connect::error_headers(rejection);
    match h3.send_response(&mut conn.wire, stream, &headers, true) {
        Ok(()) => {
            conn.held.wrote();
            //# RFC 9114 §4.1.1: "A server can send a complete response prior to the client
            //# sending an entire request if the response does not depend on any portion of
            //# the request that has not been sent and received. When the server does not
            //# need to receive the remainder of the request, it MAY abort reading the
            //# request stream, send a complete response, and cleanly close the sending part
            //# of the stream. The error code H3_NO_ERROR SHOULD be used when requesting
            //# that the client stop sending on the request stream."
            let _ = conn
                .wire
                .stream_shutdown(stream, quiche::Shutdown::Read, H3_NO_ERROR);
        }
        Err(h3::Error::StreamBlocked) => conn.error_responses.push_back((stream, rejection)),
        Err(_) => conn.abort_stream(stream, H3_REQUEST_REJECTED),
    }
}

/// Client: how the edge's stream credit comes back on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credit {
    /// Requests go out, or wait for credit that is on its way.
    Flowing,
    /// No request may go out, and the edge has held most of the credit for nothing since
    /// then (`credit_withheld`); after a grace (`credit_grace`) the connection retires.
    Starved { since: Instant, grace: Duration },
    /// No new requests go here, and no keep-alive once its last tunnel ended: it idles out.
    Retired,
}

impl Credit {
    /// Notes a refusal for want of credit, `withheld` or not; returns whether the
    /// connection retires now.
    fn starved(&mut self, withheld: bool, now: Instant, grace: Duration) -> bool {
        match *self {
            _ if !withheld => *self = Self::Flowing,
            Self::Flowing => *self = Self::Starved { since: now, grace },
            Self::Starved { since, grace } if now >= since + grace => {
                *self = Self::Retired;
                return true;
            }
            Self::Starved { .. } | Self::Retired => {}
        }
        false
    }

    /// When a starved connection is looked at again.
    fn recheck_at(self) -> Option<Instant> {
        match self {
            Self::Starved { since, grace } => Some(since + grace),
            Self::Flowing | Self::Retired => None,
        }
    }
}

/// How long credit may stay withheld before the connection retires: the edge returns
/// credit in batches (`MAX_STREAMS` once half its window is used), a round trip late;
/// four round trips, and at least five seconds, leave that lag well behind (a loaded
/// host can be slower than its round trip: the engine memory test, debug and in memory,
/// waited up to a second), and the tunnels that wait time to go on a fresh connection.
fn credit_grace(conn: &Conn) -> Duration {
    let rtt = conn
        .wire
        .quic()
        .and_then(|quic| quic.path_stats().next())
        .map_or(Duration::ZERO, |path| path.rtt);
    (rtt * 4).max(Duration::from_secs(5))
}

/// Client: whether the edge holds stream credit for tunnels that ended here, as a quiche
/// 0.30 edge does for a stream it finished and then stopped reading when the client's reset
/// comes after every byte of the edge's was acknowledged (see `Endpoint::tunnel_abort`): it
/// never forgets that stream, so its unit of credit never comes back. Fewer than half the
/// edge's window of streams open here when no more may open means that half or more are
/// held for nothing, far beyond the round trip's worth that closing tunnels hold for a
/// moment. Without this a long-lived connection would run out of credit, and every later
/// tunnel would wait until it is refused.
fn credit_withheld(conn: &Conn) -> bool {
    let Some(window) = conn
        .wire
        .quic()
        .and_then(quiche::Connection::peer_transport_params)
        .map(|params| params.initial_max_streams_bidi)
    else {
        return false;
    };
    (conn.streams.len() as u64).saturating_mul(2) < window
}

impl Conn {
    /// The smallest RTT quiche has measured on the active path, if it has one.
    fn active_min_rtt(&self) -> Option<Duration> {
        self.wire
            .quic()
            .and_then(|quic| quic.path_stats().find(|path| path.active))
            .and_then(|path| path.min_rtt)
    }

    /// Sets the path's length from the active path's smallest RTT, once quiche has
    /// measured it, and keeps `long_paths` (the endpoint's count) in step.
    fn measure_path(&mut self, long_paths: &mut long_paths::LongPaths) {
        let Some(rtt) = self.active_min_rtt() else {
            return;
        };
        let length = if rtt > LONG_PATH_RTT {
            PathLength::Long { rtt }
        } else {
            PathLength::Short
        };
        match (self.path_length.is_long(), length.is_long()) {
            (false, true) => long_paths.add(),
            (true, false) => long_paths.remove(),
            _ => {}
        }
        self.path_length = length;
    }

    /// Ends a stream abruptly: resets our direction with `code` (an error means it is gone
    /// already) and leaves the peer's to end by itself, reading and dropping what still
    /// arrives (`Endpoint::discard`: the stream has no tunnel any more).
    ///
    /// No `STOP_SENDING`: quiche 0.30 never forgets a stream whose reading we stopped once our
    /// reset is acknowledged before the peer's own end arrives (a `RESET_STREAM` on a stream
    /// that no longer buffers is not a moment at which it collects; the peer's reset and the
    /// acknowledgement of ours usually travel in one packet, the acknowledgement first). Each
    /// such stream stayed in its tables for the connection's life, and on the edge, whose
    /// client opened it, withheld one unit of the client's stream credit for good. The peer
    /// learns of the abort from our `RESET_STREAM` alone:
    //# RFC 9114 §4.4: "A TCP connection error is signaled by abruptly terminating the stream.
    //# A proxy treats any error in the TCP connection, which includes receiving a TCP segment
    //# with the RST bit set, as a stream error of type H3_CONNECT_ERROR."
    /// and ends its own direction in turn (veil's engine does at once, `Endpoint::peer_reset`),
    /// which lets quiche collect the stream as the engine reads that end. HTTP/2 resets a
    /// stream both ways with one `RST_STREAM`.
    fn abort_stream(&mut self, stream: u64, code: u64) {
        let _ = self
            .wire
            .stream_shutdown(stream, quiche::Shutdown::Write, code);
    }
}

/// Every open tunnel keeps a [`Tunnel`] in the endpoint's table (and, at the edge, its
/// boxed request), so their sizes are a floor under the memory of an idle tunnel
/// (docs/PERFORMANCE.md, "Many tunnels on one connection"). A target used to hold its
/// DNS name in a 253-byte buffer: 448 bytes per record, 408 per request.
#[cfg(all(test, target_pointer_width = "64"))]
mod record_sizes {
    #[test]
    fn a_tunnel_record_and_its_request_stay_small() {
        assert!(core::mem::size_of::<crate::TunnelTarget>() <= 32);
        assert!(core::mem::size_of::<super::Tunnel>() <= 200);
        assert!(core::mem::size_of::<super::hooks::EdgeRequest>() <= 160);
    }
}

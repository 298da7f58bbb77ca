//! Configuration of an [`Endpoint`](crate::Endpoint): the role it plays and the QUIC knobs.
//!
//! Every type deserializes with serde, so a TOML file can give it; durations are written in
//! milliseconds (`max_idle_timeout_ms = 30000`), fingerprints as hex (colons allowed).

use crate::rules::{EdgeAction, RuleSpec};
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use veil_proto::masque::udp::DEFAULT_PATH_TEMPLATE;

use crate::types::TunnelKinds;

/// Everything an [`Endpoint`](crate::Endpoint) needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which side of the tunnel this endpoint is, and that side's settings.
    pub role: RoleConfig,
    /// QUIC transport settings, shared by both roles.
    #[serde(default)]
    pub quic: QuicConfig,
}

impl Config {
    /// A client configuration with default QUIC settings.
    pub fn client(client: ClientConfig) -> Self {
        Self {
            role: RoleConfig::Client(client),
            quic: QuicConfig::default(),
        }
    }

    /// An edge configuration with default QUIC settings.
    pub fn edge(edge: EdgeConfig) -> Self {
        Self {
            role: RoleConfig::Edge(edge),
            quic: QuicConfig::default(),
        }
    }
}

/// The role an endpoint plays, with that role's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleConfig {
    /// Proxy mode: open CONNECT tunnels over one QUIC connection to an edge.
    Client(ClientConfig),
    /// Server: terminate QUIC, authenticate, and hand CONNECT requests to the host.
    Edge(EdgeConfig),
}

/// On which paths an acknowledgement owed for a lone packet waits for the answer to carry
/// it ([`QuicConfig::ack_delay`], `endpoint::ack_delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckDelayPaths {
    /// Connections whose smallest round trip is over
    /// [`LONG_PATH_RTT`](crate::LONG_PATH_RTT), as across the Internet. On a LAN's or a
    /// host's own path the ACK goes at once: a small exchange's round trip is shorter on
    /// 2-vCPU hosts (a median 196 µs against 216 in the bench), for one more datagram
    /// each way per message (docs/PERFORMANCE.md, "Acknowledgements at once on short
    /// paths"). Not the default until a failure seen once with it is understood (the same
    /// section).
    Long,
    /// Every path (the default): fewer packets per message.
    #[default]
    All,
}

/// Congestion controller, as quiche implements them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CongestionControl {
    /// CUBIC (RFC 9438), quiche's default.
    #[default]
    Cubic,
    /// `BBRv2` (quiche's `gcongestion` implementation).
    Bbr2,
    /// `NewReno` (RFC 9002 §7).
    Reno,
}

/// QUIC transport settings. The defaults favour throughput on a LAN.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    /// Congestion controller.
    pub congestion_control: CongestionControl,
    /// Initial congestion window, in packets.
    pub initial_congestion_window_packets: usize,
    /// Connection-level receive window advertised at start (`initial_max_data`).
    pub initial_max_data: u64,
    /// Receive window of each stream this endpoint opens (`initial_max_stream_data_bidi_local`).
    pub initial_max_stream_data_bidi_local: u64,
    /// Receive window of each stream the peer opens (`initial_max_stream_data_bidi_remote`).
    pub initial_max_stream_data_bidi_remote: u64,
    /// Bidirectional streams (tunnels) the peer may open at once.
    pub initial_max_streams_bidi: u64,
    /// Upper bound for quiche's connection window auto-tuning.
    pub max_connection_window: u64,
    /// Upper bound for quiche's per-stream window auto-tuning.
    pub max_stream_window: u64,
    /// Idle timeout; the connection closes after this long without traffic.
    #[serde(rename = "max_idle_timeout_ms", deserialize_with = "duration_ms")]
    pub max_idle_timeout: Duration,
    /// Client only: send a PING when nothing was sent for this long, so that an idle
    /// connection stays up. `None` disables keep-alive.
    #[serde(
        rename = "keep_alive_interval_ms",
        deserialize_with = "optional_duration_ms"
    )]
    pub keep_alive_interval: Option<Duration>,
    /// Pace packets: quiche computes a release time for each packet and the engine holds a
    /// packet due later than `now` plus a horizon (the larger of
    /// [`PACING_HORIZON`](crate::PACING_HORIZON) and quiche's `max_release_into_future`,
    /// at most 5 ms) until a later `handle_timeout`. Off by default: it needs a driver
    /// whose timers are finer than a millisecond to reach LAN speeds, and without it the
    /// congestion window still bounds every burst.
    pub pacing: bool,
    /// How long the acknowledgement owed for a lone 1-RTT packet may wait for bytes to
    /// carry it (the answer a host is about to write) before it goes alone; `0`
    /// acknowledges at once, as quiche does by itself. Under the 25 ms `max_ack_delay`
    /// quiche advertises. In an exchange of small messages it saves each side an ACK-only
    /// packet per message, and the other side a wake-up to read it
    /// (`endpoint::ack_delay`, docs/PERFORMANCE.md). On every path unless
    /// [`QuicConfig::ack_delay_paths`] says long ones only.
    #[serde(rename = "ack_delay_ms", deserialize_with = "duration_ms")]
    pub ack_delay: Duration,
    /// On which paths the acknowledgement waits ([`QuicConfig::ack_delay`]): all by
    /// default; `Long` lets it go at once on short paths.
    pub ack_delay_paths: AckDelayPaths,
    /// Path MTU discovery (DPLPMTUD, RFC 8899): once the handshake is confirmed, quiche
    /// sends padded probes and searches for the largest size, up to
    /// `max_send_udp_payload_size`, that gets through, and sends at it. Worth it where the
    /// link is wider than Ethernet: on loopback, 16 KiB packets move about twice the bytes
    /// per CPU second (docs/PERFORMANCE.md). The host's socket must set Don't Fragment
    /// (`IP_PMTUDISC_PROBE`: both veil hosts do; a C host must), or a probe too large goes
    /// out as IP fragments and the whole connection follows it. Off by default.
    pub pmtu_discovery: bool,
    /// Largest UDP payload this endpoint accepts.
    pub max_recv_udp_payload_size: usize,
    /// Largest UDP payload this endpoint sends: the size of full packets without PMTU
    /// discovery (within the peer's `max_udp_payload_size`), the ceiling of the search with
    /// it. quiche sends no packet over 16,383 bytes.
    pub max_send_udp_payload_size: usize,
    /// Negotiate QUIC DATAGRAM frames (RFC 9221) and HTTP/3 datagrams (RFC 9297): send
    /// `SETTINGS_H3_DATAGRAM = 1`. Off, UDP tunnels carry their datagrams as DATAGRAM
    /// capsules on their request streams (also written `h3_datagrams` in TOML).
    #[serde(alias = "h3_datagrams")]
    pub enable_datagrams: bool,
    /// Bound of each of quiche's DATAGRAM frame queues (receive and send), in datagrams.
    pub datagram_queue_len: usize,
    /// A UDP tunnel with no datagram either way for this long is closed
    /// (`CloseReason::IdleTimeout`).
    //# RFC 9298 §3.1: "UDP proxies that close sockets after a period of inactivity SHOULD
    //# NOT use a period lower than two minutes"
    #[serde(rename = "udp_idle_timeout_ms", deserialize_with = "duration_ms")]
    pub udp_idle_timeout: Duration,
    /// Received UDP payloads each tunnel keeps for its host, at most; more are dropped and
    /// counted (`udp_dropped_queue_full`).
    pub udp_tunnel_queue_len: usize,
    /// A TCP tunnel that moves no byte either way (as its host sends and reads) for this
    /// long is reset (`H3_CONNECT_ERROR`) and reported closed (`CloseReason::IdleTimeout`).
    /// `None` (`0` in the file): kept until its ends or its connection's. Keep-alive
    /// traffic below the tunnel does not count: only the tunnel's own bytes do.
    #[serde(
        rename = "tcp_idle_timeout_ms",
        deserialize_with = "optional_duration_ms"
    )]
    pub tcp_idle_timeout: Option<Duration>,
    /// The longest any tunnel lives, TCP, UDP or IP, however busy: then a TCP tunnel is
    /// reset and a UDP or IP tunnel's stream finished, reported as
    /// `CloseReason::MaxDuration`. An edge rule's `max_duration_ms` overrides it for the
    /// requests it matches. `None` (`0` in the file): no limit.
    #[serde(
        rename = "tunnel_max_duration_ms",
        deserialize_with = "optional_duration_ms"
    )]
    pub tunnel_max_duration: Option<Duration>,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            congestion_control: CongestionControl::Cubic,
            initial_congestion_window_packets: 10,
            initial_max_data: 16 * MIB,
            initial_max_stream_data_bidi_local: 2 * MIB,
            initial_max_stream_data_bidi_remote: 2 * MIB,
            initial_max_streams_bidi: 1000,
            max_connection_window: 24 * MIB,
            max_stream_window: 16 * MIB,
            max_idle_timeout: Duration::from_secs(30),
            keep_alive_interval: Some(Duration::from_secs(10)),
            pacing: false,
            ack_delay: Duration::from_millis(1),
            ack_delay_paths: AckDelayPaths::All,
            pmtu_discovery: false,
            max_recv_udp_payload_size: 65527,
            max_send_udp_payload_size: 1350,
            enable_datagrams: true,
            datagram_queue_len: 1024,
            udp_idle_timeout: Duration::from_secs(120),
            udp_tunnel_queue_len: 256,
            tcp_idle_timeout: None,
            tunnel_max_duration: None,
        }
    }
}

const MIB: u64 = 1024 * 1024;

/// Where PEM text comes from: a file, or the text itself.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pem {
    /// A PEM file, read when the endpoint starts.
    Path(PathBuf),
    /// PEM text.
    Text(String),
}

impl fmt::Debug for Pem {
    /// Shows the path, never the text (it may hold a private key).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => f.debug_tuple("Path").field(path).finish(),
            Self::Text(_) => f.write_str("Text(***)"),
        }
    }
}

/// When an edge asks new clients to prove their address with a Retry first (RFC 9000
/// §8.1.2). A Retry costs a client one round trip before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryPolicy {
    /// Never: every valid Initial starts a handshake.
    Never,
    /// Every new client.
    Always,
    /// New clients beyond this many handshakes a second.
    AboveRate {
        /// Handshakes a second started without a Retry.
        per_second: u32,
    },
}

/// Edge settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Certificate chain (leaf first). `None` together with `key: None` makes the edge
    /// generate a self-signed P-256 certificate at start; see
    /// [`Endpoint::certificate_fingerprint`](crate::Endpoint::certificate_fingerprint).
    pub cert: Option<Pem>,
    /// Private key of `cert`.
    pub key: Option<Pem>,
    /// Subject alternative names (DNS) of the self-signed certificate.
    pub self_signed_names: Vec<String>,
    /// Accepted bearer tokens. Empty: no authentication.
    #[serde(deserialize_with = "parse_tokens")]
    pub tokens: Vec<Token>,
    /// Egress allowlist: CIDR prefixes (`10.0.0.0/8`, `fd00::/8`) a target may be in even
    /// though the egress policy forbids it by default (loopback, private, link-local, …).
    pub egress_allow: Vec<String>,
    /// New connections beyond this many are dropped at their first packet.
    pub max_connections: usize,
    /// When a new client must first prove its address with a Retry (RFC 9000 §8.1.2):
    /// always, never, or once new handshakes exceed a rate (the default: 1000 a second on
    /// each engine), so that a flood of Initials from spoofed addresses costs the edge a
    /// Retry packet each, not a handshake.
    pub retry: RetryPolicy,
    /// The cache of resolved names (`crate::dns`): how many, and for how long.
    pub dns_cache: crate::dns::DnsCacheConfig,
    /// Key of the stateless reset tokens (RFC 9000 §10.3) the edge gives its clients. Edges
    /// that must answer for each other's connections (behind one address, or across a
    /// restart) share it. `None`: derived from the certificate's private key, or random
    /// with a self-signed certificate.
    pub stateless_reset_key: Option<Secret>,
    /// The path-and-query URI template (RFC 9298 §2) CONNECT-UDP requests must match, with
    /// `{target_host}` and `{target_port}`. Checked by `Endpoint::new`.
    pub udp_path_template: String,
    /// The kinds of tunnel the host serves; the engine answers other requests itself (501).
    /// The host's declaration, never the user's: a host sets it before `Endpoint::new`.
    #[serde(skip)]
    pub serves: TunnelKinds,
    /// How long the host may take to answer a request (resolve and dial included) before
    /// the engine refuses it (504, `connection_timeout`). Longer than the host's own dial
    /// timeouts, so that it only catches requests nobody answers.
    #[serde(rename = "request_timeout_ms", deserialize_with = "duration_ms")]
    pub request_timeout: Duration,
    /// Routing rules, first match wins (`[[rule]]` tables; see [`crate::rules`]): `deny`
    /// refuses a request, `allow` serves it even where egress policy would not. Checked
    /// by `Endpoint::new`.
    #[serde(rename = "rule")]
    pub rules: Vec<RuleSpec<EdgeAction>>,
    /// CA certificates (PEM) that clients' certificates must chain to (mutual TLS). When
    /// set, a client without a valid certificate fails the handshake; the certificate's
    /// identity (its first URI or DNS name, else its subject's common name) is what rules
    /// (`identity`), hooks and logs see.
    pub client_ca: Option<Pem>,
    /// Keep a record of every finished tunnel for `Endpoint::poll_audit` (an audit log).
    pub audit: bool,
    /// The tenant this endpoint serves, when one process runs several (each its own
    /// listener, certificate, tokens and rules): named in its audit records.
    pub tenant: Option<String>,
    /// CONNECT-IP (RFC 9484) address pools, CIDR prefixes (`10.89.0.0/24`,
    /// `fd00:89::/64`): each IP tunnel gets one unused address of each family. Each
    /// prefix's first address is the edge's own (the source of the ICMP errors it sends).
    /// Empty: CONNECT-IP requests are answered 501.
    pub ip_pools: Vec<String>,
    /// CONNECT-IP: the most flows one tunnel's table remembers, each with the `ip_flow`
    /// hook's verdict (at least 1). A new flow in a full table evicts the least recently
    /// seen one, whose next packet is judged again (`veil_engine::policy`). 4096 by
    /// default; about 270 bytes per flow remembered (a full table of 4096: about 1 MiB).
    pub ip_flows_per_tunnel: usize,
    /// CONNECT-IP packets are taken apart into flows by the engine (UDP, ICMP echo) instead of
    /// handed to the host whole. Default false.
    ///
    /// The `decap` off-ramp: the host needs no TUN device and no privileges, only ordinary
    /// UDP and ping sockets, one per flow (`Event::IpFlowOpened`, `Endpoint::ip_flow_recv`,
    /// `Endpoint::ip_flow_send`). TCP and other protocols are answered with ICMP
    /// "administratively prohibited": TCP clients use streams (CONNECT) instead.
    pub ip_decap: bool,
    /// Every connection on the TCP on-ramp (`Endpoint::accept_tcp`) starts with a PROXY
    /// protocol header, v1 or v2, before TLS; the client address it names (a PROXY
    /// command with IP addresses) replaces the socket's for tokens, hooks, rules, audit and
    /// logs. A connection without a valid header is closed. For an edge behind a load
    /// balancer or proxy that sends one; never on a listener clients reach directly (they
    /// could name any address). Default false.
    pub proxy_protocol: bool,
    /// A PROXY protocol header (v1 or v2) at the start of every TCP connection the edge
    /// dials for a tunnel, naming the client's address and the edge address it reached
    /// (`Endpoint::egress_preamble`; hosts write it before the tunnel's bytes), for
    /// origins that take one. `None` (the default): none.
    pub egress_proxy_protocol: Option<crate::ProxyProtocolVersion>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            self_signed_names: vec!["localhost".to_owned(), "veil.invalid".to_owned()],
            tokens: Vec::new(),
            egress_allow: Vec::new(),
            max_connections: 10_000,
            retry: RetryPolicy::AboveRate { per_second: 1000 },
            dns_cache: crate::dns::DnsCacheConfig::default(),
            stateless_reset_key: None,
            udp_path_template: DEFAULT_PATH_TEMPLATE.to_owned(),
            serves: TunnelKinds::ALL,
            request_timeout: Duration::from_secs(30),
            rules: Vec::new(),
            client_ca: None,
            audit: false,
            tenant: None,
            ip_pools: Vec::new(),
            ip_flows_per_tunnel: 4096,
            ip_decap: false,
            proxy_protocol: false,
            egress_proxy_protocol: None,
        }
    }
}

/// How the client checks the edge's certificate.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Chain to one of these CA certificates, for the configured server name.
    Ca(Pem),
    /// The SHA-256 of the leaf certificate's DER must be exactly this (hex in TOML).
    /// Chain and name are not checked: the pin is the whole trust decision.
    Pin(#[serde(deserialize_with = "fingerprint")] [u8; 32]),
    /// Accept any certificate. Only for tests and labs: anyone on the path can read and
    /// change the traffic.
    Insecure,
}

impl fmt::Debug for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ca(pem) => f.debug_tuple("Ca").field(pem).finish(),
            Self::Pin(pin) => write!(f, "Pin({})", format_fingerprint(pin)),
            Self::Insecure => f.write_str("Insecure"),
        }
    }
}

/// Client settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The edge's UDP address (the adapter resolves names before building the config).
    pub edge_addr: SocketAddr,
    /// The local address datagrams are sent from. `None`: the unspecified address of the
    /// edge's family, port 0 (the adapter's socket decides).
    #[serde(default)]
    pub local_addr: Option<SocketAddr>,
    /// TLS server name (SNI), also the name the certificate must carry with [`Verify::Ca`].
    pub server_name: String,
    /// How the edge's certificate is checked.
    pub verify: Verify,
    /// Bearer token sent in `Proxy-Authorization`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A client certificate chain and its key (PEM), for an edge that asks for one
    /// (mutual TLS, `EdgeConfig::client_ca`).
    #[serde(default)]
    pub certificate: Option<(Pem, Pem)>,
    /// First reconnect delay after the connection to the edge is lost; doubles per failure.
    #[serde(
        default = "default_reconnect_initial",
        rename = "reconnect_initial_ms",
        deserialize_with = "duration_ms"
    )]
    pub reconnect_initial: Duration,
    /// Longest reconnect delay.
    #[serde(
        default = "default_reconnect_max",
        rename = "reconnect_max_ms",
        deserialize_with = "duration_ms"
    )]
    pub reconnect_max: Duration,
    /// Tunnels that may wait for the connection at once; more fail at `open_tunnel`.
    #[serde(default = "default_max_pending")]
    pub max_pending_tunnels: usize,
    /// How long a waiting tunnel waits before it is refused with `EdgeUnavailable`.
    #[serde(
        default = "default_pending_deadline",
        rename = "pending_deadline_ms",
        deserialize_with = "duration_ms"
    )]
    pub pending_deadline: Duration,
    /// The path-and-query URI template (RFC 9298 §2) the client expands into the `:path`
    /// of its CONNECT-UDP requests. Checked by `Endpoint::new`.
    #[serde(default = "default_udp_path_template")]
    pub udp_path_template: String,
    /// How the client reaches the edge: HTTP/3 over QUIC, HTTP/2 over TLS over TCP (for
    /// networks that block UDP; the edge needs its TCP listener, on the same port), or
    /// both raced (`Auto`, the default).
    #[serde(default)]
    pub transport: Transport,
    /// `Transport::Auto`: how long a client that fell back to HTTP/2 stays there before it
    /// tries HTTP/3 again.
    #[serde(
        default = "default_h3_retry",
        rename = "h3_retry_ms",
        deserialize_with = "duration_ms"
    )]
    pub h3_retry: Duration,
    /// Optimistic TCP tunnels: `Event::TunnelOpened` comes as soon as the request is on
    /// its way, not at the edge's 2xx, and the host's bytes follow the request at once
    /// (`endpoint::optimistic`). A new tunnel's first byte then costs no round trip to the
    /// edge before it leaves; in exchange a refusal reaches the host as
    /// `TunnelClosed { reason: Refused { .. } }` on a tunnel its application already
    /// writes to (a SOCKS5 client sees its connection reset, not a SOCKS5 error reply).
    /// UDP and IP tunnels always wait for the 2xx.
    #[serde(default)]
    pub optimistic: bool,
}

fn default_h3_retry() -> Duration {
    Duration::from_secs(300)
}

/// How a client reaches its edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Transport {
    /// HTTP/3 first; HTTP/2 over TCP when HTTP/3 is not established within
    /// `endpoint::FALLBACK_DELAY` (300 ms) or fails; HTTP/3 again after
    /// `ClientConfig::h3_retry` (`endpoint/fallback.rs`).
    #[default]
    Auto,
    /// HTTP/3 over QUIC (UDP) only.
    H3,
    /// HTTP/2 over TLS over TCP: the host dials the edge's TCP listener when the engine
    /// asks (`Event::TcpDial`).
    H2,
}

impl ClientConfig {
    /// A client of the edge at `edge_addr`, named `server_name`, verified by `verify`, with
    /// default reconnect and queue settings and no token.
    pub fn new(edge_addr: SocketAddr, server_name: impl Into<String>, verify: Verify) -> Self {
        Self {
            edge_addr,
            local_addr: None,
            server_name: server_name.into(),
            verify,
            token: None,
            certificate: None,
            reconnect_initial: default_reconnect_initial(),
            reconnect_max: default_reconnect_max(),
            max_pending_tunnels: default_max_pending(),
            pending_deadline: default_pending_deadline(),
            udp_path_template: default_udp_path_template(),
            transport: Transport::default(),
            h3_retry: default_h3_retry(),
            optimistic: false,
        }
    }
}

fn default_udp_path_template() -> String {
    DEFAULT_PATH_TEMPLATE.to_owned()
}

fn default_reconnect_initial() -> Duration {
    Duration::from_millis(100)
}

fn default_reconnect_max() -> Duration {
    Duration::from_secs(5)
}

fn default_max_pending() -> usize {
    1024
}

fn default_pending_deadline() -> Duration {
    Duration::from_secs(10)
}

/// A bearer token. `Debug` and `Display` print `Secret(***)`; `==` compares in constant
/// time (for equal lengths).
#[derive(Clone, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for sending it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token, in time that depends only on the lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        veil_proto::http1::constant_time_eq(self.0.as_bytes(), candidate)
    }
}

/// A bearer token the edge accepts: a name, which logs, client identities and rules use,
/// and the secret, which only the credential check reads.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    name: String,
    secret: Secret,
}

impl Token {
    /// The longest name.
    pub const MAX_NAME_LEN: usize = 64;

    /// A token named `name`; `None` when the name is not 1 to 64 letters, digits, `_`, `-`
    /// or `.` beginning with a letter or digit, or the secret is empty.
    pub fn new(name: &str, secret: Secret) -> Option<Self> {
        let valid = name.len() <= Self::MAX_NAME_LEN
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        (valid && !secret.expose().is_empty()).then(|| Self {
            name: name.to_owned(),
            secret,
        })
    }

    /// Reads `NAME:SECRET`, or a bare `SECRET`, which is named `token-POSITION` (its
    /// 1-based place in the list). A text whose part before the first `:` is not a valid
    /// name is a bare secret. `None`: an empty secret.
    pub fn parse(text: &str, position: usize) -> Option<Self> {
        if let Some((name, secret)) = text.split_once(':') {
            if let Some(token) = Self::new(name, Secret::new(secret)) {
                return Some(token);
            }
        }
        Self::new(&format!("token-{position}"), Secret::new(text))
    }

    /// Its name: safe to log.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `candidate` is this token's secret, in time that depends only on lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.secret.matches(candidate)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("secret", &self.secret)
            .finish()
    }
}

/// A list of tokens from strings (`NAME:SECRET` or bare secrets), as in a TOML file.
pub(crate) fn parse_tokens<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Token>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            Token::parse(text, index + 1)
                .ok_or_else(|| serde::de::Error::custom("a token must not be empty"))
        })
        .collect()
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Parses a SHA-256 fingerprint written as 64 hex digits, optionally separated by colons
/// (`ab:cd:…`), in either case.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    let mut digits = text.bytes().filter(|&b| b != b':');
    for byte in &mut out {
        let high = hex_value(digits.next()?)?;
        let low = hex_value(digits.next()?)?;
        *byte = high << 4 | low;
    }
    digits.next().is_none().then_some(out)
}

/// Formats a fingerprint as colon-separated lowercase hex, the form `parse_fingerprint` reads.
pub fn format_fingerprint(fingerprint: &[u8; 32]) -> String {
    let mut text = String::with_capacity(95);
    for (index, byte) in fingerprint.iter().enumerate() {
        if index > 0 {
            text.push(':');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn fingerprint<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_fingerprint(&text)
        .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits (colons allowed)"))
}

pub(crate) fn duration_ms<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

fn optional_duration_ms<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    Option::<u64>::deserialize(deserializer).map(|ms| ms.map(Duration::from_millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_named_or_numbered_and_never_show_their_secret() {
        let named = Token::parse("alice:s3:cret", 1).expect("named");
        assert_eq!(named.name(), "alice");
        assert!(named.matches(b"s3:cret") && !named.matches(b"alice:s3:cret"));
        let bare = Token::parse("s3cret", 2).expect("bare");
        assert_eq!(bare.name(), "token-2");
        assert!(bare.matches(b"s3cret"));
        // Not a name before the colon: the whole text is the secret.
        let odd = Token::parse("a b:c", 3).expect("bare");
        assert_eq!(odd.name(), "token-3");
        assert!(odd.matches(b"a b:c"));
        assert!(Token::parse("", 1).is_none());
        assert!(Token::parse("alice:", 1).is_some_and(|t| t.name() == "token-1"));
        assert!(Token::new(&"n".repeat(65), Secret::new("x")).is_none());
        assert!(Token::new("-lead", Secret::new("x")).is_none());
        let shown = format!("{named:?} {bare:?}");
        assert!(shown.contains("alice") && !shown.contains("s3"), "{shown}");
        let config: Config =
            toml::from_str("[role.edge]\ntokens = [\"ops:k1\", \"k2\"]\n").expect("parses");
        let RoleConfig::Edge(edge) = config.role else {
            panic!("an edge");
        };
        let token_names: Vec<&str> = edge.tokens.iter().map(Token::name).collect();
        assert_eq!(token_names, ["ops", "token-2"]);
    }

    #[test]
    fn fingerprints_round_trip_through_hex() {
        let mut fingerprint = [0; 32];
        for (i, byte) in fingerprint.iter_mut().enumerate() {
            *byte = u8::try_from(i * 7).expect("small");
        }
        let text = format_fingerprint(&fingerprint);
        assert_eq!(&text[..8], "00:07:0e");
        assert_eq!(text.len(), 95);
        assert_eq!(parse_fingerprint(&text), Some(fingerprint));
        assert_eq!(
            parse_fingerprint(&text.replace(':', "").to_uppercase()),
            Some(fingerprint)
        );
        assert_eq!(parse_fingerprint(&text[..93]), None);
        assert_eq!(parse_fingerprint(&format!("{text}00")), None);
        assert_eq!(parse_fingerprint(&text.replace('e', "g")), None);
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) Secret(***)");
        assert_eq!(secret, Secret::new("hunter2"));
        assert_ne!(secret, Secret::new("hunter3"));
        assert!(secret.matches(b"hunter2") && !secret.matches(b"hunter"));
        let verify = Verify::Pin([0xab; 32]);
        assert!(format!("{verify:?}").starts_with("Pin(ab:ab:"));
        assert_eq!(format!("{:?}", Pem::Text("KEY".to_owned())), "Text(***)");
    }

    #[test]
    fn files_without_udp_settings_still_load_with_their_defaults() {
        let config: Config =
            toml::from_str("[role.edge]\ntokens = [\"a\"]\n[quic]\nmax_idle_timeout_ms = 5000\n")
                .expect("an older edge file");
        assert_eq!(config.quic.udp_idle_timeout, Duration::from_secs(120));
        assert_eq!(config.quic.udp_tunnel_queue_len, 256);
        assert!(config.quic.enable_datagrams);
        let RoleConfig::Edge(edge) = config.role else {
            panic!("edge");
        };
        assert_eq!(edge.udp_path_template, DEFAULT_PATH_TEMPLATE);

        let config: Config = toml::from_str(
            "[role.client]\nedge_addr = \"192.0.2.1:443\"\nserver_name = \"edge.test\"\n\
             verify = \"insecure\"\nudp_path_template = \"/udp?h={target_host}&p={target_port}\"\n\
             [quic]\nh3_datagrams = false\nudp_idle_timeout_ms = 300000\nudp_tunnel_queue_len = 8\n",
        )
        .expect("a client file with UDP settings");
        assert!(
            !config.quic.enable_datagrams,
            "h3_datagrams names enable_datagrams"
        );
        assert_eq!(config.quic.udp_idle_timeout, Duration::from_secs(300));
        assert_eq!(config.quic.udp_tunnel_queue_len, 8);
        let RoleConfig::Client(client) = config.role else {
            panic!("client");
        };
        assert_eq!(
            client.udp_path_template,
            "/udp?h={target_host}&p={target_port}"
        );
    }

    #[test]
    fn defaults_favour_throughput() {
        let quic = QuicConfig::default();
        assert_eq!(quic.initial_max_data, 16 * MIB);
        assert_eq!(quic.initial_max_stream_data_bidi_remote, 2 * MIB);
        assert_eq!(quic.initial_max_streams_bidi, 1000);
        assert_eq!(quic.max_idle_timeout, Duration::from_secs(30));
        let edge = EdgeConfig::default();
        assert!(edge.tokens.is_empty() && edge.cert.is_none());
    }
}

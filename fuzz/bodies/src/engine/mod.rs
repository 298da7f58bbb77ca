//! `veil_engine::Endpoint`, both roles at once: a client endpoint and an edge endpoint (and,
//! when the input asks, a raw quiche HTTP/3 client) joined by an in-memory link, driven by
//! an arbitrary sequence of actions (see [`input`] for the format).
//!
//! The hosts' side of every call is played by the input: the client opens CONNECT tunnels
//! to arbitrary hosts, the edge accepts or refuses with arbitrary refusals, both send,
//! read, finish and abort; the link delivers, drops, duplicates, reorders, corrupts and
//! injects datagrams; the virtual clock jumps; either side closes. The raw peer sends what
//! the engine's client never would: arbitrary request heads, bytes straight onto request
//! streams, garbage unidirectional streams, DATAGRAM frames, resets.
//!
//! After every step (see [`World::check`] and the event handlers) the driver checks:
//! - every event names a tunnel that is alive on that side and in a state for it; ids are
//!   never reused; a dead id stays dead (`UnknownTunnel`); each call's result is the one
//!   the tunnel's state allows, and a call that fails a live tunnel is followed by its
//!   `TunnelClosed`;
//! - every byte read is the byte sent at that offset of that tunnel's direction (a
//!   per-stream pattern, so loss, duplication, reordering and mix-ups show), never beyond
//!   what was sent, and a FIN only at the length the peer finished at;
//! - memory stays bounded: `stats().tunnels` equals the live tunnels of the model (a leak
//!   shows), the edge holds at most `max_connections`, the bytes sent but not yet read on
//!   any tunnel never exceed the receiver's largest stream window, transmits fit the
//!   configured datagram size, and an endpoint's events and transmits run dry;
//! - the edge never reports a request that failed authentication or whose IP literal the
//!   egress policy forbids, reports the client's target as sent, and every refusal the
//!   client sees is one the edge's rules or host gave, never a malformed response;
//! - no event carries the bearer token;
//! - at the end, when nothing was lost on the link and nobody closed, a final settling
//!   (lossless link, every tunnel read, the virtual clock moved to the engines' deadlines
//!   when they are near: an acknowledgement, with the window update owed after a read,
//!   waits up to `QuicConfig::ack_delay` for an answer) delivers every byte and every FIN
//!   that was sent, and every tunnel the edge accepted is open on the client.
//!
//! quiche reads the system clock for its own timers, so the virtual clock moves only what
//! the engine times itself (pending deadlines, reconnect backoff, keep-alive); quiche's
//! loss recovery and idle timeout stay in real time and, in a run of milliseconds, never
//! fire. That is why lost packets end the liveness check rather than wait for recovery.

mod cert;
mod input;
mod model;
mod raw;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use quiche::h3;
use veil_engine::egress::{HostKind, classify_host};
use veil_engine::{
    ClientConfig, CloseReason, Config, CongestionControl, EdgeConfig, Endpoint, EndpointStats,
    Event, Host, IpDelivery, Name, OpenError, Pem, ProxyErrorType, QuicConfig, RecvMeta, Refusal,
    RefusedReason, RoleConfig, Secret, Token, TunnelError, TunnelId, TunnelKind, TunnelTarget,
    Verify,
};
use veil_proto::ip::{IpPacket, Transport};
use veil_proto::masque::ip::{IpPrefix, IpProto, Scope, Target};

use input::{Action, AddrInput, Auth, Dir, Field, HostInput, PacketInput, ScopeInput, Setup, Side};
use model::{Model, Origin};
use raw::RawPeer;

const CLIENT_ADDR: &str = "192.0.2.2:40000";
const EDGE_ADDR: &str = "192.0.2.1:4433";
const RAW_ADDR: &str = "192.0.2.3:40001";
/// Where injected datagrams come from; what the edge answers there is dropped.
const STRANGER_ADDR: &str = "192.0.2.9:9";

/// The one token the edge accepts when the setup has tokens.
const TOKEN: &str = "fuzz-bearer-7f3a9c";
const WRONG_TOKEN: &str = "fuzz-bearer-000000";

/// Actions per input, at most.
const MAX_ACTIONS: usize = 256;
/// Bytes one `Send` offers, at most.
const MAX_SEND: usize = 8 * 1024;
/// Bytes all sends of an input offer, at most, so that the final settling stays short.
const MAX_TOTAL_SEND: u64 = 256 * 1024;
/// Datagrams a link direction holds; more are dropped (and the run is no longer lossless).
const MAX_QUEUE: usize = 2048;
/// Rounds of the final settling; a run that needs more is not judged for liveness.
const SETTLE_ROUNDS: usize = 1000;
/// How far ahead the final settling moves the virtual clock to fire an engine's deadline:
/// quiche's largest ACK delay, which every wait for an acknowledgement stays below.
const SETTLE_TIMER_HORIZON: Duration = Duration::from_millis(25);
/// Idle timeout of UDP tunnels: short, so that `AdvanceSecs` reaches it.
const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive queue of each UDP tunnel, in datagrams: normal, and with `small_queue`.
const UDP_QUEUE: [usize; 2] = [32, 4];
/// Real time all `Sleep` actions of an input may spend: enough for quiche's draining
/// period (three probe timeouts, some 80 ms on a link without delay) to pass once.
const SLEEP_BUDGET: Duration = Duration::from_millis(100);
/// Calls of `poll_event` / `poll_transmit` in a row after which the endpoint is stuck in
/// a loop.
const RUNAWAY: usize = 100_000;
/// Packets the closing raw peer sends per collection (see `collect`; finding 11).
const RAW_CLOSING_SENDS: usize = 4;

/// Hosts for `Open` and `OpenMany`: names, names that are addresses to the edge
/// (`localhost`), and the longest valid name.
const NAMES: &[&str] = &[
    "example.com",
    "localhost",
    "veil.invalid",
    "a-b_c.example.net",
    "xn--bcher-kva.example",
    "sub.localhost",
    "metadata.google.internal",
    "EXAMPLE.org.",
];

/// Header names a raw request picks from.
const HEADER_NAMES: &[&[u8]] = &[
    b":method",
    b":authority",
    b":protocol",
    b":scheme",
    b":path",
    b"proxy-authorization",
    b"capsule-protocol",
    b"content-length",
    b":status",
    b"host",
    b"connection",
    b"",
    b"Proxy-Authorization",
];

/// Header values a raw request picks from.
const HEADER_VALUES: &[&[u8]] = &[
    b"CONNECT",
    b"example.com:443",
    b"GET",
    b"127.0.0.1:22",
    b"[::1]:443",
    b"1.1.1.1:80",
    b"[2606:4700::1111]:8443",
    b"0x7f.1:80",
    b"2130706433:80",
    b"localhost:80",
    b"connect-udp",
    b"connect-ip",
    b"https",
    b"/",
    b"/.well-known/masque/udp/192.0.2.6/443/",
    b"Bearer fuzz-bearer-7f3a9c",
    b"Bearer fuzz-bearer-000000",
    b"bearer  fuzz-bearer-7f3a9c ",
    b"?1",
    b"0",
    b"example.com",
    b"example.com:0",
    b"a..b:1",
    b"[fe80::1%eth0]:443",
    b"[::ffff:169.254.169.254]:80",
    b"example.com:65535",
    b"",
    b"/.well-known/masque/udp/example.com/443/",
    b"/.well-known/masque/udp/127.0.0.1/53/",
    b"/.well-known/masque/udp/2001%3Adb8%3A%3A1/443/",
    b"/.well-known/masque/udp/example.com/0/",
    b"/.well-known/masque/udp/192.0.2.6/443/?x=1",
    b"localhost:4433",
    // CONNECT-IP paths (the same as IP_PATHS), so that raw requests reach them too.
    b"/.well-known/masque/ip/*/*/",
    b"/.well-known/masque/ip/10.89.0.0%2F24/17/",
    b"/.well-known/masque/ip/8.8.8.8/*/",
    b"/.well-known/masque/ip/2001%3Adb8%3A%3A%2F32/58/",
    b"/.well-known/masque/ip/example.com/*/",
    b"/.well-known/masque/ip/10.0.0.0%2F33/*/",
];

/// Paths of raw CONNECT-IP requests: good scopes (any, prefixes, protocols), a scope by
/// name (501), malformed ones (400).
const IP_PATHS: &[&[u8]] = &[
    b"/.well-known/masque/ip/*/*/",
    b"/.well-known/masque/ip/10.89.0.0%2F24/17/",
    b"/.well-known/masque/ip/8.8.8.8/*/",
    b"/.well-known/masque/ip/2001%3Adb8%3A%3A%2F32/58/",
    b"/.well-known/masque/ip/example.com/*/",
    b"/.well-known/masque/ip/10.0.0.0%2F33/*/",
    b"/.well-known/masque/ip/*/256/",
    b"/.well-known/masque/ip/*/",
    b"/.well-known/masque/ip/*/*/?x=1",
    b"/.well-known/masque/ip/fd00%3A89%3A%3A%2F126/1/",
    b"/.well-known/masque/ip/0.0.0.0%2F0/0/",
    b"/.well-known/masque/ip/%2A/%2A/",
    b"/elsewhere/",
    b"/.well-known/masque/udp/192.0.2.6/443/",
];

/// Scopes for `OpenIp`: prefixes of both families, inside and outside the pools.
const IP_SCOPES: &[(&str, u8)] = &[
    ("8.8.8.0", 24),
    ("10.89.0.0", 30),
    ("2001:db8::", 32),
    ("127.0.0.1", 32),
    ("fd00:89::", 126),
    ("0.0.0.0", 0),
    ("::", 0),
    ("2001:4860::8888", 128),
];

/// Addresses of built packets: public, private, the pools' gateway, assignable and
/// broadcast addresses, loopback, link-local, multicast, unspecified.
const V4_ADDRESSES: &[[u8; 4]] = &[
    [8, 8, 8, 8],
    [10, 0, 0, 1],
    [10, 89, 0, 1],
    [10, 89, 0, 2],
    [10, 89, 0, 3],
    [127, 0, 0, 1],
    [169, 254, 1, 1],
    [224, 0, 0, 1],
    [255, 255, 255, 255],
    [0, 0, 0, 0],
    [1, 1, 1, 1],
];
const V6_ADDRESSES: &[&str] = &[
    "2001:4860::8888",
    "fd00::1",
    "fd00:89::1",
    "fd00:89::2",
    "fd00:89::3",
    "::1",
    "fe80::1",
    "ff02::1",
    "::",
    "2001:db8::1",
    "64:ff9b::808:808",
];

/// The edge's CONNECT-IP pools by `Setup::pools`: an IPv4 /30 holds one client address
/// (network, gateway, client, broadcast), an IPv6 /126 two (no broadcast), so that pools
/// run out.
const POOL_V4: &str = "10.89.0.0/30";
const POOL_V6: &str = "fd00:89::/126";
/// The addresses the pools assign, and the edge's own (the gateways, the source of its
/// ICMP errors).
const ASSIGNABLE_V4: [u8; 4] = [10, 89, 0, 2];
const ASSIGNABLE_V6: [&str; 2] = ["fd00:89::2", "fd00:89::3"];
const GATEWAY_V4: [u8; 4] = [10, 89, 0, 1];
const GATEWAY_V6: &str = "fd00:89::1";
/// Larger than any IP packet a CONNECT-IP tunnel carries (65535 + 40).
const MAX_IP_PACKET: usize = 65_535 + 40;

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let setup = Setup::read(&mut u);
    let mut world = World::new(setup);
    if world.trace {
        eprintln!("{setup:?}");
    }
    let mut actions = 0;
    while !u.is_empty() && actions < MAX_ACTIONS {
        let action = Action::read(&mut u);
        if world.trace {
            eprintln!("> {action:?}");
        }
        world.apply(action);
        world.step_done();
        actions += 1;
    }
    world.finish();
    if world.trace {
        eprintln!(
            "end: lossless {}, client {:?}, edge {:?}",
            world.lossless,
            world.client.stats(),
            world.edge.stats()
        );
    }
}

/// Whether `VEIL_FUZZ_TRACE` is set: print every action and event, to read a failing
/// input (`VEIL_FUZZ_TRACE=1 cargo test -p veil-fuzz --test replay engine`).
fn trace_enabled() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("VEIL_FUZZ_TRACE").is_some())
}

/// A datagram on the link.
struct Packet {
    from: SocketAddr,
    bytes: Vec<u8>,
}

// Independent facts about the run, one flag each.
#[allow(clippy::struct_excessive_bools)]
struct World {
    setup: Setup,
    now: Instant,
    client: Endpoint,
    edge: Endpoint,
    raw: Option<RawPeer>,
    /// Datagrams in flight, by [`Dir`].
    links: [VecDeque<Packet>; 3],
    model: Model,
    client_addr: SocketAddr,
    edge_addr: SocketAddr,
    raw_addr: SocketAddr,
    stranger_addr: SocketAddr,
    /// Largest datagram the endpoints may send.
    max_datagram: usize,
    /// Largest stream receive window, and connection receive window, of either endpoint.
    stream_window: u64,
    connection_window: u64,
    max_connections: usize,
    max_pending: usize,
    next_port: u16,
    total_sent: u64,
    /// Nothing was lost on the link and no endpoint closed: liveness is checked at the end.
    lossless: bool,
    client_closed: bool,
    edge_closed: bool,
    /// Tunnels a failed call should have closed, checked once the events are drained.
    doomed: Vec<(Side, TunnelId)>,
    buf: Vec<u8>,
    data: Vec<u8>,
    trace: bool,
    /// Real time `Sleep` may still spend.
    sleep_budget: Duration,
    /// CONNECT-IP: the addresses the edge's pools may assign.
    pool: Vec<IpAddr>,
    /// The counters at the last check, which may only grow.
    last_stats: [EndpointStats; 2],
}

impl World {
    fn new(setup: Setup) -> Self {
        let now = Instant::now();
        let quic = quic_config(setup);
        let pems = cert::pems();
        let max_connections = if setup.one_connection { 1 } else { 16 };
        let edge_config = EdgeConfig {
            cert: Some(Pem::Text(pems.cert.clone())),
            key: Some(Pem::Text(pems.key.clone())),
            tokens: if setup.auth == Auth::Open {
                Vec::new()
            } else {
                vec![Token::parse(TOKEN, 1).expect("a non-empty token")]
            },
            egress_allow: if setup.allow_loopback {
                vec!["127.0.0.0/8".to_owned()]
            } else {
                Vec::new()
            },
            max_connections,
            ip_pools: pools(setup.pools).iter().map(|p| (*p).to_owned()).collect(),
            ..EdgeConfig::default()
        };
        let edge = Endpoint::new(
            Config {
                role: RoleConfig::Edge(edge_config),
                quic: quic.clone(),
            },
            now,
        )
        .expect("the edge's configuration is valid");
        let pin = edge
            .certificate_fingerprint()
            .expect("an edge has a fingerprint");
        let edge_addr: SocketAddr = EDGE_ADDR.parse().expect("address");
        let client_addr: SocketAddr = CLIENT_ADDR.parse().expect("address");
        let mut client_config = ClientConfig::new(edge_addr, "localhost", Verify::Pin(pin));
        client_config.local_addr = Some(client_addr);
        // The model carries QUIC datagrams only: with the default `Auto`, a handshake held
        // up past 300 ms made the client ask for a TCP dial of its HTTP/2 fallback
        // (`Event::TcpDial`), which no host here serves (the h2 targets fuzz that path).
        client_config.transport = veil_engine::Transport::H3;
        client_config.optimistic = setup.optimistic;
        client_config.token = match setup.auth {
            Auth::Open | Auth::NoToken => None,
            Auth::Token => Some(Secret::new(TOKEN)),
            Auth::WrongToken => Some(Secret::new(WRONG_TOKEN)),
        };
        let max_pending = if setup.small_queue { 4 } else { 1024 };
        client_config.max_pending_tunnels = max_pending;
        let client = Endpoint::new(
            Config {
                role: RoleConfig::Client(client_config),
                quic: quic.clone(),
            },
            now,
        )
        .expect("the client's configuration is valid");
        Self {
            setup,
            now,
            client,
            edge,
            raw: None,
            links: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            model: Model::default(),
            client_addr,
            edge_addr,
            raw_addr: RAW_ADDR.parse().expect("address"),
            stranger_addr: STRANGER_ADDR.parse().expect("address"),
            max_datagram: quic.max_send_udp_payload_size,
            stream_window: quic
                .initial_max_stream_data_bidi_local
                .max(quic.initial_max_stream_data_bidi_remote)
                .max(quic.max_stream_window),
            connection_window: quic.initial_max_data.max(quic.max_connection_window),
            max_connections,
            max_pending,
            next_port: 1,
            total_sent: 0,
            lossless: true,
            client_closed: false,
            edge_closed: false,
            doomed: Vec::new(),
            buf: vec![0; 64 * 1024],
            data: vec![0; MAX_IP_PACKET + 1],
            trace: trace_enabled(),
            sleep_budget: SLEEP_BUDGET,
            pool: pool_addresses(setup.pools),
            last_stats: [EndpointStats::default(), EndpointStats::default()],
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Open(host) => self.open(&host, false),
            Action::OpenUdp(host) => self.open(&host, true),
            Action::OpenMany(count) => {
                for index in 0..count % 32 {
                    self.open(&HostInput::Listed(index), index % 4 == 3);
                }
            }
            Action::SendDatagram(side, pick, len) => {
                self.send_datagram(side, pick, usize::from(len));
            }
            Action::RecvDatagram(side, pick, max) => {
                if let Some((id, _)) = self.pick(side, pick) {
                    self.recv_datagram(side, id, usize::from(max));
                }
            }
            Action::ReadDatagrams(side) => self.read_datagrams(side),
            Action::OpenIp(scope, protocol) => self.open_ip(&scope, protocol),
            Action::SendPacket(side, pick, packet) => self.send_packet(side, pick, &packet),
            Action::RecvPacket(side, pick, max) => {
                if let Some((id, _)) = self.pick(side, pick) {
                    self.recv_packet(side, id, usize::from(max));
                }
            }
            Action::ReadPackets(side) => self.read_packets(side),
            Action::IpDeliver(pick, packet, answer) => self.ip_deliver(pick, &packet, answer),
            Action::Accept(side, pick) => self.accept(side, pick),
            Action::Refuse(side, pick, refusal) => self.refuse(side, pick, refusal),
            Action::Send(side, pick, len) => self.send(side, pick, usize::from(len)),
            Action::Recv(side, pick, max) => {
                if let Some((id, _)) = self.pick(side, pick) {
                    self.recv(side, id, usize::from(max));
                }
            }
            Action::ReadAll(side) => {
                self.read_all(side);
            }
            Action::Finish(side, pick) => self.finish_tunnel(side, pick),
            Action::Abort(side, pick) => self.abort(side, pick),
            Action::Deliver(dir, count) => self.deliver(dir, usize::from(count)),
            Action::Drop(dir, pick) => {
                if self.take_packet(dir, pick).is_some() {
                    self.lossless = false;
                }
            }
            Action::Duplicate(dir, pick) => {
                let link = &mut self.links[dir as usize];
                if let Some(index) = index_of(link.len(), pick) {
                    let copy = Packet {
                        from: link[index].from,
                        bytes: link[index].bytes.clone(),
                    };
                    push(link, copy, &mut self.lossless);
                }
            }
            Action::Reorder(dir, pick) => {
                if let Some(packet) = self.take_packet(dir, pick) {
                    self.links[dir as usize].push_back(packet);
                }
            }
            Action::Corrupt(dir, pick, position, mask) => {
                let link = &mut self.links[dir as usize];
                if let Some(index) = index_of(link.len(), pick) {
                    let bytes = &mut link[index].bytes;
                    if !bytes.is_empty() {
                        let at = usize::from(position) % bytes.len();
                        bytes[at] ^= mask.max(1);
                        self.lossless = false;
                    }
                }
            }
            Action::Inject(dir, bytes) => self.inject(dir, bytes),
            Action::Advance(millis) => self.advance(Duration::from_millis(u64::from(millis))),
            Action::AdvanceSecs(secs) => self.advance(Duration::from_secs(u64::from(secs))),
            Action::Timeout => self.advance(Duration::ZERO),
            Action::Sleep(millis) => self.sleep(Duration::from_millis(u64::from(millis % 64))),
            Action::Pump(rounds) => {
                self.pump(usize::from(rounds).clamp(1, 16));
            }
            Action::Close(side, code, reason) => {
                self.lossless = false;
                match side {
                    Side::Client => {
                        self.client_closed = true;
                        self.client.close(self.now, u64::from(code), &reason);
                    }
                    Side::Edge => {
                        self.edge_closed = true;
                        self.edge.close(self.now, u64::from(code), &reason);
                    }
                }
            }
            raw => self.apply_raw(raw),
        }
    }

    /// The raw peer's actions.
    fn apply_raw(&mut self, action: Action) {
        match action {
            Action::RawRequest(fields, fin) => {
                let headers: Vec<h3::Header> = fields
                    .iter()
                    .map(|(name, value)| {
                        h3::Header::new(
                            pick_field(name, HEADER_NAMES),
                            pick_field(value, HEADER_VALUES),
                        )
                    })
                    .collect();
                if let Some(raw) = self.raw_peer() {
                    raw.request(&headers, fin);
                }
            }
            Action::RawBody(pick, fin, bytes) => {
                if let Some(raw) = self.raw_peer() {
                    raw.body(pick, fin, &bytes);
                }
            }
            Action::RawStream(stream, fin, bytes) => {
                if let Some(raw) = self.raw_peer() {
                    raw.stream(stream, fin, &bytes);
                }
            }
            Action::RawUni(kind, bytes) => {
                if let Some(raw) = self.raw_peer() {
                    raw.uni(kind, &bytes);
                }
            }
            Action::RawDatagram(bytes) => {
                if let Some(raw) = self.raw_peer() {
                    raw.datagram(&bytes);
                }
            }
            Action::RawReset(pick, direction, code) => {
                if let Some(raw) = self.raw_peer() {
                    raw.reset(pick, direction, code);
                }
            }
            Action::RawHttpDatagram(pick, context, payload) => {
                if let Some(raw) = self.raw_peer() {
                    raw.http_datagram(pick, context, &payload);
                }
            }
            Action::RawClose(code) => {
                if let Some(raw) = self.raw_peer() {
                    raw.close(code);
                }
            }
            Action::RawIpRequest(path, flags) => {
                let path = pick_field(&path, IP_PATHS);
                let authority: &[u8] = if flags & 8 == 0 {
                    b"localhost:4433"
                } else {
                    b""
                };
                let mut headers = vec![
                    h3::Header::new(b":method", b"CONNECT"),
                    h3::Header::new(b":protocol", b"connect-ip"),
                    h3::Header::new(b":scheme", b"https"),
                    h3::Header::new(b":authority", authority),
                    h3::Header::new(b":path", path),
                ];
                if flags & 4 == 0 {
                    headers.push(h3::Header::new(b"capsule-protocol", b"?1"));
                }
                if flags & 1 == 1 {
                    let token = format!("Bearer {TOKEN}");
                    headers.push(h3::Header::new(b"proxy-authorization", token.as_bytes()));
                }
                if let Some(raw) = self.raw_peer() {
                    raw.request(&headers, flags & 2 == 2);
                }
            }
            Action::RawCapsule(pick, kind, mode, bytes) => {
                let (capsule_type, value) = raw_capsule(kind, mode, &bytes);
                if let Some(raw) = self.raw_peer() {
                    if capsule_type == 0 && mode & 2 == 2 {
                        // A DATAGRAM's value (Context ID, packet) as an HTTP Datagram.
                        if let Some((&context, packet)) = value.split_first() {
                            raw.http_datagram(pick, context & 0x3f, packet);
                        }
                    } else {
                        let mut capsule = Vec::with_capacity(value.len() + 16);
                        raw::push_varint(&mut capsule, capsule_type);
                        raw::push_varint(&mut capsule, value.len() as u64);
                        capsule.extend_from_slice(&value);
                        raw.body(pick, false, &capsule);
                    }
                }
            }
            _ => {}
        }
    }

    /// After every action: move what the endpoints want to send onto the link, handle
    /// their events, check the invariants.
    fn step_done(&mut self) {
        self.collect();
        self.drain();
        self.check();
    }

    // --- tunnels --------------------------------------------------------------------------

    fn open(&mut self, host: &HostInput, udp: bool) {
        let Some(host) = target_host(host) else {
            return;
        };
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(1);
        let target = TunnelTarget::new(host, port);
        let opened = if udp {
            self.client.open_udp_tunnel(self.now, &target)
        } else {
            self.client.open_tunnel(self.now, &target)
        };
        match opened {
            Ok(id) => {
                self.model.new_client(id, port, udp, false);
                self.model.flows.insert(port, model::Flow::new(target, udp));
            }
            Err(OpenError::Closing) => assert!(self.client_closed, "Closing before close()"),
            Err(OpenError::QueueFull) => self.check_queue_full(),
            Err(error) => panic!("open_tunnel: {error:?}"),
        }
        self.drain();
    }

    /// The client refused an open with `QueueFull`: as many tunnels as it queues must be
    /// waiting. Counted only here, as a refused open left the model as it was. Waiting are
    /// the tunnels not open yet and, with optimism, open ones the edge may not have
    /// answered: an optimistic tunnel is open from the start and waits in the queue for a
    /// connection, and waits again when its connection is lost before the answer (the
    /// model cannot see the 2xx: nothing received yet is its upper bound). Every kind of
    /// tunnel shares the one queue, so an IP tunnel can be refused for optimistic TCP ones.
    fn check_queue_full(&self) {
        let optimistic = self.setup.optimistic;
        let waiting = self
            .model
            .client
            .values()
            .filter(|t| !t.open || (optimistic && t.received == 0 && !t.fin))
            .count();
        assert!(
            waiting >= self.max_pending,
            "QueueFull with {waiting} of {} tunnels waiting",
            self.max_pending
        );
    }

    fn accept(&mut self, side: Side, pick: u8) {
        let Some((id, alive)) = self.pick(side, pick) else {
            return;
        };
        match side {
            Side::Client => {
                let result = self.client.accept_tunnel(id);
                expect_error(result, alive, TunnelError::InvalidState, "client accept");
            }
            Side::Edge => {
                let result = self.edge.accept_tunnel(id);
                match self.model.edge.get_mut(&id) {
                    None => assert_eq!(result, Err(TunnelError::UnknownTunnel), "accept {id:?}"),
                    Some(tunnel) if tunnel.accepted => {
                        assert_eq!(result, Err(TunnelError::InvalidState), "accept twice");
                    }
                    Some(tunnel) => {
                        assert_eq!(result, Ok(()), "accept {id:?}");
                        tunnel.accepted = true;
                        if let Origin::Client(port) = tunnel.origin {
                            self.model.flow(port).edge_accepted = true;
                        }
                    }
                }
            }
        }
        self.drain();
    }

    fn refuse(&mut self, side: Side, pick: u8, refusal: u8) {
        let Some((id, alive)) = self.pick(side, pick) else {
            return;
        };
        let refusal = Refusal::ALL[usize::from(refusal) % Refusal::ALL.len()];
        match side {
            Side::Client => {
                let result = self.client.refuse_tunnel(id, refusal);
                expect_error(result, alive, TunnelError::InvalidState, "client refuse");
            }
            Side::Edge => {
                let result = self.edge.refuse_tunnel(id, refusal);
                match self.model.edge.get(&id) {
                    None => assert_eq!(result, Err(TunnelError::UnknownTunnel), "refuse {id:?}"),
                    Some(tunnel) if tunnel.accepted => {
                        assert_eq!(result, Err(TunnelError::InvalidState), "refuse accepted");
                    }
                    Some(_) => {
                        assert_eq!(result, Ok(()), "refuse {id:?}");
                        let tunnel = self.model.kill_edge(id);
                        match tunnel.origin {
                            Origin::Client(port) => self.model.flow(port).refusals.push(refusal),
                            Origin::ClientIp => self.model.ip_refusals.push(refusal),
                            Origin::Raw => {}
                        }
                    }
                }
            }
        }
        self.drain();
    }

    fn send(&mut self, side: Side, pick: u8, len: usize) {
        let Some((id, _)) = self.pick(side, pick) else {
            return;
        };
        let len = len.min(MAX_SEND).min(
            usize::try_from(MAX_TOTAL_SEND.saturating_sub(self.total_sent)).unwrap_or(MAX_SEND),
        );
        match side {
            Side::Client => self.client_send(id, len),
            Side::Edge => self.edge_send(id, len),
        }
        self.drain();
        self.check_doomed();
    }

    fn client_send(&mut self, id: TunnelId, len: usize) {
        let data = &mut self.data[..len];
        let Some(tunnel) = self.model.client.get_mut(&id) else {
            let result = self.client.tunnel_send(id, data);
            assert_eq!(
                result,
                Err(TunnelError::UnknownTunnel),
                "send on dead {id:?}"
            );
            return;
        };
        model::fill(model::upload_key(tunnel.port), tunnel.sent, data);
        let result = self.client.tunnel_send(id, data);
        match result {
            _ if tunnel.udp => assert_eq!(result, Err(TunnelError::NotStream), "send on UDP"),
            _ if !tunnel.open => assert_eq!(result, Err(TunnelError::InvalidState), "send early"),
            _ if tunnel.finished || tunnel.stopped => {
                assert_eq!(result, Err(TunnelError::WriteClosed), "send after finish");
            }
            Ok(taken) => {
                assert!(taken <= len, "took {taken} of {len}");
                let taken = u64::try_from(taken).expect("small");
                tunnel.sent += taken;
                self.total_sent += taken;
                let sent = tunnel.sent;
                let port = tunnel.port;
                self.model.flow(port).upload_sent = sent;
            }
            // The edge stopped reading: the tunnel lives on until its FIN is read.
            Err(TunnelError::WriteClosed) => tunnel.stopped = true,
            Err(TunnelError::Stream) => self.doomed.push((Side::Client, id)),
            Err(error) => panic!("client send on open {id:?}: {error:?}"),
        }
    }

    fn edge_send(&mut self, id: TunnelId, len: usize) {
        let data = &mut self.data[..len];
        let Some(tunnel) = self.model.edge.get_mut(&id) else {
            let result = self.edge.tunnel_send(id, data);
            assert_eq!(
                result,
                Err(TunnelError::UnknownTunnel),
                "send on dead {id:?}"
            );
            return;
        };
        model::fill(tunnel.key(id), tunnel.sent, data);
        let result = self.edge.tunnel_send(id, data);
        match result {
            _ if tunnel.udp => assert_eq!(result, Err(TunnelError::NotStream), "send on UDP"),
            _ if !tunnel.accepted => {
                assert_eq!(result, Err(TunnelError::InvalidState), "send before accept");
            }
            // Finished while the 200 waited: the send is taken as nothing.
            Ok(0) | Err(TunnelError::WriteClosed) if tunnel.finished => {}
            _ if tunnel.finished => panic!("edge send after finish: {result:?}"),
            _ if tunnel.stopped => {
                assert_eq!(result, Err(TunnelError::WriteClosed), "send after a stop");
            }
            Ok(taken) => {
                assert!(taken <= len, "took {taken} of {len}");
                let taken = u64::try_from(taken).expect("small");
                tunnel.sent += taken;
                self.total_sent += taken;
                if let Origin::Client(port) = tunnel.origin {
                    let sent = tunnel.sent;
                    let flow = self.model.flow(port);
                    flow.download_sent = flow.download_sent.max(sent);
                }
            }
            // The client stopped reading: the tunnel lives on until its FIN is read.
            Err(TunnelError::WriteClosed) => tunnel.stopped = true,
            Err(TunnelError::Stream) => self.doomed.push((Side::Edge, id)),
            Err(error) => panic!("edge send on accepted {id:?}: {error:?}"),
        }
    }

    /// One `tunnel_recv` of at most `max` bytes; returns how many came.
    fn recv(&mut self, side: Side, id: TunnelId, max: usize) -> usize {
        let len = match side {
            Side::Client => self.client_recv(id, max),
            Side::Edge => self.edge_recv(id, max),
        };
        self.drain();
        self.check_doomed();
        len
    }

    fn client_recv(&mut self, id: TunnelId, max: usize) -> usize {
        let out = &mut self.data[..max.min(64 * 1024)];
        let result = self.client.tunnel_recv(id, out);
        let Some(tunnel) = self.model.client.get_mut(&id) else {
            assert_eq!(
                result,
                Err(TunnelError::UnknownTunnel),
                "recv on dead {id:?}"
            );
            return 0;
        };
        if tunnel.udp {
            assert_eq!(result, Err(TunnelError::NotStream), "recv on UDP");
            return 0;
        }
        if !tunnel.open {
            assert_eq!(result, Err(TunnelError::InvalidState), "recv before open");
            return 0;
        }
        match result {
            Ok(recv) => {
                assert!(
                    recv.len <= out.len(),
                    "read {} into {}",
                    recv.len,
                    out.len()
                );
                let key = model::download_key(tunnel.port);
                if let Some(at) = model::mismatch(key, tunnel.received, &out[..recv.len]) {
                    panic!("client {id:?} read a wrong byte at offset {at}");
                }
                assert!(!tunnel.fin || recv.len == 0, "bytes after the FIN");
                tunnel.received += u64::try_from(recv.len).expect("small");
                let (received, port) = (tunnel.received, tunnel.port);
                if recv.fin {
                    tunnel.fin = true;
                }
                let flow = self.model.flow(port);
                flow.download_received = received;
                flow.download_fin_read |= recv.fin;
                assert!(
                    received <= flow.download_sent,
                    "client read {received} bytes of {}",
                    flow.download_sent
                );
                if recv.fin {
                    assert!(
                        flow.download_fins.contains(&received),
                        "FIN at {received}, edge finished at {:?}",
                        flow.download_fins
                    );
                }
                recv.len
            }
            Err(TunnelError::Stream) => {
                self.doomed.push((Side::Client, id));
                0
            }
            Err(error) => panic!("client recv on open {id:?}: {error:?}"),
        }
    }

    fn edge_recv(&mut self, id: TunnelId, max: usize) -> usize {
        let out = &mut self.data[..max.min(64 * 1024)];
        let result = self.edge.tunnel_recv(id, out);
        let Some(tunnel) = self.model.edge.get_mut(&id) else {
            assert_eq!(
                result,
                Err(TunnelError::UnknownTunnel),
                "recv on dead {id:?}"
            );
            return 0;
        };
        match result {
            _ if tunnel.udp => {
                assert_eq!(result, Err(TunnelError::NotStream), "recv on UDP");
                0
            }
            Err(TunnelError::InvalidState) if tunnel.accepted => 0, // the 200 waits for room
            _ if !tunnel.accepted => {
                assert_eq!(result, Err(TunnelError::InvalidState), "recv before accept");
                0
            }
            Ok(recv) => {
                assert!(
                    recv.len <= out.len(),
                    "read {} into {}",
                    recv.len,
                    out.len()
                );
                assert!(!tunnel.fin || recv.len == 0, "bytes after the FIN");
                let Origin::Client(port) = tunnel.origin else {
                    tunnel.received += u64::try_from(recv.len).expect("small");
                    tunnel.fin |= recv.fin;
                    return recv.len;
                };
                let key = model::upload_key(port);
                if let Some(at) = model::mismatch(key, tunnel.received, &out[..recv.len]) {
                    panic!("edge {id:?} read a wrong byte at offset {at}");
                }
                tunnel.received += u64::try_from(recv.len).expect("small");
                tunnel.fin |= recv.fin;
                let received = tunnel.received;
                let flow = self.model.flow(port);
                flow.upload_received = flow.upload_received.max(received);
                flow.upload_fin_read |= recv.fin;
                assert!(
                    received <= flow.upload_sent,
                    "edge read {received} bytes of {}",
                    flow.upload_sent
                );
                if recv.fin {
                    assert!(
                        flow.upload_fin && received == flow.upload_sent,
                        "FIN at {received}; client sent {} (finished: {})",
                        flow.upload_sent,
                        flow.upload_fin
                    );
                }
                recv.len
            }
            Err(TunnelError::Stream) => {
                self.doomed.push((Side::Edge, id));
                0
            }
            Err(error) => panic!("edge recv on accepted {id:?}: {error:?}"),
        }
    }

    /// Reads every live tunnel of `side` until it has nothing more; returns the bytes read.
    fn read_all(&mut self, side: Side) -> usize {
        let ids: Vec<TunnelId> = match side {
            Side::Client => self
                .model
                .client
                .iter()
                .filter(|(_, t)| t.open && !t.fin && !t.udp)
                .map(|(&id, _)| id)
                .collect(),
            Side::Edge => self
                .model
                .edge
                .iter()
                .filter(|(_, t)| t.accepted && !t.fin && !t.udp)
                .map(|(&id, _)| id)
                .collect(),
        };
        let mut total = 0;
        for id in ids {
            loop {
                let alive = match side {
                    Side::Client => self.model.client.get(&id).is_some_and(|t| !t.fin),
                    Side::Edge => self.model.edge.get(&id).is_some_and(|t| !t.fin),
                };
                if !alive {
                    break;
                }
                let len = self.recv(side, id, 16 * 1024);
                total += len;
                if len == 0 {
                    break;
                }
            }
        }
        total
    }

    // --- CONNECT-UDP ----------------------------------------------------------------------

    /// One UDP payload of `len` bytes (at least the driver's header) on a tunnel.
    fn send_datagram(&mut self, side: Side, pick: u8, len: usize) {
        let Some((id, alive)) = self.pick(side, pick) else {
            return;
        };
        let len = len.clamp(model::DATAGRAM_HEADER, self.data.len());
        let endpoint = match side {
            Side::Client => &mut self.client,
            Side::Edge => &mut self.edge,
        };
        if !alive {
            let result = endpoint.tunnel_send_datagram(id, &self.data[..len]);
            assert_eq!(
                result,
                Err(TunnelError::UnknownTunnel),
                "datagram on dead {id:?}"
            );
            return;
        }
        // What the tunnel is, and the flow and direction whose sequence numbers it uses.
        let (udp, ip, ready, finished, port, upload) = match side {
            Side::Client => {
                let t = &self.model.client[&id];
                (t.udp, t.ip, t.open, t.finished, Some(t.port), true)
            }
            Side::Edge => {
                let t = &self.model.edge[&id];
                let port = match t.origin {
                    Origin::Client(port) => Some(port),
                    Origin::Raw | Origin::ClientIp => None,
                };
                (t.udp, t.ip, t.accepted, t.finished, port, false)
            }
        };
        let seq = match (udp && !ip, port) {
            (true, Some(port)) => {
                let flow = self.model.flow(port);
                let datagrams = if upload {
                    &mut flow.datagrams_up
                } else {
                    &mut flow.datagrams_down
                };
                datagrams.reserve(len)
            }
            _ => 0,
        };
        model::fill_datagram(upload, port.unwrap_or(0), seq, &mut self.data[..len]);
        let max = endpoint.tunnel_max_datagram_payload(id);
        let oversize = endpoint.stats().udp_dropped_oversize;
        let result = endpoint.tunnel_send_datagram(id, &self.data[..len]);
        let oversized = endpoint.stats().udp_dropped_oversize - oversize;
        let largest = if ip { MAX_IP_PACKET } else { 65527 };
        if ip && result == Ok(true) {
            // Bytes past the sender's checks: the peer's checks judge them.
            let sent = &self.data[..len];
            match side {
                Side::Client => self.model.packets_up.add(sent),
                Side::Edge => self.model.packets_down.add(sent),
            }
        }
        match result {
            _ if !udp => assert_eq!(result, Err(TunnelError::NotUdp), "datagram on TCP"),
            // Accepted but the 2xx waits: dropped.
            Ok(false) if side == Side::Edge && ready && max.is_none() => {}
            _ if !ready => assert_eq!(result, Err(TunnelError::InvalidState), "datagram early"),
            Err(TunnelError::WriteClosed) if finished => {}
            _ if finished => panic!("datagram after finish: {result:?}"),
            Ok(sent) => {
                let max = max.unwrap_or_else(|| panic!("open {id:?} has no datagram size"));
                assert!(max <= largest, "max datagram payload {max}");
                if len <= max {
                    assert_eq!(
                        oversized, 0,
                        "{len} bytes of at most {max} dropped as oversize"
                    );
                } else {
                    assert!(
                        !sent && oversized == 1,
                        "{len} bytes of at most {max}: {sent}"
                    );
                }
            }
            Err(TunnelError::Stream) => self.doomed.push((side, id)),
            Err(error) => panic!("datagram on {id:?}: {error:?}"),
        }
        self.drain();
        self.check_doomed();
    }

    /// One `tunnel_recv_datagram` into `max` bytes; returns whether a datagram came.
    fn recv_datagram(&mut self, side: Side, id: TunnelId, max: usize) -> bool {
        let max = max.min(self.data.len());
        let endpoint = match side {
            Side::Client => &mut self.client,
            Side::Edge => &mut self.edge,
        };
        let result = endpoint.tunnel_recv_datagram(id, &mut self.data[..max]);
        let tunnel = match side {
            Side::Client => self
                .model
                .client
                .get(&id)
                .map(|t| (t.udp, t.ip, t.open, Some((t.port, false)))),
            Side::Edge => self.model.edge.get(&id).map(|t| match t.origin {
                Origin::Client(port) => (t.udp, t.ip, t.accepted, Some((port, true))),
                Origin::Raw | Origin::ClientIp => (t.udp, t.ip, t.accepted, None),
            }),
        };
        let Some((udp, ip, ready, flow)) = tunnel else {
            assert_eq!(result, Err(TunnelError::UnknownTunnel), "dead {id:?}");
            return false;
        };
        let len = match result {
            _ if !udp => {
                assert_eq!(result, Err(TunnelError::NotUdp), "datagram recv on TCP");
                return false;
            }
            // Edge: accepted, the 2xx still waiting for room.
            Err(TunnelError::InvalidState) if side == Side::Edge && ready => return false,
            _ if !ready => {
                assert_eq!(
                    result,
                    Err(TunnelError::InvalidState),
                    "datagram recv early"
                );
                return false;
            }
            Ok(None) => return false,
            Ok(Some(len)) => len,
            Err(TunnelError::BufferTooSmall { needed }) => {
                let largest = if ip { MAX_IP_PACKET } else { 65527 };
                assert!(
                    needed > max && needed <= largest,
                    "needed {needed} with {max}"
                );
                // The datagram stayed: a buffer of its size takes it.
                let endpoint = match side {
                    Side::Client => &mut self.client,
                    Side::Edge => &mut self.edge,
                };
                let again = endpoint.tunnel_recv_datagram(id, &mut self.data[..needed]);
                assert_eq!(again, Ok(Some(needed)), "the datagram did not stay");
                needed
            }
            Err(error) => panic!("datagram recv on {id:?}: {error:?}"),
        };
        if ip {
            // Unchecked bytes of an IP tunnel (the host skipped the packet API): whatever
            // the peer sent, which the model does not follow.
            assert!(len <= MAX_IP_PACKET, "a packet of {len} bytes");
            self.drain();
            return true;
        }
        assert!(len <= 65527, "a datagram of {len} bytes");
        if let Some((port, upload)) = flow {
            let flow = self.model.flow(port);
            let datagrams = if upload {
                &mut flow.datagrams_up
            } else {
                &mut flow.datagrams_down
            };
            datagrams.receive(upload, port, &self.data[..len]);
        }
        self.drain();
        true
    }

    /// Drains the receive queue of every UDP tunnel of `side`; none held more than its
    /// bound.
    fn read_datagrams(&mut self, side: Side) {
        let ids: Vec<TunnelId> = match side {
            Side::Client => self
                .model
                .client
                .iter()
                .filter(|(_, t)| t.udp && t.open)
                .map(|(&id, _)| id)
                .collect(),
            Side::Edge => self
                .model
                .edge
                .iter()
                .filter(|(_, t)| t.udp && t.accepted)
                .map(|(&id, _)| id)
                .collect(),
        };
        let bound = UDP_QUEUE[usize::from(self.setup.small_queue)];
        for id in ids {
            let mut count = 0;
            while self.recv_datagram(side, id, 65527) {
                count += 1;
                assert!(count <= bound, "{id:?} held more than {bound} datagrams");
            }
        }
    }

    fn finish_tunnel(&mut self, side: Side, pick: u8) {
        let Some((id, _)) = self.pick(side, pick) else {
            return;
        };
        match side {
            Side::Client => {
                let result = self.client.tunnel_finish(id);
                match self.model.client.get_mut(&id) {
                    None => assert_eq!(result, Err(TunnelError::UnknownTunnel), "finish dead"),
                    Some(tunnel) if !tunnel.open => {
                        assert_eq!(result, Err(TunnelError::InvalidState), "finish early");
                    }
                    Some(tunnel) => match result {
                        Ok(()) if !tunnel.stopped => {
                            tunnel.finished = true;
                            let port = tunnel.port;
                            self.model.flow(port).upload_fin = true;
                        }
                        Err(TunnelError::WriteClosed) if !tunnel.udp => tunnel.stopped = true,
                        Err(TunnelError::WriteClosed | TunnelError::Stream) if !tunnel.finished => {
                            self.doomed.push((side, id));
                        }
                        Ok(()) => panic!("client finish {id:?} after a stop"),
                        Err(error) => panic!("client finish {id:?}: {error:?}"),
                    },
                }
            }
            Side::Edge => {
                let result = self.edge.tunnel_finish(id);
                match self.model.edge.get_mut(&id) {
                    None => assert_eq!(result, Err(TunnelError::UnknownTunnel), "finish dead"),
                    Some(tunnel) if !tunnel.accepted => {
                        assert_eq!(result, Err(TunnelError::InvalidState), "finish early");
                    }
                    Some(tunnel) => match result {
                        Ok(()) if !tunnel.stopped => {
                            if !tunnel.finished {
                                tunnel.finished = true;
                                if let Origin::Client(port) = tunnel.origin {
                                    let sent = tunnel.sent;
                                    self.model.flow(port).download_fins.push(sent);
                                }
                            }
                        }
                        Err(TunnelError::WriteClosed) if !tunnel.udp => tunnel.stopped = true,
                        Err(TunnelError::WriteClosed | TunnelError::Stream) if !tunnel.finished => {
                            self.doomed.push((side, id));
                        }
                        Ok(()) => panic!("edge finish {id:?} after a stop"),
                        Err(error) => panic!("edge finish {id:?}: {error:?}"),
                    },
                }
            }
        }
        self.drain();
        self.check_doomed();
    }

    fn abort(&mut self, side: Side, pick: u8) {
        let Some((id, alive)) = self.pick(side, pick) else {
            return;
        };
        let result = match side {
            Side::Client => self.client.tunnel_abort(id),
            Side::Edge => self.edge.tunnel_abort(id),
        };
        if alive {
            assert_eq!(result, Ok(()), "abort {id:?}");
            match side {
                Side::Client => {
                    let tunnel = self.model.kill_client(id);
                    let flow = self.model.flow(tunnel.port);
                    flow.client_gave_up = true;
                    flow.upload_abort_after_fin |= tunnel.finished && !tunnel.udp;
                }
                Side::Edge => {
                    let tunnel = self.model.kill_edge(id);
                    if let Origin::Client(port) = tunnel.origin {
                        let flow = self.model.flow(port);
                        flow.edge_gave_up = true;
                        flow.download_abort_after_fin |= tunnel.finished && !tunnel.udp;
                    }
                }
            }
        } else {
            assert_eq!(result, Err(TunnelError::UnknownTunnel), "abort dead {id:?}");
        }
        self.drain();
    }

    /// A tunnel of `side`: a live one by `pick` modulo their number, or for picks from
    /// 0xf8 one that died or never was. The flag says whether it is alive.
    fn pick(&self, side: Side, pick: u8) -> Option<(TunnelId, bool)> {
        let (live, dead): (Vec<TunnelId>, &[TunnelId]) = match side {
            Side::Client => (
                self.model.client.keys().copied().collect(),
                &self.model.client_dead,
            ),
            Side::Edge => (
                self.model.edge.keys().copied().collect(),
                &self.model.edge_dead,
            ),
        };
        let endpoint = match side {
            Side::Client => &self.client,
            Side::Edge => &self.edge,
        };
        if pick >= 0xf8 {
            let id = match index_of(dead.len(), pick) {
                Some(index) => dead[index],
                None => TunnelId(u64::MAX - u64::from(pick)),
            };
            assert_eq!(endpoint.tunnel_kind(id), None, "dead {id:?} has a kind");
            return Some((id, false));
        }
        let id = live[index_of(live.len(), pick)?];
        let (udp, ip) = match side {
            Side::Client => (self.model.client[&id].udp, self.model.client[&id].ip),
            Side::Edge => (self.model.edge[&id].udp, self.model.edge[&id].ip),
        };
        let kind = if ip {
            TunnelKind::Ip
        } else if udp {
            TunnelKind::Udp
        } else {
            TunnelKind::Stream
        };
        assert_eq!(endpoint.tunnel_kind(id), Some(kind), "kind of {id:?}");
        Some((id, true))
    }

    /// Every call that failed a live tunnel has been followed by its `TunnelClosed`.
    fn check_doomed(&mut self) {
        for (side, id) in std::mem::take(&mut self.doomed) {
            let alive = match side {
                Side::Client => self.model.client.contains_key(&id),
                Side::Edge => self.model.edge.contains_key(&id),
            };
            assert!(!alive, "{side:?} {id:?} failed a call but was not closed");
        }
    }

    // --- CONNECT-IP -----------------------------------------------------------------------

    fn open_ip(&mut self, scope: &ScopeInput, protocol: u8) {
        let target = match scope {
            ScopeInput::Any => Target::Any,
            ScopeInput::Listed(index) => {
                let (addr, len) = IP_SCOPES[usize::from(*index) % IP_SCOPES.len()];
                let addr = addr.parse().expect("a listed scope");
                Target::Prefix(IpPrefix::new_masked(addr, len).expect("a listed prefix"))
            }
            ScopeInput::V4(octets, len) => {
                match IpPrefix::new_masked(IpAddr::from(*octets), len % 33) {
                    Ok(prefix) => Target::Prefix(prefix),
                    Err(_) => return,
                }
            }
            ScopeInput::V6(octets, len) => {
                match IpPrefix::new_masked(IpAddr::from(*octets), len % 129) {
                    Ok(prefix) => Target::Prefix(prefix),
                    Err(_) => return,
                }
            }
        };
        let ipproto = match protocol {
            0 => IpProto::Any,
            n => IpProto::Number(n - 1),
        };
        let scope = Scope { target, ipproto };
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(1);
        match self.client.open_ip_tunnel(self.now, &scope) {
            Ok(id) => {
                self.model.new_client(id, port, true, true);
                let any = TunnelTarget::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
                let mut flow = model::Flow::new(any, true);
                flow.ip = true;
                self.model.flows.insert(port, flow);
            }
            Err(OpenError::Closing) => assert!(self.client_closed, "Closing before close()"),
            Err(OpenError::QueueFull) => self.check_queue_full(),
            Err(error) => panic!("open_ip_tunnel({scope:?}): {error:?}"),
        }
        self.drain();
    }

    /// Client: the edge gave an IP tunnel addresses or routes.
    fn on_ip_configured(&mut self, tunnel: TunnelId) {
        let state = self.model.client.get(&tunnel);
        assert!(
            state.is_some_and(|t| t.ip && t.open),
            "IpTunnelConfigured for {tunnel:?}, not an open IP tunnel"
        );
        // Events wait in a queue: the tunnel may have ended after this one was queued (a
        // reset in the same datagram as the capsule); its `TunnelClosed` follows, and the
        // engine has forgotten its addresses already.
        let Some(prefixes) = self.client.ip_tunnel_addresses(tunnel) else {
            assert!(
                self.client.ip_tunnel_routes(tunnel).is_none(),
                "IP tunnel {tunnel:?} has routes but no addresses"
            );
            return;
        };
        assert!(
            self.client.ip_tunnel_routes(tunnel).is_some(),
            "IP tunnel {tunnel:?} has no routes"
        );
        let mut addresses = Vec::new();
        for prefix in &prefixes {
            assert!(
                prefix.is_host(),
                "{tunnel:?} was assigned the prefix {prefix}"
            );
            assert!(
                self.pool.contains(&prefix.addr()),
                "{tunnel:?} was assigned {prefix}, not an address of the pools"
            );
            addresses.push(prefix.addr());
        }
        check_one_per_family(tunnel, &addresses);
        if let Some(state) = self.model.client.get_mut(&tunnel) {
            state.addresses = addresses;
        }
    }

    /// Edge: the addresses an IP tunnel holds, as the edge says.
    fn edge_addresses(&self, tunnel: TunnelId) -> Vec<IpAddr> {
        let prefixes = self.edge.ip_tunnel_addresses(tunnel).unwrap_or_default();
        for prefix in &prefixes {
            assert!(
                prefix.is_host(),
                "edge {tunnel:?} holds the prefix {prefix}"
            );
        }
        prefixes.iter().map(IpPrefix::addr).collect()
    }

    /// The pool's invariants, on the edge's live IP tunnels and the client's addresses.
    fn check_ip(&mut self, stats: &EndpointStats) {
        let mut owners: HashMap<IpAddr, TunnelId> = HashMap::new();
        let ids: Vec<TunnelId> = self
            .model
            .edge
            .iter()
            .filter(|(_, t)| t.ip)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            let addresses = self.edge_addresses(id);
            check_one_per_family(id, &addresses);
            for addr in addresses {
                assert!(
                    self.pool.contains(&addr),
                    "edge {id:?} holds {addr}, not an address of the pools"
                );
                if let Some(other) = owners.insert(addr, id) {
                    panic!("{addr} is assigned to both {other:?} and {id:?}");
                }
                self.model.holders.entry(addr).or_default().insert(id);
            }
        }
        // Every address goes back to the pool with its tunnel, however the tunnel ended
        // (a lost connection too: `seed-ip-idle-and-close` once found that it did not).
        assert_eq!(
            stats.ip_addresses_assigned,
            owners.len(),
            "ip_addresses_assigned; the live tunnels hold {owners:?}"
        );
        assert!(
            stats.ip_addresses_assigned <= self.pool.len(),
            "{} addresses assigned from a pool of {}",
            stats.ip_addresses_assigned,
            self.pool.len()
        );
        // Two live client tunnels hold one address only if the edge handed it out again,
        // after the tunnel that held it ended: two edge tunnels held it.
        let mut held: HashMap<IpAddr, usize> = HashMap::new();
        for tunnel in self.model.client.values().filter(|t| t.ip) {
            for addr in &tunnel.addresses {
                *held.entry(*addr).or_default() += 1;
            }
        }
        for (addr, count) in held {
            let holders = self
                .model
                .holders
                .get(&addr)
                .map_or(0, std::collections::BTreeSet::len);
            assert!(
                count <= holders,
                "{count} client tunnels hold {addr}, which {holders} edge tunnels ever held"
            );
        }
    }

    /// Counters only grow.
    // One line per counter of `EndpointStats`.
    #[allow(clippy::too_many_lines)]
    fn check_counters(&mut self, client: &EndpointStats, edge: &EndpointStats) {
        for (index, &now) in [client, edge].into_iter().enumerate() {
            let before = self.last_stats[index];
            let side = if index == 0 { "client" } else { "edge" };
            let pairs = [
                (
                    "connections_total",
                    before.connections_total,
                    now.connections_total,
                ),
                (
                    "connections_lost",
                    before.connections_lost,
                    now.connections_lost,
                ),
                ("tunnels_total", before.tunnels_total, now.tunnels_total),
                (
                    "tunnels_refused",
                    before.tunnels_refused,
                    now.tunnels_refused,
                ),
                ("auth_failures", before.auth_failures, now.auth_failures),
                (
                    "datagrams_dropped",
                    before.datagrams_dropped,
                    now.datagrams_dropped,
                ),
                (
                    "version_negotiations",
                    before.version_negotiations,
                    now.version_negotiations,
                ),
                (
                    "stateless_resets",
                    before.stateless_resets,
                    now.stateless_resets,
                ),
                (
                    "datagrams_received",
                    before.datagrams_received,
                    now.datagrams_received,
                ),
                ("datagrams_sent", before.datagrams_sent, now.datagrams_sent),
                (
                    "udp_datagrams_sent",
                    before.udp_datagrams_sent,
                    now.udp_datagrams_sent,
                ),
                (
                    "udp_datagrams_received",
                    before.udp_datagrams_received,
                    now.udp_datagrams_received,
                ),
                (
                    "udp_dropped_oversize",
                    before.udp_dropped_oversize,
                    now.udp_dropped_oversize,
                ),
                (
                    "udp_dropped_queue_full",
                    before.udp_dropped_queue_full,
                    now.udp_dropped_queue_full,
                ),
                (
                    "udp_dropped_unknown_context",
                    before.udp_dropped_unknown_context,
                    now.udp_dropped_unknown_context,
                ),
                (
                    "udp_dropped_unknown_tunnel",
                    before.udp_dropped_unknown_tunnel,
                    now.udp_dropped_unknown_tunnel,
                ),
                (
                    "udp_dropped_malformed",
                    before.udp_dropped_malformed,
                    now.udp_dropped_malformed,
                ),
                (
                    "udp_capsule_datagrams",
                    before.udp_capsule_datagrams,
                    now.udp_capsule_datagrams,
                ),
                ("audit_dropped", before.audit_dropped, now.audit_dropped),
                (
                    "tunnel_bytes_received",
                    before.tunnel_bytes_received,
                    now.tunnel_bytes_received,
                ),
                (
                    "tunnel_bytes_sent",
                    before.tunnel_bytes_sent,
                    now.tunnel_bytes_sent,
                ),
                (
                    "quic_packets_sent",
                    before.quic_packets_sent,
                    now.quic_packets_sent,
                ),
                (
                    "quic_packets_lost",
                    before.quic_packets_lost,
                    now.quic_packets_lost,
                ),
                (
                    "ip_packets_forwarded",
                    before.ip_packets_forwarded,
                    now.ip_packets_forwarded,
                ),
                (
                    "ip_icmp_answers",
                    before.ip_icmp_answers,
                    now.ip_icmp_answers,
                ),
            ];
            for (name, was, is) in pairs {
                assert!(is >= was, "{side}: {name} went down from {was} to {is}");
            }
            for ((cause, was), (_, is)) in
                before.ip_dropped.by_cause().zip(now.ip_dropped.by_cause())
            {
                assert!(
                    is >= was,
                    "{side}: ip_dropped {cause} went down from {was} to {is}"
                );
            }
            self.last_stats[index] = now;
        }
    }

    /// One packet into a tunnel: `tunnel_send_packet`, or `tunnel_send_datagram` past the
    /// sender's checks.
    fn send_packet(&mut self, side: Side, pick: u8, spec: &PacketInput) {
        let Some((id, _)) = self.pick(side, pick) else {
            return;
        };
        let state = match side {
            Side::Client => self
                .model
                .client
                .get(&id)
                .map(|t| (t.udp, t.ip, t.open, t.finished)),
            Side::Edge => self
                .model
                .edge
                .get(&id)
                .map(|t| (t.udp, t.ip, t.accepted, t.finished)),
        };
        let bypass = matches!(spec, PacketInput::Raw { bypass: true, .. });
        if bypass && state.is_some_and(|(_, ip, _, _)| !ip) {
            // Arbitrary bytes on a CONNECT-UDP tunnel are SendDatagram's business.
            return;
        }
        let addresses: Vec<IpAddr> = match side {
            Side::Client => self.client.ip_tunnel_addresses(id),
            Side::Edge => self.edge.ip_tunnel_addresses(id),
        }
        .unwrap_or_default()
        .iter()
        .map(IpPrefix::addr)
        .collect();
        let Some(mut packet) = build_packet(spec, &addresses, &[], &self.pool) else {
            return;
        };
        let endpoint = match side {
            Side::Client => &mut self.client,
            Side::Edge => &mut self.edge,
        };
        let result = if bypass {
            endpoint.tunnel_send_datagram(id, &packet)
        } else {
            endpoint.tunnel_send_packet(id, &mut packet)
        };
        let Some((_, ip, ready, finished)) = state else {
            assert_eq!(
                result,
                Err(TunnelError::UnknownTunnel),
                "packet on dead {id:?}"
            );
            return;
        };
        match result {
            _ if !ip => assert_eq!(result, Err(TunnelError::NotIp), "packet on a non-IP tunnel"),
            Ok(true) => {
                assert!(ready, "{side:?} {id:?} sent a packet before it was open");
                match side {
                    Side::Client => self.model.packets_up.add(&packet),
                    Side::Edge => self.model.packets_down.add(&packet),
                }
            }
            Ok(false) => {}
            Err(TunnelError::InvalidState) if !ready => {}
            Err(TunnelError::WriteClosed) if finished => {}
            Err(TunnelError::Stream) => self.doomed.push((side, id)),
            Err(error) => panic!("packet on {side:?} {id:?}: {error:?}"),
        }
        self.drain();
        self.check_doomed();
    }

    /// One `tunnel_recv_packet` into `max` bytes; returns whether a packet came.
    fn recv_packet(&mut self, side: Side, id: TunnelId, max: usize) -> bool {
        let max = max.min(self.data.len());
        let endpoint = match side {
            Side::Client => &mut self.client,
            Side::Edge => &mut self.edge,
        };
        let result = endpoint.tunnel_recv_packet(id, &mut self.data[..max]);
        let state = match side {
            Side::Client => self
                .model
                .client
                .get(&id)
                .map(|t| (t.udp, t.ip, t.open, None)),
            Side::Edge => self
                .model
                .edge
                .get(&id)
                .map(|t| (t.udp, t.ip, t.accepted, Some(t.origin))),
        };
        let Some((_, ip, ready, origin)) = state else {
            assert_eq!(
                result,
                Err(TunnelError::UnknownTunnel),
                "packet recv on dead {id:?}"
            );
            return false;
        };
        let len = match result {
            // A CONNECT-UDP tunnel's datagrams are not packets: they stay queued.
            _ if !ip => {
                assert_eq!(
                    result,
                    Err(TunnelError::NotIp),
                    "packet recv on a non-IP tunnel"
                );
                return false;
            }
            // Edge: accepted, the 2xx still waiting for room.
            Err(TunnelError::InvalidState) if !ready || side == Side::Edge => return false,
            _ if !ready => panic!("packet recv on {side:?} {id:?} before open: {result:?}"),
            Ok(None) => return false,
            Ok(Some(len)) => len,
            Err(TunnelError::BufferTooSmall { needed }) => {
                assert!(
                    needed > max && needed <= MAX_IP_PACKET,
                    "needed {needed} with {max}"
                );
                return false;
            }
            // The ICMP answer to a refused packet failed the tunnel.
            Err(TunnelError::UnknownTunnel | TunnelError::Stream) if side == Side::Edge => {
                self.doomed.push((side, id));
                self.drain();
                self.check_doomed();
                return false;
            }
            Err(error) => panic!("packet recv on {side:?} {id:?}: {error:?}"),
        };
        assert!(len <= max, "a packet of {len} bytes in {max}");
        let packet = self.data[..len].to_vec();
        let view = IpPacket::new_checked(&packet)
            .unwrap_or_else(|e| panic!("{side:?} {id:?} received a malformed packet: {e:?}"));
        match side {
            Side::Client => {
                let assigned = self.client.ip_tunnel_addresses(id).unwrap_or_default();
                let destination = view.destination();
                assert!(
                    assigned.iter().any(|p| p.contains(destination)),
                    "client {id:?} received a packet to {destination}; it was assigned {assigned:?}"
                );
                let icmp = matches!(
                    view.transport(),
                    Transport::Icmpv4(_) | Transport::Icmpv6(_)
                );
                let from_edge = icmp && view.source() == gateway(view.source().is_ipv6());
                assert!(
                    self.model.packets_down.take(&packet) || from_edge,
                    "client {id:?} received a packet nobody sent it: {packet:02x?}"
                );
            }
            Side::Edge => {
                let assigned = self.edge_addresses(id);
                let source = view.source();
                assert!(
                    assigned.contains(&source),
                    "the edge's host received from {id:?} a packet from {source}; the tunnel \
                     holds {assigned:?}"
                );
                if origin == Some(Origin::ClientIp) {
                    assert!(
                        self.model.packets_up.take(&packet),
                        "edge {id:?} received a packet the client never sent: {packet:02x?}"
                    );
                }
            }
        }
        self.drain();
        true
    }

    /// Reads every IP tunnel of `side` with `tunnel_recv_packet` until it has nothing.
    fn read_packets(&mut self, side: Side) {
        let ids: Vec<TunnelId> = match side {
            Side::Client => self
                .model
                .client
                .iter()
                .filter(|(_, t)| t.ip && t.open)
                .map(|(&id, _)| id)
                .collect(),
            Side::Edge => self
                .model
                .edge
                .iter()
                .filter(|(_, t)| t.ip && t.accepted)
                .map(|(&id, _)| id)
                .collect(),
        };
        let bound = UDP_QUEUE[usize::from(self.setup.small_queue)];
        for id in ids {
            let mut count = 0;
            while self.recv_packet(side, id, MAX_IP_PACKET) {
                count += 1;
                assert!(count <= bound, "{id:?} held more than {bound} packets");
            }
        }
    }

    /// Edge: a packet from the off-ramp, to the address of a live IP tunnel (by `pick`) or
    /// any other.
    fn ip_deliver(&mut self, pick: u8, spec: &PacketInput, answer: u8) {
        let ids: Vec<TunnelId> = self
            .model
            .edge
            .iter()
            .filter(|(_, t)| t.ip)
            .map(|(&id, _)| id)
            .collect();
        let addresses = index_of(ids.len(), pick)
            .map(|index| self.edge_addresses(ids[index]))
            .unwrap_or_default();
        let Some(mut packet) = build_packet(spec, &self.pool, &addresses, &self.pool) else {
            return;
        };
        let original = IpPacket::new_checked(&packet).ok().map(|v| v.source());
        let mut answer = vec![0; [1500, 1280, 576, 40][usize::from(answer % 4)]];
        let before = self.edge.stats();
        let result = self.edge.ip_deliver(&mut packet, &mut answer);
        let after = self.edge.stats();
        match result {
            IpDelivery::Sent(tunnel) => {
                let state = self.model.edge.get(&tunnel);
                assert!(
                    state.is_some_and(|t| t.ip && t.accepted),
                    "ip_deliver sent into {tunnel:?}, not an accepted IP tunnel"
                );
                let view = IpPacket::new_checked(&packet).expect("a delivered packet parses");
                let destination = view.destination();
                assert!(
                    self.edge_addresses(tunnel).contains(&destination),
                    "ip_deliver sent a packet to {destination} into {tunnel:?}"
                );
                assert_eq!(
                    after.ip_packets_forwarded,
                    before.ip_packets_forwarded + 1,
                    "a delivery not counted"
                );
                self.model.packets_down.add(&packet);
            }
            IpDelivery::Answer { len } => {
                assert!(
                    len <= answer.len(),
                    "an answer of {len} in {}",
                    answer.len()
                );
                let view = IpPacket::new_checked(&answer[..len])
                    .unwrap_or_else(|e| panic!("ip_deliver answered a malformed packet: {e:?}"));
                assert!(
                    matches!(
                        view.transport(),
                        Transport::Icmpv4(_) | Transport::Icmpv6(_)
                    ),
                    "ip_deliver answered with something else than ICMP"
                );
                assert_eq!(
                    view.source(),
                    gateway(view.source().is_ipv6()),
                    "an ICMP answer not from the gateway"
                );
                assert_eq!(
                    Some(view.destination()),
                    original,
                    "an ICMP answer not to the packet's source"
                );
                assert_eq!(
                    after.ip_icmp_answers,
                    before.ip_icmp_answers + 1,
                    "an answer not counted"
                );
            }
            IpDelivery::Dropped => {}
        }
        self.drain();
    }

    // --- the link and the clock -----------------------------------------------------------

    /// Moves every datagram the endpoints and the raw peer want to send onto the link.
    fn collect(&mut self) {
        for _ in 0..RUNAWAY {
            let Some(transmit) = self.client.poll_transmit(self.now, &mut self.buf) else {
                break;
            };
            assert_eq!(
                (transmit.from, transmit.to),
                (self.client_addr, self.edge_addr)
            );
            for segment in segments(&self.buf, transmit, self.max_datagram) {
                let packet = Packet {
                    from: self.client_addr,
                    bytes: segment.to_vec(),
                };
                push(
                    &mut self.links[Dir::Edge as usize],
                    packet,
                    &mut self.lossless,
                );
            }
        }
        for _ in 0..RUNAWAY {
            let Some(transmit) = self.edge.poll_transmit(self.now, &mut self.buf) else {
                break;
            };
            assert_eq!(transmit.from, self.edge_addr);
            let dir = if transmit.to == self.client_addr {
                Some(Dir::Client)
            } else if transmit.to == self.raw_addr {
                Some(Dir::Raw)
            } else {
                assert_eq!(transmit.to, self.stranger_addr, "edge sends to a stranger");
                None
            };
            for segment in segments(&self.buf, transmit, self.max_datagram) {
                if let Some(dir) = dir {
                    let packet = Packet {
                        from: self.edge_addr,
                        bytes: segment.to_vec(),
                    };
                    push(&mut self.links[dir as usize], packet, &mut self.lossless);
                }
            }
        }
        if let Some(raw) = self.raw.as_mut() {
            // The raw peer is bare quiche, without the engine's bound on a closing
            // connection's sends (`transmit::CLOSING_SENDS`, finding 9): closed while a
            // probe is due, quiche 0.30 never says `Done`, and each call records one more
            // sent packet. So, closing, it sends a few packets per collection.
            let sends = if raw.quic.local_error().is_some() {
                RAW_CLOSING_SENDS
            } else {
                RUNAWAY
            };
            for _ in 0..sends {
                let Ok((len, _)) = raw.quic.send(&mut self.buf) else {
                    break;
                };
                let packet = Packet {
                    from: self.raw_addr,
                    bytes: self.buf[..len].to_vec(),
                };
                push(
                    &mut self.links[Dir::Edge as usize],
                    packet,
                    &mut self.lossless,
                );
            }
        }
    }

    /// Delivers the first `count` datagrams (0: all) waiting in `dir`.
    fn deliver(&mut self, dir: Dir, count: usize) {
        let link = &mut self.links[dir as usize];
        let count = if count == 0 {
            link.len()
        } else {
            count.min(link.len())
        };
        let packets: Vec<Packet> = link.drain(..count).collect();
        for mut packet in packets {
            self.receive(dir, &mut packet);
        }
        if dir == Dir::Raw {
            if let Some(raw) = self.raw.as_mut() {
                raw.ready();
                raw.poll();
            }
        }
    }

    fn receive(&mut self, dir: Dir, packet: &mut Packet) {
        match dir {
            Dir::Edge => {
                let meta = RecvMeta {
                    from: packet.from,
                    to: self.edge_addr,
                };
                self.edge.handle_datagram(self.now, meta, &mut packet.bytes);
            }
            Dir::Client => {
                let meta = RecvMeta {
                    from: self.edge_addr,
                    to: self.client_addr,
                };
                self.client
                    .handle_datagram(self.now, meta, &mut packet.bytes);
            }
            Dir::Raw => {
                if let Some(raw) = self.raw.as_mut() {
                    let info = quiche::RecvInfo {
                        from: self.edge_addr,
                        to: self.raw_addr,
                    };
                    let _ = raw.quic.recv(&mut packet.bytes, info);
                }
            }
        }
    }

    fn take_packet(&mut self, dir: Dir, pick: u8) -> Option<Packet> {
        let link = &mut self.links[dir as usize];
        index_of(link.len(), pick).and_then(|index| link.remove(index))
    }

    /// An arbitrary datagram; one that starts like a long header is padded to the 1200
    /// bytes an Initial needs, so that the edge's version and Initial checks see it.
    fn inject(&mut self, dir: Dir, mut bytes: Vec<u8>) {
        if bytes.first().is_some_and(|first| first & 0x80 != 0) && bytes.len() < 1200 {
            bytes.resize(1200, 0);
        }
        let mut packet = Packet {
            from: self.stranger_addr,
            bytes,
        };
        self.receive(dir, &mut packet);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.edge.handle_timeout(self.now);
    }

    /// Lets real time pass, for quiche's own timers (loss recovery, draining, closing),
    /// within a budget per input; the virtual clock catches up with it.
    fn sleep(&mut self, wanted: Duration) {
        let nap = wanted.min(self.sleep_budget);
        self.sleep_budget -= nap;
        if !nap.is_zero() {
            std::thread::sleep(nap);
        }
        self.now = self.now.max(Instant::now());
        self.advance(Duration::ZERO);
        self.timers();
    }

    /// Fires the timers that are due: the endpoints' by the virtual clock, the raw peer's
    /// by quiche's real one.
    fn timers(&mut self) {
        if self.client.poll_timeout().is_some_and(|at| at <= self.now) {
            self.client.handle_timeout(self.now);
        }
        if self.edge.poll_timeout().is_some_and(|at| at <= self.now) {
            self.edge.handle_timeout(self.now);
        }
        if let Some(raw) = self.raw.as_mut() {
            if raw.quic.timeout() == Some(Duration::ZERO) {
                raw.quic.on_timeout();
                raw.poll();
            }
        }
    }

    /// Up to `rounds` lossless exchanges of everything in flight; returns whether any
    /// datagram moved.
    fn pump(&mut self, rounds: usize) -> bool {
        let mut moved = false;
        for _ in 0..rounds {
            self.collect();
            if self.links.iter().all(VecDeque::is_empty) {
                break;
            }
            moved = true;
            for dir in [Dir::Edge, Dir::Client, Dir::Raw] {
                self.deliver(dir, 0);
            }
            self.timers();
            self.drain();
        }
        moved
    }

    /// The raw peer, connected (its handshake pumped through) if it can be.
    fn raw_peer(&mut self) -> Option<&mut RawPeer> {
        if self.raw.is_none() {
            self.raw = RawPeer::new(self.raw_addr, self.edge_addr);
        }
        if !self.raw.as_mut()?.ready() {
            for _ in 0..8 {
                self.pump(1);
                if self.raw.as_mut()?.ready() {
                    break;
                }
            }
        }
        self.raw.as_mut()
    }

    // --- events ---------------------------------------------------------------------------

    /// Handles every event both endpoints have.
    fn drain(&mut self) {
        for _ in 0..RUNAWAY {
            let Some(event) = self.client.poll_event() else {
                break;
            };
            self.check_secret(&event);
            if self.trace {
                eprintln!("  client: {event:?}");
            }
            self.on_client_event(event);
        }
        for _ in 0..RUNAWAY {
            let Some(event) = self.edge.poll_event() else {
                break;
            };
            self.check_secret(&event);
            if self.trace {
                eprintln!("  edge: {event:?}");
            }
            self.on_edge_event(event);
        }
        assert!(
            self.client.poll_event().is_none() && self.edge.poll_event().is_none(),
            "events never run dry"
        );
        self.forget_expired_requests();
    }

    /// Edge: requests the host left unanswered for `request_timeout` are refused by the
    /// engine (504, `connection_timeout`); it says so for a request it had handed over
    /// (`TunnelClosed` with `RequestTimeout`), not for one still with a hook. The model
    /// forgets the rest here and lets their clients see that refusal.
    fn forget_expired_requests(&mut self) {
        // `check` holds the edge's tunnel count equal to the model's after every step, and
        // the events drained above bring every new tunnel into the model: while the counts
        // agree, no request vanished, and the scan (a lookup per tunnel, after every step)
        // is spared.
        if self.edge.stats().tunnels == self.model.edge.len() {
            return;
        }
        let expired: Vec<TunnelId> = self
            .model
            .edge
            .iter()
            .filter(|(id, t)| !t.accepted && self.edge.tunnel_kind(**id).is_none())
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.expired(id);
        }
    }

    /// The engine refused request `id` at its timeout: its client sees 504.
    fn expired(&mut self, id: TunnelId) {
        let tunnel = self.model.kill_edge(id);
        match tunnel.origin {
            Origin::Client(port) => {
                self.model
                    .flow(port)
                    .refusals
                    .push(Refusal::ConnectionTimeout);
            }
            Origin::ClientIp => self.model.ip_refusals.push(Refusal::ConnectionTimeout),
            Origin::Raw => {}
        }
    }

    fn check_secret(&self, event: &Event) {
        if self.setup.auth != Auth::Open {
            let text = format!("{event:?}");
            assert!(!text.contains(TOKEN), "an event carries the token: {text}");
        }
    }

    fn on_client_event(&mut self, event: Event) {
        match event {
            Event::ConnectionEstablished { peer, .. } => assert_eq!(peer, self.edge_addr),
            Event::ConnectionLost { .. } => {}
            Event::TunnelOpened { tunnel } => {
                let state = self.model.client.get_mut(&tunnel);
                let state = state.unwrap_or_else(|| panic!("TunnelOpened for dead {tunnel:?}"));
                assert!(!state.open, "TunnelOpened twice for {tunnel:?}");
                state.open = true;
                let port = state.port;
                self.model.flow(port).opened = true;
            }
            Event::TunnelRefused { tunnel, reason } => {
                let state = self.model.kill_client(tunnel);
                assert!(!state.open, "TunnelRefused for open {tunnel:?}");
                self.check_refusal(state.port, &reason);
            }
            Event::TunnelReadable { tunnel } | Event::TunnelWritable { tunnel } => {
                let state = self.model.client.get(&tunnel);
                assert!(
                    state.is_some_and(|t| t.open),
                    "{event:?} for a tunnel not open"
                );
            }
            Event::TunnelDatagrams { tunnel } => {
                let state = self.model.client.get(&tunnel);
                assert!(
                    state.is_some_and(|t| t.open && t.udp),
                    "{event:?} for a tunnel not open or not UDP"
                );
            }
            Event::TunnelClosed { tunnel, reason } => {
                let state = self.model.kill_client(tunnel);
                assert!(state.open, "TunnelClosed for unopened {tunnel:?}");
                if let CloseReason::Refused { status } = reason {
                    assert!(!state.udp, "a UDP or IP tunnel closed as refused");
                    self.check_refused_status(state.port, status);
                }
                check_close(state.udp, state.finished && state.fin, reason);
            }
            Event::IpTunnelConfigured { tunnel } => self.on_ip_configured(tunnel),
            other => panic!("client event {other:?}"),
        }
    }

    fn on_edge_event(&mut self, event: Event) {
        match event {
            Event::ConnectionEstablished { peer, .. } => {
                assert!(
                    peer == self.client_addr || peer == self.raw_addr,
                    "peer {peer}"
                );
            }
            Event::ConnectionLost { .. } => {}
            Event::TunnelRequest {
                tunnel,
                kind,
                target,
                client,
            } => self.on_request(tunnel, &target, client, kind),
            Event::TunnelDatagrams { tunnel } => {
                let state = self.model.edge.get(&tunnel);
                assert!(
                    state.is_some_and(|t| t.accepted && t.udp),
                    "{event:?} for a tunnel not accepted or not UDP"
                );
            }
            Event::TunnelReadable { tunnel } | Event::TunnelWritable { tunnel } => {
                let state = self.model.edge.get(&tunnel);
                assert!(
                    state.is_some_and(|t| t.accepted),
                    "{event:?} for a tunnel not accepted"
                );
            }
            Event::TunnelClosed {
                tunnel,
                reason: CloseReason::RequestTimeout,
            } => {
                assert!(
                    self.model.edge.get(&tunnel).is_some_and(|t| !t.accepted),
                    "RequestTimeout for a tunnel the host had answered"
                );
                self.expired(tunnel);
            }
            Event::TunnelClosed { tunnel, reason } => {
                let state = self.model.kill_edge(tunnel);
                check_close(state.udp, state.finished && state.fin, reason);
            }
            other => panic!("edge event {other:?}"),
        }
    }

    /// Edge: a CONNECT or CONNECT-UDP request passed the engine's checks.
    fn on_request(
        &mut self,
        tunnel: TunnelId,
        target: &TunnelTarget,
        client: veil_engine::ClientIdentity,
        kind: TunnelKind,
    ) {
        // The tunnel may be gone already (its stream or connection ended since the event).
        let alive = self.edge.tunnel_kind(tunnel);
        assert!(
            alive.is_none_or(|k| k == kind),
            "kind of {tunnel:?}: {alive:?}"
        );
        let (udp, ip) = match kind {
            TunnelKind::Udp => (true, false),
            TunnelKind::Ip => (true, true),
            _ => (false, false),
        };
        // Egress policy judges an IP tunnel's packets, not its scope.
        if let (Host::Ip(ip), false) = (target.host.clone(), ip) {
            assert!(
                self.edge.check_egress(ip).is_ok(),
                "TunnelRequest for forbidden {ip}"
            );
        }
        if ip {
            assert!(!self.pool.is_empty(), "a CONNECT-IP request without a pool");
            assert_eq!(target.port, 0, "an IP tunnel's target has a port");
            // Addresses are held from the request on.
            let held = self.edge_addresses(tunnel);
            assert!(
                alive.is_none() || !held.is_empty(),
                "IP tunnel {tunnel:?} requested without addresses"
            );
        }
        match self.setup.auth {
            Auth::Open => assert_eq!(client.token_index, None),
            _ => assert_eq!(client.token_index, Some(0), "token index"),
        }
        let origin = if client.peer == self.raw_addr {
            Origin::Raw
        } else if ip {
            assert_eq!(client.peer, self.client_addr);
            assert!(
                matches!(self.setup.auth, Auth::Open | Auth::Token),
                "a client without the token got through"
            );
            Origin::ClientIp
        } else {
            assert_eq!(client.peer, self.client_addr);
            assert!(
                matches!(self.setup.auth, Auth::Open | Auth::Token),
                "a client without the token got through"
            );
            let flow = self.model.flow(target.port);
            assert!(
                same_target(&flow.target, target),
                "client asked for {}, edge saw {target}",
                flow.target
            );
            assert_eq!(flow.udp, udp, "a request of the other kind");
            Origin::Client(target.port)
        };
        self.model.new_edge(tunnel, origin, udp, ip);
        if ip {
            for addr in self.edge_addresses(tunnel) {
                self.model.holders.entry(addr).or_default().insert(tunnel);
            }
        }
    }

    /// A refusal the client saw is one the edge's rules or its host gave.
    fn check_refusal(&mut self, port: u16, reason: &RefusedReason) {
        let RefusedReason::Status {
            status,
            proxy_error,
            ..
        } = reason
        else {
            assert_ne!(
                *reason,
                RefusedReason::MalformedResponse,
                "the edge sent a malformed response"
            );
            return;
        };
        let seen = (*status, *proxy_error);
        match self.setup.auth {
            Auth::WrongToken => {
                assert_eq!(seen, (403, Some(ProxyErrorType::HttpRequestDenied)));
                return;
            }
            Auth::NoToken => {
                assert_eq!(seen, (407, Some(ProxyErrorType::HttpRequestDenied)));
                return;
            }
            Auth::Open | Auth::Token => {}
        }
        if self.model.flow(port).ip {
            let given = self
                .model
                .ip_refusals
                .iter()
                .any(|r| (r.status(), Some(r.proxy_error())) == seen);
            let expected = if self.pool.is_empty() {
                // No pool: the engine answers CONNECT-IP itself.
                seen == (501, Some(ProxyErrorType::HttpRequestDenied))
            } else {
                // A pool that ran out.
                seen == (503, Some(ProxyErrorType::ConnectionLimitReached))
            };
            assert!(
                given || expected,
                "IP tunnel refused with {seen:?}; the edge's host refused with {:?}",
                self.model.ip_refusals
            );
            return;
        }
        let flow = self.model.flow(port);
        let forbidden =
            target_ip(&flow.target.host).is_some_and(|ip| self.edge.check_egress(ip).is_err());
        let flow = self.model.flow(port);
        let given = flow
            .refusals
            .iter()
            .any(|r| (r.status(), Some(r.proxy_error())) == seen);
        assert!(
            given || (forbidden && seen == (403, Some(ProxyErrorType::DestinationIpProhibited))),
            "refused with {seen:?}; the edge's host refused with {:?}",
            flow.refusals
        );
    }

    /// An optimistic tunnel the edge refused after the host was told it is open
    /// (`CloseReason::Refused`): its status is one the edge gives for this flow.
    fn check_refused_status(&mut self, port: u16, status: u16) {
        assert!(self.setup.optimistic, "closed as refused without optimism");
        match self.setup.auth {
            Auth::WrongToken => return assert_eq!(status, 403),
            Auth::NoToken => return assert_eq!(status, 407),
            Auth::Open | Auth::Token => {}
        }
        let flow = self.model.flow(port);
        let forbidden =
            target_ip(&flow.target.host).is_some_and(|ip| self.edge.check_egress(ip).is_err());
        let flow = self.model.flow(port);
        let given = flow.refusals.iter().any(|r| r.status() == status);
        assert!(
            given || (forbidden && status == 403),
            "closed as refused with {status}; the edge's host refused with {:?}",
            flow.refusals
        );
    }

    // --- invariants -----------------------------------------------------------------------

    fn check(&mut self) {
        // Once per side and step: `stats` sums quiche's statistics of every connection.
        let client = self.client.stats();
        let edge = self.edge.stats();
        self.check_ip(&edge);
        self.check_counters(&client, &edge);
        assert_eq!(client.tunnels, self.model.client.len(), "client tunnels");
        assert_eq!(edge.tunnels, self.model.edge.len(), "edge tunnels");
        assert!(edge.connections <= self.max_connections, "edge connections");
        let mut unread = 0;
        for (port, flow) in &self.model.flows {
            let upload = flow.upload_sent.saturating_sub(flow.upload_received);
            assert!(
                upload <= self.stream_window,
                "port {port}: {upload} bytes sent and unread"
            );
            unread += upload;
        }
        for (id, tunnel) in &self.model.edge {
            if let Origin::Client(port) = tunnel.origin {
                let flow = &self.model.flows[&port];
                let download = tunnel.sent.saturating_sub(flow.download_received);
                assert!(
                    download <= self.stream_window,
                    "{id:?}: {download} bytes sent and unread"
                );
            }
        }
        assert!(
            unread <= self.connection_window * client.connections_total.max(1),
            "{unread} bytes unread across connections"
        );
    }

    /// While settling with nothing left to move: moves the virtual clock to the engines'
    /// next deadline when it is near (an acknowledgement that waits for an answer,
    /// `QuicConfig::ack_delay`; a paced packet) and fires it. Whether one was.
    ///
    /// A window update owed after a read waits with the acknowledgement, so a sender held
    /// by flow control moves on only when that deadline passes, as it would in real time.
    fn settle_timer(&mut self) -> bool {
        let next = [self.client.poll_timeout(), self.edge.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        // A deadline already passed was fired by the last pump; one that stays (quiche's
        // own, in real time) is no reason to go on.
        let ahead = |at: &Instant| *at > self.now && *at <= self.now + SETTLE_TIMER_HORIZON;
        let Some(at) = next.filter(ahead) else {
            return false;
        };
        self.now = at;
        self.timers();
        self.drain();
        true
    }

    /// The end of an input: settle, and when the run was lossless, check that everything
    /// sent arrived.
    fn finish(&mut self) {
        let mut settled = false;
        for _ in 0..SETTLE_ROUNDS {
            let read = self.read_all(Side::Client) + self.read_all(Side::Edge);
            let moved = self.pump(1);
            self.check();
            if read == 0 && !moved && !self.settle_timer() {
                settled = true;
                break;
            }
        }
        if !settled || !self.lossless || self.client_closed || self.edge_closed {
            return;
        }
        for (id, tunnel) in &self.model.edge {
            let Origin::Client(port) = tunnel.origin else {
                continue;
            };
            let twin = self.model.client.iter().find(|(_, t)| t.port == port);
            let Some((client_id, client)) = twin else {
                continue;
            };
            if !tunnel.accepted || tunnel.udp {
                continue;
            }
            assert!(
                client.open,
                "edge accepted {id:?} but {client_id:?} never opened"
            );
            let flow = &self.model.flows[&port];
            assert_eq!(
                flow.upload_received, flow.upload_sent,
                "{client_id:?}: bytes not delivered"
            );
            assert_eq!(client.received, tunnel.sent, "{id:?}: bytes not delivered");
            assert!(
                !client.finished || tunnel.fin,
                "{client_id:?}: FIN not delivered"
            );
            assert!(!tunnel.finished || client.fin, "{id:?}: FIN not delivered");
        }
        self.check_abort_after_fin();
    }

    /// After a lossless settling: a side that finished and then aborted still delivered
    /// every byte and its FIN to a peer that kept reading, and a tunnel whose direction the
    /// peer stopped closed once it read the peer's FIN.
    fn check_abort_after_fin(&self) {
        for (port, flow) in &self.model.flows {
            if flow.download_abort_after_fin && flow.opened && !flow.client_gave_up {
                assert!(
                    flow.download_fin_read && flow.download_fins.contains(&flow.download_received),
                    "port {port}: the edge finished at {:?} and aborted; the client read {} \
                     (FIN: {})",
                    flow.download_fins,
                    flow.download_received,
                    flow.download_fin_read
                );
            }
            if flow.upload_abort_after_fin && flow.edge_accepted && !flow.edge_gave_up {
                assert!(
                    flow.upload_fin_read && flow.upload_received == flow.upload_sent,
                    "port {port}: the client finished at {} and aborted; the edge read {} \
                     (FIN: {})",
                    flow.upload_sent,
                    flow.upload_received,
                    flow.upload_fin_read
                );
            }
        }
        for (id, tunnel) in &self.model.client {
            assert!(!tunnel.stopped, "client {id:?} stopped but never closed");
        }
        // The engine's client stops the edge's direction only after finishing its own
        // (an abort after the FIN), so such a tunnel must close once the FIN is read. A
        // raw peer may stop it and keep its own direction open: the tunnel rightly lives
        // on, reading, until that peer finishes or resets.
        for (id, tunnel) in &self.model.edge {
            assert!(
                !tunnel.stopped || tunnel.origin == Origin::Raw,
                "edge {id:?} stopped but never closed"
            );
        }
    }
}

/// QUIC settings of both endpoints.
fn quic_config(setup: Setup) -> QuicConfig {
    let mut quic = QuicConfig {
        congestion_control: match setup.congestion {
            0 => CongestionControl::Cubic,
            1 => CongestionControl::Bbr2,
            _ => CongestionControl::Reno,
        },
        enable_datagrams: !setup.no_datagrams,
        datagram_queue_len: 16,
        udp_idle_timeout: UDP_IDLE_TIMEOUT,
        udp_tunnel_queue_len: UDP_QUEUE[usize::from(setup.small_queue)],
        ..QuicConfig::default()
    };
    if setup.small_windows {
        quic.initial_max_data = 24 * 1024;
        quic.initial_max_stream_data_bidi_local = 6 * 1024;
        quic.initial_max_stream_data_bidi_remote = 6 * 1024;
        quic.max_connection_window = 64 * 1024;
        quic.max_stream_window = 16 * 1024;
        quic.initial_max_streams_bidi = 8;
    }
    quic
}

fn target_host(input: &HostInput) -> Option<Host> {
    Some(match input {
        HostInput::Listed(index) => {
            let name = NAMES[usize::from(*index) % NAMES.len()];
            Host::Name(Name::new(name).ok()?)
        }
        HostInput::V4(octets) => Host::Ip(IpAddr::from(*octets)),
        HostInput::V6(octets) => Host::Ip(IpAddr::from(*octets)),
        HostInput::Bytes(bytes) => {
            const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789.-_X";
            let text: String = bytes
                .iter()
                .map(|&b| char::from(CHARS[usize::from(b) % CHARS.len()]))
                .collect();
            Host::Name(Name::new(&text).ok()?)
        }
    })
}

/// The address a host means to the edge: an IP, or a name the edge reads as one.
fn target_ip(host: &Host) -> Option<IpAddr> {
    match host {
        Host::Ip(ip) => Some(*ip),
        Host::Name(name) => match classify_host(name.as_str()) {
            Ok(HostKind::Ip(ip)) => Some(ip),
            _ => None,
        },
    }
}

/// The edge reports what the client asked for; a name that is an address in disguise
/// (`localhost`) comes as that address.
fn same_target(asked: &TunnelTarget, seen: &TunnelTarget) -> bool {
    asked.port == seen.port
        && match (&asked.host, &seen.host) {
            (Host::Name(name), Host::Ip(ip)) => target_ip(&Host::Name(name.clone())) == Some(*ip),
            (asked, seen) => asked == seen,
        }
}

fn pick_field<'a>(field: &'a Field, vocabulary: &[&'a [u8]]) -> &'a [u8] {
    match field {
        Field::Listed(index) => vocabulary[usize::from(*index) % vocabulary.len()],
        Field::Bytes(bytes) => bytes,
    }
}

fn index_of(len: usize, pick: u8) -> Option<usize> {
    (len > 0).then(|| usize::from(pick) % len)
}

fn push(link: &mut VecDeque<Packet>, packet: Packet, lossless: &mut bool) {
    if link.len() < MAX_QUEUE {
        link.push_back(packet);
    } else {
        *lossless = false;
    }
}

/// The datagrams of a transmit, each checked against the configured size.
fn segments(buf: &[u8], transmit: veil_engine::Transmit, max: usize) -> Vec<&[u8]> {
    assert!(
        transmit.len > 0 && transmit.len <= buf.len(),
        "transmit of {}",
        transmit.len
    );
    let bytes = &buf[..transmit.len];
    let segments: Vec<&[u8]> = match transmit.segment_size {
        Some(size) => {
            assert!(size > 0, "segment size 0");
            bytes.chunks(size).collect()
        }
        None => vec![bytes],
    };
    for segment in &segments {
        assert!(
            segment.len() <= max,
            "datagram of {} > {max}",
            segment.len()
        );
    }
    segments
}

/// Where `expect_error` wants the call to fail: `UnknownTunnel` on a dead id, `live` on a
/// live one.
fn expect_error(result: Result<(), TunnelError>, alive: bool, live: TunnelError, what: &str) {
    let expected = if alive {
        live
    } else {
        TunnelError::UnknownTunnel
    };
    assert_eq!(result, Err(expected), "{what}");
}

/// A `TunnelClosed` reason fits the tunnel: `Finished` for a TCP tunnel only once both
/// FINs went their way (a UDP tunnel ends with either side's FIN), `IdleTimeout` only for
/// a UDP tunnel.
fn check_close(udp: bool, both_fins: bool, reason: CloseReason) {
    match reason {
        CloseReason::Finished => assert!(udp || both_fins, "Finished before both FINs"),
        CloseReason::IdleTimeout => assert!(udp, "a TCP tunnel timed out idle"),
        _ => {}
    }
}

/// The edge's CONNECT-IP pools for `Setup::pools`.
fn pools(which: u8) -> &'static [&'static str] {
    match which {
        0 => &[POOL_V4, POOL_V6],
        1 => &[POOL_V4],
        2 => &[POOL_V6],
        _ => &[],
    }
}

/// The addresses those pools may assign.
fn pool_addresses(which: u8) -> Vec<IpAddr> {
    let v4 = std::iter::once(IpAddr::from(ASSIGNABLE_V4));
    let v6 = ASSIGNABLE_V6.iter().map(|a| a.parse().expect("address"));
    match which {
        0 => v4.chain(v6).collect(),
        1 => v4.collect(),
        2 => v6.collect(),
        _ => Vec::new(),
    }
}

/// The edge's own address in a family's pool: the source of its ICMP errors.
fn gateway(v6: bool) -> IpAddr {
    if v6 {
        GATEWAY_V6.parse().expect("address")
    } else {
        IpAddr::from(GATEWAY_V4)
    }
}

/// One assigned address per family at most.
fn check_one_per_family(tunnel: TunnelId, addresses: &[IpAddr]) {
    let v4 = addresses.iter().filter(|a| a.is_ipv4()).count();
    assert!(
        v4 <= 1 && addresses.len() - v4 <= 1,
        "{tunnel:?} holds {addresses:?}: more than one address of a family"
    );
}

/// An address of a built packet: one of `assigned` (or of the pool, or a public one, when
/// there is none of the family), a listed one, or a literal.
fn resolve(input: &AddrInput, v6: bool, assigned: &[IpAddr], pool: &[IpAddr]) -> IpAddr {
    match input {
        AddrInput::Assigned(index) => {
            let of_family = |list: &[IpAddr]| -> Vec<IpAddr> {
                list.iter().copied().filter(|a| a.is_ipv6() == v6).collect()
            };
            let mut candidates = of_family(assigned);
            if candidates.is_empty() {
                candidates = of_family(pool);
            }
            match index_of(candidates.len(), *index) {
                Some(at) => candidates[at],
                None => resolve(&AddrInput::Listed(0), v6, &[], &[]),
            }
        }
        AddrInput::Listed(index) if v6 => V6_ADDRESSES[usize::from(*index) % V6_ADDRESSES.len()]
            .parse()
            .expect("a listed address"),
        AddrInput::Listed(index) => {
            IpAddr::from(V4_ADDRESSES[usize::from(*index) % V4_ADDRESSES.len()])
        }
        AddrInput::Literal(octets) if v6 => IpAddr::V6(Ipv6Addr::from(*octets)),
        AddrInput::Literal(octets) => {
            IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
        }
    }
}

/// The packet an input describes: bytes as they are, or a UDP datagram or an ICMP error
/// with the addresses it names (`sources` and `destinations` are what "assigned" means
/// for each), its hop limit set. `None` when it cannot be built (an ICMP error about a
/// packet that may not have one).
fn build_packet(
    spec: &PacketInput,
    sources: &[IpAddr],
    destinations: &[IpAddr],
    pool: &[IpAddr],
) -> Option<Vec<u8>> {
    let (icmp, v6, source, destination, hop_limit, payload, pad) = match spec {
        PacketInput::Raw { bytes, pad, .. } => {
            let mut packet = bytes.clone();
            packet.resize(packet.len() + usize::from(*pad % 2048), 0);
            return Some(packet);
        }
        PacketInput::Built {
            icmp,
            v6,
            source,
            destination,
            hop_limit,
            payload,
            pad,
        } => (*icmp, *v6, source, destination, *hop_limit, payload, *pad),
    };
    let source = resolve(source, v6, sources, pool);
    let destination = resolve(destination, v6, destinations, pool);
    let mut payload = payload.clone();
    payload.resize(payload.len() + usize::from(pad % 2048), 0);
    let mut out = vec![0; payload.len() + 128];
    let len = if icmp {
        // An error from `source` about a datagram `destination` sent it.
        let mut inner = vec![0; payload.len() + 64];
        let inner_len = veil_proto::ip::encode_udp(
            &mut inner,
            SocketAddr::new(destination, 53),
            SocketAddr::new(source, 5000),
            &payload,
        )
        .ok()?;
        let view = IpPacket::new_checked(&inner[..inner_len]).ok()?;
        match source {
            IpAddr::V4(from) => veil_proto::ip::encode_icmpv4_error(
                &mut out,
                from,
                &view,
                veil_proto::ip::Icmpv4Error::TimeExceeded,
            ),
            IpAddr::V6(from) => veil_proto::ip::encode_icmpv6_error(
                &mut out,
                from,
                &view,
                veil_proto::ip::Icmpv6Error::TimeExceeded,
            ),
        }
        .ok()?
    } else {
        veil_proto::ip::encode_udp(
            &mut out,
            SocketAddr::new(source, 5000),
            SocketAddr::new(destination, 53),
            &payload,
        )
        .ok()?
    };
    out.truncate(len);
    set_hop_limit(&mut out, hop_limit);
    Some(out)
}

/// Sets a packet's hop limit (IPv4: TTL, and the header checksum again).
fn set_hop_limit(packet: &mut [u8], hop_limit: u8) {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => {
            packet[8] = hop_limit;
            packet[10] = 0;
            packet[11] = 0;
            let header = usize::from(packet[0] & 0x0f) * 4;
            let mut sum: u32 = packet[..header.min(packet.len())]
                .chunks(2)
                .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            let checksum = !u16::try_from(sum).unwrap_or(0);
            packet[10..12].copy_from_slice(&checksum.to_be_bytes());
        }
        Some(6) if packet.len() >= 40 => packet[7] = hop_limit,
        _ => {}
    }
}

/// A capsule for the raw peer: its type and value. Types below 0xc0 are taken modulo 4
/// (DATAGRAM, `ADDRESS_ASSIGN`, `ADDRESS_REQUEST`, `ROUTE_ADVERTISEMENT`); the value is
/// the bytes, or (mode bit 0) built from them: a DATAGRAM with a UDP packet, address
/// entries, route ranges.
fn raw_capsule(kind: u8, mode: u8, bytes: &[u8]) -> (u64, Vec<u8>) {
    let capsule_type = if kind < 0xc0 { kind % 4 } else { kind };
    if mode & 1 == 0 {
        return (u64::from(capsule_type), bytes.to_vec());
    }
    let listed = |v6: bool, index: u8| resolve(&AddrInput::Listed(index), v6, &[], &[]);
    let octets = |addr: IpAddr| -> Vec<u8> {
        match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    };
    let mut value = Vec::new();
    match capsule_type {
        0 => {
            // Context ID 0, then a UDP packet from a listed address (10.89.0.2: 3 << 1).
            let first = bytes.first().copied().unwrap_or(6);
            let v6 = first & 1 == 1;
            let spec = PacketInput::Built {
                icmp: false,
                v6,
                source: AddrInput::Listed(first >> 1),
                destination: AddrInput::Listed(0),
                hop_limit: 64,
                payload: bytes.get(1..).unwrap_or_default().to_vec(),
                pad: 0,
            };
            value.push(0);
            value.extend(build_packet(&spec, &[], &[], &[]).unwrap_or_default());
        }
        1 | 2 => {
            // Entries of three bytes: Request ID, family and address, prefix length.
            for entry in bytes.chunks(3) {
                let [id, which, len] = [0, 1, 2].map(|i| entry.get(i).copied().unwrap_or(0));
                let v6 = which & 1 == 1;
                raw::push_varint(&mut value, u64::from(id));
                value.push(if v6 { 6 } else { 4 });
                value.extend(octets(listed(v6, which >> 1)));
                value.push(len % if v6 { 129 } else { 33 });
            }
        }
        3 => {
            // Ranges of four bytes: family and start, end, protocol.
            for range in bytes.chunks(4) {
                let [which, start, end, protocol] =
                    [0, 1, 2, 3].map(|i| range.get(i).copied().unwrap_or(0));
                let v6 = which & 1 == 1;
                value.push(if v6 { 6 } else { 4 });
                value.extend(octets(listed(v6, which >> 1 | start & 0x80)));
                value.extend(octets(listed(v6, end)));
                value.push(protocol);
            }
        }
        _ => value.extend_from_slice(bytes),
    }
    (u64::from(capsule_type), value)
}

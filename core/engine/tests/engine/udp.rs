//! CONNECT-UDP (RFC 9298) through the engine: datagrams both ways in QUIC DATAGRAM frames
//! and in capsules, many tunnels apart, refusals, malformed input from a raw client,
//! drops and their counters, the idle timeout on a virtual clock.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use veil_engine::{
    CloseReason, Config, EdgeConfig, Endpoint, Event, Host as TargetHost, ProxyErrorType,
    QuicConfig, Refusal, RefusedReason, Token, TunnelError, TunnelId, TunnelKind, TunnelTarget,
};

use crate::harness::{Host, Net};
use crate::hosts::fill;
use crate::raw::RawClient;
use crate::{BUDGET, client_config, target};

/// `H3_DATAGRAM_ERROR` (RFC 9297 §5.2).
const H3_DATAGRAM_ERROR: u64 = 0x33;
/// `H3_MESSAGE_ERROR` (RFC 9114 §8.1).
const H3_MESSAGE_ERROR: u64 = 0x10e;

/// An edge with `tokens` and QUIC settings `quic`.
fn edge_with(tokens: &[&str], quic: QuicConfig) -> Endpoint {
    let edge = EdgeConfig {
        tokens: tokens
            .iter()
            .enumerate()
            .map(|(i, t)| Token::parse(t, i + 1).expect("token"))
            .collect(),
        ..EdgeConfig::default()
    };
    let config = Config {
        role: veil_engine::RoleConfig::Edge(edge),
        quic,
    };
    Endpoint::new(config, Instant::now()).expect("edge")
}

/// A client of `edge` with QUIC settings `quic`, sending `token`.
fn client_with(edge: &Endpoint, token: Option<&str>, quic: QuicConfig) -> Endpoint {
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let config = Config {
        role: veil_engine::RoleConfig::Client(client_config(veil_engine::Verify::Pin(pin), token)),
        quic,
    };
    Endpoint::new(config, Instant::now()).expect("client")
}

/// A pair with default settings except those `client` and `edge` change.
fn udp_pair(client: impl FnOnce(&mut QuicConfig), edge: impl FnOnce(&mut QuicConfig)) -> Net {
    let (mut client_quic, mut edge_quic) = (QuicConfig::default(), QuicConfig::default());
    client(&mut client_quic);
    edge(&mut edge_quic);
    let edge = edge_with(&[], edge_quic);
    let client = client_with(&edge, None, client_quic);
    Net::new(client, edge)
}

/// The payload number `nth` of tunnel `tunnel`: tagged, of varied length (0 included).
fn payload(tunnel: usize, nth: usize, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    fill((tunnel * 1000 + nth) as u64, 0, &mut bytes);
    let tag = format!("{tunnel}/{nth}:");
    let n = tag.len().min(len);
    bytes[..n].copy_from_slice(&tag.as_bytes()[..n]);
    bytes
}

/// The edge's host: accepts UDP tunnels (refuses `refuse-…` names, holds `hold.test`
/// unread while `holding`), records every payload and echoes it back.
#[derive(Default)]
struct UdpEdge {
    requests: Vec<(TunnelTarget, veil_engine::ClientIdentity)>,
    received: HashMap<TunnelId, Vec<Vec<u8>>>,
    closed: Vec<(TunnelId, CloseReason)>,
    readable: HashSet<TunnelId>,
    held: HashSet<TunnelId>,
    holding: bool,
    echo_failures: u64,
    /// The endpoint's counters at the last poll.
    stats: veil_engine::EndpointStats,
    buf: Vec<u8>,
}

impl UdpEdge {
    fn handle(&mut self, endpoint: &mut Endpoint, event: Event) {
        match event {
            Event::TunnelRequest {
                tunnel,
                kind: TunnelKind::Udp,
                target,
                client,
            } => {
                assert_eq!(endpoint.tunnel_kind(tunnel), Some(TunnelKind::Udp));
                let name = match &target.host {
                    TargetHost::Name(name) => name.as_str().to_owned(),
                    TargetHost::Ip(_) => String::new(),
                };
                self.requests.push((target, client));
                match name.as_str() {
                    "refuse-dns.test" => endpoint
                        .refuse_tunnel(tunnel, Refusal::DnsError)
                        .expect("refuse"),
                    "hold.test" => {
                        self.held.insert(tunnel);
                        endpoint.accept_tunnel(tunnel).expect("accept");
                    }
                    _ => endpoint.accept_tunnel(tunnel).expect("accept"),
                }
            }
            Event::TunnelRequest { tunnel, .. } => endpoint.accept_tunnel(tunnel).expect("accept"),
            Event::TunnelDatagrams { tunnel } => {
                self.readable.insert(tunnel);
            }
            Event::TunnelClosed { tunnel, reason } => self.closed.push((tunnel, reason)),
            _ => {}
        }
        self.read(endpoint);
    }

    /// Reads every readable tunnel (but held ones while holding) and echoes.
    fn read(&mut self, endpoint: &mut Endpoint) {
        self.buf.resize(65_527, 0);
        let ready: Vec<TunnelId> = self
            .readable
            .iter()
            .copied()
            .filter(|t| !(self.holding && self.held.contains(t)))
            .collect();
        for tunnel in ready {
            self.readable.remove(&tunnel);
            while let Ok(Some(len)) = endpoint.tunnel_recv_datagram(tunnel, &mut self.buf) {
                let bytes = self.buf[..len].to_vec();
                if !endpoint
                    .tunnel_send_datagram(tunnel, &bytes)
                    .unwrap_or(false)
                {
                    self.echo_failures += 1;
                }
                self.received.entry(tunnel).or_default().push(bytes);
            }
        }
    }
}

impl Host for UdpEdge {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        self.handle(endpoint, event);
    }

    fn poll(&mut self, endpoint: &mut Endpoint, _now: Instant) -> bool {
        self.stats = endpoint.stats();
        let before = self.readable.len();
        self.read(endpoint);
        before != self.readable.len()
    }
}

/// A client that opens UDP tunnels to `targets`, sends each the payloads `sizes` describe
/// once it opens, and collects what comes back.
struct UdpClient {
    targets: Vec<TunnelTarget>,
    sizes: Vec<usize>,
    started: bool,
    tunnels: HashMap<TunnelId, usize>,
    opened: HashSet<TunnelId>,
    sent: HashMap<TunnelId, Vec<Vec<u8>>>,
    dropped_on_send: u64,
    received: HashMap<TunnelId, Vec<Vec<u8>>>,
    refused: Vec<(TunnelId, RefusedReason)>,
    closed: Vec<(TunnelId, CloseReason)>,
    buf: Vec<u8>,
}

impl UdpClient {
    fn new(targets: Vec<TunnelTarget>, sizes: &[usize]) -> Self {
        Self {
            targets,
            sizes: sizes.to_vec(),
            started: false,
            tunnels: HashMap::new(),
            opened: HashSet::new(),
            sent: HashMap::new(),
            dropped_on_send: 0,
            received: HashMap::new(),
            refused: Vec::new(),
            closed: Vec::new(),
            buf: vec![0; 65_527],
        }
    }

    fn echoed_all(&self) -> bool {
        self.tunnels.len() == self.targets.len()
            && self.tunnels.keys().all(|id| {
                let sent = self.sent.get(id).map_or(0, Vec::len);
                sent > 0 && self.received.get(id).map_or(0, Vec::len) == sent
            })
    }

    fn answered(&self) -> bool {
        self.started && self.opened.len() + self.refused.len() == self.targets.len()
    }
}

impl Host for UdpClient {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelOpened { tunnel } => {
                assert_eq!(endpoint.tunnel_kind(tunnel), Some(TunnelKind::Udp));
                self.opened.insert(tunnel);
                let index = self.tunnels[&tunnel];
                for (nth, &size) in self.sizes.iter().enumerate() {
                    let bytes = payload(index, nth, size);
                    if endpoint.tunnel_send_datagram(tunnel, &bytes).expect("open") {
                        self.sent.entry(tunnel).or_default().push(bytes);
                    } else {
                        self.dropped_on_send += 1;
                    }
                }
            }
            Event::TunnelDatagrams { tunnel } => {
                while let Some(len) = endpoint
                    .tunnel_recv_datagram(tunnel, &mut self.buf)
                    .expect("receive")
                {
                    self.received
                        .entry(tunnel)
                        .or_default()
                        .push(self.buf[..len].to_vec());
                }
            }
            Event::TunnelRefused { tunnel, reason } => self.refused.push((tunnel, reason)),
            Event::TunnelClosed { tunnel, reason } => self.closed.push((tunnel, reason)),
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        if self.started {
            return false;
        }
        self.started = true;
        for (index, target) in self.targets.iter().enumerate() {
            let id = endpoint.open_udp_tunnel(now, target).expect("open");
            assert_eq!(
                endpoint.tunnel_send_datagram(id, b"too early"),
                Err(TunnelError::InvalidState)
            );
            self.tunnels.insert(id, index);
        }
        true
    }

    fn done(&self) -> bool {
        self.echoed_all()
    }
}

fn sorted(mut list: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    list.sort();
    list
}

/// Runs `client` against `edge` until every datagram came back, and checks that each
/// tunnel got exactly its own payloads back, and that the edge saw exactly them.
fn echo(net: &mut Net, client: &mut UdpClient, edge: &mut UdpEdge) {
    assert!(
        net.run(client, edge, BUDGET),
        "not every datagram came back"
    );
    assert!(client.refused.is_empty(), "{:?}", client.refused);
    for (id, sent) in &client.sent {
        assert_eq!(
            sorted(client.received[id].clone()),
            sorted(sent.clone()),
            "tunnel {id:?} got other payloads back"
        );
    }
    let mut at_edge: Vec<Vec<u8>> = edge.received.values().flatten().cloned().collect();
    let mut from_client: Vec<Vec<u8>> = client.sent.values().flatten().cloned().collect();
    at_edge.sort();
    from_client.sort();
    assert_eq!(at_edge, from_client);
    assert_eq!(edge.echo_failures, 0);
}

#[test]
fn datagrams_cross_both_ways_in_quic_datagram_frames() {
    let mut net = udp_pair(|_| {}, |_| {});
    let mut client = UdpClient::new(vec![target("echo.test", 53)], &[0, 1, 64, 1000, 1200]);
    let mut edge = UdpEdge::default();
    echo(&mut net, &mut client, &mut edge);
    assert_eq!(edge.requests.len(), 1);
    assert_eq!(edge.requests[0].0.to_string(), "echo.test:53");

    let (client_stats, edge_stats) = (net.client.stats(), net.edge.stats());
    for stats in [client_stats, edge_stats] {
        assert_eq!(stats.udp_datagrams_sent, 5);
        assert_eq!(stats.udp_datagrams_received, 5);
        assert_eq!(stats.udp_capsule_datagrams, 0, "frames, not capsules");
        assert_eq!(stats.udp_dropped_oversize + stats.udp_dropped_queue_full, 0);
    }

    // The largest payload that fits goes; one byte more is dropped and counted.
    let id = *client.tunnels.keys().next().expect("tunnel");
    let max = net.client.tunnel_max_datagram_payload(id).expect("open");
    assert!((1200..1350).contains(&max), "{max}");
    assert_eq!(net.client.tunnel_send_datagram(id, &vec![1; max]), Ok(true));
    assert_eq!(
        net.client.tunnel_send_datagram(id, &vec![1; max + 1]),
        Ok(false)
    );
    assert_eq!(net.client.stats().udp_dropped_oversize, 1);

    // A UDP tunnel is no byte stream, and the buffer must fit.
    assert_eq!(
        net.client.tunnel_send(id, b"x"),
        Err(TunnelError::NotStream)
    );
    assert_eq!(
        net.client.tunnel_recv(id, &mut [0; 8]),
        Err(TunnelError::NotStream)
    );
    let mut watcher = Watcher::default();
    assert!(net.run_until(&mut watcher, &mut edge, BUDGET, |w, _| {
        w.datagrams.contains(&id)
    }));
    let mut small = [0; 16];
    assert_eq!(
        net.client.tunnel_recv_datagram(id, &mut small),
        Err(TunnelError::BufferTooSmall { needed: max })
    );
    let mut big = vec![0; max];
    assert_eq!(net.client.tunnel_recv_datagram(id, &mut big), Ok(Some(max)));
    assert_eq!(big, vec![1; max]);
    assert_eq!(net.client.tunnel_recv_datagram(id, &mut big), Ok(None));
}

/// A client-side host that records events and reads nothing.
#[derive(Default)]
struct Watcher {
    datagrams: HashSet<TunnelId>,
    closed: Vec<(TunnelId, CloseReason)>,
}

impl Host for Watcher {
    fn on_event(&mut self, _endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelDatagrams { tunnel } => {
                self.datagrams.insert(tunnel);
            }
            Event::TunnelClosed { tunnel, reason } => self.closed.push((tunnel, reason)),
            _ => {}
        }
    }
}

#[test]
fn many_udp_tunnels_on_one_connection_keep_their_datagrams_apart() {
    let mut net = udp_pair(|_| {}, |_| {});
    let targets = (0..24)
        .map(|i| target(&format!("t{i}.test"), 1000 + i))
        .collect();
    let mut client = UdpClient::new(targets, &[5, 50, 500, 0, 900, 17]);
    let mut edge = UdpEdge::default();
    let started = Instant::now();
    echo(&mut net, &mut client, &mut edge);
    eprintln!(
        "24 UDP tunnels x 6 datagrams echoed in {:?} (connection set-up included)",
        started.elapsed()
    );
    assert_eq!(net.client.stats().connections_total, 1);
    assert_eq!(edge.received.len(), 24);
    // Each edge tunnel received exactly one client tunnel's payloads, all tagged alike.
    for payloads in edge.received.values() {
        let tags: HashSet<&[u8]> = payloads
            .iter()
            .filter(|p| p.len() >= 5)
            .map(|p| p.split(|&b| b == b'/').next().expect("tag"))
            .collect();
        assert_eq!(tags.len(), 1, "mixed tunnels");
    }
}

#[test]
fn capsules_carry_the_datagrams_when_the_client_disables_h3_datagrams() {
    let mut net = udp_pair(|quic| quic.enable_datagrams = false, |_| {});
    capsule_round_trip(&mut net);
}

#[test]
fn capsules_carry_the_datagrams_when_the_edge_disables_h3_datagrams() {
    let mut net = udp_pair(|_| {}, |quic| quic.enable_datagrams = false);
    capsule_round_trip(&mut net);
}

/// A burst far larger than the congestion window, in capsules: every payload comes back.
/// Capsules ride a reliable stream, so the engine queues what the stream cannot take at
/// once instead of dropping it (it used to keep one capsule in waiting and drop the rest).
#[test]
fn a_burst_in_capsules_arrives_whole_both_ways() {
    let mut net = udp_pair(|quic| quic.enable_datagrams = false, |_| {});
    let mut client = UdpClient::new(vec![target("echo.test", 53)], &[1200; 150]);
    let mut edge = UdpEdge::default();
    echo(&mut net, &mut client, &mut edge);
    assert_eq!(client.dropped_on_send, 0);
    let id = *client.tunnels.keys().next().expect("tunnel");
    assert_eq!(client.received[&id].len(), 150);
    assert_eq!(net.client.stats().udp_dropped_queue_full, 0);
    assert_eq!(net.edge.stats().udp_dropped_queue_full, 0);
    assert_eq!(net.edge.stats().udp_capsule_datagrams, 300);
}

fn capsule_round_trip(net: &mut Net) {
    let mut client = UdpClient::new(
        vec![target("echo.test", 53), target("echo2.test", 53)],
        &[0, 3, 1400, 3000],
    );
    let mut edge = UdpEdge::default();
    echo(net, &mut client, &mut edge);
    let (client_stats, edge_stats) = (net.client.stats(), net.edge.stats());
    for stats in [client_stats, edge_stats] {
        assert_eq!(stats.udp_datagrams_sent, 8);
        assert_eq!(stats.udp_datagrams_received, 8);
        assert_eq!(
            stats.udp_capsule_datagrams, 16,
            "every one sent and received in a capsule"
        );
    }
    // Capsules are not bound by the path MTU: up to 65527 bytes go, even beyond the
    // congestion window, and come back whole.
    let id = *client.tunnels.keys().next().expect("tunnel");
    assert_eq!(net.client.tunnel_max_datagram_payload(id), Some(65_527));
    let big = payload(0, 99, 65_527);
    assert_eq!(net.client.tunnel_send_datagram(id, &big), Ok(true));
    // While that capsule waits for room, the next ones wait behind it, up to the
    // backlog's bound (256 KiB); beyond it a payload is dropped, as a congested path would.
    let mut queued = 1;
    while net.client.tunnel_send_datagram(id, &big) == Ok(true) {
        queued += 1;
        assert!(queued < 10, "the backlog has no bound");
    }
    assert!(queued >= 3, "only {queued} capsules waited");
    assert_eq!(net.client.stats().udp_dropped_queue_full, 1);
    let mut watcher = Watcher::default();
    let mut out = vec![0; 65_527];
    let mut back = 0;
    while back < queued {
        watcher.datagrams.clear();
        assert!(
            net.run_until(&mut watcher, &mut edge, BUDGET, |w, _| {
                w.datagrams.contains(&id)
            }),
            "{back} of {queued} capsules came back"
        );
        while let Ok(Some(len)) = net.client.tunnel_recv_datagram(id, &mut out) {
            assert_eq!(len, 65_527);
            assert_eq!(out, big);
            back += 1;
        }
    }
    assert_eq!(
        net.client.tunnel_send_datagram(id, &vec![0; 65_528]),
        Ok(false)
    );
    assert_eq!(net.client.stats().udp_dropped_oversize, 1);
}

#[test]
fn refusals_reach_the_client_with_status_and_proxy_status() {
    let mut net = udp_pair(|_| {}, |_| {});
    let ip = |text: &str| TunnelTarget::new(text.parse::<std::net::IpAddr>().expect("ip"), 53);
    let targets = vec![
        target("refuse-dns.test", 53),
        ip("127.0.0.1"),
        ip("::1"),
        target("localhost", 53),
        ip("169.254.169.254"),
    ];
    let mut client = UdpClient::new(targets, &[]);
    let mut edge = UdpEdge::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.answered()));
    assert!(client.opened.is_empty());
    let status_of = |index: usize| {
        let id = client
            .tunnels
            .iter()
            .find(|(_, i)| **i == index)
            .map(|(id, _)| *id)
            .expect("tunnel");
        client
            .refused
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, r)| r.clone())
            .expect("refused")
    };
    let expect = |status: u16, error: ProxyErrorType| RefusedReason::Status {
        status,
        proxy_error: Some(error),
        proxy_status: Some(format!("veil;error={}", error.token())),
    };
    assert_eq!(status_of(0), expect(502, ProxyErrorType::DnsError));
    for index in 1..5 {
        assert_eq!(
            status_of(index),
            expect(403, ProxyErrorType::DestinationIpProhibited),
            "target {index}"
        );
    }
    // The host only heard of the name it refused itself.
    assert_eq!(edge.requests.len(), 1);
    assert_eq!(net.edge.stats().tunnels_refused, 5);
}

#[test]
fn a_missing_token_is_407_and_a_wrong_one_403() {
    for (token, status) in [(None, 407), (Some("wrong"), 403)] {
        let edge = edge_with(&["right"], QuicConfig::default());
        let client = client_with(&edge, token, QuicConfig::default());
        let mut net = Net::new(client, edge);
        let mut client = UdpClient::new(vec![target("echo.test", 53)], &[]);
        let mut edge = UdpEdge::default();
        assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.answered()));
        let RefusedReason::Status { status: got, .. } = client.refused[0].1 else {
            panic!("{:?}", client.refused);
        };
        assert_eq!(got, status);
        assert!(edge.requests.is_empty());
        assert_eq!(net.edge.stats().auth_failures, 1);
    }
    let edge = edge_with(&["right"], QuicConfig::default());
    let client = client_with(&edge, Some("right"), QuicConfig::default());
    let mut net = Net::new(client, edge);
    let mut client = UdpClient::new(vec![target("echo.test", 53)], &[10]);
    let mut edge = UdpEdge::default();
    echo(&mut net, &mut client, &mut edge);
    assert_eq!(edge.requests[0].1.token_index, Some(0));
}

fn udp_request(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "CONNECT".to_owned()),
        (":protocol", "connect-udp".to_owned()),
        (":scheme", "https".to_owned()),
        (":authority", "localhost:4433".to_owned()),
        (":path", path.to_owned()),
        ("capsule-protocol", "?1".to_owned()),
    ]
}

fn as_refs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[test]
fn malformed_udp_requests_get_400_and_unknown_protocols_501() {
    let mut edge = crate::edge(&[]);
    let mut raw = RawClient::new(false);
    for path in [
        "/.well-known/masque/udp/example.com/0/",
        "/.well-known/masque/udp/example.com/65536/",
        "/.well-known/masque/udp/example.com/0053/",
        "/.well-known/masque/udp/example.com/-1/",
        "/.well-known/masque/udp/example.com//",
        "/.well-known/masque/udp//53/",
        "/.well-known/masque/udp/2001:db8::1/53/",
        "/.well-known/masque/udp/exa%zzmple.com/53/",
        "/.well-known/masque/udp/example.com/53",
        "/somewhere/else/",
    ] {
        let answer = raw.request(&mut edge, &as_refs(&udp_request(path)));
        assert_eq!(
            answer,
            (
                "400".to_owned(),
                Some("veil;error=http_request_error".to_owned())
            ),
            "{path}"
        );
    }
    let good = "/.well-known/masque/udp/example.com/53/";
    for missing in [":scheme", ":path", ":authority"] {
        let mut headers = udp_request(good);
        headers.retain(|(name, _)| *name != missing);
        let answer = raw.request(&mut edge, &as_refs(&headers));
        assert_eq!(answer.0, "400", "without {missing}");
    }
    let mut headers = udp_request(good);
    headers[1].1 = "websocket".to_owned();
    assert_eq!(raw.request(&mut edge, &as_refs(&headers)).0, "501");
    assert!(raw.quic.is_established() && !raw.quic.is_closed());
    assert_eq!(edge.stats().tunnels_total, 0);
}

/// A raw client (with datagrams or not) with one UDP tunnel accepted by `host`.
fn raw_tunnel(edge: &mut Endpoint, host: &mut UdpEdge, datagrams: bool) -> (RawClient, u64) {
    let mut raw = RawClient::new(datagrams);
    let headers = udp_request("/.well-known/masque/udp/echo.test/53/");
    let (stream, status, _) =
        raw.send_request(edge, &mut |e, ev| host.handle(e, ev), &as_refs(&headers));
    assert_eq!(status, "200");
    (raw, stream)
}

#[test]
fn unknown_contexts_streams_and_malformed_datagrams_are_dropped_and_counted() {
    let mut edge = crate::edge(&[]);
    let mut host = UdpEdge::default();
    let (mut raw, stream) = raw_tunnel(&mut edge, &mut host, true);
    let quarter = u8::try_from(stream / 4).expect("small stream id");
    for frame in [
        vec![quarter, 0x01, b'x'],       // Context ID 1: nobody registered it
        vec![quarter, 0x00, b'y', b'z'], // a UDP payload
        vec![0x3f, 0x00, b'q'],          // stream 252: never opened
        vec![quarter],                   // no Context ID at all
    ] {
        raw.quic.dgram_send(&frame).expect("datagram");
    }
    until_received(&mut raw, &mut edge, &mut host, 1);
    let stats = edge.stats();
    assert_eq!(stats.udp_dropped_unknown_context, 1);
    assert_eq!(stats.udp_dropped_unknown_tunnel, 1);
    assert_eq!(stats.udp_dropped_malformed, 1);
    assert_eq!(stats.udp_datagrams_received, 1);
    assert_eq!(
        host.received
            .values()
            .flatten()
            .cloned()
            .collect::<Vec<_>>(),
        [b"yz".to_vec()]
    );
    // The echo came back in a QUIC DATAGRAM frame, prefix and all.
    let echoed = raw.drive(&mut edge, &mut |e, ev| host.handle(e, ev), |raw| {
        let mut buf = [0; 64];
        raw.quic
            .dgram_recv(&mut buf)
            .ok()
            .map(|len| buf[..len].to_vec())
    });
    assert_eq!(echoed, [quarter, 0x00, b'y', b'z']);

    // An empty frame has no Quarter Stream ID: a connection error.
    raw.quic.dgram_send(&[]).expect("datagram");
    let code = raw.drive(&mut edge, &mut |_, _| {}, |raw| {
        raw.quic.peer_error().map(|error| error.error_code)
    });
    assert_eq!(code, H3_DATAGRAM_ERROR);
}

#[test]
fn datagrams_before_settings_and_request_are_dropped_and_the_connection_goes_on() {
    let mut edge = crate::edge(&[]);
    let mut host = UdpEdge::default();
    let mut raw = RawClient::new(true);
    raw.defer_h3 = true;
    raw.drive(&mut edge, &mut |_, _| {}, |raw| {
        raw.quic.is_established().then_some(())
    });
    // Stream 0 does not exist yet, and the edge has no SETTINGS from this client.
    //# RFC 9297 §2.1: "the receiver SHALL either drop that datagram silently or buffer it
    //# temporarily (on the order of a round trip) while awaiting the creation of the
    //# corresponding stream."
    raw.quic
        .dgram_send(&[0x00, 0x00, b'e', b'a', b'r', b'l', b'y'])
        .expect("datagram");
    let start = Instant::now();
    while edge.stats().udp_dropped_unknown_tunnel == 0 {
        assert!(start.elapsed() < BUDGET, "the early datagram never arrived");
        raw.drive(&mut edge, &mut |_, _| {}, |_| Some(()));
    }
    assert!(!raw.quic.is_closed());
    // Then HTTP/3 starts, the request comes, and datagrams flow on the same stream ID.
    raw.defer_h3 = false;
    let headers = udp_request("/.well-known/masque/udp/echo.test/53/");
    let (stream, status, _) = raw.send_request(
        &mut edge,
        &mut |e, ev| host.handle(e, ev),
        &as_refs(&headers),
    );
    assert_eq!((stream, status.as_str()), (0, "200"));
    raw.quic
        .dgram_send(&[0x00, 0x00, b'o', b'k'])
        .expect("datagram");
    until_received(&mut raw, &mut edge, &mut host, 1);
    assert_eq!(
        host.received
            .values()
            .flatten()
            .cloned()
            .collect::<Vec<_>>(),
        [b"ok".to_vec()]
    );
    assert_eq!(edge.stats().udp_dropped_unknown_tunnel, 1);
}

#[test]
fn frames_quiche_drops_from_its_full_receive_queue_are_counted() {
    let quic = QuicConfig {
        datagram_queue_len: 4,
        ..QuicConfig::default()
    };
    let mut edge = edge_with(&[], quic);
    let mut host = UdpEdge::default();
    let (mut raw, stream) = raw_tunnel(&mut edge, &mut host, true);
    let quarter = u8::try_from(stream / 4).expect("small stream id");
    // Twenty frames in one flight: quiche keeps the last four of the batch.
    for n in 0..20u8 {
        raw.quic.dgram_send(&[quarter, 0x00, n]).expect("datagram");
    }
    until_received(&mut raw, &mut edge, &mut host, 4);
    let stats = edge.stats();
    assert_eq!(stats.udp_datagrams_received, 4);
    assert_eq!(stats.udp_dropped_queue_full, 16);
    assert_eq!(
        host.received
            .values()
            .flatten()
            .cloned()
            .collect::<Vec<_>>(),
        [vec![16], vec![17], vec![18], vec![19]]
    );
}

#[test]
fn a_datagram_on_a_tcp_tunnel_aborts_its_stream() {
    let mut edge = crate::edge(&[]);
    let mut host = UdpEdge::default();
    let mut raw = RawClient::new(true);
    let (stream, status, _) = raw.send_request(
        &mut edge,
        &mut |e, ev| host.handle(e, ev),
        &[(":method", "CONNECT"), (":authority", "echo.test:443")],
    );
    assert_eq!(status, "200");
    let quarter = u8::try_from(stream / 4).expect("small stream id");
    raw.quic.dgram_send(&[quarter, 0x00, 1]).expect("datagram");
    let code = raw.wait_reset(&mut edge, &mut |e, ev| host.handle(e, ev), stream);
    assert_eq!(code, H3_DATAGRAM_ERROR);
    assert_eq!(host.closed.len(), 1);
    assert_eq!(
        host.closed[0].1,
        CloseReason::Reset {
            code: H3_DATAGRAM_ERROR
        }
    );
}

/// Exchanges with the edge until its host has received `count` payloads.
fn until_received(raw: &mut RawClient, edge: &mut Endpoint, host: &mut UdpEdge, count: usize) {
    let start = Instant::now();
    while host.received.values().flatten().count() < count {
        assert!(start.elapsed() < BUDGET, "only {:?}", host.received);
        // One round: `until` is satisfied at once.
        raw.drive(edge, &mut |e, ev| host.handle(e, ev), |_| Some(()));
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Sends `bytes` as the body of `stream`, all of it.
fn send_all(
    raw: &mut RawClient,
    edge: &mut Endpoint,
    host: &mut UdpEdge,
    stream: u64,
    bytes: &[u8],
    fin: bool,
) {
    let mut sent = 0;
    raw.drive(edge, &mut |e, ev| host.handle(e, ev), |raw| {
        let h3 = raw.h3.as_mut()?;
        if sent < bytes.len() || (fin && bytes.is_empty() && sent == 0) {
            let last = fin;
            match h3.send_body(&mut raw.quic, stream, &bytes[sent..], last) {
                Ok(n) => sent += n,
                Err(quiche::h3::Error::Done) => {}
                Err(error) => panic!("send_body: {error}"),
            }
            if bytes.is_empty() {
                sent = 1;
            }
        }
        (sent >= bytes.len().max(1)).then_some(())
    });
}

#[test]
fn capsule_streams_from_a_raw_client_deliver_skip_and_abort() {
    // Good capsules (with an unknown type in between) arrive as datagrams.
    let mut edge = crate::edge(&[]);
    let mut host = UdpEdge::default();
    let (mut raw, stream) = raw_tunnel(&mut edge, &mut host, false);
    let mut body = vec![0x00, 0x04, 0x00, b'a', b'b', b'c'];
    body.extend([0x21, 0x03, 9, 9, 9]); // unknown capsule type 0x21
    body.extend([0x00, 0x02, 0x07, b'!']); // Context ID 7: dropped
    body.extend([0x00, 0x01, 0x00]); // an empty UDP payload
    send_all(&mut raw, &mut edge, &mut host, stream, &body, false);
    until_received(&mut raw, &mut edge, &mut host, 2);
    assert_eq!(
        host.received
            .values()
            .flatten()
            .cloned()
            .collect::<Vec<_>>(),
        [b"abc".to_vec(), Vec::new()]
    );
    let stats = edge.stats();
    assert_eq!(
        stats.udp_capsule_datagrams,
        2 + 2,
        "two received, two echoed"
    );
    assert_eq!(stats.udp_dropped_unknown_context, 1);

    // A UDP payload over 65527 bytes aborts the stream with H3_DATAGRAM_ERROR.
    let mut oversize = vec![0x00, 0x80, 0x00, 0xff, 0xf9, 0x00];
    oversize.extend(vec![0; 65_528]);
    send_all(&mut raw, &mut edge, &mut host, stream, &oversize, false);
    let code = raw.wait_reset(&mut edge, &mut |e, ev| host.handle(e, ev), stream);
    assert_eq!(code, H3_DATAGRAM_ERROR);
    assert!(host.closed.contains(&(
        host.closed[0].0,
        CloseReason::Reset {
            code: H3_DATAGRAM_ERROR
        }
    )));

    // A capsule cut short by the FIN aborts with H3_MESSAGE_ERROR.
    let mut edge = crate::edge(&[]);
    let mut host = UdpEdge::default();
    let (mut raw, stream) = raw_tunnel(&mut edge, &mut host, false);
    send_all(
        &mut raw,
        &mut edge,
        &mut host,
        stream,
        &[0x00, 0x05, 0x00, b'c', b'u'],
        true,
    );
    let code = raw.wait_reset(&mut edge, &mut |e, ev| host.handle(e, ev), stream);
    assert_eq!(code, H3_MESSAGE_ERROR);
    assert_eq!(
        host.closed,
        [(
            host.closed[0].0,
            CloseReason::Reset {
                code: H3_MESSAGE_ERROR
            }
        )]
    );
}

#[test]
fn a_full_receive_queue_drops_and_counts() {
    let mut net = udp_pair(|_| {}, |quic| quic.udp_tunnel_queue_len = 4);
    let mut client = UdpClient::new(vec![target("hold.test", 53)], &[10; 20]);
    let mut edge = UdpEdge {
        holding: true,
        ..UdpEdge::default()
    };
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |_, e| {
        e.stats.udp_datagrams_received + e.stats.udp_dropped_queue_full == 20
    }));
    assert_eq!(client.sent.values().flatten().count(), 20);
    let stats = net.edge.stats();
    assert_eq!(stats.udp_datagrams_received, 4);
    assert_eq!(stats.udp_dropped_queue_full, 16);
    // Once read, the four come out; the queue takes more again.
    edge.holding = false;
    assert!(
        net.run_until(&mut Watcher::default(), &mut edge, BUDGET, |_, e| {
            e.received.values().flatten().count() == 4
        })
    );
}

/// Opens one UDP tunnel and echoes one datagram; returns the client's and the edge's ids.
fn opened(net: &mut Net, edge: &mut UdpEdge) -> (TunnelId, TunnelId) {
    let mut client = UdpClient::new(vec![target("echo.test", 53)], &[8]);
    echo(net, &mut client, edge);
    let client_id = *client.tunnels.keys().next().expect("tunnel");
    let edge_id = *edge.received.keys().next().expect("tunnel");
    (client_id, edge_id)
}

/// The events of `endpoint` now.
fn events(endpoint: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| endpoint.poll_event()).collect()
}

#[test]
fn idle_tunnels_close_on_both_sides_on_a_virtual_clock() {
    let mut net = udp_pair(|_| {}, |_| {});
    let mut edge = UdpEdge::default();
    let (client_id, edge_id) = opened(&mut net, &mut edge);
    let start = Instant::now();
    // The timer is armed: nothing later than the idle timeout from now.
    assert!(
        net.client
            .poll_timeout()
            .is_some_and(|at| at <= start + Duration::from_secs(120))
    );
    // Not yet idle long enough.
    let soon = start + Duration::from_secs(100);
    net.client.handle_timeout(soon);
    net.edge.handle_timeout(soon);
    assert_eq!(net.client.tunnel_kind(client_id), Some(TunnelKind::Udp));
    assert_eq!(net.edge.tunnel_kind(edge_id), Some(TunnelKind::Udp));
    // Idle for longer than 120 s on both clocks: each side closes its tunnel.
    let later = start + Duration::from_secs(121);
    net.client.handle_timeout(later);
    net.edge.handle_timeout(later);
    let closed = |events: Vec<Event>, id| {
        events.contains(&Event::TunnelClosed {
            tunnel: id,
            reason: CloseReason::IdleTimeout,
        })
    };
    assert!(closed(events(&mut net.client), client_id));
    assert!(closed(events(&mut net.edge), edge_id));
    assert_eq!(net.client.tunnel_kind(client_id), None);
    assert_eq!(
        net.client.tunnel_send_datagram(client_id, b"late"),
        Err(TunnelError::UnknownTunnel)
    );
}

#[test]
fn an_idle_edge_finishes_the_stream_and_the_client_sees_it_end() {
    let mut net = udp_pair(|_| {}, |_| {});
    let mut edge = UdpEdge::default();
    let (client_id, edge_id) = opened(&mut net, &mut edge);
    net.edge
        .handle_timeout(Instant::now() + Duration::from_secs(121));
    assert!(events(&mut net.edge).contains(&Event::TunnelClosed {
        tunnel: edge_id,
        reason: CloseReason::IdleTimeout
    }));
    let mut client = Watcher::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, _| !c.closed.is_empty()));
    assert_eq!(client.closed, [(client_id, CloseReason::Finished)]);
}

#[test]
fn a_udp_tunnel_ends_at_its_maximum_duration_with_a_finished_stream() {
    let mut net = udp_pair(
        |_| {},
        |edge| edge.tunnel_max_duration = Some(Duration::from_secs(5)),
    );
    let mut edge = UdpEdge::default();
    let (client_id, edge_id) = opened(&mut net, &mut edge);
    // Busy or not, idle timeout or not (120 s): the limit holds.
    net.edge
        .handle_timeout(Instant::now() + Duration::from_secs(6));
    assert!(events(&mut net.edge).contains(&Event::TunnelClosed {
        tunnel: edge_id,
        reason: CloseReason::MaxDuration
    }));
    let mut client = Watcher::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, _| !c.closed.is_empty()));
    assert_eq!(client.closed, [(client_id, CloseReason::Finished)]);
}

#[test]
fn finish_and_abort_end_udp_tunnels_on_both_sides() {
    let mut net = udp_pair(|_| {}, |_| {});
    let mut edge = UdpEdge::default();
    let (client_id, edge_id) = opened(&mut net, &mut edge);
    net.client.tunnel_finish(client_id).expect("finish");
    assert_eq!(
        net.client.tunnel_send_datagram(client_id, b"after"),
        Err(TunnelError::WriteClosed)
    );
    let mut client = Watcher::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, e| {
        !c.closed.is_empty() && !e.closed.is_empty()
    }));
    assert_eq!(client.closed, [(client_id, CloseReason::Finished)]);
    assert_eq!(edge.closed, [(edge_id, CloseReason::Finished)]);

    let mut edge = UdpEdge::default();
    let (client_id, edge_id) = opened(&mut net, &mut edge);
    net.client.tunnel_abort(client_id).expect("abort");
    let mut client = Watcher::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |_, e| !e.closed.is_empty()));
    assert_eq!(
        edge.closed,
        [(
            edge_id,
            CloseReason::Reset {
                code: veil_engine::H3_CONNECT_ERROR
            }
        )]
    );
    assert!(
        client.closed.is_empty(),
        "an abort reports nothing to its caller"
    );
    // Datagram calls on a TCP tunnel are refused.
    let tcp = net
        .client
        .open_tunnel(Instant::now(), &target("echo.test", 80))
        .expect("open");
    assert_eq!(
        net.client.tunnel_send_datagram(tcp, b"x"),
        Err(TunnelError::NotUdp)
    );
    assert_eq!(net.client.tunnel_kind(tcp), Some(TunnelKind::Stream));
}

/// A bare quiche HTTP/3 server that does not enable Extended CONNECT.
struct PlainServer {
    config: quiche::Config,
    quic: Option<quiche::Connection>,
    h3: Option<quiche::h3::Connection>,
    /// `:method` and `:protocol` of each request head received.
    requests: Vec<(String, Option<String>)>,
}

impl PlainServer {
    fn new() -> Self {
        let (_, cert, key, _) = crate::tls::ca_and_leaf();
        let mut tls =
            boring::ssl::SslContextBuilder::new(boring::ssl::SslMethod::tls()).expect("tls");
        let cert = boring::x509::X509::from_pem(cert.as_bytes()).expect("cert");
        let key = boring::pkey::PKey::private_key_from_pem(key.as_bytes()).expect("key");
        tls.set_certificate(&cert).expect("cert");
        tls.set_private_key(&key).expect("key");
        let mut config = quiche::Config::with_boring_ssl_ctx_builder(quiche::PROTOCOL_VERSION, tls)
            .expect("config");
        config
            .set_application_protos(quiche::h3::APPLICATION_PROTOCOL)
            .expect("alpn");
        config.set_initial_max_data(1 << 20);
        config.set_initial_max_stream_data_bidi_remote(1 << 20);
        config.set_initial_max_stream_data_uni(1 << 20);
        config.set_initial_max_streams_bidi(10);
        config.set_initial_max_streams_uni(10);
        config.set_max_idle_timeout(5_000);
        Self {
            config,
            quic: None,
            h3: None,
            requests: Vec::new(),
        }
    }

    /// Exchanges with `client` until `until` holds for the client's events so far and the
    /// requests received.
    fn serve(
        &mut self,
        client: &mut Endpoint,
        until: impl Fn(&[Event], &[(String, Option<String>)]) -> bool,
    ) -> Vec<Event> {
        let (client_addr, edge_addr) = (
            crate::harness::CLIENT_ADDR.parse().expect("address"),
            crate::harness::EDGE_ADDR.parse().expect("address"),
        );
        let mut events = Vec::new();
        let mut buf = vec![0; 65_536];
        let start = Instant::now();
        while !until(&events, &self.requests) {
            assert!(start.elapsed() < BUDGET, "no outcome: {events:?}");
            while let Some(transmit) = client.poll_transmit(Instant::now(), &mut buf) {
                let size = transmit.segment_size.unwrap_or(transmit.len);
                for segment in buf[..transmit.len].chunks_mut(size) {
                    let quic = self.quic.get_or_insert_with(|| {
                        let scid = quiche::ConnectionId::from_ref(&[9; 16]);
                        quiche::accept(&scid, None, edge_addr, client_addr, &mut self.config)
                            .expect("accept")
                    });
                    let info = quiche::RecvInfo {
                        from: client_addr,
                        to: edge_addr,
                    };
                    let _ = quic.recv(segment, info);
                }
            }
            if let Some(quic) = self.quic.as_mut() {
                if quic.is_established() && self.h3.is_none() {
                    let config = quiche::h3::Config::new().expect("h3 config");
                    self.h3 =
                        Some(quiche::h3::Connection::with_transport(quic, &config).expect("h3"));
                }
                if let Some(h3) = self.h3.as_mut() {
                    while let Ok((_, event)) = h3.poll(quic) {
                        if let quiche::h3::Event::Headers { list, .. } = event {
                            use quiche::h3::NameValue as _;
                            let field = |name: &[u8]| {
                                list.iter()
                                    .find(|h| h.name() == name)
                                    .map(|h| String::from_utf8_lossy(h.value()).into_owned())
                            };
                            self.requests
                                .push((field(b":method").unwrap_or_default(), field(b":protocol")));
                        }
                    }
                }
                let meta = veil_engine::RecvMeta {
                    from: edge_addr,
                    to: client_addr,
                };
                while let Ok((len, _)) = quic.send(&mut buf) {
                    client.handle_datagram(Instant::now(), meta, &mut buf[..len]);
                }
                if quic.timeout().is_some_and(|t| t.is_zero()) {
                    quic.on_timeout();
                }
            }
            events.extend(std::iter::from_fn(|| client.poll_event()));
            if client.poll_timeout().is_some_and(|at| at <= Instant::now()) {
                client.handle_timeout(Instant::now());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        events
    }
}

#[test]
fn a_server_without_extended_connect_never_sees_a_udp_request() {
    let mut server = PlainServer::new();
    let config = client_config(veil_engine::Verify::Insecure, None);
    let mut client = Endpoint::new(Config::client(config), Instant::now()).expect("client");
    let udp = client
        .open_udp_tunnel(Instant::now(), &target("echo.test", 53))
        .expect("open");
    let tcp = client
        .open_tunnel(Instant::now(), &target("echo.test", 443))
        .expect("open");
    let events = server.serve(&mut client, |events, requests| {
        !requests.is_empty()
            && events
                .iter()
                .any(|e| matches!(e, Event::TunnelRefused { .. }))
    });
    assert!(events.contains(&Event::TunnelRefused {
        tunnel: udp,
        reason: RefusedReason::ExtendedConnectUnsupported,
    }));
    assert_eq!(client.tunnel_kind(udp), None);
    assert_eq!(client.tunnel_kind(tcp), Some(TunnelKind::Stream));
    // The plain CONNECT queued behind it went out; no Extended CONNECT ever did.
    assert_eq!(server.requests, [("CONNECT".to_owned(), None)]);
}

//! CONNECT-IP (RFC 9484) through the engine: a client gets addresses and routes, packets
//! cross both ways (datagram frames and capsules), the edge answers what it refuses with
//! ICMP, a too-big packet from the off-ramp gets Packet Too Big with the real limit,
//! scopes narrow the routes, pools run out and are given back, and malformed address
//! capsules end the stream.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use veil_engine::{
    CloseReason, Config, EdgeConfig, Endpoint, Event, IpDelivery, QuicConfig, RefusedReason,
    TunnelId, TunnelKind,
};
use veil_proto::ip::{IpPacket, Transport, encode_udp};
use veil_proto::masque::ip::{Hostname, IpAddressRange, IpPrefix, IpProto, Scope, Target};

use crate::harness::{Host, Net};
use crate::raw::RawClient;
use crate::{BUDGET, client_config};

/// `H3_MESSAGE_ERROR` (RFC 9114 §8.1).
const H3_MESSAGE_ERROR: u64 = 0x10e;

pub(crate) fn edge_with(pools: &[&str], quic: QuicConfig) -> Endpoint {
    let edge = EdgeConfig {
        ip_pools: pools.iter().map(|p| (*p).to_owned()).collect(),
        ..EdgeConfig::default()
    };
    let config = Config {
        role: veil_engine::RoleConfig::Edge(edge),
        quic,
    };
    Endpoint::new(config, Instant::now()).expect("edge")
}

fn pair(pools: &[&str], client_quic: QuicConfig) -> Net {
    let edge = edge_with(pools, QuicConfig::default());
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let config = Config {
        role: veil_engine::RoleConfig::Client(client_config(veil_engine::Verify::Pin(pin), None)),
        quic: client_quic,
    };
    Net::new(Endpoint::new(config, Instant::now()).expect("client"), edge)
}

pub(crate) fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

/// A UDP packet from `from` to `to` carrying `payload`.
pub(crate) fn udp(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0; payload.len() + 64];
    let len = encode_udp(&mut out, from, to, payload).expect("encode");
    out.truncate(len);
    out
}

/// The edge's host: accepts IP tunnels, keeps every packet that passed the engine's checks
/// and answers each UDP one from its destination, as a target behind a TUN would.
#[derive(Default)]
pub(crate) struct IpEdge {
    pub(crate) kinds: Vec<TunnelKind>,
    pub(crate) received: Vec<Vec<u8>>,
    pub(crate) deliveries: Vec<IpDelivery>,
    pub(crate) closed: Vec<(TunnelId, CloseReason)>,
    pub(crate) buf: Vec<u8>,
    /// What a target named by DNS resolves to, for name-scoped tunnels.
    pub(crate) resolves_to: Vec<IpAddr>,
}

impl IpEdge {
    #[allow(clippy::needless_pass_by_value)] // the harness hands events over by value
    fn handle(&mut self, endpoint: &mut Endpoint, event: Event) {
        match event {
            Event::TunnelRequest {
                tunnel,
                kind,
                target,
                ..
            } => {
                self.kinds.push(kind);
                assert_eq!(endpoint.tunnel_kind(tunnel), Some(kind));
                if matches!(target.host, veil_engine::Host::Name(_)) {
                    if let Err(refusal) = endpoint.ip_scope_resolved(tunnel, &self.resolves_to) {
                        endpoint.refuse_tunnel(tunnel, refusal).expect("refuse");
                        return;
                    }
                }
                endpoint.accept_tunnel(tunnel).expect("accept");
            }
            Event::TunnelDatagrams { tunnel } => {
                self.buf.resize(70_000, 0);
                while let Some(len) = endpoint
                    .tunnel_recv_packet(tunnel, &mut self.buf)
                    .expect("receive")
                {
                    let packet = self.buf[..len].to_vec();
                    let view = IpPacket::new_checked(&packet).expect("a checked packet");
                    if let Transport::Udp(datagram) = view.transport() {
                        let from = SocketAddr::new(view.destination(), datagram.destination_port());
                        let to = SocketAddr::new(view.source(), datagram.source_port());
                        let mut answer = udp(from, to, datagram.payload());
                        let mut icmp = vec![0; 1500];
                        self.deliveries
                            .push(endpoint.ip_deliver(&mut answer, &mut icmp));
                    }
                    self.received.push(packet);
                }
            }
            Event::TunnelClosed { tunnel, reason } => self.closed.push((tunnel, reason)),
            _ => {}
        }
    }
}

impl Host for IpEdge {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        self.handle(endpoint, event);
    }
}

/// A client that opens one IP tunnel for `scope` and, once it has an IPv4 address, sends
/// the packets `to_send` makes from it.
pub(crate) struct IpClient {
    pub(crate) scope: Scope,
    pub(crate) to_send: fn(IpAddr) -> Vec<Vec<u8>>,
    pub(crate) expect: usize,
    pub(crate) tunnel: Option<TunnelId>,
    pub(crate) addresses: Vec<IpPrefix>,
    pub(crate) routes: Vec<IpAddressRange>,
    pub(crate) sent: usize,
    pub(crate) refused_locally: usize,
    pub(crate) received: Vec<Vec<u8>>,
    pub(crate) refused: Vec<RefusedReason>,
    pub(crate) buf: Vec<u8>,
}

impl IpClient {
    pub(crate) fn new(scope: Scope, to_send: fn(IpAddr) -> Vec<Vec<u8>>, expect: usize) -> Self {
        Self {
            scope,
            to_send,
            expect,
            tunnel: None,
            addresses: Vec::new(),
            routes: Vec::new(),
            sent: 0,
            refused_locally: 0,
            received: Vec::new(),
            refused: Vec::new(),
            buf: vec![0; 70_000],
        }
    }

    pub(crate) fn v4(&self) -> Option<IpAddr> {
        self.addresses
            .iter()
            .map(IpPrefix::addr)
            .find(IpAddr::is_ipv4)
    }
}

impl Host for IpClient {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::IpTunnelConfigured { tunnel } => {
                self.addresses = endpoint.ip_tunnel_addresses(tunnel).expect("ip");
                self.routes = endpoint.ip_tunnel_routes(tunnel).expect("ip").to_vec();
                if self.sent == 0 && self.refused_locally == 0 && !self.routes.is_empty() {
                    if let Some(source) = self.v4() {
                        for mut packet in (self.to_send)(source) {
                            if endpoint
                                .tunnel_send_packet(tunnel, &mut packet)
                                .expect("open")
                            {
                                self.sent += 1;
                            } else {
                                self.refused_locally += 1;
                            }
                        }
                    }
                }
            }
            Event::TunnelDatagrams { tunnel } => {
                while let Some(len) = endpoint
                    .tunnel_recv_packet(tunnel, &mut self.buf)
                    .expect("receive")
                {
                    self.received.push(self.buf[..len].to_vec());
                }
            }
            Event::TunnelRefused { reason, .. } => self.refused.push(reason),
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        if self.tunnel.is_some() {
            return false;
        }
        self.tunnel = Some(endpoint.open_ip_tunnel(now, &self.scope).expect("open"));
        true
    }

    fn done(&self) -> bool {
        !self.refused.is_empty() || (self.expect > 0 && self.received.len() >= self.expect)
    }
}

fn public_and_forbidden(source: IpAddr) -> Vec<Vec<u8>> {
    vec![
        udp(SocketAddr::new(source, 5000), addr("8.8.8.8:53"), b"query"),
        // Private: the edge's egress policy refuses it, and says so in ICMP.
        udp(
            SocketAddr::new(source, 5001),
            addr("10.0.0.1:53"),
            b"private",
        ),
    ]
}

fn ip_round_trip(client_quic: QuicConfig) {
    let mut net = pair(&["10.89.0.0/24", "fd00:89::/64"], client_quic);
    let mut client = IpClient::new(Scope::ANY, public_and_forbidden, 2);
    let mut edge = IpEdge::default();
    assert!(
        net.run(&mut client, &mut edge, BUDGET),
        "no answers came back"
    );

    // One address of each family from the pools, after the edge's own first addresses.
    let mut addresses: Vec<String> = client.addresses.iter().map(ToString::to_string).collect();
    addresses.sort();
    assert_eq!(addresses, ["10.89.0.2/32", "fd00:89::2/128"]);
    // A full tunnel: every address of both families, every protocol.
    assert_eq!(client.routes.len(), 2);
    assert!(client.routes.iter().all(|r| r.ip_protocol == 0));
    assert!(client.routes[0].contains("255.255.255.255".parse().expect("ip")));
    assert!(client.routes[1].contains("2001:db8::1".parse().expect("ip")));
    assert_eq!(edge.kinds, [TunnelKind::Ip]);

    // The public packet reached the edge's host as the client sent it, its hop limit one
    // lower (the client decrements on encapsulation); the private one never did.
    assert_eq!(client.sent, 2);
    let mut sent = public_and_forbidden(client.v4().expect("v4")).remove(0);
    assert_eq!(veil_proto::ip::decrement_hop_limit(&mut sent), Ok(63));
    assert_eq!(edge.received, [sent]);
    assert!(matches!(edge.deliveries[..], [IpDelivery::Sent(_)]));

    // Back at the client: the answer (hop limit one lower, from the target) and an ICMP
    // "administratively prohibited" from the edge's own address about the private one.
    let mut answers: HashMap<IpAddr, Vec<u8>> = HashMap::new();
    for packet in &client.received {
        let view = IpPacket::new_checked(packet).expect("packet");
        answers.insert(view.source(), packet.clone());
    }
    let answer = IpPacket::new_checked(&answers[&"8.8.8.8".parse::<IpAddr>().expect("ip")][..])
        .expect("answer");
    assert_eq!(answer.hop_limit(), 63);
    let Transport::Udp(datagram) = answer.transport() else {
        panic!("not UDP: {answer:?}");
    };
    assert_eq!(datagram.payload(), b"query");
    assert_eq!(datagram.destination_port(), 5000);
    let icmp = IpPacket::new_checked(&answers[&"10.89.0.1".parse::<IpAddr>().expect("ip")][..])
        .expect("icmp");
    let Transport::Icmpv4(icmp) = icmp.transport() else {
        panic!("not ICMP");
    };
    assert_eq!((icmp.icmp_type(), icmp.code()), (3, 13));

    let (client_stats, edge_stats) = (net.client.stats(), net.edge.stats());
    assert_eq!(edge_stats.ip_icmp_answers, 1);
    assert_eq!(edge_stats.ip_packets_forwarded, 2, "one each way");
    assert_eq!(
        client_stats.ip_packets_forwarded,
        2 + 2,
        "two sent, two received"
    );
}

#[test]
fn an_ip_tunnel_gets_addresses_and_routes_and_carries_packets_both_ways() {
    ip_round_trip(QuicConfig::default());
}

#[test]
fn capsules_carry_the_packets_when_the_client_disables_h3_datagrams() {
    ip_round_trip(QuicConfig {
        enable_datagrams: false,
        ..QuicConfig::default()
    });
}

#[test]
fn a_scope_narrows_the_routes_and_the_client_keeps_to_them() {
    fn inside_and_outside(source: IpAddr) -> Vec<Vec<u8>> {
        vec![
            udp(SocketAddr::new(source, 7), addr("8.8.8.8:53"), b"in"),
            udp(
                SocketAddr::new(source, 7),
                addr("1.1.1.1:53"),
                b"out of scope",
            ),
            udp(
                SocketAddr::new(source, 7),
                addr("8.8.4.4:53"),
                b"out of scope too",
            ),
        ]
    }
    let mut net = pair(&["10.89.0.0/24", "fd00:89::/64"], QuicConfig::default());
    let scope = Scope {
        target: Target::Prefix(IpPrefix::new("8.8.8.0".parse().unwrap(), 24).unwrap()),
        ipproto: IpProto::Number(17),
    };
    let mut client = IpClient::new(scope, inside_and_outside, 1);
    let mut edge = IpEdge::default();
    assert!(net.run(&mut client, &mut edge, BUDGET));
    // An IPv4 scope: an IPv4 address only, and one route, UDP only.
    assert_eq!(client.addresses.len(), 1);
    assert!(client.addresses[0].addr().is_ipv4());
    assert_eq!(client.routes.len(), 1);
    assert_eq!(client.routes[0].ip_protocol, 17);
    assert_eq!(
        (
            client.routes[0].start.to_string(),
            client.routes[0].end.to_string()
        ),
        ("8.8.8.0".to_owned(), "8.8.8.255".to_owned())
    );
    assert_eq!((client.sent, client.refused_locally), (1, 2));
    assert_eq!(net.client.stats().ip_dropped.get("not_routed"), 2);
    assert_eq!(edge.received.len(), 1);
}

#[test]
fn a_packet_too_big_for_the_tunnel_gets_packet_too_big_with_the_real_limit() {
    fn one(source: IpAddr) -> Vec<Vec<u8>> {
        vec![udp(SocketAddr::new(source, 9), addr("8.8.8.8:53"), b"hi")]
    }
    let mut net = pair(&["10.89.0.0/24"], QuicConfig::default());
    let mut client = IpClient::new(Scope::ANY, one, 1);
    let mut edge = IpEdge::default();
    assert!(net.run(&mut client, &mut edge, BUDGET));
    let tunnel = match edge.deliveries[..] {
        [IpDelivery::Sent(tunnel)] => tunnel,
        ref other => panic!("{other:?}"),
    };
    let limit = net
        .edge
        .tunnel_max_datagram_payload(tunnel)
        .expect("an open tunnel");
    assert!((1200..1500).contains(&limit), "{limit}");
    let client_ip = client.v4().expect("v4");
    for (len, fits) in [(limit, true), (limit + 1, false)] {
        // A UDP payload that makes the packet exactly `len` bytes (IPv4 + UDP: 28).
        let mut packet = udp(
            addr("8.8.8.8:53"),
            SocketAddr::new(client_ip, 9),
            &vec![7; len - 28],
        );
        assert_eq!(packet.len(), len);
        let mut icmp = vec![0; 1500];
        match net.edge.ip_deliver(&mut packet, &mut icmp) {
            IpDelivery::Sent(to) if fits => assert_eq!(to, tunnel),
            IpDelivery::Answer { len: icmp_len } if !fits => {
                let view = IpPacket::new_checked(&icmp[..icmp_len]).expect("icmp");
                assert_eq!(view.destination(), "8.8.8.8".parse::<IpAddr>().unwrap());
                assert_eq!(view.source(), "10.89.0.1".parse::<IpAddr>().unwrap());
                let Transport::Icmpv4(message) = view.transport() else {
                    panic!("not ICMP");
                };
                // Fragmentation Needed, the next-hop MTU in the low 16 bits of word 2.
                assert_eq!((message.icmp_type(), message.code()), (3, 4));
                let rest = message.rest_of_header();
                assert_eq!(
                    usize::from(u16::from_be_bytes([rest[2], rest[3]])),
                    limit,
                    "the real limit"
                );
            }
            other => panic!("{len} bytes: {other:?}"),
        }
    }
    // To an address nobody was given: dropped.
    let mut stray = udp(addr("8.8.8.8:53"), addr("10.89.0.99:9"), b"x");
    assert_eq!(
        net.edge.ip_deliver(&mut stray, &mut [0; 1500]),
        IpDelivery::Dropped
    );
}

#[test]
fn the_client_answers_a_packet_too_big_for_the_tunnel_with_the_real_limit() {
    fn nothing(_: IpAddr) -> Vec<Vec<u8>> {
        Vec::new()
    }
    let mut net = pair(&["10.89.0.0/24", "fd00:89::/64"], QuicConfig::default());
    let mut client = IpClient::new(Scope::ANY, nothing, 0);
    let mut edge = IpEdge::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, _| {
        c.addresses.len() == 2 && !c.routes.is_empty()
    }));
    let tunnel = client.tunnel.expect("open");
    let limit = net
        .client
        .tunnel_max_datagram_payload(tunnel)
        .expect("an open tunnel");
    let v4 = client.v4().expect("v4");
    let v6 = client
        .addresses
        .iter()
        .map(IpPrefix::addr)
        .find(IpAddr::is_ipv6)
        .expect("v6");
    for (source, destination, header) in [
        (SocketAddr::new(v4, 9), addr("8.8.8.8:53"), 28),
        (
            SocketAddr::new(v6, 9),
            addr("[2001:4860:4860::8888]:53"),
            48,
        ),
    ] {
        for (len, fits) in [(limit, true), (limit + 1, false)] {
            let mut packet = udp(source, destination, &vec![7; len - header]);
            assert_eq!(packet.len(), len);
            let mut answer = vec![0; veil_proto::ip::ICMPV6_ERROR_MAX_LEN];
            match net
                .client
                .tunnel_send_packet_or_answer(tunnel, &mut packet, &mut answer)
                .expect("an IP tunnel")
            {
                IpDelivery::Sent(to) if fits => assert_eq!(to, tunnel),
                IpDelivery::Answer { len: icmp_len } if !fits => {
                    let view = IpPacket::new_checked(&answer[..icmp_len]).expect("icmp");
                    // From the destination, to the host that sent the packet.
                    assert_eq!(view.source(), destination.ip());
                    assert_eq!(view.destination(), source.ip());
                    let (message, mtu) = match view.transport() {
                        // Fragmentation Needed: the next-hop MTU in the low 16 bits of word 2.
                        Transport::Icmpv4(message) => {
                            assert_eq!((message.icmp_type(), message.code()), (3, 4));
                            let rest = message.rest_of_header();
                            (message, usize::from(u16::from_be_bytes([rest[2], rest[3]])))
                        }
                        // Packet Too Big: the MTU is the whole of word 2.
                        Transport::Icmpv6(message) => {
                            assert_eq!((message.icmp_type(), message.code()), (2, 0));
                            let rest = message.rest_of_header();
                            let mtu = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                            (message, usize::try_from(mtu).expect("mtu"))
                        }
                        _ => panic!("not ICMP"),
                    };
                    assert!(message.checksum_valid());
                    assert_eq!(mtu, limit, "the real limit");
                }
                other => panic!("{len} bytes from {source}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_pool_runs_out_and_gets_its_addresses_back() {
    fn nothing(_: IpAddr) -> Vec<Vec<u8>> {
        Vec::new()
    }
    // A /30: network, the edge's own, one for a client, broadcast.
    let mut net = pair(&["10.89.0.0/30"], QuicConfig::default());
    let mut first = IpClient::new(Scope::ANY, nothing, 0);
    let mut edge = IpEdge::default();
    assert!(net.run_until(&mut first, &mut edge, BUDGET, |c, _| {
        !c.addresses.is_empty()
    }));
    assert_eq!(first.addresses[0].to_string(), "10.89.0.2/32");

    let mut second = IpClient::new(Scope::ANY, nothing, 0);
    assert!(net.run(&mut second, &mut edge, BUDGET));
    match &second.refused[..] {
        [RefusedReason::Status { status, .. }] => assert_eq!(*status, 503),
        other => panic!("{other:?}"),
    }

    // The first tunnel ends; its address goes to the next.
    let tunnel = first.tunnel.expect("open");
    net.client.tunnel_abort(tunnel).expect("abort");
    assert!(net.run_until(&mut first, &mut edge, BUDGET, |_, e| !e.closed.is_empty()));
    let mut third = IpClient::new(Scope::ANY, nothing, 0);
    assert!(net.run_until(&mut third, &mut edge, BUDGET, |c, _| {
        !c.addresses.is_empty()
    }));
    assert_eq!(third.addresses[0].to_string(), "10.89.0.2/32");
}

fn ip_request(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "CONNECT".to_owned()),
        (":protocol", "connect-ip".to_owned()),
        (":scheme", "https".to_owned()),
        (":authority", "localhost:443".to_owned()),
        (":path", path.to_owned()),
        ("capsule-protocol", "?1".to_owned()),
    ]
}

fn refs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[test]
fn requests_without_a_pool_are_501_and_malformed_scopes_400() {
    let mut without = edge_with(&[], QuicConfig::default());
    let mut raw = RawClient::new(false);
    let any = ip_request("/.well-known/masque/ip/*/*/");
    assert_eq!(raw.request(&mut without, &refs(&any)).0, "501");

    let mut edge = edge_with(&["10.89.0.0/24"], QuicConfig::default());
    let mut raw = RawClient::new(false);
    for path in [
        "/.well-known/masque/ip/10.0.0.0%2F33/*/",
        "/.well-known/masque/ip/*/256/",
        "/.well-known/masque/ip/*/",
        "/elsewhere/",
    ] {
        assert_eq!(
            raw.request(&mut edge, &refs(&ip_request(path))).0,
            "400",
            "{path}"
        );
    }
    let mut host = IpEdge::default();
    let (_, status, _) = raw.send_request(&mut edge, &mut |e, ev| host.handle(e, ev), &refs(&any));
    assert_eq!(status, "200");
}

/// `example.com`'s addresses in the tests that scope a tunnel by name.
fn example_com() -> Vec<IpAddr> {
    [
        "93.184.215.14",
        "10.1.2.3",
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    ]
    .iter()
    .map(|a| a.parse().expect("an address"))
    .collect()
}

fn named_scope(ipproto: IpProto) -> Scope {
    Scope {
        target: Target::Name(Hostname::new("example.com").expect("a name")),
        ipproto,
    }
}

#[test]
fn a_scope_by_name_reaches_the_permitted_addresses_it_resolves_to() {
    fn to_each(source: IpAddr) -> Vec<Vec<u8>> {
        ["93.184.215.14:443", "10.1.2.3:443", "93.184.215.15:443"]
            .iter()
            .map(|to| udp(SocketAddr::new(source, 7), addr(to), b"hello"))
            .collect()
    }
    let mut net = pair(&["10.89.0.0/24", "fd00:89::/64"], QuicConfig::default());
    let mut client = IpClient::new(named_scope(IpProto::Number(17)), to_each, 1);
    let mut edge = IpEdge {
        resolves_to: example_com(),
        ..IpEdge::default()
    };
    assert!(net.run(&mut client, &mut edge, BUDGET));
    // A route to each public address the name resolved to, in each assigned family; the
    // private one (egress policy) is neither advertised nor reachable.
    let routes: Vec<String> = client
        .routes
        .iter()
        .map(|r| format!("{}-{}/{}", r.start, r.end, r.ip_protocol))
        .collect();
    assert_eq!(
        routes,
        [
            "93.184.215.14-93.184.215.14/17",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c-2606:2800:21f:cb07:6820:80da:af6b:8b2c/17"
        ]
    );
    // The client keeps to its routes: one packet sent, two refused before the tunnel.
    assert_eq!((client.sent, client.refused_locally), (1, 2));
    assert_eq!(edge.received.len(), 1);
    let view = IpPacket::new_checked(&edge.received[0]).expect("a packet");
    assert_eq!(
        view.destination(),
        "93.184.215.14".parse::<IpAddr>().unwrap()
    );
    // The answer from the resolved address came back.
    assert_eq!(client.received.len(), 1);
}

#[test]
fn a_scope_by_name_is_refused_when_nothing_usable_resolves() {
    fn nothing(_: IpAddr) -> Vec<Vec<u8>> {
        Vec::new()
    }
    for (resolves_to, status) in [
        (Vec::new(), 502),                                        // dns_error
        (vec!["10.1.2.3".parse().expect("v4")], 403),             // only private
        (vec!["2001:4860:4860::8888".parse().expect("v6")], 502), // no IPv6 pool
    ] {
        let mut net = pair(&["10.89.0.0/24"], QuicConfig::default());
        let mut client = IpClient::new(named_scope(IpProto::Any), nothing, 0);
        let mut edge = IpEdge {
            resolves_to: resolves_to.clone(),
            ..IpEdge::default()
        };
        assert!(net.run(&mut client, &mut edge, BUDGET));
        match &client.refused[..] {
            [RefusedReason::Status { status: got, .. }] => {
                assert_eq!(*got, status, "{resolves_to:?}");
            }
            other => panic!("{resolves_to:?}: {other:?}"),
        }
    }
}

#[test]
fn an_address_request_is_answered_and_a_malformed_capsule_ends_the_stream() {
    let mut edge = edge_with(&["10.89.0.0/24", "fd00:89::/64"], QuicConfig::default());
    let mut host = IpEdge::default();
    let mut raw = RawClient::new(false);
    let headers = ip_request("/.well-known/masque/ip/*/*/");
    let (stream, status, _) =
        raw.send_request(&mut edge, &mut |e, ev| host.handle(e, ev), &refs(&headers));
    assert_eq!(status, "200");

    // ADDRESS_REQUEST (type 2): Request ID 5, IPv4, 10.89.0.77/32.
    let request = [0x02, 0x07, 0x05, 0x04, 10, 89, 0, 77, 32];
    let body = read_capsules_after(&mut raw, &mut edge, &mut host, stream, &request);
    // The answer: an ADDRESS_ASSIGN listing both addresses, the IPv4 one now with
    // Request ID 5 (the family already had an address: the edge keeps it).
    let assigns: Vec<&[u8]> = capsules(&body)
        .into_iter()
        .filter(|(t, _)| *t == 1)
        .map(|(_, v)| v)
        .collect();
    let last = assigns.last().expect("an ADDRESS_ASSIGN");
    assert_eq!(&last[..7], &[0x05, 0x04, 10, 89, 0, 2, 32]);
    assert_eq!(assigns.len(), 2, "the unsolicited one, then the answer");

    // A truncated ADDRESS_ASSIGN (an IPv4 entry without its prefix length): malformed.
    let bad = [0x01, 0x06, 0x00, 0x04, 10, 0, 0, 1];
    raw.drive(&mut edge, &mut |e, ev| host.handle(e, ev), |raw| {
        let h3 = raw.h3.as_mut()?;
        h3.send_body(&mut raw.quic, stream, &bad, false).ok()
    });
    let code = raw.wait_reset(&mut edge, &mut |e, ev| host.handle(e, ev), stream);
    assert_eq!(code, H3_MESSAGE_ERROR);
}

/// Sends `bytes` on `stream` and returns what the edge sent on it meanwhile, once
/// something new arrived.
fn read_capsules_after(
    raw: &mut RawClient,
    edge: &mut Endpoint,
    host: &mut IpEdge,
    stream: u64,
    bytes: &[u8],
) -> Vec<u8> {
    let mut sent = false;
    let mut body = Vec::new();
    let mut rounds = 0;
    raw.drive(edge, &mut |e, ev| host.handle(e, ev), |raw| {
        let h3 = raw.h3.as_mut()?;
        if !sent {
            sent = h3.send_body(&mut raw.quic, stream, bytes, false).is_ok();
        }
        while let Ok((_, _)) = h3.poll(&mut raw.quic) {}
        let mut buf = [0; 4096];
        while let Ok(len) = h3.recv_body(&mut raw.quic, stream, &mut buf) {
            body.extend_from_slice(&buf[..len]);
        }
        rounds += 1;
        (sent && rounds > 50).then(|| std::mem::take(&mut body))
    })
}

/// Splits a capsule stream into (type, value) pairs (one-byte types and lengths or
/// longer varints).
fn capsules(mut bytes: &[u8]) -> Vec<(u64, &[u8])> {
    fn varint(bytes: &[u8]) -> (u64, usize) {
        let len = 1 << (bytes[0] >> 6);
        let mut value = u64::from(bytes[0] & 0x3f);
        for &b in &bytes[1..len] {
            value = (value << 8) | u64::from(b);
        }
        (value, len)
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (kind, a) = varint(bytes);
        let (len, b) = varint(&bytes[a..]);
        let start = a + b;
        let end = start + usize::try_from(len).expect("a short capsule");
        out.push((kind, &bytes[start..end]));
        bytes = &bytes[end..];
    }
    out
}

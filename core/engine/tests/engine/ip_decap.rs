//! The edge's `decap` off-ramp (`EdgeConfig::ip_decap`): the engine takes a CONNECT-IP
//! client's packets apart into UDP and ICMP echo flows for the host's sockets, builds the
//! answers back into IP packets, answers TCP with ICMP "administratively prohibited", and
//! closes flows when idle, when the host says so and when their tunnel ends.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use veil_engine::{
    Config, EdgeConfig, Endpoint, Event, IpFlowId, IpFlowProtocol, QuicConfig, TunnelError,
    TunnelId,
};
use veil_proto::ip::{IpPacket, Transport, protocol};
use veil_proto::masque::ip::Scope;

use crate::BUDGET;
use crate::harness::{Host, Net};
use crate::ip::{addr, udp};

/// The addresses the pools give the first client (`ip.rs` checks the assignment).
const CLIENT4: &str = "10.89.0.2";
const CLIENT6: &str = "fd00:89::2";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

pub(crate) fn from4(port: u16) -> SocketAddr {
    SocketAddr::new(ip(CLIENT4), port)
}

fn from6(port: u16) -> SocketAddr {
    SocketAddr::new(ip(CLIENT6), port)
}

/// A client and an edge with pools of both families; the edge decapsulates when `decap`,
/// and closes idle UDP tunnels and flows after `idle`.
fn pair(decap: bool, idle: Duration) -> Net {
    let edge = EdgeConfig {
        ip_pools: vec!["10.89.0.0/24".to_owned(), "fd00:89::/64".to_owned()],
        ip_decap: decap,
        ..EdgeConfig::default()
    };
    let edge = Endpoint::new(
        Config {
            role: veil_engine::RoleConfig::Edge(edge),
            quic: QuicConfig {
                udp_idle_timeout: idle,
                ..QuicConfig::default()
            },
        },
        Instant::now(),
    )
    .expect("edge");
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let config = Config {
        role: veil_engine::RoleConfig::Client(crate::client_config(
            veil_engine::Verify::Pin(pin),
            None,
        )),
        quic: QuicConfig::default(),
    };
    Net::new(Endpoint::new(config, Instant::now()).expect("client"), edge)
}

const LONG: Duration = Duration::from_secs(120);

/// The Internet checksum (RFC 1071), written here to build test packets.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|p| u32::from(u16::from_be_bytes([p[0], p.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded")
}

/// An IPv4 packet from the client's address, TTL 64, with `flags_offset` (0x4000: Don't
/// Fragment; 0x2000: More Fragments).
fn ipv4(to: &str, protocol: u8, flags_offset: u16, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).expect("short");
    let mut p = vec![0x45, 0];
    p.extend(total.to_be_bytes());
    p.extend([0, 1]);
    p.extend(flags_offset.to_be_bytes());
    p.extend([64, protocol, 0, 0]);
    p.extend(CLIENT4.parse::<std::net::Ipv4Addr>().expect("v4").octets());
    p.extend(to.parse::<std::net::Ipv4Addr>().expect("v4").octets());
    let checksum = internet_checksum(&p);
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend(payload);
    p
}

/// An IPv6 packet from the client's address, hop limit 64.
fn ipv6(to: &str, next: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("short");
    let mut p = vec![0x60, 0, 0, 0];
    p.extend(len.to_be_bytes());
    p.extend([next, 64]);
    p.extend(CLIENT6.parse::<std::net::Ipv6Addr>().expect("v6").octets());
    p.extend(to.parse::<std::net::Ipv6Addr>().expect("v6").octets());
    p.extend(payload);
    p
}

/// An ICMP echo request message (checksum left 0: the edge does not check it).
fn echo_request(v6: bool, identifier: u16, sequence: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    m.extend(identifier.to_be_bytes());
    m.extend(sequence.to_be_bytes());
    m.extend(data);
    m
}

/// A TCP SYN from `port` to port 443 (checksum 0: not checked on this path).
fn tcp_syn(port: u16) -> Vec<u8> {
    let mut t = port.to_be_bytes().to_vec();
    t.extend(443_u16.to_be_bytes());
    t.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

/// A client with one IP tunnel that sends what its outbox holds once it has its addresses,
/// and the `keepalive` packet every `period`.
#[derive(Default)]
pub(crate) struct Client {
    tunnel: Option<TunnelId>,
    pub(crate) configured: bool,
    pub(crate) outbox: VecDeque<Vec<u8>>,
    keepalive: Option<(Vec<u8>, Duration, Option<Instant>)>,
    received: Vec<Vec<u8>>,
    buf: Vec<u8>,
}

impl Host for Client {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::IpTunnelConfigured { tunnel } => {
                let addresses = endpoint.ip_tunnel_addresses(tunnel).expect("ip");
                let mut got: Vec<IpAddr> =
                    addresses.iter().map(veil_engine::IpPrefix::addr).collect();
                got.sort();
                self.configured = got == [ip(CLIENT4), ip(CLIENT6)]
                    && !endpoint.ip_tunnel_routes(tunnel).expect("ip").is_empty();
            }
            Event::TunnelDatagrams { tunnel } => {
                self.buf.resize(70_000, 0);
                while let Some(len) = endpoint
                    .tunnel_recv_packet(tunnel, &mut self.buf)
                    .expect("receive")
                {
                    self.received.push(self.buf[..len].to_vec());
                }
            }
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        let Some(tunnel) = self.tunnel else {
            self.tunnel = Some(endpoint.open_ip_tunnel(now, &Scope::ANY).expect("open"));
            return true;
        };
        if !self.configured {
            return false;
        }
        let mut busy = false;
        while let Some(mut packet) = self.outbox.pop_front() {
            assert!(
                endpoint
                    .tunnel_send_packet(tunnel, &mut packet)
                    .expect("send")
            );
            busy = true;
        }
        if let Some((packet, period, last)) = &mut self.keepalive {
            if last.is_none_or(|at| now >= at + *period) {
                *last = Some(now);
                let mut packet = packet.clone();
                assert!(
                    endpoint
                        .tunnel_send_packet(tunnel, &mut packet)
                        .expect("send")
                );
                busy = true;
            }
        }
        busy
    }
}

/// What the edge's host saw of one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    pub(crate) flow: IpFlowId,
    pub(crate) tunnel: TunnelId,
    pub(crate) protocol: IpFlowProtocol,
    pub(crate) destination: SocketAddr,
}

/// The edge's host: accepts IP tunnels, reads every flow, and (when `answer`) answers each
/// UDP payload with `re:` and it, and each echo request with a reply carrying another
/// identifier (a ping socket's) and a wrong checksum.
#[derive(Default)]
pub(crate) struct Edge {
    pub(crate) answer: bool,
    pub(crate) opened: Vec<Opened>,
    pub(crate) closed: Vec<IpFlowId>,
    pub(crate) payloads: HashMap<IpFlowId, Vec<Vec<u8>>>,
    pub(crate) sent: Vec<bool>,
    /// Whole packets, when the engine does not decapsulate.
    pub(crate) packets: Vec<Vec<u8>>,
    pub(crate) tunnels_closed: Vec<TunnelId>,
}

/// The identifier of the edge host's ping socket.
const SOCKET_ID: u16 = 0x4242;

impl Host for Edge {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelRequest { tunnel, .. } => endpoint.accept_tunnel(tunnel).expect("accept"),
            Event::IpFlowOpened {
                flow,
                tunnel,
                protocol,
                destination,
            } => self.opened.push(Opened {
                flow,
                tunnel,
                protocol,
                destination,
            }),
            Event::IpFlowReadable { flow } => {
                let protocol = self
                    .opened
                    .iter()
                    .find(|o| o.flow == flow)
                    .expect("opened first")
                    .protocol;
                let mut buf = vec![0; 70_000];
                while let Some(len) = endpoint.ip_flow_recv(flow, &mut buf).expect("flow") {
                    let payload = buf[..len].to_vec();
                    if self.answer {
                        let answer = if protocol == IpFlowProtocol::Udp {
                            [b"re:".as_slice(), &payload].concat()
                        } else {
                            let reply = if payload[0] == 8 { 0 } else { 129 };
                            let mut m = vec![reply, 0, 0xde, 0xad];
                            m.extend(SOCKET_ID.to_be_bytes());
                            m.extend(&payload[6..]);
                            m
                        };
                        self.sent
                            .push(endpoint.ip_flow_send(flow, &answer).expect("send"));
                    }
                    self.payloads.entry(flow).or_default().push(payload);
                }
            }
            Event::IpFlowClosed { flow } => self.closed.push(flow),
            Event::TunnelDatagrams { tunnel } => {
                let mut buf = vec![0; 70_000];
                while let Some(len) = endpoint.tunnel_recv_packet(tunnel, &mut buf).expect("recv") {
                    self.packets.push(buf[..len].to_vec());
                }
            }
            Event::TunnelClosed { tunnel, .. } => self.tunnels_closed.push(tunnel),
            _ => {}
        }
    }
}

/// The packets the client received, parsed: (source, destination, transport).
fn parsed(received: &[Vec<u8>]) -> Vec<IpPacket<'_>> {
    received
        .iter()
        .map(|p| IpPacket::new_checked(p).expect("a valid packet"))
        .collect()
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, checked step by step
fn udp_flows_are_taken_apart_and_the_answers_come_back_as_packets() {
    let mut net = pair(true, LONG);
    let mut client = Client::default();
    client.outbox.extend([
        udp(from4(5000), addr("8.8.8.8:53"), b"query one"),
        udp(from4(5001), addr("1.1.1.1:53"), b"query two"),
        udp(from6(5002), addr("[2001:4860:4860::8888]:53"), b"query six"),
        // The same flow as the first: no new flow.
        udp(from4(5000), addr("8.8.8.8:53"), b"query one again"),
    ]);
    let mut edge = Edge {
        answer: true,
        ..Edge::default()
    };
    assert!(
        net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.received.len() >= 4),
        "the answers did not all come back"
    );

    // Three flows, in the order they began, each with its destination.
    let destinations: Vec<(IpFlowProtocol, SocketAddr)> = edge
        .opened
        .iter()
        .map(|o| (o.protocol, o.destination))
        .collect();
    assert_eq!(
        destinations,
        [
            (IpFlowProtocol::Udp, addr("8.8.8.8:53")),
            (IpFlowProtocol::Udp, addr("1.1.1.1:53")),
            (IpFlowProtocol::Udp, addr("[2001:4860:4860::8888]:53")),
        ]
    );
    let ids: Vec<IpFlowId> = edge.opened.iter().map(|o| o.flow).collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    assert!(
        edge.opened
            .iter()
            .all(|o| o.tunnel == edge.opened[0].tunnel)
    );
    assert_eq!(
        edge.payloads[&ids[0]],
        [b"query one".to_vec(), b"query one again".to_vec()]
    );
    assert_eq!(edge.payloads[&ids[1]], [b"query two".to_vec()]);
    assert_eq!(edge.payloads[&ids[2]], [b"query six".to_vec()]);
    assert_eq!(edge.sent, [true; 4]);
    assert!(edge.packets.is_empty(), "no whole packet reaches the host");

    // Each answer: from the flow's destination to the client's address and port, hop
    // limit decremented once on encapsulation, a valid UDP checksum.
    let mut answers: Vec<(SocketAddr, SocketAddr, Vec<u8>, u8)> = parsed(&client.received)
        .iter()
        .map(|p| {
            let Transport::Udp(datagram) = p.transport() else {
                panic!("not UDP: {p:?}");
            };
            assert!(datagram.checksum_valid());
            (
                SocketAddr::new(p.source(), datagram.source_port()),
                SocketAddr::new(p.destination(), datagram.destination_port()),
                datagram.payload().to_vec(),
                p.hop_limit(),
            )
        })
        .collect();
    answers.sort();
    let mut expected = vec![
        (
            addr("8.8.8.8:53"),
            from4(5000),
            b"re:query one".to_vec(),
            63,
        ),
        (
            addr("8.8.8.8:53"),
            from4(5000),
            b"re:query one again".to_vec(),
            63,
        ),
        (
            addr("1.1.1.1:53"),
            from4(5001),
            b"re:query two".to_vec(),
            63,
        ),
        (
            addr("[2001:4860:4860::8888]:53"),
            from6(5002),
            b"re:query six".to_vec(),
            63,
        ),
    ];
    expected.sort();
    assert_eq!(answers, expected);

    let stats = net.edge.stats();
    assert_eq!(stats.ip_decap_flows_opened, 3);
    assert_eq!(stats.ip_decap_flows, 3);
    assert_eq!(
        stats.ip_packets_forwarded,
        4 + 4,
        "four in, four answers out"
    );
    assert_eq!(stats.ip_dropped.total(), 0);
    let text = veil_engine::metrics::encode_text(&stats);
    assert!(
        text.contains("veil_ip_decap_flows_opened_total 3"),
        "{text}"
    );
    assert!(text.contains("veil_ip_decap_flows 3"), "{text}");
}

#[test]
fn a_ping_gets_its_reply_with_the_clients_identifier_and_valid_checksums() {
    let mut net = pair(true, LONG);
    let mut client = Client::default();
    client.outbox.extend([
        ipv4(
            "9.9.9.9",
            protocol::ICMP,
            0x4000,
            &echo_request(false, 0x1234, 7, b"ping data"),
        ),
        ipv6(
            "2620:fe::fe",
            protocol::ICMPV6,
            &echo_request(true, 0x5678, 9, b"ping six"),
        ),
    ]);
    let mut edge = Edge {
        answer: true,
        ..Edge::default()
    };
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.received.len() >= 2));

    let opened: Vec<(IpFlowProtocol, SocketAddr)> = edge
        .opened
        .iter()
        .map(|o| (o.protocol, o.destination))
        .collect();
    assert_eq!(
        opened,
        [
            (IpFlowProtocol::IcmpEcho, addr("9.9.9.9:0")),
            (IpFlowProtocol::IcmpEcho, addr("[2620:fe::fe]:0")),
        ]
    );
    // The host reads the whole ICMP message, as a ping socket takes it.
    assert_eq!(
        edge.payloads[&edge.opened[0].flow],
        [echo_request(false, 0x1234, 7, b"ping data")]
    );
    assert_eq!(
        edge.payloads[&edge.opened[1].flow],
        [echo_request(true, 0x5678, 9, b"ping six")]
    );

    let mut replies = Vec::new();
    for packet in parsed(&client.received) {
        let (Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp)) = packet.transport() else {
            panic!("not ICMP: {packet:?}");
        };
        assert!(icmp.checksum_valid(), "checksum of {packet:?}");
        let rest = icmp.rest_of_header();
        replies.push((
            packet.source(),
            packet.destination(),
            icmp.icmp_type(),
            icmp.code(),
            u16::from_be_bytes([rest[0], rest[1]]),
            u16::from_be_bytes([rest[2], rest[3]]),
            icmp.payload().to_vec(),
            packet.hop_limit(),
        ));
    }
    replies.sort();
    assert_eq!(
        replies,
        [
            (
                ip("9.9.9.9"),
                ip(CLIENT4),
                0,
                0,
                0x1234,
                7,
                b"ping data".to_vec(),
                63
            ),
            (
                ip("2620:fe::fe"),
                ip(CLIENT6),
                129,
                0,
                0x5678,
                9,
                b"ping six".to_vec(),
                63
            ),
        ]
    );
    // A message that is no echo reply is not sent.
    let flow = edge.opened[0].flow;
    assert_eq!(
        net.edge.ip_flow_send(flow, &[3, 3, 0, 0, 0, 0, 0, 0]),
        Ok(false)
    );
    assert_eq!(net.edge.ip_flow_send(flow, &[0, 0]), Ok(false));
    assert_eq!(net.edge.stats().ip_dropped.get("malformed"), 2);
}

#[test]
fn tcp_is_answered_prohibited_and_fragments_and_other_icmp_are_dropped() {
    let mut net = pair(true, LONG);
    let mut client = Client::default();
    let syn = ipv4("8.8.8.8", protocol::TCP, 0x4000, &tcp_syn(40000));
    let syn6 = ipv6("2001:4860:4860::8888", protocol::TCP, &tcp_syn(40001));
    let mut fragment = udp(from4(5000), addr("8.8.8.8:53"), b"first piece");
    // More Fragments, offset 0: a first fragment; the header checksum fixed.
    fragment[6] = 0x20;
    fragment[10..12].fill(0);
    let checksum = internet_checksum(&fragment[..20]);
    fragment[10..12].copy_from_slice(&checksum.to_be_bytes());
    // An echo reply from the client: no flow takes it.
    let mut reply = echo_request(false, 1, 1, b"x");
    reply[0] = 0;
    client.outbox.extend([
        syn.clone(),
        syn6.clone(),
        fragment,
        ipv4("9.9.9.9", protocol::ICMP, 0x4000, &reply),
    ]);
    let mut edge = Edge::default();
    assert!(
        net.run_until_net(&mut client, &mut edge, BUDGET, |net, c, _| {
            c.received.len() >= 2 && net.edge.stats().ip_dropped.total() >= 2
        })
    );
    let mut seen = Vec::new();
    for packet in parsed(&client.received) {
        let (Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp)) = packet.transport() else {
            panic!("not ICMP: {packet:?}");
        };
        assert!(icmp.checksum_valid());
        seen.push((
            packet.source(),
            packet.destination(),
            icmp.icmp_type(),
            icmp.code(),
            icmp.payload().to_vec(),
        ));
    }
    seen.sort();
    // The quotes are the packets as the edge received them: hop limit one lower.
    let (mut quoted4, mut quoted6) = (syn, syn6);
    veil_proto::ip::decrement_hop_limit(&mut quoted4).expect("hop");
    veil_proto::ip::decrement_hop_limit(&mut quoted6).expect("hop");
    assert_eq!(
        seen,
        [
            (ip("10.89.0.1"), ip(CLIENT4), 3, 13, quoted4),
            (ip("fd00:89::1"), ip(CLIENT6), 1, 1, quoted6),
        ]
    );
    assert!(
        edge.opened.is_empty(),
        "no flow for TCP, fragments or replies"
    );
    let stats = net.edge.stats();
    assert_eq!(stats.ip_icmp_answers, 2);
    assert_eq!(stats.ip_dropped.get("fragment"), 1);
    assert_eq!(stats.ip_dropped.get("not_decapsulated"), 1);
    assert_eq!(stats.ip_decap_flows_opened, 0);
}

#[test]
fn a_forbidden_destination_never_opens_a_flow() {
    let mut net = pair(true, LONG);
    let mut client = Client::default();
    client.outbox.extend([
        udp(from4(5000), addr("10.0.0.1:53"), b"private"),
        udp(from4(5001), addr("8.8.8.8:53"), b"public"),
    ]);
    let mut edge = Edge::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, e| {
        !c.received.is_empty() && !e.opened.is_empty()
    }));
    assert_eq!(edge.opened.len(), 1);
    assert_eq!(edge.opened[0].destination, addr("8.8.8.8:53"));
    let answer = IpPacket::new_checked(&client.received[0]).expect("packet");
    let Transport::Icmpv4(icmp) = answer.transport() else {
        panic!("not ICMP");
    };
    assert_eq!((icmp.icmp_type(), icmp.code()), (3, 13));
    assert_eq!(answer.source(), ip("10.89.0.1"));
}

#[test]
fn an_idle_flow_closes_and_a_later_packet_opens_a_new_one() {
    let idle = Duration::from_millis(300);
    let mut net = pair(true, idle);
    let mut client = Client::default();
    client
        .outbox
        .push_back(udp(from4(5000), addr("8.8.8.8:53"), b"once"));
    // Another flow keeps the tunnel busy, so that only the first flow idles.
    client.keepalive = Some((
        udp(from4(6000), addr("1.1.1.1:53"), b"busy"),
        Duration::from_millis(50),
        None,
    ));
    let mut edge = Edge::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |_, e| !e.closed.is_empty()));
    let first = edge
        .opened
        .iter()
        .find(|o| o.destination == addr("8.8.8.8:53"))
        .expect("opened")
        .clone();
    let busy = edge
        .opened
        .iter()
        .find(|o| o.destination == addr("1.1.1.1:53"))
        .expect("opened")
        .clone();
    assert_eq!(edge.closed, [first.flow], "only the idle flow closed");
    assert!(edge.tunnels_closed.is_empty(), "the tunnel stays");
    let mut buf = [0; 100];
    assert_eq!(
        net.edge.ip_flow_recv(first.flow, &mut buf),
        Err(TunnelError::UnknownTunnel)
    );
    assert_eq!(
        net.edge.ip_flow_send(first.flow, b"late"),
        Err(TunnelError::UnknownTunnel)
    );

    // The same 5-tuple again: a new flow, with a new id.
    client
        .outbox
        .push_back(udp(from4(5000), addr("8.8.8.8:53"), b"again"));
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |_, e| e.opened.len() >= 3));
    let again = edge.opened[2].clone();
    assert_eq!(again.destination, first.destination);
    assert!(again.flow != first.flow && again.flow != busy.flow);
    assert_eq!(edge.payloads[&again.flow], [b"again".to_vec()]);

    // The host closes a flow: it is forgotten and reported.
    net.edge.ip_flow_close(again.flow).expect("close");
    assert_eq!(
        net.edge.ip_flow_close(again.flow),
        Err(TunnelError::UnknownTunnel)
    );
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |_, e| {
        e.closed.contains(&again.flow)
    }));
    assert_eq!(net.edge.stats().ip_decap_flows, 1, "the busy one");
}

#[test]
fn a_tunnels_end_closes_its_flows() {
    let mut net = pair(true, LONG);
    let mut client = Client::default();
    client.outbox.extend([
        udp(from4(5000), addr("8.8.8.8:53"), b"one"),
        udp(from4(5001), addr("1.1.1.1:53"), b"two"),
    ]);
    let mut edge = Edge::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |_, e| e.opened.len() >= 2));
    assert!(edge.closed.is_empty());
    let tunnel = client.tunnel.expect("open");
    net.client.tunnel_abort(tunnel).expect("abort");
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |_, e| {
        !e.tunnels_closed.is_empty()
    }));
    let mut closed = edge.closed.clone();
    closed.sort();
    let mut opened: Vec<IpFlowId> = edge.opened.iter().map(|o| o.flow).collect();
    opened.sort();
    assert_eq!(closed, opened);
    assert_eq!(net.edge.stats().ip_decap_flows, 0);
    assert_eq!(
        net.edge.ip_flow_send(opened[0], b"late"),
        Err(TunnelError::UnknownTunnel)
    );
}

#[test]
fn a_tunnel_and_its_flows_idling_together_close_each_flow_once() {
    let mut net = pair(true, LONG);
    let mut client = Client::default();
    client
        .outbox
        .push_back(udp(from4(5000), addr("8.8.8.8:53"), b"one"));
    let mut edge = Edge::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |_, e| !e.opened.is_empty()));
    net.edge
        .handle_timeout(Instant::now() + LONG + Duration::from_secs(1));
    let events: Vec<Event> = std::iter::from_fn(|| net.edge.poll_event()).collect();
    // The flow and its tunnel idle together: the flow is reported closed once.
    let flow = edge.opened[0].flow;
    let closed = events
        .iter()
        .filter(|e| **e == Event::IpFlowClosed { flow })
        .count();
    assert_eq!(closed, 1, "{events:?}");
    assert!(
        events.contains(&Event::TunnelClosed {
            tunnel: edge.opened[0].tunnel,
            reason: veil_engine::CloseReason::IdleTimeout
        }),
        "{events:?}"
    );
    assert_eq!(net.edge.stats().ip_decap_flows, 0);
}

#[test]
fn without_decap_the_host_gets_whole_packets_as_before() {
    let mut net = pair(false, LONG);
    let mut client = Client::default();
    let packet = udp(from4(5000), addr("8.8.8.8:53"), b"query");
    client.outbox.push_back(packet.clone());
    let mut edge = Edge::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |_, e| !e.packets.is_empty()));
    let mut expected = packet;
    veil_proto::ip::decrement_hop_limit(&mut expected).expect("hop");
    assert_eq!(edge.packets, [expected]);
    assert!(edge.opened.is_empty());
    assert_eq!(net.edge.stats().ip_decap_flows_opened, 0);
}

//! The `ip_flow` hook: asked once per flow inside a CONNECT-IP tunnel, its verdict applied
//! to the flow's later packets, refused flows dropped and counted, and the per-tunnel flow
//! table bounded.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use veil_engine::{
    Config, EdgeConfig, Endpoint, FlowProtocol, IpFlowQuery, IpFlowVerdict, Policy, QuicConfig,
    Tags, TunnelQuery, TunnelVerdict,
};
use veil_proto::ip::{IpPacket, Transport};
use veil_proto::masque::ip::Scope;

use crate::BUDGET;
use crate::harness::Net;
use crate::ip::{IpClient, IpEdge, addr, udp};

/// What the hook was shown of one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    protocol: FlowProtocol,
    source: SocketAddr,
    destination: SocketAddr,
    packet_len: usize,
    payload: Vec<u8>,
    tunnel_tags: Vec<String>,
}

/// Tags every tunnel `tier:gold`, refuses UDP to port 53, passes the rest, and keeps what
/// it was shown.
struct NoDns {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Policy for NoDns {
    fn tunnel(&mut self, _: &TunnelQuery<'_>, tags: &mut Tags) -> TunnelVerdict {
        tags.push("tier:gold").expect("a valid tag");
        TunnelVerdict::Pass
    }

    fn ip_flow(&mut self, query: &IpFlowQuery<'_>, tags: &mut Tags) -> IpFlowVerdict {
        self.seen.lock().expect("lock").push(Seen {
            protocol: query.protocol,
            source: query.source,
            destination: query.destination,
            packet_len: query.packet_len,
            payload: query.payload.to_vec(),
            tunnel_tags: query.tunnel_tags.iter().map(str::to_owned).collect(),
        });
        if query.protocol == FlowProtocol::Udp && query.destination.port() == 53 {
            tags.push("blocked:dns").expect("a valid tag");
            IpFlowVerdict::Refuse
        } else {
            IpFlowVerdict::Pass
        }
    }
}

/// A client and an edge whose IP tunnels' flow tables hold `flows_per_tunnel` flows, the
/// edge consulting `policy`.
fn pair(flows_per_tunnel: usize, policy: impl Policy + 'static) -> Net {
    let edge = EdgeConfig {
        ip_pools: vec!["10.89.0.0/24".to_owned()],
        ip_flows_per_tunnel: flows_per_tunnel,
        ..EdgeConfig::default()
    };
    let edge = Endpoint::new(Config::edge(edge), Instant::now())
        .expect("edge")
        .with_policy(policy);
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

const BIG: [u8; 100] = [0xab; 100];

/// Three rounds of one packet to each of three flows: DNS (refused), and two others.
fn three_flows(source: IpAddr) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    for _ in 0..3 {
        packets.push(udp(
            SocketAddr::new(source, 5000),
            addr("8.8.8.8:53"),
            b"dns query",
        ));
        packets.push(udp(
            SocketAddr::new(source, 5001),
            addr("8.8.8.8:443"),
            b"quic",
        ));
        packets.push(udp(
            SocketAddr::new(source, 5002),
            addr("1.1.1.1:443"),
            &BIG,
        ));
    }
    packets
}

#[test]
fn the_hook_judges_each_flow_once_and_refused_flows_never_reach_the_host() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut net = pair(
        4096,
        NoDns {
            seen: Arc::clone(&seen),
        },
    );
    let mut client = IpClient::new(Scope::ANY, three_flows, 6);
    let mut edge = IpEdge::default();
    assert!(
        net.run_until_net(&mut client, &mut edge, BUDGET, |net, client, _| {
            client.received.len() >= 6 && net.edge.stats().ip_dropped.get("flow_refused") >= 3
        }),
        "the passed flows' answers and the refused flow's drops did not all come"
    );
    assert_eq!(client.sent, 9);

    // The host got the passed flows' six packets, and nothing for port 53.
    assert_eq!(edge.received.len(), 6);
    for packet in &edge.received {
        let view = IpPacket::new_checked(packet).expect("packet");
        let Transport::Udp(datagram) = view.transport() else {
            panic!("not UDP");
        };
        assert_eq!(datagram.destination_port(), 443);
    }
    assert_eq!(client.received.len(), 6, "an answer to each passed packet");

    // Asked once per flow, in the order the flows began, with the first packet's facts.
    let source = client.v4().expect("an address");
    let seen = seen.lock().expect("lock").clone();
    let first = three_flows(source);
    let expected: Vec<Seen> = [
        (5000, "8.8.8.8:53", &b"dns query"[..], &first[0]),
        (5001, "8.8.8.8:443", &b"quic"[..], &first[1]),
        // Only the first 64 payload bytes are shown.
        (5002, "1.1.1.1:443", &BIG[..64], &first[2]),
    ]
    .into_iter()
    .map(|(port, to, payload, packet)| Seen {
        protocol: FlowProtocol::Udp,
        source: SocketAddr::new(source, port),
        destination: addr(to),
        packet_len: packet.len(),
        payload: payload.to_vec(),
        tunnel_tags: vec!["tier:gold".to_owned()],
    })
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(IpFlowQuery::PAYLOAD_PREFIX, 64);

    let stats = net.edge.stats();
    assert_eq!(stats.ip_dropped.get("flow_refused"), 3);
    assert_eq!(stats.ip_dropped.total(), 3);
    assert_eq!(stats.ip_flows, 3);
    assert_eq!(stats.ip_flows_evicted, 0);
    assert_eq!(stats.ip_packets_forwarded, 6 + 6, "six in, six answers out");
    let tunnel = edge_tunnel(&edge);
    assert_eq!(net.edge.ip_tunnel_flows(tunnel), Some(3));
    let text = veil_engine::metrics::encode_text(&stats);
    assert!(
        text.contains("veil_ip_packets_dropped_total{cause=\"flow_refused\"} 3"),
        "{text}"
    );
    assert!(text.contains("veil_ip_flows_total 3"), "{text}");
}

/// The edge's tunnel, from its first delivery.
fn edge_tunnel(edge: &IpEdge) -> veil_engine::TunnelId {
    match edge.deliveries.first() {
        Some(veil_engine::IpDelivery::Sent(tunnel)) => *tunnel,
        other => panic!("no delivery: {other:?}"),
    }
}

/// Counts the hook's calls, passing everything.
struct Counting(Arc<Mutex<Vec<u16>>>);

impl Policy for Counting {
    fn ip_flow(&mut self, query: &IpFlowQuery<'_>, _: &mut Tags) -> IpFlowVerdict {
        self.0.lock().expect("lock").push(query.source.port());
        IpFlowVerdict::Pass
    }
}

#[test]
fn a_full_flow_table_evicts_the_least_recently_seen_flow_which_is_then_asked_again() {
    // Flows 1, 2, 3, then 1 again, in a table of two: 3 evicts 1, and 1 evicts 2.
    fn flows(source: IpAddr) -> Vec<Vec<u8>> {
        [6001, 6002, 6003, 6001]
            .into_iter()
            .map(|port| udp(SocketAddr::new(source, port), addr("8.8.8.8:443"), b"x"))
            .collect()
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut net = pair(2, Counting(Arc::clone(&calls)));
    let mut client = IpClient::new(Scope::ANY, flows, 4);
    let mut edge = IpEdge::default();
    assert!(net.run(&mut client, &mut edge, BUDGET));
    assert_eq!(edge.received.len(), 4);
    assert_eq!(*calls.lock().expect("lock"), [6001, 6002, 6003, 6001]);
    let stats = net.edge.stats();
    assert_eq!((stats.ip_flows, stats.ip_flows_evicted), (4, 2));
    assert_eq!(net.edge.ip_tunnel_flows(edge_tunnel(&edge)), Some(2));
}

#[test]
fn the_default_policy_passes_every_flow() {
    let mut net = pair(4096, veil_engine::DefaultPolicy);
    let mut client = IpClient::new(Scope::ANY, three_flows, 9);
    let mut edge = IpEdge::default();
    assert!(net.run(&mut client, &mut edge, BUDGET));
    assert_eq!(edge.received.len(), 9);
    let stats = net.edge.stats();
    assert_eq!(stats.ip_flows, 3);
    assert_eq!(stats.ip_dropped.total(), 0);
}

//! QUIC inside CONNECT-IP: the server name of a UDP flow's first Initial packets (made by
//! quiche itself) handed to rules on `sni` and to the `ip_flow` hook, a `ClientHello` over
//! two Initials judged once both are in, and other UDP flows untouched.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use veil_engine::rules::{EdgeAction, RuleSpec};
use veil_engine::{
    Config, EdgeConfig, Endpoint, IpFlowProtocol, IpFlowQuery, IpFlowVerdict, Policy, QuicConfig,
    Tags,
};
use veil_proto::ip::{IpPacket, Transport};
use veil_proto::masque::ip::Scope;
use veil_proto::sniff::quic::{CRYPTO_LIMIT, InitialSniffer, QuicSniffed};

use crate::BUDGET;
use crate::harness::Net;
use crate::ip::{IpClient, IpEdge, addr, udp};
use crate::ip_decap::{Client as DecapClient, Edge as DecapEdge, from4};

/// The first flight of a quiche client asking for `sni`, with `alpns` protocols of 12
/// bytes each (many make the `ClientHello` span several Initials): its datagrams.
fn quiche_initials(sni: &str, alpns: usize) -> Vec<Vec<u8>> {
    let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION).expect("config");
    let names: Vec<Vec<u8>> = (0..alpns.max(1))
        .map(|i| format!("proto-{i:05}").into_bytes())
        .collect();
    let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    config.set_application_protos(&names).expect("alpn");
    config.verify_peer(false);
    let scid = quiche::ConnectionId::from_ref(&[7; 16]);
    let mut conn = quiche::connect(
        Some(sni),
        &scid,
        addr("10.89.0.2:5000"),
        addr("8.8.8.8:443"),
        &mut config,
    )
    .expect("connect");
    let mut datagrams = Vec::new();
    let mut out = [0; 1200];
    while let Ok((len, _)) = conn.send(&mut out) {
        datagrams.push(out[..len].to_vec());
    }
    datagrams
}

/// Each of `datagrams` as a UDP packet from `from` to `to`.
fn wrapped(from: SocketAddr, to: SocketAddr, datagrams: &[Vec<u8>]) -> Vec<Vec<u8>> {
    datagrams.iter().map(|d| udp(from, to, d)).collect()
}

fn deny_sni(names: &[&str]) -> RuleSpec<EdgeAction> {
    RuleSpec {
        target: vec!["8.0.0.0/8".to_owned()],
        host: Vec::new(),
        ports: Vec::new(),
        protocol: Vec::new(),
        identity: Vec::new(),
        sni: names.iter().map(|n| (*n).to_owned()).collect(),
        proxy_protocol: None,
        idle_timeout_ms: None,
        max_duration_ms: None,
        action: EdgeAction::Deny,
    }
}

/// Each flow the hook was asked about: its source port and server name.
type Seen = Arc<Mutex<Vec<(u16, Option<String>)>>>;

/// Keeps the server name of every flow it is asked about; wants names or not.
struct Names {
    seen: Seen,
    wants: bool,
}

impl Policy for Names {
    fn ip_flow(&mut self, query: &IpFlowQuery<'_>, _: &mut Tags) -> IpFlowVerdict {
        self.seen
            .lock()
            .expect("lock")
            .push((query.source.port(), query.sni.map(str::to_owned)));
        IpFlowVerdict::Pass
    }

    fn ip_flow_wants_sni(&self) -> bool {
        self.wants
    }
}

fn pair(rules: Vec<RuleSpec<EdgeAction>>, policy: impl Policy + 'static) -> Net {
    let edge = EdgeConfig {
        ip_pools: vec!["10.89.0.0/24".to_owned()],
        rules,
        ..EdgeConfig::default()
    };
    pair_with(edge, policy)
}

/// A client and an edge with `edge`'s configuration and `policy`.
fn pair_with(edge: EdgeConfig, policy: impl Policy + 'static) -> Net {
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

/// The UDP source ports of the packets the edge's host got, in order.
fn source_ports(edge: &IpEdge) -> Vec<u16> {
    edge.received
        .iter()
        .map(|packet| {
            let view = IpPacket::new_checked(packet).expect("packet");
            let Transport::Udp(datagram) = view.transport() else {
                panic!("not UDP");
            };
            datagram.source_port()
        })
        .collect()
}

/// A QUIC flow to `blocked.example` (port 5000), one to `allowed.example` (5001), and a
/// plain UDP flow (5002), all to 8.8.8.8.
fn three_flows(source: IpAddr) -> Vec<Vec<u8>> {
    let to = addr("8.8.8.8:443");
    let mut packets = wrapped(
        SocketAddr::new(source, 5000),
        to,
        &quiche_initials("blocked.example", 1)[..1],
    );
    packets.extend(wrapped(
        SocketAddr::new(source, 5001),
        to,
        &quiche_initials("allowed.example", 1)[..1],
    ));
    packets.push(udp(SocketAddr::new(source, 5002), to, b"not quic"));
    packets
}

#[test]
fn a_rule_on_sni_refuses_a_quic_flow_by_name_and_not_the_others() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = Names {
        seen: Arc::clone(&seen),
        wants: false,
    };
    let mut net = pair(vec![deny_sni(&["blocked.example"])], policy);
    let mut client = IpClient::new(Scope::ANY, three_flows, 2);
    let mut edge = IpEdge::default();
    assert!(
        net.run_until_net(&mut client, &mut edge, BUDGET, |net, client, _| {
            client.received.len() >= 2 && net.edge.stats().ip_dropped.get("flow_refused") >= 1
        }),
        "the two passed flows' answers and the refused flow's drop did not all come"
    );
    assert_eq!(client.sent, 3);
    assert_eq!(source_ports(&edge), [5001, 5002]);
    assert_eq!(net.edge.stats().ip_dropped.get("flow_refused"), 1);
    // The rule refused the blocked flow before the hook; the hook, which did not ask for
    // names, still got the name the rules needed read.
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [(5001, Some("allowed.example".to_owned())), (5002, None)]
    );
}

/// One QUIC flow (port 5001) and a plain one (5002), to 8.8.8.8.
fn named_and_plain(source: IpAddr) -> Vec<Vec<u8>> {
    let to = addr("8.8.8.8:443");
    let mut packets = wrapped(
        SocketAddr::new(source, 5001),
        to,
        &quiche_initials("hooked.example", 1)[..1],
    );
    packets.push(udp(SocketAddr::new(source, 5002), to, b"not quic"));
    packets
}

#[test]
fn the_hook_that_wants_names_sees_them() {
    for wants in [true, false] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let policy = Names {
            seen: Arc::clone(&seen),
            wants,
        };
        let mut net = pair(Vec::new(), policy);
        let mut client = IpClient::new(Scope::ANY, named_and_plain, 2);
        let mut edge = IpEdge::default();
        assert!(
            net.run_until_net(&mut client, &mut edge, BUDGET, |_, client, _| {
                client.received.len() >= 2
            }),
            "both flows' answers did not come"
        );
        assert_eq!(source_ports(&edge), [5001, 5002]);
        let name = wants.then(|| "hooked.example".to_owned());
        assert_eq!(*seen.lock().expect("lock"), [(5001, name), (5002, None)]);
    }
}

/// The test's premise: the name of `datagrams`' hello comes with the last of them, not
/// before.
fn assert_needs_every_initial(datagrams: &[Vec<u8>], name: &str) {
    let n = datagrams.len();
    let mut crypto = [0; CRYPTO_LIMIT];
    let mut sniffer = InitialSniffer::new();
    for (i, datagram) in datagrams.iter().enumerate() {
        let expected = if i + 1 < n {
            QuicSniffed::NeedMore
        } else {
            QuicSniffed::ServerName(name)
        };
        assert_eq!(
            sniffer.sniff(&mut datagram.clone(), &mut crypto),
            expected,
            "Initial {i} of {n}"
        );
    }
}

/// Many ALPNs: a `ClientHello` over two Initials or more. Sent in reverse order, so that the
/// first packet the edge sees has the hello's end only.
fn big_hello_datagrams() -> Vec<Vec<u8>> {
    let mut datagrams = quiche_initials("two.example", 100);
    datagrams.reverse();
    datagrams
}

fn big_hello_then_plain(source: IpAddr) -> Vec<Vec<u8>> {
    let to = addr("8.8.8.8:443");
    let mut packets = wrapped(SocketAddr::new(source, 5001), to, &big_hello_datagrams());
    packets.push(udp(SocketAddr::new(source, 5002), to, b"not quic"));
    packets
}

#[test]
fn a_client_hello_over_two_initials_is_judged_once_both_are_in() {
    // The test's premise: one Initial alone does not give the name.
    let datagrams = big_hello_datagrams();
    let n = datagrams.len();
    assert!((2..=4).contains(&n), "the hello spans {n} Initials");
    assert_needs_every_initial(&datagrams, "two.example");

    // Passed: the hook sees the name; the host gets both packets, in the order sent,
    // and the plain flow's.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = Names {
        seen: Arc::clone(&seen),
        wants: true,
    };
    let mut net = pair(Vec::new(), policy);
    let mut client = IpClient::new(Scope::ANY, big_hello_then_plain, n + 1);
    let mut edge = IpEdge::default();
    assert!(
        net.run_until_net(&mut client, &mut edge, BUDGET, |_, client, _| {
            client.received.len() > n
        }),
        "the answers did not all come"
    );
    assert_eq!(
        *seen.lock().expect("lock"),
        [(5001, Some("two.example".to_owned())), (5002, None)]
    );
    let payloads: Vec<Vec<u8>> = edge
        .received
        .iter()
        .map(|packet| {
            let view = IpPacket::new_checked(packet).expect("packet");
            let Transport::Udp(datagram) = view.transport() else {
                panic!("not UDP");
            };
            datagram.payload().to_vec()
        })
        .collect();
    // The same connection's Initials (each call makes a new connection: compare shapes).
    for payload in &payloads[..n] {
        assert_eq!(payload.len(), 1200);
        assert_eq!(payload[0] & 0xf0, 0xc0, "a long-header Initial");
        assert_eq!(payload[6..22], payloads[0][6..22], "one connection's DCID");
    }
    let mut ports = vec![5001; n];
    ports.push(5002);
    assert_eq!(source_ports(&edge), ports);

    // Refused by a rule on the name: both packets dropped, counted; the plain flow passes.
    let mut net = pair(
        vec![deny_sni(&["two.example"])],
        Names {
            seen: Arc::default(),
            wants: false,
        },
    );
    let mut client = IpClient::new(Scope::ANY, big_hello_then_plain, 1);
    let mut edge = IpEdge::default();
    assert!(
        net.run_until_net(&mut client, &mut edge, BUDGET, |net, client, _| {
            !client.received.is_empty()
                && net.edge.stats().ip_dropped.get("flow_refused") >= n as u64
        }),
        "the plain flow's answer and the drops did not all come"
    );
    assert_eq!(source_ports(&edge), [5002]);
    assert_eq!(net.edge.stats().ip_dropped.get("flow_refused"), n as u64);
}

/// Only the second half of a two-Initial hello: its name never completes.
fn half_a_hello(source: IpAddr) -> Vec<Vec<u8>> {
    let to = addr("8.8.8.8:443");
    wrapped(
        SocketAddr::new(source, 5001),
        to,
        &big_hello_datagrams()[..1],
    )
}

#[test]
fn a_held_flow_is_judged_without_a_name_when_its_wait_ends() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = Names {
        seen: Arc::clone(&seen),
        wants: true,
    };
    let mut net = pair(Vec::new(), policy);
    let mut client = IpClient::new(Scope::ANY, half_a_hello, 1);
    let mut edge = IpEdge::default();
    assert!(
        net.run_until_net(&mut client, &mut edge, BUDGET, |_, client, _| {
            !client.received.is_empty()
        }),
        "the held packet was never released"
    );
    assert_eq!(*seen.lock().expect("lock"), [(5001, None)]);
    assert_eq!(source_ports(&edge), [5001]);
}

// The `decap` off-ramp (`EdgeConfig::ip_decap`): the same verdict point, and the packets a
// held flow releases taken apart into the flow the host reads with `ip_flow_recv`.

/// A client and an edge that decapsulates, with pools of both families (what
/// `ip_decap::Client` waits for), `rules` and `policy`.
fn decap_pair(rules: Vec<RuleSpec<EdgeAction>>, policy: impl Policy + 'static) -> Net {
    let edge = EdgeConfig {
        ip_pools: vec!["10.89.0.0/24".to_owned(), "fd00:89::/64".to_owned()],
        ip_decap: true,
        rules,
        ..EdgeConfig::default()
    };
    pair_with(edge, policy)
}

/// Each of `datagrams` as a UDP packet from the decap client's port `port` to 8.8.8.8:443.
fn to_google(port: u16, datagrams: &[Vec<u8>]) -> Vec<Vec<u8>> {
    wrapped(from4(port), addr("8.8.8.8:443"), datagrams)
}

/// A hook that keeps the names and wants them: the flows it saw.
fn names_wanted() -> (Names, Seen) {
    let seen: Seen = Arc::default();
    let policy = Names {
        seen: Arc::clone(&seen),
        wants: true,
    };
    (policy, seen)
}

/// Where each payload `got` stands in `sent` (`None`: nowhere), for short messages when
/// they differ.
fn indices(sent: &[Vec<u8>], got: &[Vec<u8>]) -> Vec<Option<usize>> {
    got.iter()
        .map(|payload| sent.iter().position(|s| s == payload))
        .collect()
}

/// All the payloads the decap host read, on every flow.
fn payload_count(edge: &DecapEdge) -> usize {
    edge.payloads.values().map(Vec::len).sum()
}

#[test]
fn decap_a_rule_on_sni_refuses_a_quic_flow_by_name_before_it_opens() {
    let (policy, seen) = names_wanted();
    let mut net = decap_pair(vec![deny_sni(&["blocked.example"])], policy);
    let blocked = quiche_initials("blocked.example", 1);
    let allowed = quiche_initials("allowed.example", 1);
    let mut client = DecapClient::default();
    client.outbox.extend(to_google(5000, &blocked[..1]));
    client.outbox.extend(to_google(5001, &allowed[..1]));
    client
        .outbox
        .extend(to_google(5002, &[b"not quic".to_vec()]));
    let mut edge = DecapEdge::default();
    assert!(
        net.run_until_net(&mut client, &mut edge, BUDGET, |net, _, edge| {
            payload_count(edge) >= 2 && net.edge.stats().ip_dropped.get("flow_refused") >= 1
        }),
        "the two passed flows' payloads and the refused flow's drop did not all come"
    );
    // Two flows: the allowed QUIC flow, whose first payload is exactly its first
    // Initial's UDP payload, then the plain one; none for the blocked name.
    let opened: Vec<(IpFlowProtocol, SocketAddr)> = edge
        .opened
        .iter()
        .map(|o| (o.protocol, o.destination))
        .collect();
    let to = addr("8.8.8.8:443");
    assert_eq!(
        opened,
        [(IpFlowProtocol::Udp, to), (IpFlowProtocol::Udp, to)]
    );
    let first = &edge.payloads[&edge.opened[0].flow];
    assert_eq!(indices(&allowed[..1], first), [Some(0)]);
    assert_eq!(edge.payloads[&edge.opened[1].flow], [b"not quic".to_vec()]);
    assert!(edge.packets.is_empty(), "no whole packet reaches the host");
    let stats = net.edge.stats();
    assert_eq!(stats.ip_dropped.get("flow_refused"), 1);
    assert_eq!(stats.ip_dropped.total(), 1);
    assert_eq!(stats.ip_decap_flows_opened, 2);
    assert_eq!(stats.ip_packets_forwarded, 2);
    // The rule refused the blocked flow before the hook.
    assert_eq!(
        *seen.lock().expect("lock"),
        [(5001, Some("allowed.example".to_owned())), (5002, None)]
    );
}

#[test]
fn decap_a_client_hello_over_several_initials_releases_every_held_packet_in_order() {
    // The test's premise: the edge must hold all but the last Initial.
    let datagrams = big_hello_datagrams();
    let n = datagrams.len();
    assert!((2..=4).contains(&n), "the hello spans {n} Initials");
    assert_needs_every_initial(&datagrams, "two.example");
    let after = b"after the hello".to_vec();
    let outbox = || {
        let mut packets = to_google(5001, &datagrams);
        packets.extend(to_google(5001, std::slice::from_ref(&after)));
        packets.extend(to_google(5002, &[b"not quic".to_vec()]));
        packets
    };

    // Allowed: one flow gets the held Initials, in the order sent, once each, then the
    // packet that came after them; the plain flow opens after it.
    let (policy, seen) = names_wanted();
    let mut net = decap_pair(vec![deny_sni(&["blocked.example"])], policy);
    let mut client = DecapClient::default();
    client.outbox.extend(outbox());
    let mut edge = DecapEdge::default();
    assert!(
        net.run_until(&mut client, &mut edge, BUDGET, |_, edge| {
            payload_count(edge) >= n + 2
        }),
        "the payloads did not all come"
    );
    assert_eq!(edge.opened.len(), 2);
    let mut sent = datagrams.clone();
    sent.push(after.clone());
    let expected: Vec<Option<usize>> = (0..=n).map(Some).collect();
    assert_eq!(
        indices(&sent, &edge.payloads[&edge.opened[0].flow]),
        expected,
        "the flow's payloads, as indices of the packets sent"
    );
    assert_eq!(edge.payloads[&edge.opened[1].flow], [b"not quic".to_vec()]);
    assert_eq!(
        *seen.lock().expect("lock"),
        [(5001, Some("two.example".to_owned())), (5002, None)],
        "the QUIC flow was judged once, with the name"
    );
    let stats = net.edge.stats();
    assert_eq!(stats.ip_dropped.total(), 0);
    assert_eq!(stats.ip_packets_forwarded, n as u64 + 2);
    assert_eq!(stats.ip_decap_flows_opened, 2);

    // Refused by a rule on the name: the held Initials and the packet after them are
    // dropped, counted; only the plain flow opens.
    let mut net = decap_pair(vec![deny_sni(&["two.example"])], names_wanted().0);
    let mut client = DecapClient::default();
    client.outbox.extend(outbox());
    let mut edge = DecapEdge::default();
    assert!(
        net.run_until_net(&mut client, &mut edge, BUDGET, |net, _, edge| {
            !edge.payloads.is_empty() && net.edge.stats().ip_dropped.get("flow_refused") > n as u64
        }),
        "the plain flow's payload and the drops did not all come"
    );
    assert_eq!(edge.opened.len(), 1);
    assert_eq!(edge.payloads[&edge.opened[0].flow], [b"not quic".to_vec()]);
    let stats = net.edge.stats();
    assert_eq!(stats.ip_dropped.get("flow_refused"), n as u64 + 1);
    assert_eq!(stats.ip_decap_flows_opened, 1);
}

/// A hello over three Initials or more, its first part last (as `big_hello_datagrams`).
fn bigger_hello_datagrams() -> Vec<Vec<u8>> {
    let mut datagrams = quiche_initials("three.example", 250);
    datagrams.reverse();
    datagrams
}

#[test]
fn decap_held_packets_reach_their_flow_without_a_name_when_the_wait_ends() {
    // Every Initial but the one that starts the hello: its name never completes, and
    // the edge holds them all (fewer than `MAX_HELD_PACKETS`) until the wait ends.
    let mut datagrams = bigger_hello_datagrams();
    let n = datagrams.len();
    assert!((3..=4).contains(&n), "the hello spans {n} Initials");
    assert_needs_every_initial(&datagrams, "three.example");
    datagrams.pop();

    let (policy, seen) = names_wanted();
    let mut net = decap_pair(vec![deny_sni(&["blocked.example"])], policy);
    let mut client = DecapClient::default();
    let mut edge = DecapEdge::default();
    assert!(
        net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.configured),
        "the tunnel was not configured"
    );
    let start = Instant::now();
    client.outbox.extend(to_google(5001, &datagrams));
    assert!(
        net.run_until(&mut client, &mut edge, BUDGET, |_, edge| {
            payload_count(edge) >= datagrams.len()
        }),
        "the held packets were never released"
    );
    assert!(
        start.elapsed() >= IpFlowQuery::SNI_WAIT,
        "released after {:?}, before the wait ended",
        start.elapsed()
    );
    assert_eq!(edge.opened.len(), 1);
    let expected: Vec<Option<usize>> = (0..datagrams.len()).map(Some).collect();
    assert_eq!(
        indices(&datagrams, &edge.payloads[&edge.opened[0].flow]),
        expected,
        "the flow's payloads, as indices of the packets sent"
    );
    assert_eq!(*seen.lock().expect("lock"), [(5001, None)]);
    let stats = net.edge.stats();
    assert_eq!(stats.ip_dropped.total(), 0);
    assert_eq!(stats.ip_packets_forwarded, datagrams.len() as u64);
}

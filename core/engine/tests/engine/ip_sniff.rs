//! QUIC inside CONNECT-IP: the server name of a UDP flow's first Initial packets (made by
//! quiche itself) handed to rules on `sni` and to the `ip_flow` hook, a `ClientHello` over
//! two Initials judged once both are in, and other UDP flows untouched.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use veil_engine::rules::{EdgeAction, RuleSpec};
use veil_engine::{
    Config, EdgeConfig, Endpoint, IpFlowQuery, IpFlowVerdict, Policy, QuicConfig, Tags,
};
use veil_proto::ip::{IpPacket, Transport};
use veil_proto::masque::ip::Scope;
use veil_proto::sniff::quic::{CRYPTO_LIMIT, InitialSniffer, QuicSniffed};

use crate::BUDGET;
use crate::harness::Net;
use crate::ip::{IpClient, IpEdge, addr, udp};

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
    let mut crypto = [0; CRYPTO_LIMIT];
    let mut sniffer = InitialSniffer::new();
    for (i, datagram) in datagrams.iter().enumerate() {
        let expected = if i + 1 < n {
            QuicSniffed::NeedMore
        } else {
            QuicSniffed::ServerName("two.example")
        };
        assert_eq!(sniffer.sniff(&mut datagram.clone(), &mut crypto), expected);
    }

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

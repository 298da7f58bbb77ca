//! The steering program on the glommio edge: a client's lanes (connection IDs in the
//! edge's layout, the lane as the core) land on the cores their numbers name, not where
//! the kernel's 4-tuple hash would put them, and nothing needs forwarding.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::time::Duration;

use veil_engine::{CidLayout, ClientConfig, Config, EdgeConfig, TunnelTarget, Verify};
use veil_glommio::{Edge, Options};
use veil_tokio::{Node, client_bind_addr};

#[tokio::test]
async fn each_lane_lands_on_the_core_its_number_names() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let options = Options {
        cores: 2,
        ..Options::default()
    };
    let edge = Edge::start(Config::edge(EdgeConfig::default()), loopback, options).expect("edge");
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    // Three lanes of one client: lanes 0 and 2 on core 0, lane 1 on core 1. Lane i opens
    // 2^i tunnels, so that the cores' counts say which lane each holds (the kernel's hash
    // alone would give this placement one time in eight).
    let mut lanes = Vec::new();
    for lane in 0..3 {
        let node = Node::start(
            Config::client(ClientConfig::new(
                edge.local_addr(),
                "localhost",
                Verify::Pin(pin),
            )),
            client_bind_addr(edge.local_addr()),
            veil_tokio::Options {
                cid_layout: CidLayout::new(lane, 3),
                ..veil_tokio::Options::default()
            },
        )
        .expect("client");
        // A loopback target: refused by the edge's default egress policy, after the
        // handshake that makes the connection.
        for _ in 0..1 << lane {
            let target =
                TunnelTarget::new(std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST), 9);
            let answer = tokio::time::timeout(Duration::from_secs(20), node.opener().open(target))
                .await
                .expect("in time");
            assert!(answer.is_err(), "lane {lane}: a loopback target is refused");
        }
        lanes.push(node);
    }
    for node in lanes {
        let _ = node.shutdown(Duration::ZERO).await;
    }
    let cores = edge.shutdown(Duration::ZERO).expect("stats");
    let (mut connections, mut refused) = ([0u64; 2], [0u64; 2]);
    for core in &cores {
        connections[usize::from(core.core)] = core.endpoint.connections_total;
        refused[usize::from(core.core)] = core.endpoint.tunnels_refused;
        assert_eq!(core.forwarded_out, 0, "core {}: {core:?}", core.core);
    }
    assert_eq!(connections, [2, 1], "{cores:?}");
    assert_eq!(refused, [1 + 4, 2], "lanes 0 and 2, then lane 1: {cores:?}");
}

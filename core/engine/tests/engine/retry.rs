//! Address validation with Retry (RFC 9000 §8.1.2): an edge that asks for it makes a new
//! client come back with a token first; quiche's client follows the Retry by itself, and
//! the connection and its tunnels work as without one. Above the configured rate of
//! handshakes, only the clients beyond it are asked.

use std::time::Instant;

use veil_engine::{Config, EdgeConfig, Endpoint, RetryPolicy};

use crate::harness::Net;
use crate::hosts::{EdgeHost, Transfers};
use crate::{BUDGET, client_for, target};

fn net_with(retry: RetryPolicy) -> Net {
    let config = EdgeConfig {
        retry,
        ..EdgeConfig::default()
    };
    let edge = Endpoint::new(Config::edge(config), Instant::now()).expect("edge");
    let client = client_for(&edge, None);
    Net::new(client, edge)
}

#[test]
fn a_client_asked_to_retry_comes_back_with_its_token_and_connects() {
    let mut net = net_with(RetryPolicy::Always);
    let mut edge = EdgeHost::default();
    let mut transfer = Transfers::new(target("echo.test", 7), 2, 64 * 1024);
    assert!(
        net.run(&mut transfer, &mut edge, BUDGET),
        "{:?}",
        net.edge.stats()
    );
    let stats = net.edge.stats();
    // One Retry for each datagram of the client's first flight (its ClientHello may take
    // two Initials); the client follows the first and ignores the others.
    assert!(
        (1..=2).contains(&stats.retries),
        "{} Retries",
        stats.retries
    );
    assert_eq!(stats.retry_tokens_invalid, 0);
    assert_eq!(stats.connections_total, 1);
    assert_eq!(net.client.stats().connections_total, 1);
}

#[test]
fn no_retry_below_the_rate_or_when_never() {
    for retry in [RetryPolicy::Never, RetryPolicy::AboveRate { per_second: 5 }] {
        let mut net = net_with(retry);
        let mut edge = EdgeHost::default();
        let mut transfer = Transfers::new(target("echo.test", 7), 1, 1024);
        assert!(net.run(&mut transfer, &mut edge, BUDGET), "{retry:?}");
        assert_eq!(net.edge.stats().retries, 0, "{retry:?}");
    }
}

#[test]
fn beyond_the_rate_new_clients_are_asked_to_retry() {
    let mut net = net_with(RetryPolicy::AboveRate { per_second: 0 });
    let mut edge = EdgeHost::default();
    let mut transfer = Transfers::new(target("echo.test", 7), 1, 1024);
    assert!(net.run(&mut transfer, &mut edge, BUDGET));
    assert!(net.edge.stats().retries >= 1);
}

/// A datagram that looks like a new client's first Initial (QUIC v1 long header, random
/// connection IDs, padded to 1200 bytes) but whose payload is junk: what a flood from
/// spoofed addresses sends.
fn junk_initial(seed: u64) -> Vec<u8> {
    let mut packet = vec![0xc3, 0, 0, 0, 1, 8];
    packet.extend_from_slice(&seed.to_be_bytes()); // DCID
    packet.push(8);
    packet.extend_from_slice(&(!seed).to_be_bytes()); // SCID
    packet.push(0); // no token
    let rest = 1200 - packet.len() - 2;
    packet.extend_from_slice(&(0x4000 | u16::try_from(rest).expect("fits")).to_be_bytes());
    packet.extend((0..rest).map(|i| u8::try_from((i * 31 + 7) % 251).unwrap_or(0)));
    packet
}

/// Floods `net`'s edge with `count` junk Initials, each from its own address.
fn flood(net: &mut Net, count: u64) {
    let edge_addr = crate::harness::EDGE_ADDR.parse().expect("address");
    for seed in 0..count {
        let host = u8::try_from(seed % 250).expect("below 250");
        let port = 10_000 + u16::try_from(seed).expect("a small flood");
        let from = std::net::SocketAddr::from(([198, 51, 100, host], port));
        let mut packet = junk_initial(seed);
        net.edge.handle_datagram(
            Instant::now(),
            veil_engine::RecvMeta {
                from,
                to: edge_addr,
            },
            &mut packet,
        );
    }
}

/// Without Retry, each junk Initial of a flood from spoofed addresses costs the edge a
/// connection's state (a TLS session, quiche's connection) until it is found dead: the
/// burst below fills every connection slot at once. With Retry above a rate, each one
/// beyond the rate costs a Retry packet and no state. Either way the real client that
/// comes next connects.
#[test]
fn a_flood_of_initials_costs_state_only_without_retry() {
    for retry in [
        RetryPolicy::Never,
        RetryPolicy::AboveRate { per_second: 10 },
    ] {
        let config = EdgeConfig {
            retry,
            max_connections: 100,
            ..EdgeConfig::default()
        };
        let edge = Endpoint::new(Config::edge(config), Instant::now()).expect("edge");
        let client = client_for(&edge, None);
        let mut net = Net::new(client, edge);
        flood(&mut net, 500);
        let stats = net.edge.stats();
        if retry == RetryPolicy::Never {
            assert_eq!(
                (stats.connections, stats.retries),
                (100, 0),
                "every slot taken by the flood"
            );
        } else {
            // Beyond the 64 Retries that wait for the host to send them, the rest are
            // dropped, counted: no state either way.
            assert!(
                stats.connections <= 10
                    && stats.retries >= 64
                    && stats.retries + stats.datagrams_dropped >= 490,
                "{} connections, {} Retries, {} dropped",
                stats.connections,
                stats.retries,
                stats.datagrams_dropped
            );
        }
        let mut host = EdgeHost::default();
        let mut transfer = Transfers::new(target("echo.test", 7), 1, 1024);
        assert!(
            net.run(&mut transfer, &mut host, BUDGET),
            "{retry:?}: the real client"
        );
    }
}

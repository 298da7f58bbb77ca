//! Memory that must not grow with the tunnels a long-lived connection has carried. Its own
//! test binary, so that the process's resident memory is this test's alone.
//!
//! The leak this guards against: quiche 0.30's HTTP/3 layer keeps the state of a request
//! stream that ended with a reset of ours for the connection's life (a few hundred bytes
//! per aborted tunnel: 30,000 aborts grew the process by about 10 MB); the engine drops
//! it once the transport has forgotten the stream (`Http::forget_stream`).

// The harness and hosts of `tests/engine`, shared by path; this binary uses a part of them.
#![allow(dead_code, clippy::struct_excessive_bools)]

#[path = "engine/harness.rs"]
mod harness;
#[path = "engine/hosts.rs"]
mod hosts;

use std::time::{Duration, Instant};

use veil_engine::{ClientConfig, Config, EdgeConfig, Endpoint, TunnelTarget, Verify};

use harness::{CLIENT_ADDR, EDGE_ADDR, Net};
use hosts::{EdgeHost, Transfers};

/// Tunnels per round, and rounds.
const TUNNELS: usize = 500;
const ROUNDS: usize = 60;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
        .expect("VmRSS")
}

fn pair() -> Net {
    let now = Instant::now();
    let edge = Endpoint::new(Config::edge(EdgeConfig::default()), now).expect("edge");
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let mut config = ClientConfig::new(
        EDGE_ADDR.parse().expect("addr"),
        "localhost",
        Verify::Pin(pin),
    );
    config.local_addr = Some(CLIENT_ADDR.parse().expect("addr"));
    config.transport = veil_engine::Transport::H3;
    let client = Endpoint::new(Config::client(config), now).expect("client");
    Net::new(client, edge)
}

/// 30,000 tunnels on one connection, each reset by its target as soon as bytes arrive:
/// after the first 5,000 warm the tables up, the process grows by less than 3 MB (it grew
/// by about 10 MB before the engine dropped quiche's leftover HTTP/3 state).
#[test]
fn thirty_thousand_aborted_tunnels_on_one_connection_leave_no_state_behind() {
    let mut net = pair();
    let target = TunnelTarget::new(veil_engine::Name::new("reset.test").expect("name"), 7);
    let mut warm = 0;
    for round in 0..ROUNDS {
        let mut client = Transfers::new(target.clone(), TUNNELS, 2000);
        let mut edge = EdgeHost::default();
        let ended = net.run_until_net(
            &mut client,
            &mut edge,
            Duration::from_secs(60),
            |net, client, _| {
                client.finished + client.other_closes.len() + client.refused.len() == TUNNELS
                    && net.client.stats().tunnels == 0
                    && net.edge.stats().tunnels == 0
            },
        );
        assert!(ended, "round {round}: the tunnels did not all end");
        if round == 9 {
            warm = resident_kib();
        }
    }
    assert_eq!(
        net.client.stats().connections_total,
        1,
        "one connection throughout"
    );
    let grown = resident_kib().saturating_sub(warm);
    eprintln!(
        "memory: {} aborted tunnels after the warm-up grew the process by {grown} KiB",
        TUNNELS * (ROUNDS - 10)
    );
    assert!(
        grown < 3 * 1024,
        "{grown} KiB for {} aborted tunnels",
        TUNNELS * (ROUNDS - 10)
    );
}

//! Engine tests without sockets: a client Endpoint and an edge Endpoint exchange datagrams
//! through the in-memory link of `harness`. Each test is bounded by a wall-clock budget.

// Test hosts track each direction of a tunnel with its own flag.
#![allow(clippy::struct_excessive_bools)]

mod ack_delay;
mod audit;
mod dead_head;
mod dns;
mod drain;
mod endpoint;
mod ends;
mod fin;
mod floods;
mod harness;
mod hosts;
mod idle;
mod ip;
mod ip_decap;
mod ip_flow;
mod ip_sniff;
mod kept;
mod migration;
mod optimistic;
mod path_length;
mod policy;
mod raw;
mod reconnect;
mod refusals;
mod requests;
mod retry;
mod rules;
mod share;
mod shutdown;
mod tls;

mod tunnels;
mod udp;
mod udp_rules;

use std::time::{Duration, Instant};

use veil_engine::{
    ClientConfig, Config, EdgeConfig, Endpoint, Secret, Token, TunnelTarget, Verify,
};

use harness::{CLIENT_ADDR, EDGE_ADDR, Net};

/// The budget of one drive; every test finishes far below it when it passes.
pub(crate) const BUDGET: Duration = Duration::from_secs(20);

/// An edge with a self-signed certificate and the given tokens.
pub(crate) fn edge(tokens: &[&str]) -> Endpoint {
    let config = EdgeConfig {
        tokens: tokens
            .iter()
            .enumerate()
            .map(|(i, t)| Token::parse(t, i + 1).expect("token"))
            .collect(),
        ..EdgeConfig::default()
    };
    Endpoint::new(Config::edge(config), Instant::now()).expect("edge")
}

/// A client configuration for the edge of the harness.
pub(crate) fn client_config(verify: Verify, token: Option<&str>) -> ClientConfig {
    let mut config = ClientConfig::new(EDGE_ADDR.parse().expect("address"), "localhost", verify);
    config.local_addr = Some(CLIENT_ADDR.parse().expect("address"));
    config.token = token.map(Secret::new);
    // The harness carries datagrams only: no TCP for `Transport::Auto` to fall back to
    // (the fallback has its own tests, in `tcp::tests`).
    config.transport = veil_engine::Transport::H3;
    config
}

/// A client that pins `edge`'s certificate.
pub(crate) fn client_for(edge: &Endpoint, token: Option<&str>) -> Endpoint {
    let pin = edge.certificate_fingerprint().expect("edge fingerprint");
    let config = client_config(Verify::Pin(pin), token);
    Endpoint::new(Config::client(config), Instant::now()).expect("client")
}

/// A connected pair: an edge with `tokens` and a client that pins it and sends `token`.
pub(crate) fn pair(tokens: &[&str], token: Option<&str>) -> Net {
    let edge = edge(tokens);
    let client = client_for(&edge, token);
    Net::new(client, edge)
}

/// A target by name.
pub(crate) fn target(name: &str, port: u16) -> TunnelTarget {
    TunnelTarget::new(veil_engine::Name::new(name).expect("name"), port)
}

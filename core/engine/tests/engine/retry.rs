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

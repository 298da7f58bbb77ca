//! A client whose address changes under a NAT (its datagrams reach the edge from a new
//! port) keeps its connection: the edge validates the new path and follows it, and reports
//! the new address to the host.

use std::net::SocketAddr;

use crate::hosts::{EdgeHost, Transfers};
use crate::{BUDGET, pair, target};

const SIZE: u64 = 256 * 1024;

#[test]
fn a_rebound_client_keeps_its_connection_and_the_edge_follows_it() {
    let mut net = pair(&[], None);
    let mut edge = EdgeHost::default();
    let mut first = Transfers::new(target("echo.test", 7), 1, SIZE);
    assert!(net.run(&mut first, &mut edge, BUDGET), "before the move");
    let moved: SocketAddr = "192.0.2.2:40999".parse().expect("address");
    net.client_seen_as = moved;
    let mut second = Transfers::new(target("echo.test", 7), 1, SIZE);
    assert!(
        net.run(&mut second, &mut edge, BUDGET),
        "after the move: {} of {SIZE}, {:?}, {} misaddressed",
        second.received(0),
        net.stats,
        net.misaddressed
    );
    assert_eq!(net.client.stats().connections_total, 1, "no reconnect");
    let before = net.misaddressed;
    let mut third = Transfers::new(target("echo.test", 7), 1, SIZE);
    assert!(net.run(&mut third, &mut edge, BUDGET), "a third tunnel");
    assert_eq!(
        net.misaddressed, before,
        "edge datagrams still go to the old address"
    );
    // Once the new path is validated, the host hears of the client at its new address.
    assert_eq!(edge.requests.last().map(|r| r.1.peer), Some(moved));
}

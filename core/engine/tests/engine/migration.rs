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

/// The rebinding comes in the middle of a transfer, with data in flight both ways on the
/// old path: the edge's packets to the old address are lost (the NAT forgot it), the edge
/// follows the new path, and the transfer completes, byte for byte, on the same
/// connection (quiche declares what was in flight on the old path lost when the path
/// changes, and sends it again on the new one).
#[test]
fn a_client_rebound_mid_transfer_completes_the_transfer() {
    const BIG: u64 = 8 * 1024 * 1024;
    let mut net = pair(&[], None);
    let mut edge = EdgeHost::default();
    let mut transfer = Transfers::new(target("echo.test", 7), 2, BIG);
    assert!(
        net.run_until(&mut transfer, &mut edge, BUDGET, |t, _| t.received(0)
            > BIG / 3),
        "the transfer did not get under way"
    );
    let misaddressed = net.misaddressed;
    net.client_seen_as = "192.0.2.2:40999".parse().expect("address");
    assert!(
        net.run(&mut transfer, &mut edge, BUDGET),
        "after the move: {} and {} of {BIG}, {:?}, {} misaddressed",
        transfer.received(0),
        transfer.received(1),
        net.stats,
        net.misaddressed
    );
    assert!(
        net.misaddressed > misaddressed,
        "nothing was in flight to the old address: the move came too late to test anything"
    );
    assert_eq!(net.client.stats().connections_total, 1, "no reconnect");
}

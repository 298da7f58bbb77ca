//! Bytes through tunnels: round trips, many tunnels, loss and reordering, half-close,
//! resets, slow readers.

use std::time::Instant;

use veil_engine::{CloseReason, H3_CONNECT_ERROR};

use crate::harness::{Host, Link};
use crate::hosts::{EdgeHost, OneTunnel, Transfers};
use crate::{BUDGET, pair, target};

#[test]
fn one_tunnel_echo_round_trip() {
    let mut net = pair(&[], None);
    let mut client = Transfers::new(target("echo.test", 443), 1, 10_000);
    let mut edge = EdgeHost::default();
    assert!(
        net.run(&mut client, &mut edge, BUDGET),
        "echo did not complete"
    );
    assert_eq!(edge.requests.len(), 1);
    assert_eq!(edge.requests[0].0.to_string(), "echo.test:443");
    assert_eq!(edge.requests[0].1.token_index, None);
    assert_eq!(
        edge.closed,
        [(edge_tunnel(&edge, 0), CloseReason::Finished)]
    );
    let stats = net.client.stats();
    assert_eq!(
        (stats.connections, stats.tunnels, stats.tunnels_total),
        (1, 0, 1)
    );
}

/// The edge's id of the `nth` tunnel it closed (ids are the edge's own).
fn edge_tunnel(edge: &EdgeHost, nth: usize) -> veil_engine::TunnelId {
    edge.closed[nth].0
}

#[test]
fn a_hundred_tunnels_carry_checksummed_bytes_both_ways() {
    let mut net = pair(&[], None);
    let mut client = Transfers::new(target("echo.test", 7), 100, 32 * 1024);
    let mut edge = EdgeHost::default();
    let started = Instant::now();
    assert!(
        net.run(&mut client, &mut edge, BUDGET),
        "only {} finished",
        client.finished
    );
    assert_eq!(edge.requests.len(), 100);
    assert!(client.refused.is_empty() && client.other_closes.is_empty());
    eprintln!(
        "100 tunnels x 32 KiB echoed in {:?}; {} GSO batches",
        started.elapsed(),
        net.stats.gso_batches
    );
    // One connection carried everything.
    assert_eq!(net.client.stats().connections_total, 1);
}

#[test]
fn loss_and_reordering_still_deliver_every_byte_in_order() {
    let mut net = pair(&[], None);
    net.link = Link {
        loss: 0.05,
        reorder: 0.05,
        ..Link::default()
    };
    let mut client = Transfers::new(target("echo.test", 7), 8, 128 * 1024);
    let mut edge = EdgeHost::default();
    assert!(
        net.run(&mut client, &mut edge, BUDGET),
        "only {} finished",
        client.finished
    );
    assert!(
        net.stats.lost > 0 && net.stats.reordered > 0,
        "{:?}",
        net.stats
    );
}

#[test]
fn client_half_closes_first_and_the_edge_still_answers() {
    let mut net = pair(&[], None);
    let mut client = OneTunnel::to(target("sink.test", 9));
    client.send = b"hello".to_vec();
    client.finish = true;
    let mut edge = EdgeHost::default();
    let done = net.run_until(&mut client, &mut edge, BUDGET, |c, e| {
        c.closed.is_some() && !e.closed.is_empty()
    });
    assert!(done, "tunnel did not finish");
    assert_eq!(client.received, b"world");
    assert!(client.fin_received);
    assert_eq!(client.closed, Some(CloseReason::Finished));
    assert_eq!(
        edge.finished_data.values().next().map(Vec::as_slice),
        Some(&b"hello"[..])
    );
    assert_eq!(edge.closed[0].1, CloseReason::Finished);
}

#[test]
fn edge_half_closes_first_and_the_client_still_sends() {
    let mut net = pair(&[], None);
    let mut client = OneTunnel::to(target("source.test", 9));
    client.send = b"late bytes".to_vec();
    client.send_after_fin = true;
    client.finish = true;
    let mut edge = EdgeHost::default();
    edge.source_len = 100_000;
    let done = net.run_until(&mut client, &mut edge, BUDGET, |c, e| {
        c.closed.is_some() && !e.closed.is_empty()
    });
    assert!(done, "tunnel did not finish");
    assert_eq!(client.received.len(), 100_000);
    assert_eq!(client.closed, Some(CloseReason::Finished));
    assert_eq!(
        edge.finished_data.values().next().map(Vec::as_slice),
        Some(&b"late bytes"[..])
    );
    assert_eq!(edge.closed[0].1, CloseReason::Finished);
}

#[test]
fn a_target_reset_reaches_the_client_as_a_reset() {
    let mut net = pair(&[], None);
    let mut client = OneTunnel::to(target("reset.test", 9));
    client.send = b"anything".to_vec();
    let mut edge = EdgeHost::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.closed.is_some()));
    assert_eq!(
        client.closed,
        Some(CloseReason::Reset {
            code: H3_CONNECT_ERROR
        })
    );
    // The edge aborted it itself: no event for it there.
    assert!(edge.closed.is_empty());
}

#[test]
fn a_client_abort_reaches_the_edge_as_a_reset() {
    let mut net = pair(&[], None);
    let mut client = OneTunnel::to(target("echo.test", 9));
    client.abort_on_open = true;
    let mut edge = EdgeHost::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |_, e| !e.closed.is_empty()));
    assert_eq!(
        edge.closed[0].1,
        CloseReason::Reset {
            code: H3_CONNECT_ERROR
        }
    );
    assert!(client.opened && client.closed.is_none());
    assert_eq!(net.client.stats().tunnels, 0);
}

#[test]
fn a_slow_reader_stalls_only_its_own_tunnel() {
    let mut net = pair(&[], None);
    let size = 4 * 1024 * 1024;
    let mut client = Transfers::new(target("echo.test", 7), 2, size);
    // The first tunnel's echo is never read.
    client.unread = Some(0);
    let mut edge = EdgeHost::default();
    let done = net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.finished == 1);
    assert!(
        done,
        "the tunnel that is read did not finish: {} {} {:?} {:?}",
        client.received(1),
        client.received(0),
        net.client.stats(),
        net.stats
    );
    assert_eq!(client.received(1), size);
    assert_eq!(client.received(0), 0);
    // The unread tunnel is alive, holding only what flow control let through.
    assert_eq!(net.client.stats().tunnels, 1);
    let stuck = client.ids()[0];
    let mut buf = vec![0; 64 * 1024];
    let mut backlog = 0;
    loop {
        let recv = net.client.tunnel_recv(stuck, &mut buf).expect("readable");
        if recv.len == 0 {
            break;
        }
        backlog += recv.len;
    }
    assert!(
        backlog > 0 && backlog <= 4 * 1024 * 1024,
        "backlog {backlog}"
    );
    let _ = client.done();
}

#[test]
fn pacing_on_still_moves_megabytes() {
    let edge = crate::edge(&[]);
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let mut config =
        veil_engine::Config::client(crate::client_config(veil_engine::Verify::Pin(pin), None));
    config.quic.pacing = true;
    let client = veil_engine::Endpoint::new(config, Instant::now()).expect("client");
    let mut net = crate::harness::Net::new(client, edge);
    let mut client = Transfers::new(target("echo.test", 7), 2, 1024 * 1024);
    let mut edge = EdgeHost::default();
    assert!(
        net.run(&mut client, &mut edge, BUDGET),
        "only {} finished",
        client.finished
    );
}

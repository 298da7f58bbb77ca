//! A tunnel whose bytes were all acknowledged while quiche had queued some of them again
//! must not hold up the other tunnels of its connection.
//!
//! quiche 0.30 sends streams from a queue, one STREAM frame per packet from the stream at
//! its head. On a probe timeout (PTO) it queues the bytes of the oldest unacknowledged
//! packet again; when the probe cannot carry them all (here: it also carries an ACK frame)
//! and the congestion window leaves no room for the rest, they wait in their stream. If
//! the ACK of their first packet then arrives, they are dropped, and the stream stays in
//! the queue with nothing to send: a dead head. A packet then gets no stream frame; one
//! with nothing else is not written, and `send` says `Done` while another tunnel holds
//! bytes. A non-incremental head is never moved: every tunnel of the connection would
//! wait for good (found as a quinn client's echo tunnels without their FIN,
//! `e2e_interop_quinn`, on a loaded machine). An incremental one goes to the back of the
//! queue, so a second `send` finds the next stream; without one, bytes written wait until
//! something else makes the engine ask quiche again (an ACK, a timer), and on a
//! connection with nothing in flight that is the idle timeout. The engine sends tunnels
//! incremental (`wire::TUNNEL_PRIORITY`) and asks quiche again after such a `Done`
//! (`transmit::transmit_batch`); without the second, this test fails.
//!
//! The packets are arranged by hand: the first tunnel's bytes go first (so that the probe
//! carries them), then a second tunnel fills the congestion window, and a third, idle
//! until the end, writes once the dead head is there.
//!
//! A stream we reset (`stream_shutdown(Write)`) also stays in quiche's queue with its
//! buffer emptied, but when it reaches the head it yields an empty STREAM frame with FIN
//! at its final size and leaves the queue: no dead head, so the engine does not retry on
//! its account (`transmit::Held`). The second test holds quiche to that.

use std::time::{Duration, Instant};

use veil_engine::{Endpoint, Event, TunnelId};

use crate::harness::{Host, Net};
use crate::hosts::EventReaders;
use crate::{BUDGET, pair, target};

/// What the first tunnel sends: more than a packet, so that its first packet is full.
const FIRST: usize = 2_000;
/// What the second tunnel tries to send: more than the congestion window takes.
const FILL: usize = 256 * 1024;
/// Longer than quiche's largest ACK delay (25 ms) plus its time-threshold wait: every
/// packet before it is acknowledged after it.
const SETTLE: Duration = Duration::from_millis(60);

/// The edge's host: accepts, and remembers the tunnels in the order requested.
#[derive(Default)]
struct Edge {
    order: Vec<TunnelId>,
}

impl Host for Edge {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        if let Event::TunnelRequest { tunnel, .. } = event {
            endpoint.accept_tunnel(tunnel).expect("accept");
            self.order.push(tunnel);
        }
    }

    fn poll(&mut self, _endpoint: &mut Endpoint, _now: Instant) -> bool {
        false
    }
}

/// Runs the pair for [`SETTLE`]: everything sent is delivered and acknowledged.
fn settle(net: &mut Net, client: &mut EventReaders, edge: &mut Edge) {
    let until = Instant::now() + SETTLE;
    net.run_until(client, edge, BUDGET, |_, _| Instant::now() >= until);
}

/// The edge's datagrams toward the client, sent until it has had none for 2 ms (paced
/// ones included), taken off the link.
fn edge_datagrams(net: &mut Net) -> Vec<Vec<u8>> {
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(2) {
        if net.send_from_edge(Instant::now()) {
            quiet_since = Instant::now();
        }
        if net
            .edge
            .poll_timeout()
            .is_some_and(|at| at <= Instant::now())
        {
            net.edge.handle_timeout(Instant::now());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    net.take_to_client()
}

/// The edge's probe timeout: its first deadline more than 5 ms away, after the timers due
/// before it (which, with nothing to acknowledge, send nothing the test keeps).
fn probe_timeout(net: &mut Net) -> Instant {
    loop {
        let at = net.edge.poll_timeout().expect("the probe timer");
        if at > Instant::now() + Duration::from_millis(5) {
            return at;
        }
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        net.edge.handle_timeout(Instant::now());
        drop(edge_datagrams(net));
    }
}

/// A connected pair with `tunnels` tunnels open and nothing left in flight; the client's
/// tunnel ids, in the order the edge got them.
fn open_settled(tunnels: u16) -> (Net, EventReaders, Edge, Vec<TunnelId>) {
    let mut net = pair(&[], None);
    let mut client = EventReaders::default();
    let mut edge = Edge::default();
    let ids: Vec<TunnelId> = (0..tunnels)
        .map(|i| {
            net.client
                .open_tunnel(Instant::now(), &target("download.test", 1000 + i))
                .expect("open")
        })
        .collect();
    let open = net.run_until(&mut client, &mut edge, BUDGET, |_, e| {
        e.order.len() == ids.len()
    });
    assert!(open, "the tunnels never reached the edge: {:?}", net.stats);
    settle(&mut net, &mut client, &mut edge);
    (net, client, edge, ids)
}

/// The edge's `index`th tunnel (the client's `id`) writes: its bytes must leave in the
/// next round of sends, with no timer fired first, and then arrive.
fn write_leaves_at_once(
    net: &mut Net,
    client: &mut EventReaders,
    edge: &mut Edge,
    index: usize,
    id: TunnelId,
) {
    let tunnel = edge.order[index];
    assert_eq!(net.edge.tunnel_send(tunnel, b"hello").expect("send"), 5);
    assert!(
        net.send_from_edge(Instant::now()),
        "tunnel {index}'s bytes waited behind a stream with nothing to send"
    );
    let done = net.run_until(client, edge, BUDGET, |c, _| {
        c.received.get(&id).copied().unwrap_or(0) >= 5
    });
    assert!(
        done,
        "tunnel {index}'s bytes never arrived: {:?}",
        net.stats
    );
}

/// Writes up to `len` bytes on `tunnel` at the edge, as the connection takes them.
fn write(net: &mut Net, tunnel: TunnelId, len: usize) -> usize {
    let chunk = vec![7u8; 16 * 1024];
    let mut written = 0;
    while written < len {
        let want = (len - written).min(chunk.len());
        match net.edge.tunnel_send(tunnel, &chunk[..want]) {
            Ok(0) | Err(_) => break,
            Ok(taken) => written += taken,
        }
    }
    written
}

#[test]
fn a_tunnel_acknowledged_while_queued_again_does_not_stall_the_others() {
    let (mut net, mut client, mut edge, ids) = open_settled(3);
    let (first, fill) = (edge.order[0], edge.order[1]);

    // P1 and P2: the first tunnel's bytes; behind them, the second tunnel fills the
    // congestion window. Nothing reaches the client yet.
    assert_eq!(write(&mut net, first, FIRST), FIRST);
    let mut flight = edge_datagrams(&mut net);
    assert!(write(&mut net, fill, FILL) < FILL, "the window took it all");
    flight.extend(edge_datagrams(&mut net));
    assert!(
        flight.len() >= 8,
        "a window of ten packets, got {}",
        flight.len()
    );

    // Before the probe timeout a byte from the client arrives, and the edge owes an ACK:
    // the probe carries that ACK frame, so P1's bytes, queued again, no longer all fit in
    // it, and the full window leaves no room for the rest. The probe is lost.
    let pto = probe_timeout(&mut net);
    net.client.tunnel_send(ids[2], b"x").expect("client send");
    assert!(net.send_from_client(Instant::now()));
    assert!(net.deliver_to_edge(Instant::now()));
    std::thread::sleep(pto.saturating_duration_since(Instant::now()));
    net.edge.handle_timeout(Instant::now());
    let probe = edge_datagrams(&mut net);
    assert!(!probe.is_empty(), "no probe");

    // The client gets P1 and the rest after all and acknowledges them: the bytes queued
    // again are dropped, and the first tunnel is left queued with nothing to send.
    net.put_to_client(flight);
    assert!(net.deliver_to_client(Instant::now()));
    assert!(net.send_from_client(Instant::now()), "no acknowledgement");
    assert!(net.deliver_to_edge(Instant::now()));
    // What is left of the window's bytes goes and is acknowledged; the dead head stays.
    settle(&mut net, &mut client, &mut edge);

    // The third tunnel writes: its bytes must leave at once, without a timer's help.
    write_leaves_at_once(&mut net, &mut client, &mut edge, 2, ids[2]);
    assert_eq!(client.received.get(&ids[0]).copied(), Some(FIRST));
}

/// What a tunnel that is reset tries to queue: more than quiche takes at once.
const QUEUED: usize = 64 * 1024;

#[test]
fn a_tunnel_reset_with_bytes_queued_does_not_stall_the_others() {
    let (mut net, mut client, mut edge, ids) = open_settled(2);

    // The first tunnel queues what quiche takes (about the congestion window) and is reset
    // before any of it is sent; the reset arrives and is acknowledged.
    let reset = edge.order[0];
    let queued = write(&mut net, reset, QUEUED);
    assert!(queued > 2_000, "only {queued} bytes queued");
    net.edge.tunnel_abort(reset).expect("abort");
    settle(&mut net, &mut client, &mut edge);
    assert_eq!(client.received.get(&ids[0]).copied().unwrap_or(0), 0);

    // The second tunnel writes: its bytes must leave at once, without a timer's help.
    write_leaves_at_once(&mut net, &mut client, &mut edge, 1, ids[1]);
}

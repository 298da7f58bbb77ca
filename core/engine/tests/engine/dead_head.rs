//! A tunnel whose bytes were all acknowledged while quiche had queued some of them again
//! must not hold up the other tunnels of its connection.
//!
//! quiche 0.30 sends streams from a queue, one STREAM frame per packet from the stream at
//! its head. On a probe timeout (PTO) it queues the bytes of the oldest unacknowledged
//! packet again; when the probe cannot carry them all (here: it also carries an ACK frame)
//! and the congestion window leaves no room for the rest, they wait in their stream. If
//! the ACK of their first packet then arrives, they are dropped, and the stream stays in
//! the queue with nothing to send. A packet then gets no stream frame; one with nothing
//! else is not written, and `send` says `Done` while another tunnel holds bytes. A
//! non-incremental stream is never moved from the head: nothing in flight, no ACK to
//! come, every tunnel of the connection waited until the idle timeout (found as a quinn
//! client's echo tunnels without their FIN, `e2e_interop_quinn`, on a loaded machine). The
//! engine sends tunnels incremental (`wire::TUNNEL_PRIORITY`) and asks quiche again after
//! such a `Done` (`transmit::transmit_batch`); with neither, this test fails every time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use veil_engine::{Endpoint, Event, TunnelId};

use crate::harness::{Host, Net, fire_timers_for};
use crate::hosts::EventReaders;
use crate::{BUDGET, pair, target};

/// What the first tunnel sends: more than a packet, so that its first packet is full.
const FIRST: usize = 2_000;
/// What the second tunnel sends, as the window allows.
const DOWNLOAD: usize = 256 * 1024;
/// Longer than quiche's largest ACK delay (25 ms by default) plus its time-threshold wait.
const ACK_WAIT: Duration = Duration::from_millis(60);

/// The edge's host: accepts, remembers the tunnels in the order requested, and writes the
/// second tunnel's download whenever it is writable (once `download` is set).
#[derive(Default)]
struct Edge {
    order: Vec<TunnelId>,
    download: bool,
    sent: HashMap<TunnelId, usize>,
}

impl Edge {
    fn write_download(&mut self, endpoint: &mut Endpoint) -> bool {
        let Some(&id) = self.order.get(1).filter(|_| self.download) else {
            return false;
        };
        let sent = self.sent.entry(id).or_default();
        let mut busy = false;
        while *sent < DOWNLOAD {
            let chunk = vec![7u8; (DOWNLOAD - *sent).min(16 * 1024)];
            match endpoint.tunnel_send(id, &chunk) {
                Ok(0) | Err(_) => break,
                Ok(taken) => {
                    *sent += taken;
                    busy = true;
                }
            }
        }
        busy
    }
}

impl Host for Edge {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        if let Event::TunnelRequest { tunnel, .. } = event {
            endpoint.accept_tunnel(tunnel).expect("accept");
            self.order.push(tunnel);
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, _now: Instant) -> bool {
        self.write_download(endpoint)
    }
}

/// The edge's datagrams toward the client, sent until it has had none for 2 ms (paced
/// ones included).
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

#[test]
fn a_tunnel_acknowledged_while_queued_again_does_not_stall_the_others() {
    let mut net = pair(&[], None);
    let mut client = EventReaders::default();
    let mut edge = Edge::default();
    let ids: Vec<TunnelId> = (0..2)
        .map(|i| {
            net.client
                .open_tunnel(Instant::now(), &target("download.test", 1000 + i))
                .expect("open")
        })
        .collect();
    let open = net.run_until(&mut client, &mut edge, BUDGET, |_, e| e.order.len() == 2);
    assert!(open, "the tunnels never reached the edge: {:?}", net.stats);
    // Every handshake and response packet acknowledged: nothing in flight after it.
    let until = Instant::now() + ACK_WAIT;
    net.run_until(&mut client, &mut edge, BUDGET, |_, _| {
        Instant::now() >= until
    });

    // P1: a full packet of the first tunnel's bytes; behind it, the second tunnel fills
    // the congestion window. Nothing reaches the client yet.
    let first = edge.order[0];
    let packet = vec![1u8; FIRST];
    assert_eq!(net.edge.tunnel_send(first, &packet).expect("send"), FIRST);
    edge.download = true;
    edge.write_download(&mut net.edge);
    let sent = edge_datagrams(&mut net);
    assert!(
        sent.len() >= 8,
        "the window carries ten packets, got {}",
        sent.len()
    );

    // Just before the edge's probe timeout, a byte from the client: the edge owes an ACK,
    // and the probe it sends carries that ACK frame, so P1's bytes, queued again for the
    // probe, no longer all fit in it; the window leaves no room for the rest. (A slow
    // machine that misses this moment makes the test pass without the stall it checks.)
    let pto = net.edge.poll_timeout().expect("the probe timer");
    std::thread::sleep(
        pto.saturating_duration_since(Instant::now())
            .saturating_sub(Duration::from_millis(3)),
    );
    net.client.tunnel_send(ids[0], b"x").expect("client send");
    net.send_from_client(Instant::now());
    net.deliver_to_edge(Instant::now());
    std::thread::sleep(pto.saturating_duration_since(Instant::now()));
    net.edge.handle_timeout(Instant::now());
    // The probe is lost.
    drop(edge_datagrams(&mut net));

    // The client gets P1 and the rest after all and acknowledges them: the bytes queued
    // again are dropped, and the first tunnel is left with nothing to send.
    net.put_to_client(sent);
    net.deliver_to_client(Instant::now());
    let acked = Instant::now() + ACK_WAIT;
    while Instant::now() < acked && !net.send_from_client(Instant::now()) {
        fire_timers_for(&mut net.client, Duration::from_millis(1));
    }
    net.deliver_to_edge(Instant::now());

    // The second tunnel's download must go on to its end.
    let second = ids[1];
    let done = net.run_until(&mut client, &mut edge, Duration::from_secs(10), |c, _| {
        c.received.get(&second).copied().unwrap_or(0) >= DOWNLOAD
    });
    assert!(
        done,
        "the second tunnel stalled: the client has {} of {DOWNLOAD} bytes (first tunnel {}), edge sent {:?}",
        client.received.get(&second).copied().unwrap_or(0),
        client.received.get(&ids[0]).copied().unwrap_or(0),
        edge.sent
    );
    assert_eq!(client.received.get(&ids[0]).copied(), Some(FIRST));
}

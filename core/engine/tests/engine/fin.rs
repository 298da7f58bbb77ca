//! A FIN written after the last bytes, while the peer's acknowledgement of those bytes is
//! on its way, still reaches the peer.
//!
//! This is what every relay does: it sends what the target wrote, and on a later turn of
//! its loop, when the target closes, finishes the tunnel. quiche 0.30 records a zero-length
//! FIN at the offset of the bytes already sent; if their ACK arrives before a packet
//! carries that FIN, quiche counts the stream's sending side as complete and, once the
//! peer's direction has been read, forgets the stream with the FIN never sent
//! (cloudflare/quiche#2525). The steps below put the ACK exactly there, for either side
//! finishing.

use std::time::{Duration, Instant};

use veil_engine::{CloseReason, Endpoint, Event, Recv, TunnelId};

use crate::harness::{Host, Net, fire_timers_for};
use crate::hosts::fill;
use crate::{BUDGET, pair, target};

/// What the client sends before its FIN.
const REQUEST: &[u8] = b"request";
/// What the finishing side sends last, in one packet: the peer delays its ACK of a single
/// packet, which the steps wait out.
const ANSWER: &[u8] = b"answer";
/// Longer than quiche's largest ACK delay (25 ms by default).
const ACK_WAIT: Duration = Duration::from_millis(60);

/// One end of the tunnel: opens it (client) or accepts it (edge), reads everything, and
/// remembers what it read.
#[derive(Default)]
struct End {
    open: bool,
    id: Option<TunnelId>,
    ready: bool,
    readable: bool,
    received: Vec<u8>,
    fin_received: bool,
    closed: Option<CloseReason>,
}

impl End {
    /// Reads whatever is waiting on the tunnel.
    fn read(&mut self, endpoint: &mut Endpoint) -> bool {
        let Some(id) = self.id else {
            return false;
        };
        let mut busy = false;
        let mut buf = [0; 4096];
        while self.readable && !self.fin_received {
            let Ok(Recv { len, fin }) = endpoint.tunnel_recv(id, &mut buf) else {
                self.readable = false;
                break;
            };
            self.received.extend_from_slice(&buf[..len]);
            self.fin_received |= fin;
            self.readable = len > 0;
            busy |= len > 0 || fin;
        }
        busy
    }
}

impl Host for End {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelRequest { tunnel, .. } => {
                endpoint.accept_tunnel(tunnel).expect("accept");
                self.id = Some(tunnel);
                self.ready = true;
            }
            Event::TunnelOpened { .. } => self.ready = true,
            Event::TunnelReadable { .. } => self.readable = true,
            Event::TunnelClosed { reason, .. } => self.closed = Some(reason),
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        if std::mem::take(&mut self.open) {
            let id = endpoint
                .open_tunnel(now, &target("echo.test", 7))
                .expect("open");
            self.id = Some(id);
            return true;
        }
        self.read(endpoint)
    }
}

#[derive(Clone, Copy, Debug)]
enum Finisher {
    Edge,
    Client,
}

/// Runs the steps with `finisher` sending [`ANSWER`] and its FIN last; returns both ends
/// (client, edge) once the other side read that FIN, or panics.
fn finish_while_the_ack_is_in_flight(finisher: Finisher) -> (End, End) {
    let mut net = pair(&[], None);
    let mut client = End {
        open: true,
        ..End::default()
    };
    let mut edge = End::default();
    let open = net.run_until(&mut client, &mut edge, BUDGET, |c, e| c.ready && e.ready);
    assert!(open, "the tunnel never opened: {:?}", net.stats);
    let (client_id, edge_id) = (client.id.expect("client id"), edge.id.expect("edge id"));

    // The side that does not finish last sends its bytes and FIN first; the finisher reads
    // them, so that quiche may forget the stream as soon as its own direction is complete.
    let (first, first_id) = match finisher {
        Finisher::Edge => (&mut net.client, client_id),
        Finisher::Client => (&mut net.edge, edge_id),
    };
    assert_eq!(
        first.tunnel_send(first_id, REQUEST).expect("send"),
        REQUEST.len()
    );
    first.tunnel_finish(first_id).expect("finish");
    let read = net.run_until(&mut client, &mut edge, BUDGET, |c, e| match finisher {
        Finisher::Edge => e.fin_received,
        Finisher::Client => c.fin_received,
    });
    assert!(read, "the first FIN never arrived: {:?}", net.stats);
    settle(&mut net, &mut client, &mut edge);

    // The finisher's last bytes cross; the peer's ACK of them is held on the link.
    let now = Instant::now();
    match finisher {
        Finisher::Edge => {
            let taken = net.edge.tunnel_send(edge_id, ANSWER).expect("send");
            assert_eq!(taken, ANSWER.len());
            net.send_from_edge(now);
            net.deliver_to_client(now);
            hold_acks(&mut net.client);
            net.send_from_client(Instant::now());
        }
        Finisher::Client => {
            let taken = net.client.tunnel_send(client_id, ANSWER).expect("send");
            assert_eq!(taken, ANSWER.len());
            net.send_from_client(now);
            net.deliver_to_edge(now);
            hold_acks(&mut net.edge);
            net.send_from_edge(Instant::now());
        }
    }

    // The FIN is written, then the ACK arrives before anything is sent.
    let now = Instant::now();
    match finisher {
        Finisher::Edge => {
            net.edge.tunnel_finish(edge_id).expect("finish");
            net.deliver_to_edge(now);
        }
        Finisher::Client => {
            net.client.tunnel_finish(client_id).expect("finish");
            net.deliver_to_client(now);
        }
    }

    let ended = net.run_until(&mut client, &mut edge, BUDGET, |c, e| {
        let reader = match finisher {
            Finisher::Edge => c,
            Finisher::Client => e,
        };
        reader.fin_received && reader.closed.is_some()
    });
    assert!(
        ended,
        "{finisher:?} finished, the peer never saw the FIN: {:?}",
        net.stats
    );
    (client, edge)
}

/// Runs both sides until every ACK has had time to cross: nothing is in flight after it.
fn settle(net: &mut Net, client: &mut End, edge: &mut End) {
    let until = Instant::now() + ACK_WAIT;
    net.run_until(client, edge, BUDGET, |_, _| Instant::now() >= until);
}

/// Fires `endpoint`'s timers for [`ACK_WAIT`] without delivering anything to it, so that
/// the ACK it delays for a single packet is written.
fn hold_acks(endpoint: &mut Endpoint) {
    fire_timers_for(endpoint, ACK_WAIT);
}

#[test]
fn an_edge_fin_written_while_the_ack_of_its_last_bytes_is_in_flight_arrives() {
    let (client, edge) = finish_while_the_ack_is_in_flight(Finisher::Edge);
    assert_eq!(client.received, ANSWER);
    assert_eq!(edge.received, REQUEST);
    assert_eq!(client.closed, Some(CloseReason::Finished));
}

#[test]
fn a_client_fin_written_while_the_ack_of_its_last_bytes_is_in_flight_arrives() {
    let (client, edge) = finish_while_the_ack_is_in_flight(Finisher::Client);
    assert_eq!(edge.received, ANSWER);
    assert_eq!(client.received, REQUEST);
    assert_eq!(edge.closed, Some(CloseReason::Finished));
}

/// Bytes per send: under 16 KiB, so that the DATA frame's length takes two bytes whether
/// the whole chunk fits or only part of it. quiche then fills a partly written frame to the
/// last byte of credit, and nothing is left for the empty DATA frame of the FIN.
const CHUNK: usize = 16_000;

/// Accepts, sends until the peer's stream credit is gone, then finishes.
#[derive(Default)]
struct Filler {
    id: Option<TunnelId>,
    sent: u64,
    finished: bool,
}

impl Host for Filler {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        if let Event::TunnelRequest { tunnel, .. } = event {
            endpoint.accept_tunnel(tunnel).expect("accept");
            self.id = Some(tunnel);
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, _now: Instant) -> bool {
        let Some(id) = self.id else {
            return false;
        };
        if self.finished {
            return false;
        }
        let mut chunk = vec![0; CHUNK];
        loop {
            fill(11, self.sent, &mut chunk);
            let taken = endpoint.tunnel_send(id, &chunk).expect("send");
            self.sent += taken as u64;
            if taken < CHUNK {
                break;
            }
        }
        if self.sent == 0 {
            return false;
        }
        endpoint.tunnel_finish(id).expect("finish");
        self.finished = true;
        true
    }
}

#[test]
fn a_fin_without_stream_credit_goes_out_once_the_peer_reads() {
    let mut net = pair(&[], None);
    let mut client = End {
        open: true,
        ..End::default()
    };
    let mut edge = Filler::default();
    // The client reads nothing until the edge has finished.
    client.readable = false;
    let finished = net.run_until(&mut Held(&mut client), &mut edge, BUDGET, |_, e| e.finished);
    assert!(
        finished,
        "the edge never filled the window: {:?}",
        net.stats
    );
    let read = net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.fin_received);
    assert!(read, "the FIN never came: {:?}", net.stats);
    let mut expected = vec![0; usize::try_from(edge.sent).expect("small")];
    fill(11, 0, &mut expected);
    assert_eq!(client.received.len(), expected.len());
    assert!(client.received == expected, "bytes differ");
}

/// An [`End`] that notes events but reads nothing.
struct Held<'a>(&'a mut End);

impl Host for Held<'_> {
    fn on_event(&mut self, endpoint: &mut Endpoint, now: Instant, event: Event) {
        self.0.on_event(endpoint, now, event);
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        if self.0.open {
            return self.0.poll(endpoint, now);
        }
        false
    }
}

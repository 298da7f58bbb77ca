//! An abort after a finish: the peer still gets every byte and the FIN (quiche 0.30 would
//! hide a `RESET_STREAM` that follows the FIN, so the engine sends none), then sees the
//! tunnel end as reset when it has read them.

use std::time::Instant;

use veil_engine::{CloseReason, Endpoint, Event, H3_CONNECT_ERROR, Recv, TunnelId};

use crate::harness::{Host, Link, Net};
use crate::hosts::fill;
use crate::{BUDGET, pair, target};

/// Bytes the finishing side sends before its FIN: several flights, so that some are still
/// in flight when the abort comes.
const LEN: u64 = 300 * 1024;

/// One side of the tunnel: sends `LEN` bytes of pattern, FIN, then aborts at once (when
/// `abort_after_fin`); and reads whatever the other side sends.
#[derive(Default)]
struct Side {
    /// Client: the tunnel to open; edge: accepts the first request.
    open: bool,
    send: bool,
    abort_after_fin: bool,
    id: Option<TunnelId>,
    ready: bool,
    sent: u64,
    aborted: bool,
    received: Vec<u8>,
    fin_received: bool,
    readable: bool,
    closed: Option<CloseReason>,
    refused: Option<veil_engine::RefusedReason>,
    /// The FIN had been read when `TunnelClosed` came.
    closed_after_fin: bool,
}

impl Host for Side {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelRequest { tunnel, .. } => {
                endpoint.accept_tunnel(tunnel).expect("accept");
                self.id = Some(tunnel);
                self.ready = true;
            }
            Event::TunnelOpened { .. } => self.ready = true,
            Event::TunnelReadable { .. } => self.readable = true,
            Event::TunnelClosed { reason, .. } => {
                self.closed = Some(reason);
                self.closed_after_fin = self.fin_received;
            }
            Event::TunnelRefused { reason, .. } => self.refused = Some(reason),
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        if self.open {
            self.open = false;
            let id = endpoint
                .open_tunnel(now, &target("source.test", 9))
                .expect("open");
            self.id = Some(id);
            return true;
        }
        let (Some(id), true) = (self.id, self.ready) else {
            return false;
        };
        if self.aborted || self.closed.is_some() {
            return false;
        }
        let mut busy = false;
        let mut buf = vec![0; 16 * 1024];
        while self.send && self.sent < LEN {
            let chunk = usize::try_from(LEN - self.sent).map_or(buf.len(), |n| n.min(buf.len()));
            fill(7, self.sent, &mut buf[..chunk]);
            let taken = endpoint.tunnel_send(id, &buf[..chunk]).expect("send");
            if taken == 0 {
                break;
            }
            self.sent += taken as u64;
            busy = true;
        }
        if self.send && self.sent == LEN && self.abort_after_fin {
            endpoint.tunnel_finish(id).expect("finish");
            endpoint.tunnel_abort(id).expect("abort");
            self.aborted = true;
            return true;
        }
        while self.readable {
            let Ok(Recv { len, fin }) = endpoint.tunnel_recv(id, &mut buf) else {
                self.readable = false;
                break;
            };
            self.received.extend_from_slice(&buf[..len]);
            self.fin_received |= fin;
            self.readable = len > 0 && !fin;
            busy |= len > 0 || fin;
        }
        busy
    }
}

fn pattern() -> Vec<u8> {
    let mut bytes = vec![0; usize::try_from(LEN).expect("small")];
    fill(7, 0, &mut bytes);
    bytes
}

/// The reading side got every byte and the FIN, and only then the tunnel closed, as reset
/// (its own direction was stopped).
fn check_reader(reader: &Side, aborter: &Side, stats: impl std::fmt::Debug) {
    assert!(aborter.aborted, "the finishing side never aborted");
    assert_eq!(reader.received.len(), pattern().len(), "{stats:?}");
    assert!(reader.received == pattern(), "bytes differ");
    assert!(reader.fin_received, "no FIN");
    assert!(reader.closed_after_fin, "closed before the FIN was read");
    assert_eq!(
        reader.closed,
        Some(CloseReason::Reset {
            code: H3_CONNECT_ERROR
        })
    );
}

/// A client tunnel whose edge sends `LEN` bytes, finishes and aborts at once, over `link`,
/// run until the client's tunnel closes.
fn edge_aborts_after_its_finish(link: Link) -> (Net, Side, Side) {
    let mut net = pair(&[], None);
    net.link = link;
    let mut client = Side {
        open: true,
        ..Side::default()
    };
    let mut edge = Side {
        send: true,
        abort_after_fin: true,
        ..Side::default()
    };
    let done = net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.closed.is_some());
    assert!(done, "the client's tunnel never closed: {:?}", net.stats);
    (net, client, edge)
}

#[test]
fn an_edge_abort_after_its_finish_delivers_every_byte_and_the_fin() {
    let (net, client, edge) = edge_aborts_after_its_finish(Link::default());
    check_reader(&client, &edge, net.stats);
    assert_eq!(net.edge.stats().tunnels, 0);
    assert_eq!(net.client.stats().tunnels, 0);
}

#[test]
fn an_edge_abort_after_its_finish_survives_loss_and_reordering() {
    let (net, client, edge) = edge_aborts_after_its_finish(Link {
        loss: 0.05,
        reorder: 0.05,
        ..Link::default()
    });
    assert!(net.stats.lost > 0, "{:?}", net.stats);
    check_reader(&client, &edge, net.stats);
}

#[test]
fn a_client_abort_after_its_finish_delivers_every_byte_and_the_fin() {
    let mut net = pair(&[], None);
    let mut client = Side {
        open: true,
        send: true,
        abort_after_fin: true,
        ..Side::default()
    };
    let mut edge = Side::default();
    let done = net.run_until(&mut client, &mut edge, BUDGET, |_, e| e.closed.is_some());
    assert!(done, "the edge's tunnel never closed");
    check_reader(&edge, &client, net.stats);
    assert_eq!(net.client.stats().tunnels, 0);
}

#[test]
fn an_abort_before_the_finish_still_resets_at_once() {
    // Without a FIN the abort resets our direction: the peer's tunnel ends as reset
    // without waiting for bytes that will never come.
    let mut net = pair(&[], None);
    let mut client = Side {
        open: true,
        ..Side::default()
    };
    let mut edge = EdgeAbortsNow::default();
    let done = net.run_until(&mut client, &mut edge, BUDGET, |c, _| {
        c.closed.is_some() || c.refused.is_some()
    });
    assert!(done, "the client's tunnel never ended");
    assert!(!client.fin_received);
    // The reset may overtake the 200 (a refusal) or not (a close): a reset either way.
    let code = H3_CONNECT_ERROR;
    match (&client.closed, &client.refused) {
        (Some(CloseReason::Reset { code: seen }), None)
        | (None, Some(veil_engine::RefusedReason::Reset { code: seen })) => {
            assert_eq!(*seen, code);
        }
        other => panic!("{other:?}"),
    }
}

/// Accepts, sends a little, aborts without finishing.
#[derive(Default)]
struct EdgeAbortsNow {
    id: Option<TunnelId>,
}

impl Host for EdgeAbortsNow {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        if let Event::TunnelRequest { tunnel, .. } = event {
            endpoint.accept_tunnel(tunnel).expect("accept");
            self.id = Some(tunnel);
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, _now: Instant) -> bool {
        let Some(id) = self.id.take() else {
            return false;
        };
        let _ = endpoint.tunnel_send(id, b"partial").expect("send");
        endpoint.tunnel_abort(id).expect("abort");
        true
    }
}

#[test]
fn a_stop_after_the_peers_fin_was_read_closes_the_tunnel_at_once() {
    // The client reads the edge's bytes and FIN and has nothing to send; then the edge
    // aborts (a stop of the client's direction). The client must hear of it without
    // sending: by the time it sends, quiche may have forgotten the stream.
    let mut net = pair(&[], None);
    let mut client = Side {
        open: true,
        ..Side::default()
    };
    let mut edge = FinishesThenStops::default();
    let read = net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.fin_received);
    assert!(read, "the client never read the FIN: {:?}", net.stats);
    assert_eq!(client.closed, None);
    edge.stop = true;
    let done = net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.closed.is_some());
    assert!(done, "the client's tunnel never closed: {:?}", net.stats);
    assert_eq!(
        client.closed,
        Some(CloseReason::Reset {
            code: H3_CONNECT_ERROR
        })
    );
    assert_eq!(client.received, FEW);
    assert_eq!(net.client.stats().tunnels, 0);
}

/// What [`FinishesThenStops`] sends before its FIN.
const FEW: &[u8] = b"answer";

/// Accepts, sends [`FEW`] (nothing when `silent`) and FIN; aborts (which only stops the
/// peer's direction) once `stop` is set.
#[derive(Default)]
struct FinishesThenStops {
    id: Option<TunnelId>,
    silent: bool,
    finished: bool,
    stop: bool,
    stopped: bool,
}

impl Host for FinishesThenStops {
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
        if !self.finished {
            let answer = if self.silent { &[][..] } else { FEW };
            assert_eq!(
                endpoint.tunnel_send(id, answer).expect("send"),
                answer.len()
            );
            endpoint.tunnel_finish(id).expect("finish");
            self.finished = true;
            return true;
        }
        if self.stop && !self.stopped {
            endpoint.tunnel_abort(id).expect("abort");
            self.stopped = true;
            return true;
        }
        false
    }
}

#[test]
fn a_send_after_the_peer_finished_empty_and_stopped_leaves_the_fin_to_read() {
    // The edge finishes without a byte, then aborts (a stop of the client's direction).
    // HTTP/3 reads a FIN that follows no data itself, so quiche's receiving side is done
    // before the client's host has read anything; the stop then makes quiche answer with
    // its own RESET_STREAM and forget the stream. A send must say the direction is closed
    // (`WriteClosed`), not fail the tunnel, and the FIN must still be read (the fuzzer's
    // engine target found the tunnel reset with the FIN unread).
    finished_empty_then_stopped(true);
}

#[test]
fn a_stop_after_an_empty_finish_is_heard_without_a_send() {
    // The same, with a host that reads the FIN and sends nothing: the stop must still
    // close the tunnel (it was looked for from the moment HTTP/3 read the FIN).
    finished_empty_then_stopped(false);
}

/// The edge finishes without a byte and aborts; the client reads nothing until the stop
/// has arrived, then (when `send`) sends, reads the FIN, and sees the tunnel close.
fn finished_empty_then_stopped(send: bool) {
    let mut net = pair(&[], None);
    let mut client = Idle::default();
    let mut edge = FinishesThenStops {
        silent: true,
        stop: true,
        ..FinishesThenStops::default()
    };
    let stopped = net.run_until(&mut client, &mut edge, BUDGET, |c, e| {
        c.readable && e.stopped
    });
    assert!(stopped, "the edge never stopped: {:?}", net.stats);
    // A few more exchanges carry the stop to the client, which reads nothing meanwhile.
    let rounds = std::cell::Cell::new(0);
    net.run_until(&mut client, &mut edge, BUDGET, |_, _| {
        rounds.set(rounds.get() + 1);
        rounds.get() > 20
    });
    let id = client.id.expect("opened");
    assert_eq!(client.closed, None, "closed before the FIN was read");
    if send {
        assert_eq!(
            net.client.tunnel_send(id, b"late"),
            Err(veil_engine::TunnelError::WriteClosed)
        );
    }
    let mut buf = [0; 16];
    assert_eq!(
        net.client.tunnel_recv(id, &mut buf),
        Ok(Recv { len: 0, fin: true })
    );
    let done = net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.closed.is_some());
    assert!(done, "the client's tunnel never closed: {:?}", net.stats);
    assert!(matches!(client.closed, Some(CloseReason::Reset { .. })));
    assert_eq!(net.client.stats().tunnels, 0);
}

/// Opens one tunnel and then only listens: it reads and sends nothing by itself.
#[derive(Default)]
struct Idle {
    id: Option<TunnelId>,
    readable: bool,
    closed: Option<CloseReason>,
}

impl Host for Idle {
    fn on_event(&mut self, _endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelReadable { .. } => self.readable = true,
            Event::TunnelClosed { reason, .. } => self.closed = Some(reason),
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        if self.id.is_some() {
            return false;
        }
        let id = endpoint
            .open_tunnel(now, &target("source.test", 9))
            .expect("open");
        self.id = Some(id);
        true
    }
}

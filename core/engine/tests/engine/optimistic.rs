//! Optimistic TCP tunnels (`ClientConfig::optimistic`): open to the host as soon as the
//! request leaves, bytes behind the request, refusals and lost connections as closes.

use std::time::{Duration, Instant};

use veil_engine::{
    CloseReason, Config, Endpoint, Event, Recv, TunnelError, TunnelId, TunnelTarget, Verify,
};

use crate::harness::{Host, Net};
use crate::hosts::{EdgeHost, EventReaders};
use crate::{BUDGET, client_config, target};

/// Records the client's events and does nothing else: the test drives the tunnel.
#[derive(Default)]
struct Recorder {
    events: Vec<Event>,
}

impl Recorder {
    fn saw(&self, event: &Event) -> bool {
        self.events.contains(event)
    }

    fn closed(&self, tunnel: TunnelId) -> Option<CloseReason> {
        self.events.iter().find_map(|event| match event {
            Event::TunnelClosed { tunnel: t, reason } if *t == tunnel => Some(*reason),
            _ => None,
        })
    }
}

impl Host for Recorder {
    fn on_event(&mut self, _endpoint: &mut Endpoint, _now: Instant, event: Event) {
        self.events.push(event);
    }
}

/// A client that verifies nothing: one test restarts the edge with a new certificate.
fn client(optimistic: bool) -> Endpoint {
    let mut config = client_config(Verify::Insecure, None);
    config.optimistic = optimistic;
    config.reconnect_initial = Duration::from_millis(50);
    let mut config = Config::client(config);
    config.quic.max_idle_timeout = Duration::from_millis(800);
    config.quic.keep_alive_interval = Some(Duration::from_millis(200));
    Endpoint::new(config, Instant::now()).expect("client")
}

/// A pair whose connection is up (one tunnel opened on it).
fn connected(optimistic: bool) -> (Net, Recorder, EdgeHost) {
    let mut net = Net::new(client(optimistic), crate::edge(&[]));
    let (mut recorder, mut host) = (Recorder::default(), EdgeHost::default());
    let first = net
        .client
        .open_tunnel(Instant::now(), &target("echo.test", 1))
        .expect("open");
    let opened = Event::TunnelOpened { tunnel: first };
    assert!(net.run_until(&mut recorder, &mut host, BUDGET, |r, _| r.saw(&opened)));
    // A whole exchange, so that nothing of it is left in flight.
    assert_eq!(net.client.tunnel_send(first, b"hi"), Ok(2));
    net.client.tunnel_finish(first).expect("finish");
    let (echoed, fin) = echo_of(&mut net, &mut recorder, &mut host, first);
    assert_eq!((echoed.as_slice(), fin), (&b"hi"[..], true));
    (net, recorder, host)
}

/// Opens a tunnel and returns the events the client reported at once, with no datagram
/// moved: the edge cannot have answered them.
fn open_now(net: &mut Net, to: &TunnelTarget) -> (TunnelId, Vec<Event>) {
    let id = net.client.open_tunnel(Instant::now(), to).expect("open");
    let events = std::iter::from_fn(|| net.client.poll_event()).collect();
    (id, events)
}

/// Drives the pair and reads the tunnel until the peer's FIN; what arrived, and whether
/// the FIN came within the budget.
fn echo_of(
    net: &mut Net,
    recorder: &mut Recorder,
    host: &mut EdgeHost,
    id: TunnelId,
) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    let deadline = Instant::now() + BUDGET;
    while Instant::now() < deadline {
        net.run_until(recorder, host, Duration::from_millis(5), |_, _| false);
        loop {
            let Recv { len, fin } = net.client.tunnel_recv(id, &mut buf).expect("recv");
            received.extend_from_slice(&buf[..len]);
            if fin {
                return (received, true);
            }
            if len == 0 {
                break;
            }
        }
    }
    (received, false)
}

#[test]
fn an_optimistic_tunnel_opens_before_the_edge_answers_and_its_bytes_follow_the_request() {
    let (mut net, mut recorder, mut host) = connected(true);
    let requests = host.requests.len();

    let (id, events) = open_now(&mut net, &target("echo.test", 2));
    assert!(
        events.contains(&Event::TunnelOpened { tunnel: id }),
        "{events:?}"
    );
    // Bytes and the FIN go behind the request; nothing to read before the answer.
    assert_eq!(net.client.tunnel_send(id, b"ping"), Ok(4));
    net.client.tunnel_finish(id).expect("finish");
    let mut buf = [0; 16];
    assert_eq!(net.client.tunnel_recv(id, &mut buf), Ok(Recv::default()));
    assert_eq!(host.requests.len(), requests, "the edge saw it already");

    let (echoed, fin) = echo_of(&mut net, &mut recorder, &mut host, id);
    assert_eq!(echoed, b"ping");
    assert!(fin, "the echo's FIN");
    assert_eq!(host.requests.len(), requests + 1);
    // The 2xx reported nothing more (the first TunnelOpened was drained by `open_now`).
    assert!(
        !recorder.saw(&Event::TunnelOpened { tunnel: id }),
        "opened again at the 2xx"
    );
}

#[test]
fn without_optimism_a_tunnel_takes_no_bytes_before_the_edge_answers() {
    let (mut net, _, _) = connected(false);
    let (id, events) = open_now(&mut net, &target("echo.test", 2));
    assert!(
        !events.contains(&Event::TunnelOpened { tunnel: id }),
        "{events:?}"
    );
    assert_eq!(
        net.client.tunnel_send(id, b"ping"),
        Err(TunnelError::InvalidState)
    );
}

#[test]
fn an_optimistic_tunnel_the_edge_refuses_closes_with_its_status() {
    let (mut net, mut recorder, mut host) = connected(true);
    let (id, events) = open_now(&mut net, &target("refuse-prohibited.test", 443));
    assert!(events.contains(&Event::TunnelOpened { tunnel: id }));
    assert_eq!(
        net.client.tunnel_send(id, b"GET / HTTP/1.1\r\n\r\n"),
        Ok(18)
    );

    assert!(net.run_until(&mut recorder, &mut host, BUDGET, |r, _| {
        r.closed(id).is_some()
    }));
    assert_eq!(
        recorder.closed(id),
        Some(CloseReason::Refused { status: 403 })
    );
    assert!(
        !recorder
            .events
            .iter()
            .any(|e| matches!(e, Event::TunnelRefused { .. })),
        "a tunnel the host was told is open is closed, not refused"
    );
    assert_eq!(net.client.stats().tunnels_refused, 1);
    assert_eq!(
        net.client.tunnel_send(id, b"more"),
        Err(TunnelError::UnknownTunnel)
    );
}

/// The connection dies under two optimistic tunnels whose requests went out: the one
/// that sent bytes is lost with it; the one that sent nothing waits for the next
/// connection, takes no bytes meanwhile, hears `TunnelWritable` when its request is out
/// again, and then carries bytes.
#[test]
fn a_lost_connection_ends_optimistic_tunnels_that_sent_and_requeues_those_that_did_not() {
    let (mut net, mut recorder, mut host) = connected(true);
    net.edge_alive = false;
    let (sent, _) = open_now(&mut net, &target("echo.test", 3));
    let (quiet, _) = open_now(&mut net, &target("echo.test", 4));
    assert_eq!(net.client.tunnel_send(sent, b"lost"), Ok(4));

    // The client notices through its idle timeout.
    assert!(net.run_until(&mut recorder, &mut host, BUDGET, |r, _| {
        r.closed(sent).is_some()
    }));
    assert_eq!(recorder.closed(sent), Some(CloseReason::ConnectionLost));
    assert_eq!(recorder.closed(quiet), None);
    // Waiting for a connection: bytes wait with it.
    assert_eq!(net.client.tunnel_send(quiet, b"later"), Ok(0));

    net.replace_edge(crate::edge(&[]));
    let writable = Event::TunnelWritable { tunnel: quiet };
    let mut host = EdgeHost::default();
    let reopened = net.run_until(&mut recorder, &mut host, BUDGET, |r, _| r.saw(&writable));
    assert!(reopened, "no TunnelWritable after the reconnect");
    assert_eq!(net.client.tunnel_send(quiet, b"later"), Ok(5));
    net.client.tunnel_finish(quiet).expect("finish");
    let (echoed, fin) = echo_of(&mut net, &mut recorder, &mut host, quiet);
    assert_eq!(echoed, b"later");
    assert!(fin);
    let ports: Vec<u16> = host.requests.iter().map(|(t, _)| t.port).collect();
    assert_eq!(ports, [4], "only the quiet tunnel asked again");
}

/// A host that finishes an optimistic tunnel and aborts it before the edge answered (an
/// application that sent its request, half-closed and reset) still delivers every byte
/// and the FIN: the engine stops reading only once the answer comes, as for a finished
/// tunnel aborted once open. A stop sent at once would reach an edge that had not
/// answered, which drops the request with what followed it.
#[test]
fn a_finished_optimistic_tunnel_aborted_before_the_answer_still_delivers_its_bytes() {
    let (mut net, mut recorder, mut host) = connected(true);
    let (id, _) = open_now(&mut net, &target("sink.test", 5));
    assert_eq!(net.client.tunnel_send(id, b"request"), Ok(7));
    net.client.tunnel_finish(id).expect("finish");
    net.client.tunnel_abort(id).expect("abort");

    let delivered = net.run_until(&mut recorder, &mut host, BUDGET, |_, h| {
        !h.finished_data.is_empty()
    });
    assert!(delivered, "the sink never read the FIN");
    let received: Vec<&Vec<u8>> = host.finished_data.values().collect();
    assert_eq!(received, [&b"request".to_vec()]);
    // The id is dead to the host: nothing more is reported for it.
    let settled = net.run_until(
        &mut recorder,
        &mut host,
        Duration::from_millis(300),
        |_, _| false,
    );
    assert!(!settled);
    assert!(
        !recorder.events.iter().any(|e| matches!(e,
            Event::TunnelClosed { tunnel, .. } | Event::TunnelReadable { tunnel }
                | Event::TunnelWritable { tunnel } if *tunnel == id)),
        "{:?}",
        recorder.events
    );
    assert_eq!(net.client.stats().tunnels, 0);
}

/// The same with nothing before the FIN: HTTP/3 reads that FIN itself while the request
/// waits for its answer, before the edge's host can read it, and the client's stop follows
/// the answer. The edge must still hear of the stop and end its tunnel, although its host
/// only reads the FIN and sends nothing.
#[test]
fn an_empty_finished_optimistic_tunnel_aborted_before_the_answer_ends_at_the_edge() {
    let (mut net, mut recorder, mut host) = connected(true);
    let closed_before = host.closed.len();
    let (id, _) = open_now(&mut net, &target("sink.test", 5));
    net.client.tunnel_finish(id).expect("finish");
    net.client.tunnel_abort(id).expect("abort");
    let ended = net.run_until(&mut recorder, &mut host, BUDGET, |_, h| {
        h.closed.len() > closed_before
    });
    assert!(
        ended,
        "the edge's tunnel never ended: {:?}",
        net.edge.stats()
    );
    let received: Vec<&Vec<u8>> = host.finished_data.values().collect();
    assert_eq!(received, [&Vec::<u8>::new()], "the sink read its FIN");
    assert_eq!(net.edge.stats().tunnels, 0);
}

/// An edge host that answers every request at once and reads only from `read_from` on,
/// as a host still dialling its target may.
struct LateReader {
    read_from: Instant,
    readable: Vec<TunnelId>,
    closed: Vec<TunnelId>,
}

impl Host for LateReader {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelRequest { tunnel, .. } => endpoint.accept_tunnel(tunnel).expect("accept"),
            Event::TunnelReadable { tunnel } => self.readable.push(tunnel),
            Event::TunnelClosed { tunnel, .. } => self.closed.push(tunnel),
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        if now < self.read_from || self.readable.is_empty() {
            return false;
        }
        let mut buf = [0; 64];
        for id in std::mem::take(&mut self.readable) {
            while let Ok(Recv { len, fin }) = endpoint.tunnel_recv(id, &mut buf) {
                if fin || len == 0 {
                    break;
                }
            }
        }
        true
    }
}

/// The same for an edge host that reads the FIN long after the client's stop came (a round
/// trip and more: quiche's `RESET_STREAM` answering the stop is acknowledged by then): the
/// FIN that HTTP/3 read while the request waited is watched for a stop only from the
/// host's read on, and the tunnel still ends once the host reads it.
#[test]
fn an_empty_finished_optimistic_tunnel_aborted_ends_at_an_edge_whose_host_reads_late() {
    let (mut net, mut recorder, _) = connected(true);
    let mut late = LateReader {
        read_from: Instant::now() + Duration::from_millis(300),
        readable: Vec::new(),
        closed: Vec::new(),
    };
    let (id, _) = open_now(&mut net, &target("sink.test", 5));
    net.client.tunnel_finish(id).expect("finish");
    net.client.tunnel_abort(id).expect("abort");
    let ended = net.run_until(&mut recorder, &mut late, BUDGET, |_, l| {
        !l.closed.is_empty()
    });
    assert!(
        ended,
        "the edge's tunnel never ended: {:?}",
        net.edge.stats()
    );
    assert_eq!(net.edge.stats().tunnels, 0);
}

/// Ten optimistic tunnels, each with a byte behind its request, download 4 MiB each to
/// a host that reads only on `TunnelReadable`: the 2xx reports nothing, and the first
/// `TunnelReadable` after it is not lost.
#[test]
fn optimistic_downloads_complete_for_a_host_that_reads_on_events() {
    let (mut net, _, mut host) = connected(true);
    host.source_len = 4 << 20;
    host.zero_source = true;
    let ids: Vec<TunnelId> = (0..10)
        .map(|i| open_now(&mut net, &target("source.test", 100 + i)).0)
        .collect();
    for id in &ids {
        assert_eq!(net.client.tunnel_send(*id, b"!"), Ok(1));
    }
    let mut downloads = EventReaders::default();
    let done = net.run_until(&mut downloads, &mut host, BUDGET, |d, _| {
        d.fins.len() == ids.len()
    });
    assert!(done, "finished: {} of {}", downloads.fins.len(), ids.len());
    for id in &ids {
        assert_eq!(downloads.received.get(id), Some(&(4 << 20)), "{id:?}");
    }
}

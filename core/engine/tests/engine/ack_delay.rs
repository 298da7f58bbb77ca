//! The acknowledgement owed for a lone message waits, up to `QuicConfig::ack_delay`, for
//! the answer to carry it (`endpoint::ack_delay`): one datagram back instead of two, and
//! never later than the delay. On every path by default; with
//! `QuicConfig::ack_delay_paths` `Long` only on a long one, and on a short one (the
//! harness's link, unless it delays datagrams) it goes at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use veil_engine::{AckDelayPaths, Config, EdgeConfig, Endpoint, Event, LONG_PATH_RTT, TunnelId};

use crate::harness::{Host, Net};
use crate::hosts::EventReaders;
use crate::path_length::round_across;
use crate::{BUDGET, client_config, target};

/// Longer than quiche's largest ACK delay (25 ms) plus its time-threshold wait: every
/// packet of the setup is acknowledged after it.
const QUIET: Duration = Duration::from_millis(60);

/// The edge's host: accepts every tunnel and keeps what arrives on each.
#[derive(Default)]
struct Edge {
    order: Vec<TunnelId>,
    readable: Vec<TunnelId>,
    received: HashMap<TunnelId, Vec<u8>>,
}

impl Edge {
    fn read(&mut self, endpoint: &mut Endpoint) {
        let mut buf = [0u8; 4096];
        for id in std::mem::take(&mut self.readable) {
            while let Ok(recv) = endpoint.tunnel_recv(id, &mut buf) {
                if recv.len == 0 {
                    break;
                }
                self.received
                    .entry(id)
                    .or_default()
                    .extend_from_slice(&buf[..recv.len]);
            }
        }
    }
}

impl Host for Edge {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelRequest { tunnel, .. } => {
                endpoint.accept_tunnel(tunnel).expect("accept");
                self.order.push(tunnel);
            }
            Event::TunnelReadable { tunnel } => self.readable.push(tunnel),
            _ => {}
        }
    }

    fn poll(&mut self, _endpoint: &mut Endpoint, _now: Instant) -> bool {
        false
    }
}

/// A connected pair whose edge waits up to `ack_delay`, on the harness's short link too,
/// with one open tunnel and nothing left to acknowledge.
fn quiet_pair(ack_delay: Duration) -> (Net, Edge, TunnelId) {
    quiet_pair_with(ack_delay, ack_delay)
}

/// [`quiet_pair`], the client waiting up to `client_ack_delay`.
fn quiet_pair_with(ack_delay: Duration, client_ack_delay: Duration) -> (Net, Edge, TunnelId) {
    quiet_pair_of(endpoints(ack_delay, client_ack_delay, AckDelayPaths::All))
}

/// An edge that waits up to `ack_delay` and a client that waits up to `client_ack_delay`,
/// on `paths`.
fn endpoints(ack_delay: Duration, client_ack_delay: Duration, paths: AckDelayPaths) -> Net {
    let mut config = Config::edge(EdgeConfig::default());
    config.quic.ack_delay = ack_delay;
    config.quic.ack_delay_paths = paths;
    let edge = Endpoint::new(config, Instant::now()).expect("edge");
    let pin = edge.certificate_fingerprint().expect("edge fingerprint");
    let mut config = Config::client(client_config(veil_engine::Verify::Pin(pin), None));
    config.quic.ack_delay = client_ack_delay;
    config.quic.ack_delay_paths = paths;
    let client = Endpoint::new(config, Instant::now()).expect("client");
    Net::new(client, edge)
}

/// `net` connected, with one open tunnel and nothing left to acknowledge.
fn quiet_pair_of(mut net: Net) -> (Net, Edge, TunnelId) {
    let mut readers = EventReaders::default();
    let mut host = Edge::default();
    let tunnel = net
        .client
        .open_tunnel(Instant::now(), &target("echo.test", 7))
        .expect("open");
    let open = net.run_until(&mut readers, &mut host, BUDGET, |_, e| e.order.len() == 1);
    assert!(open, "the tunnel never reached the edge: {:?}", net.stats);
    let until = Instant::now() + QUIET;
    net.run_until(&mut readers, &mut host, BUDGET, |_, _| {
        Instant::now() >= until
    });
    // The harness hands events to hosts as it runs; take what is left.
    while let Some(event) = net.edge.poll_event() {
        host.on_event(&mut net.edge, Instant::now(), event);
    }
    (net, host, tunnel)
}

/// The client sends `message` on `tunnel`, and the edge receives it and reads it.
fn deliver(net: &mut Net, host: &mut Edge, tunnel: TunnelId, message: &[u8]) -> Instant {
    let now = Instant::now();
    assert_eq!(
        net.client.tunnel_send(tunnel, message).expect("send"),
        message.len()
    );
    assert!(net.send_from_client(now));
    assert!(net.deliver_to_edge(now));
    // The edge looks at what arrived (its host asks for packets, and gets events).
    let sent_at_once = net.send_from_edge(now);
    while let Some(event) = net.edge.poll_event() {
        host.on_event(&mut net.edge, now, event);
    }
    host.read(&mut net.edge);
    assert_eq!(
        host.received.get(&host.order[0]).map(Vec::as_slice),
        Some(message)
    );
    assert!(!sent_at_once, "the acknowledgement did not wait");
    now
}

#[test]
fn the_answer_carries_the_acknowledgement_of_a_lone_message() {
    let (mut net, mut host, tunnel) = quiet_pair(Duration::from_millis(20));
    let now = deliver(&mut net, &mut host, tunnel, b"ping");
    // Reading gave credit back; still nothing leaves before the answer.
    assert!(!net.send_from_edge(now), "the window update did not wait");
    let due = net.edge.poll_timeout().expect("a deadline");
    assert!(
        due <= now + Duration::from_millis(20),
        "{due:?} is after the delay"
    );

    let id = host.order[0];
    assert_eq!(net.edge.tunnel_send(id, b"pong").expect("answer"), 4);
    assert!(net.send_from_edge(Instant::now()));
    let answer = net.take_to_client();
    assert_eq!(
        answer.len(),
        1,
        "answer and acknowledgement in one datagram"
    );
}

#[test]
fn an_unanswered_message_is_acknowledged_when_the_delay_ends() {
    let delay = Duration::from_millis(5);
    let (mut net, mut host, tunnel) = quiet_pair(delay);
    let now = deliver(&mut net, &mut host, tunnel, b"ping");
    let due = net.edge.poll_timeout().expect("a deadline");
    assert!(due <= now + delay, "{due:?} is after the delay");
    std::thread::sleep(due.saturating_duration_since(Instant::now()));
    net.edge.handle_timeout(Instant::now());
    assert!(
        net.send_from_edge(Instant::now()),
        "no acknowledgement after the delay"
    );
    assert_eq!(net.take_to_client().len(), 1);
}

#[test]
fn with_no_delay_the_acknowledgement_goes_at_once() {
    let (mut net, _host, tunnel) = quiet_pair(Duration::ZERO);
    let now = Instant::now();
    net.client.tunnel_send(tunnel, b"ping").expect("send");
    assert!(net.send_from_client(now));
    assert!(net.deliver_to_edge(now));
    assert!(net.send_from_edge(now), "the acknowledgement waited");
}

/// The client sends `messages` in as many datagrams, and the edge receives them together.
fn deliver_together(net: &mut Net, tunnel: TunnelId, messages: &[&[u8]], now: Instant) {
    for message in messages {
        net.client.tunnel_send(tunnel, message).expect("send");
        assert!(net.send_from_client(now));
    }
    let before = net.stats.delivered;
    assert!(net.deliver_to_edge(now));
    assert_eq!(net.stats.delivered - before, messages.len() as u64);
}

#[test]
fn two_large_messages_are_acknowledged_at_once() {
    let (mut net, _host, tunnel) = quiet_pair(Duration::from_millis(20));
    let now = Instant::now();
    deliver_together(&mut net, tunnel, &[&[1; 200], &[2; 200]], now);
    assert!(
        net.send_from_edge(now),
        "two packets, and the acknowledgement waited"
    );
}

#[test]
fn four_small_messages_are_acknowledged_at_once() {
    let (mut net, _host, tunnel) = quiet_pair(Duration::from_millis(20));
    let now = Instant::now();
    deliver_together(&mut net, tunnel, &[b"one", b"two", b"three", b"four"], now);
    assert!(
        net.send_from_edge(now),
        "four packets, and the acknowledgement waited"
    );
}

/// Back-to-back tunnels on one connection once sent every packet twice: one side received
/// an ACK-only packet beside a message, counted two, acknowledged at once, and its
/// answer followed in a second datagram, which the other side then received beside that
/// ACK, and so on (12 datagrams a tunnel where 6 do).
#[test]
fn an_acknowledgement_beside_a_message_does_not_count() {
    let (mut net, mut host, tunnel) = quiet_pair_with(Duration::from_millis(20), Duration::ZERO);
    let now = Instant::now();
    // The edge sends something; the client, which does not wait, acknowledges it at once.
    let id = host.order[0];
    assert_eq!(net.edge.tunnel_send(id, b"hello").expect("send"), 5);
    assert!(net.send_from_edge(now));
    assert!(net.deliver_to_client(now));
    assert!(net.send_from_client(now), "no acknowledgement");
    // Its message follows; the edge receives both together and still waits.
    let now = deliver(&mut net, &mut host, tunnel, b"ping");
    assert!(!net.send_from_edge(now));

    assert_eq!(net.edge.tunnel_send(id, b"pong").expect("answer"), 4);
    assert!(net.send_from_edge(Instant::now()));
    assert_eq!(
        net.take_to_client().len(),
        1,
        "answer and acknowledgement in one datagram"
    );
}

#[test]
fn with_long_paths_only_on_a_short_path_the_acknowledgement_goes_at_once() {
    let (mut net, _host, tunnel) = quiet_pair_of(endpoints(
        Duration::from_millis(20),
        Duration::ZERO,
        AckDelayPaths::Long,
    ));
    assert_eq!(net.edge.long_paths(), 0, "the harness's link is short");
    let now = Instant::now();
    net.client.tunnel_send(tunnel, b"ping").expect("send");
    assert!(net.send_from_client(now));
    assert!(net.deliver_to_edge(now));
    assert!(net.send_from_edge(now), "the acknowledgement waited");
}

/// One way across the slow link of [`with_long_paths_only_on_a_long_path_it_waits`]:
/// every round trip through it, and so every RTT sample, is over `LONG_PATH_RTT`, even one
/// whose second half the test skips.
const SLOW_ONE_WAY: Duration = Duration::from_millis(6);

#[test]
fn with_long_paths_only_on_a_long_path_it_waits() {
    assert!(SLOW_ONE_WAY > LONG_PATH_RTT);
    let mut net = endpoints(
        Duration::from_millis(20),
        Duration::ZERO,
        AckDelayPaths::Long,
    );
    let (mut client, mut host) = (EventReaders::default(), Edge::default());
    let tunnel = net
        .client
        .open_tunnel(Instant::now(), &target("echo.test", 7))
        .expect("open");
    let started = Instant::now();
    while host.order.is_empty() && started.elapsed() < BUDGET {
        round_across(&mut net, SLOW_ONE_WAY, &mut client, &mut host);
    }
    assert_eq!(host.order.len(), 1, "the tunnel never reached the edge");
    // Until every packet of the setup is acknowledged, still across the slow link.
    let until = Instant::now() + QUIET;
    while Instant::now() < until {
        round_across(&mut net, SLOW_ONE_WAY, &mut client, &mut host);
    }
    assert_eq!(net.edge.long_paths(), 1, "the slow link is a long path");

    deliver(&mut net, &mut host, tunnel, b"ping");
    let id = host.order[0];
    assert_eq!(net.edge.tunnel_send(id, b"pong").expect("answer"), 4);
    assert!(net.send_from_edge(Instant::now()));
    assert_eq!(
        net.take_to_client().len(),
        1,
        "answer and acknowledgement in one datagram"
    );
}

//! `Endpoint::shutdown`: the whole sequence in the engine. Open tunnels finish, the peer
//! acknowledges their ends, then the connections close; what the drain leaves is cut, and
//! the endpoint is closed once the grace has passed.

use std::time::{Duration, Instant};

use veil_engine::{CloseReason, Endpoint, Event, OpenError, ShutdownPlan};

use crate::harness::{Host, Link};
use crate::hosts::{EdgeHost, Transfers};
use crate::{BUDGET, pair, target};

/// A plan with `drain` and a short grace.
fn plan(drain: Duration) -> ShutdownPlan {
    ShutdownPlan {
        drain,
        grace: Duration::from_millis(500),
        ..ShutdownPlan::default()
    }
}

#[test]
fn a_shutdown_lets_open_tunnels_finish_then_closes() {
    let mut net = pair(&[], None);
    let size = 256 * 1024;
    let mut client = Transfers::new(target("echo.test", 7), 2, size);
    let mut edge = EdgeHost::default();
    let started = net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.received(1) > 0);
    assert!(started, "the tunnels never carried bytes");

    net.edge
        .shutdown(Instant::now(), plan(Duration::from_secs(10)));
    let asked = Instant::now();
    let closed = net.run_until_net(&mut client, &mut edge, BUDGET, |net, _, _| {
        net.edge.is_closed()
    });
    assert!(closed, "the edge never closed: {:?}", net.stats);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(client.finished, 2, "{:?}", client.other_closes);
    assert_eq!((client.received(0), client.received(1)), (size, size));
    assert!(
        edge.closed
            .iter()
            .all(|(_, reason)| *reason == CloseReason::Finished)
    );
}

#[test]
fn the_drain_cuts_what_is_left_and_the_grace_bounds_the_close() {
    let mut net = pair(&[], None);
    let mut client = Transfers::new(target("echo.test", 7), 1, 4 * 1024 * 1024);
    // The client reads nothing: its tunnel cannot end by itself.
    client.unread = Some(0);
    let mut edge = EdgeHost::default();
    let started = net.run_until(&mut client, &mut edge, BUDGET, |_, e| {
        !e.requests.is_empty()
    });
    assert!(started, "no tunnel reached the edge");

    let drain = Duration::from_millis(300);
    net.edge.shutdown(Instant::now(), plan(drain));
    let asked = Instant::now();
    // Nothing reads the edge's clock but its own timers: they come out of poll_timeout.
    let cut = net.run_until(&mut client, &mut edge, BUDGET, |_, e| !e.closed.is_empty());
    assert!(cut, "the open tunnel was never cut");
    assert!(asked.elapsed() >= drain, "cut before the drain was over");
    assert_eq!(edge.closed[0].1, CloseReason::ConnectionLost);
    let closed = net.run_until_net(&mut client, &mut edge, BUDGET, |net, _, _| {
        net.edge.is_closed()
    });
    assert!(closed, "the edge never closed");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    let lost = net.run_until(&mut client, &mut edge, BUDGET, |c, _| {
        !c.other_closes.is_empty()
    });
    assert!(lost, "the client never heard");
    assert_eq!(client.other_closes[0].1, CloseReason::ConnectionLost);
}

#[test]
fn a_client_shutting_down_opens_nothing_more() {
    let mut net = pair(&[], None);
    net.client
        .shutdown(Instant::now(), plan(Duration::from_secs(1)));
    assert_eq!(
        net.client
            .open_tunnel(Instant::now(), &target("echo.test", 7)),
        Err(OpenError::Closing)
    );
    let mut client = Transfers::new(target("echo.test", 7), 0, 0);
    let mut edge = EdgeHost::default();
    let closed = net.run_until_net(&mut client, &mut edge, BUDGET, |net, _, _| {
        net.client.is_closed()
    });
    assert!(closed, "an idle client did not close at once");
}

/// Shuts its endpoint down as soon as its first tunnel has finished: the FIN of that
/// tunnel is written, and perhaps not yet sent, at that moment.
struct ShutsDownAfterFirstEnd {
    inner: EdgeHost,
    asked: bool,
}

impl Host for ShutsDownAfterFirstEnd {
    fn on_event(&mut self, endpoint: &mut Endpoint, now: Instant, event: Event) {
        let ended = matches!(event, Event::TunnelClosed { .. });
        self.inner.on_event(endpoint, now, event);
        if ended && !self.asked {
            self.asked = true;
            endpoint.shutdown(now, plan(Duration::from_secs(10)));
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        self.inner.poll(endpoint, now)
    }
}

#[test]
fn a_shutdown_closes_only_once_the_peer_has_the_ends_even_over_loss() {
    let mut net = pair(&[], None);
    net.link = Link {
        loss: 0.2,
        ..Link::default()
    };
    let size = 64 * 1024;
    let mut client = Transfers::new(target("echo.test", 7), 1, size);
    let mut edge = ShutsDownAfterFirstEnd {
        inner: EdgeHost::default(),
        asked: false,
    };
    let ended = net.run_until(&mut client, &mut edge, BUDGET, |c, _| {
        c.finished + c.other_closes.len() + c.refused.len() > 0
    });
    assert!(ended, "the tunnel never ended: {:?}", net.stats);
    assert!(edge.asked, "the edge's tunnel never finished");
    assert_eq!(
        client.finished, 1,
        "lost its end: {:?}",
        client.other_closes
    );
    assert_eq!(client.received(0), size);
    assert!(net.stats.lost > 0, "{:?}", net.stats);
}

/// A client's shutdown sends nothing (GOAWAY is the edge's), so on an idle connection no
/// input comes to make the engine look again at ends acknowledged long ago: it must look
/// when the shutdown starts, or wait for the drain's deadline.
#[test]
fn an_idle_client_whose_tunnels_ended_long_ago_closes_at_once() {
    let mut net = pair(&[], None);
    let mut client = Transfers::new(target("echo.test", 7), 3, 16 * 1024);
    let mut edge = EdgeHost::default();
    assert!(
        net.run(&mut client, &mut edge, BUDGET),
        "the transfers never ended"
    );
    // Quiet for a while: every end acknowledged, nothing more crossing.
    let until = Instant::now() + Duration::from_millis(100);
    net.run_until(&mut client, &mut edge, BUDGET, |_, _| {
        Instant::now() >= until
    });

    net.client
        .shutdown(Instant::now(), plan(Duration::from_secs(10)));
    let asked = Instant::now();
    let closed = net.run_until_net(&mut client, &mut edge, BUDGET, |net, _, _| {
        net.client.is_closed()
    });
    assert!(closed, "the client never closed");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "waited {:?} for ends acknowledged long ago",
        asked.elapsed()
    );
}

#[test]
fn a_connection_closed_before_its_handshake_is_confirmed_stops_sending() {
    // quiche 0.30 never says `Done` to a connection closed with an application error while
    // its handshake is unconfirmed and a Handshake-space probe is due: every `send` wrote
    // one more ACK-only Handshake packet, and a host sending until `poll_transmit` says
    // `None` spun there for ever (found by the engine fuzz target, as unbounded memory).
    let mut net = pair(&[], None);
    let now = Instant::now();
    net.client
        .open_tunnel(now, &target("x.test", 1))
        .expect("open");
    // The client's Initial reaches the edge, and the edge's flight the client.
    net.send_from_client(now);
    net.deliver_to_edge(now);
    net.send_from_edge(now);
    net.deliver_to_client(now);
    // The client's answer (its Finished) is lost: the edge never confirms the handshake.
    let mut buf = vec![0; 64 * 1024];
    let answered = (0..100)
        .take_while(|_| net.client.poll_transmit(now, &mut buf).is_some())
        .count();
    assert!(answered > 0 && answered < 100, "{answered} transmits");
    // Its probe comes due (nothing is sent: the probe stays due).
    let started = Instant::now();
    loop {
        let due = net.client.poll_timeout().expect("a timer");
        if due <= Instant::now() {
            net.client.handle_timeout(Instant::now());
            break;
        }
        assert!(started.elapsed() < BUDGET, "no probe came due");
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    // The client goes away, with an application error, before anything more is sent.
    net.client.close(Instant::now(), 0x100, b"bye");
    let sent = (0..1000)
        .take_while(|_| net.client.poll_transmit(Instant::now(), &mut buf).is_some())
        .count();
    assert!(
        sent <= 8,
        "a closing connection sent {sent} transmits and went on"
    );
}

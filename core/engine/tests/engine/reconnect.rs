//! The client's one connection: lost, re-established with backoff, tunnels waiting.

use std::time::{Duration, Instant};

use veil_engine::{
    CloseReason, Config, EdgeConfig, Endpoint, Event, Pem, RefusedReason, Secret, Verify,
};

use crate::harness::Net;
use crate::hosts::{EdgeHost, OneTunnel, Transfers};
use crate::{BUDGET, client_config, target};

#[test]
fn the_client_reconnects_with_backoff_and_waiting_tunnels_then_open() {
    let mut config = client_config(Verify::Insecure, None);
    config.reconnect_initial = Duration::from_millis(100);
    config.reconnect_max = Duration::from_millis(400);
    config.pending_deadline = Duration::from_secs(15);
    let mut config = Config::client(config);
    config.quic.max_idle_timeout = Duration::from_millis(800);
    config.quic.keep_alive_interval = Some(Duration::from_millis(200));
    let client = Endpoint::new(config, Instant::now()).expect("client");
    let mut net = Net::new(client, crate::edge(&[]));

    // A working tunnel on the first connection.
    let mut first = OneTunnel::to(target("echo.test", 1));
    let mut edge = EdgeHost::default();
    assert!(net.run_until(&mut first, &mut edge, BUDGET, |c, _| c.opened));

    // The edge dies: the client notices through its idle timeout, and the tunnel with it.
    net.edge_alive = false;
    let lost_at = Instant::now();
    assert!(net.run_until(&mut first, &mut edge, BUDGET, |c, _| c.closed.is_some()));
    assert_eq!(first.closed, Some(CloseReason::ConnectionLost));
    assert!(matches!(
        first.connection_events.last(),
        Some(Event::ConnectionLost { .. })
    ));
    eprintln!("loss noticed after {:?}", lost_at.elapsed());

    // New tunnels wait while the edge is down; attempts are spaced by the backoff.
    let mut waiting = Transfers::new(target("echo.test", 2), 3, 20_000);
    let down = net.run_until(
        &mut waiting,
        &mut edge,
        Duration::from_millis(1500),
        |_, _| false,
    );
    assert!(!down);
    assert_eq!(waiting.opened, 0);
    assert!(waiting.refused.is_empty(), "{:?}", waiting.refused);
    let attempts = net.client.stats().connections_total;
    assert!(
        (2..=4).contains(&attempts),
        "{attempts} connections in 1.5 s"
    );

    // The edge comes back (a fresh process): the waiting tunnels open and carry bytes.
    net.replace_edge(crate::edge(&[]));
    let mut edge = EdgeHost::default();
    assert!(
        net.run(&mut waiting, &mut edge, BUDGET),
        "waiting tunnels did not complete"
    );
    assert_eq!(edge.requests.len(), 3);
    assert_eq!(net.client.stats().connections, 1);
}

/// How an edge restarts in [`a_restarted_edge_resets_the_old_connection_at_once`].
#[derive(Debug, Clone, Copy)]
enum Restart {
    /// The same configured `stateless_reset_key`.
    SameResetKey,
    /// The same certificate and private key, no configured reset key.
    SameCertificate,
    /// Another reset key: the new edge's resets carry tokens the client does not know.
    OtherResetKey,
}

fn edge_config(restart: Restart, generation: u8, cert: &str, key: &str) -> EdgeConfig {
    match restart {
        Restart::SameResetKey => EdgeConfig {
            stateless_reset_key: Some(Secret::new("shared reset key")),
            ..EdgeConfig::default()
        },
        Restart::SameCertificate => EdgeConfig {
            cert: Some(Pem::Text(cert.to_owned())),
            key: Some(Pem::Text(key.to_owned())),
            ..EdgeConfig::default()
        },
        Restart::OtherResetKey => EdgeConfig {
            stateless_reset_key: Some(Secret::new(format!("reset key {generation}"))),
            ..EdgeConfig::default()
        },
    }
}

/// An edge that comes back with the same reset key answers the client's next packet on the
/// old connection with a Stateless Reset: the client gives that connection up at once, not
/// at its 30 s idle timeout, and its next tunnel opens on a new connection.
#[test]
fn a_restarted_edge_resets_the_old_connection_at_once() {
    let (_, cert, key, _) = crate::tls::ca_and_leaf();
    for restart in [
        Restart::SameResetKey,
        Restart::SameCertificate,
        Restart::OtherResetKey,
    ] {
        let mut config = client_config(Verify::Insecure, None);
        config.reconnect_initial = Duration::from_millis(50);
        let mut config = Config::client(config);
        config.quic.max_idle_timeout = Duration::from_secs(30);
        config.quic.keep_alive_interval = Some(Duration::from_millis(100));
        let client = Endpoint::new(config, Instant::now()).expect("client");
        let edge_at = |generation| {
            let config = Config::edge(edge_config(restart, generation, &cert, &key));
            Endpoint::new(config, Instant::now()).expect("edge")
        };
        let mut net = Net::new(client, edge_at(1));
        let mut first = OneTunnel::to(target("echo.test", 1));
        let mut edge = EdgeHost::default();
        assert!(net.run_until(&mut first, &mut edge, BUDGET, |c, _| c.opened));

        net.replace_edge(edge_at(2));
        let mut edge = EdgeHost::default();
        let noticed = net.run_until(&mut first, &mut edge, Duration::from_secs(3), |c, _| {
            c.closed.is_some()
        });
        assert!(
            net.edge.stats().stateless_resets > 0,
            "{restart:?}: no reset sent"
        );
        if matches!(restart, Restart::OtherResetKey) {
            assert!(
                !noticed,
                "a reset with an unknown token closed the connection"
            );
            continue;
        }
        assert!(
            noticed,
            "{restart:?}: the client did not notice the restart"
        );
        assert_eq!(first.closed, Some(CloseReason::ConnectionLost));

        let mut second = OneTunnel::to(target("echo.test", 2));
        assert!(
            net.run_until(&mut second, &mut edge, BUDGET, |c, _| c.opened),
            "{restart:?}: no tunnel after the reset"
        );
        assert_eq!(net.client.stats().connections_total, 2);
    }
}

/// A client whose path to the edge is dark (`Net::edge_alive` false: every datagram lost,
/// both ways) when its first tunnel asks for a connection.
fn in_the_dark(pending_deadline: Duration) -> Net {
    let mut config = client_config(Verify::Insecure, None);
    config.pending_deadline = pending_deadline;
    let client = Endpoint::new(Config::client(config), Instant::now()).expect("client");
    let mut net = Net::new(client, crate::edge(&[]));
    net.edge_alive = false;
    net
}

/// How long after the path's return `tunnel` opened (`None`: not within 5 s).
fn opened_after_return(net: &mut Net, tunnel: &mut OneTunnel) -> Option<Duration> {
    net.edge_alive = true;
    let back = Instant::now();
    let mut edge = EdgeHost::default();
    net.run_until(tunnel, &mut edge, Duration::from_secs(5), |c, _| c.opened)
        .then(|| back.elapsed())
}

/// A tunnel that waits through a dark path opens soon after the path's return: the
/// handshake started in the dark is replaced by a fresh one each second the edge does not
/// answer, instead of waiting for quiche's backed-off retransmissions (1, 3, 7 s after the
/// start: the 7th second here, 2.5 s after the return).
#[test]
fn a_tunnel_waiting_through_a_dark_path_opens_soon_after_its_return() {
    let mut net = in_the_dark(Duration::from_secs(15));
    let mut waiting = OneTunnel::to(target("echo.test", 1));
    let mut edge = EdgeHost::default();
    net.run_until(
        &mut waiting,
        &mut edge,
        Duration::from_millis(4500),
        |_, _| false,
    );
    assert!(!waiting.opened && waiting.refused.is_none());
    let after = opened_after_return(&mut net, &mut waiting).expect("the tunnel opened");
    eprintln!("opened {after:?} after the path's return");
    assert!(
        after < Duration::from_millis(1500),
        "opened {after:?} after the return"
    );
    assert_eq!(net.client.stats().connections, 1);
}

/// The application gave up on a tunnel while the path was dark (refused at its pending
/// deadline, `EdgeUnavailable`); its next tunnel, asked for once the path is back, does
/// not wait for the attempt that started in the dark: a fresh one goes at once.
#[test]
fn a_tunnel_asked_for_after_a_dark_path_returns_opens_at_once() {
    let mut net = in_the_dark(Duration::from_millis(1500));
    let mut lost = OneTunnel::to(target("echo.test", 1));
    let mut edge = EdgeHost::default();
    assert!(net.run_until(&mut lost, &mut edge, BUDGET, |c, _| c.refused.is_some()));
    assert_eq!(lost.refused, Some(RefusedReason::EdgeUnavailable));
    net.run_until(&mut lost, &mut edge, Duration::from_secs(3), |_, _| false);
    let mut second = OneTunnel::to(target("echo.test", 2));
    let after = opened_after_return(&mut net, &mut second).expect("the tunnel opened");
    eprintln!("opened {after:?} after the path's return");
    assert!(
        after < Duration::from_millis(500),
        "opened {after:?} after the return"
    );
}

//! The client's one connection: lost, re-established with backoff, tunnels waiting.

use std::time::{Duration, Instant};

use veil_engine::{CloseReason, Config, Endpoint, Event, Verify};

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

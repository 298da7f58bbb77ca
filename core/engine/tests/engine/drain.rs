//! A draining edge (`go_away`): HTTP/3 GOAWAY on its connections, open tunnels finish on
//! them, no new connection is accepted, and a client sends new tunnels, and requests the
//! edge would not process, on a fresh connection (here: to the edge that replaced it).

use std::time::Instant;

use veil_engine::{Config, Endpoint, Event, TunnelId, Verify};

use crate::harness::{Host, Net};
use crate::hosts::{EdgeHost, Transfers};
use crate::{BUDGET, client_config, target};

/// A client host that opens one tunnel when told to and waits for its answer.
#[derive(Default)]
struct Later {
    open: bool,
    id: Option<TunnelId>,
    opened: bool,
    refused: bool,
}

impl Host for Later {
    fn on_event(&mut self, _endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelOpened { tunnel } if Some(tunnel) == self.id => self.opened = true,
            Event::TunnelRefused { tunnel, .. } if Some(tunnel) == self.id => self.refused = true,
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        if !std::mem::take(&mut self.open) {
            return false;
        }
        self.id = Some(
            endpoint
                .open_tunnel(now, &target("late.test", 7))
                .expect("open"),
        );
        true
    }
}

#[test]
fn a_draining_edge_lets_open_tunnels_finish_and_sends_new_ones_elsewhere() {
    // Not pinned: the edge that takes over at the end has a certificate of its own.
    let mut config = client_config(Verify::Insecure, None);
    config.reconnect_initial = std::time::Duration::from_millis(50);
    let client = Endpoint::new(Config::client(config), Instant::now()).expect("client");
    let mut net = Net::new(client, crate::edge(&[]));
    let mut edge = EdgeHost::default();
    let size = 1024 * 1024;
    let mut first = Transfers::new(target("echo.test", 7), 1, size);
    let started = net.run_until(&mut first, &mut edge, BUDGET, |c, _| c.received(0) > 0);
    assert!(started, "the first tunnel never carried bytes");

    // The edge starts draining while the client, not knowing yet, asks for another tunnel:
    // its request crosses the GOAWAY and is rejected unprocessed.
    net.edge.go_away(Instant::now());
    let mut late = Later {
        open: true,
        ..Later::default()
    };
    late.poll(&mut net.client, Instant::now());

    // The open tunnel finishes on the old connection.
    assert!(
        net.run(&mut first, &mut edge, BUDGET),
        "the open tunnel did not finish: {} of {size}",
        first.received(0)
    );
    // The late request never reached the edge's host, and was not refused either: it
    // waits for a fresh connection, which the draining edge does not accept.
    let settled = net.run_until(
        &mut late,
        &mut edge,
        std::time::Duration::from_millis(300),
        |l, _| l.opened || l.refused,
    );
    assert!(
        !settled,
        "the late tunnel was answered by the draining edge"
    );
    assert_eq!(edge.requests.len(), 1, "the host saw the late request");
    assert!(
        net.edge.stats().tunnels_refused >= 1,
        "no rejection counted"
    );
    assert_eq!(
        net.client.stats().connections_total,
        2,
        "no fresh connection tried"
    );

    // A new edge takes the address over (the drained one restarted): the late tunnel opens
    // there, on the client's fresh connection.
    net.replace_edge(crate::edge(&[]));
    let restarted = Instant::now();
    let opened = net.run_until(&mut late, &mut edge, BUDGET, |l, _| l.opened || l.refused);
    assert!(opened, "the late tunnel never opened after the restart");
    eprintln!(
        "late tunnel opened {:?} after the restart",
        restarted.elapsed()
    );
    assert!(late.opened && !late.refused);
    assert_eq!(edge.requests.len(), 2);
}

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

    // The tunnel stalls (its client stops reading) until neither side has bytes in
    // flight: a congestion window that the echo keeps full would hold back the GOAWAY (see
    // `Endpoint::send_goaway`) or the late request, and which of them crossed the other
    // would follow the machine's timing.
    first.unread = Some(0);
    let _ = net.run_until(
        &mut first,
        &mut edge,
        std::time::Duration::from_millis(200),
        |_, _| false,
    );
    first.unread = None;

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

/// A client that downloads from `source.test` as fast as it can and, when told, asks for
/// one more tunnel.
#[derive(Default)]
struct Download {
    bulk: Option<TunnelId>,
    readable: bool,
    /// Reads nothing: the connection's flow-control window fills up.
    paused: bool,
    received: u64,
    late: Later,
}

impl Host for Download {
    fn on_event(&mut self, endpoint: &mut Endpoint, now: Instant, event: Event) {
        match event {
            Event::TunnelReadable { tunnel } if Some(tunnel) == self.bulk => self.readable = true,
            other => self.late.on_event(endpoint, now, other),
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        let mut busy = self.late.poll(endpoint, now);
        let Some(bulk) = self.bulk else {
            self.bulk = Some(
                endpoint
                    .open_tunnel(now, &target("source.test", 7))
                    .expect("open"),
            );
            return true;
        };
        let mut buf = [0u8; 16 * 1024];
        while self.readable && !self.paused {
            match endpoint.tunnel_recv(bulk, &mut buf) {
                Ok(veil_engine::Recv { len, fin }) => {
                    self.received += len as u64;
                    self.readable = len > 0 && !fin;
                    busy |= len > 0;
                }
                Err(_) => self.readable = false,
            }
        }
        busy
    }
}

/// An edge that starts draining in the middle of a download, with nothing more it may
/// send (here the client's flow-control window is full; in the field, as often, the
/// congestion window): quiche cannot take the GOAWAY at once. It must go out as soon as there is room,
/// so that the client's next request goes to a fresh connection (or is rejected
/// unprocessed), rather than the edge serving new tunnels until its drain ends.
#[test]
fn a_goaway_blocked_by_a_full_window_goes_out_when_there_is_room() {
    let mut config = client_config(Verify::Insecure, None);
    config.reconnect_initial = std::time::Duration::from_millis(50);
    // One window for the connection and the stream: once the client stops reading, the
    // connection may send nothing at all, not even on its control stream.
    let window = 1 << 20;
    let mut config = Config::client(config);
    config.quic.initial_max_data = window;
    config.quic.initial_max_stream_data_bidi_local = window;
    config.quic.max_connection_window = window;
    config.quic.max_stream_window = window;
    let client = Endpoint::new(config, Instant::now()).expect("client");
    let mut net = Net::new(client, crate::edge(&[]));
    let mut edge = EdgeHost::default();
    edge.source_len = 256 << 20;
    edge.zero_source = true;
    let mut download = Download::default();
    let started = net.run_until(&mut download, &mut edge, BUDGET, |c, _| {
        c.received > 1 << 20
    });
    assert!(started, "the download never carried a MiB");

    download.paused = true;
    let _ = net.run_until(
        &mut download,
        &mut edge,
        std::time::Duration::from_millis(200),
        |_, _| false,
    );
    net.edge.go_away(Instant::now());
    download.paused = false;
    download.readable = true;
    // Some of the download's round trips, then a new request.
    let resumed = download.received;
    let _ = net.run_until(&mut download, &mut edge, BUDGET, |c, _| {
        c.received > resumed + (4 << 20)
    });
    download.late.open = true;
    let _ = net.run_until(
        &mut download,
        &mut edge,
        std::time::Duration::from_millis(300),
        |d, _| d.late.opened || d.late.refused,
    );
    assert_eq!(
        edge.requests.len(),
        1,
        "the draining edge processed a request long after its GOAWAY was due"
    );
}

#[test]
fn a_connection_the_edge_drains_idles_out_at_the_client_once_its_tunnels_ended() {
    // RFC 9114 §5.2 lets a connection go idle once its requests are done after a GOAWAY.
    // The client's keep-alives must not hold it open for an edge that drains without
    // closing (waiting for its clients to leave).
    let mut config = Config::client(client_config(Verify::Insecure, None));
    config.quic.max_idle_timeout = std::time::Duration::from_secs(2);
    config.quic.keep_alive_interval = Some(std::time::Duration::from_millis(500));
    let client = Endpoint::new(config, Instant::now()).expect("client");
    let mut net = Net::new(client, crate::edge(&[]));
    let mut edge = EdgeHost::default();
    let mut transfer = Transfers::new(target("echo.test", 7), 1, 1024);
    assert!(
        net.run(&mut transfer, &mut edge, BUDGET),
        "the tunnel did not finish"
    );
    net.edge.go_away(Instant::now());
    // Keep-alives every 500 ms would keep it for ever; without them it idles out in 2 s.
    let gone = net.run_until_net(&mut transfer, &mut edge, BUDGET, |net, _, _| {
        net.client.stats().connections == 0
    });
    assert!(
        gone,
        "the drained connection stayed open: {} at the client, {} at the edge",
        net.client.stats().connections,
        net.edge.stats().connections
    );
    assert_eq!(net.edge.stats().tunnels, 0);
}

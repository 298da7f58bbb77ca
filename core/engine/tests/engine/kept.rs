//! A target that half-closes and resets later, one tunnel after another on one connection:
//! the edge finishes each tunnel (the target's FIN), its bytes and FIN are acknowledged,
//! and only then does the target's reset come (`tunnel_abort` after `tunnel_finish`).
//! quiche 0.30 at the edge never forgets such a stream when the client's reset arrives
//! after the last acknowledgement (see `Endpoint::tunnel_abort`), so its unit of the
//! client's stream credit never comes back: before the client noticed, a long-lived
//! connection ran out of credit (here after `CREDIT` tunnels) and every later tunnel
//! waited until it was refused. The client now moves new tunnels to a fresh connection
//! when the edge holds most of its credit for nothing, and lets the old one idle out after
//! its last tunnel.

use std::time::{Duration, Instant};

use veil_engine::{Config, EdgeConfig, Endpoint, Event, Recv, TunnelId, Verify};

use crate::harness::{Host, Net};
use crate::{BUDGET, client_config, target};

/// Streams the edge lets the client open at once.
const CREDIT: u64 = 4;
/// Tunnels opened one after another: more than twice the credit.
const TUNNELS: usize = 9;
/// How long after its FIN the edge's target resets: long enough for the acknowledgement.
const RESET_AFTER_FIN: Duration = Duration::from_millis(30);

/// The client: one tunnel at a time, reads what comes, never finishes its own direction.
#[derive(Default)]
struct Client {
    current: Option<TunnelId>,
    readable: bool,
    opened: usize,
    closed: usize,
    refused: usize,
}

impl Host for Client {
    fn on_event(&mut self, _endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelOpened { .. } => self.opened += 1,
            Event::TunnelReadable { .. } => self.readable = true,
            Event::TunnelClosed { .. } => {
                self.closed += 1;
                self.current = None;
            }
            Event::TunnelRefused { .. } => {
                self.refused += 1;
                self.current = None;
            }
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        let Some(id) = self.current else {
            if self.closed + self.refused == TUNNELS {
                return false;
            }
            let id = endpoint
                .open_tunnel(now, &target("half-close.test", 80))
                .expect("open");
            self.current = Some(id);
            return true;
        };
        let mut busy = false;
        let mut buf = [0; 1024];
        while self.readable {
            match endpoint.tunnel_recv(id, &mut buf) {
                Ok(Recv { len, fin }) => {
                    self.readable = len > 0 && !fin;
                    busy |= len > 0 || fin;
                }
                Err(_) => self.readable = false,
            }
        }
        busy
    }
}

/// The edge: accepts, sends a few bytes and its FIN, and resets `RESET_AFTER_FIN` later.
#[derive(Default)]
struct HalfCloseThenReset {
    /// Accepted tunnels, and when each was finished.
    tunnels: Vec<(TunnelId, Option<Instant>, bool)>,
}

impl Host for HalfCloseThenReset {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        if let Event::TunnelRequest { tunnel, .. } = event {
            endpoint.accept_tunnel(tunnel).expect("accept");
            self.tunnels.push((tunnel, None, false));
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        let mut busy = false;
        for (id, finished, aborted) in &mut self.tunnels {
            match finished {
                None => {
                    if endpoint.tunnel_send(*id, b"bye\n") == Ok(4)
                        && endpoint.tunnel_finish(*id).is_ok()
                    {
                        *finished = Some(now);
                        busy = true;
                    }
                }
                Some(at) if !*aborted && now.duration_since(*at) > RESET_AFTER_FIN => {
                    let _ = endpoint.tunnel_abort(*id);
                    *aborted = true;
                    busy = true;
                }
                Some(_) => {}
            }
        }
        busy
    }
}

#[test]
fn targets_that_reset_after_their_fin_do_not_use_up_the_clients_stream_credit() {
    let mut config = Config::edge(EdgeConfig::default());
    config.quic.initial_max_streams_bidi = CREDIT;
    let edge = Endpoint::new(config, Instant::now()).expect("edge");
    // An idle timeout longer than the client's grace (five seconds), so that the waiting
    // tunnel retires its connection before the silence would; it is how a retired
    // connection goes once its tunnels ended.
    let pin = edge.certificate_fingerprint().expect("edge fingerprint");
    let mut config = Config::client(client_config(Verify::Pin(pin), None));
    config.quic.max_idle_timeout = Duration::from_secs(8);
    // Keep-alives as in production, often enough that a connection the client keeps
    // never idles out (the default: 10 s against 30 s).
    config.quic.keep_alive_interval = Some(Duration::from_secs(2));
    let client = Endpoint::new(config, Instant::now()).expect("client");
    let mut net = Net::new(client, edge);
    let mut client = Client::default();
    let mut edge = HalfCloseThenReset::default();
    // Each retirement waits out the client's grace.
    let all = net.run_until(&mut client, &mut edge, BUDGET * 2, |c, _| {
        c.closed + c.refused == TUNNELS
    });
    assert!(
        all && client.opened == TUNNELS,
        "{} of {TUNNELS} tunnels opened ({} closed, {} refused, {} answered at the edge) \
         with a credit of {CREDIT} streams",
        client.opened,
        client.closed,
        client.refused,
        edge.tunnels.len()
    );
    // The client moved to a fresh connection each time the edge held its credit, and let
    // each retired one idle out after its last tunnel: the edge forgets the streams it
    // kept with the connection.
    let total = net.client.stats().connections_total;
    assert!(total > 1, "the client never left the connection");
    let closed = net.run_until_net(&mut client, &mut edge, BUDGET, |net, _, _| {
        net.client.stats().connections == 1 && net.edge.stats().connections == 1
    });
    assert!(
        closed,
        "retired connections left open: {} at the client, {} at the edge, of {total}",
        net.client.stats().connections,
        net.edge.stats().connections
    );
}

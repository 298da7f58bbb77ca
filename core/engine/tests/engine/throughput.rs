//! Throughput through the engine on one core: both endpoints, both TLS directions and the
//! host logic share one thread, so the figure is a lower bound for a real two-process run.
//! Prints figures; never fails on a timing. Run with
//! `cargo test --release -p veil-engine --test engine throughput -- --ignored --nocapture`.

use std::time::Instant;

use veil_engine::{Endpoint, Event, Recv, TunnelId};

use crate::harness::Host;
use crate::hosts::EdgeHost;
use crate::{BUDGET, pair, target};

/// Opens `count` tunnels to `source.test` and counts what arrives.
struct Drain {
    count: usize,
    started: bool,
    readable: Vec<TunnelId>,
    received: u64,
    finished: usize,
    buf: Vec<u8>,
}

impl Host for Drain {
    fn on_event(&mut self, _: &mut Endpoint, _: Instant, event: Event) {
        match event {
            Event::TunnelReadable { tunnel } => self.readable.push(tunnel),
            Event::TunnelClosed { .. } => self.finished += 1,
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        if !self.started {
            self.started = true;
            for _ in 0..self.count {
                endpoint
                    .open_tunnel(now, &target("source.test", 9))
                    .expect("open");
            }
            return true;
        }
        let mut busy = false;
        for id in std::mem::take(&mut self.readable) {
            while let Ok(Recv { len, fin }) = endpoint.tunnel_recv(id, &mut self.buf) {
                self.received += len as u64;
                busy |= len > 0;
                if fin {
                    let _ = endpoint.tunnel_finish(id);
                    break;
                }
                if len == 0 {
                    break;
                }
            }
        }
        busy
    }

    fn done(&self) -> bool {
        self.finished == self.count
    }
}

fn run(count: usize, per_tunnel: u64) {
    let mut net = pair(&[], None);
    let mut client = Drain {
        count,
        started: false,
        readable: Vec::new(),
        received: 0,
        finished: 0,
        buf: vec![0; 256 * 1024],
    };
    let mut edge = EdgeHost::default();
    edge.source_len = per_tunnel;
    edge.zero_source = true;
    let start = Instant::now();
    assert!(
        net.run(&mut client, &mut edge, BUDGET * 3),
        "transfer incomplete"
    );
    let elapsed = start.elapsed();
    let total = per_tunnel * count as u64;
    assert_eq!(client.received, total);
    #[allow(clippy::cast_precision_loss)] // a printed figure
    let gbits = total as f64 * 8.0 / elapsed.as_secs_f64() / 1e9;
    eprintln!(
        "{count} tunnel(s), {} MiB in {elapsed:?}: {gbits:.2} Gbit/s; {} datagrams, {} of them in {} GSO batches",
        total >> 20,
        net.stats.delivered,
        net.stats.gso_datagrams,
        net.stats.gso_batches
    );
}

#[test]
#[ignore = "a measurement, run by hand in release mode"]
fn throughput() {
    run(1, 256 << 20);
    run(16, 16 << 20);
}

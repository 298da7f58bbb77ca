//! Many busy tunnels on one connection: how the engine shares the connection's send
//! capacity among them (`endpoint::turns`), with hosts that, as real ones, write only when
//! told a tunnel is writable and read only when told it is readable.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use veil_engine::{Endpoint, Event, TunnelId};

use crate::harness::Host;
use crate::hosts::EventReaders;
use crate::{BUDGET, pair, target};

/// The edge's host: accepts every request and writes 64 KiB chunks to a tunnel, in the
/// order the events name them, until the engine takes less.
#[derive(Default)]
struct Sources {
    order: Vec<TunnelId>,
    writable: Vec<TunnelId>,
    sent: HashMap<TunnelId, usize>,
}

impl Host for Sources {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelRequest { tunnel, .. } => {
                endpoint.accept_tunnel(tunnel).expect("accept");
                self.order.push(tunnel);
                self.writable.push(tunnel);
            }
            Event::TunnelWritable { tunnel } => self.writable.push(tunnel),
            _ => {}
        }
    }
    fn poll(&mut self, endpoint: &mut Endpoint, _now: Instant) -> bool {
        let chunk = vec![0u8; 64 * 1024];
        let mut busy = false;
        for id in std::mem::take(&mut self.writable) {
            while let Ok(taken) = endpoint.tunnel_send(id, &chunk) {
                *self.sent.entry(id).or_default() += taken;
                busy |= taken > 0;
                if taken < chunk.len() {
                    break;
                }
            }
        }
        busy
    }
}

/// Twenty downloads that never end share one connection until 64 MiB have crossed it.
/// With quiche's order of writable streams (the tunnel that wrote last listed first)
/// sixteen of the twenty moved nothing; with the engine's turns alone a straggler (often
/// the last opened) was left with a tenth of an even split or less in some runs, because
/// quiche sent non-incremental streams in stream order. With incremental streams
/// (`wire::TUNNEL_PRIORITY`) the smallest moved half an even split or more in every run
/// seen on a quiet machine. The harness runs on the real clock, and the turns on 5 ms
/// leads: on a machine busy with other work the split is coarser (eight runs beside a
/// release build, 2026-12-07: the smallest moved 0.22–0.84 of an even split; one of them
/// failed the quarter this asked for before). This asks for a sixth: a starved tunnel
/// (none) and the straggler of the engine's turns alone (a tenth) still fail it
/// (docs/PERFORMANCE.md, issue 17).
#[test]
fn twenty_downloads_on_one_connection_all_move() {
    const TOTAL: usize = 64 << 20;
    let mut net = pair(&[], None);
    let mut readers = EventReaders::default();
    let mut sources = Sources::default();
    let ids: Vec<TunnelId> = (0..20)
        .map(|i| {
            net.client
                .open_tunnel(Instant::now(), &target("download.test", 1000 + i))
                .expect("open")
        })
        .collect();
    let moved = net.run_until(&mut readers, &mut sources, BUDGET, |r, _| {
        r.received.values().sum::<usize>() >= TOTAL
    });
    assert!(moved, "64 MiB did not cross in time");
    let got: Vec<usize> = ids
        .iter()
        .map(|id| readers.received.get(id).copied().unwrap_or(0))
        .collect();
    let fair = got.iter().sum::<usize>() / got.len();
    eprintln!("bytes per tunnel, in the order opened: {got:?}");
    let smallest = got.iter().copied().min().unwrap_or(0);
    assert!(
        smallest * 6 >= fair,
        "the smallest tunnel moved {smallest} bytes, less than a sixth of a fair {fair}: {got:?}"
    );
}

/// The edge's host for one tunnel written to by hand: accepts, writes nothing itself.
#[derive(Default)]
struct Acceptor {
    tunnels: Vec<TunnelId>,
}

impl Host for Acceptor {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        if let Event::TunnelRequest { tunnel, .. } = event {
            endpoint.accept_tunnel(tunnel).expect("accept");
            self.tunnels.push(tunnel);
        }
    }
}

/// A write cut short by the connection's room makes its tunnel lead (`endpoint::turns`),
/// and the lead's end, at most 5 ms away, is at once one of the connection's deadlines:
/// the clock is what ends a lead quiche cannot send from. Every `poll_timeout` also checks
/// (in debug builds) that the connection timer set agrees with each connection's deadlines;
/// a lead set without refreshing the set failed it in the HTTP/1.1 conformance run.
#[test]
fn a_cut_write_leads_for_at_most_five_milliseconds() {
    let mut net = pair(&[], None);
    let mut readers = EventReaders::default();
    let mut edge = Acceptor::default();
    net.client
        .open_tunnel(Instant::now(), &target("download.test", 1000))
        .expect("open");
    assert!(net.run_until(&mut readers, &mut edge, BUDGET, |_, e| {
        !e.tunnels.is_empty()
    }));
    // Let the 200 cross.
    net.run_until(
        &mut readers,
        &mut edge,
        Duration::from_millis(200),
        |_, _| false,
    );
    let tunnel = edge.tunnels[0];
    let big = vec![0u8; 8 << 20];
    let now = Instant::now();
    let taken = net.edge.tunnel_send(tunnel, &big).expect("send");
    assert!(
        taken > 0 && taken < big.len(),
        "took {taken} of {}",
        big.len()
    );
    let deadline = net.edge.poll_timeout().expect("a deadline");
    assert!(
        deadline <= now + Duration::from_millis(5),
        "the next deadline is {:?} away",
        deadline.saturating_duration_since(now)
    );
    net.edge.handle_timeout(deadline);
    assert_ne!(
        net.edge.poll_timeout(),
        Some(deadline),
        "the lead did not end"
    );
}

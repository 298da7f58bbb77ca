//! An in-memory network for two endpoints: datagram queues both ways, with loss, reordering
//! and MTU knobs, and a driver loop that runs host logic until it says it is done.
//!
//! Time: quiche reads the real clock for its timers (loss detection, idle timeout,
//! pacing), so this harness cannot run on a virtual clock. It passes `Instant::now()` as
//! `now`, calls `handle_timeout` whenever `poll_timeout` is due, and when nothing else is
//! happening sleeps until the next timeout (at most 2 ms at a time). Every run is bounded by
//! a wall-clock budget and fails the test when the budget runs out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use veil_engine::{Endpoint, Event, RecvMeta};

/// The client's address on the simulated link (documentation range, never a real host).
pub(crate) const CLIENT_ADDR: &str = "192.0.2.2:40000";
/// The edge's address on the simulated link.
pub(crate) const EDGE_ADDR: &str = "192.0.2.1:4433";

/// Longest sleep while waiting for a timer.
const MAX_NAP: Duration = Duration::from_millis(2);

/// Application logic on one side: reacts to events and makes progress of its own.
pub(crate) trait Host {
    /// One event from this side's endpoint.
    fn on_event(&mut self, endpoint: &mut Endpoint, now: Instant, event: Event);
    /// A chance to write more; returns whether anything happened.
    fn poll(&mut self, _endpoint: &mut Endpoint, _now: Instant) -> bool {
        false
    }
    /// Whether this side has what the test waits for.
    fn done(&self) -> bool {
        false
    }
}

/// Conditions of the simulated link (the same both ways).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    /// Probability that a datagram is lost.
    pub(crate) loss: f64,
    /// Probability that a datagram is delivered after the one that follows it.
    pub(crate) reorder: f64,
    /// Datagrams larger than this are dropped.
    pub(crate) mtu: usize,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            loss: 0.0,
            reorder: 0.0,
            mtu: 1500,
        }
    }
}

/// Counters of what the link did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LinkStats {
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) reordered: u64,
    pub(crate) too_big: u64,
    pub(crate) gso_batches: u64,
    /// Datagrams that travelled inside a GSO batch.
    pub(crate) gso_datagrams: u64,
}

/// Two endpoints and the link between them.
pub(crate) struct Net {
    pub(crate) client: Endpoint,
    pub(crate) edge: Endpoint,
    /// While false, datagrams to the edge vanish (the edge is "dead").
    pub(crate) edge_alive: bool,
    pub(crate) link: Link,
    pub(crate) stats: LinkStats,
    /// The address the edge sees the client's datagrams come from (a NAT's mapping); the
    /// edge's datagrams reach the client only when sent there.
    pub(crate) client_seen_as: SocketAddr,
    /// Edge datagrams sent to an address other than `client_seen_as` (lost).
    pub(crate) misaddressed: u64,
    client_addr: SocketAddr,
    edge_addr: SocketAddr,
    to_edge: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    rng: u64,
    buf: Vec<u8>,
}

impl Net {
    pub(crate) fn new(client: Endpoint, edge: Endpoint) -> Self {
        Self {
            client,
            edge,
            edge_alive: true,
            link: Link::default(),
            stats: LinkStats::default(),
            client_seen_as: CLIENT_ADDR.parse().expect("address"),
            misaddressed: 0,
            client_addr: CLIENT_ADDR.parse().expect("address"),
            edge_addr: EDGE_ADDR.parse().expect("address"),
            to_edge: VecDeque::new(),
            to_client: VecDeque::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Replaces the edge (a restart: fresh keys, no connections) and forgets datagrams in
    /// flight to it.
    pub(crate) fn replace_edge(&mut self, edge: Endpoint) {
        self.edge = edge;
        self.to_edge.clear();
        self.edge_alive = true;
    }

    /// Drives both sides until `client.done()`; false when `budget` runs out first.
    pub(crate) fn run(
        &mut self,
        client: &mut impl Host,
        edge: &mut impl Host,
        budget: Duration,
    ) -> bool {
        self.run_until(client, edge, budget, |client, _| client.done())
    }

    /// Drives both sides until `until` holds; false when `budget` runs out first.
    pub(crate) fn run_until<C: Host, E: Host>(
        &mut self,
        client: &mut C,
        edge: &mut E,
        budget: Duration,
        until: impl Fn(&C, &E) -> bool,
    ) -> bool {
        self.run_until_net(client, edge, budget, |_, c, e| until(c, e))
    }

    /// Like [`Self::run_until`], with the endpoints in view of `until` too.
    pub(crate) fn run_until_net<C: Host, E: Host>(
        &mut self,
        client: &mut C,
        edge: &mut E,
        budget: Duration,
        until: impl Fn(&Self, &C, &E) -> bool,
    ) -> bool {
        let start = Instant::now();
        loop {
            if until(self, client, edge) {
                return true;
            }
            if start.elapsed() > budget {
                return false;
            }
            let now = Instant::now();
            let mut busy = client.poll(&mut self.client, now);
            busy |= edge.poll(&mut self.edge, now);
            // The hosts' work takes time: quiche's clock has moved on since `now`.
            busy |= self.exchange(Instant::now());
            busy |= drain_events(&mut self.client, client, now);
            busy |= drain_events(&mut self.edge, edge, now);
            busy |= self.fire_timers(Instant::now());
            if !busy {
                self.nap();
            }
        }
    }

    /// Moves every datagram both endpoints want to send across the link.
    fn exchange(&mut self, now: Instant) -> bool {
        let mut moved = self.send_from_client(now);
        moved |= self.send_from_edge(now);
        moved |= self.deliver_to_edge(now);
        moved |= self.deliver_to_client(now);
        moved
    }

    /// Puts every datagram the client wants to send on the link toward the edge, where it
    /// waits for [`Self::deliver_to_edge`].
    pub(crate) fn send_from_client(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some(transmit) = self.client.poll_transmit(now, &mut self.buf) {
            let segments = segments(&self.buf[..transmit.len], transmit.segment_size);
            count_batch(
                &mut self.stats,
                transmit.segment_size.is_some(),
                segments.len(),
            );
            for segment in segments {
                let datagram = segment.to_vec();
                if self.edge_alive {
                    push(
                        &mut self.to_edge,
                        datagram,
                        &self.link,
                        &mut self.rng,
                        &mut self.stats,
                    );
                }
            }
            moved = true;
        }
        moved
    }

    /// Puts every datagram the edge wants to send on the link toward the client, where it
    /// waits for [`Self::deliver_to_client`].
    pub(crate) fn send_from_edge(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some(transmit) = self.edge.poll_transmit(now, &mut self.buf) {
            let segments = segments(&self.buf[..transmit.len], transmit.segment_size);
            count_batch(
                &mut self.stats,
                transmit.segment_size.is_some(),
                segments.len(),
            );
            if transmit.to != self.client_seen_as {
                self.misaddressed += segments.len() as u64;
                moved = true;
                continue;
            }
            for segment in segments {
                let datagram = segment.to_vec();
                if self.edge_alive {
                    push(
                        &mut self.to_client,
                        datagram,
                        &self.link,
                        &mut self.rng,
                        &mut self.stats,
                    );
                }
            }
            moved = true;
        }
        moved
    }

    /// Takes the datagrams waiting on the link toward the client off it, oldest first (a
    /// test holds them back, or reorders them, with [`Self::put_to_client`]).
    pub(crate) fn take_to_client(&mut self) -> Vec<Vec<u8>> {
        self.to_client.drain(..).collect()
    }

    /// Puts datagrams on the link toward the client, after those already there.
    pub(crate) fn put_to_client(&mut self, datagrams: impl IntoIterator<Item = Vec<u8>>) {
        self.to_client.extend(datagrams);
    }

    /// Hands the edge every datagram waiting on the link toward it.
    pub(crate) fn deliver_to_edge(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some(mut datagram) = self.to_edge.pop_front() {
            let meta = RecvMeta {
                from: self.client_seen_as,
                to: self.edge_addr,
            };
            self.edge.handle_datagram(now, meta, &mut datagram);
            self.stats.delivered += 1;
            moved = true;
        }
        moved
    }

    /// Hands the client every datagram waiting on the link toward it.
    pub(crate) fn deliver_to_client(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some(mut datagram) = self.to_client.pop_front() {
            let meta = RecvMeta {
                from: self.edge_addr,
                to: self.client_addr,
            };
            self.client.handle_datagram(now, meta, &mut datagram);
            self.stats.delivered += 1;
            moved = true;
        }
        moved
    }

    fn fire_timers(&mut self, now: Instant) -> bool {
        let mut fired = false;
        if self.client.poll_timeout().is_some_and(|at| at <= now) {
            self.client.handle_timeout(now);
            fired = true;
        }
        if self.edge.poll_timeout().is_some_and(|at| at <= now) {
            self.edge.handle_timeout(now);
            fired = true;
        }
        fired
    }

    fn nap(&self) {
        let next = [self.client.poll_timeout(), self.edge.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let now = Instant::now();
        let nap = next.map_or(MAX_NAP, |at| at.saturating_duration_since(now).min(MAX_NAP));
        if !nap.is_zero() {
            std::thread::sleep(nap);
        }
    }
}

/// Fires `endpoint`'s timers as they come due for `wait`, delivering nothing to it (a
/// test that holds the link still while a delayed ACK, a probe or a loss timer fires).
pub(crate) fn fire_timers_for(endpoint: &mut Endpoint, wait: Duration) {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if endpoint
            .poll_timeout()
            .is_some_and(|at| at <= Instant::now())
        {
            endpoint.handle_timeout(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn count_batch(stats: &mut LinkStats, batched: bool, datagrams: usize) {
    if batched {
        stats.gso_batches += 1;
        stats.gso_datagrams += datagrams as u64;
    }
}

pub(crate) fn drain_events(endpoint: &mut Endpoint, host: &mut impl Host, now: Instant) -> bool {
    let mut any = false;
    while let Some(event) = endpoint.poll_event() {
        host.on_event(endpoint, now, event);
        any = true;
    }
    any
}

/// Splits a GSO batch back into datagrams.
fn segments(bytes: &[u8], segment_size: Option<usize>) -> Vec<&[u8]> {
    match segment_size {
        Some(size) => bytes.chunks(size).collect(),
        None => vec![bytes],
    }
}

/// Queues a datagram on a link direction, applying its loss, MTU and reordering.
fn push(
    queue: &mut VecDeque<Vec<u8>>,
    datagram: Vec<u8>,
    link: &Link,
    rng: &mut u64,
    stats: &mut LinkStats,
) {
    if datagram.len() > link.mtu {
        stats.too_big += 1;
        return;
    }
    if chance(rng) < link.loss {
        stats.lost += 1;
        return;
    }
    if !queue.is_empty() && chance(rng) < link.reorder {
        let last = queue.len() - 1;
        queue.insert(last, datagram);
        stats.reordered += 1;
        return;
    }
    queue.push_back(datagram);
}

/// A deterministic number in [0, 1) (xorshift64*).
fn chance(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let bits = u32::try_from(state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32).unwrap_or(0);
    f64::from(bits) / (f64::from(u32::MAX) + 1.0)
}

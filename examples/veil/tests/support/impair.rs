//! A UDP relay that plays a bad network between `veil client` and `veil server` (this
//! kernel has no netem): each direction delays every datagram, loses some at random,
//! delivers some late (reordering) and squeezes all through a bottleneck of a given rate
//! with a bounded queue (a full queue drops, as a router's would).
//!
//! The client talks to the relay as if it were the edge; the relay forwards from one
//! socket of its own to the edge, and the edge's answers back to the client. On loopback,
//! or on sockets the caller bound (inside a test's network namespace:
//! [`ImpairedPath::start_on`]); its threads stop when it is dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a thread waits before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// What the path does to each direction's datagrams.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Impairment {
    /// One-way delay.
    pub(crate) delay: Duration,
    /// Probability that a datagram is lost.
    pub(crate) loss: f64,
    /// Probability that a datagram is held back by `reorder_by` more than the others.
    pub(crate) reorder: f64,
    /// How much later a reordered datagram arrives.
    pub(crate) reorder_by: Duration,
    /// The bottleneck's rate, in bits a second (0: none).
    pub(crate) rate_bps: u64,
    /// The bottleneck's queue, in bytes: beyond, datagrams are dropped.
    pub(crate) queue_bytes: usize,
}

impl Impairment {
    /// A clean path: no delay, loss, reordering or bottleneck.
    pub(crate) const CLEAN: Self = Self {
        delay: Duration::ZERO,
        loss: 0.0,
        reorder: 0.0,
        reorder_by: Duration::ZERO,
        rate_bps: 0,
        queue_bytes: usize::MAX,
    };

    /// Issue 17's bad path, at a rate this machine keeps up with: 100 ms RTT, a 20 Mbit/s
    /// bottleneck with a 100 kB queue, 2% loss and 1% of datagrams 10 ms late, each way.
    pub(crate) const BAD: Self = Self {
        delay: Duration::from_millis(50),
        loss: 0.02,
        reorder: 0.01,
        reorder_by: Duration::from_millis(10),
        rate_bps: 20_000_000,
        queue_bytes: 100_000,
    };
}

/// Datagrams each way the relay lost, held back and dropped at a full bottleneck.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) forwarded: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) reordered: AtomicU64,
    pub(crate) queue_drops: AtomicU64,
}

/// The relay.
pub(crate) struct ImpairedPath {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub(crate) counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

/// A datagram on its way: when it is due, its order of arrival (ties), where, what.
type Scheduled = Reverse<(Instant, u64, SocketAddr, Vec<u8>)>;

/// One direction's delay line.
#[derive(Default)]
struct Line {
    queue: Mutex<LineState>,
    ready: Condvar,
}

#[derive(Default)]
struct LineState {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
    /// When the bottleneck has sent everything queued for it.
    link_free: Option<Instant>,
}

impl ImpairedPath {
    /// A relay to the edge at `edge`, each direction impaired by `impairment`.
    pub(crate) fn start(edge: SocketAddr, impairment: Impairment) -> anyhow::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let back = UdpSocket::bind("127.0.0.1:0")?;
        Self::start_on(front, back, edge, impairment)
    }

    /// A relay to the edge at `edge` through sockets the caller bound: the client writes
    /// to `front`, the relay reaches the edge from `back`.
    pub(crate) fn start_on(
        front: UdpSocket,
        back: UdpSocket,
        edge: SocketAddr,
        impairment: Impairment,
    ) -> anyhow::Result<Self> {
        let (front, back) = (Arc::new(front), Arc::new(back));
        front.set_read_timeout(Some(POLL))?;
        back.set_read_timeout(Some(POLL))?;
        let addr = front.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let client = Arc::new(Mutex::new(None));
        let mut threads = Vec::new();
        for (from, to, upstream) in [
            (Arc::clone(&front), Arc::clone(&back), true),
            (Arc::clone(&back), Arc::clone(&front), false),
        ] {
            let line = Arc::new(Line::default());
            let (stop_in, counters_in, client_in, line_in) = (
                Arc::clone(&stop),
                Arc::clone(&counters),
                Arc::clone(&client),
                Arc::clone(&line),
            );
            let to_edge = upstream.then_some(edge);
            threads.push(thread::spawn(move || {
                receive(
                    &from,
                    &line_in,
                    impairment,
                    &stop_in,
                    &counters_in,
                    to_edge,
                    &client_in,
                );
            }));
            let (stop_out, counters_out) = (Arc::clone(&stop), Arc::clone(&counters));
            threads.push(thread::spawn(move || {
                deliver(&to, &line, &stop_out, &counters_out);
            }));
        }
        Ok(Self {
            addr,
            stop,
            counters,
            threads,
        })
    }

    /// The address to give the client as the edge's.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ImpairedPath {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Reads one direction's datagrams and schedules each (or loses it). Upstream (`to_edge`:
/// from the client) it remembers the client's address and sends to the edge; downstream,
/// to the client's address.
fn receive(
    socket: &UdpSocket,
    line: &Line,
    impairment: Impairment,
    stop: &AtomicBool,
    counters: &Counters,
    to_edge: Option<SocketAddr>,
    client: &Mutex<Option<SocketAddr>>,
) {
    let mut buf = vec![0; 65_536];
    let mut rng: u64 = if to_edge.is_some() {
        0x9e37_79b9
    } else {
        0x7f4a_7c15
    };
    let mut random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        #[allow(clippy::cast_precision_loss)]
        let unit = (rng >> 11) as f64 / (1u64 << 53) as f64;
        unit
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let to = match to_edge {
            Some(edge) => {
                *client.lock().expect("the client's address") = Some(from);
                edge
            }
            None => match *client.lock().expect("the client's address") {
                Some(client) => client,
                // Nobody to answer yet.
                None => continue,
            },
        };
        if random() < impairment.loss {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let now = Instant::now();
        let mut state = line.queue.lock().expect("the line's lock");
        // Through the bottleneck: it leaves once the link has sent what came before, and
        // finds no room when that backlog is over the queue's size.
        let backlog = state.link_free.map_or(0, |free| {
            let ns = free.saturating_duration_since(now).as_nanos();
            usize::try_from(ns * u128::from(impairment.rate_bps) / 8_000_000_000)
                .unwrap_or(usize::MAX)
        });
        if backlog.saturating_add(len) > impairment.queue_bytes {
            counters.queue_drops.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let bits = u64::try_from(len).unwrap_or(u64::MAX).saturating_mul(8);
        let leaves = match bits
            .saturating_mul(1_000_000_000)
            .checked_div(impairment.rate_bps)
        {
            Some(nanos) => {
                let start = state.link_free.map_or(now, |free| free.max(now));
                let done = start + Duration::from_nanos(nanos);
                state.link_free = Some(done);
                done
            }
            None => now,
        };
        let mut due = leaves + impairment.delay;
        if random() < impairment.reorder {
            counters.reordered.fetch_add(1, Ordering::Relaxed);
            due += impairment.reorder_by;
        }
        state.seq += 1;
        let seq = state.seq;
        state
            .heap
            .push(Reverse((due, seq, to, buf[..len].to_vec())));
        drop(state);
        line.ready.notify_one();
    }
    line.ready.notify_all();
}

/// Sends one direction's datagrams when they are due.
fn deliver(socket: &UdpSocket, line: &Line, stop: &AtomicBool, counters: &Counters) {
    let mut state = line.queue.lock().expect("the line's lock");
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = match state.heap.peek() {
            Some(Reverse((due, ..))) if *due <= now => None,
            Some(Reverse((due, ..))) => Some((*due - now).min(POLL)),
            None => Some(POLL),
        };
        if let Some(wait) = wait {
            state = line
                .ready
                .wait_timeout(state, wait)
                .expect("the line's lock")
                .0;
            continue;
        }
        let Some(Reverse((_, _, to, datagram))) = state.heap.pop() else {
            continue;
        };
        drop(state);
        if socket.send_to(&datagram, to).is_ok() {
            counters.forwarded.fetch_add(1, Ordering::Relaxed);
        }
        state = line.queue.lock().expect("the line's lock");
    }
}

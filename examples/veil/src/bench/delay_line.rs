//! `veil bench delay-line` (hidden; started by `veil bench tcp --delay-ms`): the middle of
//! a link that delays and drops IP packets, TCP and UDP alike, for a kernel without netem.
//!
//! It runs in the link's router namespace ([`super::veth`]), where every packet forwarded
//! between the clients' side and the edge's side is routed into a TUN device. It reads
//! each packet, drops it with the given probability, holds the rest for the given delay
//! and writes them back into the device, from which the kernel forwards them on: a wire
//! of that length with a random loss, in both directions. Packets leave in the order they
//! came (one queue, one delay), so the link reorders nothing.
//!
//! The delay is kept with tokio's timer, whose resolution is a millisecond: a packet is
//! held between `delay` and `delay` + 1 ms, and the packets of one millisecond leave
//! together, as from a link that batches them. Without a rate limit the link carries what
//! this one thread moves; `--link-mbit` caps it below that with the kernel's token
//! bucket on the router's way out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

/// The most bytes the line holds: beyond, new packets are dropped (and counted), as at a
/// router whose queue is full. 32 MiB is a 10 Gbit/s link's 25 ms.
const QUEUE_BYTES: usize = 32 << 20;

/// The largest packet the device carries (its MTU is the link's 1,500; a little more so
/// that nothing is cut short).
const PACKET: usize = 2048;

/// Flags of `veil bench delay-line`.
#[derive(Debug, Args)]
pub struct DelayLineArgs {
    /// The TUN device to create and serve.
    #[arg(long)]
    pub device: String,
    /// One-way delay each packet is held for, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Share of the packets dropped, in percent, each direction.
    #[arg(long, default_value_t = 0.0)]
    pub loss_percent: f64,
}

/// Runs the line until the process is killed. Prints `delay line ready on DEVICE` once
/// the device is up (what the bench waits for before it routes packets into it).
pub(super) async fn run(args: &DelayLineArgs) -> anyhow::Result<()> {
    let tun = veil_tokio::Tun::open(&args.device)
        .with_context(|| format!("opening the delay line's TUN device {}", args.device))?;
    tun.set_mtu(super::veth::MTU_BYTES)?;
    tun.up()?;
    println!("delay line ready on {}", tun.name());
    let delay = Duration::from_millis(args.delay_ms);
    let mut loss = Loss::new(args.loss_percent);
    let mut queue = Queue::default();
    let mut buf = vec![0u8; PACKET];
    loop {
        let due = queue.next_due();
        tokio::select! {
            read = tun.recv(&mut buf) => {
                let len = read.context("reading the delay line's device")?;
                if !loss.drops() {
                    queue.push(Instant::now() + delay, buf.get(..len).unwrap_or_default());
                }
            }
            () = sleep_until(due) => {
                while let Some(packet) = queue.pop_due(Instant::now()) {
                    // A packet the kernel refuses (no route yet, a full queue) is lost, as
                    // on a wire.
                    let _ = tun.send(&packet).await;
                }
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// Packets held until their time, in arrival order, with at most [`QUEUE_BYTES`] held.
#[derive(Default)]
struct Queue {
    packets: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
}

impl Queue {
    /// Holds `packet` until `due`; drops it if the queue is full.
    fn push(&mut self, due: Instant, packet: &[u8]) {
        if self.bytes + packet.len() > QUEUE_BYTES {
            return;
        }
        self.bytes += packet.len();
        self.packets.push_back((due, packet.to_vec()));
    }

    /// When the oldest packet is due.
    fn next_due(&self) -> Option<Instant> {
        self.packets.front().map(|(due, _)| *due)
    }

    /// The oldest packet, if it is due at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_due()? > now {
            return None;
        }
        let (_, packet) = self.packets.pop_front()?;
        self.bytes -= packet.len();
        Some(packet)
    }
}

/// Random loss at a fixed probability: each packet's draw is the pattern generator's
/// mix ([`crate::body::splitmix64`]) of a random seed plus its number (a bench's coin, not
/// a secret).
struct Loss {
    /// Drop when the packet's draw is below this.
    threshold: u64,
    seed: u64,
    draws: u64,
}

impl Loss {
    fn new(percent: f64) -> Self {
        let share = (percent / 100.0).clamp(0.0, 1.0);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )] // a probability scaled to the draw's range: rounding is irrelevant
        let threshold = (share * u64::MAX as f64) as u64;
        let mut seed = [0u8; 8];
        // Without random bytes the seed stays zero: the same losses every run, still at
        // the share asked for.
        let _ = boring::rand::rand_bytes(&mut seed);
        Self {
            threshold,
            seed: u64::from_le_bytes(seed),
            draws: 0,
        }
    }

    /// Whether the next packet is lost.
    fn drops(&mut self) -> bool {
        if self.threshold == 0 {
            return false;
        }
        self.draws += 1;
        crate::body::splitmix64(self.seed.wrapping_add(self.draws)) < self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_leave_in_order_when_due_and_a_full_queue_drops() {
        let start = Instant::now();
        let mut queue = Queue::default();
        queue.push(start + Duration::from_millis(10), b"first");
        queue.push(start + Duration::from_millis(11), b"second");
        assert_eq!(queue.next_due(), Some(start + Duration::from_millis(10)));
        assert_eq!(queue.pop_due(start + Duration::from_millis(9)), None);
        assert_eq!(
            queue.pop_due(start + Duration::from_millis(12)).as_deref(),
            Some(&b"first"[..])
        );
        assert_eq!(
            queue.pop_due(start + Duration::from_millis(12)).as_deref(),
            Some(&b"second"[..])
        );
        assert_eq!(queue.pop_due(start + Duration::from_secs(1)), None);
        let big = vec![0u8; QUEUE_BYTES];
        queue.push(start, &big);
        queue.push(start, b"over");
        assert_eq!(
            queue.packets.len(),
            1,
            "the packet beyond the queue's room was kept"
        );
    }

    #[test]
    fn loss_drops_about_the_share_asked_for() {
        let mut none = Loss::new(0.0);
        assert!((0..10_000).all(|_| !none.drops()));
        let mut all = Loss::new(100.0);
        assert!((0..10_000).all(|_| all.drops()));
        let mut some = Loss::new(2.0);
        let dropped = (0..100_000).filter(|_| some.drops()).count();
        assert!((1_500..2_500).contains(&dropped), "{dropped} of 100,000");
    }
}

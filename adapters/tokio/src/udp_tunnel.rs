//! One CONNECT-UDP tunnel (RFC 9298) on the tokio side: datagrams to and from the driver
//! task, with UDP semantics — when a queue is full the datagram is dropped and counted,
//! nothing ever waits on a slow peer.
//!
//! - **towards the engine**, each datagram spends one unit of credit (a semaphore of
//!   datagrams, [`UdpLimits::credit`]); the driver returns it when it has handed the
//!   datagram to the engine. [`UdpSender::try_send`] drops when no credit is left,
//!   [`UdpSender::send`] waits for it.
//! - **from the engine**, the driver puts datagrams into a channel of
//!   [`UdpLimits::queue`] slots and drops (counting) when the host has not kept up.
//!
//! The tunnel closes when its last handle is dropped: a client finishes it (stream FIN),
//! an edge resets it (its socket went away).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::{Semaphore, TryAcquireError, mpsc};
use veil_engine::TunnelId;

use crate::command::Command;

/// Per-tunnel bounds of a UDP tunnel on the tokio side, in datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpLimits {
    /// Datagrams from the engine that may wait for the host to take them.
    pub queue: usize,
    /// Datagrams the host may hand the driver before the engine has taken them.
    pub credit: usize,
}

impl Default for UdpLimits {
    fn default() -> Self {
        Self {
            queue: 256,
            credit: 256,
        }
    }
}

/// The tunnel is closed: by the peer, by its idle timeout, with its connection, or
/// because the driver stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpTunnelClosed;

impl fmt::Display for UdpTunnelClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the UDP tunnel is closed")
    }
}

impl std::error::Error for UdpTunnelClosed {}

/// Counters of one UDP tunnel on the tokio side (the engine counts its own drops in
/// [`EndpointStats`](veil_engine::EndpointStats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpTunnelStats {
    /// Datagrams the engine took to send.
    pub sent: u64,
    /// Datagrams the engine refused to send: larger than the path allows now, or its send
    /// queue was full.
    pub send_rejected: u64,
    /// Datagrams [`UdpSender::try_send`] dropped because the driver had not taken the
    /// previous ones yet.
    pub send_queue_full: u64,
    /// Datagrams received and queued for this host.
    pub received: u64,
    /// Datagrams received but dropped because the host had not taken the previous ones.
    pub receive_queue_full: u64,
}

/// Shared counters, updated by the host's handles and by the driver.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    send_rejected: AtomicU64,
    send_queue_full: AtomicU64,
    received: AtomicU64,
    receive_queue_full: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> UdpTunnelStats {
        UdpTunnelStats {
            sent: self.sent.load(Ordering::Relaxed),
            send_rejected: self.send_rejected.load(Ordering::Relaxed),
            send_queue_full: self.send_queue_full.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            receive_queue_full: self.receive_queue_full.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// How a tunnel ends when its host lets go of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDrop {
    /// Client: FIN on the request stream (RFC 9298: the tunnel ends with the stream).
    Finish,
    /// Edge: the target socket is gone; reset the stream.
    Abort,
}

/// What every handle of one tunnel shares; its drop closes the tunnel.
#[derive(Debug)]
struct Shared {
    id: TunnelId,
    commands: mpsc::UnboundedSender<Command>,
    credit: Arc<Semaphore>,
    counters: Arc<Counters>,
    on_drop: OnDrop,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A tunnel the driver closed already ignores this.
        let _ = self.commands.send(Command::UdpClose {
            tunnel: self.id,
            abort: self.on_drop == OnDrop::Abort,
        });
    }
}

/// An open CONNECT-UDP tunnel: datagrams to and from one target, through the edge.
///
/// Dropping it (both halves, after [`split`](Self::split)) closes the tunnel.
#[derive(Debug)]
pub struct UdpTunnel {
    sender: UdpSender,
    receiver: UdpReceiver,
}

/// The sending half of a [`UdpTunnel`]; clone it freely.
#[derive(Debug, Clone)]
pub struct UdpSender {
    shared: Arc<Shared>,
}

/// A [`UdpSender`] that does not keep its tunnel open: for a host that sends on a
/// tunnel whose life another task decides (a front-end dispatching its socket's datagrams
/// straight to the tunnel of each flow, while the flow's task closes it when idle).
#[derive(Debug, Clone)]
pub struct WeakUdpSender {
    shared: Weak<Shared>,
}

impl WeakUdpSender {
    /// The sender, while some handle still holds the tunnel open.
    pub fn upgrade(&self) -> Option<UdpSender> {
        self.shared.upgrade().map(|shared| UdpSender { shared })
    }
}

/// The receiving half of a [`UdpTunnel`].
#[derive(Debug)]
pub struct UdpReceiver {
    shared: Arc<Shared>,
    datagrams: mpsc::Receiver<Bytes>,
}

/// The driver's end of one UDP tunnel.
#[derive(Debug)]
pub(crate) struct UdpPort {
    datagrams: mpsc::Sender<Bytes>,
    credit: Arc<Semaphore>,
    counters: Arc<Counters>,
}

/// A connected UDP tunnel and the driver's end of it.
pub(crate) fn pair(
    id: TunnelId,
    commands: mpsc::UnboundedSender<Command>,
    limits: UdpLimits,
    on_drop: OnDrop,
) -> (UdpTunnel, UdpPort) {
    let credit = Arc::new(Semaphore::new(limits.credit.max(1)));
    let counters = Arc::new(Counters::default());
    let (tx, rx) = mpsc::channel(limits.queue.max(1));
    let shared = Arc::new(Shared {
        id,
        commands,
        credit: credit.clone(),
        counters: counters.clone(),
        on_drop,
    });
    let tunnel = UdpTunnel {
        sender: UdpSender {
            shared: shared.clone(),
        },
        receiver: UdpReceiver {
            shared,
            datagrams: rx,
        },
    };
    let port = UdpPort {
        datagrams: tx,
        credit,
        counters,
    };
    (tunnel, port)
}

impl UdpPort {
    /// A datagram the host handed over reached the driver: its credit comes back.
    pub(crate) fn release(&self) {
        self.credit.add_permits(1);
    }

    /// Counts what the engine did with a datagram of this tunnel.
    pub(crate) fn count_send(&self, taken: bool) {
        bump(if taken {
            &self.counters.sent
        } else {
            &self.counters.send_rejected
        });
    }

    /// Queues a received datagram for the host, or drops it (counted) if the host is
    /// behind. A host that is gone drops it silently.
    pub(crate) fn deliver(&self, datagram: Bytes) {
        match self.datagrams.try_send(datagram) {
            Ok(()) => bump(&self.counters.received),
            Err(mpsc::error::TrySendError::Full(_)) => bump(&self.counters.receive_queue_full),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Ends the tunnel on the tokio side: sends fail, the receiver reads what is queued
    /// and then `None`.
    pub(crate) fn close(self) {
        self.credit.close();
    }
}

impl UdpTunnel {
    /// The engine's identifier of this tunnel.
    pub fn id(&self) -> TunnelId {
        self.sender.shared.id
    }

    /// Sends one datagram, waiting while the driver has not taken the previous ones.
    pub async fn send(&self, payload: &[u8]) -> Result<(), UdpTunnelClosed> {
        self.sender.send(payload).await
    }

    /// Sends one datagram without waiting: `Ok(false)` when it was dropped (counted)
    /// because the driver has not taken the previous ones yet.
    pub fn try_send(&self, payload: &[u8]) -> Result<bool, UdpTunnelClosed> {
        self.sender.try_send(payload)
    }

    /// The next datagram from the target; `None` once the tunnel is closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.receiver.recv().await
    }

    /// This tunnel's counters so far.
    pub fn stats(&self) -> UdpTunnelStats {
        self.sender.stats()
    }

    /// Splits the tunnel into its two directions; it closes when both are dropped.
    pub fn split(self) -> (UdpSender, UdpReceiver) {
        (self.sender, self.receiver)
    }
}

impl UdpSender {
    /// Sends one datagram, waiting while the driver has not taken the previous ones.
    /// Whether the engine could send it shows in [`UdpTunnelStats`].
    pub async fn send(&self, payload: &[u8]) -> Result<(), UdpTunnelClosed> {
        let permit = self
            .shared
            .credit
            .acquire()
            .await
            .map_err(|_| UdpTunnelClosed)?;
        permit.forget();
        self.hand_over(payload)
    }

    /// Sends one datagram without waiting: `Ok(false)` when it was dropped (counted)
    /// because the driver has not taken the previous ones yet.
    pub fn try_send(&self, payload: &[u8]) -> Result<bool, UdpTunnelClosed> {
        match self.shared.credit.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => {
                bump(&self.shared.counters.send_queue_full);
                return Ok(false);
            }
            Err(TryAcquireError::Closed) => return Err(UdpTunnelClosed),
        }
        self.hand_over(payload).map(|()| true)
    }

    /// The tunnel's counters so far.
    pub fn stats(&self) -> UdpTunnelStats {
        self.shared.counters.snapshot()
    }

    /// A handle that sends like this one but does not keep the tunnel open.
    pub fn downgrade(&self) -> WeakUdpSender {
        WeakUdpSender {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Whether the tunnel is closed (sends fail).
    pub fn is_closed(&self) -> bool {
        self.shared.credit.is_closed()
    }

    fn hand_over(&self, payload: &[u8]) -> Result<(), UdpTunnelClosed> {
        // The driver gives the credit back when it has handed the datagram to the engine.
        self.shared
            .commands
            .send(Command::UdpDatagram {
                tunnel: self.shared.id,
                payload: Bytes::copy_from_slice(payload),
            })
            .map_err(|_| UdpTunnelClosed)
    }
}

impl UdpReceiver {
    /// The next datagram from the peer; `None` once the tunnel is closed and everything
    /// queued was read.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.datagrams.recv().await
    }

    /// Waits for datagrams from the peer and moves up to `limit` (at least 1) of them into
    /// `batch`, so that a relay can send them with one system call; 0 once the tunnel is
    /// closed and everything queued was read.
    pub async fn recv_many(&mut self, batch: &mut Vec<Bytes>, limit: usize) -> usize {
        self.datagrams.recv_many(batch, limit.max(1)).await
    }

    /// The tunnel's counters so far.
    pub fn stats(&self) -> UdpTunnelStats {
        self.shared.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(limits: UdpLimits) -> (UdpTunnel, UdpPort, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (tunnel, port) = pair(TunnelId(7), tx, limits, OnDrop::Finish);
        (tunnel, port, rx)
    }

    #[test]
    fn try_send_drops_and_counts_once_the_credit_is_spent() {
        let limits = UdpLimits {
            queue: 1,
            credit: 2,
        };
        let (tunnel, port, mut commands) = tunnel(limits);
        assert_eq!(tunnel.try_send(b"a"), Ok(true));
        assert_eq!(tunnel.try_send(b"b"), Ok(true));
        assert_eq!(tunnel.try_send(b"c"), Ok(false));
        assert_eq!(tunnel.stats().send_queue_full, 1);
        // The driver takes one: one more fits.
        assert!(matches!(
            commands.try_recv(),
            Ok(Command::UdpDatagram { payload, .. }) if payload.as_ref() == b"a"
        ));
        port.release();
        assert_eq!(tunnel.try_send(b"d"), Ok(true));
    }

    #[tokio::test]
    async fn the_receive_queue_drops_and_counts_when_full() {
        let limits = UdpLimits {
            queue: 2,
            credit: 1,
        };
        let (mut tunnel, port, _commands) = tunnel(limits);
        for payload in [&b"1"[..], b"2", b"3"] {
            port.deliver(Bytes::from_static(payload));
        }
        let stats = tunnel.stats();
        assert_eq!((stats.received, stats.receive_queue_full), (2, 1));
        assert_eq!(tunnel.recv().await.as_deref(), Some(&b"1"[..]));
        assert_eq!(tunnel.recv().await.as_deref(), Some(&b"2"[..]));
        port.close();
        assert_eq!(tunnel.recv().await, None);
        assert_eq!(tunnel.try_send(b"x"), Err(UdpTunnelClosed));
        assert_eq!(tunnel.send(b"x").await, Err(UdpTunnelClosed));
    }

    #[test]
    fn a_weak_sender_sends_while_the_tunnel_is_held_open() {
        let (handle, _port, mut commands) = tunnel(UdpLimits::default());
        let weak = handle.sender.downgrade();
        let sender = weak.upgrade().expect("the tunnel is held open");
        assert_eq!(sender.try_send(b"x"), Ok(true));
        drop(sender);
        assert!(matches!(
            commands.try_recv(),
            Ok(Command::UdpDatagram {
                tunnel: TunnelId(7),
                ..
            })
        ));
        assert!(
            commands.try_recv().is_err(),
            "the upgraded sender was not the last"
        );
        drop(handle);
        assert!(matches!(commands.try_recv(), Ok(Command::UdpClose { .. })));
        assert!(
            weak.upgrade().is_none(),
            "a weak sender does not hold it open"
        );
    }

    #[test]
    fn dropping_the_last_half_closes_the_tunnel_once() {
        let (tunnel, _port, mut commands) = tunnel(UdpLimits::default());
        let (sender, receiver) = tunnel.split();
        let extra = sender.clone();
        drop(sender);
        drop(receiver);
        assert!(commands.try_recv().is_err(), "a sender is still alive");
        drop(extra);
        assert!(matches!(
            commands.try_recv(),
            Ok(Command::UdpClose {
                tunnel: TunnelId(7),
                abort: false
            })
        ));
        assert!(commands.try_recv().is_err());
    }
}

//! UDP flows of the client's front-ends (`--udp-forward`, SOCKS5 UDP ASSOCIATE): each flow
//! is one CONNECT-UDP tunnel, found by a key (the sender's address, or the SOCKS5
//! destination), opened on its first datagram, reused while alive and closed when idle.
//!
//! A front-end reads its local socket in batches and hands each datagram to
//! [`Flows::dispatch`], which never waits. Once a flow's tunnel is open, datagrams go
//! straight to the tunnel (a full tunnel queue drops and counts them); while it opens they
//! wait in a small bounded queue. Each flow's task opens the tunnel, sends the target's
//! answers back to the local peer in batches through a [`ReplyPath`], and closes the
//! tunnel when nothing moved either way for the idle time.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use veil_engine::rules::{ClientAction, Protocol};
use veil_engine::{TunnelId, TunnelTarget};
use veil_proto::socks5::{MAX_UDP_HEADER_LEN, Target, encode_udp_header};
use veil_tokio::udp::{self, UdpIo};
use veil_tokio::{UdpReceiver, UdpSender, UdpTunnelStats, WeakUdpSender};

use crate::route::Front;

/// Datagrams one flow may hold while its tunnel opens.
const FLOW_QUEUE: usize = 64;
/// Answers sent back to the local peer in one go (one GSO send when they are of a size).
const REPLY_BURST: usize = 64;
/// How long a flow whose tunnel was refused keeps discarding its peer's datagrams, so that
/// a peer that keeps sending does not open a tunnel per datagram.
const REFUSED_HOLD: Duration = Duration::from_secs(5);

/// Bounds of one front-end's flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowLimits {
    /// Flows (tunnels) open at once.
    pub(crate) max_flows: usize,
    /// A flow with no datagram either way for this long (and at most twice as long) is
    /// closed.
    pub(crate) idle: Duration,
}

/// What a front-end dropped, for its log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlowDrops {
    /// The flow's queue was full (its tunnel is opening, or the edge is slower).
    pub(crate) queue_full: u64,
    /// No new flow could be opened: the table was full.
    pub(crate) too_many_flows: u64,
}

/// Where a flow's answers go: the local socket, the peer, and for SOCKS5 the UDP request
/// header to put in front (RFC 1928 §7).
#[derive(Debug, Clone)]
pub(crate) struct ReplyPath {
    pub(crate) socket: Arc<UdpIo>,
    pub(crate) peer: SocketAddr,
    pub(crate) header: Option<Target>,
}

impl ReplyPath {
    /// The bytes put in front of every answer: the SOCKS5 UDP header, or nothing.
    fn prefix(&self) -> Vec<u8> {
        let Some(target) = &self.header else {
            return Vec::new();
        };
        let mut header = vec![0; MAX_UDP_HEADER_LEN];
        match encode_udp_header(target, &mut header) {
            Ok(len) => header.truncate(len),
            // The target came from a header veil decoded: it always encodes.
            Err(e) => {
                tracing::debug!(error = %e, "udp: SOCKS5 header of the answers does not encode");
                header.clear();
            }
        }
        header
    }

    /// Sends `answers` to the local peer, each behind `prefix`; returns how many the
    /// socket refused.
    fn send(&self, prefix: &[u8], answers: &[Bytes]) -> usize {
        udp::send_batched(
            &self.socket,
            self.peer,
            answers.iter().map(|answer| (prefix, answer.as_ref())),
        )
    }
}

/// One flow as the front-end sees it.
#[derive(Debug)]
struct Flow {
    /// Datagrams that arrive while the tunnel opens; closed when the flow's task ends.
    queue: mpsc::Sender<Bytes>,
    /// The tunnel, once open. Weak: the flow's task decides when the tunnel closes.
    tunnel: Arc<OnceLock<WeakUdpSender>>,
}

/// Where [`Flow::send`] left a datagram.
enum Sent {
    Taken,
    Dropped,
    /// The flow is over: open a new one.
    Ended,
}

impl Flow {
    fn send(&self, payload: &[u8]) -> Sent {
        if let Some(weak) = self.tunnel.get() {
            return match weak.upgrade().map(|sender| sender.try_send(payload)) {
                Some(Ok(true)) => Sent::Taken,
                Some(Ok(false)) => Sent::Dropped,
                Some(Err(_)) | None => Sent::Ended,
            };
        }
        match self.queue.try_send(Bytes::copy_from_slice(payload)) {
            Ok(()) => Sent::Taken,
            Err(mpsc::error::TrySendError::Full(_)) => Sent::Dropped,
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Ended,
        }
    }

    fn is_over(&self) -> bool {
        self.queue.is_closed()
    }
}

/// The live flows of one front-end, by key.
#[derive(Debug)]
pub(crate) struct Flows<K> {
    front: Front,
    limits: FlowLimits,
    by_key: HashMap<K, Flow>,
    drops: FlowDrops,
}

impl<K: Eq + Hash + Clone> Flows<K> {
    pub(crate) fn new(front: Front, limits: FlowLimits) -> Self {
        Self {
            front,
            limits,
            by_key: HashMap::new(),
            drops: FlowDrops::default(),
        }
    }

    /// Hands `payload` to the flow of `key`, opening one to `target` (answers going back
    /// through `reply`) if there is none alive. Never waits; false when it was dropped.
    pub(crate) fn dispatch(
        &mut self,
        key: &K,
        payload: &[u8],
        open: impl FnOnce() -> (TunnelTarget, ReplyPath),
    ) -> bool {
        if let Some(flow) = self.by_key.get(key) {
            match flow.send(payload) {
                Sent::Taken => return true,
                Sent::Dropped => {
                    self.drops.queue_full += 1;
                    return false;
                }
                // The flow ended (idle, refused, tunnel closed): open a new one.
                Sent::Ended => {
                    self.by_key.remove(key);
                }
            }
        }
        if self.by_key.len() >= self.limits.max_flows {
            self.by_key.retain(|_, flow| !flow.is_over());
            if self.by_key.len() >= self.limits.max_flows {
                self.drops.too_many_flows += 1;
                return false;
            }
        }
        let (target, reply) = open();
        let (queue, datagrams) = mpsc::channel(FLOW_QUEUE);
        if queue.try_send(Bytes::copy_from_slice(payload)).is_err() {
            return false;
        }
        let tunnel = Arc::new(OnceLock::new());
        tokio::spawn(run_flow(
            self.front.clone(),
            target,
            reply,
            datagrams,
            tunnel.clone(),
            self.limits.idle,
        ));
        self.by_key.insert(key.clone(), Flow { queue, tunnel });
        true
    }

    /// Flows alive or opening (closed ones may linger until the next sweep).
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// What was dropped so far.
    pub(crate) fn drops(&self) -> FlowDrops {
        self.drops
    }
}

/// One flow: open the tunnel, then relay until the front-end lets go, the tunnel closes,
/// or nothing moved for `idle`.
async fn run_flow(
    front: Front,
    target: TunnelTarget,
    reply: ReplyPath,
    mut datagrams: mpsc::Receiver<Bytes>,
    published: Arc<OnceLock<WeakUdpSender>>,
    idle: Duration,
) {
    match front.route(&target, Protocol::Udp) {
        ClientAction::Tunnel => {}
        ClientAction::Block => {
            tracing::info!(%target, peer = %reply.peer, "udp: blocked by a client rule");
            hold(&mut datagrams).await;
            return;
        }
        ClientAction::Direct => {
            match front.udp_direct(&target).await {
                Ok(socket) => relay_direct(&socket, &reply, &mut datagrams, idle).await,
                Err(e) => {
                    tracing::info!(%target, error = %e, "udp: direct socket failed");
                    hold(&mut datagrams).await;
                }
            }
            return;
        }
    }
    let tunnel = match front.opener.open_udp(target.clone()).await {
        Ok(tunnel) => tunnel,
        Err(failure) => {
            tracing::info!(%target, %failure, "udp: tunnel refused");
            hold(&mut datagrams).await;
            return;
        }
    };
    let id = tunnel.id();
    tracing::debug!(%target, peer = %reply.peer, tunnel = ?id, "udp: flow opened");
    let (sender, receiver) = tunnel.split();
    // From now on the front-end sends straight to the tunnel; what it queued before (and
    // the few it may still queue while it learns so) goes through `datagrams`.
    let _ = published.set(sender.downgrade());
    relay(id, (sender, receiver), &reply, &mut datagrams, idle).await;
}

/// Keeps a flow that will not carry anything in its place for a while, discarding its
/// datagrams, so that they do not open a tunnel (or a socket) each.
async fn hold(datagrams: &mut mpsc::Receiver<Bytes>) {
    let _ = tokio::time::timeout(REFUSED_HOLD, async {
        while datagrams.recv().await.is_some() {}
    })
    .await;
}

/// Relays a direct flow between the local peer and a socket connected to the target,
/// until the front-end lets go, the socket fails, or nothing moved for `idle`.
async fn relay_direct(
    socket: &tokio::net::UdpSocket,
    reply: &ReplyPath,
    datagrams: &mut mpsc::Receiver<Bytes>,
    idle: Duration,
) {
    let prefix = reply.prefix();
    let mut buf = vec![0; 65_536];
    loop {
        tokio::select! {
            payload = datagrams.recv() => {
                let Some(payload) = payload else { break };
                // A datagram the socket refuses (a full buffer, an ICMP error) is lost,
                // as it would be on the way.
                let _ = socket.send(&payload).await;
            }
            received = socket.recv(&mut buf) => {
                let Ok(len) = received else { break };
                let answer = Bytes::copy_from_slice(buf.get(..len).unwrap_or_default());
                reply.send(&prefix, &[answer]);
            }
            () = tokio::time::sleep(idle) => {
                tracing::debug!(peer = %reply.peer, "udp: direct flow idle, closing");
                break;
            }
        }
    }
}

async fn relay(
    id: TunnelId,
    (sender, mut receiver): (UdpSender, UdpReceiver),
    reply: &ReplyPath,
    datagrams: &mut mpsc::Receiver<Bytes>,
    idle: Duration,
) {
    let prefix = reply.prefix();
    let mut answers = Vec::with_capacity(REPLY_BURST);
    let mut unsent = 0;
    // Idle is checked every `idle`, not re-armed per datagram: the flow closes between
    // one and two idle periods after its last datagram either way.
    let mut seen = activity(&sender.stats());
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    loop {
        tokio::select! {
            payload = datagrams.recv() => {
                // None: the front-end is gone (its association or listener ended).
                let Some(payload) = payload else { break };
                if sender.send(&payload).await.is_err() {
                    break;
                }
            }
            count = receiver.recv_many(&mut answers, REPLY_BURST) => {
                if count == 0 {
                    break;
                }
                unsent += reply.send(&prefix, &answers);
                answers.clear();
            }
            _ = check.tick() => {
                let now = activity(&sender.stats());
                if now == seen {
                    tracing::debug!(peer = %reply.peer, tunnel = ?id, "udp: flow idle, closing");
                    break;
                }
                seen = now;
            }
        }
    }
    tracing::debug!(tunnel = ?id, stats = ?sender.stats(), unsent, "udp: flow ended");
}

/// Datagrams that moved (or were offered) either way so far: unchanged over an idle
/// period means the flow is idle.
fn activity(stats: &UdpTunnelStats) -> u64 {
    stats.sent
        + stats.send_rejected
        + stats.send_queue_full
        + stats.received
        + stats.receive_queue_full
}

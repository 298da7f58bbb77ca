//! UDP flows of the client's front-ends (`--udp-forward`, SOCKS5 UDP ASSOCIATE): each flow
//! is one CONNECT-UDP tunnel, found by a key (the sender's address, or the SOCKS5
//! destination), opened on its first datagram, reused while alive and closed when idle.
//!
//! A front-end reads its local socket and hands each datagram to [`Flows::dispatch`], which
//! never waits: every flow has a bounded queue (datagrams that arrive while its tunnel
//! opens wait there), and a full queue, or a full table of flows, drops the datagram and
//! counts it. Each flow's task opens the tunnel, moves datagrams both ways and sends the
//! target's answers back to the local peer through a [`ReplyPath`].

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use veil_engine::TunnelTarget;
use veil_proto::socks5::{MAX_UDP_HEADER_LEN, Target, encode_udp_header};
use veil_tokio::{Opener, UdpTunnel};

/// Datagrams one flow may hold while its tunnel opens or its sender waits.
const FLOW_QUEUE: usize = 64;
/// How long a flow whose tunnel was refused keeps discarding its peer's datagrams, so that
/// a peer that keeps sending does not open a tunnel per datagram.
const REFUSED_HOLD: Duration = Duration::from_secs(5);

/// Bounds of one front-end's flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowLimits {
    /// Flows (tunnels) open at once.
    pub(crate) max_flows: usize,
    /// A flow with no datagram either way for this long is closed.
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
    pub(crate) socket: Arc<UdpSocket>,
    pub(crate) peer: SocketAddr,
    pub(crate) header: Option<Target>,
}

impl ReplyPath {
    async fn send(&self, payload: &[u8], scratch: &mut Vec<u8>) {
        let datagram = match &self.header {
            None => payload,
            Some(target) => {
                scratch.clear();
                scratch.resize(MAX_UDP_HEADER_LEN, 0);
                let Ok(len) = encode_udp_header(target, scratch) else {
                    return;
                };
                scratch.truncate(len);
                scratch.extend_from_slice(payload);
                scratch.as_slice()
            }
        };
        if let Err(e) = self.socket.send_to(datagram, self.peer).await {
            tracing::debug!(peer = %self.peer, error = %e, "udp: answer to the local peer dropped");
        }
    }
}

/// The live flows of one front-end, by key.
#[derive(Debug)]
pub(crate) struct Flows<K> {
    opener: Opener,
    limits: FlowLimits,
    by_key: HashMap<K, mpsc::Sender<Bytes>>,
    drops: FlowDrops,
}

impl<K: Eq + Hash + Clone> Flows<K> {
    pub(crate) fn new(opener: Opener, limits: FlowLimits) -> Self {
        Self {
            opener,
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
        if let Some(queue) = self.by_key.get(key) {
            match queue.try_send(Bytes::copy_from_slice(payload)) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.drops.queue_full += 1;
                    return false;
                }
                // The flow ended (idle, refused, tunnel closed): open a new one.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.by_key.remove(key);
                }
            }
        }
        if self.by_key.len() >= self.limits.max_flows {
            self.by_key.retain(|_, queue| !queue.is_closed());
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
        tokio::spawn(run_flow(
            self.opener.clone(),
            target,
            reply,
            datagrams,
            self.limits.idle,
        ));
        self.by_key.insert(key.clone(), queue);
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
    opener: Opener,
    target: TunnelTarget,
    reply: ReplyPath,
    mut datagrams: mpsc::Receiver<Bytes>,
    idle: Duration,
) {
    let tunnel = match opener.open_udp(target.clone()).await {
        Ok(tunnel) => tunnel,
        Err(failure) => {
            tracing::info!(%target, %failure, "udp: tunnel refused");
            // Keep the flow's place, discarding, so that its datagrams do not open a
            // tunnel each.
            let _ = tokio::time::timeout(REFUSED_HOLD, async {
                while datagrams.recv().await.is_some() {}
            })
            .await;
            return;
        }
    };
    tracing::debug!(%target, peer = %reply.peer, tunnel = ?tunnel.id(), "udp: flow opened");
    relay(tunnel, &reply, &mut datagrams, idle).await;
}

async fn relay(
    mut tunnel: UdpTunnel,
    reply: &ReplyPath,
    datagrams: &mut mpsc::Receiver<Bytes>,
    idle: Duration,
) {
    let mut scratch = Vec::new();
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            payload = datagrams.recv() => {
                // None: the front-end is gone (its association or listener ended).
                let Some(payload) = payload else { break };
                if tunnel.send(&payload).await.is_err() {
                    break;
                }
            }
            answer = tunnel.recv() => {
                let Some(answer) = answer else { break };
                reply.send(&answer, &mut scratch).await;
            }
            () = &mut timer => {
                tracing::debug!(peer = %reply.peer, tunnel = ?tunnel.id(), "udp: flow idle, closing");
                break;
            }
        }
        timer.as_mut().reset(tokio::time::Instant::now() + idle);
    }
    tracing::debug!(tunnel = ?tunnel.id(), stats = ?tunnel.stats(), "udp: flow ended");
}

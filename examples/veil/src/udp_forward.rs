//! `--udp-forward LOCAL_ADDR=TARGET`: a static UDP port forward. Every local sender
//! address gets its own CONNECT-UDP tunnel to the target, so that answers go back to the
//! sender that asked; a sender's tunnel closes when idle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use veil_engine::TunnelTarget;
use veil_tokio::udp::{self, UdpIo};

use crate::route::Front;
use crate::udp_flows::{FlowLimits, Flows, ReplyPath};

/// Local senders (tunnels) one forward serves at once.
const MAX_PEERS: usize = 1024;
/// Datagrams read from the socket before the forward lets other tasks run.
const RECV_BUDGET: usize = 256;

/// Forwards datagrams from `socket` to `target` forever; a sender's tunnel closes after
/// `idle` without a datagram either way.
pub(crate) async fn serve(socket: UdpIo, target: TunnelTarget, front: Front, idle: Duration) {
    let socket = Arc::new(socket);
    let limits = FlowLimits {
        max_flows: MAX_PEERS,
        idle,
    };
    let mut flows: Flows<SocketAddr> = Flows::new(front, limits);
    let mut reported = flows.drops();
    loop {
        if let Err(e) = socket.readable().await {
            tracing::warn!(error = %e, "udp forward: socket failed");
            return;
        }
        let drained = udp::drain(&socket, RECV_BUDGET, |peer, payload| {
            flows.dispatch(&peer, payload, || {
                let reply = ReplyPath {
                    socket: socket.clone(),
                    peer,
                    header: None,
                };
                (target.clone(), reply)
            });
        });
        match drained {
            // The budget was spent: let the flows' tasks run before reading on.
            Ok(read) if read >= RECV_BUDGET => tokio::task::yield_now().await,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "udp forward: receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let drops = flows.drops();
        if drops != reported {
            tracing::debug!(%target, ?drops, flows = flows.len(), "udp forward: datagrams dropped");
            reported = drops;
        }
    }
}

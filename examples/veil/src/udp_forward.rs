//! `--udp-forward LOCAL_ADDR=TARGET`: a static UDP port forward. Every local sender
//! address gets its own CONNECT-UDP tunnel to the target, so that answers go back to the
//! sender that asked; a sender's tunnel closes when idle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use veil_engine::TunnelTarget;
use veil_tokio::Opener;

use crate::udp_flows::{FlowLimits, Flows, ReplyPath};

/// Local senders (tunnels) one forward serves at once.
const MAX_PEERS: usize = 1024;
/// Largest UDP payload (65535 minus the UDP header).
const MAX_UDP_PAYLOAD: usize = 65_527;

/// Forwards datagrams from `socket` to `target` forever; a sender's tunnel closes after
/// `idle` without a datagram either way.
pub(crate) async fn serve(socket: UdpSocket, target: TunnelTarget, opener: Opener, idle: Duration) {
    let socket = Arc::new(socket);
    let limits = FlowLimits {
        max_flows: MAX_PEERS,
        idle,
    };
    let mut flows: Flows<SocketAddr> = Flows::new(opener, limits);
    let mut buf = vec![0; MAX_UDP_PAYLOAD];
    let mut reported = flows.drops();
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                // ICMP errors for earlier answers surface here; the socket lives on.
                tracing::debug!(error = %e, "udp forward: receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let payload = buf.get(..len).unwrap_or_default();
        flows.dispatch(&peer, payload, || {
            let reply = ReplyPath {
                socket: socket.clone(),
                peer,
                header: None,
            };
            (target.clone(), reply)
        });
        let drops = flows.drops();
        if drops != reported {
            tracing::debug!(%target, ?drops, flows = flows.len(), "udp forward: datagrams dropped");
            reported = drops;
        }
    }
}

//! Edge: the `decap` off-ramp of CONNECT-IP on tokio — the engine takes the clients'
//! packets apart into flows (`Event::IpFlowOpened`), and this module gives each flow an
//! ordinary socket: a UDP socket connected to the flow's destination, or a ping socket for
//! ICMP echo. No TUN device, no privileges (ping sockets need the edge's group in
//! `net.ipv4.ping_group_range`; without it echo flows are closed, counted by the engine).
//!
//! The engine decided everything before a flow reaches here (addresses, scope, egress
//! policy and rules per destination, the `ip_flow` hook); this module only moves payloads:
//! what the client sent (`Endpoint::ip_flow_recv`) goes out of the flow's socket, what the
//! socket receives goes back as `Command::IpFlowAnswer` to `Endpoint::ip_flow_send`, which
//! builds the IP packet. Every queue is bounded and drops, as UDP would.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::sync::mpsc;
use veil_engine::{IpFlowId, IpFlowProtocol};

use crate::command::Command;

/// Payloads from the client that may wait for a flow's socket.
const FLOW_QUEUE: usize = 256;

/// The largest datagram a flow's socket reads.
const MAX_DATAGRAM: usize = 65_535;

/// The driver's side of the decap off-ramp: one channel per open flow.
#[derive(Debug, Default)]
pub(crate) struct DecapFlows {
    flows: HashMap<IpFlowId, mpsc::Sender<Bytes>>,
    /// Payloads dropped because a flow's socket was behind.
    pub(crate) dropped: u64,
}

impl DecapFlows {
    /// Gives a new flow its socket, in a task of its own.
    pub(crate) fn open(
        &mut self,
        flow: IpFlowId,
        protocol: IpFlowProtocol,
        destination: SocketAddr,
        commands: mpsc::UnboundedSender<Command>,
    ) {
        let (tx, rx) = mpsc::channel(FLOW_QUEUE);
        self.flows.insert(flow, tx);
        tokio::spawn(async move {
            let result = match protocol {
                IpFlowProtocol::Udp => run(flow, udp_socket(destination), rx, &commands).await,
                IpFlowProtocol::IcmpEcho => {
                    run(flow, ping_socket(destination), rx, &commands).await
                }
                _ => Err(io::Error::other("a flow protocol this host does not carry")),
            };
            if let Err(error) = result {
                tracing::debug!(?flow, %destination, %error, "decapsulated flow ended");
                let _ = commands.send(Command::IpFlowFailed { flow });
            }
        });
    }

    /// Hands a payload the client sent to its flow's socket, or drops it (counted).
    pub(crate) fn deliver(&mut self, flow: IpFlowId, payload: &[u8]) {
        let Some(tx) = self.flows.get(&flow) else {
            return;
        };
        if tx.try_send(Bytes::copy_from_slice(payload)).is_err() {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "decapsulated payloads dropped: a flow's socket is behind"
                );
            }
        }
    }

    /// The engine closed the flow: its task ends with its channel.
    pub(crate) fn close(&mut self, flow: IpFlowId) {
        self.flows.remove(&flow);
    }
}

/// A UDP socket connected to `destination`, Don't Fragment set (as CONNECT-UDP's).
fn udp_socket(destination: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    let socket = crate::udp_egress::connected_socket(destination, None)?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket)
}

/// An ICMP "ping" socket (`SOCK_DGRAM`, `IPPROTO_ICMP`/`ICMPV6`) connected to
/// `destination`: it takes and gives whole echo messages, the kernel choosing the
/// identifier (the engine puts the client's back).
fn ping_socket(destination: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    use rustix::net::{AddressFamily, SocketType, ipproto, socket};
    let (family, protocol) = if destination.is_ipv6() {
        (AddressFamily::INET6, ipproto::ICMPV6)
    } else {
        (AddressFamily::INET, ipproto::ICMP)
    };
    let fd = socket(family, SocketType::DGRAM, Some(protocol))?;
    let socket = std::net::UdpSocket::from(fd);
    socket.connect(SocketAddr::new(destination.ip(), 0))?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket)
}

/// Moves payloads between the flow's channel and its socket until either ends.
async fn run(
    flow: IpFlowId,
    socket: io::Result<tokio::net::UdpSocket>,
    mut payloads: mpsc::Receiver<Bytes>,
    commands: &mpsc::UnboundedSender<Command>,
) -> io::Result<()> {
    let socket = socket?;
    let mut buf = vec![0; MAX_DATAGRAM];
    loop {
        tokio::select! {
            payload = payloads.recv() => match payload {
                // Awaited, not `try_send`: tokio has not seen a fresh socket writable yet and
                // would drop the flow's first payload untried. While the kernel's buffer is
                // full this flow's queue fills and the driver drops (counted); an error (a
                // payload over the path MTU with Don't Fragment) drops the payload.
                Some(payload) => { let _ = socket.send(&payload).await; }
                None => return Ok(()),
            },
            received = socket.recv(&mut buf) => {
                let len = match received {
                    Ok(len) => len,
                    // An ICMP error from the destination about an earlier datagram (port
                    // unreachable): UDP goes on.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e),
                };
                let payload = buf.get(..len).unwrap_or_default().to_vec();
                if commands.send(Command::IpFlowAnswer { flow, payload }).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

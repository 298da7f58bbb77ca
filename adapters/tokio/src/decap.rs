//! Edge: the `decap` off-ramp of CONNECT-IP on tokio — the engine takes the clients'
//! packets apart into flows (`Event::IpFlowOpened`), and this module gives each flow an
//! ordinary socket: a UDP socket connected to the flow's destination, or a ping socket for
//! ICMP echo. No TUN device, no privileges (ping sockets need the edge's group in
//! `net.ipv4.ping_group_range`; without it an edge with `CAP_NET_RAW`, root, uses a raw
//! ICMP socket per echo flow instead, and one without closes echo flows, counted by the
//! engine).
//!
//! The engine decided everything before a flow reaches here (addresses, scope, egress
//! policy and rules per destination, the `ip_flow` hook); this module only moves payloads:
//! what the client sent (`Endpoint::ip_flow_recv`) goes out of the flow's socket, what the
//! socket receives goes back as `Command::IpFlowAnswers` to `Endpoint::ip_flow_send`, which
//! builds the IP packet. Every queue is bounded and drops, as UDP would. A UDP flow's
//! socket is read and written in batches, as CONNECT-UDP's are (`crate::udp`: `recvmmsg`
//! with GRO, GSO sends), and each read's datagrams go to the driver as one command.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::sync::mpsc;
use veil_engine::{IpFlowId, IpFlowProtocol, RawEcho};

use crate::command::Command;
use crate::udp::{self, UdpIo};

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
                IpFlowProtocol::Udp => run_udp(flow, destination, rx, &commands).await,
                IpFlowProtocol::IcmpEcho => {
                    run_echo(flow, echo_socket(destination), rx, &commands).await
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

/// The most datagrams a UDP flow moves per wake-up each way.
const BURST: usize = 64;

/// A UDP flow: a socket connected to `destination`, Don't Fragment set (as CONNECT-UDP's),
/// moving payloads both ways in batches until the flow's channel closes.
async fn run_udp(
    flow: IpFlowId,
    destination: SocketAddr,
    mut payloads: mpsc::Receiver<Bytes>,
    commands: &mpsc::UnboundedSender<Command>,
) -> io::Result<()> {
    let socket = crate::udp_egress::connected_socket(destination, None)?;
    socket.set_nonblocking(true)?;
    let io = UdpIo::from_std(socket)?;
    let mut batch = Vec::with_capacity(BURST);
    loop {
        tokio::select! {
            taken = payloads.recv_many(&mut batch, BURST) => {
                if taken == 0 {
                    return Ok(());
                }
                // A full send buffer, a payload over the path MTU (Don't Fragment) or an
                // ICMP error about an earlier datagram: UDP drops it.
                udp::send_batched(
                    &io,
                    destination,
                    batch.iter().map(|payload| (&[][..], payload.as_ref())),
                );
                batch.clear();
            }
            readable = io.readable() => {
                readable?;
                let mut answers = Vec::new();
                udp::drain(&io, BURST, |_, datagram| answers.push(datagram.to_vec()))?;
                if !answers.is_empty()
                    && commands
                        .send(Command::IpFlowAnswers { flow, payloads: answers })
                        .is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

/// The socket of an ICMP echo flow to `destination`: a ping socket, or, where this
/// process's group may not open one (`EACCES`: outside `net.ipv4.ping_group_range`), a raw
/// ICMP socket if it may open that (`CAP_NET_RAW`); otherwise the ping socket's error.
fn echo_socket(destination: SocketAddr) -> io::Result<FlowSocket> {
    use rustix::net::SocketType;
    match icmp_socket(destination, SocketType::DGRAM) {
        Ok(socket) => Ok(FlowSocket::plain(socket)),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            let Ok(socket) = icmp_socket(destination, SocketType::RAW) else {
                return Err(error);
            };
            Ok(FlowSocket {
                socket,
                raw_echo: Some(RawEcho::new(destination.ip())),
                scratch: Vec::new(),
            })
        }
        Err(error) => Err(error),
    }
}

/// An ICMP socket of `kind` connected to `destination`: `DGRAM`, a "ping" socket, takes and
/// gives whole echo messages, the kernel choosing the identifier (the engine puts the
/// client's back); `RAW` takes messages as they are and gives every ICMP message from
/// `destination` ([`FlowSocket`] sorts them).
fn icmp_socket(
    destination: SocketAddr,
    kind: rustix::net::SocketType,
) -> io::Result<tokio::net::UdpSocket> {
    use rustix::net::{AddressFamily, ipproto, socket};
    let (family, protocol) = if destination.is_ipv6() {
        (AddressFamily::INET6, ipproto::ICMPV6)
    } else {
        (AddressFamily::INET, ipproto::ICMP)
    };
    let fd = socket(family, kind, Some(protocol))?;
    let socket = std::net::UdpSocket::from(fd);
    socket.connect(SocketAddr::new(destination.ip(), 0))?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket)
}

/// A flow's socket, with what a raw echo socket needs done to each message.
struct FlowSocket {
    socket: tokio::net::UdpSocket,
    /// Set for a raw ICMP socket.
    raw_echo: Option<RawEcho>,
    /// The outgoing message, rewritten for a raw socket.
    scratch: Vec<u8>,
}

impl FlowSocket {
    fn plain(socket: tokio::net::UdpSocket) -> Self {
        Self {
            socket,
            raw_echo: None,
            scratch: Vec::new(),
        }
    }

    /// Sends one payload. On a raw socket the echo request gets the flow's identifier and,
    /// over IPv4, its checksum (the kernel computes it over IPv6, RFC 3542 §3.1).
    async fn send(&mut self, payload: &[u8]) -> io::Result<usize> {
        let Some(raw) = &self.raw_echo else {
            return self.socket.send(payload).await;
        };
        raw.request(payload, &mut self.scratch);
        self.socket.send(&self.scratch).await
    }

    /// The part of the `len` bytes received into `buf` that is this flow's payload, or
    /// `None` for a message that is not: on a raw socket only echo replies carrying the
    /// flow's identifier are, after the IPv4 header a raw IPv4 socket returns.
    fn payload<'a>(&self, buf: &'a [u8], len: usize) -> Option<&'a [u8]> {
        let received = buf.get(..len)?;
        match &self.raw_echo {
            Some(raw) => raw.reply(received),
            None => Some(received),
        }
    }
}

/// An ICMP echo flow: moves messages between the flow's channel and its socket until either
/// ends.
async fn run_echo(
    flow: IpFlowId,
    socket: io::Result<FlowSocket>,
    mut payloads: mpsc::Receiver<Bytes>,
    commands: &mpsc::UnboundedSender<Command>,
) -> io::Result<()> {
    let mut socket = socket?;
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
            received = socket.socket.recv(&mut buf) => {
                let len = match received {
                    Ok(len) => len,
                    // An ICMP error from the destination about an earlier datagram (port
                    // unreachable): UDP goes on.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e),
                };
                let Some(payload) = socket.payload(&buf, len) else {
                    continue;
                };
                let payload = payload.to_vec();
                let payloads = vec![payload];
                if commands.send(Command::IpFlowAnswers { flow, payloads }).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

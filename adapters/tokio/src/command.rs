//! What the tasks of a node (tunnels, dials, UDP sockets, openers) ask of its driver, over
//! one channel. Its own module so that the tasks depend on this vocabulary, not on the
//! driver, and the driver on the tasks: no import circle.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use veil_engine::{Refusal, TunnelId, TunnelTarget};

use crate::OpenFailure;
use crate::tunnel::Tunnel;
use crate::udp_egress;
use crate::udp_tunnel::UdpTunnel;

/// What tasks ask of the driver.
pub(crate) enum Command {
    /// Client: open a tunnel and answer when the edge has.
    Open {
        target: Box<TunnelTarget>,
        reply: oneshot::Sender<Result<Tunnel, OpenFailure>>,
    },
    /// Bytes for a tunnel (credit already spent).
    Data { tunnel: TunnelId, bytes: Bytes },
    /// The tunnel's local side finished (EOF).
    Finish { tunnel: TunnelId },
    /// The tunnel's local side failed: reset it.
    Abort { tunnel: TunnelId },
    /// A reader drained a chunk after the driver found its channel full.
    Wake { tunnel: TunnelId },
    /// Edge: which of these resolved addresses a tunnel dials, and from where
    /// (`Endpoint::egress_for`).
    ChooseEgress {
        tunnel: TunnelId,
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<Result<veil_engine::EgressPlan, Refusal>>,
    },
    /// Edge: a dial for a tunnel request ended.
    Dialed {
        tunnel: TunnelId,
        result: Result<crate::dial::Connected, Refusal>,
    },
    /// Client: open a CONNECT-UDP tunnel and answer when the edge has.
    OpenUdp {
        target: Box<TunnelTarget>,
        reply: oneshot::Sender<Result<UdpTunnel, OpenFailure>>,
    },
    /// A datagram for a UDP tunnel (credit already spent).
    UdpDatagram { tunnel: TunnelId, payload: Bytes },
    /// The host let go of a UDP tunnel: finish it (client) or reset it (edge).
    UdpClose { tunnel: TunnelId, abort: bool },
    /// Edge: the UDP socket for a CONNECT-UDP request is ready, or could not be.
    UdpConnected {
        tunnel: TunnelId,
        result: Result<udp_egress::Egress, Refusal>,
    },
    /// Stop accepting, drain tunnels for at most `drain`, then close QUIC.
    Shutdown { drain: Duration },
    /// The embedder answered a hook's question about a request.
    DecideTunnel {
        tunnel: TunnelId,
        /// Boxed: a redirect holds a name inline, and commands are many and small.
        verdict: Box<veil_engine::TunnelVerdict>,
        tags: veil_engine::Tags,
    },
    /// The embedder answered a hook's question about a connection.
    DecideIngress {
        connection: veil_engine::ConnectionHandle,
        verdict: veil_engine::IngressVerdict,
    },
    /// Client: open a CONNECT-IP tunnel and answer when the edge has.
    OpenIp {
        scope: Box<veil_engine::IpScope>,
        reply: oneshot::Sender<Result<crate::ip::IpTunnel, OpenFailure>>,
    },
    /// Edge: packets the IP egress device read (one batch), for `Endpoint::ip_deliver`.
    IpFromDevice { packets: Vec<Vec<u8>> },
    /// Edge, decap: what a flow's destination answered (what one read of its socket
    /// brought), each for `Endpoint::ip_flow_send`.
    IpFlowAnswers {
        flow: veil_engine::IpFlowId,
        payloads: Vec<Vec<u8>>,
    },
    /// Edge: what a name-scoped IP tunnel's target resolved to.
    IpScopeResolved {
        tunnel: TunnelId,
        result: Result<Vec<std::net::IpAddr>, Refusal>,
    },
    /// Edge, decap: a flow's socket failed or could not be made.
    IpFlowFailed { flow: veil_engine::IpFlowId },
    /// The endpoint's counters now (for metrics).
    Stats {
        reply: oneshot::Sender<veil_engine::EndpointStats>,
    },
    /// Edge: the TCP listener accepted a connection (`tcp_onramp`).
    TcpAccepted { stream: TcpStream, peer: SocketAddr },
    /// Client: the dial `Event::TcpDial` asked for is done.
    TcpDialed {
        connection: veil_engine::ConnectionHandle,
        result: std::io::Result<TcpStream>,
    },
    /// Bytes a TCP connection's reader read.
    TcpInput {
        connection: veil_engine::ConnectionHandle,
        bytes: Bytes,
    },
    /// A TCP connection's writer wrote a chunk: its queue has room.
    TcpDrained {
        connection: veil_engine::ConnectionHandle,
    },
    /// A TCP connection's socket ended (EOF, or a read or write error).
    TcpClosed {
        connection: veil_engine::ConnectionHandle,
    },
}

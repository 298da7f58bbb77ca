//! CONNECT-IP on one core, through the engine's `decap` off-ramp (`EdgeConfig::ip_decap`):
//! the engine takes the clients' packets apart into flows (`Event::IpFlowOpened`) and this
//! module gives each flow an ordinary socket — a UDP socket connected to the flow's
//! destination, or an ICMP socket for echo (a ping socket, or a raw one where ping sockets
//! are not allowed but raw ones are: `veil_engine::RawEcho`). It only moves payloads:
//! what the client sent (`Endpoint::ip_flow_recv`) to the socket, what the socket reads
//! back to the engine (`Endpoint::ip_flow_send`), which builds the packets. Every decision
//! (addresses, scope, egress policy and rules per destination, the `ip_flow` hook) was the
//! engine's before a flow reaches here.
//!
//! Like a CONNECT-UDP relay, a flow has no queue of its own: payloads wait in the engine's
//! bounded per-flow queue, and what the socket refuses is dropped, as UDP would.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_lite::future;
use glommio::net::UdpSocket;
use veil_engine::{IpFlowId, IpFlowProtocol, RawEcho};

use crate::port::{Port, TunnelSignals};

/// The largest datagram or ICMP message a flow's socket reads (with a raw IPv4 socket's
/// IP header).
const MAX_DATAGRAM: usize = 65_535;

/// Payloads moved in one go, each way, before the relay lets the core's other tasks run.
const BURST: usize = 64;

/// Gives `flow` its socket and relays until the engine closes the flow or the socket
/// fails (then the flow is closed: the engine counts it).
pub(crate) async fn relay(
    port: Rc<dyn Port>,
    flow: IpFlowId,
    protocol: IpFlowProtocol,
    destination: SocketAddr,
    signals: Rc<TunnelSignals>,
) {
    let socket = match protocol {
        IpFlowProtocol::Udp => udp_socket(destination).map(|socket| (socket, None)),
        IpFlowProtocol::IcmpEcho => echo_socket(destination),
        _ => Err(io::Error::other("a flow protocol this host does not carry")),
    };
    let (socket, raw) = match socket {
        Ok(socket) => socket,
        Err(error) => {
            tracing::debug!(?flow, %destination, %error, "no socket for a decapsulated flow");
            port.flow_close(flow);
            return;
        }
    };
    // ICMP sockets are read and written with addresses: glommio's `recv` and `send` want
    // the peer's address from the kernel, which a raw socket does not give (`ENOTCONN`).
    let icmp =
        (protocol == IpFlowProtocol::IcmpEcho).then_some(SocketAddr::new(destination.ip(), 0));
    let (answers, sent) = future::zip(
        to_client(&*port, flow, &signals, &socket, raw),
        to_destination(&*port, flow, &signals, &socket, raw, icmp),
    )
    .await;
    tracing::debug!(?flow, answers, sent, "decapsulated flow ended");
}

/// A UDP socket connected to `destination`, Don't Fragment set (as CONNECT-UDP's).
fn udp_socket(destination: SocketAddr) -> io::Result<UdpSocket> {
    let socket = crate::udp_tunnel::connected_socket(destination, None)?;
    Ok(UdpSocket::from(socket2::Socket::from(socket)))
}

/// The socket of an echo flow: a ping socket, or, where this process's group may not open
/// one (`EACCES`), a raw ICMP socket if it may open that; otherwise the ping socket's
/// error.
fn echo_socket(destination: SocketAddr) -> io::Result<(UdpSocket, Option<RawEcho>)> {
    use rustix::net::SocketType;
    match icmp_socket(destination, SocketType::DGRAM) {
        Ok(socket) => Ok((socket, None)),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            let Ok(socket) = icmp_socket(destination, SocketType::RAW) else {
                return Err(error);
            };
            Ok((socket, Some(RawEcho::new(destination.ip()))))
        }
        Err(error) => Err(error),
    }
}

/// An ICMP socket of `kind` (`DGRAM`: ping; `RAW`) connected to `destination`'s address.
fn icmp_socket(destination: SocketAddr, kind: rustix::net::SocketType) -> io::Result<UdpSocket> {
    use rustix::net::{AddressFamily, ipproto, socket};
    let (family, protocol) = if destination.is_ipv6() {
        (AddressFamily::INET6, ipproto::ICMPV6)
    } else {
        (AddressFamily::INET, ipproto::ICMP)
    };
    let fd = socket(family, kind, Some(protocol))?;
    let socket = std::net::UdpSocket::from(fd);
    socket.connect(SocketAddr::new(destination.ip(), 0))?;
    Ok(UdpSocket::from(socket2::Socket::from(socket)))
}

/// Destination → client: what the socket reads goes to the engine (a raw socket's: only
/// this flow's echo replies). Returns how many answers the engine took.
async fn to_client(
    port: &dyn Port,
    flow: IpFlowId,
    signals: &TunnelSignals,
    socket: &UdpSocket,
    raw: Option<RawEcho>,
) -> u64 {
    let mut buf = vec![0; MAX_DATAGRAM].into_boxed_slice();
    let mut answers = 0;
    let mut burst = 0;
    loop {
        let read = future::or(async { Some(recv(socket, &mut buf).await) }, async {
            // A closed flow stops a read that may never end.
            while !signals.is_closed() {
                signals.writable.notified().await;
            }
            None
        })
        .await;
        let Some(read) = read else {
            return answers;
        };
        let len = match read {
            Ok(len) => len,
            // An ICMP error about an earlier datagram (port unreachable): UDP goes on.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::debug!(?flow, error = %e, "a decapsulated flow's socket failed");
                port.flow_close(flow);
                return answers;
            }
        };
        let received = buf.get(..len).unwrap_or_default();
        let payload = match raw {
            Some(raw) => match raw.reply(received) {
                Some(reply) => reply,
                None => continue,
            },
            None => received,
        };
        if !port.flow_send(flow, payload) {
            return answers;
        }
        answers += 1;
        burst += 1;
        if burst == BURST {
            burst = 0;
            future::yield_now().await;
        }
    }
}

/// Client → destination: every payload the engine queued for the flow goes to the socket.
/// Returns how many the socket took.
async fn to_destination(
    port: &dyn Port,
    flow: IpFlowId,
    signals: &TunnelSignals,
    socket: &UdpSocket,
    raw: Option<RawEcho>,
    icmp: Option<SocketAddr>,
) -> u64 {
    let mut buf = vec![0; MAX_DATAGRAM].into_boxed_slice();
    let mut request = Vec::new();
    let mut sent = 0;
    loop {
        // `IpFlowReadable` is edge-triggered: the queue is emptied before waiting again.
        let mut burst = 0;
        while let Some(len) = port.flow_recv(flow, &mut buf) {
            let payload = buf.get(..len).unwrap_or_default();
            let payload = match raw {
                Some(raw) => {
                    raw.request(payload, &mut request);
                    &request[..]
                }
                None => payload,
            };
            let result = match icmp {
                Some(to) => socket.send_to(payload, to).await,
                None => socket.send(payload).await,
            };
            match result {
                Ok(_) => sent += 1,
                Err(e) => {
                    tracing::trace!(?flow, error = %e, "a decapsulated payload was dropped");
                    port.count_target_drop();
                }
            }
            burst += 1;
            if burst == BURST {
                burst = 0;
                future::yield_now().await;
            }
        }
        if signals.is_closed() {
            return sent;
        }
        signals.readable.notified().await;
        if signals.is_closed() {
            return sent;
        }
    }
}

/// One read: what `socket` received (from its one peer: connected, or an ICMP socket's
/// destination, whose other senders a raw socket's caller sorts out).
async fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<usize> {
    socket
        .recv_from(buf)
        .await
        .map(|(len, _)| len)
        .map_err(io::Error::from)
}

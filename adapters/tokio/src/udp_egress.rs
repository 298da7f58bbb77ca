//! Edge: from a CONNECT-UDP request to a connected UDP socket, and the relay between that
//! socket and the tunnel.
//!
//! As for TCP, the target is resolved once, the engine chooses the address
//! (`Endpoint::egress_for`), and exactly that address is used. The socket is
//! `connect()`ed to it, so the kernel drops datagrams from any other source, and it never
//! fragments: Don't
//! Fragment is set (`IP_MTU_DISCOVER` / `IPV6_MTU_DISCOVER` = `PMTUDISC_DO` on Linux), so a
//! payload too large for the path is refused by the kernel (`EMSGSIZE`) and dropped,
//! rather than sent as fragments — a tunnel carries datagrams with UDP semantics, never
//! a stream.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::mpsc;
use veil_engine::{Refusal, TunnelId, TunnelTarget};

use crate::command::Command;
use crate::dial;
use crate::udp::{self, UdpIo};
use crate::udp_tunnel::UdpTunnel;

/// Datagrams moved in one go, each way, before the relay looks at the other direction.
const BURST: usize = 64;

/// A tunnel's socket towards its target, and the target's address (the one that passed
/// the egress check, and the one the socket is connected to).
pub(crate) struct Egress {
    socket: UdpIo,
    target: SocketAddr,
}

/// Resolves `target`, asks the driver which address egress policy allows, and returns a
/// UDP socket connected to it with Don't Fragment set. Resolution gets `timeout`.
pub(crate) async fn connect(
    tunnel: TunnelId,
    target: &TunnelTarget,
    cached: Option<Vec<SocketAddr>>,
    commands: &mpsc::UnboundedSender<Command>,
    timeout: Duration,
) -> Result<Egress, Refusal> {
    // A UDP socket has no handshake to race: the engine's first choice.
    let plan = dial::allowed_address(tunnel, target, cached, commands, timeout).await?;
    let chosen = *plan.attempts.first().ok_or(Refusal::Internal)?;
    let addr = chosen.to;
    connected_socket(addr, chosen.from)
        .and_then(UdpIo::from_std)
        .map(|socket| Egress {
            socket,
            target: addr,
        })
        .map_err(|e| {
            tracing::debug!(%addr, error = %e, "UDP socket for a tunnel failed");
            Refusal::from_io_error(&e)
        })
}

/// A UDP socket on `from` (by default the wildcard address of `addr`'s family), Don't
/// Fragment set, connected to `addr`.
pub(crate) fn connected_socket(
    addr: SocketAddr,
    from: Option<SocketAddr>,
) -> io::Result<std::net::UdpSocket> {
    let wildcard = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = std::net::UdpSocket::bind(from.unwrap_or(SocketAddr::new(wildcard, 0)))?;
    set_dont_fragment(&socket, addr.is_ipv6())?;
    // A target answers in bursts faster than a tunnel carries them for a moment (a
    // stream's credit, a congestion window): the kernel's default queue (208 KiB here)
    // overflowed with a burst of 600 datagrams (`UdpRcvbufErrors`). The kernel caps the
    // size at `net.core.rmem_max`; failing to raise it is not fatal.
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, TARGET_RECV_BUFFER);
    socket.connect(addr)?;
    Ok(socket)
}

/// The receive buffer asked for on each tunnel's socket towards its target.
const TARGET_RECV_BUFFER: usize = 1 << 20;

/// Sets Don't Fragment: the kernel neither fragments outgoing datagrams nor lets routers
/// do so (IPv4 DF bit), and refuses a datagram larger than the path MTU it knows.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_dont_fragment(socket: &std::net::UdpSocket, ipv6: bool) -> io::Result<()> {
    use rustix::net::sockopt;
    if ipv6 {
        sockopt::set_ipv6_mtu_discover(socket, sockopt::Ipv6PathMtuDiscovery::DO)?;
    } else {
        sockopt::set_ip_mtu_discover(socket, sockopt::Ipv4PathMtuDiscovery::DO)?;
    }
    Ok(())
}

/// Elsewhere the system's default applies.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_dont_fragment(_socket: &std::net::UdpSocket, _ipv6: bool) -> io::Result<()> {
    Ok(())
}

/// Relays datagrams between the target socket and the tunnel until the tunnel closes or
/// the socket fails; then the socket is closed, and dropping the tunnel resets it.
///
/// Nothing here waits on the target: a datagram the socket cannot take at once is
/// dropped, as the network would. Both directions move in batches: what the tunnel
/// queued goes out in GSO sends, what the target sent is read with `recvmmsg`/GRO.
pub(crate) async fn relay(egress: Egress, tunnel: UdpTunnel) {
    let Egress { socket, target } = egress;
    let id = tunnel.id();
    let (sender, mut receiver) = tunnel.split();
    let mut unsent = 0;
    let mut batch = Vec::with_capacity(BURST);
    loop {
        tokio::select! {
            count = receiver.recv_many(&mut batch, BURST) => {
                if count == 0 {
                    break;
                }
                // A full send buffer, a payload over the path MTU (EMSGSIZE with Don't
                // Fragment), or an ICMP error from an earlier datagram: UDP drops it.
                unsent += udp::send_batched(
                    &socket,
                    target,
                    batch.iter().map(|datagram| (&[][..], datagram.as_ref())),
                );
                batch.clear();
            }
            readable = socket.readable() => {
                if let Err(e) = readable {
                    tracing::debug!(tunnel = ?id, error = %e, "UDP target socket failed");
                    break;
                }
                let mut open = true;
                let drained = udp::drain(&socket, BURST, |_, datagram| {
                    open = open && sender.try_send(datagram).is_ok();
                });
                if let Err(e) = drained {
                    tracing::debug!(tunnel = ?id, error = %e, "UDP target socket failed");
                    break;
                }
                if !open {
                    break;
                }
            }
        }
    }
    let stats = sender.stats();
    tracing::debug!(tunnel = ?id, ?stats, unsent, "UDP relay ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_only_hears_its_target() {
        let target = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind target");
        let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind stranger");
        let socket = connected_socket(target.local_addr().expect("addr"), None).expect("socket");
        socket.set_nonblocking(true).expect("non-blocking");
        let socket = tokio::net::UdpSocket::from_std(socket).expect("tokio socket");
        let local = socket.local_addr().expect("local");
        stranger.send_to(b"spoof", local).await.expect("send");
        target.send_to(b"real", local).await.expect("send");
        let mut buf = [0; 16];
        let len = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
            .await
            .expect("in time")
            .expect("recv");
        assert_eq!(buf.get(..len), Some(&b"real"[..]));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn dont_fragment_is_set() {
        use rustix::net::sockopt;
        let socket = connected_socket(SocketAddr::from(([127, 0, 0, 1], 9)), None).expect("socket");
        assert_eq!(
            sockopt::ip_mtu_discover(&socket).expect("getsockopt"),
            sockopt::Ipv4PathMtuDiscovery::DO
        );
    }

    #[test]
    fn the_socket_binds_the_local_address_the_engine_chose() {
        let from = SocketAddr::from(([127, 0, 0, 2], 0));
        let socket =
            connected_socket(SocketAddr::from(([127, 0, 0, 1], 9)), Some(from)).expect("socket");
        let local = socket.local_addr().expect("local");
        assert_eq!(local.ip(), from.ip());
    }
}

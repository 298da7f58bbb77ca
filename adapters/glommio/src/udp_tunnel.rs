//! Edge CONNECT-UDP tunnels (RFC 9298) on one core: from a request to a connected UDP
//! socket, then the relay between that socket and the tunnel.
//!
//! As for TCP, the target is resolved once ([`crate::resolve`]), the engine chooses the
//! address (`egress_for`), and exactly that address is used: the socket is bound to the
//! wildcard address of its family and `connect()`ed to it, so the kernel drops datagrams
//! from any other source. Don't Fragment is set (`PMTUDISC_DO`): a payload too large for
//! the path is refused by the kernel and dropped, never sent as fragments. A failure to
//! set the socket up is refused as the engine names it (`Refusal::from_io_error`).
//!
//! The relay has no queue of its own, and nothing in it waits on a slow peer:
//!
//! - **towards the target**, datagrams wait in the engine's bounded per-tunnel queue
//!   (drops counted in its stats) until the relay sends them; what the socket refuses (a
//!   full buffer, a payload over the path MTU, the ICMP error of an earlier datagram) is
//!   dropped and counted ([`CoreStats::udp_target_drops`](crate::CoreStats));
//! - **towards the client**, each datagram read from the socket goes straight to the
//!   engine, which sends it or drops it (counted), as UDP would.
//!
//! The relay ends when the tunnel closes (the client finished or reset it, its connection
//! went, the engine's idle timeout, shutdown); a failed socket resets the tunnel.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;

use futures_lite::future;
use glommio::net::UdpSocket;
use veil_engine::{Refusal, TunnelId, TunnelTarget};

use crate::port::{Port, TunnelSignals};
use crate::resolve;

/// Largest UDP payload read from a target (what a UDP datagram can carry), and more than
/// the engine ever queues for one (65 527 bytes).
const MAX_PAYLOAD: usize = 65_535;

/// Datagrams moved in one go, each way, before the relay lets the core's other tasks run
/// (the driver sends what the engine took).
const BURST: usize = 64;

/// The receive buffer asked for on each tunnel's socket: a target answers in bursts
/// faster than a tunnel carries them for a moment, and the kernel's default queue
/// overflows. The kernel caps it at `net.core.rmem_max`; failing to raise it is not fatal.
const TARGET_RECV_BUFFER: usize = 1 << 20;

/// Answers a CONNECT-UDP request: sets up the socket (or refuses), accepts, and relays
/// until the tunnel or the socket ends.
pub(crate) async fn connect_and_relay(port: Rc<dyn Port>, tunnel: TunnelId, target: TunnelTarget) {
    let socket = match connect(&*port, tunnel, &target).await {
        Ok(socket) => socket,
        Err(refusal) => {
            tracing::info!(?tunnel, %target, ?refusal, "UDP tunnel refused");
            port.answer(tunnel, Err(refusal));
            return;
        }
    };
    let Some(signals) = port.answer(tunnel, Ok(())) else {
        return;
    };
    let (up, down) = future::zip(
        to_client(&*port, tunnel, &signals, &socket),
        to_target(&*port, tunnel, &signals, &socket),
    )
    .await;
    tracing::debug!(?tunnel, received = up, sent = down, "UDP relay ended");
}

/// Resolves `target`, lets the engine choose the address, and returns a UDP socket
/// connected to it.
async fn connect(
    port: &dyn Port,
    tunnel: TunnelId,
    target: &TunnelTarget,
) -> Result<UdpSocket, Refusal> {
    let addrs = match port.cached_addresses(tunnel) {
        Some(addrs) => addrs,
        None => resolve::resolve(target, port.connect_timeout()).await?,
    };
    let egress = port.egress_for(tunnel, &addrs)?;
    let addr = egress.to;
    let socket = connected_socket(addr, egress.from).map_err(|e| {
        tracing::debug!(%addr, error = %e, "UDP socket for a tunnel failed");
        Refusal::from_io_error(&e)
    })?;
    Ok(UdpSocket::from(socket2::Socket::from(socket)))
}

/// A UDP socket on `from` (by default the wildcard address of `addr`'s family), Don't
/// Fragment set, a large receive buffer, connected to `addr`.
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
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, TARGET_RECV_BUFFER);
    socket.connect(addr)?;
    Ok(socket)
}

/// Sets Don't Fragment: the kernel neither fragments outgoing datagrams nor lets routers
/// do so (IPv4 DF bit), and refuses a datagram larger than the path MTU it knows.
fn set_dont_fragment(socket: &std::net::UdpSocket, ipv6: bool) -> io::Result<()> {
    use rustix::net::sockopt;
    if ipv6 {
        sockopt::set_ipv6_mtu_discover(socket, sockopt::Ipv6PathMtuDiscovery::DO)?;
    } else {
        sockopt::set_ip_mtu_discover(socket, sockopt::Ipv4PathMtuDiscovery::DO)?;
    }
    Ok(())
}

/// Target → client: every datagram the socket reads goes to the engine. Returns how many
/// were read.
async fn to_client(
    port: &dyn Port,
    tunnel: TunnelId,
    signals: &TunnelSignals,
    socket: &UdpSocket,
) -> u64 {
    let mut buf = vec![0; MAX_PAYLOAD].into_boxed_slice();
    let mut received = 0;
    let mut burst = 0;
    loop {
        let read = future::or(async { Some(socket.recv(&mut buf).await) }, async {
            // A closed tunnel stops a read that may never end.
            while !signals.is_closed() {
                signals.writable.notified().await;
            }
            None
        })
        .await;
        let Some(read) = read else {
            return received;
        };
        let len = match read.map_err(io::Error::from) {
            Ok(len) => len,
            // The ICMP error of an earlier datagram towards the target: that one was lost.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::debug!(?tunnel, error = %e, "UDP target socket failed");
                port.tunnel_abort(tunnel);
                return received;
            }
        };
        received += 1;
        if !port.send_datagram(tunnel, buf.get(..len).unwrap_or_default()) {
            // The engine no longer knows the tunnel: make sure both directions stop.
            port.tunnel_abort(tunnel);
            return received;
        }
        burst += 1;
        if burst == BURST {
            // A read that the socket answers at once never yields: let the driver send.
            burst = 0;
            future::yield_now().await;
        }
    }
}

/// Client → target: every datagram the engine queued goes to the socket. Returns how many
/// the socket took.
async fn to_target(
    port: &dyn Port,
    tunnel: TunnelId,
    signals: &TunnelSignals,
    socket: &UdpSocket,
) -> u64 {
    let mut buf = vec![0; MAX_PAYLOAD].into_boxed_slice();
    let mut sent = 0;
    loop {
        // `TunnelDatagrams` is edge-triggered: the queue is emptied (`None`) before the
        // relay waits for the next one. Datagrams that came before the answer get one
        // when the tunnel opens.
        let mut burst = 0;
        while let Some(len) = port.recv_datagram(tunnel, &mut buf) {
            match socket.send(buf.get(..len).unwrap_or_default()).await {
                Ok(_) => sent += 1,
                Err(e) => {
                    tracing::trace!(?tunnel, error = %e, "UDP send to the target failed");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_socket_only_hears_its_target_and_does_not_fragment() {
        crate::test_executor().run(async {
            let target = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind target");
            let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind stranger");
            let std_socket =
                connected_socket(target.local_addr().expect("addr"), None).expect("socket");
            assert_eq!(
                rustix::net::sockopt::ip_mtu_discover(&std_socket).expect("getsockopt"),
                rustix::net::sockopt::Ipv4PathMtuDiscovery::DO
            );
            let local = std_socket.local_addr().expect("local");
            let socket = UdpSocket::from(socket2::Socket::from(std_socket));
            stranger.send_to(b"spoof", local).expect("send");
            target.send_to(b"real", local).expect("send");
            let mut buf = [0; 16];
            let len = future::or(async { socket.recv(&mut buf).await.ok() }, async {
                glommio::timer::sleep(Duration::from_secs(5)).await;
                None
            })
            .await
            .expect("a datagram within 5 s");
            assert_eq!(buf.get(..len), Some(&b"real"[..]));
        });
    }
}

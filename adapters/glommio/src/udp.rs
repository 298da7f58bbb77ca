//! The core's UDP socket beyond what glommio's `UdpSocket` offers: GSO sends and GRO
//! receives.
//!
//! glommio 0.9 sends and receives one datagram per operation and passes no control
//! messages, so a 64-packet train cost 64 operations each way. Here a train leaves in one
//! `sendmsg` with `UDP_SEGMENT` and arrives in one `recvmsg`, the kernel having coalesced
//! it (`UDP_GRO`, its segment size in a control message): both with `MSG_DONTWAIT` on the
//! socket's descriptor. glommio's own operations remain for waiting: a peek until a
//! datagram is queued, and its send (one datagram at a time) when the socket's buffer is
//! full.
//!
//! A socket bound to a wildcard address also asks for each datagram's destination
//! (`IP_PKTINFO`, `IPV6_RECVPKTINFO`) and answers from it: on a host with several
//! addresses the kernel would otherwise pick the source by its routes, and a client that
//! wrote to one address would get answers from another, which QUIC drops.
//!
//! Every datagram leaves with Don't Fragment and the interface's MTU as its only limit
//! (`IP_PMTUDISC_PROBE`), as quinn-udp sets it for the tokio host: with path MTU discovery
//! on (`[quic] pmtu_discovery`), a probe larger than the path must be refused by the
//! kernel (`EMSGSIZE`, counted as a send error and lost, which is how DPLPMTUD learns the
//! size is too large: RFC 8899 §4.1) or dropped on the way, never fragmented.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    self, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, sockopt,
};

/// What one receive took from the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// Bytes in the buffer: one datagram, or a coalesced train of them.
    pub(crate) len: usize,
    pub(crate) from: SocketAddr,
    /// The size of each datagram of a train (the last may be shorter); `None`: one datagram.
    pub(crate) segment: Option<usize>,
    /// The address it was sent to, when the socket asked ([`Features::destination`]).
    pub(crate) to: Option<IpAddr>,
}

/// What the kernel agreed to on a socket ([`prepare`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Features {
    /// Trains arrive coalesced (`UDP_GRO`).
    pub(crate) gro: bool,
    /// Each datagram's destination address comes with it (`IP_PKTINFO`).
    pub(crate) destination: bool,
    /// Datagrams leave with Don't Fragment (`IP_PMTUDISC_PROBE`).
    pub(crate) dont_fragment: bool,
}

/// Asks the kernel to coalesce received trains (`UDP_GRO`) and, on a socket bound to a
/// wildcard address, to say where each datagram was sent (`IP_PKTINFO`). A kernel that
/// refuses GRO delivers datagrams one at a time, which [`recv_now`] handles the same way.
pub(crate) fn prepare(socket: socket2::Socket) -> (socket2::Socket, Features) {
    let socket = std::net::UdpSocket::from(socket);
    let gro = socket::setsockopt(&socket, sockopt::UdpGroSegment, &true).is_ok();
    let destination = match socket.local_addr() {
        Ok(SocketAddr::V4(local)) if local.ip().is_unspecified() => {
            socket::setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).is_ok()
        }
        Ok(SocketAddr::V6(local)) if local.ip().is_unspecified() => {
            socket::setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true).is_ok()
        }
        _ => false,
    };
    let dont_fragment = forbid_fragments(&socket).is_ok();
    (
        socket2::Socket::from(socket),
        Features {
            gro,
            destination,
            dont_fragment,
        },
    )
}

/// Don't Fragment on every datagram, the interface's MTU the only limit (`PMTUDISC_PROBE`:
/// the kernel's own path MTU guess is ignored, the probes are how veil learns it). An IPv6
/// socket sets both options, for the IPv4 peers it reaches as mapped addresses.
fn forbid_fragments(socket: &std::net::UdpSocket) -> io::Result<()> {
    use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
    match socket.local_addr()? {
        SocketAddr::V4(_) => sockopt::set_ip_mtu_discover(socket, Ipv4PathMtuDiscovery::PROBE)?,
        SocketAddr::V6(_) => {
            sockopt::set_ipv6_mtu_discover(socket, Ipv6PathMtuDiscovery::PROBE)?;
            // Refused on an IPv6-only socket, which has no IPv4 peers to fragment for.
            let _ = sockopt::set_ip_mtu_discover(socket, Ipv4PathMtuDiscovery::PROBE);
        }
    }
    Ok(())
}

/// Takes the next datagram or train queued on `fd` into `buf`, without waiting: `None`
/// when nothing is queued.
pub(crate) fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<Received>> {
    loop {
        let mut control = nix::cmsg_space!(i32, libc::in6_pktinfo);
        let mut iov = [IoSliceMut::new(&mut *buf)];
        let message = match socket::recvmsg::<SockaddrStorage>(
            fd,
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(message) => message,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(None),
            Err(errno) => return Err(errno.into()),
        };
        // Not an IP datagram: cannot happen on a UDP socket; dropped.
        let Some(from) = message.address.as_ref().and_then(socket_addr) else {
            continue;
        };
        let (mut segment, mut to) = (None, None);
        for cmsg in message.cmsgs() {
            match cmsg {
                ControlMessageOwned::UdpGroSegments(size) => segment = Some(usize::from(size)),
                ControlMessageOwned::Ipv4PacketInfo(info) => {
                    to = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        info.ipi_addr.s_addr,
                    ))));
                }
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    to = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        return Ok(Some(Received {
            len: message.bytes,
            from,
            segment: segment.filter(|&size| size > 0 && size < message.bytes),
            to,
        }));
    }
}

/// Sends `bytes` to `to` now, as datagrams of `segment` bytes (the last may be shorter)
/// when `segment` is given (`UDP_SEGMENT`), from the address `from` when given (packet
/// info, for a socket bound to a wildcard address). `Ok(false)`: the socket's buffer is
/// full; nothing was sent.
pub(crate) fn send_now(
    fd: RawFd,
    bytes: &[u8],
    to: SocketAddr,
    segment: Option<u16>,
    from: Option<IpAddr>,
) -> io::Result<bool> {
    let address = SockaddrStorage::from(to);
    let iov = [IoSlice::new(bytes)];
    let v4;
    let v6;
    let mut control = Vec::with_capacity(2);
    if let Some(size) = &segment {
        control.push(ControlMessage::UdpGsoSegments(size));
    }
    match from {
        Some(IpAddr::V4(ip)) => {
            v4 = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            control.push(ControlMessage::Ipv4PacketInfo(&v4));
        }
        Some(IpAddr::V6(ip)) => {
            v6 = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: 0,
            };
            control.push(ControlMessage::Ipv6PacketInfo(&v6));
        }
        None => {}
    }
    match socket::sendmsg(fd, &iov, &control, MsgFlags::MSG_DONTWAIT, Some(&address)) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

/// Whether a send failed because the kernel or the device cannot segment (`EIO` from a
/// device without checksum offload, `EINVAL` or `ENOPROTOOPT` from a kernel without GSO):
/// the caller sends one datagram at a time from then on.
pub(crate) fn no_gso(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error().map(Errno::from_i32),
        Some(Errno::EIO | Errno::EINVAL | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP)
    )
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    use super::*;

    fn bound() -> socket2::Socket {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket2::Socket::from(socket)
    }

    fn local(socket: &socket2::Socket) -> SocketAddr {
        socket
            .local_addr()
            .expect("address")
            .as_socket()
            .expect("IP")
    }

    /// Receives until `total` bytes came or 5 s passed.
    fn receive(fd: RawFd, total: usize) -> Vec<(Vec<u8>, Received)> {
        let mut buf = vec![0; 65_535];
        let mut got = Vec::new();
        let mut bytes = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while bytes < total && Instant::now() < deadline {
            match recv_now(fd, &mut buf).expect("recv") {
                Some(received) => {
                    bytes += received.len;
                    got.push((buf[..received.len].to_vec(), received));
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        got
    }

    /// A train of 10 segments of 1200 bytes and a last one of 500 leaves in one send and
    /// arrives whole and in order: as one coalesced train where the kernel does GRO on
    /// loopback, else as eleven datagrams.
    #[test]
    fn a_train_sent_with_gso_arrives_intact() {
        let (receiver, features) = prepare(bound());
        let gro = features.gro;
        let sender = bound();
        let bytes: Vec<u8> = (0..10 * 1200 + 500_u32)
            .map(|i| u8::try_from(i % 251).unwrap_or_default())
            .collect();
        let sent = send_now(
            sender.as_raw_fd(),
            &bytes,
            local(&receiver),
            Some(1200),
            None,
        )
        .expect("a GSO send on loopback");
        assert!(sent, "the send buffer of a new socket has room");
        let got = receive(receiver.as_raw_fd(), bytes.len());
        let joined: Vec<u8> = got.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(joined, bytes, "bytes lost or reordered");
        for (datagram, received) in &got {
            assert_eq!(received.from, local(&sender));
            let segment = received.segment.unwrap_or(datagram.len());
            assert!(segment == 1200 || datagram.len() == 500, "{received:?}");
        }
        if gro {
            assert!(got.len() < 11, "GRO is on, yet {} receives", got.len());
        }
    }

    /// The core's socket never lets the kernel fragment a datagram (a path MTU probe too
    /// large must be lost, not fragmented), whatever the kernel's own MTU guess.
    #[test]
    fn the_cores_socket_sends_with_dont_fragment() {
        use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
        let (v4, features) = prepare(bound());
        assert!(features.dont_fragment);
        let v4 = std::net::UdpSocket::from(v4);
        assert_eq!(
            sockopt::ip_mtu_discover(&v4).expect("getsockopt"),
            Ipv4PathMtuDiscovery::PROBE
        );
        // A machine without IPv6 on loopback has nothing more to check.
        let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") else {
            return;
        };
        let (v6, features) = prepare(socket2::Socket::from(v6));
        assert!(features.dont_fragment);
        let v6 = std::net::UdpSocket::from(v6);
        assert_eq!(
            sockopt::ipv6_mtu_discover(&v6).expect("getsockopt"),
            Ipv6PathMtuDiscovery::PROBE
        );
    }

    #[test]
    fn nothing_queued_is_none() {
        let socket = bound();
        let mut buf = [0; 64];
        assert_eq!(recv_now(socket.as_raw_fd(), &mut buf).expect("recv"), None);
    }

    #[test]
    fn a_single_datagram_has_no_segment_size() {
        let (receiver, _) = prepare(bound());
        let sender = bound();
        assert!(
            send_now(sender.as_raw_fd(), b"hello", local(&receiver), None, None).expect("send")
        );
        let got = receive(receiver.as_raw_fd(), 5);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, b"hello");
        assert_eq!(got[0].1.segment, None);
        assert_eq!(
            got[0].1.to, None,
            "bound to one address: no packet info asked"
        );
    }

    /// On a socket bound to 0.0.0.0, a datagram sent to 127.0.0.2 says so, and the answer
    /// given that address as its source comes from it (without packet info the kernel
    /// would answer from 127.0.0.1, its route to the client).
    #[test]
    fn a_wildcard_socket_learns_the_destination_and_answers_from_it() {
        let wildcard = socket2::Socket::from(std::net::UdpSocket::bind("0.0.0.0:0").expect("bind"));
        let (edge, features) = prepare(wildcard);
        assert!(features.destination, "IP_PKTINFO on a wildcard socket");
        let port = local(&edge).port();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let second = SocketAddr::from(([127, 0, 0, 2], port));
        client.send_to(b"ping", second).expect("send");
        let got = receive(edge.as_raw_fd(), 4);
        assert_eq!(got.len(), 1);
        let (bytes, received) = &got[0];
        assert_eq!(bytes, b"ping");
        assert_eq!(received.to, Some(second.ip()));
        assert!(
            send_now(edge.as_raw_fd(), b"pong", received.from, None, received.to).expect("send")
        );
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0; 16];
        let (len, from) = client.recv_from(&mut buf).expect("the answer");
        assert_eq!(&buf[..len], b"pong");
        assert_eq!(
            from, second,
            "answered from the address the client wrote to"
        );
    }
}

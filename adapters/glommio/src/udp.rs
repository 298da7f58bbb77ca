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

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use nix::errno::Errno;
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
}

/// Asks the kernel to coalesce the datagrams it receives into trains (`UDP_GRO`). A kernel
/// that refuses delivers them one at a time, which [`recv_now`] handles the same way.
pub(crate) fn enable_gro(socket: socket2::Socket) -> (socket2::Socket, bool) {
    let socket = std::net::UdpSocket::from(socket);
    let enabled = socket::setsockopt(&socket, sockopt::UdpGroSegment, &true).is_ok();
    (socket2::Socket::from(socket), enabled)
}

/// Takes the next datagram or train queued on `fd` into `buf`, without waiting: `None`
/// when nothing is queued.
pub(crate) fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<Received>> {
    loop {
        let mut control = nix::cmsg_space!(i32);
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
        let segment = message
            .cmsgs()
            .find_map(|cmsg| match cmsg {
                ControlMessageOwned::UdpGroSegments(size) => Some(usize::from(size)),
                _ => None,
            })
            .filter(|&size| size > 0 && size < message.bytes);
        return Ok(Some(Received {
            len: message.bytes,
            from,
            segment,
        }));
    }
}

/// Sends `bytes` to `to` now, as datagrams of `segment` bytes (the last may be shorter)
/// when `segment` is given (`UDP_SEGMENT`). `Ok(false)`: the socket's buffer is full, or
/// the kernel cannot segment ([`no_gso`]); nothing was sent.
pub(crate) fn send_now(
    fd: RawFd,
    bytes: &[u8],
    to: SocketAddr,
    segment: Option<u16>,
) -> io::Result<bool> {
    let address = SockaddrStorage::from(to);
    let iov = [IoSlice::new(bytes)];
    let sent = match &segment {
        Some(size) => socket::sendmsg(
            fd,
            &iov,
            &[ControlMessage::UdpGsoSegments(size)],
            MsgFlags::MSG_DONTWAIT,
            Some(&address),
        ),
        None => socket::sendmsg(fd, &iov, &[], MsgFlags::MSG_DONTWAIT, Some(&address)),
    };
    match sent {
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
        let (receiver, gro) = enable_gro(bound());
        let sender = bound();
        let bytes: Vec<u8> = (0..10 * 1200 + 500_u32)
            .map(|i| u8::try_from(i % 251).unwrap_or_default())
            .collect();
        let sent = send_now(sender.as_raw_fd(), &bytes, local(&receiver), Some(1200))
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

    #[test]
    fn nothing_queued_is_none() {
        let socket = bound();
        let mut buf = [0; 64];
        assert_eq!(recv_now(socket.as_raw_fd(), &mut buf).expect("recv"), None);
    }

    #[test]
    fn a_single_datagram_has_no_segment_size() {
        let (receiver, _) = enable_gro(bound());
        let sender = bound();
        assert!(send_now(sender.as_raw_fd(), b"hello", local(&receiver), None).expect("send"));
        let got = receive(receiver.as_raw_fd(), 5);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, b"hello");
        assert_eq!(got[0].1.segment, None);
    }
}

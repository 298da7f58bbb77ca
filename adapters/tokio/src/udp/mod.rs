//! The engine's UDP socket: batched receives with GRO and batched sends with GSO, through
//! quinn-udp, which falls back to one datagram per system call where the kernel lacks them.
//!
//! Public so that programs measuring the engine against a bare QUIC stack (the raw
//! baselines of `veil bench`) drive their sockets exactly as the [`Node`](crate::Node)
//! driver does, rather than through a copy that could drift from it.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

mod relay;

pub use relay::{drain, send_batched};

/// Largest UDP payload the kernel accepts in one (GSO) send: the UDP length field is 16 bits.
pub const MAX_GSO_PAYLOAD: usize = 64_000;
/// Bytes of each receive buffer: one GRO-coalesced train of datagrams, at most 64 KiB.
const RECV_BUF_LEN: usize = 64 * 1024;

/// Asks for `bytes` of receive and of send buffer on a socket, past the kernel's cap
/// where the process may.
pub use veil_sockopt::size_buffers;

/// A UDP socket with quinn-udp's per-socket state (GSO/GRO support, ECN, packet info).
#[derive(Debug)]
pub struct UdpIo {
    socket: UdpSocket,
    state: quinn_udp::UdpSocketState,
    local: SocketAddr,
}

impl UdpIo {
    /// Binds `addr` (port 0 picks one) and enables what the kernel offers. Must be called
    /// within a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::from_std(std::net::UdpSocket::bind(addr)?)
    }

    /// Takes a socket bound elsewhere (for example on another thread, before the runtime
    /// that will drive it exists). Must be called within a tokio runtime.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket)?;
        let state = quinn_udp::UdpSocketState::new((&socket).into())?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket,
            state,
            local,
        })
    }

    /// Asks for `bytes` of receive and send buffer ([`size_buffers`]).
    pub fn size_buffers(&self, bytes: usize) {
        size_buffers(&self.socket, bytes);
    }

    /// The receive buffer the kernel reports for the socket now (`SO_RCVBUF`).
    pub fn recv_buffer_reported(&self) -> Option<usize> {
        rustix::net::sockopt::socket_recv_buffer_size(&self.socket).ok()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Segments one GSO send may carry (1 without GSO; quinn-udp lowers it if the kernel
    /// refuses GSO later).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Waits until the socket may have datagrams to read (then [`try_recv`](Self::try_recv)).
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Waits for datagrams and receives a batch into `bufs`; returns how many of
    /// `bufs.meta` were filled.
    pub async fn recv(&self, bufs: &mut RecvBufs) -> io::Result<usize> {
        loop {
            self.socket.readable().await?;
            let count = self.try_recv(bufs)?;
            if count > 0 {
                return Ok(count);
            }
        }
    }

    /// Receives a batch of what is queued now into `bufs`, without waiting; `Ok(0)` when
    /// nothing is.
    pub fn try_recv(&self, bufs: &mut RecvBufs) -> io::Result<usize> {
        let mut slices: Vec<IoSliceMut<'_>> = bufs
            .storage
            .chunks_mut(RECV_BUF_LEN)
            .map(IoSliceMut::new)
            .collect();
        let batch = slices.len();
        let mut count = 0;
        let received = self.socket.try_io(Interest::READABLE, || {
            count = self
                .state
                .recv((&self.socket).into(), &mut slices, &mut bufs.meta)?;
            // Fewer messages than asked for: the queue is empty now. Saying "would block"
            // clears the readiness tokio saw before this call (a datagram arriving
            // meanwhile sets it again), which spares the next wake-up a system call that
            // would only say so.
            if count < batch {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match received {
            Ok(()) => Ok(count),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(count),
            Err(e) => Err(e),
        }
    }

    /// Sends `contents` to `to`: one datagram, or GSO segments of `segment_size` bytes.
    /// Errors other than "would block" are logged by quinn-udp and dropped, as QUIC
    /// recovers from loss.
    pub async fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        self.send_from(to, None, contents, segment_size).await
    }

    /// As [`send`](Self::send), from the local address `from` when given: what a socket
    /// bound to a wildcard address needs to answer from the address a peer wrote to (the
    /// `dst_ip` its datagrams came with). Otherwise the kernel picks the source by its
    /// routes, and on a host with several addresses a QUIC peer drops answers from an
    /// address it did not write to.
    pub async fn send_from(
        &self,
        to: SocketAddr,
        from: Option<std::net::IpAddr>,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let mut transmit = transmit(to, contents, segment_size);
        transmit.src_ip = from;
        loop {
            self.socket.writable().await?;
            let sent = self.socket.try_io(Interest::WRITABLE, || {
                self.state.send((&self.socket).into(), &transmit)
            });
            match sent {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `contents` to `to` (one datagram, or GSO segments of `segment_size` bytes)
    /// now or never, as a relay of datagrams must: it never waits on a socket. False when
    /// the kernel refused it — a full send buffer, a datagram over the path MTU with Don't
    /// Fragment set, an ICMP error pending from an earlier datagram: with UDP, any send
    /// error loses that datagram and leaves the socket as it was.
    pub fn try_send(&self, to: SocketAddr, contents: &[u8], segment_size: Option<usize>) -> bool {
        let transmit = transmit(to, contents, segment_size);
        // Straight to the kernel, not through `try_io`: tokio may not have seen the socket
        // writable yet (a fresh socket, before the reactor's first poll), and `try_io` would
        // then say "would block" without trying. A send buffer that is really full says so
        // itself.
        let sent = self.state.try_send((&self.socket).into(), &transmit);
        if let Err(e) = &sent {
            tracing::trace!(%to, error = %e, "datagram not sent");
        }
        sent.is_ok()
    }
}

/// One datagram to `to`, or GSO segments of `segment_size` bytes, from the socket's own
/// address and without ECN marks.
fn transmit(
    to: SocketAddr,
    contents: &[u8],
    segment_size: Option<usize>,
) -> quinn_udp::Transmit<'_> {
    quinn_udp::Transmit {
        destination: to,
        ecn: None,
        contents,
        segment_size,
        src_ip: None,
    }
}

/// Receive buffers and their metadata, reused for every batch.
pub struct RecvBufs {
    storage: Box<[u8]>,
    meta: Vec<quinn_udp::RecvMeta>,
}

impl RecvBufs {
    /// Buffers for quinn-udp's batch size (2 MiB on Linux: 32 buffers of 64 KiB).
    #[must_use]
    pub fn new() -> Self {
        Self::with_batch(quinn_udp::BATCH_SIZE)
    }

    /// `buffers` receive buffers of 64 KiB each (at least 1, at most quinn-udp's batch
    /// size): one system call fills up to that many, each with a GRO train of datagrams.
    #[must_use]
    pub fn with_batch(buffers: usize) -> Self {
        let buffers = buffers.clamp(1, quinn_udp::BATCH_SIZE);
        Self {
            storage: vec![0; RECV_BUF_LEN * buffers].into_boxed_slice(),
            meta: vec![quinn_udp::RecvMeta::default(); buffers],
        }
    }

    /// The `index`th received buffer cut into its datagrams (GRO gives several per buffer,
    /// each `stride` bytes but the last), with the sender and the local IP they were sent
    /// to, if the kernel reported it.
    pub fn datagrams(
        &mut self,
        index: usize,
    ) -> Option<(
        SocketAddr,
        Option<std::net::IpAddr>,
        impl Iterator<Item = &mut [u8]>,
    )> {
        let meta = *self.meta.get(index)?;
        let start = index.checked_mul(RECV_BUF_LEN)?;
        let buf = self.storage.get_mut(start..start.checked_add(meta.len)?)?;
        let stride = meta.stride.max(1);
        Some((meta.addr, meta.dst_ip, buf.chunks_mut(stride)))
    }
}

impl Default for RecvBufs {
    fn default() -> Self {
        Self::new()
    }
}

/// Cuts a GSO batch of `len` bytes in `segment`-byte datagrams into runs of at most
/// `max_segments` datagrams, for a socket that takes fewer segments than the engine
/// gathered (or none: `max_segments` 1 sends each datagram alone).
pub fn gso_runs(
    len: usize,
    segment: usize,
    max_segments: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let run = segment.max(1).saturating_mul(max_segments.max(1));
    (0..len)
        .step_by(run)
        .map(move |start| start..len.min(start.saturating_add(run)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_the_socket_takes_whole_goes_in_one_run() {
        let runs: Vec<_> = gso_runs(3 * 1200 + 100, 1200, 64).collect();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0], 0..3700);
    }

    #[test]
    fn a_batch_is_cut_at_the_socket_segment_limit() {
        let runs: Vec<_> = gso_runs(5 * 1200 + 100, 1200, 2).collect();
        assert_eq!(runs, [0..2400, 2400..4800, 4800..6100]);
    }

    #[test]
    fn without_gso_each_datagram_goes_alone() {
        let runs: Vec<_> = gso_runs(2 * 1350 + 7, 1350, 1).collect();
        assert_eq!(runs, [0..1350, 1350..2700, 2700..2707]);
    }

    #[test]
    fn receive_buffers_split_at_the_gro_stride() {
        let mut bufs = RecvBufs::new();
        let meta = &mut bufs.meta[0];
        meta.addr = SocketAddr::from(([127, 0, 0, 1], 9));
        meta.len = 2500;
        meta.stride = 1200;
        let (from, _, datagrams) = bufs.datagrams(0).expect("buffer 0 exists");
        assert_eq!(from.port(), 9);
        let lens: Vec<usize> = datagrams.map(|d| d.len()).collect();
        assert_eq!(lens, [1200, 1200, 100]);
        assert!(bufs.datagrams(quinn_udp::BATCH_SIZE).is_none());
    }
}

//! Socket work of datagram relays (the edge's socket per CONNECT-UDP tunnel, the client's
//! UDP front-ends): read everything queued in batches, send runs of datagrams with GSO.
//!
//! A relay handles one datagram per system call unless told otherwise, while the QUIC side
//! of the same process moves dozens per call; at tens of thousands of datagrams per second
//! those calls are most of a relay's cost. Here one `recvmmsg` fills several buffers,
//! each with a GRO train of datagrams from one sender, and consecutive datagrams of one
//! size to one destination leave in one GSO `sendmsg`.
//!
//! The buffers are per thread, not per relay: an idle relay (a UDP tunnel nobody uses)
//! holds no receive or send buffer, and a busy thread reuses the same ones.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;

use super::{MAX_GSO_PAYLOAD, RecvBufs, UdpIo};

/// Receive buffers of 64 KiB each filled per system call by [`drain`].
const DRAIN_BUFFERS: usize = 8;

thread_local! {
    /// The receive buffers [`drain`] lends, allocated on a thread's first use.
    static RECV_SCRATCH: RefCell<Option<RecvBufs>> = const { RefCell::new(None) };
    /// The GSO buffer [`send_batched`] gathers datagrams in.
    static SEND_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads what `io` holds now, batch by batch, handing each datagram and its sender to
/// `each`, until the queue is empty or at least `budget` datagrams were read (so that
/// one busy socket does not starve its thread's other tasks). Returns how many were
/// read; `Ok` with the queue not yet empty means: call again after yielding.
///
/// An ICMP error for an earlier send (a connected socket's "connection refused") is
/// skipped: the peer may come back. Other errors are the socket's and end its relay.
pub fn drain(
    io: &UdpIo,
    budget: usize,
    mut each: impl FnMut(SocketAddr, &[u8]),
) -> io::Result<usize> {
    RECV_SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut slot) => {
            let bufs = slot.get_or_insert_with(|| RecvBufs::with_batch(DRAIN_BUFFERS));
            drain_into(io, bufs, budget, &mut each)
        }
        // Called from inside `each` of another drain on this thread: buffers of its own.
        Err(_) => drain_into(io, &mut RecvBufs::with_batch(1), budget, &mut each),
    })
}

fn drain_into(
    io: &UdpIo,
    bufs: &mut RecvBufs,
    budget: usize,
    each: &mut impl FnMut(SocketAddr, &[u8]),
) -> io::Result<usize> {
    let mut read = 0;
    while read < budget {
        let count = match io.try_recv(bufs) {
            Ok(0) => break,
            Ok(count) => count,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        for index in 0..count {
            let Some((from, _, datagrams)) = bufs.datagrams(index) else {
                continue;
            };
            for datagram in datagrams {
                each(from, datagram);
                read += 1;
            }
        }
    }
    Ok(read)
}

/// Sends each datagram — `prefix` then `payload`, the prefix being empty or a header
/// the relay adds (SOCKS5's UDP request header) — to `to`, now or never: runs of
/// datagrams of one size go out as one GSO send. Returns how many datagrams the kernel
/// refused (dropped, as UDP would).
pub fn send_batched<'a>(
    io: &UdpIo,
    to: SocketAddr,
    datagrams: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> usize {
    SEND_SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => send_with(io, to, &mut buf, datagrams),
        Err(_) => send_with(io, to, &mut Vec::new(), datagrams),
    })
}

fn send_with<'a>(
    io: &UdpIo,
    to: SocketAddr,
    buf: &mut Vec<u8>,
    datagrams: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> usize {
    let mut run = Run::new(buf);
    let mut dropped = 0;
    let max_segments = io.max_gso_segments();
    for (prefix, payload) in datagrams {
        if !run.push(prefix, payload, max_segments) {
            dropped += run.send(io, to);
            let joined = run.push(prefix, payload, max_segments);
            debug_assert!(joined, "an empty run takes any datagram");
        }
    }
    dropped + run.send(io, to)
}

/// Datagrams gathered for one GSO send: all `segment` bytes long but the last, which may
/// be shorter (the kernel cuts the buffer every `segment` bytes).
struct Run<'b> {
    buf: &'b mut Vec<u8>,
    segment: usize,
    segments: usize,
    /// A shorter (or empty) datagram went in: it must stay the last.
    closed: bool,
}

impl<'b> Run<'b> {
    fn new(buf: &'b mut Vec<u8>) -> Self {
        buf.clear();
        Self {
            buf,
            segment: 0,
            segments: 0,
            closed: false,
        }
    }

    /// Adds a datagram if it can join this run; an empty run takes any one.
    fn push(&mut self, prefix: &[u8], payload: &[u8], max_segments: usize) -> bool {
        let len = prefix.len() + payload.len();
        if self.segments == 0 {
            self.segment = len;
            // A lone empty datagram is sent as one; nothing can follow it in the run.
            self.closed = len == 0;
        } else if self.closed
            || len == 0
            || len > self.segment
            || self.segments >= max_segments
            || self.buf.len() + len > MAX_GSO_PAYLOAD
        {
            return false;
        } else if len < self.segment {
            self.closed = true;
        }
        self.buf.extend_from_slice(prefix);
        self.buf.extend_from_slice(payload);
        self.segments += 1;
        true
    }

    /// Sends the run (if any) and empties it; returns how many datagrams were dropped.
    fn send(&mut self, io: &UdpIo, to: SocketAddr) -> usize {
        let segments = self.segments;
        if segments == 0 {
            return 0;
        }
        let segment_size = (segments > 1).then_some(self.segment);
        let sent = io.try_send(to, self.buf, segment_size);
        self.buf.clear();
        self.segments = 0;
        self.closed = false;
        if sent { 0 } else { segments }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(datagrams: &[&[u8]], max_segments: usize) -> Vec<(usize, usize)> {
        // (segments, bytes) of each run the datagrams are cut into.
        let mut buf = Vec::new();
        let mut runs = Vec::new();
        let mut run = Run::new(&mut buf);
        for datagram in datagrams {
            if !run.push(&[], datagram, max_segments) {
                runs.push((run.segments, run.buf.len()));
                run.buf.clear();
                run.segments = 0;
                run.closed = false;
                assert!(run.push(&[], datagram, max_segments));
            }
        }
        runs.push((run.segments, run.buf.len()));
        runs
    }

    #[test]
    fn equal_datagrams_share_a_run_and_a_shorter_one_ends_it() {
        let big = [1_u8; 1200];
        let small = [2_u8; 100];
        let runs = run_of(&[&big, &big, &small, &big], 64);
        assert_eq!(runs, [(3, 2500), (1, 1200)]);
    }

    #[test]
    fn a_longer_datagram_starts_a_new_run() {
        let runs = run_of(&[&[0; 100], &[0; 100], &[0; 200]], 64);
        assert_eq!(runs, [(2, 200), (1, 200)]);
    }

    #[test]
    fn an_empty_datagram_travels_alone() {
        let runs = run_of(&[&[0; 10], &[], &[], &[0; 10]], 64);
        assert_eq!(runs, [(1, 10), (1, 0), (1, 0), (1, 10)]);
    }

    #[test]
    fn runs_respect_the_segment_limit_and_the_gso_size() {
        let small: &[u8] = &[0; 10];
        assert_eq!(run_of(&[small; 5], 2), [(2, 20), (2, 20), (1, 10)]);
        let big = vec![0_u8; 30_000];
        assert_eq!(run_of(&[&big, &big, &big], 64), [(2, 60_000), (1, 30_000)]);
    }

    #[tokio::test]
    async fn batched_sends_arrive_whole_and_in_order_and_drain_reads_them_all() {
        let receiver = UdpIo::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let sender = UdpIo::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let header = [9_u8; 10];
        let payloads: Vec<Vec<u8>> = (0..100_u8)
            .map(|i| vec![i; if i % 7 == 0 { 300 } else { 1000 }])
            .collect();
        let dropped = send_batched(
            &sender,
            receiver.local_addr(),
            payloads.iter().map(|p| (&header[..], p.as_slice())),
        );
        assert_eq!(dropped, 0);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < payloads.len() {
            tokio::time::timeout_at(deadline, receiver.readable())
                .await
                .expect("datagrams in time")
                .expect("readable");
            drain(&receiver, usize::MAX, |from, datagram| {
                assert_eq!(from, sender.local_addr());
                got.push(datagram.to_vec());
            })
            .expect("drain");
        }
        for (payload, datagram) in payloads.iter().zip(&got) {
            assert_eq!(datagram.get(..10), Some(&header[..]));
            assert_eq!(datagram.get(10..), Some(payload.as_slice()));
        }
    }

    #[tokio::test]
    async fn drain_stops_at_its_budget_and_resumes() {
        let receiver = UdpIo::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let sender = UdpIo::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        // Growing sizes: neither GSO nor GRO can merge them, one buffer each.
        let payloads: Vec<Vec<u8>> = (0..40).map(|i| vec![5; 50 + i]).collect();
        let dropped = send_batched(
            &sender,
            receiver.local_addr(),
            payloads.iter().map(|p| (&[][..], p.as_slice())),
        );
        assert_eq!(dropped, 0);
        receiver.readable().await.expect("readable");
        let mut total = 0;
        let first = drain(&receiver, 1, |_, _| total += 1).expect("drain");
        assert!(
            (1..40).contains(&first),
            "the budget bounds a drain: {first}"
        );
        while total < 40 {
            receiver.readable().await.expect("readable");
            drain(&receiver, usize::MAX, |_, _| total += 1).expect("drain");
        }
        assert_eq!(total, 40);
    }
}

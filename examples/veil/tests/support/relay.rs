//! A UDP relay between `veil client` and `veil server` that plays the network: a NAT
//! that can rebind, and a path that can go dark.
//!
//! The client talks to the relay as if it were the edge, and the relay forwards the
//! client's datagrams to the edge from a socket of its own, as a NAT's mapping would; the
//! edge's answers to that socket go back to the client. Two switches:
//!
//! - **rebind**: from then on the relay forwards from a second socket (a new source port,
//!   as when a NAT's mapping expires), and whatever the edge still sends to the first one
//!   is lost, as the forgotten mapping's would be. At once ([`Relay::rebind`]) or after
//!   so many bytes came from the edge ([`Relay::rebind_after`]), decided on the relay's
//!   own thread so that it lands exactly there.
//! - **blackhole**: while on, every datagram is dropped, both ways ([`Relay::blackhole`]).
//!
//! Loopback only; its threads stop when it is dropped.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long a relay thread waits in `recv` before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// The relay; see the module's documentation.
pub(crate) struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// What the relay's threads share.
struct Shared {
    /// The socket the client talks to.
    front: UdpSocket,
    /// The two mappings toward the edge: the first until the rebinding, then the second.
    upstream: [UdpSocket; 2],
    /// Which of `upstream` is the mapping now.
    current: AtomicUsize,
    /// The client's address, once it has sent (stored as its port; loopback).
    client_port: AtomicUsize,
    /// Rebind once this many bytes came from the edge through the first mapping.
    rebind_after: AtomicU64,
    /// Bytes that came from the edge through the current mapping.
    from_edge: AtomicU64,
    /// Datagrams the edge sent to a forgotten mapping (lost).
    forgotten: AtomicU64,
    /// Drop everything, both ways.
    blackhole: AtomicBool,
    /// Datagrams dropped by the blackhole, both ways.
    blackholed: AtomicU64,
    edge: SocketAddr,
    stop: AtomicBool,
}

impl Relay {
    /// A relay to the edge at `edge`, forwarding everything, on a loopback port of its own
    /// ([`Relay::addr`], the address to give the client as the edge's).
    pub(crate) fn start(edge: SocketAddr) -> anyhow::Result<Self> {
        let bind = || -> anyhow::Result<UdpSocket> {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.set_read_timeout(Some(POLL))?;
            Ok(socket)
        };
        let shared = Arc::new(Shared {
            front: bind()?,
            upstream: [bind()?, bind()?],
            current: AtomicUsize::new(0),
            client_port: AtomicUsize::new(0),
            rebind_after: AtomicU64::new(u64::MAX),
            from_edge: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
            blackhole: AtomicBool::new(false),
            blackholed: AtomicU64::new(0),
            edge,
            stop: AtomicBool::new(false),
        });
        let addr = shared.front.local_addr()?;
        let mut threads = Vec::new();
        let to_edge = Arc::clone(&shared);
        threads.push(thread::spawn(move || to_edge.client_to_edge()));
        for mapping in 0..2 {
            let from_edge = Arc::clone(&shared);
            threads.push(thread::spawn(move || from_edge.edge_to_client(mapping)));
        }
        Ok(Self {
            addr,
            shared,
            threads,
        })
    }

    /// The address the client sends to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Rebinds once `bytes` came from the edge (through the first mapping).
    pub(crate) fn rebind_after(&self, bytes: u64) {
        self.shared.rebind_after.store(bytes, Ordering::Relaxed);
    }

    /// Rebinds now: the client's datagrams leave from the second mapping, and what the
    /// edge sends to the first is lost.
    pub(crate) fn rebind(&self) {
        self.shared.current.store(1, Ordering::Relaxed);
    }

    /// Whether the relay has rebound, and how many datagrams went to the forgotten mapping.
    pub(crate) fn rebound(&self) -> (bool, u64) {
        (
            self.shared.current.load(Ordering::Relaxed) == 1,
            self.shared.forgotten.load(Ordering::Relaxed),
        )
    }

    /// Turns the blackhole on (every datagram dropped, both ways) or off.
    pub(crate) fn blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, Ordering::Relaxed);
    }

    /// Datagrams the blackhole dropped so far, both ways.
    pub(crate) fn blackholed(&self) -> u64 {
        self.shared.blackholed.load(Ordering::Relaxed)
    }

    /// Bytes that came from the edge and were passed to the client.
    pub(crate) fn bytes_from_edge(&self) -> u64 {
        self.shared.from_edge.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Shared {
    /// Whether the blackhole takes this datagram (and counts it).
    fn swallowed(&self) -> bool {
        let on = self.blackhole.load(Ordering::Relaxed);
        if on {
            self.blackholed.fetch_add(1, Ordering::Relaxed);
        }
        on
    }

    /// The client's datagrams, out through the current mapping.
    fn client_to_edge(&self) {
        let mut buf = vec![0; 65_536];
        while !self.stop.load(Ordering::Relaxed) {
            let Ok((len, from)) = self.front.recv_from(&mut buf) else {
                continue;
            };
            self.client_port
                .store(usize::from(from.port()), Ordering::Relaxed);
            if self.swallowed() {
                continue;
            }
            let mapping = &self.upstream[self.current.load(Ordering::Relaxed)];
            let _ = mapping.send_to(&buf[..len], self.edge);
        }
    }

    /// The edge's datagrams to `mapping`, back to the client while the mapping is current;
    /// the rebinding after `rebind_after` bytes happens here.
    fn edge_to_client(&self, mapping: usize) {
        let mut buf = vec![0; 65_536];
        while !self.stop.load(Ordering::Relaxed) {
            let Ok((len, _)) = self.upstream[mapping].recv_from(&mut buf) else {
                continue;
            };
            if self.current.load(Ordering::Relaxed) != mapping {
                self.forgotten.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.swallowed() {
                continue;
            }
            let port = self.client_port.load(Ordering::Relaxed);
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            let _ = self
                .front
                .send_to(&buf[..len], SocketAddr::from(([127, 0, 0, 1], port)));
            let total = self.from_edge.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
            if mapping == 0 && total >= self.rebind_after.load(Ordering::Relaxed) {
                self.current.store(1, Ordering::Relaxed);
            }
        }
    }
}

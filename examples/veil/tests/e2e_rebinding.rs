//! NAT rebinding in the middle of a download, with real programs on loopback: curl →
//! `veil client` (SOCKS5) → a NAT of the test's own → `veil server` → nginx.
//!
//! The NAT is a UDP relay: the client talks to it as if it were the edge, and it forwards
//! the client's datagrams to the edge from a socket of its own, as a NAT's mapping would.
//! A quarter of the way into a 64 MiB download it "rebinds": from then on it forwards from
//! a new socket (a new source port, as when a NAT's mapping expires), and whatever the
//! edge still sends to the old one is lost, as the forgotten mapping's would be. The edge
//! must follow the client to its new address and the download must complete, whole and on
//! the same connection (before the engine's workaround for cloudflare/quiche#2452 it stalled
//! until the idle timeout).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, ensure};
use support::{Client, Edge, Origin, TOKEN, TempDir, curl, require_tool, sha256_file, timed};

/// The file downloaded.
const SIZE: usize = 64 << 20;
/// When the NAT rebinds: after this many bytes came from the edge.
const REBIND_AFTER: u64 = (SIZE / 4) as u64;
/// Bound of the download in a debug build on a busy machine (a few seconds alone); a
/// stalled transfer would wait for the idle timeout instead.
const DOWNLOAD: Duration = Duration::from_secs(60);
/// How long a relay thread waits in `recv` before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// The NAT between the client and the edge.
struct Nat {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// What the NAT's threads share.
struct Shared {
    /// The socket the client talks to.
    front: UdpSocket,
    /// The NAT's two mappings toward the edge: the first until the rebinding, then the
    /// second.
    upstream: [UdpSocket; 2],
    /// Which of `upstream` is the mapping now.
    current: AtomicUsize,
    /// The client's address, once it has sent (stored as its port; loopback).
    client_port: AtomicUsize,
    /// Bytes that came from the edge through the current mapping.
    from_edge: AtomicU64,
    /// Datagrams the edge sent to a forgotten mapping (lost).
    forgotten: AtomicU64,
    edge: SocketAddr,
    stop: AtomicBool,
}

impl Nat {
    fn start(edge: SocketAddr) -> anyhow::Result<Self> {
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
            from_edge: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
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

    /// Whether the NAT has rebound, and what went to the forgotten mapping since.
    fn rebound(&self) -> (bool, u64) {
        (
            self.shared.current.load(Ordering::Relaxed) == 1,
            self.shared.forgotten.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Shared {
    /// The client's datagrams, out through the current mapping.
    fn client_to_edge(&self) {
        let mut buf = vec![0; 65_536];
        while !self.stop.load(Ordering::Relaxed) {
            let Ok((len, from)) = self.front.recv_from(&mut buf) else {
                continue;
            };
            self.client_port
                .store(usize::from(from.port()), Ordering::Relaxed);
            let mapping = &self.upstream[self.current.load(Ordering::Relaxed)];
            let _ = mapping.send_to(&buf[..len], self.edge);
        }
    }

    /// The edge's datagrams to `mapping`, back to the client while the mapping is current;
    /// the rebinding happens here, after [`REBIND_AFTER`] bytes.
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
            let port = self.client_port.load(Ordering::Relaxed);
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            let _ = self
                .front
                .send_to(&buf[..len], SocketAddr::from(([127, 0, 0, 1], port)));
            let total = self.from_edge.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
            if mapping == 0 && total >= REBIND_AFTER {
                self.current.store(1, Ordering::Relaxed);
            }
        }
    }
}

#[test]
fn a_download_survives_the_client_s_nat_rebinding() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("rebinding")?;
    let origin = Origin::start(dir.path())?;
    let served = origin.root().join("big.bin");
    let served_sum = support::write_random_file(&served, SIZE, 0x5eed_0b1d)?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let nat = Nat::start(edge.addr())?;
    let client = Client::start(
        dir.path(),
        nat.addr,
        &["--pin", edge.pin()?, "--token", TOKEN],
    )?;
    let downloaded = dir.join("downloaded.bin");
    let socks = format!("socks5h://{}", client.socks());
    let output = timed("64 MiB download across a NAT rebinding", || {
        curl(
            &[
                "--proxy",
                &socks,
                "--write-out",
                "%{http_code}",
                "--output",
                downloaded.to_str().context("a UTF-8 path")?,
                &origin.url("big.bin"),
            ],
            DOWNLOAD,
        )
    })?;
    let (rebound, forgotten) = nat.rebound();
    let context = || {
        format!(
            "rebound {rebound}, {forgotten} datagrams to the forgotten mapping\n{}\n{}",
            edge.diagnostics(),
            client.diagnostics()
        )
    };
    ensure!(
        output.status.success() && output.stdout == "200",
        "download: curl exit {}, status {:?}: {}\n{}",
        output.code(),
        output.stdout,
        output.stderr,
        context()
    );
    ensure!(
        sha256_file(&downloaded)? == served_sum,
        "the downloaded file differs from the served one\n{}",
        context()
    );
    ensure!(
        rebound,
        "the NAT never rebound: nothing was tested\n{}",
        context()
    );
    ensure!(
        edge.connections_established() == 1,
        "the client connected again instead of being followed\n{}",
        context()
    );
    eprintln!("e2e: rebinding: {forgotten} datagrams lost to the forgotten mapping");
    Ok(())
}

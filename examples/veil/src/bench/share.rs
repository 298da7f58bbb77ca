//! `--parts share`: many busy tunnels at once through one proxy, and how evenly it serves
//! them (issue 17's "no tunnel starved").
//!
//! `--busy-tunnels` tunnels are opened through a route to a source that, once it reads a
//! byte, writes as fast as the tunnel takes. Every tunnel then sends its byte and reads
//! for `--share-secs`; what each read in that window is its share. Through veil all of
//! them ride one QUIC connection, so the table shows how the engine and quiche divide one
//! connection's window and packets among streams; through a TCP proxy each has its own
//! connection and the kernel divides.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

use super::Route;

/// Bytes per write of the source, and per read of a tunnel.
const CHUNK: usize = 64 * 1024;

/// A TCP listener that, on each connection, waits for one byte and then writes zeros until
/// the peer half-closes or goes away.
pub(crate) struct Source {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Source {
    pub(crate) async fn start(ip: std::net::IpAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(stream_zeros(stream));
                }
            }
        });
        Ok(Self { addr, task })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes zeros from the first byte read until the peer half-closes or goes away, as a
/// server stops when its client does (a source that kept writing would leave the edge's
/// relay draining it after each run: docs/RELIABILITY.md, "The linger after a stop").
async fn stream_zeros(stream: TcpStream) {
    let (mut reader, mut writer) = stream.into_split();
    let mut start = [0u8; 1];
    if reader.read_exact(&mut start).await.is_err() {
        return;
    }
    let zeros = vec![0u8; CHUNK];
    let writing = async { while writer.write_all(&zeros).await.is_ok() {} };
    let mut rest = [0u8; 64];
    let peer_done = async { while matches!(reader.read(&mut rest).await, Ok(len) if len > 0) {} };
    tokio::select! {
        () = writing => {}
        () = peer_done => {}
    }
}

/// Opens `tunnels` tunnels to `source` through `socks`, starts them together and returns
/// what each read in `window`.
pub(crate) async fn shares(
    socks: SocketAddr,
    source: SocketAddr,
    tunnels: usize,
    window: Duration,
) -> anyhow::Result<Vec<u64>> {
    let streams = super::tcp::open_idle(socks, source, tunnels).await?;
    let barrier = Arc::new(Barrier::new(streams.len()));
    let readers: Vec<JoinHandle<std::io::Result<u64>>> = streams
        .into_iter()
        .map(|stream| tokio::spawn(read_for(stream, Arc::clone(&barrier), window)))
        .collect();
    let mut shares = Vec::with_capacity(readers.len());
    for reader in readers {
        shares.push(reader.await??);
    }
    Ok(shares)
}

/// Waits for every tunnel, asks for the stream, and counts what arrives in `window`.
async fn read_for(
    mut stream: TcpStream,
    barrier: Arc<Barrier>,
    window: Duration,
) -> std::io::Result<u64> {
    barrier.wait().await;
    stream.write_all(b"!").await?;
    let deadline = Instant::now() + window;
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Err(_) => return Ok(bytes),
            Ok(Ok(len)) => bytes += len as u64,
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// What one route's tunnels read, summarised.
pub(crate) struct Spread {
    route: Route,
    shares: Vec<u64>,
    window: Duration,
}

impl Spread {
    pub(crate) fn new(route: Route, mut shares: Vec<u64>, window: Duration) -> Self {
        shares.sort_unstable();
        Self {
            route,
            shares,
            window,
        }
    }

    // Display only: byte counts far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    fn row(&self) -> Option<String> {
        let count = self.shares.len();
        let (&smallest, &largest) = (self.shares.first()?, self.shares.last()?);
        let median = self.shares[count / 2];
        let total: u64 = self.shares.iter().sum();
        let secs = self.window.as_secs_f64();
        let mib = |bytes: f64| bytes / super::MIB as f64 / secs;
        let fair = total as f64 / count as f64;
        let squares: f64 = self.shares.iter().map(|&s| (s as f64).powi(2)).sum();
        // Jain's fairness index: 1 when every share is equal, 1/n when one takes all.
        let jain = (total as f64).powi(2) / (count as f64 * squares).max(f64::EPSILON);
        Some(format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | **{:.2}** | {jain:.3} |",
            self.route.label(),
            mib(total as f64),
            mib(fair),
            mib(smallest as f64),
            mib(median as f64),
            mib(largest as f64),
            smallest as f64 / fair.max(f64::EPSILON),
        ))
    }
}

/// The share part's table, one row per route.
pub(crate) fn table(tunnels: usize, window: Duration, spreads: &[Spread]) -> String {
    let mut out = format!(
        "\n| {tunnels} busy tunnels, {:.0} s, MiB/s | total | fair share | smallest | median | largest | smallest ÷ fair | Jain's index |\n|---|---|---|---|---|---|---|---|\n",
        window.as_secs_f64()
    );
    for row in spreads.iter().filter_map(Spread::row) {
        let _ = writeln!(out, "{row}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Route, Spread};
    use std::time::Duration;

    fn row(shares: &[u64]) -> String {
        Spread::new(Route::Proxied, shares.to_vec(), Duration::from_secs(1))
            .row()
            .expect("a row")
    }

    #[test]
    fn equal_shares_are_fair_and_one_taker_is_not() {
        let mib = super::super::MIB;
        let even = row(&[mib; 4]);
        assert!(
            even.ends_with("| 4 | 1.00 | 1.00 | 1.00 | 1.00 | **1.00** | 1.000 |"),
            "{even}"
        );
        let one = row(&[4 * mib, 0, 0, 0]);
        assert!(
            one.ends_with("| 4 | 1.00 | 0.00 | 0.00 | 4.00 | **0.00** | 0.250 |"),
            "{one}"
        );
    }
}

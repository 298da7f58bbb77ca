//! The TCP side of the bench, in the bench process: a sink, an echo server and a holder of
//! idle connections, and the load that goes to them directly or through SOCKS5.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use crate::fetch::{SocksOutcome, socks5_connect};

/// Bytes per write of the load generator and per read of the sink.
const IO_CHUNK: usize = 256 * 1024;
/// Idle tunnels opened at once.
const OPEN_CONCURRENCY: usize = 100;
/// A paced load writes once per this many milliseconds.
const PACE_MS: u64 = 2;
const PACE: Duration = Duration::from_millis(PACE_MS);

/// What the sink saw of one connection.
struct Drained {
    bytes: u64,
    at_eof: Instant,
}

/// The servers the load goes to; dropping them stops them.
pub(crate) struct Targets {
    pub(crate) sink: SocketAddr,
    pub(crate) echo: SocketAddr,
    pub(crate) idle: SocketAddr,
    drained: mpsc::UnboundedReceiver<Drained>,
    tasks: Vec<JoinHandle<()>>,
}

impl Targets {
    /// Listens on three ports of `ip` (loopback, or the root end of `--veth`'s link).
    pub(crate) async fn start(ip: std::net::IpAddr) -> anyhow::Result<Self> {
        let at = SocketAddr::new(ip, 0);
        let sink = TcpListener::bind(at).await?;
        let echo = TcpListener::bind(at).await?;
        let idle = TcpListener::bind(at).await?;
        let (drained_tx, drained) = mpsc::unbounded_channel();
        let addrs = (sink.local_addr()?, echo.local_addr()?, idle.local_addr()?);
        let tasks = vec![
            tokio::spawn(serve(sink, move |stream| {
                let drained = drained_tx.clone();
                async move {
                    if let Ok(report) = drain(stream).await {
                        let _ = drained.send(report);
                    }
                }
            })),
            tokio::spawn(serve(echo, echo_back)),
            tokio::spawn(hold(idle)),
        ];
        Ok(Self {
            sink: addrs.0,
            echo: addrs.1,
            idle: addrs.2,
            drained,
            tasks,
        })
    }

    /// Writes `bytes` to `stream` and half-closes it; returns the time from the first write
    /// until the sink read EOF.
    pub(crate) async fn transfer(
        &mut self,
        mut stream: TcpStream,
        bytes: u64,
    ) -> anyhow::Result<Duration> {
        // Real bytes, not the shared zero page a zeroed allocation would read from.
        let mut chunk = vec![0; IO_CHUNK];
        crate::body::fill_pattern(0, &mut chunk);
        let started = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let len = usize::try_from(left).map_or(IO_CHUNK, |left| left.min(IO_CHUNK));
            stream
                .write_all(chunk.get(..len).unwrap_or_default())
                .await?;
            left -= u64::try_from(len)?;
        }
        stream.shutdown().await?;
        let drained = self.drained.recv().await.context("the sink stopped")?;
        ensure!(
            drained.bytes == bytes,
            "the sink got {} of {bytes} bytes",
            drained.bytes
        );
        Ok(drained.at_eof.saturating_duration_since(started))
    }
}

impl Targets {
    /// Runs `during` while `stream` carries bytes to the sink at about `rate` bytes per
    /// second (a write every [`PACE`]), or as fast as it can with `rate` 0; then half-closes `stream` and returns what `during`
    /// gave and the bytes the sink received.
    pub(crate) async fn under_load<T>(
        &mut self,
        mut stream: TcpStream,
        rate: u64,
        during: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<(T, u64)> {
        let per_tick = match rate {
            0 => IO_CHUNK,
            rate => {
                usize::try_from(rate / (1000 / PACE_MS)).map_or(IO_CHUNK, |n| n.clamp(1, IO_CHUNK))
            }
        };
        let (stop, mut stopped) = oneshot::channel::<()>();
        let load = tokio::spawn(async move {
            let mut chunk = vec![0; per_tick];
            crate::body::fill_pattern(0, &mut chunk);
            let mut tick = tokio::time::interval(PACE);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut written = 0u64;
            loop {
                if rate == 0 {
                    // Saturating: as fast as the tunnel takes it. `write` is cancel-safe:
                    // a write the stop interrupts wrote nothing.
                    tokio::select! {
                        _ = &mut stopped => break,
                        taken = stream.write(&chunk) => written += u64::try_from(taken?)?,
                    }
                    continue;
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        stream.write_all(&chunk).await?;
                        written += u64::try_from(per_tick)?;
                    }
                }
            }
            stream.shutdown().await?;
            anyhow::Ok(written)
        });
        let outcome = during.await;
        let _ = stop.send(());
        let written = load.await??;
        let drained = self.drained.recv().await.context("the sink stopped")?;
        ensure!(
            drained.bytes == written,
            "the sink got {} of {written} bytes",
            drained.bytes
        );
        Ok((outcome?, written))
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Accepts forever, serving each connection in a task of its own.
async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handler(stream));
        }
    }
}

async fn drain(mut stream: TcpStream) -> std::io::Result<Drained> {
    let mut buf = vec![0; IO_CHUNK];
    let mut bytes = 0;
    loop {
        let len = stream.read(&mut buf).await?;
        if len == 0 {
            return Ok(Drained {
                bytes,
                at_eof: Instant::now(),
            });
        }
        bytes += len as u64;
    }
}

async fn echo_back(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0; 64 * 1024];
    while let Ok(len) = stream.read(&mut buf).await {
        if len == 0
            || stream
                .write_all(buf.get(..len).unwrap_or_default())
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Accepts and keeps every connection, reading nothing, until aborted.
async fn hold(listener: TcpListener) {
    let mut held = Vec::new();
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    }
}

/// A TCP connection to `target`, directly.
pub(crate) async fn direct(target: SocketAddr) -> anyhow::Result<TcpStream> {
    Ok(TcpStream::connect(target).await?)
}

/// A TCP connection to `target` through the SOCKS5 proxy at `socks` (a tunnel).
pub(crate) async fn proxied(socks: SocketAddr, target: SocketAddr) -> anyhow::Result<TcpStream> {
    match socks5_connect(socks, &target.ip().to_string(), target.port(), None).await? {
        SocksOutcome::Connected(stream) => Ok(stream),
        SocksOutcome::Refused(code) => bail!("SOCKS5 CONNECT to {target} refused ({code:#04x})"),
    }
}

/// Opens a connection to the echo server `echo` (through the SOCKS5 proxy `socks`, if
/// given), sends one byte, reads it back and closes; returns the time all that took.
pub(crate) async fn one_byte_round_trip(
    socks: Option<SocketAddr>,
    echo: SocketAddr,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut stream = match socks {
        None => direct(echo).await?,
        Some(socks) => proxied(socks, echo).await?,
    };
    stream.set_nodelay(true)?;
    stream.write_all(b"?").await?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    let elapsed = started.elapsed();
    ensure!(byte == *b"?", "the echo answered a different byte");
    Ok(elapsed)
}

/// Round-trip times of `count` request/responses of `size` bytes on each of `streams`
/// (one series per stream, in order), taking turns so that all see the same machine load.
pub(crate) async fn ping_pong(
    mut streams: Vec<TcpStream>,
    size: usize,
    count: usize,
    warmup: usize,
) -> anyhow::Result<Vec<Vec<Duration>>> {
    for stream in &streams {
        stream.set_nodelay(true)?;
    }
    let request = vec![0x5a; size];
    let mut response = vec![0; size];
    let mut times = vec![Vec::with_capacity(count); streams.len()];
    for round in 0..warmup + count {
        for index in in_turn(round, streams.len()) {
            let (Some(stream), Some(series)) = (streams.get_mut(index), times.get_mut(index))
            else {
                continue;
            };
            let elapsed = round_trip(stream, &request, &mut response).await?;
            if round >= warmup {
                series.push(elapsed);
            }
        }
    }
    Ok(times)
}

/// The order of the routes in `round`: each round starts one route later than the one
/// before. A route that always ran right after the same other one (veil's, after direct
/// TCP's few microseconds) would carry what that position costs: its measured p50 was
/// 10–15% above an identical second veil client's at the next position.
fn in_turn(round: usize, routes: usize) -> impl Iterator<Item = usize> {
    (0..routes).map(move |k| (round + k) % routes)
}

/// Times of `count` new connections to the echo server `echo`, each opened, asked one byte
/// and closed: directly (the first series), then through each of `proxies` (SOCKS5
/// handshake + CONNECT + the byte's round trip), taking turns.
pub(crate) async fn new_tunnels<R>(
    echo: SocketAddr,
    proxies: &[(R, SocketAddr)],
    count: usize,
    warmup: usize,
) -> anyhow::Result<Vec<Vec<Duration>>> {
    let routes: Vec<Option<SocketAddr>> = std::iter::once(None)
        .chain(proxies.iter().map(|(_, socks)| Some(*socks)))
        .collect();
    let mut times = vec![Vec::with_capacity(count); routes.len()];
    for round in 0..warmup + count {
        for index in in_turn(round, routes.len()) {
            let (Some(socks), Some(series)) = (routes.get(index), times.get_mut(index)) else {
                continue;
            };
            let elapsed = one_byte_round_trip(*socks, echo).await?;
            if round >= warmup {
                series.push(elapsed);
            }
        }
    }
    Ok(times)
}

async fn round_trip(
    stream: &mut TcpStream,
    request: &[u8],
    response: &mut [u8],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    stream.write_all(request).await?;
    stream.read_exact(response).await?;
    let elapsed = started.elapsed();
    ensure!(response == request, "the echo answered different bytes");
    Ok(elapsed)
}

/// Opens `count` tunnels to `target` through `socks` and returns their (idle) streams.
pub(crate) async fn open_idle(
    socks: SocketAddr,
    target: SocketAddr,
    count: usize,
) -> anyhow::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        let batch = (count - streams.len()).min(OPEN_CONCURRENCY);
        let mut opening = JoinSet::new();
        for _ in 0..batch {
            opening.spawn(proxied(socks, target));
        }
        while let Some(opened) = opening.join_next().await {
            streams.push(opened??);
        }
    }
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::in_turn;

    #[test]
    fn every_round_times_each_route_once_starting_one_later() {
        for round in 0..7 {
            let order: Vec<usize> = in_turn(round, 3).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2], "round {round}: each route once");
            assert_eq!(
                order.first(),
                Some(&(round % 3)),
                "round {round} starts later"
            );
        }
        assert_eq!(in_turn(5, 1).collect::<Vec<_>>(), [0]);
    }
}

//! One QUIC hop's round trip: a quiche client and a quiche echo server, each on a thread of
//! its own, exchanging `--message` bytes on one stream, `--requests` times.
//!
//! A tunnelled round trip crosses three hops (application → client, client → edge, edge
//! → target) where a TCP proxy such as shadowsocks-rust crosses three TCP hops: the two
//! differ in the middle hop only. This series measures that hop alone, QUIC through quiche
//! with veil's configuration and veil-tokio's UDP I/O (see [`super::raw`]), beside the
//! direct TCP round trip of the same run: what one QUIC hop costs more than one TCP hop is
//! the part of veil's round trip that no proxy on quiche can avoid.
//!
//! With `bulk`, the client also keeps a second stream of the same connection as full as
//! flow control lets it (the server reads and discards it): the same hop beside a
//! saturating bulk transfer, what `--parts loaded` measures through veil.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::oneshot;
use veil_engine::QuicConfig;
use veil_tokio::udp::{MAX_GSO_PAYLOAD, RecvBufs, UdpIo};

use super::raw::{
    Service, Sides, connect, feed, quiche_config, send_all, serve, sleep_until, spawn_side,
};

/// The stream the round trips use (the client's first bidirectional one).
const STREAM: u64 = 0;
/// The bulk stream beside it (the client's second bidirectional one), when asked for.
const BULK: u64 = 4;
/// One read from the stream.
const READ_LEN: usize = 64 * 1024;
/// Bound on the whole series (handshake included).
const BOUND: Duration = Duration::from_secs(120);

/// Times `requests` round trips of `message` bytes over one QUIC connection on loopback,
/// after `warmup` untimed ones; with `bulk`, beside a saturating bulk stream.
pub(crate) async fn round_trips(
    quic: &QuicConfig,
    message: usize,
    warmup: usize,
    requests: usize,
    bulk: bool,
) -> anyhow::Result<Vec<Duration>> {
    let sides = Sides::new(quic, quiche_config)?;
    let (times_tx, times) = oneshot::channel();
    let server = spawn_side("raw-echo", move || async move {
        let (udp, mut config) = sides.server.open()?;
        echo_loop(&udp, &mut config).await
    })?;
    let client = spawn_side("raw-pinger", move || async move {
        let (udp, mut config) = sides.client.open()?;
        let mut conn = connect(&udp, sides.server_addr, &mut config)?;
        let series = ping(&mut conn, &udp, message, warmup + requests, bulk).await;
        let _ = conn.close(true, 0, b"done");
        let mut out = vec![0; MAX_GSO_PAYLOAD];
        send_all(&mut conn, &udp, &mut out).await?;
        let _ = times_tx.send(series?.split_off(warmup));
        Ok(())
    })?;
    let series = tokio::time::timeout(BOUND, times)
        .await
        .context("raw quiche round trips: no answer within the bound")?
        .context("raw quiche round trips: the client thread failed");
    for thread in [client, server] {
        if thread.is_finished() {
            if let Ok(Err(e)) = thread.join() {
                return Err(e.context("raw quiche round trips"));
            }
        }
    }
    series
}

/// The client: waits for the handshake, then writes `message` bytes and reads them back,
/// `count` times (with `bulk`, keeping [`BULK`] full meanwhile); returns each round trip's
/// time.
async fn ping(
    conn: &mut quiche::Connection,
    udp: &UdpIo,
    message: usize,
    count: usize,
    bulk: bool,
) -> anyhow::Result<Vec<Duration>> {
    let filler = vec![0x5a; READ_LEN];
    let mut out = vec![0; MAX_GSO_PAYLOAD];
    let mut bufs = RecvBufs::new();
    let mut read = vec![0; READ_LEN];
    let mut payload = vec![0; message];
    crate::body::fill_pattern(0, &mut payload);
    while !conn.is_established() {
        send_all(conn, udp, &mut out).await?;
        input(conn, udp, &mut bufs).await?;
    }
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let mut sent = 0;
        let mut received = 0;
        while received < message {
            if sent < message {
                match conn.stream_send(STREAM, payload.get(sent..).unwrap_or_default(), false) {
                    Ok(taken) => sent += taken,
                    Err(quiche::Error::Done) => {}
                    Err(e) => bail!("raw quiche stream_send: {e}"),
                }
            }
            if bulk {
                fill(conn, &filler)?;
            }
            send_all(conn, udp, &mut out).await?;
            input(conn, udp, &mut bufs).await?;
            loop {
                match conn.stream_recv(STREAM, &mut read) {
                    Ok((len, _)) => received += len,
                    Err(quiche::Error::Done) => break,
                    Err(e) => bail!("raw quiche stream_recv: {e}"),
                }
            }
        }
        times.push(started.elapsed());
    }
    Ok(times)
}

/// Writes `filler` to [`BULK`] until quiche takes no more (its send capacity, or the
/// stream's flow control, is spent).
fn fill(conn: &mut quiche::Connection, filler: &[u8]) -> anyhow::Result<()> {
    loop {
        match conn.stream_send(BULK, filler, false) {
            Ok(taken) if taken == filler.len() => {}
            Ok(_) | Err(quiche::Error::Done) => return Ok(()),
            Err(e) => bail!("raw quiche bulk stream_send: {e}"),
        }
    }
}

/// The client's next input: datagrams, or the connection's timer.
async fn input(
    conn: &mut quiche::Connection,
    udp: &UdpIo,
    bufs: &mut RecvBufs,
) -> anyhow::Result<()> {
    if conn.is_closed() {
        bail!("raw quiche: the connection closed");
    }
    tokio::select! {
        count = udp.recv(bufs) => feed(conn, bufs, count?, udp.local_addr()),
        () = sleep_until(conn.timeout_instant()) => conn.on_timeout(),
    }
    Ok(())
}

/// The server: accepts one connection and writes back every byte it reads on [`STREAM`]
/// (and drops what comes on any other), until the connection closes.
async fn echo_loop(udp: &UdpIo, config: &mut quiche::Config) -> anyhow::Result<()> {
    serve(udp, config, &mut Echo::default()).await
}

/// Bytes read and not yet written back, by stream.
#[derive(Default)]
struct Echo {
    owed: HashMap<u64, Vec<u8>>,
}

impl Service for Echo {
    fn read(
        &mut self,
        _conn: &mut quiche::Connection,
        stream: u64,
        bytes: &[u8],
        _fin: bool,
    ) -> anyhow::Result<()> {
        if stream != STREAM {
            return Ok(());
        }
        self.owed
            .entry(stream)
            .or_default()
            .extend_from_slice(bytes);
        Ok(())
    }

    fn then(&mut self, conn: &mut quiche::Connection) -> anyhow::Result<()> {
        for (stream, bytes) in &mut self.owed {
            if bytes.is_empty() {
                continue;
            }
            match conn.stream_send(*stream, bytes, false) {
                Ok(taken) => drop(bytes.drain(..taken)),
                Err(quiche::Error::Done) => {}
                Err(e) => bail!("raw quiche echo stream_send: {e}"),
            }
        }
        Ok(())
    }
}

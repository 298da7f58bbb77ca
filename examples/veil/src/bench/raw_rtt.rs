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
//! With a [`Bulk`] stream, a client also keeps a stream as full as flow control lets it
//! (the server reads and discards it): the same hop beside a saturating bulk transfer,
//! what `--parts loaded` measures through veil. The bulk runs on the round trips' own
//! connection, as every tunnel of a veil client shares its one connection; or on a second
//! connection between the same two sockets and threads, what a client that gave small
//! tunnels a connection of their own, and nothing else of their own, would see; or on a
//! connection from another client socket and thread to the same server: where the
//! difference between those two lies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::oneshot;
use veil_engine::QuicConfig;
use veil_tokio::udp::{MAX_GSO_PAYLOAD, RecvBufs, UdpIo};

use super::raw::{
    CID_LEN, Service, Side, Sides, connect, quiche_config, random_cid, send_all, sleep_until,
    spawn_side,
};

/// The stream the round trips use (the client's first bidirectional one).
const STREAM: u64 = 0;
/// The bulk stream beside it (the client's second bidirectional one), when asked for.
const BULK: u64 = 4;
/// One read from the stream.
const READ_LEN: usize = 64 * 1024;
/// Bound on the whole series (handshake included).
const BOUND: Duration = Duration::from_secs(120);

/// Where a saturating bulk stream runs while the round trips are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bulk {
    /// Nowhere: the hop idle.
    None,
    /// On the round trips' own connection.
    SameConnection,
    /// On a second connection between the same two UDP sockets, driven by the same two
    /// threads.
    OtherConnection,
    /// On a connection from another client socket, driven by a client thread of its own, to
    /// the same server socket and thread: the server's side shared, the client's not.
    OtherClient,
}

impl Bulk {
    /// Whether the round trips' own client thread keeps the bulk stream full.
    fn in_pinger(self) -> bool {
        matches!(self, Self::SameConnection | Self::OtherConnection)
    }
}

/// Times `requests` round trips of `message` bytes over one QUIC connection on loopback,
/// after `warmup` untimed ones, beside `bulk`.
pub(crate) async fn round_trips(
    quic: &QuicConfig,
    message: usize,
    warmup: usize,
    requests: usize,
    bulk: Bulk,
) -> anyhow::Result<Vec<Duration>> {
    let sides = Sides::new(quic, quiche_config)?;
    let server_addr = sides.server_addr;
    let (times_tx, times) = oneshot::channel();
    let server = spawn_side("raw-echo", move || async move {
        let (udp, mut config) = sides.server.open()?;
        echo_loop(&udp, &mut config).await
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    if bulk == Bulk::OtherClient {
        let side = Side::client(quic, quiche_config)?;
        let stop = stop.clone();
        threads.push(spawn_side("raw-bulk", move || async move {
            let (udp, mut config) = side.open()?;
            let conn = connect(&udp, server_addr, &mut config)?;
            Box::pin(load(conn, &udp, &stop)).await
        })?);
    }
    let stopped = stop.clone();
    let client = spawn_side("raw-pinger", move || async move {
        let (udp, mut config) = sides.client.open()?;
        let count = if bulk == Bulk::OtherConnection { 2 } else { 1 };
        let mut conns = (0..count)
            .map(|_| connect(&udp, sides.server_addr, &mut config))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let series = ping(&mut conns, &udp, message, warmup + requests, bulk).await;
        stopped.store(true, Ordering::Relaxed);
        let mut out = vec![0; MAX_GSO_PAYLOAD];
        for conn in &mut conns {
            let _ = conn.close(true, 0, b"done");
            send_all(conn, &udp, &mut out).await?;
        }
        let _ = times_tx.send(series?.split_off(warmup));
        Ok(())
    })?;
    let series = tokio::time::timeout(BOUND, times)
        .await
        .context("raw quiche round trips: no answer within the bound")?
        .context("raw quiche round trips: the client thread failed");
    stop.store(true, Ordering::Relaxed);
    threads.extend([client, server]);
    for thread in threads {
        if thread.is_finished() {
            if let Ok(Err(e)) = thread.join() {
                return Err(e.context("raw quiche round trips"));
            }
        }
    }
    series
}

/// The client: waits for the handshakes, then writes `message` bytes on the last
/// connection and reads them back, `count` times (keeping [`BULK`] of the first one full
/// meanwhile, unless `bulk` is [`Bulk::None`]); returns each round trip's time.
async fn ping(
    conns: &mut [quiche::Connection],
    udp: &UdpIo,
    message: usize,
    count: usize,
    bulk: Bulk,
) -> anyhow::Result<Vec<Duration>> {
    let pinged = conns.len().checked_sub(1).context("no connection")?;
    let filler = vec![0x5a; READ_LEN];
    let mut out = vec![0; MAX_GSO_PAYLOAD];
    let mut bufs = RecvBufs::new();
    let mut read = vec![0; READ_LEN];
    let mut payload = vec![0; message];
    crate::body::fill_pattern(0, &mut payload);
    while !conns.iter().all(quiche::Connection::is_established) {
        for conn in conns.iter_mut() {
            send_all(conn, udp, &mut out).await?;
        }
        input(conns, udp, &mut bufs).await?;
    }
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let mut sent = 0;
        let mut received = 0;
        while received < message {
            let conn = conns.get_mut(pinged).context("no connection")?;
            if sent < message {
                match conn.stream_send(STREAM, payload.get(sent..).unwrap_or_default(), false) {
                    Ok(taken) => sent += taken,
                    Err(quiche::Error::Done) => {}
                    Err(e) => bail!("raw quiche stream_send: {e}"),
                }
            }
            if bulk.in_pinger() {
                fill(conns.first_mut().context("no connection")?, &filler)?;
            }
            for conn in conns.iter_mut() {
                send_all(conn, udp, &mut out).await?;
            }
            input(conns, udp, &mut bufs).await?;
            let conn = conns.get_mut(pinged).context("no connection")?;
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

/// The bulk client of [`Bulk::OtherClient`]: keeps [`BULK`] full until `stop`.
async fn load(mut conn: quiche::Connection, udp: &UdpIo, stop: &AtomicBool) -> anyhow::Result<()> {
    let filler = vec![0x5a; READ_LEN];
    let mut out = vec![0; MAX_GSO_PAYLOAD];
    let mut bufs = RecvBufs::new();
    while !stop.load(Ordering::Relaxed) {
        if conn.is_established() {
            fill(&mut conn, &filler)?;
        }
        send_all(&mut conn, udp, &mut out).await?;
        input(std::slice::from_mut(&mut conn), udp, &mut bufs).await?;
    }
    let _ = conn.close(true, 0, b"done");
    send_all(&mut conn, udp, &mut out).await
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

/// The client's next input: datagrams, each to the connection it names, or the timers.
async fn input(
    conns: &mut [quiche::Connection],
    udp: &UdpIo,
    bufs: &mut RecvBufs,
) -> anyhow::Result<()> {
    if conns.iter().any(quiche::Connection::is_closed) {
        bail!("raw quiche: a connection closed");
    }
    let timeout = conns
        .iter()
        .filter_map(quiche::Connection::timeout_instant)
        .min();
    tokio::select! {
        count = udp.recv(bufs) => {
            let local = udp.local_addr();
            for index in 0..count? {
                let Some((from, _, datagrams)) = bufs.datagrams(index) else {
                    continue;
                };
                for datagram in datagrams {
                    let to = destination_id(datagram)
                        .and_then(|id| conns.iter().position(|conn| *conn.source_id() == *id));
                    if let Some(conn) = to.and_then(|at| conns.get_mut(at)) {
                        let _ = conn.recv(datagram, quiche::RecvInfo { from, to: local });
                    }
                }
            }
        }
        // quiche fires only the timers that are due.
        () = sleep_until(timeout) => conns.iter_mut().for_each(quiche::Connection::on_timeout),
    }
    Ok(())
}

/// The destination connection ID of a QUIC packet: after the first byte of a short
/// header ([`CID_LEN`] bytes, the length every ID here has), after the version and the
/// length byte of a long one.
//# 17.2. Long Header Packets: Header Form (1) = 1, Fixed Bit (1) = 1, Long Packet Type
//# (2), Type-Specific Bits (4), Version (32), Destination Connection ID Length (8),
//# Destination Connection ID (0..160), ... (RFC 9000)
fn destination_id(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    if first & 0x80 == 0 {
        return packet.get(1..=CID_LEN);
    }
    let len = usize::from(*packet.get(5)?);
    packet.get(6..6 + len)
}

/// Whether a packet is a QUIC v1 Initial (long header, type 0).
fn is_initial(packet: &[u8]) -> bool {
    packet.first().is_some_and(|first| first & 0xb0 == 0x80)
}

/// One connection the echo server accepted.
struct Served {
    /// The ID the client's first Initial named, which its early packets still carry.
    original_id: Vec<u8>,
    conn: quiche::Connection,
    echo: Echo,
}

/// The server: accepts every connection and writes back every byte it reads on [`STREAM`]
/// (and drops what comes on any other), until every connection has closed.
async fn echo_loop(udp: &UdpIo, config: &mut quiche::Config) -> anyhow::Result<()> {
    let mut served: Vec<Served> = Vec::new();
    let mut out = vec![0; MAX_GSO_PAYLOAD];
    let mut bufs = RecvBufs::new();
    let mut read = vec![0; READ_LEN];
    loop {
        let timeout = served
            .iter()
            .filter_map(|served| served.conn.timeout_instant())
            .min();
        tokio::select! {
            count = udp.recv(&mut bufs) => {
                for index in 0..count? {
                    let Some((from, _, datagrams)) = bufs.datagrams(index) else {
                        continue;
                    };
                    for datagram in datagrams {
                        route(&mut served, udp, config, from, datagram)?;
                    }
                }
            }
            () = sleep_until(timeout) => {
                for served in &mut served {
                    served.conn.on_timeout();
                }
            }
        }
        for Served { conn, echo, .. } in &mut served {
            for stream in conn.readable() {
                loop {
                    match conn.stream_recv(stream, &mut read) {
                        Ok((len, fin)) => {
                            echo.read(conn, stream, read.get(..len).unwrap_or_default(), fin)?;
                        }
                        Err(quiche::Error::Done) => break,
                        Err(e) => bail!("raw quiche stream_recv: {e}"),
                    }
                }
            }
            echo.then(conn)?;
            send_all(conn, udp, &mut out).await?;
        }
        if !served.is_empty() && served.iter().all(|served| served.conn.is_closed()) {
            return Ok(());
        }
    }
}

/// Hands a datagram to the connection it names; an Initial naming none starts one.
fn route(
    served: &mut Vec<Served>,
    udp: &UdpIo,
    config: &mut quiche::Config,
    from: SocketAddr,
    datagram: &mut [u8],
) -> anyhow::Result<()> {
    let Some(id) = destination_id(datagram) else {
        return Ok(());
    };
    let known = served
        .iter()
        .position(|served| *served.conn.source_id() == *id || served.original_id == id);
    let at = match known {
        Some(at) => at,
        None if is_initial(datagram) => {
            let original_id = id.to_vec();
            let scid = random_cid()?;
            let scid = quiche::ConnectionId::from_ref(&scid);
            let conn = quiche::accept(&scid, None, udp.local_addr(), from, config)?;
            served.push(Served {
                original_id,
                conn,
                echo: Echo::default(),
            });
            served.len() - 1
        }
        None => return Ok(()),
    };
    if let Some(served) = served.get_mut(at) {
        let info = quiche::RecvInfo {
            from,
            to: udp.local_addr(),
        };
        if let Err(e) = served.conn.recv(datagram, info) {
            tracing::debug!(error = %e, "raw quiche: datagram not accepted");
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_id_is_read_from_short_and_long_headers() {
        let id = [7u8; CID_LEN];
        // Short header: the first byte, then the ID.
        let mut short = vec![0x40];
        short.extend_from_slice(&id);
        short.extend_from_slice(&[1, 2, 3]);
        assert_eq!(destination_id(&short), Some(&id[..]));
        assert!(!is_initial(&short));

        // Long header (an Initial): first byte, version, ID length, ID, source ID length...
        let mut initial = vec![0xc3, 0, 0, 0, 1, 8];
        initial.extend_from_slice(&[9; 8]);
        initial.extend_from_slice(&[0, 0]);
        assert_eq!(destination_id(&initial), Some(&[9; 8][..]));
        assert!(is_initial(&initial));

        // A Handshake packet (type 2) is long but not an Initial.
        let mut handshake = initial.clone();
        handshake[0] = 0xe3;
        assert!(!is_initial(&handshake));

        // Truncated: no ID to read.
        assert_eq!(destination_id(&short[..5]), None);
        assert_eq!(destination_id(&initial[..9]), None);
        assert_eq!(destination_id(&[]), None);
    }
}

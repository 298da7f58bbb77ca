//! The raw-quiche baseline: a quiche client and a quiche server on loopback UDP, one stream
//! per transfer, no HTTP/3, no proxying, no TCP.
//!
//! Why this is a fair ceiling for the proxied path:
//!
//! - the same transport settings: the quiche configuration is built from the same
//!   [`QuicConfig`] the `veil` processes run with (congestion control, windows, payload
//!   sizes, pacing), over the same TLS library (`BoringSSL`, TLS 1.3 defaults);
//! - the same I/O: each side is a tokio task on veil-tokio's own UDP socket
//!   ([`veil_tokio::udp`]: quinn-udp, GSO batches of same-size packets, GRO receives); each
//!   side has an OS thread of its own, as the two `veil` processes do;
//! - one long-lived connection carries every transfer on a fresh stream, as the `veil`
//!   client carries every tunnel on its one connection to the edge; the handshake is not
//!   timed.
//!
//! What it leaves out is exactly what proxying adds: HTTP/3 framing, the engine's tunnel
//! bookkeeping, the driver's channels and tasks, and the two TCP legs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use boring::asn1::Asn1Time;
use boring::bn::BigNum;
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::PKey;
use boring::ssl::{SslContextBuilder, SslMethod, SslVerifyMode};
use boring::x509::extension::SubjectAlternativeName;
use boring::x509::{X509, X509NameBuilder};
use tokio::sync::{mpsc, oneshot};
use veil_engine::{CongestionControl, QuicConfig};
use veil_tokio::udp::{MAX_GSO_PAYLOAD, RecvBufs, UdpIo};

/// Most segments in one GSO send (Linux `UDP_MAX_SEGMENTS`), as the engine batches.
const MAX_SEGMENTS: usize = 64;
/// One read from a stream.
const RECV_BUF_LEN: usize = 64 * 1024;
/// Bytes handed to `stream_send` per call.
const SEND_CHUNK: usize = 64 * 1024;
/// Connection IDs the baseline uses.
pub(super) const CID_LEN: usize = 16;

/// A transfer the client should make.
struct Job {
    bytes: u64,
    /// Gets the instant the first byte was handed to quiche.
    started: oneshot::Sender<Instant>,
}

/// What the server saw of one stream.
struct Received {
    bytes: u64,
    finished_at: Instant,
}

/// A running baseline pair.
pub(crate) struct RawPair {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    received: mpsc::UnboundedReceiver<Received>,
    threads: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl RawPair {
    /// Starts the server and the client on their own threads and waits for the handshake.
    pub(crate) async fn start(quic: &QuicConfig) -> anyhow::Result<Self> {
        let sides = Sides::new(quic, quiche_config)?;
        let (received_tx, received) = mpsc::unbounded_channel();
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        let (ready_tx, ready) = oneshot::channel();

        let server = spawn_side("raw-server", move || async move {
            let (udp, mut config) = sides.server.open()?;
            server_loop(&udp, &mut config, &received_tx).await
        })?;
        let client = spawn_side("raw-client", move || async move {
            let (udp, mut config) = sides.client.open()?;
            let conn = connect(&udp, sides.server_addr, &mut config)?;
            Box::pin(client_loop(conn, &udp, jobs, ready_tx)).await
        })?;
        let pair = Self {
            jobs: Some(jobs_tx),
            received,
            threads: vec![server, client],
        };
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), ready).await {
            return Ok(pair);
        }
        // A side that failed has ended with its error; one that hangs is left to end with
        // the process.
        for thread in pair.threads.into_iter().filter(JoinHandle::is_finished) {
            if let Ok(Err(e)) = thread.join() {
                return Err(e.context("raw quiche baseline did not start"));
            }
        }
        bail!("raw quiche baseline: no handshake within 5 s")
    }

    /// Sends `bytes` on a new stream; returns the time from the first byte handed to
    /// quiche until the server read the FIN.
    pub(crate) async fn transfer(&mut self, bytes: u64) -> anyhow::Result<Duration> {
        let (started_tx, started) = oneshot::channel();
        self.jobs
            .as_ref()
            .context("stopped")?
            .send(Job {
                bytes,
                started: started_tx,
            })
            .ok()
            .context("the raw client stopped")?;
        let started = started.await.context("the raw client stopped")?;
        let received = self
            .received
            .recv()
            .await
            .context("the raw server stopped")?;
        ensure!(
            received.bytes == bytes,
            "raw quiche: {} of {bytes} bytes arrived",
            received.bytes
        );
        Ok(received.finished_at.saturating_duration_since(started))
    }

    /// Closes the connection and joins both threads.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.jobs = None;
        tokio::task::spawn_blocking(move || self.join_all()).await?
    }

    fn join_all(&mut self) -> anyhow::Result<()> {
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(result) => result?,
                Err(_) => bail!("a raw quiche thread panicked"),
            }
        }
        Ok(())
    }
}

/// A server side and a client side on loopback, before their threads start: the sockets
/// (bound here, so that the server's address is known) and each side's quiche settings.
pub(super) struct Sides {
    pub(super) server: Side,
    pub(super) client: Side,
    pub(super) server_addr: SocketAddr,
}

/// One side's socket and settings, to move into its thread.
pub(super) struct Side {
    socket: std::net::UdpSocket,
    config: quiche::Config,
}

/// How a baseline turns veil's QUIC settings and a TLS context into quiche's.
pub(super) type Settings = fn(&QuicConfig, SslContextBuilder) -> anyhow::Result<quiche::Config>;

impl Sides {
    /// Both sides, with quiche settings made by `settings` (a fresh certificate for the
    /// server; the client verifies nothing).
    pub(super) fn new(quic: &QuicConfig, settings: Settings) -> anyhow::Result<Self> {
        let socket = bind()?;
        Ok(Self {
            server_addr: socket.local_addr()?,
            server: Side {
                socket,
                config: settings(quic, server_tls()?)?,
            },
            client: Side {
                socket: bind()?,
                config: settings(quic, client_tls()?)?,
            },
        })
    }
}

impl Side {
    /// Another client side: a socket of its own, the same settings as [`Sides::new`]'s.
    pub(super) fn client(quic: &QuicConfig, settings: Settings) -> anyhow::Result<Self> {
        Ok(Self {
            socket: bind()?,
            config: settings(quic, client_tls()?)?,
        })
    }

    /// A server side: a socket of its own, a fresh certificate, the settings of
    /// [`Sides::new`].
    pub(super) fn server(quic: &QuicConfig, settings: Settings) -> anyhow::Result<Self> {
        Ok(Self {
            socket: bind()?,
            config: settings(quic, server_tls()?)?,
        })
    }

    /// The address its socket is bound to.
    pub(super) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The socket on the calling thread's runtime, and the settings.
    pub(super) fn open(self) -> anyhow::Result<(UdpIo, quiche::Config)> {
        Ok((UdpIo::from_std(self.socket)?, self.config))
    }
}

/// Runs `side` on a current-thread runtime in a thread of its own.
pub(super) fn spawn_side<F, Fut>(
    name: &str,
    side: F,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    Ok(std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(side())
        })?)
}

/// A loopback socket, bound here so that its address is known before its thread starts.
pub(super) fn bind() -> anyhow::Result<std::net::UdpSocket> {
    Ok(std::net::UdpSocket::bind(SocketAddr::from((
        [127, 0, 0, 1],
        0,
    )))?)
}

/// A client connection from `udp` to `server`.
pub(super) fn connect(
    udp: &UdpIo,
    server: SocketAddr,
    config: &mut quiche::Config,
) -> anyhow::Result<quiche::Connection> {
    let scid = random_cid()?;
    Ok(quiche::connect(
        Some("localhost"),
        &quiche::ConnectionId::from_ref(&scid),
        udp.local_addr(),
        server,
        config,
    )?)
}

/// The client: one connection; each job is a new stream written until its FIN.
async fn client_loop(
    mut conn: quiche::Connection,
    udp: &UdpIo,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ready: oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut ready = Some(ready);
    let mut out = vec![0; MAX_GSO_PAYLOAD];
    let mut bufs = RecvBufs::new();
    // Real bytes, not the shared zero page a zeroed allocation would read from.
    let mut payload = vec![0; SEND_CHUNK];
    crate::body::fill_pattern(0, &mut payload);
    let mut next_stream = 0;
    let mut active: Option<(u64, u64)> = None;
    loop {
        if let Some((stream, remaining)) = &mut active {
            if push(&mut conn, *stream, remaining, &payload)? {
                active = None;
            }
        }
        send_all(&mut conn, udp, &mut out).await?;
        if conn.is_closed() {
            return Ok(());
        }
        if conn.is_established() {
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        }
        let idle = active.is_none() && ready.is_none();
        tokio::select! {
            count = udp.recv(&mut bufs) => feed(&mut conn, &mut bufs, count?, udp.local_addr()),
            () = sleep_until(conn.timeout_instant()) => conn.on_timeout(),
            job = jobs.recv(), if idle => match job {
                Some(job) => {
                    let _ = job.started.send(Instant::now());
                    active = Some((next_stream, job.bytes));
                    next_stream += 4;
                }
                None => {
                    let _ = conn.close(true, 0, b"done");
                }
            },
        }
    }
}

/// Hands as much of the stream's remaining bytes to quiche as it takes; true when the FIN
/// went with the last of them.
fn push(
    conn: &mut quiche::Connection,
    stream: u64,
    remaining: &mut u64,
    payload: &[u8],
) -> anyhow::Result<bool> {
    loop {
        let len = usize::try_from(*remaining).map_or(payload.len(), |r| r.min(payload.len()));
        let last = u64::try_from(len).is_ok_and(|len| len == *remaining);
        match conn.stream_send(stream, payload.get(..len).unwrap_or_default(), last) {
            Ok(taken) => {
                *remaining -= u64::try_from(taken)?;
                if taken == len && last {
                    return Ok(true);
                }
                if taken < len {
                    return Ok(false);
                }
            }
            Err(quiche::Error::Done) => return Ok(false),
            Err(e) => bail!("raw quiche stream_send: {e}"),
        }
    }
}

/// A server's next input: datagrams (the first ones accept the one connection) or the
/// connection's timer.
pub(super) async fn server_input(
    udp: &UdpIo,
    config: &mut quiche::Config,
    bufs: &mut RecvBufs,
    conn: &mut Option<quiche::Connection>,
) -> anyhow::Result<()> {
    let timeout = conn.as_ref().and_then(quiche::Connection::timeout_instant);
    tokio::select! {
        count = udp.recv(bufs) => {
            let count = count?;
            if conn.is_none() {
                *conn = accept(udp, config, bufs, count)?;
            }
            if let Some(conn) = conn.as_mut() {
                feed(conn, bufs, count, udp.local_addr());
            }
        }
        () = sleep_until(timeout) => {
            if let Some(conn) = conn.as_mut() {
                conn.on_timeout();
            }
        }
    }
    Ok(())
}

/// The server: accepts one connection and reads every stream to its FIN.
async fn server_loop(
    udp: &UdpIo,
    config: &mut quiche::Config,
    received: &mpsc::UnboundedSender<Received>,
) -> anyhow::Result<()> {
    let mut sink = Sink {
        received,
        counts: HashMap::new(),
    };
    serve(udp, config, &mut sink).await
}

/// Counts each stream's bytes and reports its end.
struct Sink<'a> {
    received: &'a mpsc::UnboundedSender<Received>,
    counts: HashMap<u64, u64>,
}

impl Service for Sink<'_> {
    fn read(
        &mut self,
        conn: &mut quiche::Connection,
        stream: u64,
        bytes: &[u8],
        fin: bool,
    ) -> anyhow::Result<()> {
        let total = self.counts.entry(stream).or_default();
        *total += u64::try_from(bytes.len())?;
        if fin {
            // Finish our side too, so that the stream is freed and its credit returns to
            // the client, as a tunnel's would.
            let _ = conn.stream_send(stream, &[], true);
            let _ = self.received.send(Received {
                bytes: *total,
                finished_at: Instant::now(),
            });
        }
        Ok(())
    }
}

/// What a one-connection server does with its streams.
pub(super) trait Service {
    /// Every piece read from a stream, and whether the FIN came with it.
    fn read(
        &mut self,
        conn: &mut quiche::Connection,
        stream: u64,
        bytes: &[u8],
        fin: bool,
    ) -> anyhow::Result<()>;

    /// Once per round of input, after the reads and before sending.
    fn then(&mut self, _conn: &mut quiche::Connection) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Accepts one connection and hands its streams' bytes to `service` until it closes.
pub(super) async fn serve(
    udp: &UdpIo,
    config: &mut quiche::Config,
    service: &mut impl Service,
) -> anyhow::Result<()> {
    let mut out = vec![0; MAX_GSO_PAYLOAD];
    let mut bufs = RecvBufs::new();
    let mut read = vec![0; RECV_BUF_LEN];
    let mut conn: Option<quiche::Connection> = None;
    loop {
        server_input(udp, config, &mut bufs, &mut conn).await?;
        let Some(conn) = conn.as_mut() else { continue };
        for stream in conn.readable() {
            loop {
                match conn.stream_recv(stream, &mut read) {
                    Ok((len, fin)) => {
                        let bytes = read.get(..len).unwrap_or_default();
                        service.read(conn, stream, bytes, fin)?;
                    }
                    Err(quiche::Error::Done) => break,
                    Err(e) => bail!("raw quiche stream_recv: {e}"),
                }
            }
        }
        service.then(conn)?;
        send_all(conn, udp, &mut out).await?;
        if conn.is_closed() {
            return Ok(());
        }
    }
}

/// A connection for the first Initial received.
pub(super) fn accept(
    udp: &UdpIo,
    config: &mut quiche::Config,
    bufs: &mut RecvBufs,
    count: usize,
) -> anyhow::Result<Option<quiche::Connection>> {
    if count == 0 {
        return Ok(None);
    }
    let Some((from, _, mut datagrams)) = bufs.datagrams(0) else {
        return Ok(None);
    };
    let Some(first) = datagrams.next() else {
        return Ok(None);
    };
    // quiche decrypts in place later: parse a copy.
    let mut first = first.to_vec();
    let header = quiche::Header::from_slice(&mut first, quiche::MAX_CONN_ID_LEN)?;
    if header.ty != quiche::Type::Initial {
        return Ok(None);
    }
    let scid = random_cid()?;
    let conn = quiche::accept(
        &quiche::ConnectionId::from_ref(&scid),
        None,
        udp.local_addr(),
        from,
        config,
    )?;
    Ok(Some(conn))
}

/// Hands every received datagram to the connection.
pub(super) fn feed(
    conn: &mut quiche::Connection,
    bufs: &mut RecvBufs,
    count: usize,
    local: SocketAddr,
) {
    for index in 0..count {
        let Some((from, _, datagrams)) = bufs.datagrams(index) else {
            continue;
        };
        let info = quiche::RecvInfo { from, to: local };
        for datagram in datagrams {
            if let Err(e) = conn.recv(datagram, info) {
                tracing::debug!(error = %e, "raw quiche: datagram not accepted");
            }
        }
    }
}

/// Sends everything quiche has, in GSO batches built the way the engine builds them:
/// consecutive full-size packets, the last one possibly shorter; a short first packet
/// goes alone.
pub(super) async fn send_all(
    conn: &mut quiche::Connection,
    udp: &UdpIo,
    out: &mut [u8],
) -> anyhow::Result<()> {
    let full_size = conn.max_send_udp_payload_size();
    let max_segments = udp.max_gso_segments().clamp(1, MAX_SEGMENTS);
    loop {
        let mut batch: Option<(SocketAddr, usize)> = None;
        let mut len = 0;
        let mut segments = 0;
        loop {
            let window = match batch {
                None => &mut out[..],
                Some((_, segment)) => {
                    if segments >= max_segments || segment < full_size {
                        break;
                    }
                    match out.get_mut(len..len + segment) {
                        Some(window) => window,
                        None => break,
                    }
                }
            };
            match conn.send(window) {
                Ok((written, info)) => {
                    let segment = batch.map_or(written, |(_, segment)| segment);
                    batch.get_or_insert((info.to, written));
                    len += written;
                    segments += 1;
                    if written < segment {
                        break;
                    }
                }
                Err(quiche::Error::Done) => break,
                Err(e) => bail!("raw quiche send: {e}"),
            }
        }
        let Some((to, segment)) = batch else {
            return Ok(());
        };
        let segment_size = (segments > 1).then_some(segment);
        udp.send(to, out.get(..len).unwrap_or_default(), segment_size)
            .await?;
    }
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// quiche settings from `quic`, as veil-engine builds them (without HTTP/3, which the
/// baseline does not speak; ALPN stays `h3` so the handshake is the same size).
pub(super) fn quiche_config(
    quic: &QuicConfig,
    tls: SslContextBuilder,
) -> anyhow::Result<quiche::Config> {
    let mut config = quiche::Config::with_boring_ssl_ctx_builder(quiche::PROTOCOL_VERSION, tls)?;
    config.set_application_protos(quiche::h3::APPLICATION_PROTOCOL)?;
    config.set_max_idle_timeout(u64::try_from(quic.max_idle_timeout.as_millis())?);
    config.set_max_recv_udp_payload_size(quic.max_recv_udp_payload_size);
    config.set_max_send_udp_payload_size(quic.max_send_udp_payload_size);
    config.set_initial_max_data(quic.initial_max_data);
    config.set_initial_max_stream_data_bidi_local(quic.initial_max_stream_data_bidi_local);
    config.set_initial_max_stream_data_bidi_remote(quic.initial_max_stream_data_bidi_remote);
    config.set_initial_max_streams_bidi(quic.initial_max_streams_bidi);
    config.set_max_connection_window(quic.max_connection_window);
    config.set_max_stream_window(quic.max_stream_window);
    config.set_cc_algorithm(match quic.congestion_control {
        CongestionControl::Bbr2 => quiche::CongestionControlAlgorithm::Bbr2Gcongestion,
        CongestionControl::Reno => quiche::CongestionControlAlgorithm::Reno,
        CongestionControl::Cubic => quiche::CongestionControlAlgorithm::CUBIC,
    });
    config.set_initial_congestion_window_packets(quic.initial_congestion_window_packets);
    config.enable_pacing(quic.pacing);
    config.discover_pmtu(quic.pmtu_discovery);
    if quic.enable_datagrams {
        config.enable_dgram(true, quic.datagram_queue_len, quic.datagram_queue_len);
    }
    Ok(config)
}

/// A self-signed P-256 certificate for `localhost`; the client does not verify it (the
/// `veil` client checks its pin once per handshake, which is not timed).
pub(super) fn server_tls() -> anyhow::Result<SslContextBuilder> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "localhost")?;
    let name = name.build();
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    let serial = BigNum::from_u32(1)?.to_asn1_integer()?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(1)?);
    cert.set_not_before(&not_before)?;
    cert.set_not_after(&not_after)?;
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .build(&cert.x509v3_context(None, None))?;
    cert.append_extension(&san)?;
    cert.sign(&key, MessageDigest::sha256())?;
    let mut tls = SslContextBuilder::new(SslMethod::tls())?;
    tls.set_certificate(&cert.build())?;
    tls.set_private_key(&key)?;
    Ok(tls)
}

pub(super) fn client_tls() -> anyhow::Result<SslContextBuilder> {
    let mut tls = SslContextBuilder::new(SslMethod::tls())?;
    tls.set_verify(SslVerifyMode::NONE);
    Ok(tls)
}

pub(super) fn random_cid() -> anyhow::Result<[u8; CID_LEN]> {
    let mut cid = [0; CID_LEN];
    boring::rand::rand_bytes(&mut cid)?;
    Ok(cid)
}

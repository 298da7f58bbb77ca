//! `--parts handshakes`: new connections per second at the edge, per core (issue 16's
//! scale aim).
//!
//! Each connection does what a new client costs the edge: the QUIC handshake, one HTTP/3
//! CONNECT to the bench's echo target (the edge dials it), the 200, and a close. The load
//! comes from raw quiche clients in this process, [`IN_FLIGHT`] threads each making
//! connections one after the other. The figure divides the connections completed by the
//! CPU seconds the edge process used over the same time (from `/proc`): what one core of
//! the edge handles per second, whatever share of the machine the load generator took.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use quiche::h3;

use super::procs::cpu_time;

/// Connections under way at once: one per load thread.
const IN_FLIGHT: usize = 4;
/// Longest one connection may take before it counts as failed.
const CONNECTION_BOUND: Duration = Duration::from_secs(5);
/// The CID length veil's edge issues and expects (any up to 20 works for an Initial).
const CID_LEN: usize = 16;

/// What the load threads did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Handshakes {
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) elapsed: Duration,
    pub(crate) edge_cpu: Duration,
}

// Counts far below 2^52: exact as f64.
#[allow(clippy::cast_precision_loss)]
impl Handshakes {
    /// Connections per second of one edge core.
    fn per_edge_core_second(&self) -> f64 {
        let cpu = self.edge_cpu.as_secs_f64();
        if cpu > 0.0 {
            self.completed as f64 / cpu
        } else {
            0.0
        }
    }

    pub(crate) fn table(&self) -> String {
        let wall = self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "\n| new connections: handshake + CONNECT + 200 + close, {IN_FLIGHT} at a time | \
             value |\n|---|---|\n\
             | completed (failed) in {:.1} s | {} ({}) |\n\
             | per second, wall clock (the load generator shares the machine) | {wall:.0} |\n\
             | edge CPU seconds | {:.2} |\n\
             | **per second of one edge core** | **{:.0}** |\n",
            self.elapsed.as_secs_f64(),
            self.completed,
            self.failed,
            self.edge_cpu.as_secs_f64(),
            self.per_edge_core_second(),
        )
    }
}

/// Makes connections to `edge` for `window`, each with one CONNECT to `target`, and reads
/// the CPU time of `edge_pid` around them.
pub(crate) async fn run(
    edge: SocketAddr,
    edge_pid: u32,
    target: SocketAddr,
    window: Duration,
) -> anyhow::Result<Handshakes> {
    tokio::task::spawn_blocking(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_before = cpu_time(Some(edge_pid))?;
        let started = Instant::now();
        let threads: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || load(edge, target, &stop))
            })
            .collect();
        std::thread::sleep(window);
        stop.store(true, Ordering::Relaxed);
        let mut total = Handshakes::default();
        for thread in threads {
            let (completed, failed) = thread
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
            total.completed += completed;
            total.failed += failed;
        }
        total.elapsed = started.elapsed();
        total.edge_cpu = cpu_time(Some(edge_pid))?.saturating_sub(cpu_before);
        Ok(total)
    })
    .await?
}

/// One load thread: connections one after the other until `stop`; (completed, failed).
fn load(edge: SocketAddr, target: SocketAddr, stop: &AtomicBool) -> anyhow::Result<(u64, u64)> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let local = socket.local_addr()?;
    let mut config = client_config()?;
    let h3_config = h3::Config::new()?;
    let (mut completed, mut failed) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        match one(&socket, local, edge, target, &mut config, &h3_config) {
            Ok(()) => completed += 1,
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("veil bench: a handshake failed: {e:#}");
                }
            }
        }
    }
    Ok((completed, failed))
}

/// A raw quiche client's configuration: no certificate check (the bench's edge is
/// self-signed), no system CA bundle loaded.
fn client_config() -> anyhow::Result<quiche::Config> {
    let tls = boring::ssl::SslContextBuilder::new(boring::ssl::SslMethod::tls())?;
    let mut config = quiche::Config::with_boring_ssl_ctx_builder(quiche::PROTOCOL_VERSION, tls)?;
    config.set_application_protos(h3::APPLICATION_PROTOCOL)?;
    config.verify_peer(false);
    config.set_max_idle_timeout(5_000);
    config.set_initial_max_data(1 << 20);
    config.set_initial_max_stream_data_bidi_local(1 << 18);
    config.set_initial_max_stream_data_bidi_remote(1 << 18);
    config.set_initial_max_stream_data_uni(1 << 18);
    config.set_initial_max_streams_bidi(16);
    config.set_initial_max_streams_uni(16);
    config.set_max_recv_udp_payload_size(65_527);
    Ok(config)
}

/// One connection: handshake, CONNECT, the 200, close.
fn one(
    socket: &UdpSocket,
    local: SocketAddr,
    edge: SocketAddr,
    target: SocketAddr,
    config: &mut quiche::Config,
    h3_config: &h3::Config,
) -> anyhow::Result<()> {
    let mut scid = [0u8; CID_LEN];
    boring::rand::rand_bytes(&mut scid)?;
    let scid = quiche::ConnectionId::from_ref(&scid);
    let mut conn = quiche::connect(Some("localhost"), &scid, local, edge, config)?;
    let mut h3: Option<h3::Connection> = None;
    let mut request: Option<u64> = None;
    let mut buf = vec![0u8; 65_535];
    let deadline = Instant::now() + CONNECTION_BOUND;
    loop {
        while let Ok((len, info)) = conn.send(&mut buf) {
            socket.send_to(&buf[..len], info.to)?;
        }
        if conn.is_closed() {
            return if request.is_some() && conn.local_error().is_some() {
                Ok(())
            } else {
                Err(anyhow::anyhow!("closed: {:?}", conn.peer_error()))
            };
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no answer in {CONNECTION_BOUND:?}"
        );
        if conn.is_established() && h3.is_none() {
            let mut http = h3::Connection::with_transport(&mut conn, h3_config)?;
            let headers = [
                h3::Header::new(b":method", b"CONNECT"),
                h3::Header::new(b":authority", target.to_string().as_bytes()),
            ];
            request = Some(http.send_request(&mut conn, &headers, false)?);
            h3 = Some(http);
            continue;
        }
        if let Some(http) = h3.as_mut() {
            loop {
                match http.poll(&mut conn) {
                    Ok((stream, h3::Event::Headers { list, .. })) if Some(stream) == request => {
                        let status = list
                            .iter()
                            .find(|h| h3::NameValue::name(*h) == b":status")
                            .map(|h| h3::NameValue::value(h).to_vec());
                        anyhow::ensure!(
                            status.as_deref() == Some(b"200"),
                            "CONNECT answered {:?}",
                            status.map(|s| String::from_utf8_lossy(&s).into_owned())
                        );
                        conn.close(true, 0x100, b"")?;
                        break;
                    }
                    Ok(_) => {}
                    Err(h3::Error::Done) => break,
                    Err(e) => return Err(e).context("HTTP/3"),
                }
            }
            if conn.is_closed() || conn.is_draining() || conn.local_error().is_some() {
                // Our close went out in the send above or goes in the next.
                while let Ok((len, info)) = conn.send(&mut buf) {
                    socket.send_to(&buf[..len], info.to)?;
                }
                return Ok(());
            }
        }
        let wait = conn
            .timeout()
            .unwrap_or(Duration::from_millis(50))
            .clamp(Duration::from_micros(100), Duration::from_millis(50));
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                // A datagram of the previous connection (late, from its draining edge)
                // carries another CID: quiche drops it.
                let info = quiche::RecvInfo { from, to: local };
                let _ = conn.recv(&mut buf[..len], info);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                conn.on_timeout();
            }
            Err(e) => return Err(e.into()),
        }
    }
}

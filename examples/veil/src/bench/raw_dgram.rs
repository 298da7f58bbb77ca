//! The raw QUIC DATAGRAM baseline of `veil bench udp`: a quiche client and a quiche server
//! on loopback, the client sending the load as QUIC DATAGRAM frames (RFC 9221), the server
//! sending each one straight back. No HTTP/3, no HTTP datagram prefix, no proxying, no UDP
//! legs to an application or a target.
//!
//! It shares the stream baseline's fairness ([`super::raw`]): the quiche configuration is
//! built from the same [`QuicConfig`] as the `veil` processes' (including their DATAGRAM
//! queue bound), the same TLS library, veil-tokio's UDP socket with GSO and GRO, and one
//! thread per side. The load is the same [`Generator`] the UDP paths use, running inside
//! the client's loop: a DATAGRAM the client's queue refuses counts as lost, as a datagram
//! the veil client's engine drops would.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::{mpsc, oneshot};
use veil_engine::QuicConfig;
use veil_tokio::udp::{MAX_GSO_PAYLOAD, RecvBufs, UdpIo};

use super::load::{Generator, Step, StepResult};
use super::raw::{
    Sides, connect, feed, quiche_config, send_all, server_input, sleep_until, spawn_side,
};

/// Largest DATAGRAM payload either side reads.
const DGRAM_BUF_LEN: usize = 65_536;

/// A step to run and where its result goes.
type Job = (Step, oneshot::Sender<StepResult>);

/// A running baseline pair.
pub(crate) struct RawDgramPair {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    threads: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl RawDgramPair {
    /// Starts the server and the client on their own threads and waits for the handshake.
    pub(crate) async fn start(quic: &QuicConfig) -> anyhow::Result<Self> {
        let sides = Sides::new(quic, dgram_config)?;
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        let (ready_tx, ready) = oneshot::channel();
        let server = spawn_side("raw-dgram-server", move || async move {
            let (udp, mut config) = sides.server.open()?;
            server_loop(&udp, &mut config).await
        })?;
        let client = spawn_side("raw-dgram-client", move || async move {
            let (udp, mut config) = sides.client.open()?;
            let conn = connect(&udp, sides.server_addr, &mut config)?;
            Box::pin(client_loop(conn, &udp, jobs, ready_tx)).await
        })?;
        let mut pair = Self {
            jobs: Some(jobs_tx),
            threads: vec![server, client],
        };
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), ready).await {
            return Ok(pair);
        }
        pair.jobs = None;
        for thread in pair.threads.drain(..).filter(JoinHandle::is_finished) {
            if let Ok(Err(e)) = thread.join() {
                return Err(e.context("raw QUIC DATAGRAM baseline did not start"));
            }
        }
        bail!("raw QUIC DATAGRAM baseline: no handshake within 5 s")
    }

    /// Runs one step and returns what it measured.
    pub(crate) async fn run(&mut self, step: Step) -> anyhow::Result<StepResult> {
        let (done, result) = oneshot::channel();
        self.jobs
            .as_ref()
            .context("stopped")?
            .send((step, done))
            .ok()
            .context("the raw DATAGRAM client stopped")?;
        result.await.context("the raw DATAGRAM client stopped")
    }

    /// Closes the connection and joins both threads.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.jobs = None;
        let threads = std::mem::take(&mut self.threads);
        tokio::task::spawn_blocking(move || {
            for thread in threads {
                match thread.join() {
                    Ok(result) => result?,
                    Err(_) => bail!("a raw DATAGRAM thread panicked"),
                }
            }
            Ok(())
        })
        .await?
    }
}

/// The stream baseline's configuration, with DATAGRAM frames on whatever the file says
/// (the baseline measures nothing else).
fn dgram_config(
    quic: &QuicConfig,
    tls: boring::ssl::SslContextBuilder,
) -> anyhow::Result<quiche::Config> {
    let mut config = quiche_config(quic, tls)?;
    config.enable_dgram(true, quic.datagram_queue_len, quic.datagram_queue_len);
    Ok(config)
}

/// The client: runs each job's generator, one DATAGRAM frame per packet.
async fn client_loop(
    mut conn: quiche::Connection,
    udp: &UdpIo,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ready: oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut ready = Some(ready);
    let mut out = vec![0; MAX_GSO_PAYLOAD];
    let mut bufs = RecvBufs::new();
    let mut packet = vec![0; DGRAM_BUF_LEN];
    let mut current: Option<(Generator, oneshot::Sender<StepResult>)> = None;
    loop {
        let now = Instant::now();
        if let Some((generator, _)) = current.as_mut() {
            for _ in 0..generator.due(now) {
                let len = generator.fill(now, &mut packet);
                match conn.dgram_send(packet.get(..len).unwrap_or_default()) {
                    Ok(()) => {}
                    Err(quiche::Error::Done) => generator.refused(),
                    Err(e) => bail!("raw quiche dgram_send: {e}"),
                }
            }
        }
        send_all(&mut conn, udp, &mut out).await?;
        if conn.is_closed() {
            return Ok(());
        }
        if conn.is_established()
            && let Some(ready) = ready.take()
        {
            let _ = ready.send(());
        }
        if current.as_ref().is_some_and(|(g, _)| g.done(now))
            && let Some((generator, done)) = current.take()
        {
            let _ = done.send(generator.finish());
        }
        let wake = current.as_ref().map(|(g, _)| g.next_wake(now));
        let idle = current.is_none() && ready.is_none();
        tokio::select! {
            biased;
            count = udp.recv(&mut bufs) => {
                feed(&mut conn, &mut bufs, count?, udp.local_addr());
                let now = Instant::now();
                while let Ok(len) = conn.dgram_recv(&mut packet) {
                    if let Some((generator, _)) = current.as_mut() {
                        generator.on_echo(now, packet.get(..len).unwrap_or_default());
                    }
                }
            }
            () = sleep_until(conn.timeout_instant()) => conn.on_timeout(),
            () = sleep_until(wake) => {}
            job = jobs.recv(), if idle => match job {
                Some((step, done)) => current = Some((Generator::new(step, Instant::now()), done)),
                None => {
                    let _ = conn.close(true, 0, b"done");
                }
            },
        }
    }
}

/// The server: accepts one connection and sends every DATAGRAM back as it came.
async fn server_loop(udp: &UdpIo, config: &mut quiche::Config) -> anyhow::Result<()> {
    let mut out = vec![0; MAX_GSO_PAYLOAD];
    let mut bufs = RecvBufs::new();
    let mut packet = vec![0; DGRAM_BUF_LEN];
    let mut conn: Option<quiche::Connection> = None;
    loop {
        server_input(udp, config, &mut bufs, &mut conn).await?;
        let Some(conn) = conn.as_mut() else { continue };
        while let Ok(len) = conn.dgram_recv(&mut packet) {
            // A full send queue drops the echo: the client counts it lost.
            match conn.dgram_send(packet.get(..len).unwrap_or_default()) {
                Ok(()) | Err(quiche::Error::Done) => {}
                Err(e) => bail!("raw quiche dgram_send: {e}"),
            }
        }
        send_all(conn, udp, &mut out).await?;
        if conn.is_closed() {
            return Ok(());
        }
    }
}

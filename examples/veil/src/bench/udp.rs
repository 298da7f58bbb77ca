//! The UDP side of `veil bench udp`, in the bench process: a UDP echo server and a load
//! generator, each on a thread of its own with a current-thread runtime, both on
//! veil-tokio's UDP socket (GSO sends, GRO receives), as the `veil` processes use it.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use veil_tokio::udp::{MAX_GSO_PAYLOAD, RecvBufs, UdpIo};

use super::load::{Generator, Step, StepResult};
use super::raw::{bind, sleep_until, spawn_side};
use super::step_thread::{Job, StepThread};

/// The UDP echo server: every datagram goes back to its sender, unchanged.
pub(crate) struct EchoServer {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl EchoServer {
    /// Listens on a loopback port.
    pub(crate) fn start() -> anyhow::Result<Self> {
        let socket = bind()?;
        let addr = socket.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let thread = spawn_side("udp-echo", move || async move {
            let udp = UdpIo::from_std(socket)?;
            echo_loop(&udp, stopped).await
        })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn echo_loop(udp: &UdpIo, mut stop: oneshot::Receiver<()>) -> anyhow::Result<()> {
    let mut bufs = RecvBufs::new();
    let mut out = vec![0; MAX_GSO_PAYLOAD];
    loop {
        let count = tokio::select! {
            count = udp.recv(&mut bufs) => count?,
            _ = &mut stop => return Ok(()),
        };
        for index in 0..count {
            let Some((from, _, datagrams)) = bufs.datagrams(index) else {
                continue;
            };
            // One GRO train (same sender, same size but the last) goes back as one GSO
            // send of the same segments.
            let (mut len, mut segments, mut segment) = (0, 0, 0);
            for datagram in datagrams {
                let Some(window) = out.get_mut(len..len + datagram.len()) else {
                    break;
                };
                window.copy_from_slice(datagram);
                segment = segment.max(datagram.len());
                len += datagram.len();
                segments += 1;
            }
            let segment_size = (segments > 1).then_some(segment);
            udp.send(from, out.get(..len).unwrap_or_default(), segment_size)
                .await?;
        }
    }
}

/// A load generator on one UDP socket, kept for every step of a path (so that the veil
/// client sees one flow, and one tunnel, for the whole run).
pub(crate) struct UdpLoad(StepThread);

impl UdpLoad {
    /// A generator sending to `target`.
    pub(crate) fn start(name: &str, target: SocketAddr) -> anyhow::Result<Self> {
        let socket = bind()?;
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        let thread = spawn_side(name, move || async move {
            let udp = UdpIo::from_std(socket)?;
            load_loop(&udp, target, jobs).await
        })?;
        Ok(Self(StepThread::new("UDP load generator", jobs_tx, thread)))
    }

    /// Runs one step and returns what it measured.
    pub(crate) async fn run(&mut self, step: Step) -> anyhow::Result<StepResult> {
        self.0.run(step).await
    }
}

async fn load_loop(
    udp: &UdpIo,
    target: SocketAddr,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) -> anyhow::Result<()> {
    let mut bufs = RecvBufs::new();
    let mut out = vec![0; MAX_GSO_PAYLOAD];
    while let Some((step, done)) = jobs.recv().await {
        let mut generator = Generator::new(step, Instant::now());
        let payload = generator.payload_len();
        let max_segments = (MAX_GSO_PAYLOAD / payload)
            .min(udp.max_gso_segments())
            .max(1);
        loop {
            let now = Instant::now();
            let due = usize::try_from(generator.due(now)).unwrap_or(usize::MAX);
            if due > 0 {
                // One GSO batch of same-size packets per pass; the rest after a receive.
                let segments = due.min(max_segments);
                let mut len = 0;
                for _ in 0..segments {
                    let window = out.get_mut(len..).context("send buffer")?;
                    len += generator.fill(now, window);
                }
                let segment_size = (segments > 1).then_some(payload);
                udp.send(target, out.get(..len).unwrap_or_default(), segment_size)
                    .await?;
            }
            if generator.done(now) {
                break;
            }
            let wake = if due > max_segments {
                now
            } else {
                generator.next_wake(now)
            };
            tokio::select! {
                biased;
                count = udp.recv(&mut bufs) => {
                    let count = count?;
                    let now = Instant::now();
                    for index in 0..count {
                        if let Some((_, _, datagrams)) = bufs.datagrams(index) {
                            for datagram in datagrams {
                                generator.on_echo(now, datagram);
                            }
                        }
                    }
                }
                () = sleep_until(Some(wake)) => {}
            }
        }
        let _ = done.send(generator.finish());
    }
    Ok(())
}

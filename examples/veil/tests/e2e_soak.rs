//! Soak: churn through one edge for a while (connect, transfer, abort, reconnect), and
//! check that what the edge and a long-lived client hold (resident memory, open file
//! descriptors) stays flat after the warm-up: a leak of tunnels, sockets or buffers shows
//! as growth from checkpoint to checkpoint.
//!
//! Workers, each in a loop: curl downloads 1 MiB through `veil client` (SOCKS5) from nginx
//! and checks its size; a raw SOCKS5 tunnel to a TCP echo writes, reads half of the echo
//! back and resets (an application that gives up mid-transfer); a second `veil client` is
//! stopped and started again now and then (a QUIC connection that ends, and a new one).
//! At each checkpoint the workers pause, the edge and client settle, and their `VmRSS` and
//! `/proc/PID/fd` counts are sampled.
//!
//! The short form (CI) churns 36 s with a checkpoint every 12 s; the long form
//! (`VEIL_RELIABILITY_LONG=1`, `scripts/reliability long`) 30 minutes with one every 5.
//! Figures: docs/RELIABILITY.md.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::{Client, Echo, Edge, Origin, TOKEN, TempDir, require_tool};

/// Bytes of each download.
const FILE: usize = 1 << 20;
/// Concurrent workers.
const WORKERS: usize = 4;

/// What a process holds at a checkpoint.
#[derive(Debug, Clone, Copy)]
struct Holding {
    rss_kib: u64,
    fds: usize,
}

/// What `pid` holds steadily: the least of four readings half a second apart, so that a
/// descriptor of a connection that is just closing (the edge's dial of a tunnel that ended
/// as the workers paused) does not count as held.
fn holding_steadily(pid: u32) -> anyhow::Result<Holding> {
    let mut least = holding(pid)?;
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(500));
        let now = holding(pid)?;
        least.fds = least.fds.min(now.fds);
        least.rss_kib = least.rss_kib.min(now.rss_kib);
    }
    Ok(least)
}

fn holding(pid: u32) -> anyhow::Result<Holding> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        // A process that has exited (a zombie) has no resident memory to report.
        .with_context(|| format!("no VmRSS for pid {pid}: has it exited?\n{status}"))?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    Ok(Holding { rss_kib, fds })
}

/// SOCKS5 CONNECT to `target` through `socks` (no authentication).
fn socks5(socks: SocketAddr, target: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(socks)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(&[5, 1, 0])?;
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply)?;
    ensure!(reply == [5, 0], "SOCKS5 method reply {reply:?}");
    let SocketAddr::V4(v4) = target else {
        anyhow::bail!("an IPv4 target");
    };
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&v4.ip().octets());
    request.extend_from_slice(&v4.port().to_be_bytes());
    stream.write_all(&request)?;
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply)?;
    ensure!(reply[1] == 0, "SOCKS5 reply {}", reply[1]);
    Ok(stream)
}

/// Writes 64 KiB, reads half of the echo, and closes with the rest unread: Linux answers
/// a close with unread bytes with RST, as for an application killed mid-transfer.
fn abort_midway(socks: SocketAddr, echo: SocketAddr) -> anyhow::Result<()> {
    let mut stream = socks5(socks, echo)?;
    stream.write_all(&vec![0x5a; 64 * 1024])?;
    let mut half = vec![0u8; 32 * 1024];
    stream.read_exact(&mut half)?;
    thread::sleep(Duration::from_millis(5));
    Ok(())
}

fn download(socks: SocketAddr, url: &str) -> anyhow::Result<()> {
    support::download_via_socks(socks, url, FILE)
}

/// The workers: they loop until stopped, and stop together at each checkpoint.
struct Churn {
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    /// Workers and the main thread meet here at each checkpoint: once to stop, once to go
    /// on.
    barrier: Arc<Barrier>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl Churn {
    fn start(socks: SocketAddr, url: &str, echo: SocketAddr) -> Self {
        let mut churn = Self {
            stop: Arc::new(AtomicBool::new(false)),
            pause: Arc::new(AtomicBool::new(false)),
            done: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(std::sync::Mutex::new(Vec::new())),
            barrier: Arc::new(Barrier::new(WORKERS + 1)),
            workers: Vec::new(),
        };
        for worker in 0..WORKERS {
            let (stop, pause, done, failures, barrier) = (
                churn.stop.clone(),
                churn.pause.clone(),
                churn.done.clone(),
                churn.failures.clone(),
                churn.barrier.clone(),
            );
            let url = url.to_owned();
            churn.workers.push(thread::spawn(move || {
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    if pause.load(Ordering::Relaxed) {
                        barrier.wait();
                        barrier.wait();
                        continue;
                    }
                    let result = if (worker + round) % 3 == 0 {
                        abort_midway(socks, echo)
                    } else {
                        download(socks, &url)
                    };
                    if let Err(error) = result {
                        failures
                            .lock()
                            .map(|mut f| f.push(format!("{error:#}")))
                            .ok();
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    round += 1;
                }
            }));
        }
        churn
    }

    /// Stops the workers, runs `sample` once everything settled, and lets them go on.
    fn checkpoint<T>(&self, sample: impl FnOnce() -> T) -> T {
        self.pause.store(true, Ordering::Relaxed);
        self.barrier.wait();
        // Settle: closed tunnels' sockets and connections go away.
        thread::sleep(Duration::from_secs(2));
        let value = sample();
        self.pause.store(false, Ordering::Relaxed);
        self.barrier.wait();
        value
    }

    /// Stops the workers; returns how many operations ran and the failures.
    fn finish(self) -> anyhow::Result<(u64, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
        }
        let failures = self.failures.lock().map(|f| f.clone()).unwrap_or_default();
        Ok((self.done.load(Ordering::Relaxed), failures))
    }
}

/// After the warm-up (checkpoint 0 is at the start, 1 after the first period), nothing may
/// grow: descriptors come back to the same count (two of slack), memory stays within 10%
/// plus 4 MiB of the allocator's slack.
fn check_flat(samples: &[(Holding, Holding)]) -> anyhow::Result<()> {
    let warm = samples.get(1).copied().context("a warm-up checkpoint")?;
    for (i, (edge_now, client_now)) in samples.iter().enumerate().skip(2) {
        for (who, base, now) in [("edge", warm.0, *edge_now), ("client", warm.1, *client_now)] {
            ensure!(
                now.fds <= base.fds + 2,
                "checkpoint {i}: the {who} holds {} descriptors, {} after the warm-up",
                now.fds,
                base.fds
            );
            ensure!(
                now.rss_kib <= base.rss_kib + base.rss_kib / 10 + 4096,
                "checkpoint {i}: the {who}'s RSS grew to {} KiB from {} KiB after the warm-up",
                now.rss_kib,
                base.rss_kib
            );
        }
    }
    Ok(())
}

#[test]
fn an_edge_under_churn_holds_flat_memory_and_descriptors() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let long = std::env::var_os("VEIL_RELIABILITY_LONG").is_some();
    // By hand: `VEIL_SOAK_EVERY_SECS=N` puts the six checkpoints N seconds apart.
    let (checkpoints, every) = if let Ok(secs) = std::env::var("VEIL_SOAK_EVERY_SECS") {
        (6, Duration::from_secs(secs.parse()?))
    } else if long {
        (6, Duration::from_secs(300))
    } else {
        (3, Duration::from_secs(12))
    };
    let dir = TempDir::new("soak")?;
    let origin = Origin::start(dir.path())?;
    support::write_random_file(&origin.root().join("soak.bin"), FILE, 0x50ac)?;
    let url = origin.url("soak.bin");
    let echo = Echo::start()?;
    let mut edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let client = Client::of(dir.path(), &edge, TOKEN)?;
    let (edge_pid, client_pid) = (edge.proc().pid(), client.pid());
    let churn = Churn::start(client.socks(), &url, echo.addr());

    // The reconnecting client: a QUIC connection that ends and a new one, over and over.
    let mut samples = Vec::new();
    let started = Instant::now();
    let mut restarts = 0;
    for checkpoint in 0..=checkpoints {
        let until = started + every * checkpoint;
        while Instant::now() < until {
            let mut churner = Client::of(dir.path(), &edge, TOKEN)?;
            download(churner.socks(), &url).context("through a fresh client")?;
            // Every other one stops gracefully (CONNECTION_CLOSE); the others vanish
            // (SIGKILL), and the edge finds out at its idle timeout.
            if restarts % 2 == 0 {
                churner.terminate(Duration::from_secs(10))?;
            }
            drop(churner);
            restarts += 1;
            thread::sleep(Duration::from_millis(500));
        }
        samples.push(
            churn
                .checkpoint(|| {
                    anyhow::Ok((holding_steadily(edge_pid)?, holding_steadily(client_pid)?))
                })
                .with_context(|| format!("{}\n{}", edge.diagnostics(), client.diagnostics()))?,
        );
    }
    let (transfers, failures) = churn.finish()?;
    let table: Vec<String> = samples
        .iter()
        .enumerate()
        .map(|(i, (e, c))| {
            format!(
                "{i}: edge {} KiB {} fds, client {} KiB {} fds",
                e.rss_kib, e.fds, c.rss_kib, c.fds
            )
        })
        .collect();
    eprintln!(
        "e2e: soak {:.0} s: {transfers} transfers and aborts, {restarts} client restarts, {} failed\n  {}",
        started.elapsed().as_secs_f64(),
        failures.len(),
        table.join("\n  ")
    );
    ensure!(
        failures.is_empty(),
        "{} of {transfers} failed, first: {}\n{}",
        failures.len(),
        failures.first().cloned().unwrap_or_default(),
        edge.diagnostics()
    );
    check_flat(&samples)
}

//! The path between `veil client` and `veil server` goes dark, with real programs on
//! loopback: curl → `veil client` (SOCKS5) → the tests' UDP relay (`support/relay.rs`)
//! → `veil server` → nginx. While the relay's blackhole is on it drops every datagram,
//! both ways, as a dead link or a firewall that forgot the flow would.
//!
//! - 5 s, shorter than the QUIC idle timeout (`[quic] max_idle_timeout_ms`, 30 s by
//!   default, used here): a download under way goes silent, then completes whole, on the
//!   same connection.
//! - 60 s, longer than the idle timeout: the connection dies on both sides; the
//!   application whose tunnel it carried gets an error (curl exits, it does not hang), so
//!   does one that asks for a new tunnel while the path is still dark; once the path is
//!   back the same `veil client` connects again by itself and a new request succeeds
//!   within 2 s.

mod support;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::relay::Relay;
use support::{
    Client, Edge, Origin, Output, TOKEN, TempDir, curl, require_tool, sha256_file, wait_until,
};

/// The short blackhole: well under the idle timeout.
const SHORT: Duration = Duration::from_secs(5);
/// The long blackhole: twice the default idle timeout (30 s).
const LONG: Duration = Duration::from_secs(60);
/// The default `[quic] max_idle_timeout_ms`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How soon after the path's return a new request must have succeeded.
const RECOVERY: Duration = Duration::from_secs(2);

/// A running edge, relay and client, and an origin with the files the tests fetch.
struct Setup {
    dir: TempDir,
    origin: Origin,
    edge: Edge,
    relay: Relay,
    client: Client,
}

impl Setup {
    fn start(label: &str) -> anyhow::Result<Self> {
        require_tool("curl", "curl")?;
        let dir = TempDir::new(label)?;
        let origin = Origin::start(dir.path())?;
        let edge = Edge::start(
            dir.path(),
            &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
        )?;
        let relay = Relay::start(edge.addr())?;
        let client = Client::start(
            dir.path(),
            relay.addr(),
            &["--pin", edge.pin()?, "--token", TOKEN],
        )?;
        Ok(Self {
            dir,
            origin,
            edge,
            relay,
            client,
        })
    }

    fn socks(&self) -> String {
        format!("socks5h://{}", self.client.socks())
    }

    /// curl through the client's SOCKS5 listener, the body to `output`.
    fn fetch(
        &self,
        path: &str,
        output: &Path,
        extra: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let socks = self.socks();
        let mut args = vec![
            "--proxy",
            &socks,
            "--write-out",
            "%{http_code}",
            "--output",
            output.to_str().context("a UTF-8 path")?,
        ];
        args.extend_from_slice(extra);
        let url = self.origin.url(path);
        args.push(&url);
        curl(&args, timeout)
    }

    fn context(&self) -> String {
        format!(
            "relay: {} B from the edge, {} datagrams blackholed\n{}\n{}",
            self.relay.bytes_from_edge(),
            self.relay.blackholed(),
            self.edge.diagnostics(),
            self.client.diagnostics()
        )
    }
}

/// Runs `fetch` on a thread of its own; the handle gives its output and when it ended.
fn in_background(
    fetch: impl FnOnce() -> anyhow::Result<Output> + Send + 'static,
) -> thread::JoinHandle<(anyhow::Result<Output>, Instant)> {
    thread::spawn(move || {
        let output = fetch();
        (output, Instant::now())
    })
}

#[test]
fn a_download_goes_on_after_a_5_s_blackhole() -> anyhow::Result<()> {
    /// 24 MiB at 2 MiB/s: about 12 s, the blackhole from about the 2nd second to the 7th.
    const SIZE: usize = 24 << 20;
    let setup = Setup::start("blackhole-short")?;
    let served = setup.origin.root().join("big.bin");
    let served_sum = support::write_random_file(&served, SIZE, 0xb1ac_c401)?;
    let downloaded = setup.dir.join("downloaded.bin");
    let socks = setup.socks();
    let (url, path) = (
        setup.origin.url("big.bin"),
        downloaded.to_str().context("a UTF-8 path")?.to_owned(),
    );
    let started = Instant::now();
    let download = in_background(move || {
        curl(
            &[
                "--proxy",
                &socks,
                "--limit-rate",
                "2M",
                "--write-out",
                "%{http_code}",
                "--output",
                &path,
                &url,
            ],
            Duration::from_secs(90),
        )
    });
    // Under way: curl has written 4 MiB (about 2 s at its rate).
    wait_until("4 MiB downloaded", Duration::from_secs(30), || {
        std::fs::metadata(&downloaded).is_ok_and(|m| m.len() >= 4 << 20)
    })?;
    let before = setup.relay.bytes_from_edge();
    setup.relay.blackhole(true);
    let dark = Instant::now();
    thread::sleep(SHORT);
    setup.relay.blackhole(false);
    let back = Instant::now();
    let blackholed = setup.relay.blackholed();
    let (output, ended) = download
        .join()
        .map_err(|_| anyhow::anyhow!("the download's thread panicked"))?;
    let output = output?;
    ensure!(
        output.status.success() && output.stdout == "200",
        "download: curl exit {}, status {:?}: {}\n{}",
        output.code(),
        output.stdout,
        output.stderr,
        setup.context()
    );
    ensure!(
        sha256_file(&downloaded)? == served_sum,
        "the downloaded file differs from the served one\n{}",
        setup.context()
    );
    ensure!(
        before < SIZE as u64 && ended > back && blackholed > 0,
        "the blackhole did not fall inside the download ({before} B before it, {blackholed} \
         datagrams dropped)\n{}",
        setup.context()
    );
    ensure!(
        setup.edge.connections_established() == 1,
        "the client connected again instead of going on\n{}",
        setup.context()
    );
    eprintln!(
        "e2e: blackhole 5 s: dark {:.1?} after the start with {} KiB through the relay, \
         {blackholed} datagrams dropped; {} MiB whole in {:.1?}, {:.1?} after the path's return; one \
         connection",
        dark - started,
        before >> 10,
        SIZE >> 20,
        ended - started,
        ended - back,
    );
    Ok(())
}

#[test]
fn after_a_60_s_blackhole_lost_tunnels_fail_and_the_client_reconnects() -> anyhow::Result<()> {
    /// Served at 32 KiB/s (nginx's `/slow/`): the tunnel stays open, trickling, for the
    /// whole test.
    const SLOW: usize = 16 << 20;
    let mut setup = Setup::start("blackhole-long")?;
    support::write_random_file(&setup.origin.root().join("slow/big.bin"), SLOW, 0x51_0e)?;
    let small = setup.origin.root().join("small.txt");
    std::fs::write(&small, "small\n")?;

    // A request before the blackhole: the connection is up.
    first_success_after(&setup, Instant::now())?;

    // The tunnel that will be lost.
    let socks = setup.socks();
    let url = setup.origin.url("slow/big.bin");
    let slow_out = setup.dir.join("slow.bin");
    let slow_path = slow_out.to_str().context("a UTF-8 path")?.to_owned();
    let slow = in_background(move || {
        curl(
            &[
                "--proxy",
                &socks,
                "--write-out",
                "%{http_code}",
                "--output",
                &slow_path,
                &url,
            ],
            Duration::from_secs(150),
        )
    });
    wait_until(
        "the slow download under way",
        Duration::from_secs(20),
        || std::fs::metadata(&slow_out).is_ok_and(|m| m.len() > 64 << 10),
    )?;

    setup.relay.blackhole(true);
    let dark = Instant::now();

    // The lost tunnel: its application gets an error, before the path comes back.
    let (output, failed_at) = slow
        .join()
        .map_err(|_| anyhow::anyhow!("the slow download's thread panicked"))?;
    let output = output?;
    let lost_after = failed_at - dark;
    ensure!(
        !output.status.success() && lost_after < LONG,
        "the tunnel lost with the connection: curl exit {} after {lost_after:.1?} in the dark \
         (must fail, and before the path's return): {}\n{}",
        output.code(),
        output.stderr,
        setup.context()
    );
    let received = std::fs::metadata(setup.dir.join("slow.bin")).map_or(0, |m| m.len());

    // A request while the path is still dark, after the idle timeout: refused, not hung.
    let asked = Instant::now();
    let during = setup.fetch(
        "small.txt",
        &setup.dir.join("during.txt"),
        &[],
        Duration::from_secs(30),
    )?;
    let refused_after = asked.elapsed();
    ensure!(
        !during.status.success() && dark.elapsed() < LONG,
        "a request in the dark: curl exit {} after {refused_after:.1?}: {}\n{}",
        during.code(),
        during.stderr,
        setup.context()
    );

    // The path comes back: requests through the same client, in a loop, until one works.
    let left = LONG.saturating_sub(dark.elapsed());
    thread::sleep(left);
    setup.relay.blackhole(false);
    let back = Instant::now();
    let (recovered, attempts) = first_success_after(&setup, back)?;
    ensure!(
        setup.client_alive(),
        "the client exited\n{}",
        setup.context()
    );
    ensure!(
        setup.edge.connections_established() == 2,
        "{} connections established, expected 2 (one before the blackhole, one after)\n{}",
        setup.edge.connections_established(),
        setup.context()
    );
    eprintln!(
        "e2e: blackhole 60 s: the slow download failed {lost_after:.1?} into the dark (curl \
         exit {}, {} KiB received; idle timeout {IDLE_TIMEOUT:?}); a request in the dark \
         failed in {refused_after:.1?} (curl exit {}); after the path's return the first \
         request succeeded in {recovered:.2?} ({attempts} attempts)",
        output.code(),
        received >> 10,
        during.code(),
    );
    ensure!(
        recovered <= RECOVERY,
        "the first request after the path's return succeeded only after {recovered:.2?} \
         (bound {RECOVERY:?}, {attempts} attempts)\n{}",
        setup.context()
    );
    Ok(())
}

impl Setup {
    /// Whether the same `veil client` process is still running.
    fn client_alive(&mut self) -> bool {
        self.client.exited().is_none()
    }
}

/// Fetches a small file through the client in a loop until it works; how long after
/// `back` that was, and after how many attempts (an error after 30 s).
fn first_success_after(setup: &Setup, back: Instant) -> anyhow::Result<(Duration, u32)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let output = setup.fetch(
            "small.txt",
            &setup.dir.join("after.txt"),
            &[],
            Duration::from_secs(1),
        )?;
        if output.status.success() && output.stdout == "200" {
            return Ok((back.elapsed(), attempts));
        }
        ensure!(
            back.elapsed() < Duration::from_secs(30),
            "no request succeeded within 30 s of the path's return ({attempts} attempts; \
             last: curl exit {}: {})\n{}",
            output.code(),
            output.stderr,
            setup.context()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

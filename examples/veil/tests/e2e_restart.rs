//! The edge restarts under a running client: a request made at once waits for the client's
//! new QUIC connection to the new edge process and succeeds, the transfer that was in
//! flight fails (it does not hang), and later requests succeed on the one new connection.

mod support;

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::{Context, ensure};
use support::{
    Client, Edge, Origin, TOKEN, TempDir, curl, make_certificate, require_tool, wait_until,
};

/// Bound of a small request.
const REQUEST: Duration = Duration::from_secs(30);
/// The client's QUIC idle timeout here: longer than [`REQUEST`], so a request after a kill
/// can only succeed in time if the client learns at once that the old connection is gone.
/// A killed edge sends no `CONNECTION_CLOSE`; the restarted one, with the same certificate
/// and hence the same stateless reset key, answers the client's next packet on the old
/// connection with a Stateless Reset (RFC 9000 §10.3).
const IDLE_MS: u64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: the edge vanishes without a word.
    Kill,
    /// SIGTERM: the edge drains (500 ms), then closes its connections.
    Terminate,
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a temp path that is not UTF-8")
}

/// GETs `url` through `proxy`; Ok when it answered 200 with `body`.
fn fetch(proxy: &[&str], url: &str, body: &str) -> anyhow::Result<()> {
    let output = curl(
        &[proxy, &["--write-out", "\n%{http_code}", url]].concat(),
        REQUEST,
    )?;
    ensure!(
        output.status.success() && output.stdout == format!("{body}\n200"),
        "GET {url} through {proxy:?}: curl exit {}, stdout {:?}, {}",
        output.code(),
        output.stdout,
        output.stderr.trim()
    );
    Ok(())
}

/// Starts a curl download in a thread of its own; returns its handle.
fn start_download(
    proxy: &[&str],
    url: &str,
    output: &Path,
) -> anyhow::Result<thread::JoinHandle<anyhow::Result<support::Output>>> {
    let args: Vec<String> = proxy
        .iter()
        .copied()
        .chain(["--output", path_str(output)?, url])
        .map(str::to_owned)
        .collect();
    Ok(thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args, Duration::from_secs(60))
    }))
}

fn edge_restart_mid_session(label: &str, stop: Stop) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new(label)?;
    let origin = Origin::start(dir.path())?;
    fs::write(origin.root().join("hello.txt"), "hello")?;
    // 2 MiB at nginx's 32 KiB/s: still running when the edge goes away.
    support::write_random_file(&origin.root().join("slow/long.bin"), 2 << 20, 7)?;
    let (cert, key) = make_certificate(dir.path())?;
    let config = dir.join("client.toml");
    fs::write(
        &config,
        format!("[quic]\nmax_idle_timeout_ms = {IDLE_MS}\nkeep_alive_interval_ms = 1000\n"),
    )?;
    let edge_args = [
        "--cert",
        path_str(&cert)?,
        "--key",
        path_str(&key)?,
        "--token",
        TOKEN,
        "--allow-target",
        "127.0.0.0/8",
        "--drain-timeout-ms",
        "500",
    ];
    let mut edge = Edge::start(dir.path(), &edge_args)?;
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &[
            "--config",
            path_str(&config)?,
            "--ca",
            path_str(&cert)?,
            "--server-name",
            "localhost",
            "--token",
            TOKEN,
        ],
    )?;
    let socks = client.socks().to_string();
    let socks_proxy = ["--socks5-hostname", socks.as_str()];
    let http = client.http_proxy();
    let http_proxy = ["--proxy", http.as_str(), "--proxytunnel"];
    let hello = origin.url("hello.txt");
    fetch(&socks_proxy, &hello, "hello")?;

    let partial = dir.join("partial.bin");
    let in_flight = start_download(&socks_proxy, &origin.url("slow/long.bin"), &partial)?;
    wait_until("the slow transfer started", REQUEST, || {
        fs::metadata(&partial).is_ok_and(|m| m.len() > 0)
    })?;

    let addr = edge.addr().to_string();
    match stop {
        Stop::Kill => edge.proc().kill(),
        Stop::Terminate => {
            let status = edge.proc().terminate(Duration::from_secs(10))?;
            ensure!(status.success(), "the edge exited with {status} on SIGTERM");
        }
    }
    let restart_args = [&edge_args[..], &["--listen", &addr]].concat();
    let restarted = Edge::start_named("edge-restarted", dir.path(), &restart_args)?;

    // Asked for at once, before the client may have noticed the old connection is gone
    // (after a kill it learns that from the restarted edge's stateless reset): the request
    // waits for the new connection rather than failing.
    support::timed("first request after the restart", || {
        fetch(&http_proxy, &hello, "hello")
    })
    .with_context(|| {
        format!(
            "{}
{}",
            restarted.diagnostics(),
            client.diagnostics()
        )
    })?;

    let cut = in_flight
        .join()
        .map_err(|_| anyhow::anyhow!("the curl thread panicked"))??;
    eprintln!(
        "e2e: {stop:?}: the transfer in flight ended with curl exit {}",
        cut.code()
    );
    // 56: the local TCP connection was reset, so the cut cannot pass for a complete
    // response (18 would be a clean FIN before the end, 28 a tunnel that hung).
    ensure!(
        cut.code() == 56,
        "the transfer in flight did not end with a reset: curl exit {}: {}",
        cut.code(),
        cut.stderr
    );
    for _ in 0..5 {
        fetch(&socks_proxy, &hello, "hello")?;
        fetch(&http_proxy, &hello, "hello")?;
    }
    ensure!(
        restarted.connections_established() == 1,
        "the restarted edge saw {} QUIC connections, not 1\n{}",
        restarted.connections_established(),
        restarted.diagnostics()
    );
    Ok(())
}

#[test]
fn client_reconnects_after_the_edge_is_killed_and_restarted() -> anyhow::Result<()> {
    edge_restart_mid_session("restart-kill", Stop::Kill)
}

#[test]
fn client_reconnects_after_the_edge_shuts_down_gracefully_and_restarts() -> anyhow::Result<()> {
    edge_restart_mid_session("restart-term", Stop::Terminate)
}

//! `veil server` upgrades in place on SIGHUP without dropping anyone: a 200 MiB download
//! through the tunnel while the edge upgrades completes with the right checksum, new tunnels
//! succeed throughout (served by the successor), the old process exits after its drain, the
//! listeners it handed over (UDP group, metrics) keep answering, and the successor can be
//! upgraded in turn.

mod support;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::{Client, Edge, Origin, TOKEN, TempDir, curl, require_tool, run_bounded, wait_until};

const REQUEST: Duration = Duration::from_secs(30);
const SIZE: usize = 200 << 20;

/// Processes the test started indirectly (successors): killed when the test ends, however
/// it ends.
#[derive(Default)]
struct Successors(Vec<u32>);

impl Drop for Successors {
    fn drop(&mut self) {
        for pid in &self.0 {
            signal("KILL", *pid);
        }
    }
}

fn signal(name: &str, pid: u32) -> bool {
    let mut kill = std::process::Command::new("kill");
    kill.args([format!("-{name}"), pid.to_string()]);
    run_bounded(kill, Duration::from_secs(5)).is_ok_and(|out| out.status.success())
}

fn alive(pid: u32) -> bool {
    // Zombies count as gone: a successor's parent is the old process, or init once the old
    // process has exited.
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// GETs `url` (`hello`) through the client's SOCKS5 or HTTP listener.
fn hello(client: &Client, edge: &Edge, url: &str, via_http: bool) -> anyhow::Result<()> {
    let socks = client.socks().to_string();
    let http = client.http_proxy();
    let proxy: Vec<&str> = if via_http {
        vec!["--proxy", &http, "--proxytunnel"]
    } else {
        vec!["--socks5-hostname", &socks]
    };
    let out = curl(
        &[&proxy[..], &["--write-out", "\n%{http_code}", url]].concat(),
        REQUEST,
    )?;
    ensure!(
        out.status.success() && out.stdout == "hello\n200",
        "GET {url}: curl exit {}, {:?}, {}\n{}\n{}",
        out.code(),
        out.stdout,
        out.stderr.trim(),
        client.diagnostics(),
        edge.diagnostics()
    );
    Ok(())
}

/// Sends SIGHUP to `pid` and returns the successor's pid, as `edge` (whose stdout every
/// generation shares) announces it.
fn upgrade(edge: &mut Edge, pid: u32) -> anyhow::Result<u32> {
    ensure!(signal("HUP", pid), "kill -HUP {pid}");
    let line = edge
        .proc()
        .wait_for_line("veil: upgraded: successor pid ", REQUEST)?;
    line.split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .with_context(|| format!("a pid in `{line}`"))
}

/// Starts curl downloading `url` through `socks` into `output` at 20 MB/s, in a thread.
fn start_download(
    socks: &str,
    url: &str,
    output: &std::path::Path,
) -> anyhow::Result<thread::JoinHandle<anyhow::Result<support::Output>>> {
    let args: Vec<String> = [
        "--socks5-hostname",
        socks,
        "--limit-rate",
        "20M",
        "--write-out",
        "%{http_code}",
        "--output",
        output.to_str().context("UTF-8 path")?,
        url,
    ]
    .map(str::to_owned)
    .to_vec();
    Ok(thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args, Duration::from_secs(120))
    }))
}

/// A counter's value in a Prometheus text page.
fn counter(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn scrape(metrics: &str) -> anyhow::Result<String> {
    let out = curl(&["--silent", &format!("http://{metrics}/metrics")], REQUEST)?;
    ensure!(
        out.status.success(),
        "scraping {metrics}: curl exit {}",
        out.code()
    );
    Ok(out.stdout)
}

/// New tunnels while the old process drains: the client takes them to the successor,
/// whose metrics (the inherited listener) count them.
fn tunnels_during_the_drain(
    client: &Client,
    edge: &mut Edge,
    small: &str,
    metrics: &str,
) -> anyhow::Result<()> {
    // New tunnels while the old process drains: the client takes them to the successor.
    let started = Instant::now();
    let mut during = 0;
    while edge.proc().exited().is_none() && started.elapsed() < Duration::from_secs(4) {
        hello(client, edge, small, during % 2 == 1)?;
        during += 1;
    }
    ensure!(during >= 4, "only {during} requests during the drain");
    // The metrics listener is the successor's now; its count catches up within a
    // publishing period (glommio's cores publish theirs every so often).
    let mut counted = 0.0;
    wait_until(
        "the successor counts the tunnels made during the drain",
        REQUEST,
        || {
            counted = scrape(metrics)
                .ok()
                .and_then(|page| counter(&page, "veil_tunnels_opened_total"))
                .unwrap_or(0.0);
            counted >= f64::from(during)
        },
    )
    .with_context(|| {
        format!(
            "{counted} tunnels counted, {during} made\n{}\n{}",
            edge.diagnostics(),
            client.diagnostics()
        )
    })?;

    Ok(())
}

/// After the old process has exited: the successor alone serves new tunnels (through the
/// UDP group), scrapes (the inherited metrics listener) and HTTPS-proxy clients (the
/// inherited TCP listener).
fn serves_alone(
    client: &Client,
    edge: &Edge,
    small: &str,
    metrics: &str,
    tcp: &str,
) -> anyhow::Result<()> {
    for via_http in [false, true] {
        hello(client, edge, small, via_http)?;
    }
    scrape(metrics)?;
    // The TCP on-ramp's listener, handed over too: curl as an HTTPS-proxy client.
    let out = support::curl_https_proxy(tcp, Some(TOKEN), "%{http_code}", "-", small, REQUEST)?;
    ensure!(
        out.status.success() && out.stdout == "hello200",
        "through the inherited TCP listener: curl exit {}, {:?}, {}",
        out.code(),
        out.stdout,
        out.stderr
    );

    Ok(())
}

#[test]
fn an_upgrade_in_place_keeps_a_download_and_serves_new_tunnels() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("upgrade")?;
    let origin = Origin::start(dir.path())?;
    fs::write(origin.root().join("hello.txt"), "hello")?;
    let served = support::write_random_file(&origin.root().join("big.bin"), SIZE, 19)?;

    // Self-signed: the successor must serve the very certificate the client pinned.
    let mut edge = Edge::start(
        dir.path(),
        &[
            "--token",
            TOKEN,
            "--allow-target",
            "127.0.0.0/8",
            "--metrics",
            "127.0.0.1:0",
            "--listen-tcp",
            "127.0.0.1:0",
            "--edge-id",
            "3",
            "--upgrade-drain-timeout-ms",
            "120000",
        ],
    )?;
    let tcp = edge
        .proc()
        .wait_for_line("veil: edge listening on tcp ", support::STARTUP)?;
    let metrics = edge
        .proc()
        .wait_for_line("veil: metrics listening on ", support::STARTUP)?;
    let client = Client::of(dir.path(), &edge, TOKEN)?;
    let small = origin.url("hello.txt");
    hello(&client, &edge, &small, false)?;

    // 200 MiB at 20 MB/s: about 10 s, the upgrade happens in its first part.
    let download = dir.join("big.bin");
    let in_flight = start_download(
        &client.socks().to_string(),
        &origin.url("big.bin"),
        &download,
    )?;
    wait_until("the download started", REQUEST, || {
        fs::metadata(&download).is_ok_and(|m| m.len() > 8 << 20)
    })?;

    let mut successors = Successors::default();
    let old_pid = edge.proc().pid();
    let successor = upgrade(&mut edge, old_pid)?;
    successors.0.push(successor);

    tunnels_during_the_drain(&client, &mut edge, &small, &metrics)?;

    let output = in_flight
        .join()
        .map_err(|_| anyhow::anyhow!("the curl thread panicked"))??;
    support::check_download(&output, &dir.join("big.bin"), &served, || {
        format!("{}\n{}", edge.diagnostics(), client.diagnostics())
    })?;
    // The download was the old process's last tunnel: its drain ends with it.
    wait_until("the old process exits after its drain", REQUEST, || {
        edge.proc().exited().is_some()
    })
    .with_context(|| edge.diagnostics())?;
    let status = edge.proc().exited().context("exited")?;
    ensure!(status.success(), "the old process exited with {status}");
    ensure!(
        alive(successor),
        "the successor is gone\n{}",
        edge.diagnostics()
    );
    serves_alone(&client, &edge, &small, &metrics, &tcp)?;

    // The successor, its predecessor gone, upgrades in turn.
    wait_until("the successor detaches the steering", REQUEST, || {
        edge.proc().stderr().contains("steering detached")
    })?;
    let third = upgrade(&mut edge, successor)?;
    successors.0.push(third);
    wait_until(
        "the second process exits (nothing to drain)",
        REQUEST,
        || !alive(successor),
    )?;
    for via_http in [false, true] {
        hello(&client, &edge, &small, via_http)?;
    }
    ensure!(signal("TERM", third), "kill -TERM {third}");
    wait_until("the third process stops on SIGTERM", REQUEST, || {
        !alive(third)
    })?;
    Ok(())
}

#[test]
fn a_second_edge_on_the_same_port_is_refused() -> anyhow::Result<()> {
    let dir = TempDir::new("upgrade-port")?;
    let edge = Edge::start(dir.path(), &["--token", TOKEN])?;
    let addr = edge.addr().to_string();
    let second = Edge::start_named("second", dir.path(), &["--token", TOKEN, "--listen", &addr]);
    let error = format!("{:#}", second.err().context("the second edge started")?);
    ensure!(
        error.contains("Address already in use"),
        "the second edge failed otherwise: {error}"
    );
    Ok(())
}

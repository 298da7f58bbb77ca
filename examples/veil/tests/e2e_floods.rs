//! Floods beside a well-behaved client: curl downloads through `veil client` for a few
//! seconds alone, then again while `tests/interop/flood.py` (aioquic) floods the same edge
//! on a connection of its own, once per kind of flood:
//!
//! - `connect`: CONNECT requests the edge refuses itself (a forbidden target);
//! - `reset`: CONNECT requests to a target that never answers a SYN, each reset right
//!   after it reached the edge (HTTP/3's rapid reset): the edge must close the flooder's
//!   connection with `H3_EXCESSIVE_LOAD` and count it;
//! - `datagram`: HTTP/3 datagrams for tunnels that do not exist: dropped and counted;
//! - `capsule`: DATAGRAM capsules on a connect-udp tunnel as fast as they go.
//!
//! Every download must arrive whole; the well-behaved client's goodput beside each flood,
//! as a share of its goodput alone, is printed (a figure, not a test: this machine has two
//! cores, and the flooder, an interpreted Python process, takes one of them).
//! Figures: docs/RELIABILITY.md.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::{Client, Edge, Origin, TOKEN, TempDir, UdpEcho, Unanswering, curl, require_tool};

/// Bytes of each download.
const FILE: usize = 16 << 20;
/// How long each goodput measurement downloads.
const WINDOW: Duration = Duration::from_secs(4);

/// Downloads `url` through `socks` over and over for [`WINDOW`]; returns MiB/s.
fn goodput(socks: std::net::SocketAddr, url: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut bytes = 0usize;
    while started.elapsed() < WINDOW {
        support::download_via_socks(socks, url, FILE)?;
        bytes += FILE;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(bytes as f64 / f64::from(1 << 20) / started.elapsed().as_secs_f64())
}

/// The value of the first sample line of `/metrics` that starts with `prefix`.
fn metric(metrics: &str, prefix: &str) -> anyhow::Result<f64> {
    let output = curl(
        &[&format!("http://{metrics}/metrics")],
        Duration::from_secs(10),
    )?;
    output
        .stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no {prefix} in /metrics"))
}

#[test]
fn a_well_behaved_client_keeps_its_goodput_beside_floods() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let python = support::require_aioquic()?;
    let dir = TempDir::new("floods")?;
    let origin = Origin::start(dir.path())?;
    support::write_random_file(&origin.root().join("file.bin"), FILE, 0xf100d)?;
    let url = origin.url("file.bin");
    let udp = UdpEcho::start(b"")?;
    let tarpit = Unanswering::start()?;
    let mut edge = Edge::start(
        dir.path(),
        &[
            "--token",
            TOKEN,
            "--allow-target",
            "127.0.0.0/8",
            "--metrics",
            "127.0.0.1:0",
        ],
    )?;
    let metrics = edge
        .proc()
        .wait_for_line("veil: metrics listening on ", support::STARTUP)?;
    let client = Client::of(dir.path(), &edge, TOKEN)?;
    let alone = goodput(client.socks(), &url)?;
    let mut figures = vec![format!("alone {alone:.0} MiB/s")];
    for (mode, target) in [
        ("connect", tarpit.addr.to_string()),
        ("reset", tarpit.addr.to_string()),
        ("datagram", tarpit.addr.to_string()),
        ("capsule", udp.addr().to_string()),
    ] {
        let mut flooder = Command::new(&python);
        flooder
            .arg(support::repo_root().join("tests/interop/flood.py"))
            .args(["--edge", &edge.addr().to_string(), "--mode", mode])
            .args(["--target", &target, "--token", TOKEN])
            .args(["--seconds", &(WINDOW.as_secs() + 1).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let flooder = flooder.spawn().context("starting flood.py")?;
        std::thread::sleep(Duration::from_millis(500));
        let beside = goodput(client.socks(), &url)
            .with_context(|| format!("beside the {mode} flood\n{}", edge.diagnostics()))?;
        let output = flooder.wait_with_output()?;
        let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        ensure!(
            output.status.success() && line.starts_with("flood "),
            "flood.py --mode {mode}: {}\n{line}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        figures.push(format!(
            "beside {mode}: {beside:.0} MiB/s ({:.0}% of alone); {line}",
            100.0 * beside / alone
        ));
        match mode {
            "reset" => ensure!(
                line.contains("closed by the edge with 0x107")
                    && metric(&metrics, "veil_http3_rapid_reset_floods_total")? >= 1.0,
                "the rapid reset flood was not bounded: {line}"
            ),
            "datagram" => ensure!(
                metric(
                    &metrics,
                    "veil_udp_payloads_dropped_total{cause=\"unknown_tunnel\"}"
                )? > 0.0,
                "datagrams for no tunnel were not counted: {line}"
            ),
            _ => {}
        }
    }
    eprintln!("e2e: floods: {}", figures.join("\n  "));
    Ok(())
}

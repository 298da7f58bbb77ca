//! CONNECT-UDP (RFC 9298) through the glommio thread-per-core edge, end to end with real
//! programs on loopback, the same checks as against the tokio edge:
//!
//! - `veil client --udp-forward` and `PySocks` (SOCKS5 UDP ASSOCIATE through the client)
//!   to UDP echo servers through `veil server --runtime glommio`: every datagram comes
//!   back whole;
//! - forbidden targets (loopback without `--allow-target`), by address and by a name the
//!   edge resolves, are refused (403, `destination_ip_prohibited`) and never reached; a
//!   name that does not resolve is refused as a DNS failure;
//! - aioquic's CONNECT-UDP client (`tests/interop/aioquic_connect_udp_client.py`) gets 200
//!   and its payloads echoed, in QUIC DATAGRAM frames and in DATAGRAM capsules;
//! - a tunnel idle for the edge's `udp_idle_timeout_ms` ends and releases its socket, and
//!   an edge with open UDP tunnels stops cleanly at SIGTERM.
//!
//! Before the glommio edge served CONNECT-UDP, its engine answered every such request with
//! 501: each of these tests failed.

mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use support::{
    Client, Edge, Output, STARTUP, TOKEN, TempDir, UdpEcho, require_aioquic, require_pysocks,
    run_bounded, wait_until,
};

/// Bound of one script run (the scripts' own steps time out sooner).
const SCRIPT: Duration = Duration::from_secs(120);
/// Payloads sent through `veil client --udp-forward` per sender.
const FORWARD_PAYLOADS: usize = 400;
/// Rounds of resending the payloads whose echo did not come back (UDP on a loaded machine
/// loses some in socket buffers).
const FORWARD_ROUNDS: usize = 10;

/// Cores the edge runs on: two where the machine has them, so that tunnels may live on
/// either core.
fn cores() -> String {
    let available = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    available.min(2).to_string()
}

/// `veil server --runtime glommio` with a token and `extra` flags.
fn glommio_edge(dir: &TempDir, extra: &[&str]) -> anyhow::Result<Edge> {
    let cores = cores();
    let mut args = vec!["--runtime", "glommio", "--cores", &cores, "--token", TOKEN];
    args.extend_from_slice(extra);
    Edge::start(dir.path(), &args)
}

/// A glommio edge that may reach loopback targets.
fn allowing_edge(dir: &TempDir) -> anyhow::Result<Edge> {
    allowing_edge_with(dir, &[])
}

/// A glommio edge that may reach loopback targets, with `extra` flags.
fn allowing_edge_with(dir: &TempDir, extra: &[&str]) -> anyhow::Result<Edge> {
    let mut args = vec!["--allow-target", "127.0.0.0/8"];
    args.extend_from_slice(extra);
    glommio_edge(dir, &args)
}

/// Sends `FORWARD_PAYLOADS` distinct payloads (1 to 1200 bytes) from a fresh socket to
/// `forward` and expects each back, byte for byte, from an echo that adds nothing
/// (missing ones are resent, up to `FORWARD_ROUNDS` rounds).
fn echo_through(forward: SocketAddr, seed: u8) -> anyhow::Result<()> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.connect(forward)?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let payloads: Vec<Vec<u8>> = (0..FORWARD_PAYLOADS)
        .map(|i| {
            let len = [3, 40, 500, 1000, 1200][i % 5];
            let mut payload = vec![seed; len];
            payload[..2].copy_from_slice(&u16::try_from(i).unwrap_or(0).to_be_bytes());
            for (j, byte) in payload.iter_mut().enumerate().skip(3) {
                *byte = u8::try_from((i * 31 + j) % 251).unwrap_or(0);
            }
            payload
        })
        .collect();
    let mut missing = vec![true; payloads.len()];
    let mut buf = vec![0u8; 65_536];
    for _ in 0..FORWARD_ROUNDS {
        for (payload, _) in payloads.iter().zip(&missing).filter(|(_, m)| **m) {
            socket.send(payload)?;
        }
        while let Ok(len) = socket.recv(&mut buf) {
            let echo = &buf[..len];
            let index = echo
                .get(..2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                .context("an echo shorter than two bytes")?;
            ensure!(
                payloads.get(index).is_some_and(|p| p == echo),
                "an echo of {len} bytes matching no payload sent"
            );
            if let Some(m) = missing.get_mut(index) {
                *m = false;
            }
            if missing.iter().all(|m| !m) {
                return Ok(());
            }
        }
    }
    let lost = missing.iter().filter(|m| **m).count();
    bail!("{lost} of {FORWARD_PAYLOADS} payloads never came back through {forward}")
}

/// Runs `tests/scripts/pysocks_udp.py` through `client` against `targets`; every target
/// must echo.
fn pysocks(client: &Client, targets: &[String], tag: &str) -> anyhow::Result<Output> {
    let python = require_pysocks()?;
    let mut command = Command::new(python);
    command
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/pysocks_udp.py"))
        .args(["--proxy", &client.socks().to_string(), "--tag", tag])
        .args(["--count", "60"]);
    for target in targets {
        command.args(["--target", target]);
    }
    let output = support::timed("pysocks_udp.py", || run_bounded(command, SCRIPT))?;
    let passed = output
        .stdout
        .lines()
        .filter(|l| l.starts_with("ok "))
        .count();
    ensure!(
        output.status.success() && passed == targets.len(),
        "pysocks_udp.py: exit {}, {passed} of {} targets ok\nstdout:\n{}\nstderr:\n{}\n{}",
        output.code(),
        targets.len(),
        output.stdout,
        output.stderr,
        client.diagnostics()
    );
    Ok(output)
}

#[test]
fn udp_forwards_and_socks5_udp_associate_echo_through_a_glommio_edge() -> anyhow::Result<()> {
    let dir = TempDir::new("glommio-udp")?;
    let plain = UdpEcho::start(b"")?;
    let tagged = UdpEcho::start(b"echo:")?;
    let edge = allowing_edge(&dir)?;
    let forward = format!("127.0.0.1:0={}", plain.addr());
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &[
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--udp-forward",
            &forward,
        ],
    )?;
    let local = client.udp_forward()?;
    // Two local senders: two flows, two tunnels on the client's one connection.
    for seed in [0xa5, 0x5a] {
        support::timed("echo through the glommio edge", || {
            echo_through(local, seed)
        })
        .with_context(|| format!("{}\n{}", client.diagnostics(), edge.diagnostics()))?;
    }
    ensure!(
        plain.received() >= 2 * FORWARD_PAYLOADS,
        "the echo server saw {}",
        plain.received()
    );
    // By address and by a name the edge resolves, on one association: two tunnels.
    let targets = [
        tagged.addr().to_string(),
        format!("localhost:{}", tagged.addr().port()),
    ];
    pysocks(&client, &targets, "echo:").with_context(|| edge.diagnostics())?;
    ensure!(tagged.received() >= 120, "saw {}", tagged.received());
    Ok(())
}

#[test]
fn a_glommio_edge_refuses_forbidden_udp_targets_and_never_reaches_them() -> anyhow::Result<()> {
    let dir = TempDir::new("glommio-udp-forbidden")?;
    // A UDP socket nothing may reach: loopback is forbidden without --allow-target.
    let canary = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    canary.set_nonblocking(true)?;
    let port = canary.local_addr()?.port();
    let edge = glommio_edge(&dir, &[])?;
    // By address (the engine refuses it) and by a name that resolves to loopback (the
    // edge resolves it, and the engine's choice among the addresses refuses it).
    let by_ip = format!("127.0.0.1:0=127.0.0.1:{port}");
    let by_name = format!("127.0.0.1:0=localhost:{port}");
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &[
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--udp-forward",
            &by_ip,
            "--udp-forward",
            &by_name,
        ],
    )?;
    let forwards = [client.udp_forward()?, client.udp_forward()?];
    let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    for forward in forwards {
        sender.send_to(b"must not arrive", forward)?;
    }
    wait_until(
        "two refusals in the client's log",
        Duration::from_secs(15),
        || client.stderr().matches("destination_ip_prohibited").count() >= 2,
    )
    .with_context(|| format!("{}\n{}", client.diagnostics(), edge.diagnostics()))?;

    // The same from aioquic, with the statuses as it reads them; and a name that does not
    // resolve.
    let refusals = [
        format!("localhost:{port}=403:destination_ip_prohibited"),
        format!("127.0.0.1:{port}=403:destination_ip_prohibited"),
        "no-such-host.invalid:53=502:dns_error|504:dns_timeout".to_owned(),
    ];
    let mut args = strings(&["--token", TOKEN]);
    for refusal in &refusals {
        args.extend(["--refuse".to_owned(), refusal.clone()]);
    }
    udp_client(&edge, &args, refusals.len())?;

    thread::sleep(Duration::from_millis(200));
    let mut buf = [0; 64];
    ensure!(
        canary.recv_from(&mut buf).is_err(),
        "a forbidden target received a datagram"
    );
    Ok(())
}

/// Runs the aioquic CONNECT-UDP client against `edge` with ARGS; fails unless it printed
/// `ok` for exactly `checks` checks and exited 0.
fn udp_client(edge: &Edge, args: &[String], checks: usize) -> anyhow::Result<Output> {
    let python = require_aioquic()?;
    let mut command = Command::new(python);
    command
        .arg(support::repo_root().join("tests/interop/aioquic_connect_udp_client.py"))
        .args(["--edge", &edge.addr().to_string(), "--pin", edge.pin()?])
        .args(args);
    let output = support::timed("aioquic_connect_udp_client.py", || {
        run_bounded(command, SCRIPT)
    })?;
    let passed = output
        .stdout
        .lines()
        .filter(|l| l.starts_with("ok "))
        .count();
    ensure!(
        output.status.success() && passed == checks,
        "aioquic_connect_udp_client.py {args:?}: exit {}, {passed} of {checks} checks ok\n\
         stdout:\n{}\nstderr:\n{}\n{}",
        output.code(),
        output.stdout,
        output.stderr,
        edge.diagnostics()
    );
    Ok(output)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

#[test]
fn aioquic_connect_udp_gets_200_and_echoes_through_a_glommio_edge() -> anyhow::Result<()> {
    let dir = TempDir::new("glommio-udp-aioquic")?;
    let echo = UdpEcho::start(b"")?;
    let edge = allowing_edge(&dir)?;
    let target = echo.addr().to_string();
    // Two tunnels at once on one connection, in QUIC DATAGRAM frames.
    let mut args = strings(&["--token", TOKEN, "--mode", "datagrams", "--count", "300"]);
    args.extend(strings(&["--echo", &target, "--echo", &target]));
    let output = udp_client(&edge, &args, 2)?;
    ensure!(
        output.stdout.matches("via datagrams").count() == 2
            && output.stdout.matches("status 200").count() == 2,
        "{}",
        output.stdout
    );
    // A client that announces no HTTP/3 datagrams: DATAGRAM capsules both ways.
    let args = [
        "--token", TOKEN, "--mode", "capsules", "--count", "200", "--echo", &target,
    ];
    let output = udp_client(&edge, &strings(&args), 1)?;
    ensure!(output.stdout.contains("via capsules"), "{}", output.stdout);
    // Every payload crossed the edge to the target (resends may add some).
    ensure!(
        echo.received() >= 800,
        "the echo server saw {}",
        echo.received()
    );
    Ok(())
}

/// The sockets a process holds open (its `/proc/PID/fd` links to `socket:[..]`).
fn open_sockets(pid: u32) -> anyhow::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed while we look is not counted.
        let Ok(link) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        if link.to_string_lossy().starts_with("socket:") {
            count += 1;
        }
    }
    Ok(count)
}

#[test]
fn idle_udp_tunnels_release_their_sockets_and_the_edge_stops_cleanly() -> anyhow::Result<()> {
    let dir = TempDir::new("glommio-udp-idle")?;
    let echo = UdpEcho::start(b"")?;
    let config = dir.join("edge.toml");
    std::fs::write(&config, "[quic]\nudp_idle_timeout_ms = 1000\n")?;
    let config = config.to_str().context("temp path is UTF-8")?.to_owned();
    let mut edge = allowing_edge_with(&dir, &["--config", &config])?;
    let pid = edge.proc().pid();
    let forward = format!("127.0.0.1:0={}", echo.addr());
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &[
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--udp-forward",
            &forward,
        ],
    )?;
    let local = client.udp_forward()?;
    // Two senders, two tunnels, each with a socket towards the target.
    let senders = [
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?,
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?,
    ];
    let mut buf = [0; 64];
    for sender in &senders {
        sender.set_read_timeout(Some(Duration::from_millis(500)))?;
        let echoed = (0..10)
            .any(|_| sender.send_to(b"ping", local).is_ok() && sender.recv_from(&mut buf).is_ok());
        ensure!(echoed, "no echo\n{}", edge.diagnostics());
    }
    // Idle for a second: the engine ends both tunnels and the relays let go of their
    // sockets (the count before the tunnels is no baseline: the edge opens some of its
    // own sockets while it starts).
    let open = open_sockets(pid)?;
    wait_until(
        "the idle tunnels' sockets closed",
        Duration::from_secs(15),
        || open_sockets(pid).is_ok_and(|now| now + 2 <= open),
    )
    .with_context(|| {
        format!(
            "{open} sockets with the tunnels open\n{}",
            edge.diagnostics()
        )
    })?;

    // A new datagram opens a new tunnel; SIGTERM with it open drains and exits cleanly.
    let sender = &senders[0];
    let echoed = (0..10)
        .any(|_| sender.send_to(b"again", local).is_ok() && sender.recv_from(&mut buf).is_ok());
    ensure!(echoed, "no echo after the idle end\n{}", edge.diagnostics());
    let status = edge.proc().terminate(STARTUP)?;
    ensure!(status.success(), "the edge exited with {status}");
    for core in 0..cores().parse::<u16>()? {
        edge.proc()
            .wait_for_line(&format!("veil: core {core}: "), STARTUP)?;
    }
    Ok(())
}

//! Interop for CONNECT-UDP (RFC 9298) with aioquic, a QUIC and HTTP/3 implementation
//! nobody here wrote, both ways:
//!
//! - `veil server` answers `tests/interop/aioquic_connect_udp_client.py` (HTTP datagrams in
//!   QUIC DATAGRAM frames, DATAGRAM capsules when the client announces no H3 datagrams,
//!   refusals with Proxy-Status);
//! - `veil client --udp-forward` talks to `tests/interop/aioquic_masque_udp_server.py`, a
//!   minimal CONNECT-UDP proxy on aioquic, in both datagram modes.
//!
//! Every UDP target is an echo server in this process; a canary socket counts what reaches
//! a loopback address that must stay unreachable.

mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use support::{Edge, Output, Proc, STARTUP, TOKEN, TempDir, require_aioquic, run_bounded};

/// Bound of one script run (its own steps time out after 20 s each).
const SCRIPT: Duration = Duration::from_secs(120);
/// Payloads sent through `veil client --udp-forward` per check.
const FORWARD_PAYLOADS: usize = 200;
/// Rounds of resending the payloads whose echo did not come back (UDP on a loaded machine
/// loses some in socket buffers).
const FORWARD_ROUNDS: usize = 10;

/// A UDP echo server on loopback, in a thread: sends every datagram back to its sender
/// and counts them. Stops when dropped.
struct UdpEcho {
    addr: SocketAddr,
    echoed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl UdpEcho {
    fn start() -> anyhow::Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let echoed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (Arc::clone(&echoed), Arc::clone(&stop));
        thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    if socket.send_to(&buf[..len], from).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Self { addr, echoed, stop })
    }

    fn echoed(&self) -> usize {
        self.echoed.load(Ordering::Relaxed)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A UDP socket on loopback that nothing may reach; counts what did.
struct UdpCanary {
    socket: UdpSocket,
}

impl UdpCanary {
    fn start() -> anyhow::Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        socket.set_nonblocking(true)?;
        Ok(Self { socket })
    }

    fn port(&self) -> anyhow::Result<u16> {
        Ok(self.socket.local_addr()?.port())
    }

    fn reached(&self) -> usize {
        let mut buf = [0u8; 2048];
        let mut count = 0;
        while self.socket.recv_from(&mut buf).is_ok() {
            count += 1;
        }
        count
    }
}

/// Runs the CONNECT-UDP client script against `edge` with ARGS; fails unless it printed
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

/// The edge every `veil server` test uses: a token, loopback allowed.
fn allowing_edge(dir: &TempDir) -> anyhow::Result<Edge> {
    Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )
}

#[test]
fn aioquic_connect_udp_echoes_http_datagrams_through_veil_server() -> anyhow::Result<()> {
    let dir = TempDir::new("aioquic-udp-dgram")?;
    let echo = UdpEcho::start()?;
    let edge = allowing_edge(&dir)?;
    let target = echo.addr.to_string();
    // Two tunnels at once on one connection: their datagrams are told apart by the
    // quarter stream id alone.
    let args = ["--token", TOKEN, "--mode", "datagrams", "--count", "300"];
    let mut args = strings(&args);
    args.extend(strings(&["--echo", &target, "--echo", &target]));
    let output = udp_client(&edge, &args, 2)?;
    ensure!(
        output.stdout.matches("via datagrams").count() == 2,
        "{}",
        output.stdout
    );
    // Every payload crossed the edge to the target (resends may add some).
    ensure!(
        echo.echoed() >= 600,
        "the echo server saw {}",
        echo.echoed()
    );
    Ok(())
}

#[test]
fn aioquic_without_h3_datagrams_gets_udp_in_capsules_from_veil_server() -> anyhow::Result<()> {
    let dir = TempDir::new("aioquic-udp-capsules")?;
    let echo = UdpEcho::start()?;
    let edge = allowing_edge(&dir)?;
    let target = echo.addr.to_string();
    let args = [
        "--token", TOKEN, "--mode", "capsules", "--count", "200", "--echo", &target,
    ];
    let output = udp_client(&edge, &strings(&args), 1)?;
    ensure!(output.stdout.contains("via capsules"), "{}", output.stdout);
    ensure!(
        echo.echoed() >= 200,
        "the echo server saw {}",
        echo.echoed()
    );
    Ok(())
}

/// Refusals as aioquic sees them: forbidden targets (403 with Proxy-Status
/// `destination_ip_prohibited`), paths that do not match the template (400), a wrong token
/// (403) and none (407 with a Bearer challenge). No datagram reaches the canary.
#[test]
fn aioquic_sees_connect_udp_refusals_from_veil_server() -> anyhow::Result<()> {
    let dir = TempDir::new("aioquic-udp-refuse")?;
    let canary = UdpCanary::start()?;
    let port = canary.port()?;
    // Only 127.0.0.2 may be reached; the canary on 127.0.0.1 stays forbidden.
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.2/32"],
    )?;
    let prohibited = "403:destination_ip_prohibited";
    let refusals = [
        (format!("127.0.0.1:{port}"), prohibited),
        (format!("[::1]:{port}"), prohibited),
        (format!("[::ffff:127.0.0.1]:{port}"), prohibited),
        (format!("0.0.0.0:{port}"), prohibited),
        ("169.254.169.254:53".to_owned(), prohibited),
        (format!("localhost:{port}"), prohibited),
        // A bare number is refused as a malformed host (400) or as the loopback address
        // it spells (403); either way it is never dialled.
        (
            format!("2130706433:{port}"),
            "403:destination_ip_prohibited|400:http_request_error",
        ),
    ];
    let bad_paths = [
        "/.well-known/masque/udp/127.0.0.2/not-a-port/",
        "/.well-known/masque/udp/127.0.0.2/0/",
        "/.well-known/masque/udp/127.0.0.2/65536/",
        "/.well-known/masque/udp/127.0.0.2/",
        "/somewhere/else",
    ];
    let mut args = strings(&["--token", TOKEN]);
    for (target, expected) in &refusals {
        args.push("--refuse".to_owned());
        args.push(format!("{target}={expected}"));
    }
    for path in bad_paths {
        args.push("--refuse-path".to_owned());
        args.push(format!("{path}=400:http_request_error"));
    }
    udp_client(&edge, &args, refusals.len() + bad_paths.len())?;

    let target = format!("127.0.0.2:{port}");
    let wrong = [
        "--token",
        "wrong",
        "--refuse",
        &format!("{target}=403:http_request_denied"),
    ];
    udp_client(&edge, &strings(&wrong), 1)?;
    udp_client(&edge, &["--refuse".to_owned(), format!("{target}=407")], 1)?;
    thread::sleep(Duration::from_millis(200));
    ensure!(canary.reached() == 0, "a refused target was reached");
    Ok(())
}

/// `tests/interop/aioquic_masque_udp_server.py`, started on an ephemeral loopback port.
struct MasqueServer {
    proc: Proc,
    addr: SocketAddr,
    pin: String,
}

impl MasqueServer {
    fn start(dir: &TempDir, extra: &[&str]) -> anyhow::Result<Self> {
        let python = require_aioquic()?;
        let mut command = Command::new(python);
        command
            .arg(support::repo_root().join("tests/interop/aioquic_masque_udp_server.py"))
            .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
            .args(["--allow", "127.0.0.0/8"])
            .args(extra);
        let proc = Proc::spawn("aioquic-masque", command, dir.path())?;
        let pin = proc.wait_for_line("masque: certificate fingerprint ", STARTUP)?;
        let addr = proc
            .wait_for_line("masque: listening on ", STARTUP)?
            .parse()
            .context("the MASQUE server's address")?;
        Ok(Self { proc, addr, pin })
    }
}

/// `veil client` pinned to `server`, forwarding a loopback UDP port to `target`; returns
/// the process and the forward's local address.
fn forwarding_client(
    dir: &TempDir,
    server: &MasqueServer,
    target: SocketAddr,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let mut command = Command::new(support::veil_bin());
    command
        .arg("client")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .args(["--edge", &server.addr.to_string(), "--pin", &server.pin])
        .args(["--token", TOKEN])
        .args(["--socks", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--udp-forward", &format!("127.0.0.1:0={target}")]);
    let proc = Proc::spawn("client", command, dir.path())?;
    // `veil: udp forward listening on ADDR to TARGET`
    let line = proc.wait_for_line("veil: udp forward listening on ", STARTUP)?;
    let local = line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("the UDP forward's address in {line:?}"))?;
    Ok((proc, local))
}

/// Sends `FORWARD_PAYLOADS` distinct payloads from a fresh socket to `forward` and
/// expects each back, byte for byte (missing ones are resent, up to `FORWARD_ROUNDS`).
fn echo_through(forward: SocketAddr, seed: u8) -> anyhow::Result<()> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.connect(forward)?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let payloads: Vec<Vec<u8>> = (0..FORWARD_PAYLOADS)
        .map(|i| {
            let len = [1, 40, 500, 1000, 1200][i % 5].max(3);
            let mut payload = vec![seed; len];
            payload[..2].copy_from_slice(&u16::try_from(i).unwrap_or(0).to_be_bytes());
            for (j, byte) in payload.iter_mut().enumerate().skip(3) {
                *byte = u8::try_from((i * 31 + j) % 251).unwrap_or(0);
            }
            payload
        })
        .collect();
    let mut missing: Vec<bool> = vec![true; payloads.len()];
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
    let lost: Vec<usize> = payloads
        .iter()
        .zip(&missing)
        .filter(|(_, m)| **m)
        .map(|(p, _)| p.len())
        .collect();
    bail!(
        "{} of {FORWARD_PAYLOADS} payloads never came back through {forward} (their sizes: \
         {lost:?})",
        lost.len()
    )
}

/// Runs the forward check against an aioquic proxy started with `extra`; returns its
/// stdout lines for the caller's checks.
fn veil_client_forwards_through_aioquic(label: &str, extra: &[&str]) -> anyhow::Result<String> {
    let dir = TempDir::new(label)?;
    let echo = UdpEcho::start()?;
    let server = MasqueServer::start(&dir, extra)?;
    let (client, forward) = forwarding_client(&dir, &server, echo.addr)?;
    // Two local senders: two flows, so two tunnels on the one QUIC connection.
    for seed in [0xa5, 0x5a] {
        support::timed("echo through veil client", || echo_through(forward, seed))
            .with_context(|| format!("{}\n{}", server.proc.diagnostics(), client.diagnostics()))?;
    }
    ensure!(
        echo.echoed() >= 2 * FORWARD_PAYLOADS,
        "the echo server saw {}",
        echo.echoed()
    );
    let stdout = server.proc.diagnostics();
    let opened = stdout.matches("masque: tunnel ").count();
    ensure!(
        opened >= 2,
        "the proxy logged {opened} tunnel lines\n{stdout}"
    );
    ensure!(
        !stdout.contains("refused"),
        "the proxy refused a request of veil's\n{stdout}"
    );
    drop(client);
    Ok(stdout)
}

#[test]
fn veil_client_forwards_udp_through_an_aioquic_connect_udp_proxy() -> anyhow::Result<()> {
    let stdout = veil_client_forwards_through_aioquic("masque-dgram", &[])?;
    ensure!(
        stdout.matches("open (datagrams)").count() >= 2,
        "veil did not use QUIC DATAGRAM frames with a proxy that offers them\n{stdout}"
    );
    Ok(())
}

#[test]
fn veil_client_falls_back_to_capsules_with_a_proxy_without_h3_datagrams() -> anyhow::Result<()> {
    let stdout = veil_client_forwards_through_aioquic("masque-capsules", &["--no-datagrams"])?;
    ensure!(
        stdout.matches("open (capsules)").count() >= 2,
        "the tunnels did not run on capsules\n{stdout}"
    );
    Ok(())
}

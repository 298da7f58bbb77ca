//! The TCP on-ramp (`veil server --listen-tcp`): HTTP/2 and HTTP/1.1 over TLS for networks
//! that block UDP. Interop with Python's `h2` (python-hyper's HTTP/2 state machine, nobody
//! here wrote it) through `tests/interop/h2_connect.py`: CONNECT to a TCP echo with flow
//! control both ways, extended CONNECT for connect-udp with DATAGRAM capsules, and the
//! edge's refusals (egress policy, tokens) exactly as over HTTP/3. HTTP/1.1: curl as the
//! client of an HTTPS proxy (`-p -x https://…`), and Python's `ssl` with HTTP/1.1 written
//! from the RFCs (`tests/interop/h1_connect.py`: CONNECT with the edge's read backpressure,
//! the upgrade to connect-udp, refusals).
//!
//! Each scenario runs on both edge hosts that listen on TCP: tokio (`veil server`) and
//! glommio (`--runtime glommio --cores 2`, one listening socket per core in a
//! `SO_REUSEPORT` group); on glommio, connections also spread over both cores.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{Context, ensure};
use support::{Echo, Edge, Output, STARTUP, TOKEN, TempDir, UdpEcho, run_bounded};

/// Bound of one script run (its own steps time out after 20 s each).
const SCRIPT: Duration = Duration::from_secs(120);

/// The edge host under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runtime {
    Tokio,
    /// `--runtime glommio --cores 2`.
    Glommio,
}

/// Starts an edge with a TCP listener on `runtime`; returns it and the listener's address.
fn edge_with_tcp(dir: &TempDir, runtime: Runtime, args: &[&str]) -> anyhow::Result<(Edge, String)> {
    let mut all = vec!["--listen-tcp", "127.0.0.1:0"];
    if runtime == Runtime::Glommio {
        all.extend(["--runtime", "glommio", "--cores", "2"]);
    }
    all.extend_from_slice(args);
    let mut edge = Edge::start(dir.path(), &all)?;
    let tcp = edge
        .proc()
        .wait_for_line("veil: edge listening on tcp ", STARTUP)?;
    Ok((edge, tcp))
}

/// Runs `h2_connect.py` against the TCP listener `tcp` of the edge pinned as `pin` with
/// ARGS; returns its output and how many checks printed `ok`.
fn run_h2(pin: &str, tcp: &str, args: &[String]) -> anyhow::Result<(Output, usize)> {
    let python = support::require_python_h2()?;
    let mut all = ["--edge", tcp, "--pin", pin].map(String::from).to_vec();
    all.extend_from_slice(args);
    support::run_script(&python, "h2_connect.py", &all, SCRIPT)
}

/// Fails unless the script exited 0 with every one of `checks` `ok`.
fn ensure_passed(
    edge: &Edge,
    args: &[String],
    run: &(Output, usize),
    checks: usize,
) -> anyhow::Result<()> {
    support::ensure_checks(&format!("h2_connect.py {args:?}"), run, checks, || {
        edge.diagnostics()
    })
}

/// Runs the script against the TCP listener `tcp` with ARGS; fails unless every one of
/// `checks` printed `ok`.
fn python_h2(edge: &Edge, tcp: &str, args: &[String], checks: usize) -> anyhow::Result<Output> {
    let run = run_h2(edge.pin()?, tcp, args)?;
    ensure_passed(edge, args, &run, checks)?;
    Ok(run.0)
}

#[test]
fn python_h2_connect_and_connect_udp_through_the_tcp_listener() -> anyhow::Result<()> {
    connect_and_connect_udp(Runtime::Tokio)
}

#[test]
fn python_h2_connect_and_connect_udp_through_the_tcp_listener_glommio() -> anyhow::Result<()> {
    connect_and_connect_udp(Runtime::Glommio)
}

/// CONNECT 4 MiB echoed twice, connect-udp datagrams, a refusal by the egress policy.
fn connect_and_connect_udp(runtime: Runtime) -> anyhow::Result<()> {
    let dir = TempDir::new(&format!("h2-interop-{runtime:?}"))?;
    let echo = Echo::start()?;
    let udp = UdpEcho::start(b"")?;
    let (edge, tcp) = edge_with_tcp(
        &dir,
        runtime,
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let target = echo.addr().to_string();
    let args = [
        "--token",
        TOKEN,
        "--size",
        "4194304",
        "--echo",
        &target,
        "--echo",
        &target,
        "--udp-echo",
        &udp.addr().to_string(),
        "--refuse",
        "169.254.169.254:80=403:destination_ip_prohibited",
    ]
    .map(String::from);
    python_h2(&edge, &tcp, &args, 4)?;
    Ok(())
}

/// Tokens are checked on the TCP listener as on the QUIC one: none is 407, a wrong one 403.
#[test]
fn python_h2_without_or_with_a_wrong_token_is_refused() -> anyhow::Result<()> {
    tokens_are_checked(Runtime::Tokio)
}

#[test]
fn python_h2_without_or_with_a_wrong_token_is_refused_glommio() -> anyhow::Result<()> {
    tokens_are_checked(Runtime::Glommio)
}

fn tokens_are_checked(runtime: Runtime) -> anyhow::Result<()> {
    let dir = TempDir::new(&format!("h2-tokens-{runtime:?}"))?;
    let echo = Echo::start()?;
    let (edge, tcp) = edge_with_tcp(
        &dir,
        runtime,
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let target = echo.addr().to_string();
    let refuse = |expected: &str| format!("{target}={expected}");
    python_h2(&edge, &tcp, &["--refuse".into(), refuse("407")], 1)?;
    python_h2(
        &edge,
        &tcp,
        &[
            "--token".into(),
            "not-the-token".into(),
            "--refuse".into(),
            refuse("403"),
        ],
        1,
    )?;
    Ok(())
}

/// Behind a load balancer that sends PROXY protocol v2 (`--proxy-protocol`), the address
/// it names is the client's: the audit log records it, not the socket's.
#[test]
fn a_proxy_v2_header_names_the_client_the_audit_log_records() -> anyhow::Result<()> {
    proxy_v2_names_the_client(Runtime::Tokio)
}

/// `--proxy-protocol` is the engine's: on glommio it reaches every core's engine.
#[test]
fn a_proxy_v2_header_names_the_client_the_audit_log_records_glommio() -> anyhow::Result<()> {
    proxy_v2_names_the_client(Runtime::Glommio)
}

fn proxy_v2_names_the_client(runtime: Runtime) -> anyhow::Result<()> {
    let dir = TempDir::new(&format!("h2-proxy-v2-{runtime:?}"))?;
    let echo = Echo::start()?;
    let log = dir.path().join("audit.jsonl");
    let log_arg = log.to_str().context("path")?;
    let (edge, tcp) = edge_with_tcp(
        &dir,
        runtime,
        &[
            "--token",
            TOKEN,
            "--allow-target",
            "127.0.0.0/8",
            "--proxy-protocol",
            "--audit-log",
            log_arg,
        ],
    )?;
    let target = echo.addr().to_string();
    let args = [
        "--token",
        TOKEN,
        "--size",
        "65536",
        "--echo",
        &target,
        "--proxy-v2",
        "198.51.100.7:40123",
    ]
    .map(String::from);
    python_h2(&edge, &tcp, &args, 1)?;
    // The line is written as the tunnel ends.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            let record: serde_json::Value = serde_json::from_str(line)?;
            ensure!(record["client"] == "198.51.100.7:40123", "{record}");
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < give_up,
            "no audit line\n{}",
            edge.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The same edge closes a connection that starts with TLS instead of its PROXY header.
#[test]
fn without_its_proxy_header_a_connection_is_closed() -> anyhow::Result<()> {
    proxy_header_missing(Runtime::Tokio)
}

#[test]
fn without_its_proxy_header_a_connection_is_closed_glommio() -> anyhow::Result<()> {
    proxy_header_missing(Runtime::Glommio)
}

fn proxy_header_missing(runtime: Runtime) -> anyhow::Result<()> {
    let dir = TempDir::new(&format!("h2-proxy-missing-{runtime:?}"))?;
    let echo = Echo::start()?;
    let (edge, tcp) = edge_with_tcp(&dir, runtime, &["--token", TOKEN, "--proxy-protocol"])?;
    let python = support::require_python_h2()?;
    let mut command = Command::new(python);
    command
        .arg(support::repo_root().join("tests/interop/h2_connect.py"))
        .args(["--edge", &tcp, "--pin", edge.pin()?, "--token", TOKEN])
        .args(["--echo", &echo.addr().to_string(), "--timeout", "5"]);
    let output = run_bounded(command, SCRIPT)?;
    ensure!(
        !output.status.success(),
        "a connection without a PROXY header was served:\n{}",
        output.stdout
    );
    Ok(())
}

/// `veil client --transport h2` against `veil server --listen-tcp`: curl through the
/// client's SOCKS5 and HTTP proxy fronts downloads a file whole, and a UDP forward's
/// datagrams ride capsules on HTTP/2 streams.
#[test]
fn veil_client_over_http2_carries_curl_and_udp() -> anyhow::Result<()> {
    support::require_tool("curl", "curl")?;
    let dir = TempDir::new("h2-client")?;
    let origin = support::Origin::start(dir.path())?;
    let served_sum = support::write_random_file(&origin.root().join("file.bin"), 8 << 20, 0x4832)?;
    let udp = UdpEcho::start(b"")?;
    let (edge, tcp) = edge_with_tcp(
        &dir,
        Runtime::Tokio,
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let forward = format!("127.0.0.1:{}", support::free_udp_port()?);
    let client = support::Client::start(
        dir.path(),
        tcp.parse().context("the TCP listener's address")?,
        &[
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--transport",
            "h2",
            "--udp-forward",
            &format!("{forward}={}", udp.addr()),
        ],
    )?;
    let context = || format!("{}\n{}", edge.diagnostics(), client.diagnostics());
    let socks = format!("socks5h://{}", client.socks());
    for proxy in [socks.as_str(), &client.http_proxy()] {
        let downloaded = dir.path().join("downloaded.bin");
        let output = support::curl(
            &[
                "--proxy",
                proxy,
                "--write-out",
                "%{http_code}",
                "--output",
                downloaded.to_str().context("a UTF-8 path")?,
                &origin.url("file.bin"),
            ],
            Duration::from_secs(60),
        )?;
        support::check_download(&output, &downloaded, &served_sum, context)?;
    }
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 2048];
    let mut echoed = 0;
    for round in 0..40u8 {
        let payload = [round; 300];
        socket.send_to(&payload, &forward)?;
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            ensure!(
                buf[..len] == payload[..],
                "a datagram changed\n{}",
                context()
            );
            echoed += 1;
        }
        if echoed >= 10 {
            break;
        }
    }
    ensure!(echoed >= 10, "{echoed} datagrams came back\n{}", context());
    Ok(())
}

/// Script runs at most, one at a time after the first four, until both cores served one.
const MAX_RUNS: usize = 16;

/// On glommio, the kernel spreads TCP connections over the cores' listening sockets, and
/// each core's engine serves those it accepted: four clients at once, then more one at a
/// time until both cores served one; every connection is counted, each on one core.
#[test]
fn glommio_tcp_connections_are_served_on_both_cores() -> anyhow::Result<()> {
    let dir = TempDir::new("h2-glommio-cores")?;
    let echo = Echo::start()?;
    let (mut edge, tcp) = edge_with_tcp(
        &dir,
        Runtime::Glommio,
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let target = echo.addr().to_string();
    let args = ["--token", TOKEN, "--size", "1048576", "--echo", &target].map(String::from);
    let pin = edge.pin()?.to_owned();
    let runs: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| run_h2(&pin, &tcp, &args)))
            .collect();
        handles
            .into_iter()
            .map(thread::ScopedJoinHandle::join)
            .collect()
    });
    for run in runs {
        let run = run.map_err(|_| anyhow::anyhow!("a script thread panicked"))??;
        ensure_passed(&edge, &args, &run, 1)?;
    }
    let mut count = 4;
    while tcp_connections_by_core(&mut edge).len() < 2 && count < MAX_RUNS {
        python_h2(&edge, &tcp, &args, 1)?;
        count += 1;
    }

    let status = edge.proc().terminate(STARTUP)?;
    ensure!(status.success(), "the edge exited with {status}");
    let mut per_core = Vec::new();
    for core in 0..2 {
        let line = edge
            .proc()
            .wait_for_line(&format!("veil: core {core}: "), STARTUP)?;
        per_core.push(connections_of(&line).with_context(|| format!("core line {line}"))?);
    }
    ensure!(
        per_core.iter().all(|&n| n > 0),
        "after {count} connections a core served none: {per_core:?}\n{}",
        edge.diagnostics()
    );
    ensure!(
        per_core.iter().sum::<u64>() == u64::try_from(count)?,
        "{count} connections, counted per core {per_core:?}"
    );
    eprintln!("glommio TCP on-ramp: {count} connections, per core {per_core:?}");
    Ok(())
}

/// TCP connections the edge logged as closed, by core.
fn tcp_connections_by_core(edge: &mut Edge) -> HashMap<u16, usize> {
    let mut by_core = HashMap::new();
    for line in edge.proc().stderr().lines() {
        if !line.contains("TCP connection closed") {
            continue;
        }
        let core = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("core="))
            .and_then(|core| core.parse().ok());
        if let Some(core) = core {
            *by_core.entry(core).or_default() += 1;
        }
    }
    by_core
}

/// The `connections N` counter of a `veil: core N: ...` line.
fn connections_of(line: &str) -> Option<u64> {
    line.split(',')
        .find_map(|part| part.trim().strip_prefix("connections "))
        .and_then(|n| n.trim().parse().ok())
}

/// Runs `tests/interop/h1_connect.py` against the TCP listener `tcp` with ARGS; fails unless
/// every one of `checks` printed `ok`.
fn python_h1(edge: &Edge, tcp: &str, args: &[String], checks: usize) -> anyhow::Result<Output> {
    let python = support::require_aioquic()?;
    let mut all = ["--edge", tcp, "--pin", edge.pin()?]
        .map(String::from)
        .to_vec();
    all.extend_from_slice(args);
    let run = support::run_script(&python, "h1_connect.py", &all, SCRIPT)?;
    support::ensure_checks(&format!("h1_connect.py {args:?}"), &run, checks, || {
        edge.diagnostics()
    })?;
    Ok(run.0)
}

#[test]
fn http1_connect_upgrade_and_refusals_from_python() -> anyhow::Result<()> {
    http1_from_python(Runtime::Tokio)
}

#[test]
fn http1_connect_upgrade_and_refusals_from_python_glommio() -> anyhow::Result<()> {
    http1_from_python(Runtime::Glommio)
}

/// 64 MiB echoed through a CONNECT whose writer does not read at first (the edge's host
/// must stop reading its socket), connect-udp by upgrade, refusals by policy and by token.
fn http1_from_python(runtime: Runtime) -> anyhow::Result<()> {
    let dir = TempDir::new(&format!("h1-interop-{runtime:?}"))?;
    let echo = Echo::start()?;
    let udp = UdpEcho::start(b"")?;
    let (edge, tcp) = edge_with_tcp(
        &dir,
        runtime,
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let args = [
        "--token",
        TOKEN,
        "--echo",
        &echo.addr().to_string(),
        "--udp-echo",
        &udp.addr().to_string(),
        "--refuse",
        "169.254.169.254:80=403",
    ]
    .map(String::from);
    let output = python_h1(&edge, &tcp, &args, 3)?;
    eprintln!("{}", output.stdout.trim());
    let without_token = ["--refuse", "127.0.0.1:9=407"].map(String::from);
    python_h1(&edge, &tcp, &without_token, 1)?;
    Ok(())
}

#[test]
fn curl_uses_the_edge_as_an_https_proxy_over_http1() -> anyhow::Result<()> {
    curl_through_https_proxy(Runtime::Tokio)
}

#[test]
fn curl_uses_the_edge_as_an_https_proxy_over_http1_glommio() -> anyhow::Result<()> {
    curl_through_https_proxy(Runtime::Glommio)
}

/// curl, as users configure it for an HTTPS proxy: `-p` (tunnel through CONNECT) `-x
/// https://edge` with the token in `--proxy-header`; 8 MiB arrive intact; without the
/// token the CONNECT is answered 407.
fn curl_through_https_proxy(runtime: Runtime) -> anyhow::Result<()> {
    let dir = TempDir::new(&format!("h1-curl-{runtime:?}"))?;
    let origin = support::Origin::start(dir.path())?;
    let served_sum = support::write_random_file(&origin.root().join("file.bin"), 8 << 20, 0x4831)?;
    let (edge, tcp) = edge_with_tcp(
        &dir,
        runtime,
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let downloaded = dir.path().join("downloaded.bin");
    let output = support::curl_https_proxy(
        &tcp,
        Some(TOKEN),
        "%{http_code}",
        downloaded.to_str().context("a UTF-8 path")?,
        &origin.url("file.bin"),
        Duration::from_secs(60),
    )?;
    support::check_download(&output, &downloaded, &served_sum, || edge.diagnostics())?;
    let refused = support::curl_https_proxy(
        &tcp,
        None,
        "%{http_connect}",
        "/dev/null",
        &origin.url("file.bin"),
        Duration::from_secs(30),
    )?;
    ensure!(
        !refused.status.success() && refused.stdout == "407",
        "without a token: curl exit {}, CONNECT status {:?}: {}\n{}",
        refused.code(),
        refused.stdout,
        refused.stderr,
        edge.diagnostics()
    );
    Ok(())
}

/// `HAProxy` (Debian's, a PROXY protocol sender nobody here wrote) in front of the TCP
/// listener, as a load balancer is: `send-proxy-v2` toward the edge. curl goes through it
/// with the edge as its HTTPS proxy from a local port it picks; the audit log names curl's
/// address from `HAProxy`'s header, not `HAProxy`'s own.
#[test]
fn haproxy_in_front_sends_proxy_v2_and_the_audit_log_names_the_client() -> anyhow::Result<()> {
    let haproxy = support::require_tool("haproxy", "haproxy")?;
    let dir = TempDir::new("h1-haproxy")?;
    let origin = support::Origin::start(dir.path())?;
    let served_sum = support::write_random_file(&origin.root().join("file.bin"), 1 << 20, 0x4a9)?;
    let log = dir.path().join("audit.jsonl");
    let (edge, tcp) = edge_with_tcp(
        &dir,
        Runtime::Tokio,
        &[
            "--token",
            TOKEN,
            "--allow-target",
            "127.0.0.0/8",
            "--proxy-protocol",
            "--audit-log",
            log.to_str().context("path")?,
        ],
    )?;
    let front = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend front\n  bind {front}\n  default_backend edge\n\
             backend edge\n  server edge {tcp} send-proxy-v2\n"
        ),
    )?;
    let mut command = Command::new(haproxy);
    command.arg("-db").arg("-f").arg(&config);
    let _haproxy = support::Proc::spawn("haproxy", command, dir.path())?;
    support::wait_until("HAProxy listening", Duration::from_secs(10), || {
        std::net::TcpStream::connect(front).is_ok()
    })?;
    // curl's own port, so that the record can be told from HAProxy's connection.
    let curl_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let downloaded = dir.path().join("downloaded.bin");
    let output = support::curl(
        &[
            "--local-port",
            &curl_port.to_string(),
            "--proxytunnel",
            "--proxy",
            &format!("https://{front}"),
            "--proxy-insecure",
            "--proxy-header",
            &format!("Proxy-Authorization: Bearer {TOKEN}"),
            "--write-out",
            "%{http_code}",
            "--output",
            downloaded.to_str().context("a UTF-8 path")?,
            &origin.url("file.bin"),
        ],
        Duration::from_secs(30),
    )?;
    support::check_download(&output, &downloaded, &served_sum, || edge.diagnostics())?;
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            let record: serde_json::Value = serde_json::from_str(line)?;
            ensure!(
                record["client"] == format!("127.0.0.1:{curl_port}"),
                "the audit record does not name curl's address 127.0.0.1:{curl_port}: {record}"
            );
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < give_up,
            "no audit line\n{}",
            edge.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! Interop: `veil server` answers HTTP/3 CONNECT requests from aioquic (a QUIC and HTTP/3
//! implementation nobody here wrote), through `tests/interop/aioquic_connect.py`.

mod support;

use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;
use std::time::Duration;

use anyhow::ensure;
use support::{Canary, Echo, Edge, Output, TOKEN, TempDir, require_aioquic, run_bounded};

/// Bound of one script run (its own steps time out after 20 s each).
const SCRIPT: Duration = Duration::from_secs(120);

/// Runs the script against `edge` with ARGS; fails unless every check printed `ok`.
fn aioquic(edge: &Edge, args: &[String], checks: usize) -> anyhow::Result<Output> {
    let python = require_aioquic()?;
    let mut command = Command::new(python);
    command
        .arg(support::repo_root().join("tests/interop/aioquic_connect.py"))
        .args(["--edge", &edge.addr().to_string(), "--pin", edge.pin()?])
        .args(args);
    let output = support::timed("aioquic_connect.py", || run_bounded(command, SCRIPT))?;
    let passed = output
        .stdout
        .lines()
        .filter(|l| l.starts_with("ok "))
        .count();
    ensure!(
        output.status.success() && passed == checks,
        "aioquic_connect.py {args:?}: exit {}, {passed} of {checks} checks ok\n\
         stdout:\n{}\nstderr:\n{}\n{}",
        output.code(),
        output.stdout,
        output.stderr,
        edge.diagnostics()
    );
    Ok(output)
}

#[test]
fn aioquic_plain_connect_echoes_bytes_and_fin_through_veil_server() -> anyhow::Result<()> {
    let dir = TempDir::new("aioquic-echo")?;
    let echo = Echo::start()?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let target = echo.addr().to_string();
    let args = [
        "--token", TOKEN, "--size", "4194304", "--echo", &target, "--echo", &target,
    ]
    .map(String::from);
    aioquic(&edge, &args, 2)?;
    Ok(())
}

/// An edge that makes every new client prove its address with a Retry (RFC 9000 §8.1.2):
/// aioquic follows it and its tunnels work as without; the edge counts the Retry.
#[test]
fn aioquic_follows_veil_server_s_retry() -> anyhow::Result<()> {
    let dir = TempDir::new("aioquic-retry")?;
    let echo = Echo::start()?;
    let mut edge = Edge::start(
        dir.path(),
        &[
            "--token",
            TOKEN,
            "--allow-target",
            "127.0.0.0/8",
            "--retry",
            "always",
            "--metrics",
            "127.0.0.1:0",
        ],
    )?;
    let metrics = edge
        .proc()
        .wait_for_line("veil: metrics listening on ", support::STARTUP)?;
    let target = echo.addr().to_string();
    let args = ["--token", TOKEN, "--size", "65536", "--echo", &target].map(String::from);
    aioquic(&edge, &args, 1)?;
    let text = support::curl(
        &[&format!("http://{metrics}/metrics")],
        Duration::from_secs(10),
    )?
    .stdout;
    let retries: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("veil_quic_retries_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0);
    ensure!(retries >= 1.0, "no Retry counted:\n{text}");
    Ok(())
}

/// Refusals as aioquic sees them: status and Proxy-Status error for a closed port,
/// every SSRF spelling of loopback, cloud metadata, a malformed authority, a wrong
/// token (403) and no token (407 with a Bearer challenge). None reaches loopback.
#[test]
fn aioquic_sees_refusal_statuses_and_proxy_status_from_veil_server() -> anyhow::Result<()> {
    let dir = TempDir::new("aioquic-refuse")?;
    let mut canary = Canary::start()?;
    let port = canary.port()?;
    // Only 127.0.0.2 may be reached: a closed port there is a dial failure, while
    // 127.0.0.1 stays forbidden in every spelling.
    let closed = {
        let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0))?;
        listener.local_addr()?
    };
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.2/32"],
    )?;
    let prohibited = "403:destination_ip_prohibited";
    let refusals = [
        (closed.to_string(), "502:connection_refused"),
        (format!("127.0.0.1:{port}"), prohibited),
        (format!("2130706433:{port}"), prohibited),
        (format!("0x7f.1:{port}"), prohibited),
        (format!("[::ffff:127.0.0.1]:{port}"), prohibited),
        (format!("localhost:{port}"), prohibited),
        ("169.254.169.254:80".to_owned(), prohibited),
        (format!("127.1:{port}"), prohibited),
        (format!("[::1]:{port}"), prohibited),
        (format!("0.0.0.0:{port}"), prohibited),
        (format!("[::]:{port}"), prohibited),
        ("no-port".to_owned(), "400:http_request_error"),
        (format!("127.0.0.1:0{port}"), "400:http_request_error"),
    ];
    let mut args = vec!["--token".to_owned(), TOKEN.to_owned()];
    for (authority, expected) in &refusals {
        args.push("--refuse".to_owned());
        args.push(format!("{authority}={expected}"));
    }
    aioquic(&edge, &args, refusals.len())?;

    let target = format!("127.0.0.2:{}", closed.port());
    let wrong = [
        "--token",
        "wrong",
        "--refuse",
        &format!("{target}=403:http_request_denied"),
    ];
    aioquic(&edge, &wrong.map(String::from), 1)?;
    aioquic(&edge, &["--refuse".to_owned(), format!("{target}=407")], 1)?;
    ensure!(
        canary.reached()? == 0,
        "a refused authority reached loopback"
    );
    Ok(())
}

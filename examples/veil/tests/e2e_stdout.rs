//! A service whose stdout has gone away (a supervisor's log pipe closed, `veil server |
//! head -1`) still stops cleanly. Its status lines went through `println!`, which panics
//! when the write fails: SIGTERM then printed "veil: shutting down", panicked, and the
//! drain never ran. The lines are now lost instead, and the service goes on.

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use support::{Edge, TempDir, veil_bin};

/// Bound of a start (debug builds, a busy machine).
const STARTUP: Duration = Duration::from_secs(30);
/// Bound of a stop after SIGTERM.
const STOP: Duration = Duration::from_secs(30);

#[test]
fn a_tokio_edge_stops_cleanly_after_its_stdout_closed() -> anyhow::Result<()> {
    let dir = TempDir::new("stdout-edge")?;
    let args = [
        "server",
        "--listen",
        "127.0.0.1:0",
        "--drain-timeout-ms",
        "100",
    ];
    stops_cleanly_without_stdout(dir.path(), "edge", &args, "veil: edge listening on ")
}

#[cfg(target_os = "linux")]
#[test]
fn a_glommio_edge_stops_cleanly_after_its_stdout_closed() -> anyhow::Result<()> {
    let dir = TempDir::new("stdout-glommio")?;
    let args = [
        "server",
        "--runtime",
        "glommio",
        "--cores",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--drain-timeout-ms",
        "100",
    ];
    stops_cleanly_without_stdout(dir.path(), "glommio-edge", &args, "veil: glommio on ")
}

#[test]
fn a_client_stops_cleanly_after_its_stdout_closed() -> anyhow::Result<()> {
    let dir = TempDir::new("stdout-client")?;
    let edge = Edge::start(dir.path(), &[])?;
    let edge_addr = edge.addr().to_string();
    let pin = edge.pin()?;
    let args = [
        "client",
        "--edge",
        &edge_addr,
        "--pin",
        pin,
        "--socks",
        "127.0.0.1:0",
        "--drain-timeout-ms",
        "100",
    ];
    stops_cleanly_without_stdout(dir.path(), "client", &args, "veil: socks5 listening on ")
}

/// Starts `veil ARGS`, reads its stdout up to the line starting with `ready`, closes it,
/// and stops the process with SIGTERM: it must exit with success and without a panic.
fn stops_cleanly_without_stdout(
    dir: &Path,
    name: &str,
    args: &[&str],
    ready: &str,
) -> anyhow::Result<()> {
    let stderr_path = dir.join(format!("{name}.stderr"));
    let mut child = Command::new(veil_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr_path)?)
        .spawn()
        .with_context(|| format!("starting veil {args:?}"))?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let reader = match read_until(stdout, ready) {
        Ok(reader) => reader,
        Err(e) => {
            let _ = child.kill();
            bail!("{e:#}\n--- {name} stderr:\n{}", stderr());
        }
    };
    // Nobody reads its stdout any more: its next status line fails to write.
    drop(reader);
    let status = terminate(&mut child)?;
    let log = stderr();
    ensure!(!log.contains("panicked"), "{name} panicked:\n{log}");
    ensure!(status.success(), "{name} exited with {status}:\n{log}");
    Ok(())
}

/// Reads `stdout` (on a thread, so that the wait is bounded) up to a line starting with
/// `ready`; returns the reader, still open.
fn read_until(stdout: ChildStdout, ready: &str) -> anyhow::Result<BufReader<ChildStdout>> {
    let (found, result) = mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.starts_with(&ready) => {
                    let _ = found.send(reader);
                    return;
                }
                Ok(_) => {}
            }
        }
    });
    result
        .recv_timeout(STARTUP)
        .context("no ready line on stdout in time")
}

/// SIGTERM, then the exit status within [`STOP`] (SIGKILL and an error after that).
fn terminate(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    ensure!(killed.success(), "kill -TERM failed");
    let deadline = Instant::now() + STOP;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("no exit within {STOP:?} of SIGTERM")
}

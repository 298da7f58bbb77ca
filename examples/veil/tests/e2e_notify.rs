//! systemd readiness (`Type=notify`): with `NOTIFY_SOCKET` set, `veil server` sends
//! `READY=1` once it listens and `STOPPING=1` when SIGTERM starts its drain.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use anyhow::ensure;
use support::{Proc, STARTUP, TempDir, veil_bin};

#[test]
fn the_server_tells_systemd_when_it_is_ready_and_when_it_stops() -> anyhow::Result<()> {
    let dir = TempDir::new("notify")?;
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path)?;
    socket.set_read_timeout(Some(STARTUP))?;
    let mut command = Command::new(veil_bin());
    command
        .args(["server", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("NO_COLOR", "1");
    let mut server = Proc::spawn("server", command, dir.path())?;
    server.wait_for_line("veil: edge listening on ", STARTUP)?;
    let mut buf = [0u8; 64];
    let len = socket.recv(&mut buf)?;
    ensure!(
        &buf[..len] == b"READY=1",
        "got {:?}",
        String::from_utf8_lossy(&buf[..len])
    );
    let status = server.terminate(Duration::from_secs(20))?;
    ensure!(status.success(), "the server exited with {status}");
    let len = socket.recv(&mut buf)?;
    ensure!(
        &buf[..len] == b"STOPPING=1",
        "got {:?}",
        String::from_utf8_lossy(&buf[..len])
    );
    Ok(())
}

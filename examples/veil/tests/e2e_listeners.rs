//! `veil client` opens the listeners it was asked for: with `--socks` alone it does not
//! also take the default HTTP port, so a second client can run beside a first (or beside
//! anything else on 127.0.0.1:8080).

mod support;

use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;
use std::time::Duration;

use anyhow::ensure;
use support::{Edge, Proc, STARTUP, TOKEN, TempDir, veil_bin};

#[test]
fn a_client_with_socks_alone_leaves_the_default_http_port_alone() -> anyhow::Result<()> {
    let dir = TempDir::new("listeners")?;
    let edge = Edge::start(dir.path(), &["--token", TOKEN])?;
    // The default HTTP port is taken, by us if it was free (or by someone else already).
    let _taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 8080));
    let mut clients = Vec::new();
    for name in ["client-1", "client-2"] {
        let mut command = Command::new(veil_bin());
        command
            .arg("client")
            .args(["--edge", &edge.addr().to_string(), "--pin", edge.pin()?])
            .args(["--token", TOKEN, "--socks", "127.0.0.1:0"])
            .env("NO_COLOR", "1");
        let client = Proc::spawn(name, command, dir.path())?;
        client.wait_for_line("veil: socks5 listening on ", STARTUP)?;
        // The banner is printed at once: an HTTP line would follow the SOCKS5 one.
        let http = client.wait_for_line("veil: http listening on ", Duration::from_secs(2));
        ensure!(
            http.is_err(),
            "{name} opened an HTTP listener it was not asked for"
        );
        clients.push(client);
    }
    for client in &mut clients {
        ensure!(
            client.exited().is_none(),
            "a client stopped\n{}",
            client.diagnostics()
        );
    }
    Ok(())
}

//! Rules end to end, with curl through `veil client` and `veil server`: the edge's
//! `[[rule]]` denies by name and by address + port + protocol, the client's
//! `[[client.rule]]` sends a flow direct (from its own source address, never through the
//! edge) or blocks it (SOCKS5 reply 2, HTTP 403), and everything else tunnels as before.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, ensure};
use support::{Client, Edge, TOKEN, TempDir, curl, require_tool};

const REQUEST: Duration = Duration::from_secs(20);

/// An HTTP origin on one loopback address that answers every request with its own name
/// and records the address each connection came from.
struct Named {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Named {
    fn start(ip: &str, port: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((ip.parse::<IpAddr>()?, port))
            .with_context(|| format!("bind {ip}:{port}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping) = (peers.clone(), stop.clone());
        let body = format!("origin {ip}\n");
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        if let Ok(mut peers) = seen.lock() {
                            peers.push(peer.ip());
                        }
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(REQUEST));
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).is_ok() {
                            head.push(byte[0]);
                        }
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Self {
            addr,
            peers,
            stop,
            thread: Some(thread),
        })
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn peers(&self) -> Vec<IpAddr> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// curl through a proxy: (exit code, body, stderr, response head).
fn fetch(proxy: &[&str], url: &str) -> anyhow::Result<(i32, String, String)> {
    let out = curl(
        &[proxy, &["--dump-header", "/dev/stderr", url]].concat(),
        REQUEST,
    )?;
    Ok((out.code(), out.stdout, out.stderr))
}

/// The edge's file: the issue's syntax, with the port of the denied origin.
fn edge_rules(denied_port: u16) -> String {
    format!(
        r#"[server]
allow_targets = ["127.0.0.0/8"]

[[rule]]                        # names: exact or *.suffix
host = ["*.blocked.test"]
action = "deny"

[[rule]]
target = ["127.0.0.3/32"]
ports = ["{denied_port}", "7100-7200"]
protocol = ["tcp"]
action = "deny"

[[rule]]                        # the name in the tunnel's first bytes (TLS SNI, HTTP Host)
sni = ["*.sniffed.test"]
action = "deny"
"#
    )
}

/// The client's file: 127.0.0.4 direct (from 127.0.0.9), 127.0.0.5 blocked.
const CLIENT_RULES: &str = r#"[client]
direct_source = "127.0.0.9"

[[client.rule]]
target = ["127.0.0.4/32"]
action = "direct"

[[client.rule]]
target = ["127.0.0.5/32"]
action = "block"
"#;

#[test]
fn edge_and_client_rules_deny_send_direct_and_block() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("rules")?;
    let denied_port = Named::start("127.0.0.3", 0)?;
    let open_port = Named::start("127.0.0.3", 0)?;
    let direct = Named::start("127.0.0.4", 0)?;
    let blocked = Named::start("127.0.0.5", 0)?;
    let tunnelled = Named::start("127.0.0.6", 0)?;
    let edge_toml = dir.join("edge.toml");
    std::fs::write(&edge_toml, edge_rules(denied_port.addr.port()))?;
    let client_toml = dir.join("client.toml");
    std::fs::write(&client_toml, CLIENT_RULES)?;
    let edge_config = edge_toml.to_str().context("path")?;
    let edge = Edge::start(dir.path(), &["--config", edge_config, "--token", TOKEN])?;
    let client_config = client_toml.to_str().context("path")?;
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &[
            "--config",
            client_config,
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
        ],
    )?;
    let socks = format!("socks5h://{}", client.socks());
    let http = client.http_proxy();
    for (via, proxy) in [
        ("socks5", ["--proxy", socks.as_str()]),
        ("http", ["--proxytunnel", "--proxy"]),
    ] {
        let mut args: Vec<&str> = proxy.to_vec();
        if via == "http" {
            args.push(&http);
        }
        // The edge denies a name by its suffix.
        let (code, _, stderr) = fetch(&args, "http://www.blocked.test:80/")?;
        let expect_denied = |code: i32, stderr: &str| match via {
            "socks5" => code == 97 && stderr.ends_with("(2)\n"),
            _ => stderr.contains("403") && stderr.to_lowercase().contains("http_request_denied"),
        };
        ensure!(
            expect_denied(code, &stderr),
            "{via} blocked.test: exit {code}: {stderr}"
        );
        // The edge denies 127.0.0.3 on one port, not on another.
        let (code, _, stderr) = fetch(&args, &denied_port.url())?;
        ensure!(
            expect_denied(code, &stderr),
            "{via} denied port: exit {code}: {stderr}"
        );
        let (code, body, stderr) = fetch(&args, &open_port.url())?;
        ensure!(
            code == 0 && body == "origin 127.0.0.3\n",
            "{via} open port: {code} {stderr}"
        );
        // The client sends 127.0.0.4 direct, from its direct source address.
        let (code, body, stderr) = fetch(&args, &direct.url())?;
        ensure!(
            code == 0 && body == "origin 127.0.0.4\n",
            "{via} direct: {code} {stderr}"
        );
        // The client blocks 127.0.0.5.
        let (code, _, stderr) = fetch(&args, &blocked.url())?;
        let client_blocked = match via {
            "socks5" => code == 97 && stderr.ends_with("(2)\n"),
            _ => stderr.contains("403") && stderr.to_lowercase().contains("http_request_denied"),
        };
        ensure!(client_blocked, "{via} blocked: exit {code}: {stderr}");
        // No rule: through the edge.
        let (code, body, stderr) = fetch(&args, &tunnelled.url())?;
        ensure!(
            code == 0 && body == "origin 127.0.0.6\n",
            "{via} tunnel: {code} {stderr}"
        );
        // The edge reads the first bytes: a Host it denies ends the tunnel (curl sees the
        // connection reset before any answer), whatever address was dialled.
        let mut sniffed = args.clone();
        sniffed.extend(["-H", "Host: www.sniffed.test"]);
        let (code, body, stderr) = fetch(&sniffed, &tunnelled.url())?;
        ensure!(
            code != 0 && body.is_empty(),
            "{via} sniffed: {code} {stderr}"
        );
    }
    let from_edge: IpAddr = "127.0.0.1".parse()?;
    let from_client: IpAddr = "127.0.0.9".parse()?;
    ensure!(
        denied_port.peers().is_empty(),
        "a denied target was reached"
    );
    ensure!(blocked.peers().is_empty(), "a blocked target was reached");
    ensure!(
        direct.peers() == [from_client, from_client],
        "direct flows came from {:?}",
        direct.peers()
    );
    ensure!(
        tunnelled.peers() == [from_edge, from_edge] && open_port.peers() == [from_edge, from_edge],
        "tunnelled flows came from {:?} and {:?}",
        tunnelled.peers(),
        open_port.peers()
    );
    drop(client);
    drop(edge);
    Ok(())
}

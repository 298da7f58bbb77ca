//! `veil server --proxy-protocol-egress v2`: every TCP connection the edge dials for a
//! tunnel starts with a PROXY protocol v2 header naming the client and the edge address it
//! reached, before the tunnel's first byte. The origin here is the test's own: it reads the
//! header (decoded from the specification's bytes, not with veil's decoder), then answers
//! the HTTP request behind it with what the header said; curl goes through `veil client`.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use anyhow::{Context, ensure};
use support::{Client, Edge, TOKEN, TempDir, curl, require_tool};

/// The v2 signature (proxy-protocol.txt §2.2).
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// An origin that answers each connection with the source and destination of its PROXY v2
/// header (`src DST`), or `no header` when it did not start with one.
fn origin() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = BufReader::new(stream);
            let mut fixed = [0u8; 16];
            let body = if stream.read_exact(&mut fixed).is_ok() && fixed[..12] == SIGNATURE {
                // Version 2 / PROXY, then AF_INET + STREAM, then the length.
                let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
                let mut rest = vec![0u8; len];
                let _ = stream.read_exact(&mut rest);
                if fixed[12] == 0x21 && fixed[13] == 0x11 && len >= 12 {
                    let ip = |at: usize| {
                        Ipv4Addr::new(rest[at], rest[at + 1], rest[at + 2], rest[at + 3])
                    };
                    let port = |at: usize| u16::from_be_bytes([rest[at], rest[at + 1]]);
                    format!("{}:{} {}:{}", ip(0), port(8), ip(4), port(10))
                } else {
                    format!("unexpected header {:02x} {:02x}", fixed[12], fixed[13])
                }
            } else {
                "no header".to_owned()
            };
            // The request head curl sent through the tunnel, then the answer.
            let mut line = String::new();
            while stream.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let mut stream = stream.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(addr)
}

#[test]
fn the_edge_sends_a_proxy_v2_header_before_the_tunnel_bytes() -> anyhow::Result<()> {
    check(&[])
}

#[test]
fn the_glommio_edge_sends_a_proxy_v2_header_before_the_tunnel_bytes() -> anyhow::Result<()> {
    check(&["--runtime", "glommio", "--cores", "1"])
}

fn check(runtime: &[&str]) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("proxy-egress")?;
    let origin = origin()?;
    let mut args = vec![
        "--token",
        TOKEN,
        "--allow-target",
        "127.0.0.0/8",
        "--proxy-protocol-egress",
        "v2",
    ];
    args.extend_from_slice(runtime);
    let edge = Edge::start(dir.path(), &args)?;
    let client = Client::of(dir.path(), &edge, TOKEN)?;
    let out = curl(
        &[
            "--proxy",
            &format!("socks5h://{}", client.socks()),
            &format!("http://{origin}/"),
        ],
        Duration::from_secs(30),
    )?;
    ensure!(out.status.success(), "curl: {}", out.stderr);
    let (source, destination) = out
        .stdout
        .split_once(' ')
        .with_context(|| format!("the origin saw: {:?}", out.stdout))?;
    let source: SocketAddr = source.parse().context("the header's source")?;
    ensure!(
        source.ip() == Ipv4Addr::LOCALHOST && source.port() != 0,
        "source {source}"
    );
    // The edge address the client reached: its QUIC listener.
    ensure!(
        destination == edge.addr().to_string(),
        "destination {destination}, edge {}\n{}",
        edge.addr(),
        edge.diagnostics()
    );
    Ok(())
}

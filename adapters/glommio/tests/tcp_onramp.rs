//! The TCP on-ramp on the glommio edge (`Options::listen_tcp`): every core listens, bytes
//! reach the engine and its answers reach the socket, the engine's end of a connection
//! closes the socket, and shutdown closes those still open. (TLS and HTTP/2 through it:
//! `examples/veil/tests/e2e_h2.rs`, against Python's `h2`.)
#![cfg(target_os = "linux")]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use veil_engine::{Config, EdgeConfig};
use veil_glommio::{Edge, Options, StartError, available_cores};

const WAIT: Duration = Duration::from_secs(20);

fn start(listen_tcp: SocketAddr) -> Result<Edge, StartError> {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let options = Options {
        cores: available_cores().min(2),
        listen_tcp: Some(listen_tcp),
        ..Options::default()
    };
    Edge::start(Config::edge(EdgeConfig::default()), loopback, options)
}

/// Reads until the peer closes (EOF or reset); returns what came before, or panics after
/// `WAIT`.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(len) => got.extend_from_slice(buf.get(..len).unwrap_or_default()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("not closed after {:?}: {e}", started.elapsed()),
        }
    }
}

#[test]
fn bytes_that_are_not_tls_get_an_alert_and_the_connection_closed() {
    let edge = start("127.0.0.1:0".parse().expect("address")).expect("edge");
    let addr = edge.tcp_addr().expect("a TCP listener");
    assert_ne!(addr.port(), 0);
    // More connections than cores, so that each core's listener most likely takes some.
    for _ in 0..4 {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let answer = read_to_close(&mut stream);
        // A TLS alert record, if anything (content type 21), then the end.
        assert!(
            answer.is_empty() || answer.first() == Some(&21),
            "{answer:?}"
        );
    }
    let stats = edge.shutdown(Duration::ZERO).expect("shutdown");
    let tcp: u64 = stats.iter().map(|s| s.endpoint.tcp_connections_total).sum();
    assert_eq!(tcp, 4, "{stats:?}");
}

#[test]
fn shutdown_closes_connections_still_open() {
    let edge = start("127.0.0.1:0".parse().expect("address")).expect("edge");
    let addr = edge.tcp_addr().expect("a TCP listener");
    let mut stream = TcpStream::connect(addr).expect("connect");
    // Accepted by a core before the shutdown starts.
    let give_up = Instant::now() + WAIT;
    while edge
        .stats()
        .iter()
        .map(|s| s.endpoint.tcp_connections_total)
        .sum::<u64>()
        == 0
    {
        assert!(
            Instant::now() < give_up,
            "the connection was never accepted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopping = std::thread::spawn(move || edge.shutdown(Duration::from_secs(1)));
    read_to_close(&mut stream);
    stopping.join().expect("no panic").expect("shutdown");
}

#[test]
fn an_address_taken_without_reuseport_is_a_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let error = start(addr).expect_err("refused");
    assert!(matches!(error, StartError::BindTcp { .. }), "{error}");
}

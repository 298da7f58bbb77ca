//! The HTTP/1.1 on-ramp inside the engine: a TLS client on memory that writes HTTP/1.1 by
//! hand, against an edge `Endpoint`, with the host's part (including its read
//! backpressure, `tcp_wants_input`) played by the rig. curl against a real edge is in
//! `examples/veil/tests/e2e_h1.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use boring::ssl::{Ssl, SslContextBuilder, SslMethod, SslVerifyMode};

use super::tls::TlsStream;
use crate::{
    CloseReason, Config, ConnectionHandle, EdgeConfig, Endpoint, Event, Token, TunnelId, TunnelKind,
};

const TOKEN: &str = "s3cret";

/// An edge, one TCP connection to it, and a TLS client speaking HTTP/1.1 at its other end.
struct Rig {
    edge: Endpoint,
    conn: ConnectionHandle,
    tls: TlsStream,
    now: Instant,
    events: Vec<Event>,
    /// Everything the client decrypted.
    received: Vec<u8>,
    /// Ciphertext the client wrote that the edge did not want yet (the host's socket
    /// buffer, as it were).
    unread: Vec<u8>,
    buf: Vec<u8>,
}

impl Rig {
    fn new(alpn: Option<&[u8]>) -> Self {
        let now = Instant::now();
        let config = EdgeConfig {
            tokens: vec![Token::parse(TOKEN, 1).expect("token")],
            ..EdgeConfig::default()
        };
        let mut edge = Endpoint::new(Config::edge(config), now).expect("edge");
        let peer: SocketAddr = "192.0.2.7:40000".parse().expect("peer");
        let local: SocketAddr = "192.0.2.1:4433".parse().expect("local");
        let conn = edge.accept_tcp(now, peer, local).expect("accepted");
        let mut context = SslContextBuilder::new(SslMethod::tls()).expect("context");
        context.set_verify(SslVerifyMode::NONE);
        if let Some(alpn) = alpn {
            context.set_alpn_protos(alpn).expect("alpn");
        }
        let ssl = Ssl::new(&context.build()).expect("ssl");
        let mut rig = Self {
            edge,
            conn,
            tls: TlsStream::client(ssl).expect("tls"),
            now,
            events: Vec::new(),
            received: Vec::new(),
            unread: Vec::new(),
            buf: vec![0; 64 * 1024],
        };
        rig.pump();
        rig
    }

    fn send(&mut self, bytes: &[u8]) {
        assert_eq!(self.tls.write_plaintext(bytes), bytes.len());
        self.pump();
    }

    /// Moves bytes both ways until nothing moves; the edge is fed 16 KiB at a time and
    /// only while it wants input, as a host reads its socket.
    fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            self.tls.advance();
            let out = self.tls.ciphertext().to_vec();
            self.tls.consume_ciphertext(out.len());
            self.unread.extend_from_slice(&out);
            while !self.unread.is_empty() && self.edge.tcp_wants_input(self.conn) {
                let len = self.unread.len().min(16 * 1024);
                let chunk: Vec<u8> = self.unread.drain(..len).collect();
                self.edge.tcp_input(self.now, self.conn, &chunk);
                moved = true;
            }
            while let Some(conn) = self.edge.poll_tcp_ready() {
                loop {
                    let len = self.edge.tcp_transmit(self.now, conn, &mut self.buf);
                    if len == 0 {
                        break;
                    }
                    self.tls.feed(&self.buf[..len]);
                    moved = true;
                }
            }
            let before = self.received.len();
            self.tls.read_plaintext(&mut self.received, usize::MAX);
            moved |= self.received.len() > before;
            while let Some(event) = self.edge.poll_event() {
                self.events.push(event);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the rig never settled");
    }

    fn requested(&self) -> (TunnelId, TunnelKind) {
        let found = self.events.iter().rev().find_map(|event| match event {
            Event::TunnelRequest { tunnel, kind, .. } => Some((*tunnel, *kind)),
            _ => None,
        });
        found.expect("a TunnelRequest")
    }

    /// The client's decrypted bytes so far, as text, taken.
    fn take_text(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.received)).into_owned()
    }

    fn lost(&self) -> bool {
        self.events.iter().any(
            |event| matches!(event, Event::ConnectionLost { connection, .. } if *connection == self.conn),
        )
    }

    fn connect(&mut self) -> TunnelId {
        self.send(
            format!(
                "CONNECT origin.test:80 HTTP/1.1\r\nHost: origin.test:80\r\n\
                 Proxy-Authorization: Bearer {TOKEN}\r\n\r\n"
            )
            .as_bytes(),
        );
        let (tunnel, kind) = self.requested();
        assert_eq!(kind, TunnelKind::Stream);
        self.edge.accept_tunnel(tunnel).expect("accept");
        self.pump();
        assert_eq!(self.take_text(), "HTTP/1.1 200 OK\r\n\r\n");
        tunnel
    }
}

#[test]
fn a_connect_over_http1_carries_bytes_both_ways_and_ends_with_close_notify() {
    let mut rig = Rig::new(Some(b"\x08http/1.1"));
    let tunnel = rig.connect();
    rig.send(b"GET / HTTP/1.1\r\n\r\n");
    let mut out = [0u8; 64];
    let got = rig.edge.tunnel_recv(tunnel, &mut out).expect("recv");
    assert_eq!(&out[..got.len], b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(rig.edge.tunnel_send(tunnel, b"HTTP/1.1 200 OK"), Ok(15));
    rig.pump();
    assert_eq!(rig.take_text(), "HTTP/1.1 200 OK");

    // The client's close_notify is the tunnel's FIN; the edge's FIN is its close_notify.
    rig.tls.close();
    rig.pump();
    let got = rig.edge.tunnel_recv(tunnel, &mut out).expect("recv fin");
    assert_eq!((got.len, got.fin), (0, true));
    assert!(!rig.lost(), "the edge's side may still send");
    assert_eq!(rig.edge.tunnel_send(tunnel, b"last words"), Ok(10));
    rig.edge.tunnel_finish(tunnel).expect("finish");
    rig.pump();
    assert_eq!(rig.take_text(), "last words");
    assert!(
        rig.tls.peer_closed(),
        "no close_notify: the client cannot tell an end"
    );
    assert!(rig.events.iter().any(|event| matches!(
        event,
        Event::TunnelClosed { tunnel: t, reason: CloseReason::Finished } if *t == tunnel
    )));
    assert!(rig.lost(), "the connection outlived its tunnel");
}

#[test]
fn a_client_that_offers_no_alpn_is_served_http1() {
    let mut rig = Rig::new(None);
    rig.connect();
}

#[test]
fn without_the_token_407_and_with_a_wrong_one_403_then_the_connection_closes() {
    let mut rig = Rig::new(Some(b"\x08http/1.1"));
    rig.send(b"CONNECT origin.test:80 HTTP/1.1\r\nHost: origin.test:80\r\n\r\n");
    let text = rig.take_text();
    assert!(
        text.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
        "{text}"
    );
    assert!(text.contains("proxy-authenticate: Bearer\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(rig.tls.peer_closed() && rig.lost());

    let mut rig = Rig::new(Some(b"\x08http/1.1"));
    rig.send(b"CONNECT origin.test:80 HTTP/1.1\r\nProxy-Authorization: Bearer nope\r\n\r\n");
    assert!(rig.take_text().starts_with("HTTP/1.1 403 Forbidden\r\n"));
    assert_eq!(rig.edge.stats().auth_failures, 1);
    assert!(
        !rig.events
            .iter()
            .any(|event| matches!(event, Event::TunnelRequest { .. }))
    );
}

#[test]
fn a_plain_get_is_405_and_a_malformed_head_400() {
    let mut rig = Rig::new(Some(b"\x08http/1.1"));
    rig.send(b"GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    assert!(
        rig.take_text()
            .starts_with("HTTP/1.1 405 Method Not Allowed\r\n")
    );
    assert!(rig.lost());

    let mut rig = Rig::new(Some(b"\x08http/1.1"));
    rig.send(b"CONNECT origin.test:80 HTTP/1.1\r\nBroken header\r\n\r\n");
    assert!(rig.take_text().starts_with("HTTP/1.1 400 Bad Request\r\n"));
    assert!(rig.lost());
}

#[test]
fn an_upgrade_to_connect_udp_is_101_and_carries_datagrams_in_capsules() {
    let mut rig = Rig::new(Some(b"\x08http/1.1"));
    rig.send(
        format!(
            "GET /.well-known/masque/udp/example.test/53/ HTTP/1.1\r\nHost: edge.test\r\n\
             Connection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\
             Proxy-Authorization: Bearer {TOKEN}\r\n\r\n"
        )
        .as_bytes(),
    );
    let (tunnel, kind) = rig.requested();
    assert_eq!(kind, TunnelKind::Udp);
    rig.edge.accept_tunnel(tunnel).expect("accept");
    rig.pump();
    let text = rig.take_text();
    assert!(
        text.starts_with(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n"
        ),
        "{text}"
    );
    let payload = b"dns question";
    let mut capsule = vec![0x00, u8::try_from(payload.len() + 1).expect("short"), 0x00];
    capsule.extend_from_slice(payload);
    rig.send(&capsule);
    let mut out = [0u8; 128];
    let len = rig
        .edge
        .tunnel_recv_datagram(tunnel, &mut out)
        .expect("datagram")
        .expect("one queued");
    assert_eq!(&out[..len], payload);
    assert_eq!(
        rig.edge.tunnel_send_datagram(tunnel, b"dns answer"),
        Ok(true)
    );
    rig.pump();
    assert_eq!(
        rig.received,
        [&[0x00, 11, 0x00][..], b"dns answer"].concat()
    );
}

/// 4 MiB from the client while the application reads 16 KiB at a time: the edge asks its
/// host to stop reading (HTTP/1.1 has no flow control), holds a bounded amount, and loses
/// or reorders nothing.
#[test]
fn a_slow_reader_stops_the_hosts_reads_without_loss() {
    let mut rig = Rig::new(Some(b"\x08http/1.1"));
    let tunnel = rig.connect();
    let total = 4 * 1024 * 1024;
    let data: Vec<u8> = (0..total)
        .map(|i| u8::try_from(i * 7 % 251).unwrap_or(0))
        .collect();
    for chunk in data.chunks(256 * 1024) {
        assert_eq!(rig.tls.write_plaintext(chunk), chunk.len());
    }
    let mut received = Vec::with_capacity(total);
    let mut out = vec![0u8; 16 * 1024];
    let mut held_back = 0usize;
    for _ in 0..100_000 {
        rig.pump();
        held_back = held_back.max(rig.unread.len());
        match rig.edge.tunnel_recv(tunnel, &mut out) {
            Ok(got) => received.extend_from_slice(&out[..got.len]),
            Err(error) => panic!("recv failed: {error:?}"),
        }
        if received.len() == total {
            break;
        }
    }
    assert_eq!(received.len(), total);
    assert!(received == data, "bytes changed on the way");
    assert!(
        held_back > 2 * 1024 * 1024,
        "the edge never stopped reading (at most {held_back} bytes were held back)"
    );
}

/// An aborted tunnel ends its connection without `close_notify`: the client sees a
/// truncated stream, never a complete one.
#[test]
fn an_aborted_tunnel_ends_without_close_notify() {
    let mut rig = Rig::new(Some(b"\x08http/1.1"));
    let tunnel = rig.connect();
    assert_eq!(rig.edge.tunnel_send(tunnel, b"partial"), Ok(7));
    rig.pump();
    rig.edge.tunnel_abort(tunnel).expect("abort");
    rig.pump();
    assert_eq!(rig.take_text(), "partial");
    assert!(rig.lost());
    assert!(!rig.tls.peer_closed(), "an abort looked like a clean end");
}

/// A client that opens TLS and sends half a request head is closed at the start deadline
/// (slowloris).
#[test]
fn a_request_head_that_never_completes_is_cut_off_at_the_start_deadline() {
    let mut rig = Rig::new(Some(b"\x08http/1.1"));
    rig.send(b"CONNECT origin.test:80 HTTP/1.1\r\nHost: orig");
    let deadline = rig.edge.poll_timeout().expect("a deadline");
    assert!(deadline <= rig.now + super::HANDSHAKE_TIMEOUT);
    rig.now += super::HANDSHAKE_TIMEOUT + Duration::from_millis(1);
    rig.edge.handle_timeout(rig.now);
    rig.pump();
    assert!(rig.lost(), "a half head kept the connection open");
}

//! The TCP on-ramp inside the engine: a TLS client (`BoringSSL` on memory buffers) and an
//! HTTP/2 client session against an edge `Endpoint`, every byte moved by hand, so that the
//! whole path (TLS, HTTP/2, the endpoint's requests, tunnels and their ends) runs without
//! a socket. Interop with HTTP/2 stacks nobody here wrote is elsewhere (`crate::h2`'s tests
//! against the `h2` crate, `examples/veil/tests/e2e_h2.rs` with Python's `h2`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use boring::ssl::{Ssl, SslContextBuilder, SslMethod, SslVerifyMode};

use super::tls::TlsStream;
use crate::h2;
use crate::{
    CloseReason, Config, ConnectionHandle, EdgeConfig, Endpoint, Event, Token, TunnelId, TunnelKind,
};

const TOKEN: &str = "s3cret";
const PEER: &str = "192.0.2.7:40000";
const LOCAL: &str = "192.0.2.1:4433";

/// A TLS + HTTP/2 client of the edge, on memory.
struct Client {
    tls: TlsStream,
    session: h2::Session,
    plaintext: Vec<u8>,
}

impl Client {
    fn new(alpn: &[u8]) -> Self {
        let mut context = SslContextBuilder::new(SslMethod::tls()).expect("context");
        context.set_verify(SslVerifyMode::NONE);
        context.set_alpn_protos(alpn).expect("alpn");
        let ssl = Ssl::new(&context.build()).expect("ssl");
        Self {
            tls: TlsStream::client(ssl).expect("tls"),
            session: h2::Session::new(h2::Role::Client, h2::Limits::default()),
            plaintext: Vec::new(),
        }
    }
}

/// An edge, one TCP connection to it, and the client at its other end.
struct Rig {
    edge: Endpoint,
    conn: ConnectionHandle,
    client: Client,
    now: Instant,
    events: Vec<Event>,
    buf: Vec<u8>,
    /// Raw frames were written beside the client's session (see `pump`).
    raw: bool,
}

fn edge_config() -> EdgeConfig {
    EdgeConfig {
        tokens: vec![Token::parse(TOKEN, 1).expect("token")],
        ..EdgeConfig::default()
    }
}

impl Rig {
    fn new(config: EdgeConfig, alpn: &[u8]) -> Self {
        Self::with_prefix(config, alpn, b"")
    }

    /// A rig whose connection starts with `prefix` (a PROXY header) before TLS.
    fn with_prefix(config: EdgeConfig, alpn: &[u8], prefix: &[u8]) -> Self {
        let now = Instant::now();
        let mut edge = Endpoint::new(Config::edge(config), now).expect("edge");
        let peer: SocketAddr = PEER.parse().expect("peer");
        let local: SocketAddr = LOCAL.parse().expect("local");
        let conn = edge.accept_tcp(now, peer, local).expect("accepted");
        if !prefix.is_empty() {
            edge.tcp_input(now, conn, prefix);
        }
        let mut rig = Self {
            edge,
            conn,
            client: Client::new(alpn),
            now,
            events: Vec::new(),
            buf: vec![0; 64 * 1024],
            raw: false,
        };
        rig.pump();
        rig
    }

    /// Moves bytes both ways until neither side has anything more to say.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            self.client.tls.advance();
            loop {
                let pending = self.client.session.pending_output();
                if pending.is_empty() {
                    break;
                }
                let chunk = &pending[..pending.len().min(16 * 1024)];
                let taken = self.client.tls.write_plaintext(chunk);
                if taken == 0 {
                    break;
                }
                self.client.session.consume_output(taken);
            }
            let out = self.client.tls.ciphertext().to_vec();
            if !out.is_empty() {
                self.client.tls.consume_ciphertext(out.len());
                self.edge.tcp_input(self.now, self.conn, &out);
                moved = true;
            }
            while let Some(conn) = self.edge.poll_tcp_ready() {
                loop {
                    let len = self.edge.tcp_transmit(self.now, conn, &mut self.buf);
                    if len == 0 {
                        break;
                    }
                    self.client.tls.feed(&self.buf[..len]);
                    moved = true;
                }
            }
            self.client.plaintext.clear();
            self.client
                .tls
                .read_plaintext(&mut self.client.plaintext, usize::MAX);
            if !self.client.plaintext.is_empty() {
                // A test that writes raw frames past the client's session may leave it
                // confused by the edge's answers: only the edge's behaviour is checked then.
                let received = self.client.session.recv(self.now, &self.client.plaintext);
                assert!(
                    received.is_ok() || self.raw,
                    "the edge broke HTTP/2: {:?}",
                    received.err().map(|e| e.reason)
                );
                moved = true;
            }
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

    /// The client's next event on `stream` (others are dropped).
    fn client_event(&mut self, stream: u64) -> Option<h2::Event> {
        while let Some((id, event)) = self.client.session.poll_event() {
            if id == stream {
                return Some(event);
            }
        }
        None
    }

    fn request(&mut self, headers: &[(&[u8], &[u8])]) -> u64 {
        let stream = self
            .client
            .session
            .send_request(headers, false)
            .expect("request");
        self.pump();
        stream
    }

    /// The tunnel the edge reported for the last request.
    fn requested(&mut self) -> (TunnelId, TunnelKind) {
        let found = self.events.iter().rev().find_map(|event| match event {
            Event::TunnelRequest { tunnel, kind, .. } => Some((*tunnel, *kind)),
            _ => None,
        });
        found.expect("a TunnelRequest")
    }

    fn status(&mut self, stream: u64) -> String {
        match self.client_event(stream) {
            Some(h2::Event::Headers { list, .. }) => list
                .iter()
                .find(|(name, _)| name == b":status")
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
                .expect(":status"),
            _ => panic!("no response head"),
        }
    }

    fn lost(&self) -> bool {
        self.events
            .iter()
            .any(|event| matches!(event, Event::ConnectionLost { connection, .. } if *connection == self.conn))
    }
}

fn connect_headers(token: Option<&str>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut headers = vec![
        (b":method".to_vec(), b"CONNECT".to_vec()),
        (b":authority".to_vec(), b"example.test:443".to_vec()),
    ];
    if let Some(token) = token {
        headers.push((
            b"proxy-authorization".to_vec(),
            format!("Bearer {token}").into_bytes(),
        ));
    }
    headers
}

fn refs(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
    headers
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect()
}

#[test]
fn a_connect_over_http2_carries_bytes_both_ways_and_ends_with_both_fins() {
    let mut rig = Rig::new(edge_config(), b"\x02h2");
    let headers = connect_headers(Some(TOKEN));
    let stream = rig.request(&refs(&headers));
    let (tunnel, kind) = rig.requested();
    assert_eq!(kind, TunnelKind::Stream);
    rig.edge.accept_tunnel(tunnel).expect("accept");
    rig.pump();
    assert_eq!(rig.status(stream), "200");

    rig.client
        .session
        .send_body(stream, b"hello edge", false)
        .expect("send");
    rig.pump();
    let mut out = [0u8; 64];
    let got = rig.edge.tunnel_recv(tunnel, &mut out).expect("recv");
    assert_eq!(&out[..got.len], b"hello edge");
    assert!(!got.fin);

    assert_eq!(rig.edge.tunnel_send(tunnel, b"hello client"), Ok(12));
    rig.pump();
    assert!(matches!(rig.client_event(stream), Some(h2::Event::Data)));
    let len = rig
        .client
        .session
        .recv_body(stream, &mut out)
        .expect("body");
    assert_eq!(&out[..len], b"hello client");

    // The client's END_STREAM reaches the host as a FIN; the host's FIN ends the tunnel.
    rig.client
        .session
        .send_body(stream, b"", true)
        .expect("fin");
    rig.pump();
    let got = rig.edge.tunnel_recv(tunnel, &mut out).expect("recv fin");
    assert_eq!((got.len, got.fin), (0, true));
    rig.edge.tunnel_finish(tunnel).expect("finish");
    rig.pump();
    assert!(rig.events.iter().any(|event| matches!(
        event,
        Event::TunnelClosed { tunnel: t, reason: CloseReason::Finished } if *t == tunnel
    )));
    assert!(
        rig.client.session.stream_finished(stream)
            || matches!(rig.client_event(stream), Some(h2::Event::Finished))
    );
}

#[test]
fn a_request_without_the_token_is_407_and_a_wrong_one_403_as_over_http3() {
    let mut rig = Rig::new(edge_config(), b"\x02h2");
    let none = connect_headers(None);
    let stream = rig.request(&refs(&none));
    assert_eq!(rig.status(stream), "407");
    let wrong = connect_headers(Some("not-it"));
    let stream = rig.request(&refs(&wrong));
    assert_eq!(rig.status(stream), "403");
    assert!(
        !rig.events
            .iter()
            .any(|event| matches!(event, Event::TunnelRequest { .. }))
    );
    assert_eq!(rig.edge.stats().auth_failures, 2);
}

/// 4 MiB from the client while the host reads 16 KiB at a time: HTTP/2 flow control holds
/// the client back, nothing is lost or reordered.
#[test]
fn a_slow_reader_holds_the_client_back_through_flow_control_without_loss() {
    let mut rig = Rig::new(edge_config(), b"\x02h2");
    let headers = connect_headers(Some(TOKEN));
    let stream = rig.request(&refs(&headers));
    let (tunnel, _) = rig.requested();
    rig.edge.accept_tunnel(tunnel).expect("accept");
    rig.pump();
    assert_eq!(rig.status(stream), "200");

    let total = 4 * 1024 * 1024;
    let data: Vec<u8> = (0..total)
        .map(|i| u8::try_from(i * 7 % 251).unwrap_or(0))
        .collect();
    let (mut sent, mut received) = (0, Vec::with_capacity(total));
    let mut out = vec![0u8; 16 * 1024];
    for _ in 0..100_000 {
        if sent < total {
            match rig.client.session.send_body(stream, &data[sent..], false) {
                Ok(taken) => sent += taken,
                Err(h2::Error::StreamBlocked | h2::Error::Done) => {}
                Err(e) => panic!("send failed: {e:?}"),
            }
        }
        rig.pump();
        if let Ok(got) = rig.edge.tunnel_recv(tunnel, &mut out) {
            received.extend_from_slice(&out[..got.len]);
        }
        if received.len() == total {
            break;
        }
    }
    assert_eq!(received.len(), total);
    assert!(received == data, "bytes changed on the way");
}

#[test]
fn connect_udp_over_http2_carries_datagrams_in_capsules() {
    let mut rig = Rig::new(edge_config(), b"\x02h2");
    let bearer = format!("Bearer {TOKEN}");
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"CONNECT"),
        (b":protocol", b"connect-udp"),
        (b":scheme", b"https"),
        (b":path", b"/.well-known/masque/udp/example.test/53/"),
        (b":authority", b"edge.test"),
        (b"capsule-protocol", b"?1"),
        (b"proxy-authorization", bearer.as_bytes()),
    ];
    let stream = rig.request(&headers);
    let (tunnel, kind) = rig.requested();
    assert_eq!(kind, TunnelKind::Udp);
    rig.edge.accept_tunnel(tunnel).expect("accept");
    rig.pump();
    assert_eq!(rig.status(stream), "200");

    // A DATAGRAM capsule (type 0, length, context 0, payload).
    let payload = b"dns question";
    let mut capsule = vec![0x00, u8::try_from(payload.len() + 1).expect("short"), 0x00];
    capsule.extend_from_slice(payload);
    rig.client
        .session
        .send_body(stream, &capsule, false)
        .expect("capsule");
    rig.pump();
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
    assert!(matches!(rig.client_event(stream), Some(h2::Event::Data)));
    let len = rig
        .client
        .session
        .recv_body(stream, &mut out)
        .expect("body");
    assert_eq!(&out[..len], [&[0x00, 11, 0x00][..], b"dns answer"].concat());
}

#[test]
fn a_client_that_never_completes_tls_is_closed_at_the_handshake_timeout() {
    let now = Instant::now();
    let mut edge = Endpoint::new(Config::edge(edge_config()), now).expect("edge");
    let conn = edge
        .accept_tcp(
            now,
            PEER.parse().expect("peer"),
            LOCAL.parse().expect("local"),
        )
        .expect("accepted");
    edge.tcp_input(now, conn, b"\x16\x03\x01");
    assert!(
        edge.poll_timeout()
            .is_some_and(|at| at <= now + super::HANDSHAKE_TIMEOUT)
    );
    let later = now + super::HANDSHAKE_TIMEOUT + Duration::from_millis(1);
    edge.handle_timeout(later);
    let mut buf = [0u8; 1024];
    while let Some(ready) = edge.poll_tcp_ready() {
        while edge.tcp_transmit(later, ready, &mut buf) > 0 {}
    }
    let mut lost = false;
    while let Some(event) = edge.poll_event() {
        lost |= matches!(event, Event::ConnectionLost { connection, .. } if connection == conn);
    }
    assert!(lost, "the connection outlived its handshake deadline");
    assert_eq!(edge.stats().connections, 0);
}

/// Bytes piled up before the handshake completes are bounded: past 256 KiB the connection
/// ends instead of buffering them.
#[test]
fn a_flood_before_the_handshake_completes_ends_the_connection() {
    let now = Instant::now();
    let mut edge = Endpoint::new(Config::edge(edge_config()), now).expect("edge");
    let conn = edge
        .accept_tcp(
            now,
            PEER.parse().expect("peer"),
            LOCAL.parse().expect("local"),
        )
        .expect("accepted");
    // Half a megabyte at once, before any handshake: refused before it is buffered.
    edge.tcp_input(now, conn, &vec![0x16; 512 * 1024]);
    let mut buf = [0u8; 1024];
    while let Some(ready) = edge.poll_tcp_ready() {
        while edge.tcp_transmit(now, ready, &mut buf) > 0 {}
    }
    let reason = std::iter::from_fn(|| edge.poll_event()).find_map(|event| match event {
        Event::ConnectionLost { connection, reason } if connection == conn => Some(reason),
        _ => None,
    });
    let reason = reason.expect("the connection kept buffering");
    assert!(reason.contains("too many bytes"), "{reason}");
}

#[test]
fn a_client_that_offers_only_protocols_the_edge_lacks_is_turned_away() {
    let rig = Rig::new(edge_config(), b"\x02h3\x06spdy/3");
    assert!(
        rig.lost(),
        "a connection with no common protocol stayed open"
    );
}

/// A frame HTTP/2 forbids (DATA on stream 0) is a connection error: GOAWAY, then the
/// connection ends and is reported lost.
#[test]
fn a_protocol_error_from_the_client_ends_the_connection() {
    let mut rig = Rig::new(edge_config(), b"\x02h2");
    //# RFC 9113 §6.1: "If a DATA frame is received whose Stream Identifier field is 0x00,
    //# the recipient MUST respond with a connection error (Section 5.4.1) of type
    //# PROTOCOL_ERROR."
    let frame = [0, 0, 1, 0x0, 0, 0, 0, 0, 0, 0xff];
    assert_eq!(rig.client.tls.write_plaintext(&frame), frame.len());
    rig.pump();
    assert!(rig.lost(), "the connection outlived a protocol error");
}

/// Behind a load balancer that sends a PROXY header, the client is the address it names:
/// the request reaches the host with it.
#[test]
fn a_proxy_protocol_header_names_the_client_requests_are_judged_by() {
    let config = EdgeConfig {
        proxy_protocol: true,
        ..edge_config()
    };
    let line = b"PROXY TCP4 203.0.113.9 192.0.2.1 5555 443\r\n";
    let mut rig = Rig::with_prefix(config, b"\x02h2", line);
    let headers = connect_headers(Some(TOKEN));
    rig.request(&refs(&headers));
    let client = rig.events.iter().find_map(|event| match event {
        Event::TunnelRequest { client, .. } => Some(client.peer),
        _ => None,
    });
    assert_eq!(client, Some("203.0.113.9:5555".parse().expect("addr")));
}

/// An edge that requires the header closes a connection that starts with TLS instead.
#[test]
fn without_the_required_proxy_header_the_connection_is_closed() {
    let config = EdgeConfig {
        proxy_protocol: true,
        ..edge_config()
    };
    let rig = Rig::new(config, b"\x02h2");
    assert!(
        rig.lost(),
        "a connection without its PROXY header stayed open"
    );
}

/// A veil client over the TCP transport (`Transport::H2`) and an edge, both engines, the
/// bytes of their one TCP connection moved by hand.
struct Pair {
    client: Endpoint,
    edge: Endpoint,
    /// The client's and the edge's handle of the connection, once dialled.
    link: Option<(ConnectionHandle, ConnectionHandle)>,
    now: Instant,
    client_events: Vec<Event>,
    edge_events: Vec<Event>,
    buf: Vec<u8>,
    /// Whether UDP gets through between them (QUIC); TCP always does.
    udp: bool,
}

impl Pair {
    fn new() -> Self {
        Self::with_transport(crate::Transport::H2, false)
    }

    fn with_transport(transport: crate::Transport, udp: bool) -> Self {
        let now = Instant::now();
        let edge = Endpoint::new(Config::edge(edge_config()), now).expect("edge");
        let pin = edge.certificate_fingerprint().expect("fingerprint");
        let mut config = crate::ClientConfig::new(
            LOCAL.parse().expect("edge address"),
            "localhost",
            crate::Verify::Pin(pin),
        );
        config.local_addr = Some(PEER.parse().expect("client address"));
        config.token = Some(crate::Secret::new(TOKEN));
        config.transport = transport;
        config.h3_retry = Duration::from_secs(60);
        let client = Endpoint::new(Config::client(config), now).expect("client");
        Self {
            client,
            edge,
            link: None,
            now,
            client_events: Vec::new(),
            edge_events: Vec::new(),
            buf: vec![0; 64 * 1024],
            udp,
        }
    }

    /// Moves QUIC datagrams both ways (or drops them, UDP blocked); whether any moved.
    fn move_datagrams(&mut self) -> bool {
        let mut moved = false;
        let (client_addr, edge_addr): (SocketAddr, SocketAddr) =
            (PEER.parse().expect("peer"), LOCAL.parse().expect("edge"));
        while let Some(t) = self.client.poll_transmit(self.now, &mut self.buf) {
            moved = true;
            let size = t.segment_size.unwrap_or(t.len).max(1);
            let bytes = self.buf[..t.len].to_vec();
            for datagram in bytes.chunks(size) {
                if self.udp {
                    let meta = crate::RecvMeta {
                        from: client_addr,
                        to: edge_addr,
                    };
                    self.edge
                        .handle_datagram(self.now, meta, &mut datagram.to_vec());
                }
            }
        }
        while let Some(t) = self.edge.poll_transmit(self.now, &mut self.buf) {
            moved = true;
            let size = t.segment_size.unwrap_or(t.len).max(1);
            let bytes = self.buf[..t.len].to_vec();
            for datagram in bytes.chunks(size) {
                let meta = crate::RecvMeta {
                    from: edge_addr,
                    to: client_addr,
                };
                self.client
                    .handle_datagram(self.now, meta, &mut datagram.to_vec());
            }
        }
        moved
    }

    /// Lets `by` pass on both engines' clocks, firing their timers.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while self.now < until {
            let next = [self.client.poll_timeout(), self.edge.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(until)
                .clamp(self.now + Duration::from_millis(1), until);
            self.now = next;
            self.client.handle_timeout(self.now);
            self.edge.handle_timeout(self.now);
            self.pump();
        }
    }

    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = self.move_datagrams();
            while let Some(event) = self.client.poll_event() {
                moved = true;
                if let Event::TcpDial { connection, to } = event {
                    assert_eq!(to, LOCAL.parse().expect("edge address"));
                    let accepted = self
                        .edge
                        .accept_tcp(self.now, PEER.parse().expect("peer"), to)
                        .expect("accepted");
                    self.link = Some((connection, accepted));
                    self.client.tcp_connected(self.now, connection);
                } else {
                    self.client_events.push(event);
                }
            }
            while let Some(event) = self.edge.poll_event() {
                moved = true;
                self.edge_events.push(event);
            }
            let Some((ours, theirs)) = self.link else {
                if !moved {
                    return;
                }
                continue;
            };
            while self.client.poll_tcp_ready().is_some() {}
            loop {
                let len = self.client.tcp_transmit(self.now, ours, &mut self.buf);
                if len == 0 {
                    break;
                }
                self.edge.tcp_input(self.now, theirs, &self.buf[..len]);
                moved = true;
            }
            while self.edge.poll_tcp_ready().is_some() {}
            loop {
                let len = self.edge.tcp_transmit(self.now, theirs, &mut self.buf);
                if len == 0 {
                    break;
                }
                self.client.tcp_input(self.now, ours, &self.buf[..len]);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the pair never settled");
    }

    fn edge_request(&self) -> TunnelId {
        self.edge_events
            .iter()
            .rev()
            .find_map(|event| match event {
                Event::TunnelRequest { tunnel, .. } => Some(*tunnel),
                _ => None,
            })
            .expect("a TunnelRequest at the edge")
    }
}

#[test]
fn a_veil_client_over_http2_opens_tunnels_that_carry_bytes_and_datagrams() {
    let mut pair = Pair::new();
    let target = crate::TunnelTarget::new(crate::Name::new("example.test").expect("name"), 443);
    let tunnel = pair.client.open_tunnel(pair.now, &target).expect("open");
    pair.pump();
    assert!(pair.link.is_some(), "the client never asked to dial");
    let at_edge = pair.edge_request();
    pair.edge.accept_tunnel(at_edge).expect("accept");
    pair.pump();
    assert!(
        pair.client_events
            .iter()
            .any(|event| matches!(event, Event::TunnelOpened { tunnel: t } if *t == tunnel))
    );
    assert_eq!(pair.client.tunnel_send(tunnel, b"over tcp"), Ok(8));
    pair.pump();
    let mut out = [0u8; 64];
    let got = pair.edge.tunnel_recv(at_edge, &mut out).expect("recv");
    assert_eq!(&out[..got.len], b"over tcp");
    assert_eq!(pair.edge.tunnel_send(at_edge, b"and back"), Ok(8));
    pair.pump();
    let got = pair.client.tunnel_recv(tunnel, &mut out).expect("recv");
    assert_eq!(&out[..got.len], b"and back");

    // A UDP tunnel on the same connection: its datagrams ride capsules.
    let udp_target = crate::TunnelTarget::new(crate::Name::new("dns.test").expect("name"), 53);
    let udp = pair
        .client
        .open_udp_tunnel(pair.now, &udp_target)
        .expect("open udp");
    pair.pump();
    let udp_at_edge = pair.edge_request();
    assert_ne!(udp_at_edge, at_edge);
    pair.edge.accept_tunnel(udp_at_edge).expect("accept udp");
    pair.pump();
    assert_eq!(pair.client.tunnel_send_datagram(udp, b"question"), Ok(true));
    pair.pump();
    let len = pair
        .edge
        .tunnel_recv_datagram(udp_at_edge, &mut out)
        .expect("datagram")
        .expect("queued");
    assert_eq!(&out[..len], b"question");
    assert_eq!(
        pair.edge.tunnel_send_datagram(udp_at_edge, b"answer"),
        Ok(true)
    );
    pair.pump();
    let len = pair
        .client
        .tunnel_recv_datagram(udp, &mut out)
        .expect("datagram")
        .expect("queued");
    assert_eq!(&out[..len], b"answer");
    assert_eq!(pair.client.stats().tcp_connections_total, 0);
    assert_eq!(pair.edge.stats().tcp_connections_total, 1);
}

/// A dial that fails is a lost connection: the client backs off and asks again.
#[test]
fn a_failed_dial_is_retried_after_the_backoff() {
    let mut pair = Pair::new();
    let target = crate::TunnelTarget::new(crate::Name::new("example.test").expect("name"), 443);
    pair.client.open_tunnel(pair.now, &target).expect("open");
    let first = loop {
        match pair.client.poll_event() {
            Some(Event::TcpDial { connection, .. }) => break connection,
            Some(_) => {}
            None => panic!("no dial asked for"),
        }
    };
    pair.client.tcp_closed(pair.now, first);
    while pair.client.poll_event().is_some() {}
    let retry = pair.client.poll_timeout().expect("a retry timer");
    pair.client.handle_timeout(retry);
    let again = std::iter::from_fn(|| pair.client.poll_event()).find_map(|event| match event {
        Event::TcpDial { connection, .. } => Some(connection),
        _ => None,
    });
    assert!(
        again.is_some_and(|second| second != first),
        "no second dial"
    );
}

/// `Transport::Auto` where UDP is blocked: the QUIC attempt never answers, a TCP attempt
/// races it after `FALLBACK_DELAY`, and the tunnel opens over HTTP/2.
#[test]
fn auto_falls_back_to_http2_when_udp_is_blocked() {
    let mut pair = Pair::with_transport(crate::Transport::Auto, false);
    let target = crate::TunnelTarget::new(crate::Name::new("example.test").expect("name"), 443);
    let tunnel = pair.client.open_tunnel(pair.now, &target).expect("open");
    pair.pump();
    assert!(
        pair.link.is_none(),
        "TCP dialled before HTTP/3 had its chance"
    );
    pair.advance(crate::FALLBACK_DELAY + Duration::from_millis(50));
    assert!(pair.link.is_some(), "no fallback to TCP");
    let at_edge = pair.edge_request();
    pair.edge.accept_tunnel(at_edge).expect("accept");
    pair.pump();
    assert!(
        pair.client_events
            .iter()
            .any(|event| matches!(event, Event::TunnelOpened { tunnel: t } if *t == tunnel))
    );
    assert_eq!(pair.edge.stats().tcp_connections_total, 1);
    // The QUIC attempt that lost is gone; new tunnels go to HTTP/2.
    assert_eq!(pair.client.stats().connections, 1);
}

/// `Transport::Auto` where nothing gets through: UDP unanswered and every TCP dial refused
/// at once. A failed HTTP/2 racer waits a backoff of its own before the next: without it
/// the client dialled in a tight loop (125,000 refused connections in 5 s, measured).
#[test]
fn auto_backs_off_when_its_tcp_racer_is_refused() {
    let mut pair = Pair::with_transport(crate::Transport::Auto, false);
    let target = crate::TunnelTarget::new(crate::Name::new("example.test").expect("name"), 443);
    pair.client.open_tunnel(pair.now, &target).expect("open");
    let mut now = pair.now;
    let end = now + Duration::from_secs(5);
    let mut dials = 0;
    // Past 10 dials the answer is known: stop rather than loop 5 s of a storm.
    while now < end && dials <= 10 {
        while pair.client.poll_transmit(now, &mut pair.buf).is_some() {}
        while let Some(event) = pair.client.poll_event() {
            if let Event::TcpDial { connection, .. } = event {
                dials += 1;
                pair.client.tcp_closed(now, connection);
            }
        }
        let next = pair.client.poll_timeout().unwrap_or(end);
        now = next.max(now + Duration::from_millis(1)).min(end);
        pair.client.handle_timeout(now);
    }
    assert!((2..=10).contains(&dials), "{dials} TCP dials in 5 s");
}

/// `Transport::Auto` where UDP gets through: HTTP/3 wins and nothing is dialled over TCP.
#[test]
fn auto_uses_http3_when_udp_gets_through() {
    let mut pair = Pair::with_transport(crate::Transport::Auto, true);
    let target = crate::TunnelTarget::new(crate::Name::new("example.test").expect("name"), 443);
    pair.client.open_tunnel(pair.now, &target).expect("open");
    pair.pump();
    pair.advance(crate::FALLBACK_DELAY * 3);
    assert!(pair.link.is_none(), "TCP dialled although HTTP/3 answered");
    pair.edge_request();
    assert_eq!(pair.edge.stats().tcp_connections_total, 0);
}

/// After a fallback, HTTP/3 is tried again once `h3_retry` has passed: when UDP is back,
/// new tunnels go to a fresh HTTP/3 connection while the one on HTTP/2 goes on.
#[test]
fn auto_goes_back_to_http3_after_the_retry_when_udp_is_back() {
    let mut pair = Pair::with_transport(crate::Transport::Auto, false);
    let target = crate::TunnelTarget::new(crate::Name::new("example.test").expect("name"), 443);
    let first = pair.client.open_tunnel(pair.now, &target).expect("open");
    pair.pump();
    pair.advance(crate::FALLBACK_DELAY + Duration::from_millis(50));
    let first_at_edge = pair.edge_request();
    pair.edge.accept_tunnel(first_at_edge).expect("accept");
    pair.pump();
    let quic_before = pair.edge.stats().connections_total - pair.edge.stats().tcp_connections_total;
    assert_eq!(quic_before, 0, "a QUIC connection got through a UDP block");

    pair.udp = true;
    pair.advance(Duration::from_secs(61));
    let quic_after = pair.edge.stats().connections_total - pair.edge.stats().tcp_connections_total;
    assert_eq!(quic_after, 1, "HTTP/3 was not tried again");
    let second = pair.client.open_tunnel(pair.now, &target).expect("open");
    pair.pump();
    let second_at_edge = pair.edge_request();
    assert_ne!(second_at_edge, first_at_edge);
    pair.edge.accept_tunnel(second_at_edge).expect("accept");
    pair.pump();
    assert!(
        pair.client_events
            .iter()
            .any(|event| matches!(event, Event::TunnelOpened { tunnel: t } if *t == second))
    );
    // The first tunnel still carries bytes on HTTP/2.
    assert_eq!(pair.client.tunnel_send(first, b"still here"), Ok(10));
    pair.pump();
    let mut out = [0u8; 32];
    let got = pair
        .edge
        .tunnel_recv(first_at_edge, &mut out)
        .expect("recv");
    assert_eq!(&out[..got.len], b"still here");
}

/// One raw HTTP/2 frame (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("short");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Rapid reset (CVE-2023-44487): a client that opens streams and resets them at once, over
/// and over, is cut off with GOAWAY and counted.
#[test]
fn a_rapid_reset_flood_closes_the_connection_and_is_counted() {
    let mut rig = Rig::new(edge_config(), b"\x02h2");
    rig.raw = true;
    let mut encoder = loona_hpack::Encoder::new();
    let bearer = format!("Bearer {TOKEN}");
    let mut flood = Vec::new();
    for i in 0..1500u32 {
        let block = encoder.encode([
            (&b":method"[..], &b"CONNECT"[..]),
            (b":authority", b"example.test:443"),
            (b"proxy-authorization", bearer.as_bytes()),
        ]);
        let stream = 2 * i + 1;
        // HEADERS with END_HEADERS, then RST_STREAM(CANCEL).
        flood.extend(frame(0x1, 0x4, stream, &block));
        flood.extend(frame(0x3, 0x0, stream, &8u32.to_be_bytes()));
    }
    assert_eq!(rig.client.tls.write_plaintext(&flood), flood.len());
    rig.pump();
    assert!(rig.lost(), "the flood did not close the connection");
    assert_eq!(rig.edge.stats().http2_bounds.rapid_reset, 1);
    let requests = rig
        .events
        .iter()
        .filter(|event| matches!(event, Event::TunnelRequest { .. }))
        .count();
    // In one burst, a stream reset before its request was read never reaches the host.
    assert_eq!(requests, 0, "reset requests reached the host");
    let text = crate::metrics::encode_text(&rig.edge.stats());
    assert!(
        text.contains("veil_http2_bounds_hit_total{bound=\"rapid_reset\"} 1"),
        "{text}"
    );
}

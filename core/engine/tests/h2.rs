//! The HTTP/2 session against an implementation nobody here wrote: hyper's `h2`, as a
//! client (CONNECT echo, extended CONNECT, flow control under a slow reader, a reset) and
//! as a server (our client's CONNECT echo), over an in-memory duplex pipe.

use std::collections::HashMap;
use std::future::poll_fn;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use veil_engine::h2::{Error, Event, Limits, Role, Session};

/// A decoded header list.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// One tunnel's bytes, as the test's application sees them.
#[derive(Debug, Default)]
struct Tunnel {
    /// Bytes still to send, from `sent` on.
    to_send: Vec<u8>,
    sent: usize,
    /// Send `END_STREAM` once `to_send` is out.
    fin_queued: bool,
    fin_sent: bool,
    /// Everything received, in order.
    received: Vec<u8>,
    /// The peer's `END_STREAM` was reached.
    finished: bool,
}

/// What the application on top of a session does; shared by both roles.
#[derive(Debug, Default)]
struct App {
    /// The client side (it opens `request`); otherwise the server side, which answers
    /// every request with 200 and finishes when the peer finishes.
    client: bool,
    /// Server: send back what arrives, and finish when the peer finishes.
    echo: bool,
    /// Bytes read per stream per step (a slow reader), 0 for no limit.
    read_per_step: usize,
    /// Client: the request to open, and what to send on it.
    request: Option<(Fields, Vec<u8>)>,
    tunnels: HashMap<u64, Tunnel>,
    heads: Vec<(u64, Fields)>,
    resets: Vec<(u64, u64)>,
}

impl App {
    /// Handles events and moves bytes; returns whether it should run again without
    /// waiting for the transport (a slow reader with bytes left).
    fn step(&mut self, session: &mut Session) -> bool {
        if let Some((head, body)) = self.request.take() {
            let head: Vec<(&[u8], &[u8])> = head.iter().map(|(n, v)| (&n[..], &v[..])).collect();
            let id = session.send_request(&head, false).expect("a stream");
            self.tunnels.insert(
                id,
                Tunnel {
                    to_send: body,
                    fin_queued: true,
                    ..Tunnel::default()
                },
            );
        }
        // Reading can queue events (`Finished` once the buffer drains): turn until none.
        loop {
            let (events, again) = self.turn(session);
            if events == 0 {
                return again;
            }
        }
    }

    /// Handles the queued events, then moves bytes; returns how many events there were
    /// and whether a slow reader left bytes unread.
    fn turn(&mut self, session: &mut Session) -> (usize, bool) {
        let mut events = 0;
        while let Some((id, event)) = session.poll_event() {
            events += 1;
            match event {
                Event::Headers { list, .. } => {
                    if !self.client {
                        session
                            .send_response(id, &[(b":status", b"200")], false)
                            .expect("response");
                        self.tunnels.entry(id).or_default();
                    }
                    self.heads.push((id, list));
                }
                Event::Data | Event::GoAway(_) => {}
                Event::Finished => {
                    let tunnel = self.tunnels.entry(id).or_default();
                    tunnel.finished = true;
                    tunnel.fin_queued = true;
                }
                Event::Reset(code) => self.resets.push((id, code)),
            }
        }
        let mut again = false;
        let mut buf = vec![0; 64 << 10];
        for (&id, tunnel) in &mut self.tunnels {
            let limit = if self.read_per_step == 0 {
                usize::MAX
            } else {
                self.read_per_step
            };
            let mut read = 0;
            while read < limit {
                let want = buf.len().min(limit - read);
                match session.recv_body(id, &mut buf[..want]) {
                    Ok(n) => {
                        read += n;
                        tunnel.received.extend_from_slice(&buf[..n]);
                        if self.echo {
                            tunnel.to_send.extend_from_slice(&buf[..n]);
                        }
                    }
                    Err(_) => break,
                }
            }
            again |= read >= limit;
            while tunnel.sent < tunnel.to_send.len() {
                match session.send_body(id, &tunnel.to_send[tunnel.sent..], false) {
                    Ok(n) => tunnel.sent += n,
                    Err(Error::StreamBlocked) => break,
                    Err(e) => panic!("send_body: {e}"),
                }
            }
            if tunnel.fin_queued && !tunnel.fin_sent && tunnel.sent == tunnel.to_send.len() {
                session.send_body(id, &[], true).expect("END_STREAM");
                tunnel.fin_sent = true;
            }
        }
        while session.writable_next().is_some() {}
        (events, again)
    }

    fn all_done(&self) -> bool {
        !self.tunnels.is_empty() && self.tunnels.values().all(|t| t.finished && t.fin_sent)
    }
}

/// Moves bytes between the session and the pipe, and runs the application, until the
/// peer closes the pipe (or, with `until_done`, the application's tunnels are all done).
async fn pump(io: DuplexStream, mut session: Session, mut app: App, until_done: bool) -> App {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf = vec![0; 64 << 10];
    loop {
        let again = app.step(&mut session);
        let out = session.pending_output();
        let out = out[..out.len().min(64 << 10)].to_vec();
        if until_done && app.all_done() && out.is_empty() {
            return app;
        }
        tokio::select! {
            read = rd.read(&mut buf) => {
                let n = read.expect("read");
                if n == 0 {
                    return app;
                }
                session.recv(Instant::now(), &buf[..n]).expect("no connection error");
            }
            written = wr.write(&out), if !out.is_empty() => {
                session.consume_output(written.expect("write"));
            }
            () = tokio::time::sleep(Duration::from_millis(1)), if again => {}
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let [low, high, ..] = i.to_le_bytes();
            low.wrapping_mul(31).wrapping_add(seed) ^ high
        })
        .collect()
}

/// Sends all of `data` on an h2 stream, as its flow control allows.
async fn send_all(stream: &mut h2::SendStream<Bytes>, data: &[u8], fin: bool) {
    let mut rest = data;
    while !rest.is_empty() {
        stream.reserve_capacity(rest.len().min(256 << 10));
        let capacity = poll_fn(|cx| stream.poll_capacity(cx))
            .await
            .expect("open stream")
            .expect("capacity");
        let n = capacity.min(rest.len());
        stream
            .send_data(Bytes::copy_from_slice(&rest[..n]), false)
            .expect("send_data");
        rest = &rest[n..];
    }
    if fin {
        stream.send_data(Bytes::new(), true).expect("END_STREAM");
    }
}

/// Reads an h2 body to its end, returning flow-control credit as it goes.
async fn read_all(body: &mut h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        body.flow_control()
            .release_capacity(chunk.len())
            .expect("release");
        out.extend_from_slice(&chunk);
    }
    out
}

fn header<'a>(list: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    list.iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| &v[..])
}

/// An h2 client connected to one of our server sessions running `app`.
async fn h2_client_against(
    app: App,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<()>,
    tokio::task::JoinHandle<App>,
) {
    let (client_io, server_io) = tokio::io::duplex(64 << 10);
    let server = tokio::spawn(pump(
        server_io,
        Session::new(Role::Server, Limits::default()),
        app,
        false,
    ));
    let (send_request, connection) = h2::client::handshake(client_io).await.expect("handshake");
    let connection = tokio::spawn(async move {
        connection.await.expect("h2 client connection");
    });
    (send_request, connection, server)
}

#[tokio::test]
async fn h2_client_connect_echoes_one_mib_both_ways() {
    let app = App {
        echo: true,
        ..App::default()
    };
    let (mut send_request, connection, server) = h2_client_against(app).await;
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("example.com:443")
        .body(())
        .unwrap();
    let (response, mut stream) = send_request.send_request(request, false).unwrap();
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let sent = pattern(1 << 20, 7);
    let ((), echoed) = tokio::join!(send_all(&mut stream, &sent, true), read_all(&mut body));
    assert!(echoed == sent, "the echo differs");
    // The h2 connection ends once no handle refers to it.
    drop((stream, body, send_request));
    connection.await.unwrap();
    let app = server.await.unwrap();
    let (_, head) = &app.heads[0];
    assert_eq!(header(head, ":method"), Some(&b"CONNECT"[..]));
    assert_eq!(header(head, ":authority"), Some(&b"example.com:443"[..]));
    assert!(app.tunnels.values().all(|t| t.finished && t.fin_sent));
}

#[tokio::test]
async fn h2_client_extended_connect_carries_the_protocol() {
    let (send_request, connection, server) = h2_client_against(App::default()).await;
    let mut send_request = send_request.ready().await.unwrap();
    // The server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) must have arrived first.
    for _ in 0..1000 {
        if send_request.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(send_request.is_extended_connect_protocol_enabled());
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("https://example.com/.well-known/masque/udp/192.0.2.6/443/")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("connect-udp"));
    let (response, mut stream) = send_request.send_request(request, false).unwrap();
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    stream.send_data(Bytes::new(), true).unwrap();
    let mut body = response.into_body();
    assert!(read_all(&mut body).await.is_empty());
    drop((stream, body, send_request));
    connection.await.unwrap();
    let app = server.await.unwrap();
    let (_, head) = &app.heads[0];
    assert_eq!(header(head, ":protocol"), Some(&b"connect-udp"[..]));
    assert_eq!(header(head, ":scheme"), Some(&b"https"[..]));
    assert_eq!(
        header(head, ":path"),
        Some(&b"/.well-known/masque/udp/192.0.2.6/443/"[..])
    );
}

#[tokio::test]
async fn h2_client_four_mib_to_a_slow_reader_arrive_whole_and_in_order() {
    let app = App {
        read_per_step: 8 << 10,
        ..App::default()
    };
    let (mut send_request, connection, server) = h2_client_against(app).await;
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("example.com:443")
        .body(())
        .unwrap();
    let (response, mut stream) = send_request.send_request(request, false).unwrap();
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    let sent = pattern(4 << 20, 3);
    send_all(&mut stream, &sent, true).await;
    // Wait for our END_STREAM (the server finishes when the client's body is all read).
    let mut body = response.into_body();
    let back = read_all(&mut body).await;
    assert!(back.is_empty());
    drop((stream, body, send_request));
    connection.await.unwrap();
    let app = server.await.unwrap();
    let tunnel = app.tunnels.values().next().unwrap();
    assert!(tunnel.finished);
    assert!(tunnel.received == sent, "lost or reordered bytes");
}

#[tokio::test]
async fn h2_client_reset_is_seen_as_reset() {
    let (mut send_request, connection, server) = h2_client_against(App::default()).await;
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("example.com:443")
        .body(())
        .unwrap();
    let (response, mut stream) = send_request.send_request(request, false).unwrap();
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    stream.send_reset(h2::Reason::CANCEL);
    drop(response);
    // A second request makes sure the reset went through before we hang up.
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("example.com:443")
        .body(())
        .unwrap();
    let (response, mut stream2) = send_request.send_request(request, false).unwrap();
    response.await.expect("response");
    stream2.send_reset(h2::Reason::NO_ERROR);
    drop((stream, stream2, send_request));
    connection.await.unwrap();
    let app = server.await.unwrap();
    assert_eq!(app.resets[0], (1, 0x8));
}

#[tokio::test]
async fn our_client_connect_against_an_h2_server_one_mib_both_ways() {
    let (client_io, server_io) = tokio::io::duplex(64 << 10);
    let h2_server = tokio::spawn(async move {
        let mut connection = h2::server::handshake(server_io).await.expect("handshake");
        let mut seen = Vec::new();
        while let Some(request) = connection.accept().await {
            // Our client hangs up without GOAWAY once its tunnel is done.
            let Ok((request, mut respond)) = request else {
                break;
            };
            seen.push((request.method().clone(), request.uri().clone()));
            tokio::spawn(async move {
                let mut send = respond
                    .send_response(http::Response::new(()), false)
                    .expect("response");
                let mut body = request.into_body();
                while let Some(Ok(chunk)) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    send_all(&mut send, &chunk, false).await;
                }
                let _ = send.send_data(Bytes::new(), true);
            });
        }
        seen
    });
    let sent = pattern(1 << 20, 11);
    let app = App {
        request: Some((
            vec![
                (b":method".to_vec(), b"CONNECT".to_vec()),
                (b":authority".to_vec(), b"example.com:443".to_vec()),
            ],
            sent.clone(),
        )),
        client: true,
        ..App::default()
    };
    let app = pump(
        client_io,
        Session::new(Role::Client, Limits::default()),
        app,
        true,
    )
    .await;
    let (_, head) = &app.heads[0];
    assert_eq!(header(head, ":status"), Some(&b"200"[..]));
    let tunnel = app.tunnels.values().next().unwrap();
    assert!(tunnel.received == sent, "the echo differs");
    // Our side hung up: the h2 server sees the connection end.
    let seen = h2_server.await.unwrap();
    assert_eq!(seen[0].0, http::Method::CONNECT);
    assert_eq!(seen[0].1.authority().unwrap().as_str(), "example.com:443");
}

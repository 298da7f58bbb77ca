//! The HTTP/1.1 session on its own: heads, the tunnel both ways, ends, bounds.

use super::*;

fn headers(session: &mut Session) -> Vec<(Vec<u8>, Vec<u8>)> {
    match session.poll_event() {
        Some((STREAM, Event::Headers { list, end_stream })) => {
            assert!(!end_stream);
            list
        }
        other => panic!("expected a request head, got {other:?}"),
    }
}

fn output(session: &mut Session) -> String {
    let text = String::from_utf8_lossy(session.pending_output()).into_owned();
    let len = session.pending_output().len();
    session.consume_output(len);
    text
}

fn read_all(session: &mut Session) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 1000];
    while let Ok(n) = session.recv_body(STREAM, &mut buf) {
        all.extend_from_slice(&buf[..n]);
    }
    all
}

fn tunnel(head: &[u8]) -> Session {
    let mut session = Session::new();
    session.recv(head).expect("a valid head");
    headers(&mut session);
    session
        .send_response(STREAM, &[(b":status", b"200")], false)
        .expect("response");
    session
}

#[test]
fn a_head_in_pieces_then_a_tunnel_both_ways() {
    let mut session = Session::new();
    let head = b"CONNECT origin.example:80 HTTP/1.1\r\nHost: origin.example:80\r\n\r\nearly";
    for byte in &head[..head.len() - 6] {
        session.recv(&[*byte]).expect("valid so far");
        assert!(session.poll_event().is_none());
        assert!(session.awaiting_request());
    }
    session.recv(&head[head.len() - 6..]).expect("complete");
    let list = headers(&mut session);
    assert_eq!(
        list[1],
        (b":authority".to_vec(), b"origin.example:80".to_vec())
    );
    assert_eq!(session.poll_event(), Some((STREAM, Event::Data)));
    assert_eq!(session.open_streams(), 1);
    // Bytes sent before the answer wait for the tunnel.
    assert_eq!(session.stream_capacity(STREAM), Err(Error::StreamClosed));
    session
        .send_response(STREAM, &[(b":status", b"200")], false)
        .expect("response");
    assert_eq!(output(&mut session), "HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(read_all(&mut session), b"early");
    session.recv(b" and later").expect("tunnel bytes");
    assert_eq!(session.poll_event(), Some((STREAM, Event::Data)));
    assert_eq!(read_all(&mut session), b" and later");
    assert_eq!(session.send_body(STREAM, b"answer", false), Ok(6));
    assert_eq!(output(&mut session), "answer");
    // The peer ends its side; ours goes on until we end it.
    session.peer_closed();
    assert_eq!(session.poll_event(), Some((STREAM, Event::Finished)));
    assert!(session.stream_finished(STREAM));
    assert!(!session.wants_input());
    assert!(!session.is_closed());
    assert_eq!(session.send_body(STREAM, b"last", true), Ok(4));
    assert!(session.finished_sending() && session.clean_end() && session.is_closed());
    assert_eq!(output(&mut session), "last");
}

#[test]
fn the_peers_end_is_reported_after_its_bytes_are_read() {
    let mut session = tunnel(b"CONNECT a.example:1 HTTP/1.1\r\n\r\n");
    session.recv(b"tail").expect("bytes");
    session.peer_closed();
    assert_eq!(session.poll_event(), Some((STREAM, Event::Data)));
    assert_eq!(session.poll_event(), None);
    assert!(!session.stream_finished(STREAM));
    assert_eq!(read_all(&mut session), b"tail");
    assert_eq!(session.poll_event(), Some((STREAM, Event::Finished)));
}

#[test]
fn a_refusal_is_written_and_ends_the_connection_cleanly() {
    let mut session = Session::new();
    session
        .recv(b"CONNECT a.example:1 HTTP/1.1\r\n\r\n")
        .expect("head");
    headers(&mut session);
    session
        .send_response(
            STREAM,
            &[(b":status", b"407"), (b"proxy-authenticate", b"Bearer")],
            true,
        )
        .expect("refusal");
    assert!(session.is_closed() && session.clean_end());
    assert_eq!(session.open_streams(), 0);
    assert_eq!(
        output(&mut session),
        "HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Bearer\r\n\
         Connection: close\r\nContent-Length: 0\r\n\r\n"
    );
    // Whatever follows is dropped, never buffered.
    session.recv(&[0u8; 4096]).expect("ignored");
    assert_eq!(session.poll_event(), None);
    assert!(!session.wants_input());
}

#[test]
fn malformed_and_oversized_heads_are_answered_then_closed() {
    let mut session = Session::new();
    let error = session
        .recv(b"CONNECT a.example:1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        .expect_err("a body is refused");
    assert_eq!(error.reason, "a request body");
    assert!(output(&mut session).starts_with("HTTP/1.1 400 Bad Request\r\n"));
    assert!(session.is_closed() && session.clean_end());

    let mut session = Session::new();
    session
        .recv(b"CONNECT a.example:1 HTTP/1.1\r\n")
        .expect("start");
    let filler = vec![b'a'; 1000];
    let mut refused = None;
    for _ in 0..MAX_HEAD / 1000 + 2 {
        let mut line = b"x-filler: ".to_vec();
        line.extend_from_slice(&filler);
        line.extend_from_slice(b"\r\n");
        if let Err(error) = session.recv(&line) {
            refused = Some(error);
            break;
        }
    }
    assert!(refused.is_some(), "an endless head must be refused");
    assert!(output(&mut session).starts_with("HTTP/1.1 431 "));
}

#[test]
fn input_stops_at_the_high_water_mark_and_resumes_when_read() {
    let mut session = tunnel(b"CONNECT a.example:1 HTTP/1.1\r\n\r\n");
    let chunk = vec![9u8; 64 * 1024];
    let mut fed = 0;
    while session.wants_input() {
        session.recv(&chunk).expect("bytes");
        fed += chunk.len();
        assert!(fed <= BODY_HIGH_WATER + chunk.len(), "never stopped");
    }
    let mut buf = vec![0u8; 16 * 1024];
    session.recv_body(STREAM, &mut buf).expect("read");
    assert!(session.wants_input());
    assert_eq!(read_all(&mut session).len() + buf.len(), fed);
}

#[test]
fn output_is_bounded_and_the_stream_reported_when_room_returns() {
    let mut session = tunnel(b"CONNECT a.example:1 HTTP/1.1\r\n\r\n");
    output(&mut session);
    let big = vec![1u8; MAX_OUTPUT + 1000];
    assert_eq!(session.send_body(STREAM, &big, true), Ok(MAX_OUTPUT));
    assert!(!session.finished_sending(), "fin applies only to all of it");
    assert_eq!(
        session.send_body(STREAM, b"x", false),
        Err(Error::StreamBlocked)
    );
    assert_eq!(session.writable_next(), None);
    session.consume_output(500);
    assert_eq!(session.writable_next(), Some(STREAM));
    assert_eq!(session.writable_next(), None);
    assert_eq!(session.stream_capacity(STREAM), Ok(500));
}

#[test]
fn a_reset_aborts_without_a_clean_end_and_drops_unsent_output() {
    let mut session = tunnel(b"CONNECT a.example:1 HTTP/1.1\r\n\r\n");
    session.send_body(STREAM, b"unsent", false).expect("queued");
    session.reset_stream(STREAM, 0x10c);
    assert!(session.is_closed());
    assert!(!session.clean_end());
    assert!(session.pending_output().is_empty());
    assert!(!session.has_stream(STREAM));
    assert_eq!(
        session.recv_body(STREAM, &mut [0u8; 4]),
        Err(Error::UnknownStream)
    );

    // Closing with the tunnel unfinished is an abort too.
    let mut session = tunnel(b"CONNECT a.example:1 HTTP/1.1\r\n\r\n");
    session.close();
    assert!(session.is_closed() && !session.clean_end());
}

#[test]
fn after_a_complete_answer_a_no_error_reset_ends_cleanly() {
    let mut session = tunnel(b"CONNECT a.example:1 HTTP/1.1\r\n\r\n");
    session.send_body(STREAM, b"all", true).expect("sent");
    session.reset_stream(STREAM, 0);
    assert!(session.is_closed() && session.clean_end());
    assert_eq!(output(&mut session), "HTTP/1.1 200 OK\r\n\r\nall");
}

#[test]
fn goaway_ends_an_idle_connection_and_spares_a_tunnel() {
    let mut idle = Session::new();
    idle.send_goaway();
    assert!(idle.is_closed() && idle.clean_end());

    let mut busy = tunnel(b"CONNECT a.example:1 HTTP/1.1\r\n\r\n");
    busy.send_goaway();
    assert!(!busy.is_closed());
    assert_eq!(busy.send_body(STREAM, b"on", false), Ok(2));
}

#[test]
fn an_upgrade_is_answered_with_101_and_carries_capsules() {
    let mut session = Session::new();
    session
        .recv(
            b"GET /.well-known/masque/udp/192.0.2.1/53/ HTTP/1.1\r\nHost: edge\r\n\
              Connection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n",
        )
        .expect("head");
    let list = headers(&mut session);
    assert_eq!(list[1], (b":protocol".to_vec(), b"connect-udp".to_vec()));
    session
        .send_response(
            STREAM,
            &[(b":status", b"200"), (b"capsule-protocol", b"?1")],
            false,
        )
        .expect("response");
    assert!(output(&mut session).starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    // A DATAGRAM capsule (type 0, length 2, context 0, one byte).
    session.recv(&[0x00, 0x02, 0x00, 0x41]).expect("capsule");
    assert_eq!(session.poll_event(), Some((STREAM, Event::Data)));
    assert_eq!(read_all(&mut session), [0x00, 0x02, 0x00, 0x41]);
}

#[test]
fn a_peer_that_leaves_mid_head_ends_the_connection() {
    let mut session = Session::new();
    session.recv(b"CONNECT a.exa").expect("partial");
    session.peer_closed();
    assert!(session.is_closed());
    assert_eq!(session.poll_event(), None);
}

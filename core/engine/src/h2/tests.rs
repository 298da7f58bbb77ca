//! The session against a hand-driven peer: frames built here, output decoded here.

use std::time::{Duration, Instant};

use veil_proto::Writer;
use veil_proto::h2::{
    ErrorCode, FRAME_HEADER_LEN, Frame, FrameHeader, PREFACE, SettingId, encode_settings, flags,
    frame_type,
};

use super::*;

/// A frame the session wrote: type, flags, stream, payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Out {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Out {
    fn code(&self) -> u32 {
        let at = if self.kind == frame_type::GOAWAY {
            4
        } else {
            0
        };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

fn bytes(frame: &Frame<'_>) -> Vec<u8> {
    let mut buf = vec![0; frame.encoded_len()];
    frame.encode(&mut Writer::new(&mut buf)).unwrap();
    buf
}

fn settings(pairs: &[(SettingId, u32)]) -> Vec<u8> {
    let mut buf = vec![0; 9 + 6 * pairs.len()];
    encode_settings(false, pairs, &mut Writer::new(&mut buf)).unwrap();
    buf
}

fn drain(session: &mut Session) -> Vec<Out> {
    let out = session.pending_output().to_vec();
    session.consume_output(out.len());
    let mut rest = &out[..];
    if rest.starts_with(PREFACE) {
        rest = &rest[PREFACE.len()..];
    }
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let header = FrameHeader::decode(rest).unwrap();
        let len = header.frame_len();
        frames.push(Out {
            kind: header.frame_type,
            flags: header.flags,
            stream: header.stream_id,
            payload: rest[FRAME_HEADER_LEN..len].to_vec(),
        });
        rest = &rest[len..];
    }
    frames
}

fn events(session: &mut Session) -> Vec<(u64, Event)> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

/// The client side of a test: an HPACK encoder and the clock.
struct Peer {
    hpack: loona_hpack::Encoder<'static>,
    now: Instant,
}

impl Peer {
    fn new() -> Self {
        Self {
            hpack: loona_hpack::Encoder::new(),
            now: Instant::now(),
        }
    }

    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        self.hpack
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    fn connect(&mut self, stream_id: u32, end_stream: bool) -> Vec<u8> {
        let block = self.block(&[(":method", "CONNECT"), (":authority", "example.com:443")]);
        bytes(&Frame::Headers {
            stream_id,
            fragment: &block,
            end_stream,
            end_headers: true,
            priority: None,
            padding: None,
        })
    }
}

fn data(stream_id: u32, data: &[u8], end_stream: bool) -> Vec<u8> {
    bytes(&Frame::Data {
        stream_id,
        data,
        end_stream,
        padding: None,
    })
}

fn rst(stream_id: u32, code: ErrorCode) -> Vec<u8> {
    bytes(&Frame::RstStream {
        stream_id,
        error_code: code,
    })
}

fn window_update(stream_id: u32, increment: u32) -> Vec<u8> {
    bytes(&Frame::WindowUpdate {
        stream_id,
        increment,
    })
}

/// A server that has seen the client preface and an empty SETTINGS, output drained.
fn server(limits: Limits) -> (Session, Peer) {
    server_with(limits, &[])
}

fn server_with(limits: Limits, client_settings: &[(SettingId, u32)]) -> (Session, Peer) {
    let peer = Peer::new();
    let mut session = Session::new(Role::Server, limits);
    let mut start = PREFACE.to_vec();
    start.extend(settings(client_settings));
    session.recv(peer.now, &start).unwrap();
    let out = drain(&mut session);
    assert_eq!(out[0].kind, frame_type::SETTINGS);
    assert!(
        out.iter()
            .any(|f| f.kind == frame_type::SETTINGS && f.flags == flags::ACK)
    );
    (session, peer)
}

fn assert_connection_error(
    session: &mut Session,
    result: Result<(), ConnectionError>,
    code: ErrorCode,
) {
    assert_eq!(result.map_err(|e| e.code), Err(u64::from(code.0)));
    assert!(session.is_closed());
    let out = drain(session);
    let goaway = out.last().expect("a GOAWAY");
    assert_eq!(goaway.kind, frame_type::GOAWAY);
    assert_eq!(goaway.code(), code.0);
    assert!(
        session.recv(Instant::now(), &[]).is_err(),
        "errors are sticky"
    );
}

fn rst_codes(out: &[Out]) -> Vec<(u32, u32)> {
    out.iter()
        .filter(|f| f.kind == frame_type::RST_STREAM)
        .map(|f| (f.stream, f.code()))
        .collect()
}

#[test]
fn server_start_announces_settings_and_connection_window() {
    let mut session = Session::new(Role::Server, Limits::default());
    let out = drain(&mut session);
    assert_eq!(out[0].kind, frame_type::SETTINGS);
    let announced: Vec<(u16, u32)> = out[0]
        .payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    assert!(announced.contains(&(SettingId::ENABLE_PUSH.0, 0)));
    assert!(announced.contains(&(SettingId::ENABLE_CONNECT_PROTOCOL.0, 1)));
    assert!(announced.contains(&(SettingId::INITIAL_WINDOW_SIZE.0, 1 << 20)));
    assert_eq!(out[1].kind, frame_type::WINDOW_UPDATE);
    assert_eq!(out[1].code(), (16 << 20) - 65_535);
}

#[test]
fn bad_preface_is_a_protocol_error() {
    let mut session = Session::new(Role::Server, Limits::default());
    drain(&mut session);
    let result = session.recv(Instant::now(), b"GET / HTTP/1.1\r\n");
    assert_connection_error(&mut session, result, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn first_frame_must_be_settings() {
    let mut session = Session::new(Role::Server, Limits::default());
    let mut input = PREFACE.to_vec();
    input.extend(bytes(&Frame::Ping {
        ack: false,
        data: [0; 8],
    }));
    let result = session.recv(Instant::now(), &input);
    assert_connection_error(&mut session, result, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn malformed_frames_are_connection_errors() {
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        // DATA on stream 0.
        (
            vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 0xaa],
            ErrorCode::PROTOCOL_ERROR,
        ),
        // A frame longer than our SETTINGS_MAX_FRAME_SIZE (refused from its header).
        (
            vec![0, 0x40, 0x01, 0, 0, 0, 0, 0, 1],
            ErrorCode::FRAME_SIZE_ERROR,
        ),
        // The connection send window above 2^31-1.
        (
            window_update(0, (1 << 31) - 1),
            ErrorCode::FLOW_CONTROL_ERROR,
        ),
        // DATA on an idle stream.
        (data(1, b"x", false), ErrorCode::PROTOCOL_ERROR),
        // PUSH_PROMISE from a client.
        (
            bytes(&Frame::PushPromise {
                stream_id: 1,
                promised_stream_id: 2,
                fragment: &[],
                end_headers: true,
                padding: None,
            }),
            ErrorCode::PROTOCOL_ERROR,
        ),
        // CONTINUATION out of nowhere.
        (
            bytes(&Frame::Continuation {
                stream_id: 1,
                fragment: &[],
                end_headers: true,
            }),
            ErrorCode::PROTOCOL_ERROR,
        ),
        // Not HPACK.
        (
            bytes(&Frame::Headers {
                stream_id: 1,
                fragment: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                end_stream: false,
                end_headers: true,
                priority: None,
                padding: None,
            }),
            ErrorCode::COMPRESSION_ERROR,
        ),
    ];
    for (input, code) in cases {
        let (mut session, peer) = server(Limits::default());
        let result = session.recv(peer.now, &input);
        assert_connection_error(&mut session, result, code);
    }
}

#[test]
fn stream_identifiers_must_increase() {
    let (mut session, mut peer) = server(Limits::default());
    session.recv(peer.now, &peer.connect(5, false)).unwrap();
    let input = peer.connect(3, false);
    let result = session.recv(peer.now, &input);
    assert_connection_error(&mut session, result, ErrorCode::PROTOCOL_ERROR);
    // An even (server-initiated) identifier from a client too.
    let (mut session, mut peer) = server(Limits::default());
    let input = peer.connect(2, false);
    let result = session.recv(peer.now, &input);
    assert_connection_error(&mut session, result, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn connect_request_echo_and_half_close_client_first() {
    let (mut session, mut peer) = server(Limits::default());
    let mut input = peer.connect(1, false);
    input.extend(data(1, b"hello", true));
    // Byte by byte: every partial frame is buffered.
    for byte in &input {
        session.recv(peer.now, std::slice::from_ref(byte)).unwrap();
    }
    let got = events(&mut session);
    assert!(
        matches!(&got[0], (1, Event::Headers { list, end_stream: false })
        if list[0] == (b":method".to_vec(), b"CONNECT".to_vec()))
    );
    assert_eq!(got[1..], [(1, Event::Data)]);
    let mut buf = [0; 16];
    assert_eq!(session.recv_body(1, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(events(&mut session), [(1, Event::Finished)]);
    assert!(session.stream_finished(1));
    assert_eq!(session.recv_body(1, &mut buf), Err(Error::Done));
    session
        .send_response(1, &[(b":status", b"200")], false)
        .unwrap();
    assert_eq!(session.send_body(1, b"world", true), Ok(5));
    assert_eq!(session.open_streams(), 0, "both directions done: forgotten");
    let out = drain(&mut session);
    assert_eq!(out[0].kind, frame_type::HEADERS);
    assert_eq!(out[1].kind, frame_type::DATA);
    assert_eq!(out[1].flags, flags::END_STREAM);
    assert_eq!(out[1].payload, b"world");
    assert_eq!(session.stats().data_bytes_received, 5);
    assert_eq!(session.stats().data_bytes_sent, 5);
}

#[test]
fn half_close_server_first() {
    let (mut session, mut peer) = server(Limits::default());
    session.recv(peer.now, &peer.connect(1, false)).unwrap();
    events(&mut session);
    session
        .send_response(1, &[(b":status", b"200")], false)
        .unwrap();
    assert_eq!(session.send_body(1, b"", true), Ok(0));
    assert_eq!(
        session.send_body(1, b"more", false),
        Err(Error::StreamClosed)
    );
    assert_eq!(session.stream_capacity(1), Err(Error::StreamClosed));
    assert_eq!(session.open_streams(), 1, "the peer still sends");
    session.recv(peer.now, &data(1, b"late", true)).unwrap();
    assert_eq!(events(&mut session), [(1, Event::Data)]);
    let mut buf = [0; 8];
    assert_eq!(session.recv_body(1, &mut buf), Ok(4));
    assert_eq!(events(&mut session), [(1, Event::Finished)]);
    assert_eq!(session.open_streams(), 0);
    let out = drain(&mut session);
    assert!(out.iter().any(|f| f.kind == frame_type::DATA
        && f.flags == flags::END_STREAM
        && f.payload.is_empty()));
}

#[test]
fn data_after_end_stream_is_stream_closed() {
    let (mut session, mut peer) = server(Limits::default());
    session.recv(peer.now, &peer.connect(1, true)).unwrap();
    assert!(matches!(
        events(&mut session)[..],
        [
            (
                1,
                Event::Headers {
                    end_stream: true,
                    ..
                }
            ),
            (1, Event::Finished)
        ]
    ));
    session.recv(peer.now, &data(1, b"x", false)).unwrap();
    assert_eq!(events(&mut session), [(1, Event::Reset(5))]);
    assert_eq!(
        rst_codes(&drain(&mut session)),
        [(1, ErrorCode::STREAM_CLOSED.0)]
    );
    // Frames in flight after our reset are ignored.
    session.recv(peer.now, &data(1, b"y", false)).unwrap();
    assert!(drain(&mut session).is_empty());
}

#[test]
fn trailers_are_accepted_and_end_the_stream() {
    let (mut session, mut peer) = server(Limits::default());
    let mut input = peer.connect(1, false);
    input.extend(data(1, b"body", false));
    let trailers = peer.block(&[("x-checksum", "abc")]);
    input.extend(bytes(&Frame::Headers {
        stream_id: 1,
        fragment: &trailers,
        end_stream: true,
        end_headers: true,
        priority: None,
        padding: None,
    }));
    session.recv(peer.now, &input).unwrap();
    assert_eq!(
        events(&mut session).len(),
        2,
        "Headers and Data, not the trailers"
    );
    let mut buf = [0; 8];
    assert_eq!(session.recv_body(1, &mut buf), Ok(4));
    assert_eq!(events(&mut session), [(1, Event::Finished)]);
}

#[test]
fn malformed_head_is_reset_with_protocol_error() {
    let (mut session, mut peer) = server(Limits::default());
    for (id, fields) in [
        (1, &[(":method", "CONNECT"), ("Upper", "x")][..]),
        (3, &[("x", "y"), (":method", "CONNECT")][..]),
        (5, &[(":method", "CONNECT"), ("connection", "close")][..]),
    ] {
        let block = peer.block(fields);
        let input = bytes(&Frame::Headers {
            stream_id: id,
            fragment: &block,
            end_stream: false,
            end_headers: true,
            priority: None,
            padding: None,
        });
        session.recv(peer.now, &input).unwrap();
    }
    assert!(events(&mut session).is_empty());
    assert_eq!(rst_codes(&drain(&mut session)), [(1, 1), (3, 1), (5, 1)]);
    // The connection and its HPACK context carry on.
    session.recv(peer.now, &peer.connect(7, false)).unwrap();
    assert!(matches!(
        events(&mut session)[..],
        [(7, Event::Headers { .. })]
    ));
}

#[test]
fn too_many_concurrent_streams_are_refused() {
    let limits = Limits {
        max_concurrent_streams: 2,
        ..Limits::default()
    };
    let (mut session, mut peer) = server(limits);
    for id in [1, 3, 5] {
        session.recv(peer.now, &peer.connect(id, false)).unwrap();
    }
    assert_eq!(events(&mut session).len(), 2);
    assert_eq!(
        rst_codes(&drain(&mut session)),
        [(5, ErrorCode::REFUSED_STREAM.0)]
    );
    assert_eq!(session.stats().streams_refused, 1);
    // DATA the peer already sent on the refused stream is ignored, but its credit counts.
    session.recv(peer.now, &data(5, b"x", true)).unwrap();
    assert!(drain(&mut session).is_empty());
}

#[test]
fn rapid_reset_closes_the_connection() {
    let limits = Limits {
        max_resets_per_10s: 10,
        ..Limits::default()
    };
    let (mut session, mut peer) = server(limits);
    let mut result = Ok(());
    for i in 0..11 {
        let id = 1 + 2 * i;
        let mut input = peer.connect(id, false);
        input.extend(rst(id, ErrorCode::CANCEL));
        result = session.recv(peer.now, &input);
        if i < 10 {
            assert!(result.is_ok(), "reset {i}");
        }
    }
    assert_eq!(session.stats().resets_received, 11);
    assert_eq!(session.stats().rapid_reset_floods, 1);
    assert_connection_error(&mut session, result, ErrorCode::ENHANCE_YOUR_CALM);

    // Spread over more than ten seconds, the same count passes.
    let limits = Limits {
        max_resets_per_10s: 10,
        ..Limits::default()
    };
    let (mut session, mut peer) = server(limits);
    for i in 0..20 {
        let id = 1 + 2 * i;
        let mut input = peer.connect(id, false);
        input.extend(rst(id, ErrorCode::CANCEL));
        let now = peer.now + Duration::from_secs(u64::from(i));
        session.recv(now, &input).unwrap();
    }
}

#[test]
fn continuation_flood_closes_the_connection() {
    let (mut session, mut peer) = server(Limits::default());
    let block = peer.block(&[(":method", "CONNECT"), (":authority", "a:1")]);
    let mut input = bytes(&Frame::Headers {
        stream_id: 1,
        fragment: &block[..1],
        end_stream: false,
        end_headers: false,
        priority: None,
        padding: None,
    });
    for _ in 0..32 {
        input.extend(bytes(&Frame::Continuation {
            stream_id: 1,
            fragment: &[],
            end_headers: false,
        }));
    }
    session.recv(peer.now, &input).unwrap();
    let one_more = bytes(&Frame::Continuation {
        stream_id: 1,
        fragment: &[],
        end_headers: false,
    });
    let result = session.recv(peer.now, &one_more);
    assert_eq!(session.stats().continuation_floods, 1);
    assert_connection_error(&mut session, result, ErrorCode::ENHANCE_YOUR_CALM);

    // By bytes: a block longer than twice the header list limit.
    let limits = Limits {
        max_header_list_size: 1000,
        ..Limits::default()
    };
    let (mut session, peer) = server(limits);
    let junk = [0x40; 1500];
    let mut input = bytes(&Frame::Headers {
        stream_id: 1,
        fragment: &junk,
        end_stream: false,
        end_headers: false,
        priority: None,
        padding: None,
    });
    input.extend(bytes(&Frame::Continuation {
        stream_id: 1,
        fragment: &junk,
        end_headers: false,
    }));
    let result = session.recv(peer.now, &input);
    assert_connection_error(&mut session, result, ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn interleaving_a_header_block_is_a_protocol_error() {
    let (mut session, mut peer) = server(Limits::default());
    let block = peer.block(&[(":method", "CONNECT")]);
    let mut input = bytes(&Frame::Headers {
        stream_id: 1,
        fragment: &block,
        end_stream: false,
        end_headers: false,
        priority: None,
        padding: None,
    });
    input.extend(peer.connect(3, false));
    let result = session.recv(peer.now, &input);
    assert_connection_error(&mut session, result, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn unread_ping_and_settings_acks_are_bounded() {
    let limits = Limits {
        max_control_frames_queued: 100,
        ..Limits::default()
    };
    let (mut session, peer) = server(limits.clone());
    let ping = bytes(&Frame::Ping {
        ack: false,
        data: *b"pingpong",
    });
    // Read by the transport as they come: no limit.
    for _ in 0..300 {
        session.recv(peer.now, &ping).unwrap();
        let out = drain(&mut session);
        assert_eq!(out[0].payload, b"pingpong");
        assert_eq!(out[0].flags, flags::ACK);
    }
    // Never read: the 101st acknowledgement closes the connection.
    let empty_settings = settings(&[]);
    let mut result = Ok(());
    for i in 0..101 {
        result = session.recv(peer.now, if i % 2 == 0 { &ping } else { &empty_settings });
        if i < 100 {
            assert!(result.is_ok());
        }
    }
    assert_eq!(session.stats().control_frame_floods, 1);
    assert_connection_error(&mut session, result, ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn hpack_bomb_is_refused_without_keeping_it() {
    let (mut session, mut peer) = server(Limits::default());
    // One 4000-byte field enters the table (4032 bytes counted), then 10 references to
    // it: 11 short bytes that decode to 44 KB, over the 16 KiB limit.
    let big = "x".repeat(4000);
    let mut block = peer.block(&[(":method", "CONNECT"), ("x-big", &big)]);
    block.extend(std::iter::repeat_n(0x80 | 0x3e, 10));
    let input = bytes(&Frame::Headers {
        stream_id: 1,
        fragment: &block,
        end_stream: false,
        end_headers: true,
        priority: None,
        padding: None,
    });
    session.recv(peer.now, &input).unwrap();
    assert!(events(&mut session).is_empty());
    assert_eq!(
        rst_codes(&drain(&mut session)),
        [(1, ErrorCode::ENHANCE_YOUR_CALM.0)]
    );
    assert_eq!(session.stats().header_lists_too_large, 1);
    // The HPACK context stayed in sync: the peer's next block uses the table.
    let block = peer.block(&[(":method", "CONNECT"), ("x-big", &big)]);
    assert!(block.len() < 20, "x-big comes from the table");
    let input = bytes(&Frame::Headers {
        stream_id: 3,
        fragment: &block,
        end_stream: false,
        end_headers: true,
        priority: None,
        padding: None,
    });
    session.recv(peer.now, &input).unwrap();
    assert!(
        matches!(&events(&mut session)[..], [(3, Event::Headers { list, .. })] if list[1].1.len() == 4000)
    );
}

#[test]
fn send_body_capacity_and_writable_after_window_update() {
    let (mut session, mut peer) = server_with(
        Limits::default(),
        &[
            (SettingId::INITIAL_WINDOW_SIZE, 10),
            (SettingId::MAX_FRAME_SIZE, 16_384),
        ],
    );
    session.recv(peer.now, &peer.connect(1, false)).unwrap();
    events(&mut session);
    assert_eq!(
        session.send_body(1, b"early", false),
        Err(Error::StreamClosed),
        "head first"
    );
    session
        .send_response(1, &[(b":status", b"200")], false)
        .unwrap();
    assert_eq!(session.stream_capacity(1), Ok(10));
    assert_eq!(session.send_body(1, &[7; 100], true), Ok(10));
    assert_eq!(
        session.send_body(1, &[7; 90], true),
        Err(Error::StreamBlocked)
    );
    assert_eq!(session.writable_next(), None);
    session.recv(peer.now, &window_update(1, 5)).unwrap();
    assert_eq!(session.writable_next(), Some(1));
    assert_eq!(session.writable_next(), None, "once per block");
    assert_eq!(session.stream_capacity(1), Ok(5));
    // The initial window going down takes credit away, below zero.
    session
        .recv(peer.now, &settings(&[(SettingId::INITIAL_WINDOW_SIZE, 0)]))
        .unwrap();
    assert_eq!(session.stream_capacity(1), Ok(0));
    session.recv(peer.now, &window_update(1, 10)).unwrap();
    assert_eq!(session.stream_capacity(1), Ok(5), "window at -5 + 10");
    // A stream window above 2^31-1 resets the stream.
    session
        .recv(peer.now, &window_update(1, (1 << 31) - 1))
        .unwrap();
    assert_eq!(events(&mut session), [(1, Event::Reset(3))]);
    assert_eq!(session.stream_capacity(1), Err(Error::UnknownStream));
}

#[test]
fn output_bound_blocks_and_draining_unblocks() {
    let limits = Limits {
        max_send_buffer: 1000,
        ..Limits::default()
    };
    let (mut session, mut peer) = server(limits);
    session.recv(peer.now, &peer.connect(1, false)).unwrap();
    session
        .send_response(1, &[(b":status", b"200")], false)
        .unwrap();
    drain(&mut session);
    assert_eq!(session.send_body(1, &[1; 5000], false), Ok(1000));
    assert_eq!(
        session.send_body(1, &[1; 5000], false),
        Err(Error::StreamBlocked)
    );
    let n = session.pending_output().len();
    session.consume_output(n);
    assert_eq!(session.writable_next(), Some(1));
    assert_eq!(session.stream_capacity(1), Ok(1000));
}

#[test]
fn data_beyond_the_stream_window_resets_the_stream() {
    let limits = Limits {
        stream_window: 100,
        ..Limits::default()
    };
    let (mut session, mut peer) = server(limits);
    let mut input = peer.connect(1, false);
    input.extend(data(1, &[0; 100], false));
    input.extend(data(1, &[0; 1], false));
    session.recv(peer.now, &input).unwrap();
    let got = events(&mut session);
    assert_eq!(got[1..], [(1, Event::Data), (1, Event::Reset(3))]);
    assert_eq!(
        rst_codes(&drain(&mut session)),
        [(1, ErrorCode::FLOW_CONTROL_ERROR.0)]
    );
}

#[test]
fn data_beyond_the_connection_window_closes_the_connection() {
    let limits = Limits {
        stream_window: 65_535,
        connection_window: 65_535,
        ..Limits::default()
    };
    let (mut session, mut peer) = server(limits);
    session.recv(peer.now, &peer.connect(1, false)).unwrap();
    session.recv(peer.now, &peer.connect(3, false)).unwrap();
    for _ in 0..3 {
        session
            .recv(peer.now, &data(1, &[0; 16_000], false))
            .unwrap();
    }
    session
        .recv(peer.now, &data(3, &[0; 16_000], false))
        .unwrap();
    let result = session.recv(peer.now, &data(3, &[0; 1536], false));
    assert_connection_error(&mut session, result, ErrorCode::FLOW_CONTROL_ERROR);
}

#[test]
fn reading_returns_credit_at_half_the_window() {
    let limits = Limits {
        stream_window: 1000,
        connection_window: 100_000,
        ..Limits::default()
    };
    let (mut session, mut peer) = server(limits);
    let mut input = peer.connect(1, false);
    // Padding counts toward flow control and is returned at once.
    input.extend(bytes(&Frame::Data {
        stream_id: 1,
        data: &[9; 400],
        end_stream: false,
        padding: Some(99),
    }));
    session.recv(peer.now, &input).unwrap();
    let mut buf = [0; 1000];
    assert_eq!(session.recv_body(1, &mut buf[..300]), Ok(300));
    assert!(drain(&mut session).is_empty(), "300 + 100 padding < 500");
    assert_eq!(session.recv_body(1, &mut buf), Ok(100));
    let out = drain(&mut session);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].kind, out[0].stream, out[0].code()),
        (frame_type::WINDOW_UPDATE, 1, 500)
    );
    // The peer may now send 1000 bytes again.
    session.recv(peer.now, &data(1, &[1; 1000], false)).unwrap();
    assert_eq!(
        events(&mut session)[1..],
        [(1, Event::Data), (1, Event::Data)]
    );
}

#[test]
fn goaway_refuses_later_streams() {
    let (mut session, mut peer) = server(Limits::default());
    session.recv(peer.now, &peer.connect(1, false)).unwrap();
    session.send_goaway();
    let out = drain(&mut session);
    assert_eq!((out[0].kind, out[0].code()), (frame_type::GOAWAY, 0));
    assert_eq!(
        u32::from_be_bytes(out[0].payload[..4].try_into().unwrap()),
        1
    );
    session.recv(peer.now, &peer.connect(3, false)).unwrap();
    assert_eq!(
        rst_codes(&drain(&mut session)),
        [(3, ErrorCode::REFUSED_STREAM.0)]
    );
    assert_eq!(session.open_streams(), 1);
    assert!(!session.is_closed());
    session.close(u64::from(ErrorCode::NO_ERROR.0));
    assert!(session.is_closed());
    assert_eq!(session.send_body(1, b"x", false), Err(Error::Closed));
}

#[test]
fn reset_by_the_caller_forgets_the_stream() {
    let (mut session, mut peer) = server(Limits::default());
    session.recv(peer.now, &peer.connect(1, false)).unwrap();
    session.reset_stream(1, 0x8);
    assert_eq!(rst_codes(&drain(&mut session)), [(1, 0x8)]);
    assert_eq!(session.stats().resets_sent, 1);
    assert_eq!(session.recv_body(1, &mut [0; 4]), Err(Error::UnknownStream));
    session.recv(peer.now, &data(1, b"late", true)).unwrap();
    assert!(drain(&mut session).is_empty(), "late frames ignored");
}

#[test]
fn client_opens_streams_within_the_peer_limit_and_after_goaway_not_at_all() {
    let mut client = Session::new(Role::Client, Limits::default());
    let out = client.pending_output().to_vec();
    assert!(out.starts_with(PREFACE));
    drain(&mut client);
    let now = Instant::now();
    client
        .recv(
            now,
            &settings(&[
                (SettingId::MAX_CONCURRENT_STREAMS, 1),
                (SettingId::ENABLE_CONNECT_PROTOCOL, 1),
            ]),
        )
        .unwrap();
    assert!(client.peer_enabled_connect_protocol());
    let head: [(&[u8], &[u8]); 2] = [(b":method", b"CONNECT"), (b":authority", b"a:443")];
    assert_eq!(client.send_request(&head, false), Ok(1));
    assert_eq!(client.send_request(&head, false), Err(Error::LimitReached));
    // A response head, then data.
    let mut server_hpack = loona_hpack::Encoder::new();
    let block = server_hpack.encode([(&b":status"[..], &b"200"[..])]);
    let mut input = bytes(&Frame::Headers {
        stream_id: 1,
        fragment: &block,
        end_stream: false,
        end_headers: true,
        priority: None,
        padding: None,
    });
    input.extend(data(1, b"hi", false));
    client.recv(now, &input).unwrap();
    let got = events(&mut client);
    assert!(
        matches!(&got[0], (1, Event::Headers { list, end_stream: false }) if list[0].1 == b"200")
    );
    assert_eq!(got[1], (1, Event::Data));
    client
        .recv(
            now,
            &bytes(&Frame::GoAway {
                last_stream_id: 0,
                error_code: ErrorCode::NO_ERROR,
                debug_data: &[],
            }),
        )
        .unwrap();
    assert_eq!(
        events(&mut client),
        [(0, Event::GoAway(0)), (1, Event::Reset(7))]
    );
    assert_eq!(client.send_request(&head, false), Err(Error::LimitReached));
}

#[test]
fn client_refuses_push_enabled_by_a_server() {
    let mut client = Session::new(Role::Client, Limits::default());
    let result = client.recv(Instant::now(), &settings(&[(SettingId::ENABLE_PUSH, 1)]));
    assert_connection_error(&mut client, result, ErrorCode::PROTOCOL_ERROR);
}

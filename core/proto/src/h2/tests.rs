use std::string::ToString;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

const MAX: u32 = DEFAULT_MAX_FRAME_SIZE;

fn raw(frame_type: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(frame_type);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn encode(frame: &Frame<'_>) -> Vec<u8> {
    let mut buf = std::vec![0; frame.encoded_len()];
    let mut w = crate::Writer::new(&mut buf);
    let n = frame.encode(&mut w).unwrap();
    assert_eq!(n, buf.len());
    buf
}

fn connection_error(bytes: &[u8]) -> ErrorCode {
    match decode(bytes, MAX) {
        Err(FrameError::Connection { code, .. }) => code,
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[test]
fn header_needs_nine_bytes_then_the_whole_frame() {
    let frame = raw(frame_type::PING, 0, 0, &[7; 8]);
    for cut in 0..FRAME_HEADER_LEN {
        assert_eq!(
            decode(&frame[..cut], MAX),
            Err(FrameError::Truncated { needed: 9 })
        );
    }
    for cut in FRAME_HEADER_LEN..frame.len() {
        assert_eq!(
            decode(&frame[..cut], MAX),
            Err(FrameError::Truncated { needed: 17 })
        );
    }
    assert_eq!(
        decode(&frame, MAX),
        Ok((
            17,
            Frame::Ping {
                ack: false,
                data: [7; 8]
            }
        ))
    );
}

#[test]
fn reserved_bit_is_ignored() {
    let frame = raw(frame_type::WINDOW_UPDATE, 0, 0x8000_0003, &[0x80, 0, 0, 1]);
    assert_eq!(
        decode(&frame, MAX).unwrap().1,
        Frame::WindowUpdate {
            stream_id: 3,
            increment: 1
        }
    );
}

#[test]
fn frame_longer_than_max_is_refused_from_its_header() {
    let header = [0x00, 0x40, 0x01, frame_type::DATA, 0, 0, 0, 0, 1]; // 16385 bytes
    assert_eq!(connection_error(&header), ErrorCode::FRAME_SIZE_ERROR);
    // A larger max lets it through (as truncated, here).
    assert_eq!(
        decode(&header, 1 << 20),
        Err(FrameError::Truncated { needed: 16_394 })
    );
    // A max below the protocol floor counts as the floor.
    let ok = raw(frame_type::DATA, 0, 1, &[0; 100]);
    assert!(decode(&ok, 0).is_ok());
}

#[test]
fn data_padding_is_removed_and_counted_for_flow_control() {
    let frame = raw(
        frame_type::DATA,
        flags::PADDED | flags::END_STREAM,
        1,
        b"\x02hi\0\0",
    );
    let (used, decoded) = decode(&frame, MAX).unwrap();
    assert_eq!(used, frame.len());
    assert_eq!(
        decoded,
        Frame::Data {
            stream_id: 1,
            data: b"hi",
            end_stream: true,
            padding: Some(2)
        }
    );
    assert_eq!(decoded.flow_controlled_len(), 5);
    assert_eq!(encode(&decoded), frame);
}

#[test]
fn padding_rules() {
    // Pad Length equal to the rest of the payload: valid, empty data.
    let ok = raw(frame_type::DATA, flags::PADDED, 1, &[2, 0, 0]);
    assert!(decode(&ok, MAX).is_ok());
    // One more than that: PROTOCOL_ERROR.
    let bad = raw(frame_type::DATA, flags::PADDED, 1, &[3, 0, 0]);
    assert_eq!(connection_error(&bad), ErrorCode::PROTOCOL_ERROR);
    // PADDED without a Pad Length.
    let empty = raw(frame_type::DATA, flags::PADDED, 1, &[]);
    assert_eq!(connection_error(&empty), ErrorCode::FRAME_SIZE_ERROR);
    // HEADERS: the priority fields are not part of what padding may cover.
    let headers = raw(
        frame_type::HEADERS,
        flags::PADDED | flags::PRIORITY,
        1,
        &[1, 0, 0, 0, 0, 16, 0x82],
    );
    assert_eq!(
        decode(&headers, MAX).unwrap().1,
        Frame::Headers {
            stream_id: 1,
            fragment: &[],
            end_stream: false,
            end_headers: false,
            priority: Some(PriorityFields {
                exclusive: false,
                dependency: 0,
                weight: 16
            }),
            padding: Some(1)
        }
    );
    let too_much = raw(
        frame_type::HEADERS,
        flags::PADDED | flags::PRIORITY,
        1,
        &[2, 0, 0, 0, 0, 16, 0x82],
    );
    assert_eq!(connection_error(&too_much), ErrorCode::PROTOCOL_ERROR);
    let short = raw(frame_type::HEADERS, flags::PRIORITY, 1, &[0, 0, 0]);
    assert_eq!(connection_error(&short), ErrorCode::FRAME_SIZE_ERROR);
}

#[test]
fn stream_zero_rules() {
    for t in [
        frame_type::DATA,
        frame_type::HEADERS,
        frame_type::PRIORITY,
        frame_type::RST_STREAM,
        frame_type::PUSH_PROMISE,
        frame_type::CONTINUATION,
    ] {
        let frame = raw(t, 0, 0, &[0; 5]);
        assert_eq!(connection_error(&frame), ErrorCode::PROTOCOL_ERROR, "{t}");
    }
    for (t, len) in [
        (frame_type::SETTINGS, 0),
        (frame_type::PING, 8),
        (frame_type::GOAWAY, 8),
    ] {
        let frame = raw(t, 0, 1, &std::vec![0; len]);
        assert_eq!(connection_error(&frame), ErrorCode::PROTOCOL_ERROR, "{t}");
    }
}

#[test]
fn fixed_lengths() {
    let cases: [(u8, u32, usize); 5] = [
        (frame_type::RST_STREAM, 1, 3),
        (frame_type::RST_STREAM, 1, 5),
        (frame_type::PING, 0, 7),
        (frame_type::WINDOW_UPDATE, 1, 5),
        (frame_type::GOAWAY, 0, 7),
    ];
    for (t, stream, len) in cases {
        let frame = raw(t, 0, stream, &std::vec![1; len]);
        assert_eq!(
            connection_error(&frame),
            ErrorCode::FRAME_SIZE_ERROR,
            "{t} of {len}"
        );
    }
    // PRIORITY of the wrong length is only a stream error.
    let frame = raw(frame_type::PRIORITY, 0, 3, &[0; 4]);
    assert_eq!(
        decode(&frame, MAX),
        Err(FrameError::Stream {
            stream_id: 3,
            code: ErrorCode::FRAME_SIZE_ERROR,
            reason: "PRIORITY of a length other than 5",
            frame_len: 13
        })
    );
}

#[test]
fn priority_on_itself_is_a_stream_error_but_headers_decode() {
    let frame = raw(frame_type::PRIORITY, 0, 3, &[0, 0, 0, 3, 1]);
    assert!(matches!(
        decode(&frame, MAX),
        Err(FrameError::Stream {
            stream_id: 3,
            code: ErrorCode::PROTOCOL_ERROR,
            ..
        })
    ));
    let headers = raw(
        frame_type::HEADERS,
        flags::PRIORITY,
        3,
        &[0x80, 0, 0, 3, 1, 0x82],
    );
    let Ok((_, Frame::Headers { priority, .. })) = decode(&headers, MAX) else {
        panic!("HEADERS must decode");
    };
    let priority = priority.unwrap();
    assert!(priority.exclusive && priority.depends_on(3));
}

#[test]
fn settings_rules() {
    let ack_with_payload = raw(frame_type::SETTINGS, flags::ACK, 0, &[0, 1, 0, 0, 0, 0]);
    assert_eq!(
        connection_error(&ack_with_payload),
        ErrorCode::FRAME_SIZE_ERROR
    );
    let not_multiple = raw(frame_type::SETTINGS, 0, 0, &[0, 1, 0, 0, 0]);
    assert_eq!(connection_error(&not_multiple), ErrorCode::FRAME_SIZE_ERROR);
    let bad_values: [(SettingId, u32, ErrorCode); 5] = [
        (SettingId::ENABLE_PUSH, 2, ErrorCode::PROTOCOL_ERROR),
        (
            SettingId::INITIAL_WINDOW_SIZE,
            1 << 31,
            ErrorCode::FLOW_CONTROL_ERROR,
        ),
        (SettingId::MAX_FRAME_SIZE, 16_383, ErrorCode::PROTOCOL_ERROR),
        (
            SettingId::MAX_FRAME_SIZE,
            1 << 24,
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            SettingId::ENABLE_CONNECT_PROTOCOL,
            2,
            ErrorCode::PROTOCOL_ERROR,
        ),
    ];
    for (id, value, code) in bad_values {
        let mut buf = [0; 15];
        let n = encode_settings(false, &[(id, value)], &mut crate::Writer::new(&mut buf)).unwrap();
        assert_eq!(connection_error(&buf[..n]), code, "{id:?}={value}");
    }
    let good = [
        (SettingId::HEADER_TABLE_SIZE, 0),
        (SettingId::INITIAL_WINDOW_SIZE, MAX_WINDOW_SIZE),
        (SettingId::MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE),
        (SettingId(0xfafa), u32::MAX), // unknown: ignored
        (SettingId::ENABLE_CONNECT_PROTOCOL, 1),
    ];
    let mut buf = [0; 64];
    let n = encode_settings(false, &good, &mut crate::Writer::new(&mut buf)).unwrap();
    let Ok((used, Frame::Settings { ack, settings })) = decode(&buf[..n], MAX) else {
        panic!("valid SETTINGS");
    };
    assert_eq!((used, ack), (n, false));
    assert!(settings.iter().eq(good.iter().copied()));
    assert_eq!(settings.iter().len(), 5);
}

#[test]
fn window_update_of_zero() {
    let conn = raw(frame_type::WINDOW_UPDATE, 0, 0, &[0; 4]);
    assert_eq!(connection_error(&conn), ErrorCode::PROTOCOL_ERROR);
    let stream = raw(frame_type::WINDOW_UPDATE, 0, 5, &[0x80, 0, 0, 0]);
    assert!(matches!(
        decode(&stream, MAX),
        Err(FrameError::Stream {
            stream_id: 5,
            code: ErrorCode::PROTOCOL_ERROR,
            frame_len: 13,
            ..
        })
    ));
}

#[test]
fn goaway_push_promise_continuation_and_unknown() {
    let goaway = raw(frame_type::GOAWAY, 0, 0, b"\x80\0\0\x07\0\0\0\x0bcalm");
    assert_eq!(
        decode(&goaway, MAX).unwrap().1,
        Frame::GoAway {
            last_stream_id: 7,
            error_code: ErrorCode::ENHANCE_YOUR_CALM,
            debug_data: b"calm"
        }
    );
    let push = raw(
        frame_type::PUSH_PROMISE,
        flags::END_HEADERS,
        1,
        &[0, 0, 0, 2, 0x82],
    );
    assert_eq!(
        decode(&push, MAX).unwrap().1,
        Frame::PushPromise {
            stream_id: 1,
            promised_stream_id: 2,
            fragment: &[0x82],
            end_headers: true,
            padding: None
        }
    );
    let short_push = raw(frame_type::PUSH_PROMISE, 0, 1, &[0, 0, 2]);
    assert_eq!(connection_error(&short_push), ErrorCode::FRAME_SIZE_ERROR);
    let cont = raw(frame_type::CONTINUATION, flags::END_HEADERS, 1, &[0x82]);
    assert_eq!(
        decode(&cont, MAX).unwrap().1,
        Frame::Continuation {
            stream_id: 1,
            fragment: &[0x82],
            end_headers: true
        }
    );
    let unknown = raw(0xfa, 0xff, 0, b"whatever");
    let (_, frame) = decode(&unknown, MAX).unwrap();
    assert_eq!(
        frame,
        Frame::Unknown {
            frame_type: 0xfa,
            flags: 0xff,
            stream_id: 0,
            payload: b"whatever"
        }
    );
    assert_eq!(encode(&frame), unknown);
}

#[test]
fn data_header_encoder_and_errors() {
    let mut buf = [0; 9];
    let n = encode_data_header(3, 300, true, &mut crate::Writer::new(&mut buf)).unwrap();
    assert_eq!(&buf[..n], &[0, 1, 44, 0, 1, 0, 0, 0, 3]);
    assert_eq!(
        encode_data_header(3, 1 << 24, false, &mut crate::Writer::new(&mut buf)),
        Err(EncodeError::PayloadTooLong { len: 1 << 24 })
    );
    let mut small = [0; 16];
    let frame = Frame::Ping {
        ack: true,
        data: [1; 8],
    };
    assert!(matches!(
        frame.encode(&mut crate::Writer::new(&mut small)),
        Err(EncodeError::BufferTooSmall(_))
    ));
    assert_eq!(small, [0; 16], "nothing written on failure");
    assert_eq!(ErrorCode(0xb).to_string(), "ENHANCE_YOUR_CALM");
    assert_eq!(ErrorCode(0x99).to_string(), "0x99");
}

fn stream_id() -> impl Strategy<Value = u32> {
    1..=MAX_WINDOW_SIZE
}

fn priority_fields() -> impl Strategy<Value = PriorityFields> {
    (any::<bool>(), 0..=MAX_WINDOW_SIZE, any::<u8>()).prop_map(|(exclusive, dependency, weight)| {
        PriorityFields {
            exclusive,
            dependency,
            weight,
        }
    })
}

/// Owned parts a frame borrows from.
#[derive(Debug, Clone)]
struct Parts {
    kind: u8,
    stream_id: u32,
    bytes: Vec<u8>,
    settings: Vec<(u16, u32)>,
    flag_a: bool,
    flag_b: bool,
    padding: Option<u8>,
    priority: Option<PriorityFields>,
    number: u32,
}

fn parts() -> impl Strategy<Value = Parts> {
    (
        0u8..11,
        stream_id(),
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec((any::<u16>(), any::<u32>()), 0..6),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(any::<u8>()),
        proptest::option::of(priority_fields()),
        1..=MAX_WINDOW_SIZE,
    )
        .prop_map(
            |(kind, stream_id, bytes, settings, flag_a, flag_b, padding, priority, number)| Parts {
                kind,
                stream_id,
                bytes,
                settings,
                flag_a,
                flag_b,
                padding,
                priority,
                number,
            },
        )
}

/// A valid frame built from `parts`; settings values are made legal.
fn build<'a>(p: &'a Parts, settings_buf: &'a mut Vec<u8>) -> Frame<'a> {
    match p.kind {
        0 => Frame::Data {
            stream_id: p.stream_id,
            data: &p.bytes,
            end_stream: p.flag_a,
            padding: p.padding,
        },
        1 => Frame::Headers {
            stream_id: p.stream_id,
            fragment: &p.bytes,
            end_stream: p.flag_a,
            end_headers: p.flag_b,
            priority: p.priority,
            padding: p.padding,
        },
        2 => Frame::Priority {
            stream_id: p.stream_id,
            priority: PriorityFields {
                dependency: p.number ^ p.stream_id,
                ..p.priority.unwrap_or(PriorityFields {
                    exclusive: true,
                    dependency: 0,
                    weight: 0,
                })
            },
        },
        3 => Frame::RstStream {
            stream_id: p.stream_id,
            error_code: ErrorCode(p.number),
        },
        4 => {
            for &(id, value) in &p.settings {
                // Keep only legal values: move the known ids out of the way.
                let id = if matches!(id, 2 | 4 | 5 | 8) {
                    id | 0x100
                } else {
                    id
                };
                settings_buf.extend_from_slice(&id.to_be_bytes());
                settings_buf.extend_from_slice(&value.to_be_bytes());
            }
            Frame::Settings {
                ack: false,
                settings: Settings::new(settings_buf),
            }
        }
        5 => Frame::PushPromise {
            stream_id: p.stream_id,
            promised_stream_id: p.number,
            fragment: &p.bytes,
            end_headers: p.flag_b,
            padding: p.padding,
        },
        6 => Frame::Ping {
            ack: p.flag_a,
            data: p.number.to_be_bytes().repeat(2).try_into().unwrap(),
        },
        7 => Frame::GoAway {
            last_stream_id: p.stream_id,
            error_code: ErrorCode(p.number),
            debug_data: &p.bytes,
        },
        8 => Frame::WindowUpdate {
            stream_id: p.stream_id * u32::from(p.flag_a),
            increment: p.number,
        },
        9 => Frame::Continuation {
            stream_id: p.stream_id,
            fragment: &p.bytes,
            end_headers: p.flag_b,
        },
        _ => Frame::Unknown {
            frame_type: 10 + (p.number % 246) as u8,
            flags: p.padding.unwrap_or(0),
            stream_id: p.stream_id,
            payload: &p.bytes,
        },
    }
}

proptest! {
    #[test]
    fn every_valid_frame_roundtrips(p in parts(), trailing in proptest::collection::vec(any::<u8>(), 0..12)) {
        let mut settings_buf = Vec::new();
        let frame = build(&p, &mut settings_buf);
        let mut bytes = encode(&frame);
        let len = bytes.len();
        bytes.extend_from_slice(&trailing);
        let (used, decoded) = decode(&bytes, MAX).unwrap();
        prop_assert_eq!(used, len);
        prop_assert_eq!(decoded, frame);
        for cut in 0..len {
            let truncated = decode(&bytes[..cut], MAX);
            let needed = if cut < FRAME_HEADER_LEN { FRAME_HEADER_LEN } else { len };
            prop_assert_eq!(truncated, Err(FrameError::Truncated { needed }));
        }
    }

    #[test]
    fn arbitrary_bytes_never_overrun(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in any::<u32>()) {
        match decode(&bytes, max) {
            Ok((used, frame)) => {
                prop_assert!(used <= bytes.len());
                prop_assert_eq!(frame.encoded_len(), used);
            }
            Err(FrameError::Truncated { needed }) => prop_assert!(needed > bytes.len()),
            Err(FrameError::Stream { frame_len, .. }) => prop_assert!(frame_len <= bytes.len()),
            Err(FrameError::Connection { .. }) => {}
        }
    }
}

use std::string::{String, ToString};
use std::vec::Vec;

use super::*;
use crate::http1::{MAX_HEADERS, Version};

/// What driving the stream showed: heads, bytes passed through (consecutive `Body` steps
/// merged), and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Head {
        method: String,
        target: String,
        fields: Vec<(String, Vec<u8>)>,
        framing: BodyFraming,
        len: usize,
    },
    Body(usize),
    Error(StreamError),
}

fn head_event(request: &OriginRequest<'_>) -> Event {
    Event::Head {
        method: request.method().to_string(),
        target: request.target().to_string(),
        fields: request
            .fields()
            .iter()
            .map(|f| (f.name().to_string(), f.value().to_vec()))
            .collect(),
        framing: request.framing(),
        len: request.len(),
    }
}

/// Feeds `bytes` as they would arrive with the given cut points, consuming all each step
/// allows; returns the events, the bytes consumed and whether it ended at a boundary.
fn drive(limits: Limits, bytes: &[u8], cuts: &[usize]) -> (Vec<Event>, usize, bool) {
    let mut stream = RequestStream::new(limits);
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    ends.push(bytes.len());
    ends.sort_unstable();
    let mut events = Vec::new();
    let mut pos = 0;
    'arrivals: for end in ends {
        loop {
            let input = &bytes[pos..end];
            match stream.step(input) {
                Ok(Step::Head(request)) => {
                    // Stepping again without consuming says the same.
                    assert_eq!(stream.step(input), Ok(Step::Head(request.clone())));
                    assert!(!stream.at_boundary());
                    events.push(head_event(&request));
                    stream.consume(request.len());
                    pos += request.len();
                }
                Ok(Step::Body { len }) => {
                    assert!(len >= 1 && len <= input.len(), "{len} of {}", input.len());
                    assert_eq!(stream.step(input), Ok(Step::Body { len }));
                    match events.last_mut() {
                        Some(Event::Body(total)) => *total += len,
                        _ => events.push(Event::Body(len)),
                    }
                    stream.consume(len);
                    pos += len;
                }
                Ok(Step::NeedMore) => continue 'arrivals,
                Err(e) => {
                    assert_eq!(stream.step(input), Err(e), "errors are sticky");
                    events.push(Event::Error(e));
                    break 'arrivals;
                }
            }
        }
    }
    (events, pos, stream.at_boundary())
}

fn whole(bytes: &[u8]) -> (Vec<Event>, usize, bool) {
    drive(Limits::default(), bytes, &[])
}

/// The outcome in one piece, checked to be the outcome of every split in two and of a byte
/// at a time.
fn every_split(bytes: &[u8]) -> (Vec<Event>, usize, bool) {
    let expected = whole(bytes);
    for cut in 0..=bytes.len() {
        assert_eq!(
            drive(Limits::default(), bytes, &[cut]),
            expected,
            "cut at {cut}"
        );
    }
    let all: Vec<usize> = (0..bytes.len()).collect();
    assert_eq!(
        drive(Limits::default(), bytes, &all),
        expected,
        "byte by byte"
    );
    expected
}

fn head(
    method: &str,
    target: &str,
    fields: &[(&str, &str)],
    framing: BodyFraming,
    len: usize,
) -> Event {
    Event::Head {
        method: method.to_string(),
        target: target.to_string(),
        fields: fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        framing,
        len,
    }
}

fn error_of(bytes: &[u8]) -> StreamError {
    match every_split(bytes).0.last() {
        Some(Event::Error(e)) => *e,
        other => panic!(
            "no error for {:?}: {other:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

#[test]
fn heads_without_bodies() {
    let get = b"GET /a?b=c HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n";
    let (events, used, boundary) = every_split(get);
    assert_eq!(
        events,
        [head(
            "GET",
            "/a?b=c",
            &[("Host", "a.example"), ("Accept", "*/*")],
            BodyFraming::None,
            get.len()
        )]
    );
    assert_eq!(used, get.len());
    assert!(boundary);

    let options = b"OPTIONS * HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    let (events, _, boundary) = every_split(options);
    assert!(matches!(
        &events[..],
        [Event::Head {
            framing: BodyFraming::ContentLength(0),
            ..
        }]
    ));
    assert!(boundary);

    // HTTP/1.0 needs no Host; LF line endings and empty lines before the request-line are
    // accepted in a head, as by RequestDecoder.
    let old = b"\r\n\nGET / HTTP/1.0\nUser-Agent: x\n\n";
    let (events, used, boundary) = every_split(old);
    assert_eq!(
        events,
        [head(
            "GET",
            "/",
            &[("User-Agent", "x")],
            BodyFraming::None,
            old.len()
        )]
    );
    assert_eq!((used, boundary), (old.len(), true));
}

#[test]
fn accessors() {
    let bytes = b"GET http://a.example:8080/p?q HTTP/1.1\r\nHost: a.example:8080\r\nConnection: keep-alive, Upgrade\r\n\r\n";
    let mut stream = RequestStream::default();
    let Ok(Step::Head(request)) = stream.step(bytes) else {
        panic!()
    };
    assert_eq!(request.method(), "GET");
    assert_eq!(request.version(), Version::Http11);
    assert_eq!(request.host(), Some("a.example:8080"));
    assert_eq!(
        request.field("CONNECTION"),
        Some(&b"keep-alive, Upgrade"[..])
    );
    assert!(request.has_connection_option("upgrade"));
    assert!(!request.is_empty());
    let TargetForm::Absolute {
        authority,
        path_and_query,
    } = request.target_form()
    else {
        panic!()
    };
    assert_eq!(
        (authority.as_str(), authority.port(), path_and_query),
        ("a.example:8080", 8080, "/p?q")
    );

    let Ok(Step::Head(request)) = RequestStream::default().step(b"OPTIONS * HTTP/1.0\r\n\r\n")
    else {
        panic!()
    };
    assert_eq!(request.target_form(), TargetForm::Asterisk);
    assert_eq!(request.host(), None);
}

#[test]
fn content_length_bodies_at_every_split() {
    let bytes = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
    let head_len = bytes.len() - 11;
    let (events, used, boundary) = every_split(bytes);
    assert_eq!(
        events,
        [
            head(
                "POST",
                "/up",
                &[("Host", "a"), ("Content-Length", "11")],
                BodyFraming::ContentLength(11),
                head_len
            ),
            Event::Body(11),
        ]
    );
    assert_eq!((used, boundary), (bytes.len(), true));

    // Cut short: the body is pending, so a FIN here is not clean.
    let (events, used, boundary) = every_split(&bytes[..bytes.len() - 3]);
    assert_eq!(events.last(), Some(&Event::Body(8)));
    assert_eq!((used, boundary), (bytes.len() - 3, false));
}

const CHUNKED: &[u8] =
    b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip-not, chunked\r\n\r\n";

#[test]
fn chunked_bodies_at_every_split() {
    let head_bytes =
        b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n";
    let body = b"5;name=\"quoted \\\" value\";flag\r\nhello\r\n00a\r\n0123456789\r\n0 ; last = yes\r\nX-Sum: abc\r\nX-Other:\r\n\r\n";
    let mut bytes = head_bytes.to_vec();
    bytes.extend_from_slice(body);
    let (events, used, boundary) = every_split(&bytes);
    assert_eq!(
        events,
        [
            head(
                "PUT",
                "/c",
                &[
                    ("Host", "a"),
                    ("Transfer-Encoding", "chunked"),
                    ("Trailer", "X-Sum")
                ],
                BodyFraming::Chunked,
                head_bytes.len()
            ),
            Event::Body(body.len()),
        ]
    );
    assert_eq!((used, boundary), (bytes.len(), true));

    // Every proper prefix of the body leaves the stream inside it.
    for end in head_bytes.len()..bytes.len() {
        let (_, used, boundary) = whole(&bytes[..end]);
        assert!(used <= end);
        assert!(!boundary, "boundary after {end} bytes");
    }

    // A message of only the last chunk.
    let mut empty = head_bytes.to_vec();
    empty.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(every_split(&empty).0[1], Event::Body(5));
    assert_eq!(
        error_of(CHUNKED),
        StreamError::Framing(FramingError::UnsupportedTransferCoding)
    );
}

#[test]
fn pipelined_requests() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    bytes.extend_from_slice(b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    bytes.extend_from_slice(
        b"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    );
    // A robust server ignores an empty line before a request-line (RFC 9112 §2.2).
    bytes.extend_from_slice(b"\r\nGET /4 HTTP/1.1\r\nHost: a\r\n\r\n");
    let (events, used, boundary) = every_split(&bytes);
    let summary: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Head { target, len, .. } => std::format!("head {target} {len}"),
            Event::Body(n) => std::format!("body {n}"),
            Event::Error(e) => std::format!("error {e}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "head /1 28",
            "head /2 48",
            "body 3",
            "head /3 57",
            "body 11",
            "head /4 30"
        ]
    );
    assert_eq!((used, boundary), (bytes.len(), true));
}

#[test]
fn at_boundary_tracks_partial_heads() {
    let mut stream = RequestStream::default();
    assert!(stream.at_boundary());
    assert_eq!(stream.step(b""), Ok(Step::NeedMore));
    assert_eq!(stream.step(b"\r\n"), Ok(Step::NeedMore));
    assert!(stream.at_boundary(), "empty lines are not a request");
    assert_eq!(stream.step(b"\r\nG"), Ok(Step::NeedMore));
    assert!(!stream.at_boundary());
}

#[test]
fn consuming_part_of_a_head_passes_the_rest_through() {
    let bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut stream = RequestStream::default();
    let Ok(Step::Head(request)) = stream.step(bytes) else {
        panic!()
    };
    let len = request.len();
    stream.consume(10);
    assert!(!stream.at_boundary());
    assert_eq!(stream.step(&bytes[10..]), Ok(Step::Body { len: len - 10 }));
    stream.consume(len - 10);
    assert!(stream.at_boundary());
    let Ok(Step::Head(next)) = stream.step(&bytes[len..]) else {
        panic!()
    };
    assert_eq!(next.target(), "/next");
}

#[test]
fn consuming_too_much_stops_the_stream() {
    let bytes = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab";
    let mut stream = RequestStream::default();
    stream.consume(0);
    assert!(stream.at_boundary());
    stream.consume(1);
    assert_eq!(stream.error(), Some(StreamError::ConsumedTooMuch));
    assert_eq!(stream.step(bytes), Err(StreamError::ConsumedTooMuch));
    assert_eq!(StreamError::ConsumedTooMuch.status().as_u16(), 500);

    let mut stream = RequestStream::default();
    let Ok(Step::Head(request)) = stream.step(bytes) else {
        panic!()
    };
    stream.consume(request.len());
    stream.consume(3);
    assert_eq!(stream.error(), Some(StreamError::ConsumedTooMuch));

    let mut stream = RequestStream::default();
    let Ok(Step::Head(request)) = stream.step(bytes) else {
        panic!()
    };
    stream.consume(request.len() + 1);
    assert_eq!(stream.error(), Some(StreamError::ConsumedTooMuch));

    // The rest of a chunk-size line, then the chunk data: one at a time.
    let mut stream = RequestStream::default();
    let bytes =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
    let Ok(Step::Head(request)) = stream.step(bytes) else {
        panic!()
    };
    stream.consume(request.len());
    assert_eq!(
        stream.step(&bytes[request.len()..]),
        Ok(Step::Body { len: 3 })
    );
    stream.consume(1);
    assert_eq!(
        stream.step(&bytes[request.len() + 1..]),
        Ok(Step::Body { len: 2 })
    );
    stream.consume(4);
    assert_eq!(stream.error(), Some(StreamError::ConsumedTooMuch));
}

#[test]
fn pass_through_after_an_upgrade() {
    let bytes = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
    let mut stream = RequestStream::default();
    let Ok(Step::Head(request)) = stream.step(bytes) else {
        panic!()
    };
    stream.consume(request.len());
    stream.pass_through();
    let rest = &bytes[request.len()..];
    assert_eq!(stream.step(rest), Ok(Step::Body { len: rest.len() }));
    stream.consume(rest.len());
    assert!(stream.at_boundary());
    assert_eq!(stream.step(b""), Ok(Step::NeedMore));
}

#[test]
fn head_refusals() {
    let cases: &[(&[u8], StreamError)] = &[
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", StreamError::Connect),
        (b"GET a.example:80 HTTP/1.1\r\nHost: a\r\n\r\n", StreamError::Target(TargetError::Malformed)),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", StreamError::Target(TargetError::Malformed)),
        (b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", StreamError::Target(TargetError::Fragment)),
        (b"GET https://a/ HTTP/1.1\r\nHost: a\r\n\r\n", StreamError::Target(TargetError::UnsupportedScheme)),
        (b"GET / HTTP/1.1\r\n\r\n", StreamError::MissingHost),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", StreamError::DuplicateHost),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", StreamError::InvalidHost),
        (b"GET / HTTP/1.1\r\nHost: a:99999999\r\n\r\n", StreamError::InvalidHost),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", StreamError::Framing(FramingError::ContentLengthWithTransferEncoding)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", StreamError::Framing(FramingError::ConflictingContentLength)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", StreamError::Framing(FramingError::InvalidContentLength)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", StreamError::Framing(FramingError::ChunkedNotFinal)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", StreamError::Framing(FramingError::ChunkedTwice)),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", StreamError::Framing(FramingError::TransferEncodingInHttp10)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n", StreamError::Syntax(SyntaxError::HeaderName)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n", StreamError::Syntax(SyntaxError::HeaderName)),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", StreamError::Syntax(SyntaxError::Version)),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", StreamError::Syntax(SyntaxError::RequestLine)),
    ];
    for (bytes, error) in cases {
        assert_eq!(
            error_of(bytes),
            *error,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert_eq!(StreamError::Connect.status().as_u16(), 501);
    assert_eq!(
        StreamError::Target(TargetError::UnsupportedScheme)
            .status()
            .as_u16(),
        501
    );
    assert_eq!(
        StreamError::Target(TargetError::Fragment).status().as_u16(),
        400
    );
    assert_eq!(StreamError::MissingHost.status().as_u16(), 400);
}

#[test]
fn size_limits() {
    let limits = Limits { max_head_len: 40 };
    let long_line = b"GET /0123456789012345678901234567890123456789 HTTP/1.1\r\nHost: a\r\n\r\n";
    let (events, ..) = drive(limits, long_line, &[5, 20, 39]);
    assert_eq!(events, [Event::Error(StreamError::RequestLineTooLong)]);
    let long_head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: 0123456789\r\n\r\n";
    let (events, ..) = drive(limits, long_head, &[5, 20, 39]);
    assert_eq!(events, [Event::Error(StreamError::HeadTooLarge)]);
    assert_eq!(StreamError::RequestLineTooLong.status().as_u16(), 414);

    let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        many.extend_from_slice(std::format!("X-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(whole(&many).0, [Event::Error(StreamError::TooManyHeaders)]);
    assert_eq!(StreamError::TooManyHeaders.status().as_u16(), 431);

    // The trailer section is bounded like a head.
    let mut chunked =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    let trailer = std::format!("X-1: {}\r\n\r\n", "v".repeat(100));
    chunked.extend_from_slice(trailer.as_bytes());
    let (events, ..) = drive(
        Limits {
            max_head_len: trailer.len(),
        },
        &chunked,
        &[],
    );
    assert_eq!(events.last(), Some(&Event::Body(3 + trailer.len())));
    let (events, ..) = drive(
        Limits {
            max_head_len: trailer.len() - 1,
        },
        &chunked,
        &[],
    );
    assert_eq!(
        events.last(),
        Some(&Event::Error(StreamError::TrailersTooLarge))
    );
    assert_eq!(StreamError::TrailersTooLarge.status().as_u16(), 431);
}

#[test]
fn chunked_refusals() {
    let prefix = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases: &[(&[u8], StreamError)] = &[
        (b"x\r\n", StreamError::ChunkSize),
        (b"-5\r\n", StreamError::ChunkSize),
        (b"1 2\r\n", StreamError::ChunkExtension),
        (b"10000000000000000\r\n", StreamError::ChunkSize),
        (b"5\nhello\r\n", StreamError::ChunkLineEnding),
        (b"5;a=\"\r\n", StreamError::ChunkExtension),
        (b"5\r\nhelloX\r\n", StreamError::MissingChunkCrlf),
        (b"5\r\nhello\rX", StreamError::MissingChunkCrlf),
        (b"5\r\nhello\n0\r\n\r\n", StreamError::MissingChunkCrlf),
        (b"0\r\nX: 1\n\r\n", StreamError::ChunkLineEnding),
        (b"0\r\n\n", StreamError::ChunkLineEnding),
        (b"0\r\n\rX", StreamError::ChunkLineEnding),
        (b"0\r\n X: 1\r\n\r\n", StreamError::Trailer),
        (b"0\r\nX : 1\r\n\r\n", StreamError::Trailer),
        (b"0\r\nX\r\n\r\n", StreamError::Trailer),
    ];
    for (body, error) in cases {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(body);
        assert_eq!(
            error_of(&bytes),
            *error,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    let mut long = prefix.to_vec();
    long.extend_from_slice(b"1;");
    long.resize(prefix.len() + MAX_CHUNK_LINE_LEN, b'a');
    assert_eq!(error_of(&long), StreamError::ChunkLineTooLong);
    for error in [
        StreamError::ChunkSize,
        StreamError::ChunkExtension,
        StreamError::ChunkLineTooLong,
        StreamError::ChunkLineEnding,
        StreamError::MissingChunkCrlf,
        StreamError::Trailer,
    ] {
        assert_eq!(error.status().as_u16(), 400, "{error}");
    }
}

#[test]
fn huge_content_length() {
    let bytes = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\nabc";
    let (events, used, boundary) = whole(bytes);
    assert_eq!(events.last(), Some(&Event::Body(3)));
    assert_eq!((used, boundary), (bytes.len(), false));
}

fn parse_back(written: &[u8]) -> OriginRequest<'_> {
    let limits = Limits {
        max_head_len: usize::MAX,
    };
    match RequestStream::new(limits).step(written) {
        Ok(Step::Head(request)) => {
            assert_eq!(request.len(), written.len());
            request
        }
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(written)),
    }
}

#[test]
fn write_head_without_edits_is_canonical() {
    let bytes =
        b"\r\nPOST /x?y HTTP/1.0\nHost:a\nX-Obs: caf\xe9 \nEmpty:\nContent-Length: 1, 1\n\nz";
    let Ok(Step::Head(request)) = RequestStream::default().step(bytes) else {
        panic!()
    };
    let len = request.head_len_with(&HeadEdits::NONE);
    let mut out = std::vec![0; len];
    assert_eq!(request.write_head(&HeadEdits::NONE, &mut out), Ok(len));
    assert_eq!(
        out,
        b"POST /x?y HTTP/1.0\r\nHost: a\r\nX-Obs: caf\xe9\r\nEmpty: \r\nContent-Length: 1, 1\r\n\r\n"
    );
    let back = parse_back(&out);
    assert_eq!(back.method(), request.method());
    assert_eq!(back.target(), request.target());
    assert_eq!(back.version(), request.version());
    assert_eq!(back.fields(), request.fields());
    assert_eq!(back.framing(), request.framing());
    let mut short = std::vec![0xaa; len - 1];
    assert_eq!(
        request.write_head(&HeadEdits::NONE, &mut short),
        Err(crate::BufferTooSmall {
            needed: len,
            available: len - 1
        })
    );
    assert!(short.iter().all(|&b| b == 0xaa));
}

#[test]
fn write_head_applies_edits() {
    let bytes = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: x\r\nX-Keep: 1\r\ncookie: y\r\nTransfer-Encoding: chunked\r\n\r\n";
    let Ok(Step::Head(request)) = RequestStream::default().step(bytes) else {
        panic!()
    };
    let edits = HeadEdits::new(
        &["COOKIE", "x-keep"],
        &[("X-Keep", "2"), ("Via", "1.1 veil")],
    )
    .unwrap();
    assert!(edits.removes("Cookie"));
    assert_eq!(edits.remove().len(), 2);
    assert_eq!(edits.add().len(), 2);
    let mut out = [0; 256];
    let len = request.write_head(&edits, &mut out).unwrap();
    assert_eq!(len, request.head_len_with(&edits));
    assert_eq!(
        &out[..len],
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Keep: 2\r\nVia: 1.1 veil\r\n\r\n"
    );
    assert_eq!(parse_back(&out[..len]).framing(), BodyFraming::Chunked);
}

#[test]
fn edits_are_checked() {
    use crate::http1::TextError;
    for name in ["Content-Length", "transfer-encoding", "HOST"] {
        assert_eq!(
            HeadEdits::new(&[name], &[]),
            Err(EditError::Remove {
                index: 0,
                error: TextError::ReservedFieldName
            })
        );
        assert_eq!(
            HeadEdits::new(&[], &[("X", "1"), (name, "1")]),
            Err(EditError::Add {
                index: 1,
                error: TextError::ReservedFieldName
            })
        );
    }
    assert_eq!(
        HeadEdits::new(&["ok", ""], &[]),
        Err(EditError::Remove {
            index: 1,
            error: TextError::Empty
        })
    );
    assert_eq!(
        HeadEdits::new(&["a b"], &[]),
        Err(EditError::Remove {
            index: 0,
            error: TextError::InvalidByte { index: 1 }
        })
    );
    for (value, index) in [
        ("a\r\nX: y", 1),
        (" a", 0),
        ("a\t", 1),
        ("caf\u{e9}", 3),
        ("\x7f", 0),
    ] {
        assert_eq!(
            HeadEdits::new(&[], &[("X", value)]),
            Err(EditError::Add {
                index: 0,
                error: TextError::InvalidByte { index }
            }),
            "{value:?}"
        );
    }
    assert_eq!(
        HeadEdits::new(&[], &[("X:", "1")]),
        Err(EditError::Add {
            index: 0,
            error: TextError::InvalidByte { index: 1 }
        })
    );
    assert!(HeadEdits::new(&[], &[("X", ""), ("Y", "a \t b")]).is_ok());
    assert_eq!(HeadEdits::default(), HeadEdits::NONE);
    assert_eq!(
        EditError::Add {
            index: 2,
            error: TextError::Empty
        }
        .to_string(),
        "field to add #2: text must not be empty"
    );
}

#[test]
fn statuses_and_messages() {
    assert_eq!(
        StreamError::Framing(FramingError::UnsupportedTransferCoding)
            .status()
            .as_u16(),
        501
    );
    assert_eq!(StreamError::HeadTooLarge.status().as_u16(), 431);
    assert_eq!(
        StreamError::Syntax(SyntaxError::LineEnding)
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        StreamError::Connect.to_string(),
        "CONNECT inside a request stream"
    );
    assert_eq!(
        StreamError::TooManyHeaders.to_string(),
        "more than 64 header fields"
    );
}

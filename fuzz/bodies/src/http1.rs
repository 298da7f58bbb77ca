//! `veil_proto::http1` on a client's request stream, fed as a growing buffer in arbitrary
//! chunks (see [`crate::chunks`]). Flags: bits 0-1 pick [`Limits::max_head_len`]; bit 2
//! asks for `Connection: close` upstream, bit 3 for a `Via` field.
//!
//! - The [`RequestDecoder`] reaches the same outcome however the buffer grew, as in one
//!   piece, and the same again once it has reset itself after an outcome; a head never
//!   claims more bytes than the buffer has.
//! - A forward request's upstream head has the length `upstream_head_len` announces, and
//!   httparse reads it back as: the method, the origin-form, HTTP/1.1, `Host` from the
//!   request-target, the forwarded fields in order, the normalized framing field, then
//!   `Via` and `Connection` as configured.
//! - `Basic` credentials that decode match themselves when sent in canonical base64.

use veil_proto::http1::{
    BodyFraming, ForwardRequest, Limits, MAX_HEADERS, ProxyName, ProxyRequest, RequestDecoder,
    UpstreamOptions,
};

use crate::chunks::Chunked;

fn limits(flags: u8) -> Limits {
    let max_head_len = match flags & 0b11 {
        0 => Limits::DEFAULT_MAX_HEAD_LEN,
        1 => 64,
        2 => 256,
        _ => 1024,
    };
    Limits { max_head_len }
}

/// Decodes the stream as it grows and in one piece, then checks what it found.
///
/// # Panics
///
/// When an invariant in the module documentation breaks.
pub fn run(data: &[u8]) {
    let Some(input) = Chunked::parse(data) else {
        return;
    };
    let stream = input.stream;
    let mut decoder = RequestDecoder::new(limits(input.flags));
    let mut grown = Ok(None);
    for end in input.prefix_lens() {
        grown = decoder.decode(&stream[..end]);
        if !matches!(grown, Ok(None)) {
            break;
        }
    }
    let whole = RequestDecoder::new(limits(input.flags)).decode(stream);
    assert_eq!(grown, whole, "grown buffer vs one piece");
    if !matches!(whole, Ok(None)) {
        assert_eq!(decoder.decode(stream), whole, "after a reset");
    }
    let Ok(Some(request)) = whole else {
        return;
    };
    assert!(request.head().head_len() <= stream.len());
    assert!(request.head().fields().len() <= MAX_HEADERS);
    check_credentials(&request);
    if let ProxyRequest::Forward(forward) = &request {
        let options = UpstreamOptions {
            via: (input.flags & 0b1000 != 0).then(|| ProxyName::new("veil").expect("a token")),
            connection_close: input.flags & 0b100 != 0,
        };
        check_upstream_head(forward, &options);
    }
}

/// The upstream head, read back with httparse, says what the request said.
fn check_upstream_head(request: &ForwardRequest<'_>, options: &UpstreamOptions<'_>) {
    let len = request.upstream_head_len(options);
    let mut head = vec![0; len];
    assert_eq!(request.write_upstream_head(options, &mut head), Ok(len));
    assert!(
        request
            .write_upstream_head(options, &mut head[..len - 1])
            .is_err()
    );

    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS + 4];
    let mut parsed = httparse::Request::new(&mut storage);
    assert_eq!(
        parsed.parse(&head),
        Ok(httparse::Status::Complete(len)),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(parsed.method, Some(request.head().method()));
    assert_eq!(
        parsed.path,
        Some(request.origin_form().to_string().as_str())
    );
    assert_eq!(parsed.version, Some(1));

    let mut expected: Vec<(&str, Vec<u8>)> = vec![("Host", request.target().as_str().into())];
    for field in request.head().fields() {
        if request.is_forwarded(field) {
            expected.push((field.name(), field.value().to_vec()));
        }
    }
    match request.framing() {
        BodyFraming::None => {}
        BodyFraming::ContentLength(n) => expected.push(("Content-Length", n.to_string().into())),
        BodyFraming::Chunked => expected.push(("Transfer-Encoding", b"chunked".to_vec())),
    }
    if let Some(name) = options.via {
        let value = format!("{} {}", request.head().version().number(), name.as_str());
        expected.push(("Via", value.into()));
    }
    if options.connection_close {
        expected.push(("Connection", b"close".to_vec()));
    }
    let got: Vec<(&str, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name, h.value.to_vec()))
        .collect();
    assert_eq!(got, expected);
}

/// `Basic` credentials that decode, sent in canonical base64, match themselves.
fn check_credentials(request: &ProxyRequest<'_>) {
    let Some(credentials) = request.head().proxy_authorization() else {
        return;
    };
    let mut out = vec![0; credentials.token().len()];
    let Ok(basic) = credentials.decode_basic(&mut out) else {
        return;
    };
    let mut user_pass = basic.user_id.to_vec();
    user_pass.push(b':');
    user_pass.extend_from_slice(basic.password);
    if base64(&user_pass).as_bytes() == credentials.token() {
        assert!(credentials.basic_matches(basic.user_id, basic.password));
    }
}

/// Standard padded base64 (RFC 4648 §4), written here as an independent oracle.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

//! Property tests for `veil_proto::http1`: arbitrary input never panics, the outcome does
//! not depend on how the input was split, generated requests decode to what was generated,
//! and generated heads parse back.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use veil_proto::http1::{
    BodyFraming, Challenge, Host, Limits, ProxyName, ProxyRequest, ProxyStatus, QuotedText,
    RequestDecoder, RequestError, Response, StatusCode, UpstreamOptions, Version,
};

/// The first answer other than "need more" when `bytes` arrive in the given pieces.
fn incremental<'b>(
    limits: Limits,
    bytes: &'b [u8],
    cuts: &[usize],
) -> Result<Option<ProxyRequest<'b>>, RequestError> {
    let mut decoder = RequestDecoder::new(limits);
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    ends.push(bytes.len());
    ends.sort_unstable();
    for end in ends {
        let outcome = decoder.decode(&bytes[..end]);
        if !matches!(outcome, Ok(None)) {
            return outcome;
        }
    }
    Ok(None)
}

/// Pieces of request heads, so that random input reaches deep states.
fn http_like() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(&b"GET "[..]),
        Just(&b"CONNECT "[..]),
        Just(&b"POST "[..]),
        Just(&b"http://"[..]),
        Just(&b"a.example"[..]),
        Just(&b"[::1]"[..]),
        Just(&b":80"[..]),
        Just(&b"/p?q"[..]),
        Just(&b" HTTP/1.1"[..]),
        Just(&b" HTTP/1.0"[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\n"[..]),
        Just(&b"\r"[..]),
        Just(&b"Host: a.example"[..]),
        Just(&b"Transfer-Encoding: chunked"[..]),
        Just(&b"Content-Length: 5"[..]),
        Just(&b"Connection: close, x"[..]),
        Just(&b"Proxy-Authorization: Basic Og=="[..]),
        Just(&b": "[..]),
        Just(&b" "[..]),
        Just(&b"\t"[..]),
        Just(&b","[..]),
        Just(&b"\0"[..]),
        Just(&b"\xff"[..]),
    ];
    prop::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat())
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (1usize..160).prop_map(|max_head_len| Limits { max_head_len }),
    ]
}

/// A generated forward or CONNECT request and what decoding it must yield.
#[derive(Debug, Clone)]
struct Model {
    connect: bool,
    method: String,
    host: ModelHost,
    port: Option<u16>,
    path_and_query: String,
    version: Version,
    fields: Vec<(String, String)>,
    framing: BodyFraming,
}

#[derive(Debug, Clone)]
enum ModelHost {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl ModelHost {
    fn text(&self) -> String {
        match self {
            Self::Name(name) => name.clone(),
            Self::V4(addr) => addr.to_string(),
            Self::V6(addr) => format!("[{addr}]"),
        }
    }
}

impl Model {
    fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host.text()),
            None => self.host.text(),
        }
    }

    fn render(&self) -> Vec<u8> {
        let target = if self.connect {
            self.authority()
        } else {
            format!("http://{}{}", self.authority(), self.path_and_query)
        };
        let version = match self.version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        };
        let mut head = format!(
            "{} {target} {version}\r\nHost: {}\r\n",
            self.method,
            self.authority()
        );
        for (name, value) in &self.fields {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        match self.framing {
            BodyFraming::None => {}
            BodyFraming::ContentLength(n) => {
                let _ = write!(head, "Content-Length: {n}\r\n");
            }
            BodyFraming::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

fn dns_name() -> impl Strategy<Value = String> {
    // The last label starts with a letter, so it never looks like an IPv4 shorthand.
    (
        prop::collection::vec("[a-z0-9_-]{1,12}", 0..3),
        "[a-z][a-z0-9-]{0,8}",
    )
        .prop_map(|(mut labels, last)| {
            labels.push(last);
            labels.join(".")
        })
}

fn model_host() -> impl Strategy<Value = ModelHost> {
    prop_oneof![
        dns_name().prop_map(ModelHost::Name),
        any::<[u8; 4]>().prop_map(|o| ModelHost::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| ModelHost::V6(Ipv6Addr::from(o))),
    ]
}

/// End-to-end fields: token names that are not hop-by-hop or rewritten, printable values
/// without edge whitespace.
fn end_to_end_fields() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[!-~]([ -~]{0,20}[!-~])?"), 0..8)
}

fn model() -> impl Strategy<Value = Model> {
    let framing = prop_oneof![
        Just(BodyFraming::None),
        any::<u64>().prop_map(BodyFraming::ContentLength),
        Just(BodyFraming::Chunked),
    ];
    let version = prop_oneof![Just(Version::Http10), Just(Version::Http11)];
    (
        any::<bool>(),
        "[A-Z]{3,7}",
        model_host(),
        prop::option::of(1u16..),
        "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,10}){0,3}(\\?[a-zA-Z0-9=&/?-]{0,12})?",
        version,
        end_to_end_fields(),
        framing,
    )
        .prop_map(
            |(connect, method, host, port, path_and_query, version, fields, framing)| {
                // CONNECT has no body; HTTP/1.0 has no chunked.
                let framing = match (connect, framing, version) {
                    (true, _, _) | (false, BodyFraming::Chunked, Version::Http10) => {
                        BodyFraming::None
                    }
                    (false, framing, _) => framing,
                };
                Model {
                    connect,
                    method: if connect {
                        "CONNECT".into()
                    } else {
                        method.replace("CONNECT", "GET")
                    },
                    port: if connect {
                        Some(port.unwrap_or(443))
                    } else {
                        port
                    },
                    host,
                    path_and_query,
                    version,
                    fields,
                    framing,
                }
            },
        )
}

fn expected_host(model: &Model) -> Host<'_> {
    match &model.host {
        ModelHost::Name(name) => Host::Name(name),
        ModelHost::V4(addr) => Host::Ipv4(*addr),
        ModelHost::V6(addr) => Host::Ipv6(*addr),
    }
}

/// Undoes the quoted-string escaping of an sf-string.
fn unquote(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

/// Standard padded base64, to build `Basic` credentials.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024), limits in limits()) {
        if let Ok(Some(request)) = RequestDecoder::new(limits).decode(&bytes) {
            prop_assert!(request.head().head_len() <= bytes.len());
            prop_assert!(request.head().head_len() <= limits.max_head_len);
        }
    }

    #[test]
    fn chunking_does_not_change_the_outcome(
        bytes in prop_oneof![http_like(), prop::collection::vec(any::<u8>(), 0..256)],
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        limits in limits(),
    ) {
        let whole = RequestDecoder::new(limits).decode(&bytes);
        prop_assert_eq!(incremental(limits, &bytes, &cuts), whole);
    }

    #[test]
    fn byte_at_a_time_matches_one_shot(bytes in http_like()) {
        let cuts: Vec<usize> = (0..bytes.len()).collect();
        let whole = RequestDecoder::default().decode(&bytes);
        prop_assert_eq!(incremental(Limits::default(), &bytes, &cuts), whole);
    }

    #[test]
    fn generated_requests_decode_to_what_was_generated(model in model(), body in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = model.render();
        let head_len = bytes.len();
        bytes.extend_from_slice(&body);
        let decoded = RequestDecoder::default().decode(&bytes);
        let request = match decoded {
            Ok(Some(request)) => request,
            other => return Err(TestCaseError::fail(format!("{other:?} for {}", String::from_utf8_lossy(&bytes)))),
        };
        let head = request.head();
        prop_assert_eq!(head.method(), model.method.as_str());
        prop_assert_eq!(head.version(), model.version);
        prop_assert_eq!(head.head_len(), head_len);
        prop_assert_eq!(request.target().host(), expected_host(&model));
        prop_assert_eq!(request.target().port(), model.port.unwrap_or(80));
        prop_assert_eq!(request.target().as_str(), model.authority());
        for (name, value) in &model.fields {
            prop_assert!(head.fields().iter().any(|f| f.name() == name && f.value() == value.as_bytes()));
        }
        match request {
            ProxyRequest::Connect(_) => prop_assert!(model.connect),
            ProxyRequest::Forward(forward) => {
                prop_assert!(!model.connect);
                prop_assert_eq!(forward.path_and_query(), model.path_and_query.as_str());
                prop_assert_eq!(forward.framing(), model.framing);
                // The upstream head parses back to the same request in origin-form.
                let options = UpstreamOptions { via: ProxyName::new("veil").ok(), connection_close: true };
                let mut out = vec![0; forward.upstream_head_len(&options)];
                prop_assert_eq!(forward.write_upstream_head(&options, &mut out), Ok(out.len()));
                let mut headers = [httparse::EMPTY_HEADER; 80];
                let mut parsed = httparse::Request::new(&mut headers);
                prop_assert_eq!(parsed.parse(&out), Ok(httparse::Status::Complete(out.len())));
                prop_assert_eq!(parsed.method, Some(model.method.as_str()));
                let origin_form = forward.origin_form().to_string();
                prop_assert_eq!(parsed.path, Some(origin_form.as_str()));
                prop_assert_eq!(parsed.version, Some(1));
                let fields: Vec<(&str, &[u8])> = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
                let authority = model.authority();
                prop_assert_eq!(fields[0], ("Host", authority.as_bytes()));
                let forwarded: Vec<(&str, &[u8])> = model.fields.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
                prop_assert_eq!(&fields[1..=forwarded.len()], forwarded.as_slice());
            }
        }
    }

    #[test]
    fn basic_credentials_round_trip(user in "[ -9;-~]{0,12}", password in "[ -~]{0,24}") {
        let token = base64(format!("{user}:{password}").as_bytes());
        let bytes = format!("CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic {token}\r\n\r\n");
        let request = match RequestDecoder::default().decode(bytes.as_bytes()) {
            Ok(Some(request)) => request,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        let credentials = request.head().proxy_authorization();
        prop_assert!(credentials.is_some_and(|c| c.basic_matches(user.as_bytes(), password.as_bytes())));
        let wrong_password = format!("{password}x");
        prop_assert!(!credentials.is_some_and(|c| c.basic_matches(user.as_bytes(), wrong_password.as_bytes())));
        let mut out = [0; 64];
        let decoded = credentials.map(|c| c.decode_basic(&mut out).map(|b| (b.user_id.to_vec(), b.password.to_vec())));
        prop_assert_eq!(decoded, Some(Ok((user.into_bytes(), password.into_bytes()))));
    }

    #[test]
    fn proxy_status_details_round_trip(details in "[ -~]{0,40}", code in 100u16..600) {
        let name = ProxyName::new("veil").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let details_text = QuotedText::new(&details).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let status = StatusCode::new(code).ok_or_else(|| TestCaseError::fail("status"))?;
        let challenges = [Challenge::Basic { realm: details_text }];
        let response = Response::new(status)
            .with_challenges(&challenges)
            .with_proxy_status(ProxyStatus::new(name).received_status(status).details(details_text));
        let mut out = vec![0; response.encoded_len()];
        prop_assert_eq!(response.encode(&mut out), Ok(out.len()));
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Response::new(&mut headers);
        prop_assert_eq!(parsed.parse(&out), Ok(httparse::Status::Complete(out.len())));
        prop_assert_eq!(parsed.code, Some(code));
        let proxy_status = parsed.headers.iter().find(|h| h.name == "Proxy-Status").map(|h| String::from_utf8_lossy(h.value).into_owned());
        let expected_prefix = format!("veil;received-status={code};details=");
        let value = proxy_status.unwrap_or_default();
        prop_assert!(value.starts_with(&expected_prefix), "{}", value);
        prop_assert_eq!(unquote(&value[expected_prefix.len()..]), Some(details.clone()));
        let realm = parsed.headers.iter().find(|h| h.name == "Proxy-Authenticate").map(|h| String::from_utf8_lossy(h.value).into_owned()).unwrap_or_default();
        prop_assert_eq!(realm.strip_prefix("Basic realm=").and_then(unquote), Some(details));
    }
}

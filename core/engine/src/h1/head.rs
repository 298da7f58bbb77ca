//! HTTP/1.1 message heads: a proxy request read into the field list an HTTP/2 or HTTP/3
//! request would carry, and a response head written from one.
//!
//! Translating at the edge of the session keeps one request checker for all three HTTP
//! versions (`crate::connect`): `CONNECT host:port` becomes `:method CONNECT` and
//! `:authority`, and an upgrade to `connect-udp` or `connect-ip` becomes the Extended
//! CONNECT it is equivalent to (`:protocol`, `:scheme`, `:authority`, `:path`).

/// The most header fields a request may carry; more is refused with 431.
pub(super) const MAX_FIELDS: usize = 64;

/// A request head, translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    /// The fields as HTTP/2 would carry them: pseudo-header fields first, names in lower
    /// case, hop-by-hop fields left out.
    pub(super) list: Vec<(Vec<u8>, Vec<u8>)>,
    /// The upgrade token asked for (`connect-udp`, `connect-ip`), lower case.
    pub(super) upgrade: Option<Vec<u8>>,
    /// Bytes of input the head took (what follows is the tunnel's).
    pub(super) len: usize,
}

/// Why a request head was turned away: the status to answer with, then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) reason: &'static str,
}

impl Refusal {
    const fn bad(reason: &'static str) -> Self {
        Self {
            status: 400,
            reason,
        }
    }
}

/// Reads a request head from the start of `input`: `Ok(None)` while it is incomplete.
pub(super) fn parse_request(input: &[u8]) -> Result<Option<Request>, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut fields);
    let len = match request.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal {
                status: 431,
                reason: "too many header fields",
            });
        }
        Err(_) => return Err(Refusal::bad("malformed request head")),
    };
    let method = request.method.ok_or(Refusal::bad("no method"))?;
    let target = request.path.ok_or(Refusal::bad("no request target"))?;
    let mut host = None;
    let mut connection_upgrade = false;
    let mut upgrade = None;
    let mut rest = Vec::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let name = field.name.to_ascii_lowercase();
        let value = field.value.trim_ascii();
        match name.as_str() {
            "host" => {
                //# RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
                //# code to any HTTP/1.1 request message that lacks a Host header field and
                //# to any request message that contains more than one Host header field
                //# line or a Host header field with an invalid field value."
                if host.replace(value).is_some() {
                    return Err(Refusal::bad("more than one Host field"));
                }
            }
            "connection" => {
                connection_upgrade |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
            }
            "upgrade" => {
                // The first protocol offered: the one the client prefers.
                upgrade = tokens(value).next().map(<[u8]>::to_ascii_lowercase);
            }
            // A body before the tunnel cannot be framed by us without reading it; a
            // request that announces one is refused rather than guessed at (request
            // smuggling lives in such guesses).
            "transfer-encoding" => return Err(Refusal::bad("a request body")),
            "content-length" if value != b"0" => return Err(Refusal::bad("a request body")),
            // Hop-by-hop: about this connection, not the request.
            "keep-alive" | "proxy-connection" | "te" | "content-length" => {}
            _ => rest.push((name.into_bytes(), value.to_vec())),
        }
    }
    let mut list: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(rest.len() + 5);
    let mut pseudo =
        |name: &str, value: &[u8]| list.push((name.as_bytes().to_vec(), value.to_vec()));
    let upgrade = upgrade.filter(|_| connection_upgrade);
    if method == "CONNECT" {
        //# RFC 9110 §9.3.6: "the request-target consists of only the host name and port
        //# number of the tunnel destination, separated by a colon"
        pseudo(":method", b"CONNECT");
        pseudo(":authority", target.as_bytes());
    } else if let Some(protocol) = &upgrade {
        //# RFC 9298 §3.2: "The method SHALL be "GET"."
        if method != "GET" {
            return Err(Refusal::bad("an upgrade must be a GET"));
        }
        let host = host.ok_or(Refusal::bad("no Host field"))?;
        pseudo(":method", b"CONNECT");
        pseudo(":protocol", protocol);
        pseudo(":scheme", b"https");
        pseudo(":authority", host);
        pseudo(":path", target.as_bytes());
    } else {
        // Anything else is a request veil does not serve: the checker answers 405.
        pseudo(":method", method.as_bytes());
        pseudo(":scheme", b"https");
        pseudo(":authority", host.unwrap_or_default());
        pseudo(":path", target.as_bytes());
    }
    list.extend(rest);
    Ok(Some(Request {
        list,
        upgrade: upgrade.filter(|_| method != "CONNECT"),
        len,
    }))
}

/// The comma-separated tokens of a field value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The response head for `fields` (`:status` first, as the engine sends it), to a request
/// that asked to upgrade to `upgrade` if any. `fin`: no body follows.
///
/// A successful upgrade is `101 Switching Protocols`; a successful CONNECT is `200`; a
/// refusal closes the connection after it (`Connection: close`), its body, if any, ending
/// with the connection.
pub(super) fn encode_response(
    fields: &[(&[u8], &[u8])],
    upgrade: Option<&[u8]>,
    fin: bool,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    let status = fields
        .iter()
        .find(|(name, _)| *name == b":status")
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .and_then(|text| text.parse::<u16>().ok())
        .filter(|status| (100..600).contains(status))?;
    let success = (200..300).contains(&status);
    let outcome = match status {
        100..=199 => Outcome::Informational,
        _ if success => Outcome::Tunnel,
        _ => Outcome::Refused,
    };
    let start = out.len();
    match (success, upgrade) {
        (true, Some(protocol)) => {
            //# RFC 9298 §3.3: "the response SHALL meet the following requirements: The
            //# HTTP status code on the response SHALL be 101 (Switching Protocols)."
            out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n");
            out.extend_from_slice(b"Upgrade: ");
            out.extend_from_slice(protocol);
            out.extend_from_slice(b"\r\n");
        }
        _ => {
            out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
        }
    }
    for (name, value) in fields {
        if name.starts_with(b":") || is_framing(name) {
            continue;
        }
        // Field values came from the engine, never from a peer, but a line break would
        // still end the head early: such a value is left out rather than written.
        if value.iter().any(|&b| b == b'\r' || b == b'\n') {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if outcome == Outcome::Refused {
        out.extend_from_slice(b"Connection: close\r\n");
        if fin {
            out.extend_from_slice(b"Content-Length: 0\r\n");
        }
    }
    //# RFC 9110 §9.3.6: "A server MUST NOT send any Transfer-Encoding or Content-Length
    //# header fields in a 2xx (Successful) response to CONNECT."
    out.extend_from_slice(b"\r\n");
    debug_assert!(out.len() > start);
    Some(outcome)
}

/// What a response head did to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// 1xx: the final head is still to come.
    Informational,
    /// 2xx: the connection is the tunnel from here on.
    Tunnel,
    /// 3xx–5xx: the connection closes once the response is written.
    Refused,
}

/// Fields that frame a message in HTTP/1.1, which this module writes itself.
fn is_framing(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"content-length",
        b"transfer-encoding",
        b"upgrade",
        b"keep-alive",
    ]
    .iter()
    .any(|framing| name.eq_ignore_ascii_case(framing))
}

/// The standard reason phrase (veil-proto's table, as the client's HTTP proxy writes it).
fn reason(status: u16) -> &'static str {
    veil_proto::http1::StatusCode::new(status).map_or("", veil_proto::http1::StatusCode::reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(request: &Request) -> Vec<(String, String)> {
        request
            .list
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn connect_becomes_method_and_authority() {
        let head = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
                     Proxy-Authorization: Bearer t0k\r\nProxy-Connection: Keep-Alive\r\n\r\nhello";
        let request = parse_request(head).expect("valid").expect("complete");
        assert_eq!(
            fields(&request),
            pairs(&[
                (":method", "CONNECT"),
                (":authority", "example.com:443"),
                ("proxy-authorization", "Bearer t0k"),
            ])
        );
        assert_eq!(&head[request.len..], b"hello");
        assert_eq!(request.upgrade, None);
    }

    #[test]
    fn an_upgrade_to_connect_udp_becomes_extended_connect() {
        let head = b"GET /.well-known/masque/udp/192.0.2.6/443/ HTTP/1.1\r\n\
                     Host: edge.example\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n\
                     Capsule-Protocol: ?1\r\n\r\n";
        let request = parse_request(head).expect("valid").expect("complete");
        assert_eq!(
            fields(&request),
            pairs(&[
                (":method", "CONNECT"),
                (":protocol", "connect-udp"),
                (":scheme", "https"),
                (":authority", "edge.example"),
                (":path", "/.well-known/masque/udp/192.0.2.6/443/"),
                ("capsule-protocol", "?1"),
            ])
        );
        assert_eq!(request.upgrade.as_deref(), Some(&b"connect-udp"[..]));
    }

    #[test]
    fn an_upgrade_without_connection_upgrade_is_a_plain_get() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: connect-udp\r\n\r\n";
        let request = parse_request(head).expect("valid").expect("complete");
        assert_eq!(request.list[0], (b":method".to_vec(), b"GET".to_vec()));
        assert_eq!(request.upgrade, None);
    }

    #[test]
    fn incomplete_heads_wait_and_bad_ones_are_refused() {
        assert_eq!(parse_request(b"CONNECT a:1 HTTP/1.1\r\nHo"), Ok(None));
        assert_eq!(
            parse_request(b"CONNECT a:1 HTTP/1.1\r\n\r\n").map(|r| r.is_some()),
            Ok(true)
        );
        for bad in [
            &b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..],
            b"CONNECT a:1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: connect-udp\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: connect-udp\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"\x16\x03\x01\x00\x05hello\r\n\r\n",
        ] {
            assert_eq!(
                parse_request(bad).map_err(|r| r.status),
                Err(400),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut many = b"CONNECT a:1 HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_FIELDS {
            many.extend_from_slice(format!("x-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&many).map_err(|r| r.status), Err(431));
    }

    fn response(fields: &[(&str, &str)], upgrade: Option<&[u8]>, fin: bool) -> (String, Outcome) {
        let fields: Vec<(&[u8], &[u8])> = fields
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        let mut out = Vec::new();
        let outcome = encode_response(&fields, upgrade, fin, &mut out).expect("a status");
        (String::from_utf8(out).expect("text"), outcome)
    }

    #[test]
    fn responses_are_written_as_http_1_1() {
        assert_eq!(
            response(&[(":status", "200")], None, false),
            ("HTTP/1.1 200 OK\r\n\r\n".to_owned(), Outcome::Tunnel)
        );
        assert_eq!(
            response(
                &[(":status", "200"), ("capsule-protocol", "?1")],
                Some(b"connect-udp"),
                false
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                 Upgrade: connect-udp\r\ncapsule-protocol: ?1\r\n\r\n"
                    .to_owned(),
                Outcome::Tunnel
            )
        );
        assert_eq!(
            response(
                &[(":status", "407"), ("proxy-authenticate", "Bearer")],
                None,
                true
            ),
            (
                "HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Bearer\r\n\
                 Connection: close\r\nContent-Length: 0\r\n\r\n"
                    .to_owned(),
                Outcome::Refused
            )
        );
        // A refused upgrade is a plain refusal; framing fields are ours to write.
        assert_eq!(
            response(
                &[(":status", "403"), ("content-length", "9"), ("x", "a\r\nb")],
                Some(b"connect-udp"),
                true
            )
            .0,
            "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        let mut out = Vec::new();
        assert_eq!(encode_response(&[(b"x", b"y")], None, true, &mut out), None);
    }
}

//! Request fixtures for `veil_proto::http1`: every request shape veil accepts or refuses,
//! each smuggling shape with its exact error, partial heads, size limits, and the exact
//! bytes of the rewritten upstream head.

use std::net::{Ipv4Addr, Ipv6Addr};

use veil_proto::http1::{
    BodyFraming, ConnectRequest, ForwardRequest, FramingError, Host, Limits, MAX_HEADERS,
    OriginForm, ProxyName, ProxyRequest, RequestDecoder, RequestError, SyntaxError, TargetError,
    UpstreamOptions, Version,
};

fn decode(bytes: &[u8]) -> Result<Option<ProxyRequest<'_>>, RequestError> {
    RequestDecoder::default().decode(bytes)
}

fn forward(bytes: &[u8]) -> ForwardRequest<'_> {
    match decode(bytes) {
        Ok(Some(ProxyRequest::Forward(request))) => request,
        other => panic!("expected a forward request, got {other:?}"),
    }
}

fn connect(bytes: &[u8]) -> ConnectRequest<'_> {
    match decode(bytes) {
        Ok(Some(ProxyRequest::Connect(request))) => request,
        other => panic!("expected a CONNECT request, got {other:?}"),
    }
}

fn refusal(bytes: &[u8]) -> RequestError {
    match decode(bytes) {
        Err(error) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn upstream(bytes: &[u8], options: &UpstreamOptions<'_>) -> String {
    let request = forward(bytes);
    let mut out = vec![0; request.upstream_head_len(options)];
    let len = match request.write_upstream_head(options, &mut out) {
        Ok(len) => len,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(len, out.len());
    String::from_utf8_lossy(&out).into_owned()
}

/// Feeds every prefix, one byte longer each time, and returns the first answer that is
/// not "need more". Every shorter prefix must have been "need more".
fn byte_at_a_time(bytes: &[u8]) -> Result<Option<ProxyRequest<'_>>, RequestError> {
    let mut decoder = RequestDecoder::default();
    for end in 1..=bytes.len() {
        let outcome = decoder.decode(&bytes[..end]);
        if !matches!(outcome, Ok(None)) {
            return outcome;
        }
    }
    Ok(None)
}

fn with_fields(request_line: &str, fields: &[&str]) -> Vec<u8> {
    let mut head = format!("{request_line}\r\n");
    for field in fields {
        head.push_str(field);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

// ---------------------------------------------------------------------------------------
// CONNECT

/// RFC 9112 §3.2.3's example.
#[test]
fn connect_rfc9112_example() {
    let bytes = b"CONNECT www.example.com:80 HTTP/1.1\r\n\
                  Host: www.example.com\r\n\
                  \r\n";
    let request = connect(bytes);
    assert_eq!(request.target().host(), Host::Name("www.example.com"));
    assert_eq!(request.target().port(), 80);
    assert_eq!(request.target().as_str(), "www.example.com:80");
    assert_eq!(request.head().method(), "CONNECT");
    assert_eq!(request.head().version(), Version::Http11);
    assert_eq!(request.head().head_len(), bytes.len());
}

#[test]
fn connect_keeps_tunnel_bytes_after_the_head() {
    let bytes = b"CONNECT [2001:db8::7]:8443 HTTP/1.1\r\n\
                  Host: [2001:db8::7]:8443\r\n\
                  \r\n\
                  \x16\x03\x01\x02\x00\x01"; // a TLS ClientHello starting early
    let request = connect(bytes);
    let addr: Ipv6Addr = "2001:db8::7".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
    assert_eq!(request.target().host(), Host::Ipv6(addr));
    assert_eq!(request.target().port(), 8443);
    assert_eq!(
        &bytes[request.head().head_len()..],
        b"\x16\x03\x01\x02\x00\x01"
    );
}

#[test]
fn connect_http10_without_host() {
    let request = connect(b"CONNECT 192.0.2.7:22 HTTP/1.0\r\n\r\n");
    assert_eq!(
        request.target().host(),
        Host::Ipv4(Ipv4Addr::new(192, 0, 2, 7))
    );
    assert_eq!(request.head().version(), Version::Http10);
}

#[test]
fn connect_with_credentials() {
    let request = connect(
        b"CONNECT example.com:443 HTTP/1.1\r\n\
          Host: example.com:443\r\n\
          Proxy-Authorization: Bearer abc.def\r\n\
          \r\n",
    );
    let credentials = request.head().proxy_authorization();
    assert!(credentials.is_some_and(|c| c.bearer_matches(b"abc.def")));
    assert!(!credentials.is_some_and(|c| c.bearer_matches(b"abc.deg")));
}

#[test]
fn connect_with_empty_content_length_is_accepted() {
    let request = connect(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(request.target().port(), 443);
}

#[test]
fn connect_refusals() {
    let connect_to =
        |target: &str| refusal(format!("CONNECT {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    assert_eq!(
        connect_to("example.com"),
        RequestError::Target(TargetError::MissingPort)
    );
    assert_eq!(
        connect_to("example.com:0"),
        RequestError::Target(TargetError::InvalidPort)
    );
    assert_eq!(
        connect_to("example.com:65536"),
        RequestError::Target(TargetError::InvalidPort)
    );
    assert_eq!(
        connect_to("[::1]"),
        RequestError::Target(TargetError::MissingPort)
    );
    assert_eq!(
        connect_to("/"),
        RequestError::Target(TargetError::Malformed)
    );
    assert_eq!(
        connect_to("http://example.com:443"),
        RequestError::Target(TargetError::Malformed)
    );
    assert_eq!(
        connect_to("u:p@example.com:443"),
        RequestError::Target(TargetError::Malformed)
    );
    assert_eq!(
        connect_to("0x7f.1:443"),
        RequestError::Target(TargetError::InvalidHost)
    );
}

//# RFC 9110 §9.3.6: "A CONNECT request message does not have content."
#[test]
fn connect_with_a_body_is_refused() {
    let with = |field: &str| {
        refusal(&with_fields(
            "CONNECT a.example:443 HTTP/1.1",
            &["Host: a.example", field],
        ))
    };
    assert_eq!(with("Content-Length: 5"), RequestError::ConnectWithBody);
    assert_eq!(
        with("Transfer-Encoding: chunked"),
        RequestError::ConnectWithBody
    );
}

// ---------------------------------------------------------------------------------------
// Forwarding

/// RFC 9112 §3.2.2's example request-line, forwarded in origin-form (RFC 9112 §3.2.1).
#[test]
fn forward_rfc9112_example() {
    let bytes = b"GET http://www.example.org/pub/WWW/TheProject.html HTTP/1.1\r\n\
                  Host: www.example.org\r\n\
                  \r\n";
    let request = forward(bytes);
    assert_eq!(request.target().host(), Host::Name("www.example.org"));
    assert_eq!(request.target().port(), 80);
    assert_eq!(request.path_and_query(), "/pub/WWW/TheProject.html");
    assert_eq!(request.framing(), BodyFraming::None);
    assert_eq!(
        upstream(bytes, &UpstreamOptions::default()),
        "GET /pub/WWW/TheProject.html HTTP/1.1\r\n\
         Host: www.example.org\r\n\
         \r\n"
    );
}

/// RFC 9112 §3.2.4's example: an OPTIONS for the whole origin becomes asterisk-form.
#[test]
fn forward_options_rfc9112_example() {
    let bytes =
        b"OPTIONS http://www.example.org:8001 HTTP/1.1\r\nHost: www.example.org:8001\r\n\r\n";
    assert_eq!(forward(bytes).origin_form(), OriginForm::Asterisk);
    assert_eq!(
        upstream(bytes, &UpstreamOptions::default()),
        "OPTIONS * HTTP/1.1\r\n\
         Host: www.example.org:8001\r\n\
         \r\n"
    );
    // With a query the path stays.
    let bytes = b"OPTIONS http://www.example.org?x HTTP/1.1\r\nHost: www.example.org\r\n\r\n";
    assert_eq!(forward(bytes).origin_form(), OriginForm::Path("?x"));
}

#[test]
fn forward_empty_path_becomes_slash() {
    let bytes = b"GET http://EXAMPLE.com:8080?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n";
    let request = forward(bytes);
    assert_eq!(request.target().port(), 8080);
    assert_eq!(request.path_and_query(), "?q=1");
    assert_eq!(request.origin_form().to_string(), "/?q=1");
    assert!(upstream(bytes, &UpstreamOptions::default()).starts_with(
        "GET /?q=1 HTTP/1.1\r\n\
         Host: EXAMPLE.com:8080\r\n"
    ));
}

/// The request-target's authority wins over a differing `Host`.
//# RFC 9112 §3.2.2: "When a proxy receives a request with an absolute-form of
//# request-target, the proxy MUST ignore the received Host header field (if any) and
//# instead replace it with the host information of the request-target."
#[test]
fn forward_host_field_is_replaced_by_the_target() {
    let bytes = b"GET http://real.example/page HTTP/1.1\r\n\
                  Host: pretend.example\r\n\
                  Accept: */*\r\n\
                  \r\n";
    assert_eq!(forward(bytes).target().host(), Host::Name("real.example"));
    assert_eq!(
        upstream(bytes, &UpstreamOptions::default()),
        "GET /page HTTP/1.1\r\n\
         Host: real.example\r\n\
         Accept: */*\r\n\
         \r\n"
    );
}

/// Every hop-by-hop field goes, and so does whatever `Connection` names; end-to-end fields
/// keep their order, case and bytes; framing is rewritten; `Via` and `Connection: close`
/// are added on request.
#[test]
fn forward_upstream_head_rewrite() {
    let bytes = b"POST http://api.example:8080/v1/items?id=7 HTTP/1.1\r\n\
                  Host: api.example:8080\r\n\
                  User-Agent: curl/8.5.0\r\n\
                  Proxy-Authorization: Basic dTpw\r\n\
                  Proxy-Connection: Keep-Alive\r\n\
                  Connection: keep-alive, X-Hop\r\n\
                  X-Hop: secret\r\n\
                  Keep-Alive: timeout=5\r\n\
                  TE: trailers\r\n\
                  Trailer: X-Checksum\r\n\
                  Upgrade: websocket\r\n\
                  Content-Length: 2, 2\r\n\
                  Content-Type: application/json\r\n\
                  X-Opaque: caf\xc3\xa9\r\n\
                  \r\n\
                  {}";
    let request = forward(bytes);
    assert_eq!(request.framing(), BodyFraming::ContentLength(2));
    assert_eq!(&bytes[request.head().head_len()..], b"{}");
    let via = ProxyName::new("veil").ok();
    let options = UpstreamOptions {
        via,
        connection_close: true,
    };
    assert_eq!(
        upstream(bytes, &options),
        "POST /v1/items?id=7 HTTP/1.1\r\n\
         Host: api.example:8080\r\n\
         User-Agent: curl/8.5.0\r\n\
         Content-Type: application/json\r\n\
         X-Opaque: caf\u{e9}\r\n\
         Content-Length: 2\r\n\
         Via: 1.1 veil\r\n\
         Connection: close\r\n\
         \r\n"
    );
}

#[test]
fn forward_chunked_is_normalized() {
    let bytes = b"PUT http://a.example/x HTTP/1.1\r\n\
                  Host: a.example\r\n\
                  Transfer-Encoding: , Chunked\r\n\
                  \r\n\
                  5\r\nhello\r\n0\r\n\r\n";
    let request = forward(bytes);
    assert_eq!(request.framing(), BodyFraming::Chunked);
    assert_eq!(
        &bytes[request.head().head_len()..],
        b"5\r\nhello\r\n0\r\n\r\n"
    );
    assert_eq!(
        upstream(bytes, &UpstreamOptions::default()),
        "PUT /x HTTP/1.1\r\n\
         Host: a.example\r\n\
         Transfer-Encoding: chunked\r\n\
         \r\n"
    );
}

#[test]
fn forward_http10_gets_a_host_and_its_own_via_version() {
    let bytes = b"GET http://old.example/ HTTP/1.0\r\n\r\n";
    let options = UpstreamOptions {
        via: ProxyName::new("veil").ok(),
        connection_close: false,
    };
    assert_eq!(
        upstream(bytes, &options),
        "GET / HTTP/1.1\r\n\
         Host: old.example\r\n\
         Via: 1.0 veil\r\n\
         \r\n"
    );
}

/// Bare LF line endings and empty lines before the request-line are tolerated (RFC 9112
/// §2.2); the upstream head is written with CRLF.
#[test]
fn forward_lenient_line_endings_are_normalized() {
    let bytes = b"\r\n\nGET http://a.example/ HTTP/1.1\nHost: a.example\nX: 1\n\n";
    let request = forward(bytes);
    assert_eq!(request.head().head_len(), bytes.len());
    assert_eq!(
        upstream(bytes, &UpstreamOptions::default()),
        "GET / HTTP/1.1\r\nHost: a.example\r\nX: 1\r\n\r\n"
    );
}

#[test]
fn upstream_head_needs_room() {
    let request = forward(b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n");
    let options = UpstreamOptions::default();
    let needed = request.upstream_head_len(&options);
    let mut out = vec![0xaa; needed - 1];
    let error = request.write_upstream_head(&options, &mut out);
    assert_eq!(
        error.map_err(|e| (e.needed, e.available)),
        Err((needed, needed - 1))
    );
    assert!(out.iter().all(|&b| b == 0xaa), "nothing written");
}

#[test]
fn forward_refusals() {
    let get =
        |target: &str| refusal(format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    assert_eq!(
        get("/index.html"),
        RequestError::Target(TargetError::OriginForm)
    );
    assert_eq!(
        get("https://a.example/"),
        RequestError::Target(TargetError::UnsupportedScheme)
    );
    assert_eq!(
        get("ftp://a.example/f"),
        RequestError::Target(TargetError::UnsupportedScheme)
    );
    assert_eq!(
        get("a.example:443"),
        RequestError::Target(TargetError::Malformed)
    );
    assert_eq!(
        get("http://u:p@a.example/"),
        RequestError::Target(TargetError::UserInfo)
    );
    assert_eq!(
        get("http://a.example/#frag"),
        RequestError::Target(TargetError::Fragment)
    );
    assert_eq!(
        get("http:///x"),
        RequestError::Target(TargetError::MissingAuthority)
    );
    assert_eq!(
        get("http://a.example:99999/"),
        RequestError::Target(TargetError::InvalidPort)
    );
    assert_eq!(
        get("http://0177.0.0.1/"),
        RequestError::Target(TargetError::InvalidHost)
    );
    assert_eq!(
        refusal(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
        RequestError::Target(TargetError::AsteriskForm)
    );
    assert_eq!(
        refusal("GET http://a.example/caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes()),
        RequestError::Target(TargetError::InvalidCharacter)
    );
    // Statuses the engine answers with.
    assert_eq!(get("/").status().as_u16(), 400);
    assert_eq!(get("https://a.example/").status().as_u16(), 501);
}

//# RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
//# HTTP/1.1 request message that lacks a Host header field and to any request message that
//# contains more than one Host header field line or a Host header field with an invalid
//# field value."
#[test]
fn host_field_rules() {
    let line = "GET http://a.example/ HTTP/1.1";
    assert_eq!(refusal(&with_fields(line, &[])), RequestError::MissingHost);
    assert_eq!(
        refusal(&with_fields(line, &["Host: a.example", "Host: a.example"])),
        RequestError::DuplicateHost
    );
    assert_eq!(
        refusal(&with_fields(line, &["Host: a, b"])),
        RequestError::InvalidHost
    );
    assert_eq!(
        refusal(&with_fields(line, &["Host:"])),
        RequestError::InvalidHost
    );
    assert_eq!(
        refusal(&with_fields(line, &["Host: a/b"])),
        RequestError::InvalidHost
    );
    assert_eq!(
        refusal(&with_fields(line, &["Host: u@a"])),
        RequestError::InvalidHost
    );
    assert_eq!(
        refusal(&with_fields(line, &["Host: a:b"])),
        RequestError::InvalidHost
    );
    assert!(decode(&with_fields(line, &["hOsT: A.Example:80"])).is_ok_and(|r| r.is_some()));
}

#[test]
fn proxy_authorization_rules() {
    let line = "GET http://a.example/ HTTP/1.1";
    let credentials = with_fields(
        line,
        &[
            "Host: a",
            "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        ],
    );
    let request = forward(&credentials);
    let basic = request.head().proxy_authorization();
    assert!(basic.is_some_and(|c| c.basic_matches(b"Aladdin", b"open sesame")));
    assert_eq!(
        refusal(&with_fields(
            line,
            &[
                "Host: a",
                "Proxy-Authorization: Bearer x",
                "Proxy-Authorization: Bearer y"
            ]
        )),
        RequestError::DuplicateProxyAuthorization
    );
    assert_eq!(
        refusal(&with_fields(line, &["Host: a", "Proxy-Authorization:"])),
        RequestError::InvalidProxyAuthorization
    );
    assert_eq!(
        refusal(&with_fields(
            line,
            &["Host: a", "Proxy-Authorization: B@sic x"]
        )),
        RequestError::InvalidProxyAuthorization
    );
    assert!(
        forward(&with_fields(line, &["Host: a"]))
            .head()
            .proxy_authorization()
            .is_none()
    );
}

#[test]
fn debug_output_hides_credentials() {
    let bytes = with_fields(
        "GET http://a.example/ HTTP/1.1",
        &[
            "Host: a",
            "Proxy-Authorization: Bearer hunter2",
            "Cookie: session=hunter3",
        ],
    );
    let shown = format!("{:?}", decode(&bytes));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("hunter3"), "{shown}");
    assert!(shown.contains("Bearer"), "{shown}");
}

// ---------------------------------------------------------------------------------------
// Request smuggling shapes (RFC 9112 §5, §6)

fn post(fields: &[&str]) -> Vec<u8> {
    let mut all = vec!["Host: a.example"];
    all.extend_from_slice(fields);
    with_fields("POST http://a.example/ HTTP/1.1", &all)
}

fn framing_error(fields: &[&str]) -> RequestError {
    refusal(&post(fields))
}

#[test]
fn smuggling_content_length_and_transfer_encoding() {
    let expected = RequestError::Framing(FramingError::ContentLengthWithTransferEncoding);
    assert_eq!(
        framing_error(&["Content-Length: 6", "Transfer-Encoding: chunked"]),
        expected
    );
    assert_eq!(
        framing_error(&["Transfer-Encoding: chunked", "Content-Length: 6"]),
        expected
    );
    assert_eq!(
        framing_error(&["Transfer-Encoding: chunked", "Content-Length: 0"]),
        expected
    );
}

#[test]
fn smuggling_content_length_values() {
    let conflicting = RequestError::Framing(FramingError::ConflictingContentLength);
    assert_eq!(
        framing_error(&["Content-Length: 5", "Content-Length: 6"]),
        conflicting
    );
    assert_eq!(framing_error(&["Content-Length: 5, 6"]), conflicting);
    let invalid = RequestError::Framing(FramingError::InvalidContentLength);
    for value in [
        "+5",
        "-1",
        "-0",
        "0x5",
        "0o5",
        "5_0",
        "5 5",
        "1e3",
        "",
        "5,",
        ",5",
        "99999999999999999999",
    ] {
        let field = format!("Content-Length: {value}");
        assert_eq!(framing_error(&[&field]), invalid, "{value:?}");
    }
    // The same value repeated is one value (RFC 9110 §8.6), forwarded once.
    let bytes = post(&["Content-Length: 3, 3", "Content-Length: 003"]);
    assert_eq!(forward(&bytes).framing(), BodyFraming::ContentLength(3));
    assert!(
        upstream(&bytes, &UpstreamOptions::default()).ends_with("\r\nContent-Length: 3\r\n\r\n")
    );
}

#[test]
fn smuggling_transfer_encoding_values() {
    let error = |value: &str| framing_error(&[&format!("Transfer-Encoding: {value}")]);
    let not_final = RequestError::Framing(FramingError::ChunkedNotFinal);
    assert_eq!(error("gzip"), not_final);
    assert_eq!(error("chunked, gzip"), not_final);
    assert_eq!(error("identity"), not_final);
    assert_eq!(error("xchunked"), not_final);
    assert_eq!(
        error("chunked, chunked"),
        RequestError::Framing(FramingError::ChunkedTwice)
    );
    assert_eq!(
        error("gzip, chunked"),
        RequestError::Framing(FramingError::UnsupportedTransferCoding)
    );
    assert_eq!(error("gzip, chunked").status().as_u16(), 501);
    let malformed = RequestError::Framing(FramingError::InvalidTransferEncoding);
    assert_eq!(error(""), malformed);
    assert_eq!(error(" , "), malformed);
    assert_eq!(error("chunked;x=1"), malformed);
    assert_eq!(error("\"chunked\""), malformed);
    assert_eq!(
        framing_error(&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]),
        RequestError::Framing(FramingError::ChunkedTwice)
    );
    assert_eq!(
        framing_error(&["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"]),
        not_final
    );
    // Trailing whitespace is not part of a field value.
    assert_eq!(
        forward(&post(&["Transfer-Encoding: chunked \t"])).framing(),
        BodyFraming::Chunked
    );
}

#[test]
fn smuggling_transfer_encoding_in_http10() {
    let bytes = with_fields(
        "POST http://a.example/ HTTP/1.0",
        &["Transfer-Encoding: chunked", "Content-Length: 5"],
    );
    assert_eq!(
        refusal(&bytes),
        RequestError::Framing(FramingError::TransferEncodingInHttp10)
    );
}

/// httparse refuses these for requests; checked here so a dependency update cannot loosen
/// them unnoticed.
#[test]
fn smuggling_field_syntax() {
    let name = RequestError::Syntax(SyntaxError::HeaderName);
    let value = RequestError::Syntax(SyntaxError::HeaderValue);
    // RFC 9112 §5.1: whitespace between field name and colon.
    assert_eq!(framing_error(&["Transfer-Encoding : chunked"]), name);
    assert_eq!(framing_error(&["Content-Length\t: 5"]), name);
    // RFC 9112 §5.2: obs-fold.
    assert_eq!(framing_error(&["Transfer-Encoding:", " chunked"]), name);
    assert_eq!(framing_error(&["X-A: 1", "\tcontinued"]), name);
    // RFC 9112 §2.2: whitespace between the start-line and the first field.
    assert_eq!(refusal(b"GET http://a/ HTTP/1.1\r\n Host: a\r\n\r\n"), name);
    // Field names are tokens; a line needs a colon.
    assert_eq!(framing_error(&["X[1]: a"]), name);
    assert_eq!(framing_error(&["no colon here"]), name);
    assert_eq!(framing_error(&[": empty name"]), name);
    // CR, LF and NUL in values; control characters.
    assert_eq!(framing_error(&["Transfer-Encoding: chunked\x0b"]), value);
    assert_eq!(framing_error(&["Transfer-Encoding: \x0cchunked"]), value);
    assert_eq!(framing_error(&["X: a\0b"]), value);
    assert_eq!(framing_error(&["X: a\rb"]), value);
}

#[test]
fn request_line_syntax() {
    let line = |l: &str| refusal(format!("{l}\r\nHost: a\r\n\r\n").as_bytes());
    assert_eq!(
        line("GET http://a/b c HTTP/1.1"),
        RequestError::Syntax(SyntaxError::Version)
    );
    assert_eq!(
        line("GET  HTTP/1.1"),
        RequestError::Syntax(SyntaxError::RequestLine)
    );
    assert_eq!(
        line("GET http://a/  HTTP/1.1"),
        RequestError::Syntax(SyntaxError::Version)
    );
    assert_eq!(
        line("G(T http://a/ HTTP/1.1"),
        RequestError::Syntax(SyntaxError::RequestLine)
    );
    assert_eq!(
        line("GET http://a/ http/1.1"),
        RequestError::Syntax(SyntaxError::Version)
    );
    assert_eq!(
        line("GET http://a/ HTTP/1.2"),
        RequestError::Syntax(SyntaxError::Version)
    );
    assert_eq!(
        line("GET http://a/ HTTP/2.0"),
        RequestError::Syntax(SyntaxError::Version)
    );
    assert_eq!(
        line("GET http://a/ HTTP/1"),
        RequestError::Syntax(SyntaxError::Version)
    );
    assert_eq!(
        line("GET http://a/\0 HTTP/1.1"),
        RequestError::Syntax(SyntaxError::RequestLine)
    );
    // CR without LF ends nothing.
    assert_eq!(
        refusal(b"GET http://a/ HTTP/1.1\rHost: a\r\r"),
        RequestError::Syntax(SyntaxError::LineEnding)
    );
    // A TLS ClientHello sent to the plain-HTTP port is refused at its first line break.
    assert_eq!(
        refusal(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n"),
        RequestError::Syntax(SyntaxError::RequestLine)
    );
}

// ---------------------------------------------------------------------------------------
// Partial heads and limits

#[test]
fn every_fixture_decodes_the_same_byte_at_a_time() {
    let fixtures: [&[u8]; 9] = [
        b"CONNECT www.example.com:80 HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
        b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]\r\n\r\n\x16\x03\x01",
        b"GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"\r\n\r\nGET http://a.example/ HTTP/1.1\nHost: a.example\n\n",
        b"POST http://a.example/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        b"POST http://a.example/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for bytes in fixtures {
        assert_eq!(
            byte_at_a_time(bytes),
            decode(bytes),
            "{}",
            String::from_utf8_lossy(bytes)
        );
        assert!(!matches!(decode(bytes), Ok(None)));
    }
}

#[test]
fn incomplete_heads_need_more() {
    let full = b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let mut decoder = RequestDecoder::default();
    for end in 0..full.len() {
        assert_eq!(decoder.decode(&full[..end]), Ok(None), "{end}");
    }
    assert!(matches!(
        decoder.decode(full),
        Ok(Some(ProxyRequest::Forward(_)))
    ));
    // The decoder starts afresh: a second request in a new buffer decodes too.
    assert!(matches!(
        decoder.decode(b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n"),
        Ok(Some(ProxyRequest::Connect(_)))
    ));
}

#[test]
fn head_length_limit() {
    let head = b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let exact = Limits {
        max_head_len: head.len(),
    };
    // A head of exactly the limit passes, with body bytes beyond it.
    let mut with_body = head.to_vec();
    with_body.extend_from_slice(b"trailing body bytes");
    assert!(matches!(
        RequestDecoder::new(exact).decode(&with_body),
        Ok(Some(_))
    ));
    // One byte less and it is too large; the request-line was whole.
    let short = Limits {
        max_head_len: head.len() - 1,
    };
    assert_eq!(
        RequestDecoder::new(short).decode(head),
        Err(RequestError::HeadTooLarge)
    );
    assert_eq!(RequestError::HeadTooLarge.status().as_u16(), 431);
    // Fed byte by byte the error comes when the limit is reached, not before.
    let mut decoder = RequestDecoder::new(short);
    for end in 0..short.max_head_len {
        assert_eq!(decoder.decode(&head[..end]), Ok(None));
    }
    assert_eq!(
        decoder.decode(&head[..short.max_head_len]),
        Err(RequestError::HeadTooLarge)
    );
}

#[test]
fn request_line_limit() {
    let long_path = "x".repeat(Limits::DEFAULT_MAX_HEAD_LEN);
    let bytes = format!("GET http://a.example/{long_path} HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        decode(bytes.as_bytes()),
        Err(RequestError::RequestLineTooLong)
    );
    assert_eq!(RequestError::RequestLineTooLong.status().as_u16(), 414);
    // Within a raised limit the same request is fine.
    let limits = Limits {
        max_head_len: 2 * Limits::DEFAULT_MAX_HEAD_LEN,
    };
    assert!(matches!(
        RequestDecoder::new(limits).decode(bytes.as_bytes()),
        Ok(Some(_))
    ));
}

#[test]
fn header_count_limit() {
    let fields: Vec<String> = (1..MAX_HEADERS).map(|i| format!("X-{i}: {i}")).collect();
    let mut refs: Vec<&str> = vec!["Host: a"];
    refs.extend(fields.iter().map(String::as_str));
    let at_limit = with_fields("GET http://a/ HTTP/1.1", &refs);
    assert_eq!(forward(&at_limit).head().fields().len(), MAX_HEADERS);
    refs.push("X-One-Too-Many: 1");
    let over = with_fields("GET http://a/ HTTP/1.1", &refs);
    assert_eq!(refusal(&over), RequestError::TooManyHeaders);
    assert_eq!(RequestError::TooManyHeaders.status().as_u16(), 431);
}

//! Response fixtures for `veil_proto::http1`: exact bytes of the heads veil generates,
//! `Proxy-Status` serialization (RFC 9209, RFC 8941) and `Proxy-Authenticate` challenges.

use veil_proto::BufferTooSmall;
use veil_proto::http1::{
    Challenge, ProxyErrorType, ProxyName, ProxyStatus, QuotedText, RequestError, Response,
    ResponseField, StatusCode, TextError,
};

const VEIL: ProxyName<'static> = match ProxyName::new("veil") {
    Ok(name) => name,
    Err(_) => panic!("valid name"),
};

const fn text(s: &'static str) -> QuotedText<'static> {
    match QuotedText::new(s) {
        Ok(text) => text,
        Err(_) => panic!("valid text"),
    }
}

fn encoded(response: &Response<'_>) -> String {
    let mut out = vec![0; response.encoded_len()];
    match response.encode(&mut out) {
        Ok(len) => assert_eq!(len, out.len()),
        Err(e) => panic!("{e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn proxy_status(status: &ProxyStatus<'_>) -> String {
    let mut out = vec![0; status.encoded_len()];
    match status.encode(&mut out) {
        Ok(len) => assert_eq!(len, out.len()),
        Err(e) => panic!("{e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 9110 §9.3.6: no framing field on a 2xx to CONNECT.
#[test]
fn connection_established() {
    assert_eq!(
        encoded(&Response::connection_established()),
        "HTTP/1.1 200 Connection Established\r\n\r\n"
    );
}

#[test]
fn proxy_status_error_only() {
    let status = ProxyStatus::new(VEIL).error(ProxyErrorType::DestinationIpProhibited);
    assert_eq!(
        proxy_status(&status),
        "veil;error=destination_ip_prohibited"
    );
}

#[test]
fn proxy_status_every_parameter() {
    let status = ProxyStatus::new(VEIL)
        .dns_error(Some(text("NXDOMAIN")), Some(22))
        .next_hop(text("origin.example:443"))
        .received_status(StatusCode::SERVICE_UNAVAILABLE)
        .details(text(r#"lookup "origin.example" \ failed"#));
    assert_eq!(
        proxy_status(&status),
        r#"veil;error=dns_error;rcode="NXDOMAIN";info-code=22;next-hop="origin.example:443";received-status=503;details="lookup \"origin.example\" \\ failed""#
    );
}

#[test]
fn proxy_status_every_error_token() {
    let expected = [
        "dns_timeout",
        "dns_error",
        "destination_not_found",
        "destination_unavailable",
        "destination_ip_prohibited",
        "destination_ip_unroutable",
        "connection_refused",
        "connection_terminated",
        "connection_timeout",
        "connection_read_timeout",
        "connection_write_timeout",
        "connection_limit_reached",
        "tls_protocol_error",
        "tls_certificate_error",
        "tls_alert_received",
        "http_request_error",
        "http_request_denied",
        "http_response_incomplete",
        "http_response_header_section_size",
        "http_response_header_size",
        "http_response_body_size",
        "http_response_trailer_section_size",
        "http_response_trailer_size",
        "http_response_transfer_coding",
        "http_response_content_coding",
        "http_response_timeout",
        "http_upgrade_failed",
        "http_protocol_error",
        "proxy_internal_response",
        "proxy_internal_error",
        "proxy_configuration_error",
        "proxy_loop_detected",
    ];
    for (error, token) in ProxyErrorType::ALL.iter().zip(expected) {
        assert_eq!(
            proxy_status(&ProxyStatus::new(VEIL).error(*error)),
            format!("veil;error={token}")
        );
    }
}

#[test]
fn details_must_be_printable_ascii() {
    assert_eq!(
        QuotedText::new("refused\r\nX-Evil: 1"),
        Err(TextError::InvalidByte { index: 7 })
    );
    assert_eq!(
        QuotedText::new("caf\u{e9}"),
        Err(TextError::InvalidByte { index: 3 })
    );
}

/// RFC 9209 §2.1.1's example shape: a 504 from a proxy whose connection timed out.
#[test]
fn gateway_timeout_with_proxy_status() {
    let error = ProxyErrorType::ConnectionTimeout;
    let status = error
        .recommended_status()
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let response = Response::new(status)
        .with_proxy_status(ProxyStatus::new(VEIL).error(error))
        .with_connection_close();
    assert_eq!(
        encoded(&response),
        "HTTP/1.1 504 Gateway Timeout\r\n\
         Proxy-Status: veil;error=connection_timeout\r\n\
         Content-Length: 0\r\n\
         Connection: close\r\n\
         \r\n"
    );
}

#[test]
fn refusing_a_malformed_request() {
    let error = RequestError::DuplicateHost;
    let response = Response::new(error.status())
        .with_proxy_status(
            ProxyStatus::new(VEIL)
                .error(ProxyErrorType::HttpRequestError)
                .details(text("more than one Host field")),
        )
        .with_connection_close();
    assert_eq!(
        encoded(&response),
        "HTTP/1.1 400 Bad Request\r\n\
         Proxy-Status: veil;error=http_request_error;details=\"more than one Host field\"\r\n\
         Content-Length: 0\r\n\
         Connection: close\r\n\
         \r\n"
    );
}

#[test]
fn proxy_authentication_required() {
    let challenges = [
        Challenge::Bearer { realm: None },
        Challenge::Basic {
            realm: text(r#"veil "local" proxy"#),
        },
    ];
    assert_eq!(
        encoded(&Response::proxy_authentication_required(&challenges)),
        "HTTP/1.1 407 Proxy Authentication Required\r\n\
         Proxy-Authenticate: Bearer\r\n\
         Proxy-Authenticate: Basic realm=\"veil \\\"local\\\" proxy\"\r\n\
         Content-Length: 0\r\n\
         \r\n"
    );
    let bearer = [Challenge::Bearer {
        realm: Some(text("veil")),
    }];
    assert_eq!(
        encoded(&Response::proxy_authentication_required(&bearer)),
        "HTTP/1.1 407 Proxy Authentication Required\r\n\
         Proxy-Authenticate: Bearer realm=\"veil\"\r\n\
         Content-Length: 0\r\n\
         \r\n"
    );
}

#[test]
fn extra_fields_and_unnamed_statuses() {
    let fields = match ResponseField::new("Retry-After", "30") {
        Ok(field) => [field],
        Err(e) => panic!("{e}"),
    };
    let status = StatusCode::new(599).unwrap_or(StatusCode::BAD_GATEWAY);
    assert_eq!(
        encoded(&Response::new(status).with_fields(&fields)),
        "HTTP/1.1 599 \r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn encode_reports_the_full_length_needed() {
    let response = Response::new(StatusCode::FORBIDDEN)
        .with_proxy_status(ProxyStatus::new(VEIL).error(ProxyErrorType::HttpRequestDenied));
    let needed = response.encoded_len();
    let mut out = vec![0x55; needed - 1];
    assert_eq!(
        response.encode(&mut out),
        Err(BufferTooSmall {
            needed,
            available: needed - 1
        })
    );
    assert!(out.iter().all(|&b| b == 0x55));
    let status = ProxyStatus::new(VEIL);
    let mut exact = [0; 4];
    assert_eq!(status.encode(&mut exact), Ok(4));
    assert_eq!(&exact, b"veil");
    assert_eq!(
        status.encode(&mut exact[..3]),
        Err(BufferTooSmall {
            needed: 4,
            available: 3
        })
    );
}

/// What veil writes parses back with an independent HTTP/1 parser (httparse's response
/// side), with the same status and fields.
#[test]
fn generated_heads_parse_back() {
    let challenges = [Challenge::Basic { realm: text("r") }];
    let responses = [
        Response::connection_established(),
        Response::proxy_authentication_required(&challenges).with_connection_close(),
        Response::new(StatusCode::BAD_GATEWAY).with_proxy_status(
            ProxyStatus::new(VEIL)
                .error(ProxyErrorType::ConnectionRefused)
                .details(text("a \"quoted\" detail")),
        ),
    ];
    for response in responses {
        let bytes = encoded(&response).into_bytes();
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Response::new(&mut headers);
        assert_eq!(
            parsed.parse(&bytes),
            Ok(httparse::Status::Complete(bytes.len()))
        );
        assert_eq!(parsed.code, Some(response.status().as_u16()));
    }
}

//! CONNECT-UDP request and response heads (RFC 9298 §3.4, §3.5): checking requests on
//! the edge, building them on the client.
//!
//! Pure functions over header lists, like [`connect`](crate::connect), whose shape,
//! authentication and egress rules they share.

use quiche::h3::{Header, NameValue};
use veil_proto::masque::udp::{self as masque, PathTemplate};

use crate::config::{Secret, Token};
use crate::connect::{self, Accepted, ErrorResponse, RequestFields};
use crate::egress::{HostKind, classify_host};
use crate::types::{Host, TunnelKind, TunnelTarget};
use crate::udp::numeric;

/// The `:protocol` of a CONNECT-UDP request, its HTTP Upgrade Token.
pub(crate) const PROTOCOL: &str = "connect-udp";

/// Checks the rest of an Extended CONNECT whose `:protocol` is `connect-udp`: shape, then
/// credentials, then the target read from `:path`, then egress for IP literals.
//# RFC 9298 §3.4: "The ":path" and ":scheme" pseudo-header fields SHALL NOT be empty.
//# Their values SHALL contain the scheme and path from the URI Template after the URI
//# template expansion process has been completed."
//# RFC 9114 §4.1.2: "Malformed requests or responses that are detected MUST be treated as
//# a stream error of type H3_MESSAGE_ERROR."
// The edge answers a malformed request with 400 (and Proxy-Status) before resetting, as
// it does a malformed CONNECT: the client learns why.
pub(crate) fn check(
    fields: &RequestFields<'_>,
    tokens: &[Token],
    template: &PathTemplate<'_>,
) -> Result<Accepted, ErrorResponse> {
    // A URI Template for a UDP proxy is an https URI; HTTP/3 carries nothing else.
    if non_empty(fields.scheme) != Some(&b"https"[..]) {
        return Err(ErrorResponse::BAD_REQUEST);
    }
    let path = non_empty(fields.path).ok_or(ErrorResponse::BAD_REQUEST)?;
    //# RFC 9298 §3.4: "The ":authority" pseudo-header field SHALL contain the authority of
    //# the UDP proxy."
    non_empty(fields.authority).ok_or(ErrorResponse::BAD_REQUEST)?;
    let token_index =
        connect::authenticate(fields.authorization, fields.authorization_count, tokens)?;
    //# RFC 9297 §3.2: "The Capsule Protocol MUST NOT be used with messages that contain
    //# Content-Length, Content-Type, or Transfer-Encoding header fields. [...] A receiver
    //# that observes a violation of these requirements MUST treat the HTTP message as
    //# malformed."
    if fields.content_fields {
        return Err(ErrorResponse::BAD_REQUEST);
    }
    // No `capsule-protocol: ?1` is needed: RFC 9298 §3.4 lists what a request must carry
    // and the field is not among them, and RFC 9297 §3.4 only asks senders for it:
    //# RFC 9297 §3.4: "When using the Capsule Protocol, HTTP endpoints SHOULD send the
    //# Capsule-Protocol header field to simplify intermediary processing."
    let (host, port) = match template.match_path(path) {
        Ok(target) => (egress_host(target.host)?, target.port),
        // A numeric spelling of an address is judged as the address, as in a CONNECT.
        Err(error) => match numeric::numeric_target(template, path, error) {
            Some((text, port)) => match classify_host(&text) {
                Ok(HostKind::Ip(ip)) => (Host::Ip(ip), port),
                _ => return Err(ErrorResponse::BAD_REQUEST),
            },
            None => return Err(ErrorResponse::BAD_REQUEST),
        },
    };
    Ok(Accepted {
        target: TunnelTarget {
            host,
            port: port.get(),
        },
        token_index,
        kind: TunnelKind::Udp,
        ip_scope: None,
    })
}

/// A field's value, unless absent or empty.
fn non_empty(value: Option<&[u8]>) -> Option<&[u8]> {
    value.filter(|v| !v.is_empty())
}

/// The host as egress policy must see it: a name that any resolver reads as an address
/// (`localhost`) is that address, so the policy judges what would be reached.
fn egress_host(host: Host) -> Result<Host, ErrorResponse> {
    match host {
        Host::Ip(ip) => Ok(Host::Ip(ip)),
        Host::Name(name) => match classify_host(name.as_str()) {
            Ok(HostKind::Ip(ip)) => Ok(Host::Ip(ip)),
            Ok(HostKind::Name) => Ok(Host::Name(name)),
            Err(_) => Err(ErrorResponse::BAD_REQUEST),
        },
    }
}

/// The `:path` of a request for `target` under `template`; `None` for port 0, which
/// CONNECT-UDP cannot ask for.
pub(crate) fn expand_path(template: &PathTemplate<'_>, target: &TunnelTarget) -> Option<String> {
    let port = core::num::NonZeroU16::new(target.port)?;
    let target = masque::Target::new(target.host.clone(), port);
    let mut path = vec![0; template.expanded_len(&target)];
    let len = template.expand(&target, &mut path).ok()?;
    path.truncate(len);
    String::from_utf8(path).ok()
}

/// The `:authority` of the client's requests: the edge's name and port.
pub(crate) fn proxy_authority(server_name: &str, port: u16) -> String {
    if server_name.contains(':') {
        format!("[{server_name}]:{port}")
    } else {
        format!("{server_name}:{port}")
    }
}

/// The request head a client sends to open a UDP tunnel.
pub(crate) fn request_headers(
    protocol: &str,
    authority: &str,
    path: &str,
    token: Option<&Secret>,
) -> Vec<Header> {
    let mut headers = vec![
        Header::new(b":method", b"CONNECT"),
        Header::new(b":protocol", protocol.as_bytes()),
        Header::new(b":scheme", b"https"),
        Header::new(b":authority", authority.as_bytes()),
        Header::new(b":path", path.as_bytes()),
        // The tunnel's data stream carries capsules (RFC 9297 §3.4).
        Header::new(b"capsule-protocol", b"?1"),
    ];
    if let Some(token) = token {
        headers.push(connect::authorization(token));
    }
    headers
}

/// The 2xx the edge sends when the host accepts a UDP tunnel.
pub(crate) fn accept_headers() -> [Header; 2] {
    [
        Header::new(b":status", b"200"),
        Header::new(b"capsule-protocol", b"?1"),
    ]
}

/// Whether a 2xx response carries fields a UDP proxying response must not have.
//# RFC 9298 §3.5: "The UDP proxy SHALL indicate a successful response by replying with
//# any 2xx (Successful) HTTP status code, without any "Transfer-Encoding" or
//# "Content-Length" header fields."
//# RFC 9297 §3.2: "The Capsule Protocol MUST NOT be used with messages that contain
//# Content-Length, Content-Type, or Transfer-Encoding header fields. Additionally, HTTP
//# status codes 204 (No Content), 205 (Reset Content), and 206 (Partial Content) MUST NOT
//# be sent on responses that use the Capsule Protocol. A receiver that observes a
//# violation of these requirements MUST treat the HTTP message as malformed."
pub(crate) fn success_is_malformed(headers: &[Header]) -> bool {
    headers.iter().any(|h| match h.name() {
        b":status" => matches!(h.value(), b"204" | b"205" | b"206"),
        name => is_content_field(name),
    })
}

/// A field the Capsule Protocol forbids on its messages.
pub(crate) fn is_content_field(name: &[u8]) -> bool {
    matches!(
        name,
        b"content-length" | b"content-type" | b"transfer-encoding"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::checked_request;
    use crate::egress::EgressPolicy;
    use crate::types::Refusal;

    fn head(fields: &[(&str, &str)]) -> Vec<Header> {
        fields
            .iter()
            .map(|(name, value)| Header::new(name.as_bytes(), value.as_bytes()))
            .collect()
    }

    fn udp(path: &str) -> Vec<Header> {
        head(&[
            (":method", "CONNECT"),
            (":protocol", "connect-udp"),
            (":scheme", "https"),
            (":authority", "proxy.test:443"),
            (":path", path),
        ])
    }

    fn check(headers: &[Header]) -> Result<Accepted, ErrorResponse> {
        checked_request(
            headers,
            &[],
            &EgressPolicy::default(),
            &PathTemplate::DEFAULT,
        )
    }

    fn status(result: Result<Accepted, ErrorResponse>) -> u16 {
        result.map_or_else(|r| r.status, |_| 200)
    }

    #[test]
    fn reads_the_target_from_the_path() {
        let accepted = check(&udp("/.well-known/masque/udp/Example.com/53/")).expect("valid");
        assert_eq!(accepted.kind, TunnelKind::Udp);
        assert_eq!(accepted.target.to_string(), "example.com:53");
        let accepted =
            check(&udp("/.well-known/masque/udp/2606%3A4700%3A%3A1111/443/")).expect("valid");
        assert_eq!(accepted.target.to_string(), "[2606:4700::1111]:443");
        // A query the template does not have is ignored.
        assert!(check(&udp("/.well-known/masque/udp/1.1.1.1/53/?x=1")).is_ok());
    }

    #[test]
    fn malformed_requests_are_400() {
        for path in [
            "/.well-known/masque/udp/example.com/0/",
            "/.well-known/masque/udp/example.com/65536/",
            "/.well-known/masque/udp/example.com/053/",
            "/.well-known/masque/udp/example.com//",
            "/.well-known/masque/udp//53/",
            "/.well-known/masque/udp/2001:db8::1/53/",
            "/.well-known/masque/udp/%5B2001%3Adb8%3A%3A1%5D/53/",
            "/.well-known/masque/udp/exa%20mple.com/53/",
            "/.well-known/masque/udp/example.com/53",
            "/masque/udp/example.com/53/",
            "",
        ] {
            assert_eq!(status(check(&udp(path))), 400, "{path:?}");
        }
        let mut no_scheme = udp("/.well-known/masque/udp/example.com/53/");
        no_scheme.retain(|h| h.name() != b":scheme");
        assert_eq!(status(check(&no_scheme)), 400);
        let mut http = udp("/.well-known/masque/udp/example.com/53/");
        http[2] = Header::new(b":scheme", b"http");
        assert_eq!(status(check(&http)), 400);
        let mut no_authority = udp("/.well-known/masque/udp/example.com/53/");
        no_authority.retain(|h| h.name() != b":authority");
        assert_eq!(status(check(&no_authority)), 400);
    }

    #[test]
    fn forbidden_literals_are_403_and_localhost_is_a_literal() {
        for host in [
            "127.0.0.1",
            "localhost",
            "10.0.0.1",
            "%3A%3A1",
            "169.254.169.254",
        ] {
            let result = check(&udp(&format!("/.well-known/masque/udp/{host}/53/")));
            let rejection = result.expect_err(host);
            assert_eq!(
                rejection,
                ErrorResponse::from_refusal(Refusal::Prohibited),
                "{host}"
            );
        }
    }

    #[test]
    fn numeric_spellings_get_the_same_answer_as_in_a_connect() {
        let loopback = EgressPolicy::new(vec!["127.0.0.0/8".parse().expect("prefix")]);
        for (host, status_default, allowed) in [
            ("2130706433", 403, Some("127.0.0.1")),
            ("0x7f.1", 403, Some("127.0.0.1")),
            ("127.1", 403, Some("127.0.0.1")),
            ("017700000001", 403, Some("127.0.0.1")),
            ("2852039166", 403, None), // 169.254.169.254, not in the allowed prefix
            ("1.2.3.4.5", 400, None),
            ("99999999999", 400, None),
        ] {
            let path = format!("/.well-known/masque/udp/{host}/53/");
            let authority = format!("{host}:53");
            for egress in [EgressPolicy::default(), loopback.clone()] {
                let udp_result = checked_request(&udp(&path), &[], &egress, &PathTemplate::DEFAULT);
                let tcp_result = checked_request(
                    &head(&[(":method", "CONNECT"), (":authority", &authority)]),
                    &[],
                    &egress,
                    &PathTemplate::DEFAULT,
                );
                assert_eq!(
                    udp_result.clone().map(|a| a.target),
                    tcp_result.map(|a| a.target),
                    "{host}"
                );
                if let Err(rejection) = udp_result {
                    if rejection.status == 403 {
                        assert_eq!(rejection, ErrorResponse::from_refusal(Refusal::Prohibited));
                    }
                }
            }
            let by_default = checked_request(
                &udp(&path),
                &[],
                &EgressPolicy::default(),
                &PathTemplate::DEFAULT,
            );
            assert_eq!(status(by_default), status_default, "{host}");
            let with_loopback =
                checked_request(&udp(&path), &[], &loopback, &PathTemplate::DEFAULT);
            match allowed {
                Some(ip) => assert_eq!(
                    with_loopback.expect(host).target.host,
                    Host::Ip(ip.parse().expect("ip")),
                    "{host}"
                ),
                None => assert!(with_loopback.is_err(), "{host}"),
            }
        }
    }

    #[test]
    fn capsule_protocol_is_optional_and_content_fields_are_malformed() {
        // `udp()` sends no `capsule-protocol`: a request is whole without it.
        assert!(check(&udp("/.well-known/masque/udp/example.com/53/")).is_ok());
        let mut with_it = udp("/.well-known/masque/udp/example.com/53/");
        with_it.push(Header::new(b"capsule-protocol", b"?1"));
        assert!(check(&with_it).is_ok());
        for (name, value) in [
            ("content-length", "0"),
            ("content-type", "application/octet-stream"),
            ("transfer-encoding", "chunked"),
        ] {
            let mut request = udp("/.well-known/masque/udp/example.com/53/");
            request.push(Header::new(name.as_bytes(), value.as_bytes()));
            assert_eq!(status(check(&request)), 400, "{name}");
        }
    }

    #[test]
    fn credentials_come_before_the_target() {
        let tokens = [Token::parse("alpha", 1).expect("token")];
        let egress = EgressPolicy::default();
        let bad_path = udp("/nope");
        let result = checked_request(&bad_path, &tokens, &egress, &PathTemplate::DEFAULT);
        assert_eq!(result.map_err(|r| r.status), Err(407));
        let mut with_token = udp("/.well-known/masque/udp/example.com/53/");
        with_token.push(Header::new(b"proxy-authorization", b"Bearer alpha"));
        let accepted = checked_request(&with_token, &tokens, &egress, &PathTemplate::DEFAULT);
        assert_eq!(accepted.expect("valid").token_index, Some(0));
    }

    #[test]
    fn client_requests_expand_the_template_and_match_back() {
        let target =
            TunnelTarget::new("2001:db8::42".parse::<std::net::IpAddr>().expect("ip"), 443);
        let path = expand_path(&PathTemplate::DEFAULT, &target).expect("path");
        assert_eq!(path, "/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/");
        assert_eq!(
            expand_path(
                &PathTemplate::DEFAULT,
                &TunnelTarget::new(target.host.clone(), 0)
            ),
            None
        );
        let headers = request_headers(PROTOCOL, &proxy_authority("::1", 4433), &path, None);
        assert_eq!(headers[3].value(), b"[::1]:4433");
        let accepted = checked_request(
            &headers,
            &[],
            &EgressPolicy::new(vec!["2001:db8::/32".parse().expect("prefix")]),
            &PathTemplate::DEFAULT,
        )
        .expect("accepted");
        assert_eq!(accepted.target, target);
    }

    #[test]
    fn a_success_with_content_fields_or_no_content_statuses_is_malformed() {
        assert!(!success_is_malformed(&accept_headers()));
        assert!(!success_is_malformed(&head(&[(":status", "200")])));
        for (name, value) in [
            ("content-length", "0"),
            ("content-type", "text/plain"),
            ("transfer-encoding", "chunked"),
        ] {
            assert!(
                success_is_malformed(&head(&[(":status", "200"), (name, value)])),
                "{name}"
            );
        }
        for status in ["204", "205", "206"] {
            assert!(
                success_is_malformed(&head(&[(":status", status)])),
                "{status}"
            );
        }
    }
}

//! CONNECT-UDP request and response heads (RFC 9298 §3.4, §3.5): checking requests on
//! the edge, building them on the client.
//!
//! Pure functions over header lists, like [`connect`](crate::connect), whose shape,
//! authentication and egress rules they share.

use quiche::h3::{Header, NameValue};
use veil_proto::masque::udp::{self as masque, PathTemplate};

use crate::config::Secret;
use crate::connect::{self, Accepted, Rejection, RequestFields};
use crate::egress::{EgressPolicy, HostKind, classify_host};
use crate::types::{Host, Refusal, TunnelKind, TunnelTarget};

/// The `:protocol` of a CONNECT-UDP request, its HTTP Upgrade Token.
pub(crate) const PROTOCOL: &str = "connect-udp";

/// Checks the rest of an Extended CONNECT whose `:protocol` is `connect-udp`: shape, then
/// credentials, then the target read from `:path`, then egress for IP literals.
//# RFC 9298 §3.4: "The ":path" and ":scheme" pseudo-header fields SHALL NOT be empty.
//# Their values SHALL contain the scheme and path from the URI Template after the URI
//# template expansion process has been completed."
//# RFC 9114 §4.1.2: "Malformed requests or responses that are detected MUST be treated as
//# a stream error of type H3_MESSAGE_ERROR."
// The edge answers a malformed request with 400 before resetting, as ENGINE.md asks.
pub(crate) fn check(
    fields: &RequestFields<'_>,
    tokens: &[Secret],
    egress: &EgressPolicy,
    template: &PathTemplate<'_>,
) -> Result<Accepted, Rejection> {
    // A URI Template for a UDP proxy is an https URI; HTTP/3 carries nothing else.
    if non_empty(fields.scheme) != Some(&b"https"[..]) {
        return Err(Rejection::BAD_REQUEST);
    }
    let path = non_empty(fields.path).ok_or(Rejection::BAD_REQUEST)?;
    //# RFC 9298 §3.4: "The ":authority" pseudo-header field SHALL contain the authority of
    //# the UDP proxy."
    non_empty(fields.authority).ok_or(Rejection::BAD_REQUEST)?;
    let token_index =
        connect::authenticate(fields.authorization, fields.authorization_count, tokens)?;
    let target = template
        .match_path(path)
        .map_err(|_| Rejection::BAD_REQUEST)?;
    let host = egress_host(target.host)?;
    if let Host::Ip(ip) = host {
        egress
            .check(ip)
            .map_err(|_| Rejection::from_refusal(Refusal::Prohibited))?;
    }
    Ok(Accepted {
        target: TunnelTarget {
            host,
            port: target.port.get(),
        },
        token_index,
        kind: TunnelKind::Udp,
    })
}

/// A field's value, unless absent or empty.
fn non_empty(value: Option<&[u8]>) -> Option<&[u8]> {
    value.filter(|v| !v.is_empty())
}

/// The host as egress policy must see it: a name that any resolver reads as an address
/// (`localhost`) is that address, so the policy judges what would be reached.
fn egress_host(host: Host) -> Result<Host, Rejection> {
    match host {
        Host::Ip(ip) => Ok(Host::Ip(ip)),
        Host::Name(name) => match classify_host(name.as_str()) {
            Ok(HostKind::Ip(ip)) => Ok(Host::Ip(ip)),
            Ok(HostKind::Name) => Ok(Host::Name(name)),
            Err(_) => Err(Rejection::BAD_REQUEST),
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
pub(crate) fn request_headers(authority: &str, path: &str, token: Option<&Secret>) -> Vec<Header> {
    let mut headers = vec![
        Header::new(b":method", b"CONNECT"),
        Header::new(b":protocol", PROTOCOL.as_bytes()),
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
pub(crate) fn success_is_malformed(headers: &[Header]) -> bool {
    headers
        .iter()
        .any(|h| matches!(h.name(), b"content-length" | b"transfer-encoding"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::check_request;

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

    fn check(headers: &[Header]) -> Result<Accepted, Rejection> {
        check_request(
            headers,
            &[],
            &EgressPolicy::default(),
            &PathTemplate::DEFAULT,
        )
    }

    fn status(result: Result<Accepted, Rejection>) -> u16 {
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
                Rejection::from_refusal(Refusal::Prohibited),
                "{host}"
            );
        }
    }

    #[test]
    fn credentials_come_before_the_target() {
        let tokens = [Secret::new("alpha")];
        let egress = EgressPolicy::default();
        let bad_path = udp("/nope");
        let result = check_request(&bad_path, &tokens, &egress, &PathTemplate::DEFAULT);
        assert_eq!(result.map_err(|r| r.status), Err(407));
        let mut with_token = udp("/.well-known/masque/udp/example.com/53/");
        with_token.push(Header::new(b"proxy-authorization", b"Bearer alpha"));
        let accepted = check_request(&with_token, &tokens, &egress, &PathTemplate::DEFAULT);
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
        let headers = request_headers(&proxy_authority("::1", 4433), &path, None);
        assert_eq!(headers[3].value(), b"[::1]:4433");
        let accepted = check_request(
            &headers,
            &[],
            &EgressPolicy::new(vec!["2001:db8::/32".parse().expect("prefix")]),
            &PathTemplate::DEFAULT,
        )
        .expect("accepted");
        assert_eq!(accepted.target, target);
    }

    #[test]
    fn a_success_with_content_fields_is_malformed() {
        assert!(!success_is_malformed(&accept_headers()));
        assert!(success_is_malformed(&head(&[
            (":status", "200"),
            ("content-length", "0")
        ])));
    }
}

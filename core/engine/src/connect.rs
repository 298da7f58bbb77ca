//! HTTP/3 CONNECT messages (RFC 9114 §4.4): checking requests on the edge, building
//! requests on the client, and the responses both ways, with Proxy-Status (RFC 9209).
//!
//! Pure functions over header lists; the endpoint sends and receives them.

use std::net::{IpAddr, Ipv6Addr};

use quiche::h3::{Header, NameValue};
use veil_proto::http1::{ProxyErrorType, ProxyName, ProxyStatus};

use crate::config::{Secret, Token};
use crate::egress::{HostKind, classify_host};
use crate::types::{Host, Name, Refusal, TunnelKind, TunnelTarget};
use crate::udp;
use veil_proto::masque::udp::PathTemplate;

/// The proxy name in every Proxy-Status this edge sends.
const PROXY_NAME: &str = "veil";

/// The response head the edge sends instead of opening a tunnel: for a request it cannot
/// take (malformed, unauthenticated, a kind not served) or for a [`Refusal`] (the
/// decision, by the rules, a hook, the host or the engine). The one vocabulary: a
/// `Refusal` is *why* the edge says no, an `ErrorResponse` *how* it says it on the wire,
/// and the client reads it back as `RefusedReason::Status` (whose `refusal()` recovers the
/// `Refusal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorResponse {
    /// HTTP status.
    pub(crate) status: u16,
    /// Proxy-Status error type, when the error is one RFC 9209 names.
    pub(crate) proxy_error: Option<ProxyErrorType>,
    /// Add `proxy-authenticate: Bearer` (407).
    pub(crate) challenge: bool,
}

impl ErrorResponse {
    pub(crate) const fn plain(status: u16) -> Self {
        Self {
            status,
            proxy_error: None,
            challenge: false,
        }
    }

    const fn with_error(status: u16, error: ProxyErrorType) -> Self {
        Self {
            status,
            proxy_error: Some(error),
            challenge: false,
        }
    }

    /// 400: the request is not a well-formed CONNECT.
    pub(crate) const BAD_REQUEST: Self = Self::with_error(400, ProxyErrorType::HttpRequestError);
    /// 407: no credentials; the challenge names the scheme the edge takes.
    //# RFC 9209 §2.3.17: "http_request_denied ... The HTTP request was rejected by the
    //# intermediary ... based upon its configuration and/or policy settings."
    const AUTH_REQUIRED: Self = Self {
        status: 407,
        proxy_error: Some(ProxyErrorType::HttpRequestDenied),
        challenge: true,
    };
    /// 403: credentials that match no configured token.
    const AUTH_DENIED: Self = Self::with_error(403, ProxyErrorType::HttpRequestDenied);

    /// 501: a kind of tunnel the edge's host does not serve (`EdgeConfig::serves`): the
    /// edge's configuration declines it, as it would a denied target.
    pub(crate) const NOT_SERVED: Self = Self::with_error(501, ProxyErrorType::HttpRequestDenied);

    /// Whether this response is about credentials (for the counters).
    pub(crate) fn is_auth(self) -> bool {
        self == Self::AUTH_REQUIRED || self == Self::AUTH_DENIED
    }

    /// The response a refusal becomes.
    pub(crate) const fn from_refusal(refusal: Refusal) -> Self {
        Self::with_error(refusal.status(), refusal.proxy_error())
    }
}

/// What the edge learned from a CONNECT request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) target: TunnelTarget,
    pub(crate) token_index: Option<usize>,
    pub(crate) kind: TunnelKind,
    /// CONNECT-IP: the scope its `:path` asked for.
    pub(crate) ip_scope: Option<Box<veil_proto::masque::ip::Scope>>,
}

/// Checks a request head the edge received, in the order `docs/ARCHITECTURE.md` gives:
/// method and pseudo-header shape, then credentials, then the target. Rules and egress
/// policy judge the target afterwards (`Edge::screen`), so that a rule can allow what the
/// default policy forbids.
/// A plain CONNECT asks for a TCP stream; an Extended CONNECT (RFC 9220) with
/// `:protocol connect-udp` for a UDP tunnel whose target `udp_template` reads from the
/// `:path`.
pub(crate) fn check_request(
    headers: &[Header],
    tokens: &[Token],
    udp_template: &PathTemplate<'_>,
) -> Result<Accepted, ErrorResponse> {
    let fields = RequestFields::collect(headers)?;
    if fields.method != Some(&b"CONNECT"[..]) {
        return Err(if fields.method.is_some() {
            ErrorResponse::plain(405)
        } else {
            ErrorResponse::BAD_REQUEST
        });
    }
    match fields.protocol {
        None => check_connect(&fields, tokens),
        Some(protocol) if protocol == udp::request::PROTOCOL.as_bytes() => {
            udp::request::check(&fields, tokens, udp_template)
        }
        Some(protocol) if protocol == crate::ip::request::PROTOCOL.as_bytes() => {
            crate::ip::request::check(&fields, tokens, &veil_proto::masque::ip::Template::DEFAULT)
        }
        // Extended CONNECT for a protocol veil does not serve (CONNECT-IP, WebSocket, …).
        Some(_) => Err(ErrorResponse::plain(501)),
    }
}

/// The rest of a plain CONNECT (RFC 9114 §4.4).
fn check_connect(fields: &RequestFields<'_>, tokens: &[Token]) -> Result<Accepted, ErrorResponse> {
    //# RFC 9114 §4.4: "The ":scheme" and ":path" pseudo-header fields are omitted"
    if fields.scheme.is_some() || fields.path.is_some() {
        return Err(ErrorResponse::BAD_REQUEST);
    }
    let token_index = authenticate(fields.authorization, fields.authorization_count, tokens)?;
    let authority = fields.authority.ok_or(ErrorResponse::BAD_REQUEST)?;
    let target = parse_authority(authority)?;
    Ok(Accepted {
        target,
        token_index,
        kind: TunnelKind::Stream,
        ip_scope: None,
    })
}

/// The fields of a request head that matter to a CONNECT or an Extended CONNECT.
#[derive(Default)]
pub(crate) struct RequestFields<'h> {
    pub(crate) method: Option<&'h [u8]>,
    pub(crate) authority: Option<&'h [u8]>,
    pub(crate) protocol: Option<&'h [u8]>,
    pub(crate) scheme: Option<&'h [u8]>,
    pub(crate) path: Option<&'h [u8]>,
    pub(crate) authorization: Option<&'h [u8]>,
    pub(crate) authorization_count: usize,
    /// `content-length`, `content-type` or `transfer-encoding` is present.
    pub(crate) content_fields: bool,
}

impl<'h> RequestFields<'h> {
    fn collect(headers: &'h [Header]) -> Result<Self, ErrorResponse> {
        let mut fields = Self::default();
        for header in headers {
            let value = header.value();
            let slot = match header.name() {
                b":method" => &mut fields.method,
                b":authority" => &mut fields.authority,
                b":protocol" => &mut fields.protocol,
                b":scheme" => &mut fields.scheme,
                b":path" => &mut fields.path,
                b"proxy-authorization" => {
                    fields.authorization_count += 1;
                    fields.authorization = Some(value);
                    continue;
                }
                name if name.starts_with(b":") => return Err(ErrorResponse::BAD_REQUEST),
                name => {
                    fields.content_fields |= udp::request::is_content_field(name);
                    continue;
                }
            };
            // A repeated pseudo-header makes a request malformed (RFC 9114 §4.3).
            if slot.replace(value).is_some() {
                return Err(ErrorResponse::BAD_REQUEST);
            }
        }
        Ok(fields)
    }
}

/// Checks `Proxy-Authorization: Bearer <token>` against the configured tokens.
///
/// No tokens configured: everyone passes (`None`). Otherwise a missing field is 407, and
/// anything but exactly one `Bearer` field carrying a configured token is 403. Every token
/// is compared, in constant time each, so timing tells nothing about which one matched.
pub(crate) fn authenticate(
    field: Option<&[u8]>,
    count: usize,
    tokens: &[Token],
) -> Result<Option<usize>, ErrorResponse> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let field = field.ok_or(ErrorResponse::AUTH_REQUIRED)?;
    if count != 1 {
        return Err(ErrorResponse::AUTH_DENIED);
    }
    let token = bearer_token(field).ok_or(ErrorResponse::AUTH_DENIED)?;
    let mut found = None;
    for (index, secret) in tokens.iter().enumerate() {
        if secret.matches(token) && found.is_none() {
            found = Some(index);
        }
    }
    found.map(Some).ok_or(ErrorResponse::AUTH_DENIED)
}

/// The token of a `Bearer` credential (the scheme is case-insensitive).
fn bearer_token(field: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = field.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = token.strip_prefix(b" ")?.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Parses a CONNECT `:authority` (`host:port`, IPv6 in brackets) into a target, checking
/// IP literals (in any spelling the egress module knows) against egress policy.
pub(crate) fn parse_authority(authority: &[u8]) -> Result<TunnelTarget, ErrorResponse> {
    let text = std::str::from_utf8(authority).map_err(|_| ErrorResponse::BAD_REQUEST)?;
    //# RFC 9114 §4.4: "The ":authority" pseudo-header field contains the host and port
    //# to connect to"
    parse_target(text).ok_or(ErrorResponse::BAD_REQUEST)
}

/// [`check_request`] followed by the default egress policy's verdict on an IP literal, as
/// the engine applies it when no rule decides (`Edge::screen`): what the tests of the
/// request checks compare against.
#[cfg(test)]
pub(crate) fn checked_request(
    headers: &[Header],
    tokens: &[Token],
    egress: &crate::egress::EgressPolicy,
    udp_template: &PathTemplate<'_>,
) -> Result<Accepted, ErrorResponse> {
    let accepted = check_request(headers, tokens, udp_template)?;
    // An IP tunnel's packets are judged one by one, not its scope.
    if let (Host::Ip(ip), false) = (&accepted.target.host, accepted.kind == TunnelKind::Ip) {
        let ip = *ip;
        egress
            .check(ip)
            .map_err(|_| ErrorResponse::from_refusal(Refusal::Prohibited))?;
    }
    Ok(accepted)
}

/// Parses `host:port` (IPv6 in brackets, port 1–65535 without leading zeros) into a
/// target: the one authority parser of veil, for requests and for configuration alike.
pub(crate) fn parse_target(text: &str) -> Option<TunnelTarget> {
    let (host, port) = split_host_port(text)?;
    let port = parse_port(port)?;
    let host = match host {
        HostText::Bracketed(v6) => Host::Ip(IpAddr::V6(v6)),
        // Every spelling a resolver could read as an address (`2130706433`, `0x7f.1`,
        // `localhost`) is an address here, so the policy sees what would be dialled.
        HostText::Plain(text) => match classify_host(text).ok()? {
            HostKind::Ip(ip) => Host::Ip(ip),
            HostKind::Name => Host::Name(Name::new(text).ok()?),
        },
    };
    Some(TunnelTarget { host, port })
}

enum HostText<'a> {
    Bracketed(Ipv6Addr),
    Plain(&'a str),
}

fn split_host_port(text: &str) -> Option<(HostText<'_>, &str)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        // A zone identifier names a local interface, never a proxy target.
        return Some((HostText::Bracketed(inside.parse().ok()?), port));
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.is_empty() || host.contains(':') {
        return None;
    }
    Some((HostText::Plain(host), port))
}

/// A decimal port, 1 to 65535, without sign or leading zero.
fn parse_port(text: &str) -> Option<u16> {
    if text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&port| port != 0)
}

/// The request head a client sends for `target`.
pub(crate) fn request_headers(target: &TunnelTarget, token: Option<&Secret>) -> Vec<Header> {
    let mut headers = vec![
        Header::new(b":method", b"CONNECT"),
        Header::new(b":authority", target.to_string().as_bytes()),
    ];
    if let Some(token) = token {
        headers.push(authorization(token));
    }
    headers
}

/// `proxy-authorization: Bearer <token>`.
pub(crate) fn authorization(token: &Secret) -> Header {
    let value = format!("Bearer {}", token.expose());
    Header::new(b"proxy-authorization", value.as_bytes())
}

/// The 200 the edge sends when the host accepts a tunnel.
pub(crate) fn accept_headers() -> [Header; 1] {
    [Header::new(b":status", b"200")]
}

/// The header fields of an error response, with its Proxy-Status and challenge.
pub(crate) fn error_headers(rejection: ErrorResponse) -> Vec<Header> {
    let mut headers = vec![Header::new(
        b":status",
        rejection.status.to_string().as_bytes(),
    )];
    if let Some(error) = rejection.proxy_error {
        headers.push(Header::new(b"proxy-status", &proxy_status_value(error)));
    }
    if rejection.challenge {
        headers.push(Header::new(b"proxy-authenticate", b"Bearer"));
    }
    headers
}

/// `veil;error=<type>` (RFC 9209 §2), encoded by veil-proto.
fn proxy_status_value(error: ProxyErrorType) -> Vec<u8> {
    let Ok(name) = ProxyName::new(PROXY_NAME) else {
        return Vec::new();
    };
    let status = ProxyStatus::new(name).error(error);
    let mut out = vec![0; status.encoded_len()];
    match status.encode(&mut out) {
        Ok(len) => out.truncate(len),
        Err(_) => out.clear(),
    }
    out
}

/// What a response head tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    /// 1xx: wait for the final response.
    Informational,
    /// 2xx: the tunnel is open.
    Success,
    /// Anything else.
    Refused {
        status: u16,
        proxy_error: Option<ProxyErrorType>,
        proxy_status: Option<String>,
    },
    /// No valid `:status`.
    Malformed,
}

/// Reads a response head the client received.
pub(crate) fn parse_response(headers: &[Header]) -> Response {
    let mut status = None;
    let mut proxy_status = None;
    for header in headers {
        match header.name() {
            b":status" => {
                if status.is_some() {
                    return Response::Malformed;
                }
                status = parse_status(header.value());
            }
            b"proxy-status" => proxy_status = Some(String::from_utf8_lossy(header.value())),
            _ => {}
        }
    }
    match status {
        None => Response::Malformed,
        Some(100..=199) => Response::Informational,
        Some(200..=299) => Response::Success,
        Some(status) => Response::Refused {
            status,
            proxy_error: proxy_status.as_deref().and_then(proxy_error_of),
            proxy_status: proxy_status.map(String::from),
        },
    }
}

fn parse_status(value: &[u8]) -> Option<u16> {
    if value.len() != 3 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The `error` parameter of the first Proxy-Status list member, when veil knows its type.
fn proxy_error_of(value: &str) -> Option<ProxyErrorType> {
    let member = value.split(',').next()?;
    let error = member
        .split(';')
        .skip(1)
        .find_map(|param| param.trim().strip_prefix("error="))?;
    ProxyErrorType::ALL
        .into_iter()
        .find(|kind| kind.token() == error.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::EgressPolicy;

    #[test]
    fn targets_parse_as_authorities_and_print_back() {
        for text in ["example.com:443", "192.0.2.7:53", "[2001:db8::1]:8443"] {
            let target: TunnelTarget = text.parse().expect(text);
            assert_eq!(target.to_string(), text);
        }
        let numeric: TunnelTarget = "2130706433:80".parse().expect("an address spelling");
        assert_eq!(numeric.host, Host::Ip(IpAddr::from([127, 0, 0, 1])));
        for bad in [
            "example.com",
            "example.com:0",
            "example.com:080",
            "example.com:65536",
            ":80",
            "[2001:db8::1]",
            "2001:db8::1:80",
            "bad host:80",
        ] {
            assert!(bad.parse::<TunnelTarget>().is_err(), "{bad}");
        }
    }

    fn head(fields: &[(&str, &str)]) -> Vec<Header> {
        fields
            .iter()
            .map(|(name, value)| Header::new(name.as_bytes(), value.as_bytes()))
            .collect()
    }

    fn connect(authority: &str) -> Vec<Header> {
        head(&[(":method", "CONNECT"), (":authority", authority)])
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
    fn connect_to_a_name_and_to_addresses() {
        let accepted = check(&connect("Example.COM:443")).expect("valid");
        assert_eq!(accepted.target.to_string(), "example.com:443");
        assert_eq!(accepted.token_index, None);
        // Public addresses: the egress policy refuses documentation ranges.
        let accepted = check(&connect("1.1.1.1:80")).expect("valid");
        assert_eq!(
            accepted.target.host,
            Host::Ip("1.1.1.1".parse().expect("ip"))
        );
        let accepted = check(&connect("[2606:4700::1111]:8443")).expect("valid");
        assert_eq!(accepted.target.to_string(), "[2606:4700::1111]:8443");
    }

    #[test]
    fn malformed_requests_are_400_and_other_methods_405() {
        for authority in [
            "example.com",
            "example.com:",
            "example.com:0",
            "example.com:080",
            "example.com:65536",
            "example.com:+1",
            ":443",
            "2001:db8::1:443",
            "[2001:db8::1]443",
            "[fe80::1%eth0]:443",
            "user@example.com:443",
            "exa mple.com:443",
            "example..com:443",
        ] {
            assert_eq!(status(check(&connect(authority))), 400, "{authority}");
        }
        assert_eq!(status(check(&head(&[(":method", "CONNECT")]))), 400);
        let with_path = head(&[
            (":method", "CONNECT"),
            (":authority", "example.com:443"),
            (":path", "/"),
        ]);
        assert_eq!(status(check(&with_path)), 400);
        let twice = head(&[
            (":method", "CONNECT"),
            (":authority", "example.com:443"),
            (":authority", "example.net:443"),
        ]);
        assert_eq!(status(check(&twice)), 400);
        let get = head(&[(":method", "GET"), (":authority", "example.com:443")]);
        assert_eq!(status(check(&get)), 405);
        let extended = head(&[
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":authority", "example.com:443"),
            (":path", "/chat"),
        ]);
        assert_eq!(
            status(check(&extended)),
            501,
            "a protocol veil does not serve"
        );
        let ip = head(&[
            (":method", "CONNECT"),
            (":protocol", "connect-ip"),
            (":scheme", "https"),
            (":authority", "example.com:443"),
            (":path", "/.well-known/masque/ip/*/*/"),
        ]);
        let accepted = check(&ip).expect("a CONNECT-IP request");
        assert_eq!(accepted.kind, TunnelKind::Ip);
        assert_eq!(
            accepted.ip_scope.as_deref(),
            Some(&veil_proto::masque::ip::Scope::ANY)
        );
    }

    #[test]
    fn forbidden_literals_are_403_destination_ip_prohibited() {
        for authority in [
            "127.0.0.1:22",
            "[::1]:22",
            "10.0.0.1:80",
            "[::ffff:127.0.0.1]:1",
        ] {
            let rejection = check(&connect(authority)).expect_err(authority);
            assert_eq!(
                rejection,
                ErrorResponse::with_error(403, ProxyErrorType::DestinationIpProhibited)
            );
        }
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let tokens = [
            Token::parse("alpha", 1).expect("token"),
            Token::parse("beta", 2).expect("token"),
        ];
        let egress = EgressPolicy::default();
        let with_auth = |value: &str| {
            let mut headers = connect("example.com:443");
            headers.push(Header::new(b"proxy-authorization", value.as_bytes()));
            checked_request(&headers, &tokens, &egress, &PathTemplate::DEFAULT)
        };
        assert_eq!(
            checked_request(
                &connect("example.com:443"),
                &tokens,
                &egress,
                &PathTemplate::DEFAULT
            ),
            Err(ErrorResponse::AUTH_REQUIRED)
        );
        assert_eq!(with_auth("Bearer beta").expect("ok").token_index, Some(1));
        assert_eq!(with_auth("bearer alpha").expect("ok").token_index, Some(0));
        for wrong in [
            "Bearer gamma",
            "Basic YWxwaGE=",
            "Bearer",
            "Bearer ",
            "Bearer alph",
        ] {
            assert_eq!(with_auth(wrong), Err(ErrorResponse::AUTH_DENIED), "{wrong}");
        }
    }

    #[test]
    fn rejections_carry_status_proxy_status_and_challenge() {
        let headers = error_headers(ErrorResponse::from_refusal(Refusal::DnsError));
        assert_eq!(headers[0].value(), b"502");
        assert_eq!(headers[1].name(), b"proxy-status");
        assert_eq!(headers[1].value(), b"veil;error=dns_error");
        let headers = error_headers(ErrorResponse::AUTH_REQUIRED);
        assert_eq!(headers[0].value(), b"407");
        assert_eq!(headers[1].name(), b"proxy-status");
        assert_eq!(headers[1].value(), b"veil;error=http_request_denied");
        assert_eq!(headers[2].name(), b"proxy-authenticate");
        assert_eq!(headers[2].value(), b"Bearer");
    }

    #[test]
    fn responses_are_read_back() {
        for refusal in Refusal::ALL {
            let headers = error_headers(ErrorResponse::from_refusal(refusal));
            let Response::Refused {
                status,
                proxy_error,
                proxy_status,
            } = parse_response(&headers)
            else {
                panic!("{refusal:?} not read as a refusal");
            };
            assert_eq!(status, refusal.status());
            assert_eq!(proxy_error, Some(refusal.proxy_error()));
            assert_eq!(
                proxy_status.as_deref(),
                Some(format!("veil;error={}", refusal.proxy_error().token()).as_str())
            );
        }
        assert_eq!(parse_response(&accept_headers()), Response::Success);
        assert_eq!(
            parse_response(&head(&[(":status", "103")])),
            Response::Informational
        );
        assert_eq!(
            parse_response(&head(&[(":status", "20")])),
            Response::Malformed
        );
        assert_eq!(
            parse_response(&head(&[("server", "x")])),
            Response::Malformed
        );
        let other = head(&[
            (":status", "502"),
            ("proxy-status", "other; error=dns_timeout, veil"),
        ]);
        assert!(matches!(
            parse_response(&other),
            Response::Refused {
                proxy_error: Some(ProxyErrorType::DnsTimeout),
                ..
            }
        ));
    }

    #[test]
    fn client_request_head() {
        let target = TunnelTarget::new(Host::Ip("2001:db8::1".parse().expect("ip")), 443);
        let headers = request_headers(&target, Some(&Secret::new("t0k")));
        let pairs: Vec<(&[u8], &[u8])> = headers.iter().map(|h| (h.name(), h.value())).collect();
        assert_eq!(
            pairs,
            [
                (&b":method"[..], &b"CONNECT"[..]),
                (b":authority", b"[2001:db8::1]:443"),
                (b"proxy-authorization", b"Bearer t0k"),
            ]
        );
    }
}

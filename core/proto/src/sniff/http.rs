//! An HTTP/1.x request head, read with httparse into a fixed array on the stack.

use core::net::Ipv6Addr;

use super::Sniffed;
use super::name::dns_name;

/// The most header fields a request head may have to be sniffed: past it, httparse stops
/// with an error and the answer is [`Sniffed::Nothing`] (browsers send about 20).
pub const MAX_HEADERS: usize = 64;

/// Sniffs input that does not start with a TLS record.
pub(super) fn sniff(input: &[u8]) -> Sniffed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(input) {
        Ok(httparse::Status::Partial) => Sniffed::NeedMore,
        Err(_) => Sniffed::Nothing,
        Ok(httparse::Status::Complete(_)) => {
            request_host(&request).map_or(Sniffed::Nothing, Sniffed::HttpHost)
        }
    }
}

/// The host a server would take the request to be for.
fn request_host<'a>(request: &httparse::Request<'_, 'a>) -> Option<&'a str> {
    let (method, target) = (request.method?, request.path?);
    //# RFC 9112 §3.2.3: "The "authority-form" of request-target is only used for CONNECT
    //# requests"
    if method == "CONNECT" {
        return host_of(target.as_bytes());
    }
    //# RFC 9112 §3.2.2: "When an origin server receives a request with an absolute-form of
    //# request-target, the origin server MUST ignore the received Host header field (if
    //# any) and instead use the host information of the request-target."
    if let Some(authority) = absolute_form_authority(target.as_bytes()) {
        return host_of(authority);
    }
    //# RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    //# HTTP/1.1 request message that lacks a Host header field and to any request message
    //# that contains more than one Host header field line or a Host header field with an
    //# invalid field value."
    let mut hosts = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let host = hosts.next()?;
    if hosts.next().is_some() {
        return None;
    }
    host_of(trim_ows(host.value))
}

/// The authority of an absolute-form target (`scheme://authority/path`), if it is one.
//# RFC 3986 §3.1: "scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )"
fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    let colon = target.iter().position(|&b| b == b':')?;
    let (scheme, rest) = (&target[..colon], &target[colon + 1..]);
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let rest = rest.strip_prefix(b"//")?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The host of `host[:port]` or `[v6]:port`: a DNS name (or IPv4 literal) as written, or
/// the IPv6 address without brackets. Userinfo (`user@host`), zone identifiers, `IPvFuture`
/// and a non-numeric port are refused.
//# RFC 9110 §7.2: "Host = uri-host [ ":" port ] ; Section 4"
fn host_of(authority: &[u8]) -> Option<&str> {
    if let Some(rest) = authority.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        port_ok(&rest[close + 1..]).then_some(())?;
        let literal = core::str::from_utf8(&rest[..close]).ok()?;
        literal.parse::<Ipv6Addr>().ok()?;
        return Some(literal);
    }
    let colon = authority
        .iter()
        .position(|&b| b == b':')
        .unwrap_or(authority.len());
    port_ok(&authority[colon..]).then_some(())?;
    dns_name(&authority[..colon])
}

/// Nothing, or `:` and at most five digits (RFC 3986 allows an empty port).
fn port_ok(port: &[u8]) -> bool {
    match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// A field value without leading and trailing spaces and tabs (RFC 9110 §5.5).
fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_authorities() {
        let cases: [(&[u8], Option<&str>); 16] = [
            (b"example.com", Some("example.com")),
            (b"Example.com:8080", Some("Example.com")),
            (b"example.com:", Some("example.com")),
            (b"example.com.", Some("example.com.")),
            (b"192.0.2.1:80", Some("192.0.2.1")),
            (b"[2001:db8::1]:443", Some("2001:db8::1")),
            (b"[::1]", Some("::1")),
            (b"[::1]x", None),
            (b"[fe80::1%25eth0]", None),
            (b"[v1.x]", None),
            (b"[::1", None),
            (b"user@example.com", None),
            (b"example.com:80:80", None),
            (b"example.com:123456", None),
            (b"example.com:http", None),
            (b"", None),
        ];
        for (authority, host) in cases {
            assert_eq!(
                host_of(authority),
                host,
                "{:?}",
                core::str::from_utf8(authority)
            );
        }
    }

    #[test]
    fn absolute_form() {
        let cases: [(&[u8], Option<&[u8]>); 7] = [
            (b"http://example.com/x", Some(b"example.com")),
            (b"HTTPS://example.com:443?q", Some(b"example.com:443")),
            (b"http://[::1]:8080#f", Some(b"[::1]:8080")),
            (b"/index.html", None),
            (b"*", None),
            (b"example.com:443", None),
            (b"1http://example.com/", None),
        ];
        for (target, authority) in cases {
            assert_eq!(absolute_form_authority(target), authority);
        }
        assert_eq!(trim_ows(b" \tx y\t "), b"x y");
        assert_eq!(trim_ows(b"  "), b"");
    }
}

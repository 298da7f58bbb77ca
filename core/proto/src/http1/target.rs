//! Request targets a proxy acts on: CONNECT's authority-form and plain-HTTP absolute-form.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

/// The host part of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'b> {
    /// A DNS name, as received (case is not folded). Letters, digits, `-` and `_` in
    /// dot-separated labels of 1–63 bytes, at most 253 bytes, optionally one trailing dot.
    /// A name whose last label is all digits or `0x`-hex is refused rather than handed to a
    /// resolver that might read it as an IPv4 address (`0177.1`, `2130706433`).
    Name(&'b str),
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address, written in brackets in the target. Zone identifiers are refused.
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host<'_> {
    /// Writes the host as it appears in a URI authority: IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ipv4(addr) => addr.fmt(f),
            Self::Ipv6(addr) => write!(f, "[{addr}]"),
        }
    }
}

/// Where a request wants to go: host and port, with the authority text as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Authority<'b> {
    raw: &'b str,
    host: Host<'b>,
    port: u16,
}

impl<'b> Authority<'b> {
    /// The destination host.
    pub const fn host(&self) -> Host<'b> {
        self.host
    }

    /// The destination port (80 when an `http` URI omits it).
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// The authority exactly as the client wrote it (`host[:port]`), which is what a
    /// forwarded request's `Host` field carries.
    pub const fn as_str(&self) -> &'b str {
        self.raw
    }
}

/// Why a request-target cannot be acted on by a forward proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetError {
    /// `GET /path`: addressed to an origin server, not to a proxy.
    OriginForm,
    /// `OPTIONS *`: a question for the proxy itself, which veil does not answer.
    AsteriskForm,
    /// Not a form a proxy acts on: for CONNECT, more than `host:port` (a path, query,
    /// fragment or userinfo); otherwise not a URI, or a URI without `//authority`.
    Malformed,
    /// An absolute URI whose scheme veil does not forward (`https`, `ftp`, …): HTTPS goes
    /// through CONNECT, so the client should not send it in absolute-form.
    UnsupportedScheme,
    /// An `http` URI with an empty host.
    MissingAuthority,
    /// `user:pass@` in the authority.
    UserInfo,
    /// A `#fragment`, which no request-target may carry.
    Fragment,
    /// A byte outside printable ASCII (clients percent-encode those).
    InvalidCharacter,
    /// A host that is neither a DNS name, nor an IPv4 address, nor a bracketed IPv6 one.
    InvalidHost,
    /// A port that is not 1–5 digits with a value in 1–65535.
    InvalidPort,
    /// A CONNECT target without `:port`.
    MissingPort,
}

impl TargetError {
    /// Whether the target was understood but names something veil does not do, rather
    /// than being malformed.
    pub const fn is_unsupported(&self) -> bool {
        matches!(self, Self::UnsupportedScheme)
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OriginForm => "origin-form target sent to a proxy",
            Self::AsteriskForm => "asterisk-form target sent to a proxy",
            Self::Malformed => "request-target is not in a form a proxy acts on",
            Self::UnsupportedScheme => "URI scheme is not forwarded (use CONNECT for https)",
            Self::MissingAuthority => "http URI has no host",
            Self::UserInfo => "userinfo in the request-target",
            Self::Fragment => "fragment in the request-target",
            Self::InvalidCharacter => "non-ASCII byte in the request-target",
            Self::InvalidHost => "invalid host in the request-target",
            Self::InvalidPort => "invalid port in the request-target",
            Self::MissingPort => "CONNECT target has no port",
        })
    }
}

impl core::error::Error for TargetError {}

/// The parts of an absolute-form `http` target.
pub(crate) struct AbsoluteTarget<'b> {
    pub(crate) authority: Authority<'b>,
    /// `path-abempty [ "?" query ]`: empty, or starting with `/` or `?`.
    pub(crate) path_and_query: &'b str,
}

/// Parses a CONNECT request-target.
//# RFC 9112 §3.2.3: authority-form = uri-host ":" port
//# RFC 9112 §3.2.3: "When making a CONNECT request to establish a tunnel through one or
//# more proxies, a client MUST send only the host and port of the tunnel destination as the
//# request-target."
pub(crate) fn parse_authority_form(target: &str) -> Result<Authority<'_>, TargetError> {
    require_ascii(target)?;
    if target.contains(['/', '?', '#', '@']) {
        return Err(TargetError::Malformed);
    }
    parse_authority(target, None)
}

/// Parses an absolute-form request-target, accepting only the `http` scheme.
//# RFC 9112 §3.2.2: absolute-form = absolute-URI
pub(crate) fn parse_absolute_form(target: &str) -> Result<AbsoluteTarget<'_>, TargetError> {
    require_ascii(target)?;
    let (scheme, rest) = target.split_once(':').ok_or(TargetError::Malformed)?;
    if !is_scheme(scheme) {
        return Err(TargetError::Malformed);
    }
    let is_http = scheme.eq_ignore_ascii_case("http");
    let Some(hierarchical) = rest.strip_prefix("//") else {
        return Err(if is_http {
            TargetError::MissingAuthority
        } else {
            TargetError::Malformed
        });
    };
    if !is_http {
        return Err(TargetError::UnsupportedScheme);
    }
    let authority_end = hierarchical
        .find(['/', '?', '#'])
        .unwrap_or(hierarchical.len());
    let (authority, path_and_query) = hierarchical
        .split_at_checked(authority_end)
        .ok_or(TargetError::Malformed)?;
    if path_and_query.contains('#') {
        return Err(TargetError::Fragment);
    }
    //# RFC 9110 §4.2.4: "A sender MUST NOT generate the userinfo subcomponent (and its "@"
    //# delimiter) when an "http" or "https" URI reference is generated within a message as
    //# a target URI or field value."
    if authority.contains('@') {
        return Err(TargetError::UserInfo);
    }
    if authority.is_empty() {
        return Err(TargetError::MissingAuthority);
    }
    Ok(AbsoluteTarget {
        authority: parse_authority(authority, Some(80))?,
        path_and_query,
    })
}

/// Checks a `Host` field value: `uri-host [ ":" port ]`.
///
/// The value is only validated: for absolute-form and authority-form requests the target's
/// authority is the one that counts.
pub(crate) fn validate_host_field(value: &[u8]) -> Result<(), TargetError> {
    let value = core::str::from_utf8(value).map_err(|_| TargetError::InvalidCharacter)?;
    require_ascii(value)?;
    let (_, port) = parse_host_and_port(value)?;
    match port {
        //# RFC 3986 §3.2.3: port = *DIGIT
        Some(port) if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) => {
            Err(TargetError::InvalidPort)
        }
        _ => Ok(()),
    }
}

fn require_ascii(text: &str) -> Result<(), TargetError> {
    if text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(TargetError::InvalidCharacter)
    }
}

/// `host[:port]`, with `default_port` used when the port is absent (or refused when
/// `None`).
fn parse_authority(raw: &str, default_port: Option<u16>) -> Result<Authority<'_>, TargetError> {
    let (host, port) = parse_host_and_port(raw)?;
    let port = match (port, default_port) {
        (Some(port), _) => parse_port(port)?,
        (None, Some(default)) => default,
        (None, None) => return Err(TargetError::MissingPort),
    };
    Ok(Authority { raw, host, port })
}

/// Splits `uri-host [ ":" port-text ]` and parses the host.
fn parse_host_and_port(raw: &str) -> Result<(Host<'_>, Option<&str>), TargetError> {
    //# RFC 3986 §3.2.2: IP-literal = "[" ( IPv6address / IPvFuture ) "]"
    if let Some(bracketed) = raw.strip_prefix('[') {
        let (literal, after) = bracketed.split_once(']').ok_or(TargetError::InvalidHost)?;
        let addr = literal
            .parse::<Ipv6Addr>()
            .map_err(|_| TargetError::InvalidHost)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(TargetError::InvalidHost)?),
        };
        return Ok((Host::Ipv6(addr), port));
    }
    let (host, port) = match raw.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (raw, None),
    };
    Ok((parse_name_or_ipv4(host)?, port))
}

fn parse_name_or_ipv4(host: &str) -> Result<Host<'_>, TargetError> {
    if let Ok(addr) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ipv4(addr));
    }
    if is_dns_name(host) {
        Ok(Host::Name(host))
    } else {
        Err(TargetError::InvalidHost)
    }
}

/// Whether `name` is a DNS name veil will resolve; see [`Host::Name`].
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    labels_ok && !name.rsplit('.').next().is_some_and(looks_numeric)
}

/// Whether a last label would make a resolver read the name as an IPv4 shorthand.
fn looks_numeric(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// A port: 1–5 digits, value 1–65535.
fn parse_port(text: &str) -> Result<u16, TargetError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::InvalidPort);
    }
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(TargetError::InvalidPort),
    }
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (RFC 3986 §3.1).
fn is_scheme(scheme: &str) -> bool {
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(raw: &str) -> Result<(Host<'_>, u16), TargetError> {
        parse_authority_form(raw).map(|a| (a.host(), a.port()))
    }

    #[test]
    fn authority_form_hosts() {
        assert_eq!(
            authority("example.com:443"),
            Ok((Host::Name("example.com"), 443))
        );
        assert_eq!(
            authority("EXAMPLE.com.:8443"),
            Ok((Host::Name("EXAMPLE.com."), 8443))
        );
        assert_eq!(
            authority("192.0.2.1:80"),
            Ok((Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)), 80))
        );
        assert_eq!(
            authority("[2001:db8::1]:443"),
            Ok((Host::Ipv6("2001:db8::1".parse().unwrap()), 443))
        );
        assert_eq!(
            authority("_srv.host-1:1"),
            Ok((Host::Name("_srv.host-1"), 1))
        );
    }

    #[test]
    fn authority_form_refusals() {
        assert_eq!(authority("example.com"), Err(TargetError::MissingPort));
        assert_eq!(authority("example.com:"), Err(TargetError::InvalidPort));
        assert_eq!(authority("example.com:0"), Err(TargetError::InvalidPort));
        assert_eq!(
            authority("example.com:65536"),
            Err(TargetError::InvalidPort)
        );
        assert_eq!(authority("example.com:+443"), Err(TargetError::InvalidPort));
        assert_eq!(
            authority("example.com:000443"),
            Err(TargetError::InvalidPort)
        );
        assert_eq!(authority("example.com:443/x"), Err(TargetError::Malformed));
        assert_eq!(
            authority("http://example.com:443"),
            Err(TargetError::Malformed)
        );
        assert_eq!(authority(":443"), Err(TargetError::InvalidHost));
        assert_eq!(authority("2001:db8::1:443"), Err(TargetError::InvalidHost));
        assert_eq!(authority("[2001:db8::1]"), Err(TargetError::MissingPort));
        assert_eq!(
            authority("[fe80::1%25eth0]:443"),
            Err(TargetError::InvalidHost)
        );
        assert_eq!(authority("[v1.fe]:443"), Err(TargetError::InvalidHost));
        assert_eq!(authority("[::1]443"), Err(TargetError::InvalidHost));
        assert_eq!(authority("a..b:443"), Err(TargetError::InvalidHost));
        assert_eq!(authority("a b:443"), Err(TargetError::InvalidCharacter));
        assert_eq!(authority("exämple:443"), Err(TargetError::InvalidCharacter));
        assert_eq!(authority("user@host:443"), Err(TargetError::Malformed));
    }

    #[test]
    fn numeric_looking_names_are_refused() {
        for host in [
            "0177.0.0.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "1.2.3",
            "10.0.0.01",
        ] {
            assert_eq!(
                authority(&std::format!("{host}:80")),
                Err(TargetError::InvalidHost),
                "{host}"
            );
        }
        assert!(authority("1password.com:443").is_ok());
        assert!(authority("x.0xbeefy:443").is_ok());
    }

    #[test]
    fn dns_name_length_limits() {
        let label63 = "a".repeat(63);
        let label64 = "a".repeat(64);
        assert!(is_dns_name(&label63));
        assert!(!is_dns_name(&label64));
        let long = std::format!("{label63}.{label63}.{label63}.{}", "a".repeat(61));
        assert_eq!(long.len(), 253);
        assert!(is_dns_name(&long));
        assert!(is_dns_name(&std::format!("{long}.")));
        assert!(!is_dns_name(&std::format!("{long}a")));
        assert!(!is_dns_name("."));
        assert!(!is_dns_name("a.."));
    }

    #[test]
    fn absolute_form_parts() {
        let t = parse_absolute_form("http://example.com/a/b?q=1").unwrap();
        assert_eq!(t.authority.as_str(), "example.com");
        assert_eq!(t.authority.port(), 80);
        assert_eq!(t.path_and_query, "/a/b?q=1");

        let t = parse_absolute_form("HTTP://[::1]:8080?x").unwrap();
        assert_eq!(t.authority.host(), Host::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(t.authority.port(), 8080);
        assert_eq!(t.path_and_query, "?x");

        let t = parse_absolute_form("http://h").unwrap();
        assert_eq!(t.path_and_query, "");
    }

    #[test]
    fn absolute_form_refusals() {
        let err = |t| parse_absolute_form(t).err();
        assert_eq!(
            err("https://example.com/"),
            Some(TargetError::UnsupportedScheme)
        );
        assert_eq!(
            err("ftp://example.com/"),
            Some(TargetError::UnsupportedScheme)
        );
        assert_eq!(err("http:/path"), Some(TargetError::MissingAuthority));
        assert_eq!(err("http:///path"), Some(TargetError::MissingAuthority));
        assert_eq!(err("http://?q"), Some(TargetError::MissingAuthority));
        assert_eq!(err("mailto:a@b"), Some(TargetError::Malformed));
        assert_eq!(err("example.com:80"), Some(TargetError::Malformed));
        assert_eq!(err("1http://x/"), Some(TargetError::Malformed));
        assert_eq!(err("nocolon"), Some(TargetError::Malformed));
        assert_eq!(err("http://u:p@example.com/"), Some(TargetError::UserInfo));
        assert_eq!(err("http://example.com/#top"), Some(TargetError::Fragment));
        assert_eq!(err("http://example.com#top"), Some(TargetError::Fragment));
        assert_eq!(err("http://example.com:0/"), Some(TargetError::InvalidPort));
        assert_eq!(err("http://example.com:/"), Some(TargetError::InvalidPort));
        assert_eq!(err("http://exa_mple..com/"), Some(TargetError::InvalidHost));
        assert_eq!(
            err("http://example.com/\u{e9}"),
            Some(TargetError::InvalidCharacter)
        );
    }

    #[test]
    fn host_field_values() {
        assert_eq!(validate_host_field(b"example.com"), Ok(()));
        assert_eq!(validate_host_field(b"example.com:8080"), Ok(()));
        assert_eq!(validate_host_field(b"example.com:"), Ok(()));
        assert_eq!(validate_host_field(b"[::1]:80"), Ok(()));
        assert_eq!(validate_host_field(b""), Err(TargetError::InvalidHost));
        assert_eq!(validate_host_field(b"a,b"), Err(TargetError::InvalidHost));
        assert_eq!(validate_host_field(b"a:b"), Err(TargetError::InvalidPort));
        assert_eq!(validate_host_field(b"a/b"), Err(TargetError::InvalidHost));
        assert_eq!(validate_host_field(b"u@a"), Err(TargetError::InvalidHost));
        assert_eq!(
            validate_host_field(b"a b"),
            Err(TargetError::InvalidCharacter)
        );
        assert_eq!(
            validate_host_field(b"\xff"),
            Err(TargetError::InvalidCharacter)
        );
    }
}

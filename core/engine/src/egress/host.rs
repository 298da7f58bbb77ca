//! What a requested host really is: an IP address in some spelling, or a name to resolve.
//!
//! A resolver or socket API reads far more than dotted quads as IPv4 addresses:
//! `2130706433`, `0x7f000001`, `017700000001`, `127.1`, `0177.0.0.01` are all `127.0.0.1`
//! to `inet_aton`, and `getaddrinfo` tries that parse before it asks DNS. The engine
//! classifies the host first, checks any address found, and dials that address, so no
//! spelling slips a refused address past the policy.

//# RFC 3986 §7.4: "These additional IP address formats are not allowed in the URI syntax
//# due to differences between platform implementations. However, they can become a
//# security concern if an application attempts to filter access to resources based on the
//# IP address in string literal format."

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest DNS name, without its trailing dot (RFC 1035 §2.3.4: 255 octets on the
/// wire).
const MAX_NAME_LEN: usize = 253;
/// The longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;
/// The longest zone identifier accepted after `%` (Linux interface names are at most 15
/// bytes; numeric indexes are shorter still).
const MAX_ZONE_LEN: usize = 64;

/// What a host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKind {
    /// An address, in whatever spelling it came: check it with
    /// [`EgressPolicy::check`](super::EgressPolicy::check), then dial exactly it.
    Ip(IpAddr),
    /// A DNS name: resolve it once, check the answers with
    /// [`EgressPolicy::check_resolved`](super::EgressPolicy::check_resolved), dial one of
    /// the addresses it returns.
    Name,
}

/// Classifies the host of a request target (`example.com`, `10.0.0.1`, `[::1]`, `127.1`).
///
/// - `[...]`: an IPv6 address, possibly with a zone (`[fe80::1%25eth0]`, RFC 6874).
/// - Text with a `:`: a bare IPv6 address, possibly with a zone (`fe80::1%eth0`). The zone
///   is checked for shape, then dropped: the engine dials the address without a scope,
///   and the link-local addresses a zone is meant for are refused by the policy anyway.
/// - Text whose last label is a number (all decimal digits, or `0x` and hex digits): an
///   IPv4 address in the `inet_aton` forms (see [`parse_inet_aton`]), trailing dot
///   allowed. If it is not a valid one (`1.2.3.4.5`, `256.1.1.1`, `09.1`, `foo.1`) the host
///   is refused ([`HostError::NumericName`]) rather than handed to a resolver that may
///   read it some other way; no top-level domain is numeric.
/// - `localhost` and names under `.localhost`: `127.0.0.1`, answered here as RFC 6761
///   asks resolvers to, so the policy sees the loopback address.
/// - Otherwise a DNS name: ASCII letters, digits, `-`, `_`, labels of 1–63 bytes, at most
///   253 bytes, one trailing dot allowed.
///
/// Other names are not refused by name: whatever they resolve to is checked, which
/// covers `metadata.google.internal` (`169.254.169.254`) and every `/etc/hosts` alias of
/// loopback.
pub fn classify_host(host: &str) -> Result<HostKind, HostError> {
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if let Some(inner) = host.strip_prefix('[') {
        let literal = inner.strip_suffix(']').ok_or(HostError::InvalidIpv6)?;
        return parse_ipv6_with_zone(literal).map(|addr| HostKind::Ip(addr.into()));
    }
    if host.contains(':') {
        return parse_ipv6_with_zone(host).map(|addr| HostKind::Ip(addr.into()));
    }
    classify_dotted(host)
}

/// Classifies text without brackets or colons: an IPv4 spelling or a DNS name.
fn classify_dotted(host: &str) -> Result<HostKind, HostError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > MAX_NAME_LEN {
        return Err(HostError::TooLong);
    }
    if let Some(&byte) = name.as_bytes().iter().find(|&&b| !is_name_byte(b)) {
        return Err(HostError::InvalidCharacter(byte));
    }
    let last_label = name.rsplit('.').next().unwrap_or(name);
    if is_numeric_label(last_label) {
        return parse_inet_aton(name)
            .map(|addr| HostKind::Ip(addr.into()))
            .ok_or(HostError::NumericName);
    }
    if name
        .split('.')
        .any(|label| label.is_empty() || label.len() > MAX_LABEL_LEN)
    {
        return Err(HostError::InvalidLabel);
    }
    if is_localhost(last_label) {
        return Ok(HostKind::Ip(Ipv4Addr::LOCALHOST.into()));
    }
    Ok(HostKind::Name)
}

/// Bytes a DNS name may hold here: letters, digits, `-`, `_` and the label dots.
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.')
}

/// Whether a label reads as a number to `inet_aton`: decimal digits, or `0x`/`0X` and
/// hex digits (none at all included: `0x` is zero).
fn is_numeric_label(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Whether `last_label` makes the name a localhost name.
//# RFC 6761 §6.3: "Users may assume that IPv4 and IPv6 address queries for localhost names
//# will always resolve to the respective IP loopback address."
//# RFC 6761 §6.3: "Name resolution APIs and libraries SHOULD recognize localhost names as
//# special and SHOULD always return the IP loopback address for address queries"
fn is_localhost(last_label: &str) -> bool {
    last_label.eq_ignore_ascii_case("localhost")
}

/// Parses an IPv4 address in any of the forms `inet_aton` accepts: one to four parts
/// separated by dots, each decimal, octal (leading `0`) or hexadecimal (leading `0x`), the
/// last part filling all the bytes the earlier ones leave. `None` if `text` is not one.
///
/// `127.0.0.1`, `2130706433`, `0x7f000001`, `017700000001`, `127.1`, `127.0.1`,
/// `0177.0.0.01` and `0x7f.0.0.1` are all `127.0.0.1`.
//# POSIX inet_addr: "All numbers supplied as parts in IPv4 dotted decimal notation may be
//# decimal, octal, or hexadecimal, as specified in the ISO C standard (that is, a leading
//# 0x or 0X implies hexadecimal; otherwise, a leading '0' implies octal; otherwise, the
//# number is interpreted as decimal)."
//# POSIX inet_addr: "When a two-part address is supplied, the last part shall be
//# interpreted as a 24-bit quantity and placed in the rightmost three bytes of the network
//# address."
pub fn parse_inet_aton(text: &str) -> Option<Ipv4Addr> {
    let mut parts = [0_u32; 4];
    let mut count = 0;
    for part in text.split('.') {
        *parts.get_mut(count)? = parse_part(part)?;
        count += 1;
    }
    let (&last, leading) = parts.get(..count)?.split_last()?;
    // Each leading part is one byte; the last fills the remaining 32 - 8 * leading bits.
    let last_bits = 32 - 8 * u32::try_from(leading.len()).ok()?;
    if u64::from(last) >> last_bits != 0 {
        return None;
    }
    let mut value = 0_u64;
    for &part in leading {
        value = value << 8 | u64::from(u8::try_from(part).ok()?);
    }
    let value = value << last_bits | u64::from(last);
    Some(Ipv4Addr::from_bits(u32::try_from(value).ok()?))
}

/// Parses one part of an `inet_aton` address: decimal, `0`-prefixed octal or
/// `0x`-prefixed hexadecimal, at most 32 bits.
fn parse_part(part: &str) -> Option<u32> {
    let hex = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X"));
    let octal = part.strip_prefix('0').filter(|rest| !rest.is_empty());
    let (digits, radix) = match (hex, octal) {
        (Some(hex), _) => (hex, 16),
        (None, Some(octal)) => (octal, 8),
        (None, None) if part.is_empty() => return None,
        (None, None) => (part, 10),
    };
    digits.chars().try_fold(0_u32, |value, digit| {
        value
            .checked_mul(radix)?
            .checked_add(digit.to_digit(radix)?)
    })
}

/// Parses an IPv6 address with an optional zone (`%eth0`, or `%25eth0` as RFC 6874
/// writes it in a URI), returning the address alone.
fn parse_ipv6_with_zone(text: &str) -> Result<Ipv6Addr, HostError> {
    let (literal, zone) = match text.split_once('%') {
        Some((literal, zone)) => (literal, Some(zone)),
        None => (text, None),
    };
    if let Some(zone) = zone {
        let valid = !zone.is_empty()
            && zone.len() <= MAX_ZONE_LEN
            && zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !valid {
            return Err(HostError::InvalidZone);
        }
    }
    literal.parse().map_err(|_| HostError::InvalidIpv6)
}

/// Why a host is refused before any policy check (the engine answers 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostError {
    /// No host at all.
    Empty,
    /// A name longer than 253 bytes.
    TooLong,
    /// A byte no DNS name or address literal holds (the byte is given).
    InvalidCharacter(u8),
    /// An empty label (`a..b`, `.a`) or one longer than 63 bytes.
    InvalidLabel,
    /// Text in brackets or with a colon that is not an IPv6 address.
    InvalidIpv6,
    /// An empty, over-long or ill-formed IPv6 zone identifier.
    InvalidZone,
    /// A name ending in a numeric label that is not a valid IPv4 address (`1.2.3.4.5`,
    /// `256.1.1.1`, `08.1`, `foo.1`): resolvers disagree on what it means.
    NumericName,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty host"),
            Self::TooLong => f.write_str("host name longer than 253 bytes"),
            Self::InvalidCharacter(byte) => {
                write!(f, "byte 0x{byte:02x} is not allowed in a host name")
            }
            Self::InvalidLabel => f.write_str("empty or over-long label in host name"),
            Self::InvalidIpv6 => f.write_str("invalid IPv6 address"),
            Self::InvalidZone => f.write_str("invalid IPv6 zone identifier"),
            Self::NumericName => {
                f.write_str("host ends in a number but is not a valid IPv4 address")
            }
        }
    }
}

impl std::error::Error for HostError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> HostKind {
        HostKind::Ip(text.parse().expect("address"))
    }

    #[test]
    fn inet_aton_forms() {
        let cases = [
            ("127.0.0.1", [127, 0, 0, 1]),
            ("2130706433", [127, 0, 0, 1]),
            ("0x7f000001", [127, 0, 0, 1]),
            ("0X7F000001", [127, 0, 0, 1]),
            ("017700000001", [127, 0, 0, 1]),
            ("127.1", [127, 0, 0, 1]),
            ("127.0.1", [127, 0, 0, 1]),
            ("0177.0.0.01", [127, 0, 0, 1]),
            ("0x7f.0.0.1", [127, 0, 0, 1]),
            ("0x7f.1", [127, 0, 0, 1]),
            ("0177.1", [127, 0, 0, 1]),
            ("127.0x0.0.1", [127, 0, 0, 1]),
            ("0", [0, 0, 0, 0]),
            ("00", [0, 0, 0, 0]),
            ("0x", [0, 0, 0, 0]),
            ("0x0", [0, 0, 0, 0]),
            ("4294967295", [255, 255, 255, 255]),
            ("0xffffffff", [255, 255, 255, 255]),
            ("037777777777", [255, 255, 255, 255]),
            ("10.16777215", [10, 255, 255, 255]),
            ("10.1.65535", [10, 1, 255, 255]),
            ("169.254.43518", [169, 254, 169, 254]),
            ("0xa9fea9fe", [169, 254, 169, 254]),
            ("000000000000000000000010.1", [8, 0, 0, 1]),
        ];
        for (text, octets) in cases {
            assert_eq!(
                parse_inet_aton(text),
                Some(Ipv4Addr::from(octets)),
                "{text}"
            );
        }
    }

    #[test]
    fn inet_aton_refusals() {
        for text in [
            "",
            ".",
            "1.",
            ".1",
            "1..1",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.256.1.1",
            "1.1.1.256",
            "1.16777216",
            "1.1.65536",
            "4294967296",
            "0x100000000",
            "040000000000",
            "08",
            "09.1",
            "0x7g",
            "1.2.3.-4",
            "+1",
            "1e3",
            "0xx1",
            "99999999999999999999",
        ] {
            assert_eq!(parse_inet_aton(text), None, "{text:?}");
        }
    }

    #[test]
    fn classifies_ipv4_spellings_including_trailing_dot() {
        assert_eq!(classify_host("127.0.0.1"), Ok(ip("127.0.0.1")));
        assert_eq!(classify_host("127.0.0.1."), Ok(ip("127.0.0.1")));
        assert_eq!(classify_host("2130706433."), Ok(ip("127.0.0.1")));
        assert_eq!(classify_host("0x7f.1"), Ok(ip("127.0.0.1")));
        assert_eq!(classify_host("1.1"), Ok(ip("1.0.0.1")));
    }

    #[test]
    fn classifies_ipv6_literals_and_zones() {
        assert_eq!(classify_host("[::1]"), Ok(ip("::1")));
        assert_eq!(classify_host("::1"), Ok(ip("::1")));
        assert_eq!(
            classify_host("[::ffff:127.0.0.1]"),
            Ok(ip("::ffff:127.0.0.1"))
        );
        assert_eq!(classify_host("[fe80::1%25eth0]"), Ok(ip("fe80::1")));
        assert_eq!(classify_host("fe80::1%eth0"), Ok(ip("fe80::1")));
        assert_eq!(classify_host("fe80::1%2"), Ok(ip("fe80::1")));
        assert_eq!(
            classify_host("[2606:4700::1111]"),
            Ok(ip("2606:4700::1111"))
        );

        assert_eq!(classify_host("[::1"), Err(HostError::InvalidIpv6));
        assert_eq!(classify_host("[127.0.0.1]"), Err(HostError::InvalidIpv6));
        assert_eq!(classify_host("[example.com]"), Err(HostError::InvalidIpv6));
        assert_eq!(classify_host("[]"), Err(HostError::InvalidIpv6));
        assert_eq!(classify_host("[::1]:443"), Err(HostError::InvalidIpv6));
        assert_eq!(
            classify_host("example.com:443"),
            Err(HostError::InvalidIpv6)
        );
        assert_eq!(
            classify_host("::ffff:0177.0.0.1"),
            Err(HostError::InvalidIpv6)
        );
        assert_eq!(classify_host("::ffff:0x7f.1"), Err(HostError::InvalidIpv6));
        assert_eq!(
            classify_host("::ffff:010.0.0.1"),
            Err(HostError::InvalidIpv6)
        );
        assert_eq!(classify_host("fe80::1%"), Err(HostError::InvalidZone));
        assert_eq!(classify_host("[fe80::1%25]"), Ok(ip("fe80::1")));
        assert_eq!(classify_host("fe80::1%eth0/x"), Err(HostError::InvalidZone));
        assert_eq!(classify_host("fe80::1%a%b"), Err(HostError::InvalidZone));
    }

    #[test]
    fn classifies_names_and_localhost() {
        for name in [
            "example.com",
            "example.com.",
            "EXAMPLE.com",
            "a-b_c.d",
            "1e100.net",
            "0x7f.example",
        ] {
            assert_eq!(classify_host(name), Ok(HostKind::Name), "{name}");
        }
        for name in ["localhost", "LocalHost.", "foo.localhost", "a.b.localhost."] {
            assert_eq!(classify_host(name), Ok(ip("127.0.0.1")), "{name}");
        }
        assert_eq!(classify_host("localhost.example"), Ok(HostKind::Name));
        assert_eq!(classify_host("notlocalhost"), Ok(HostKind::Name));
    }

    #[test]
    fn refuses_malformed_hosts() {
        let long_label = "a".repeat(64);
        let long_name = ["a"; 127].join(".") + ".b";
        let cases = [
            ("", HostError::Empty),
            (".", HostError::InvalidLabel),
            ("..", HostError::InvalidLabel),
            ("a..b", HostError::InvalidLabel),
            (".example.com", HostError::InvalidLabel),
            ("example.com..", HostError::InvalidLabel),
            (long_label.as_str(), HostError::InvalidLabel),
            (long_name.as_str(), HostError::TooLong),
            ("exa mple.com", HostError::InvalidCharacter(b' ')),
            ("127.0.0.1 ", HostError::InvalidCharacter(b' ')),
            ("evil.com\0.internal", HostError::InvalidCharacter(0)),
            ("bücher.de", HostError::InvalidCharacter(0xc3)),
            ("a/b", HostError::InvalidCharacter(b'/')),
            ("user@host", HostError::InvalidCharacter(b'@')),
            ("1.2.3.4.5", HostError::NumericName),
            ("256.1.1.1", HostError::NumericName),
            ("1.2.3.256", HostError::NumericName),
            ("08.1", HostError::NumericName),
            ("foo.1", HostError::NumericName),
            ("foo.0x1", HostError::NumericName),
            ("example.123", HostError::NumericName),
            ("99999999999", HostError::NumericName),
        ];
        for (host, error) in cases {
            assert_eq!(classify_host(host), Err(error), "{host:?}");
        }
        let just_fits = ["a"; 126].join(".") + ".b";
        assert_eq!(just_fits.len(), 253);
        assert_eq!(classify_host(&just_fits), Ok(HostKind::Name));
        assert_eq!(classify_host(&(just_fits + ".")), Ok(HostKind::Name));
    }

    #[test]
    fn error_messages() {
        assert_eq!(HostError::Empty.to_string(), "empty host");
        assert_eq!(
            HostError::InvalidCharacter(b' ').to_string(),
            "byte 0x20 is not allowed in a host name"
        );
        assert_eq!(
            HostError::NumericName.to_string(),
            "host ends in a number but is not a valid IPv4 address"
        );
    }
}

//! The scope of a CONNECT-IP request: the `target` and `ipproto` template variables
//! (RFC 9484 §4.6), their validation after percent-decoding, and their expansion.
//!
//! ```text
//! target = IPv6prefix / IPv4prefix / reg-name / "*"
//! IPv6prefix = IPv6address ["%2F" 1*3DIGIT]
//! IPv4prefix = IPv4address ["%2F" 1*2DIGIT]
//! ipproto = 1*3DIGIT / "*"
//! ```
//!
//! Decisions where the RFC leaves room:
//! - A prefix with host bits set (`10.1.2.3%2F16`) is refused, not masked: the RFC says
//!   those bits "MUST all be set to 0", and a proxy that guessed would widen or narrow the
//!   scope the client asked for.
//! - `reg-name` is narrowed to a DNS host name ([`Hostname`]), since the proxy resolves it.
//! - A raw `:` or `/` in the expanded `target` is refused: both MUST be percent-encoded.
//! - Percent-decoding happens once; a decoded `%` is never decoded again, so `%253A` is the
//!   three characters `%3A`, which no target form accepts.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::prefix::{IpPrefix, PrefixError, max_prefix_len};
use crate::error::BufferTooSmall;
use crate::masque::percent::{Decoded, Decoder, is_unreserved, put_encoded};
use crate::masque::template::Sink;

/// What a CONNECT-IP request may reach: a target and an IP protocol.
///
/// A variable missing from the template counts as the wildcard (RFC 9484 §4.6: "if they
/// are not included, they are considered to carry the wildcard value").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The `target` variable.
    pub target: Target,
    /// The `ipproto` variable.
    pub ipproto: IpProto,
}

impl Scope {
    /// Any host, any protocol: `/.well-known/masque/ip/*/*/`.
    pub const ANY: Self = Self {
        target: Target::Any,
        ipproto: IpProto::Any,
    };
}

/// The `target` variable: which hosts the tunnel may reach.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
// Without alloc a name cannot be boxed; a scope is parsed once per request.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    /// `*`: any host the proxy allows.
    Any,
    /// An IP address (a full-length prefix) or prefix. Only this IP version is in scope.
    Prefix(IpPrefix),
    /// A DNS name the proxy resolves before answering.
    Name(Hostname),
}

/// The `ipproto` variable: which IP protocol the tunnel may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProto {
    /// `*`: any protocol.
    Any,
    /// One Internet Protocol Number, e.g. 17 for UDP. ICMP is always allowed besides.
    Number(u8),
}

/// A DNS host name: dot-separated labels of letters, digits, `-` and `_`, at most 253 bytes.
///
/// Each label is 1–63 bytes and neither starts nor ends with `-`; the name has no empty
/// label (so no trailing dot), and its last label is not all digits, so that a name is
/// never confused with an IPv4 address. Case is kept as given; compare names
/// case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hostname(heapless::String<253>);

impl Hostname {
    /// Checks `name` and copies it.
    pub fn new(name: &str) -> Result<Self, TargetError> {
        if name.len() > 253 {
            return Err(TargetError::HostnameTooLong);
        }
        if !is_hostname(name) {
            return Err(TargetError::InvalidHostname);
        }
        heapless::String::try_from(name)
            .map(Self)
            .map_err(|_| TargetError::HostnameTooLong)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_hostname(name: &str) -> bool {
    let is_label = |label: &str| {
        let bytes = label.as_bytes();
        (1..=63).contains(&bytes.len())
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-')
    };
    let last_is_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    name.split('.').all(is_label) && !last_is_numeric
}

/// Why a `target` value is malformed. The proxy treats the request as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetError {
    /// The value is empty.
    Empty,
    /// A byte outside ASCII, raw or percent-encoded.
    NonAscii,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// A raw byte that an expanded value cannot hold (`:` and `/` must be percent-encoded).
    ForbiddenCharacter(u8),
    /// An IPv6 zone identifier (`fe80::1%25eth0`).
    ZoneId,
    /// Digits and dots or colons that are not an IPv4 or IPv6 address.
    InvalidAddress,
    /// The prefix length is not 1–2 (IPv4) or 1–3 (IPv6) decimal digits.
    BadPrefixLength,
    /// The prefix length is longer than the address.
    PrefixTooLong {
        /// The length given.
        len: u16,
        /// The address's length in bits.
        max: u8,
    },
    /// The address has bits set past the prefix length.
    HostBitsSet,
    /// A host name followed by a prefix length.
    PrefixOnHostname,
    /// Not a DNS host name (see [`Hostname`]).
    InvalidHostname,
    /// Longer than the longest DNS name (253 bytes).
    HostnameTooLong,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("target is empty"),
            Self::NonAscii => f.write_str("target is not ASCII"),
            Self::BadPercentEncoding => f.write_str("target has a bad percent escape"),
            Self::ForbiddenCharacter(b) => {
                write!(f, "target has unencoded character {:?}", char::from(*b))
            }
            Self::ZoneId => f.write_str("target has an IPv6 zone identifier"),
            Self::InvalidAddress => f.write_str("target is not a valid IP address"),
            Self::BadPrefixLength => f.write_str("target prefix length is not a short number"),
            Self::PrefixTooLong { len, max } => {
                write!(f, "target prefix length {len} exceeds {max}")
            }
            Self::HostBitsSet => f.write_str("target prefix has host bits set"),
            Self::PrefixOnHostname => f.write_str("target host name has a prefix length"),
            Self::InvalidHostname => f.write_str("target is not a valid host name"),
            Self::HostnameTooLong => f.write_str("target is longer than 253 bytes"),
        }
    }
}

impl core::error::Error for TargetError {}

/// Why an `ipproto` value is malformed. The proxy treats the request as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpProtoError {
    /// The value is empty.
    Empty,
    /// A byte outside ASCII, raw or percent-encoded.
    NonAscii,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// A raw byte that an expanded value cannot hold.
    ForbiddenCharacter(u8),
    /// Neither `*` nor 1–3 decimal digits.
    NotDecimal,
    /// A number above 255.
    OutOfRange(u16),
}

impl fmt::Display for IpProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("ipproto is empty"),
            Self::NonAscii => f.write_str("ipproto is not ASCII"),
            Self::BadPercentEncoding => f.write_str("ipproto has a bad percent escape"),
            Self::ForbiddenCharacter(b) => {
                write!(f, "ipproto has unencoded character {:?}", char::from(*b))
            }
            Self::NotDecimal => f.write_str("ipproto is neither * nor a 1-3 digit number"),
            Self::OutOfRange(n) => write!(f, "ipproto {n} is above 255"),
        }
    }
}

impl core::error::Error for IpProtoError {}

/// Why a raw variable value cannot be percent-decoded.
enum RawError {
    Empty,
    NonAscii,
    BadPercentEncoding,
    ForbiddenCharacter(u8),
    TooLong,
}

impl From<RawError> for TargetError {
    fn from(e: RawError) -> Self {
        match e {
            RawError::Empty => Self::Empty,
            RawError::NonAscii => Self::NonAscii,
            RawError::BadPercentEncoding => Self::BadPercentEncoding,
            RawError::ForbiddenCharacter(b) => Self::ForbiddenCharacter(b),
            RawError::TooLong => Self::HostnameTooLong,
        }
    }
}

impl From<RawError> for IpProtoError {
    fn from(e: RawError) -> Self {
        match e {
            RawError::Empty => Self::Empty,
            RawError::NonAscii => Self::NonAscii,
            RawError::BadPercentEncoding => Self::BadPercentEncoding,
            RawError::ForbiddenCharacter(b) => Self::ForbiddenCharacter(b),
            RawError::TooLong => Self::NotDecimal,
        }
    }
}

/// Whether `b` may appear raw in a value this module expands: RFC 3986 `unreserved`, plus
/// `*` (RFC 9484 writes the wildcard unencoded: `/.well-known/masque/ip/*/*/`) and `%`.
pub(crate) const fn is_expansion_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'*' | b'%')
}

/// Percent-decodes `raw` into `out`, returning the decoded text.
fn decode<'o>(raw: &[u8], out: &'o mut [u8]) -> Result<&'o str, RawError> {
    if raw.is_empty() {
        return Err(RawError::Empty);
    }
    let mut len = 0;
    for item in Decoder::new(raw) {
        let byte = match item.map_err(|_| RawError::BadPercentEncoding)? {
            Decoded::Raw(b) if b.is_ascii() && !is_expansion_byte(b) => {
                return Err(RawError::ForbiddenCharacter(b));
            }
            Decoded::Raw(byte) | Decoded::Escaped(byte) => byte,
        };
        if !byte.is_ascii() {
            return Err(RawError::NonAscii);
        }
        *out.get_mut(len).ok_or(RawError::TooLong)? = byte;
        len += 1;
    }
    let text = out.get(..len).ok_or(RawError::TooLong)?;
    // Every byte was checked to be ASCII, which is always UTF-8.
    core::str::from_utf8(text).map_err(|_| RawError::NonAscii)
}

/// Decodes and validates a raw (still percent-encoded) `target` value.
pub(crate) fn parse_target(raw: &[u8]) -> Result<Target, TargetError> {
    let mut buf = [0; 253];
    let text = decode(raw, &mut buf)?;
    if text == "*" {
        return Ok(Target::Any);
    }
    let (host, len) = match text.split_once('/') {
        Some((host, len)) => (host, Some(len)),
        None => (text, None),
    };
    if host.contains(':') {
        //# RFC 9484 §4.6: "Note that IPv6 scoped addressing zone identifiers [IPv6-ZONE-ID]
        //# are not supported."
        if host.contains('%') {
            return Err(TargetError::ZoneId);
        }
        let addr = host
            .parse::<Ipv6Addr>()
            .map_err(|_| TargetError::InvalidAddress)?;
        return prefix(IpAddr::V6(addr), len, 3);
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let addr = host
            .parse::<Ipv4Addr>()
            .map_err(|_| TargetError::InvalidAddress)?;
        return prefix(IpAddr::V4(addr), len, 2);
    }
    if len.is_some() {
        return Err(TargetError::PrefixOnHostname);
    }
    Hostname::new(host).map(Target::Name)
}

/// Builds the prefix for `addr` and the optional decimal `len` of at most `max_digits`.
fn prefix(addr: IpAddr, len: Option<&str>, max_digits: usize) -> Result<Target, TargetError> {
    let Some(len) = len else {
        return Ok(Target::Prefix(IpPrefix::host(addr)));
    };
    let len = parse_decimal(len, max_digits).ok_or(TargetError::BadPrefixLength)?;
    //# RFC 9484 §4.6: "The IP prefix length MUST represent a decimal integer between 0 and
    //# the length of the IP address in bits, inclusive."
    let max = max_prefix_len(addr);
    let too_long = TargetError::PrefixTooLong { len, max };
    let len = u8::try_from(len).map_err(|_| too_long)?;
    //# RFC 9484 §4.6: "If "target" contains an IP prefix and the prefix length is strictly
    //# less than the length of the IP address in bits, the lower bits of the IP address
    //# that are not covered by the prefix length MUST all be set to 0."
    IpPrefix::new(addr, len)
        .map(Target::Prefix)
        .map_err(|e| match e {
            PrefixError::HostBitsSet => TargetError::HostBitsSet,
            PrefixError::LengthTooLong { .. } => too_long,
        })
}

/// Parses 1 to `max_digits` ASCII decimal digits (leading zeros allowed, as in `1*3DIGIT`).
fn parse_decimal(text: &str, max_digits: usize) -> Option<u16> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Decodes and validates a raw (still percent-encoded) `ipproto` value.
pub(crate) fn parse_ipproto(raw: &[u8]) -> Result<IpProto, IpProtoError> {
    let mut buf = [0; 3];
    let text = decode(raw, &mut buf)?;
    if text == "*" {
        return Ok(IpProto::Any);
    }
    let number = parse_decimal(text, 3).ok_or(IpProtoError::NotDecimal)?;
    //# RFC 9484 §4.6: ""ipproto" MUST represent a decimal integer between 0 and 255
    //# inclusive or the wildcard value "*"."
    u8::try_from(number)
        .map(IpProto::Number)
        .map_err(|_| IpProtoError::OutOfRange(number))
}

/// Writes the expansion of `target`.
pub(crate) fn expand_target(target: &Target, sink: &mut dyn Sink) -> Result<(), BufferTooSmall> {
    match target {
        Target::Any => sink.put(b"*"),
        Target::Name(name) => sink.put(name.as_str().as_bytes()),
        Target::Prefix(prefix) => {
            //# RFC 9484 §4.6: "If "target" contains an IPv6 literal or prefix, the
            //# colons (":") MUST be percent-encoded."
            put_encoded(sink, prefix.addr())?;
            if prefix.is_host() {
                return Ok(());
            }
            //# RFC 9484 §4.6: "If present, the IP prefix length in "target" SHALL be
            //# preceded by a percent-encoded slash ("/"): "%2F"."
            sink.put(b"%2F")?;
            put_encoded(sink, prefix.prefix_len())
        }
    }
}

/// Writes the expansion of `ipproto`.
pub(crate) fn expand_ipproto(ipproto: IpProto, sink: &mut dyn Sink) -> Result<(), BufferTooSmall> {
    match ipproto {
        IpProto::Any => sink.put(b"*"),
        IpProto::Number(n) => put_encoded(sink, n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(raw: &str) -> Result<Target, TargetError> {
        parse_target(raw.as_bytes())
    }

    fn prefix(text: &str, len: u8) -> Target {
        Target::Prefix(IpPrefix::new(text.parse().unwrap(), len).unwrap())
    }

    #[test]
    fn parses_every_target_form() {
        assert_eq!(target("*"), Ok(Target::Any));
        assert_eq!(target("%2A"), Ok(Target::Any));
        assert_eq!(target("192.0.2.1"), Ok(prefix("192.0.2.1", 32)));
        assert_eq!(target("192.0.2.0%2F24"), Ok(prefix("192.0.2.0", 24)));
        assert_eq!(target("10.0.0.0%2f08"), Ok(prefix("10.0.0.0", 8)));
        // RFC 9484 §4.6 example: "2001:db8::42" is encoded as "2001%3Adb8%3A%3A42".
        assert_eq!(
            target("2001%3Adb8%3A%3A42"),
            Ok(prefix("2001:db8::42", 128))
        );
        assert_eq!(
            target("2001%3adb8%3A%3A%2F032"),
            Ok(prefix("2001:db8::", 32))
        );
        assert_eq!(target("%3A%3A%2F0"), Ok(prefix("::", 0)));
        assert_eq!(
            target("target.example.com"),
            Ok(Target::Name(Hostname::new("target.example.com").unwrap()))
        );
        assert_eq!(
            target("_dns.Example-1.com"),
            Ok(Target::Name(Hostname::new("_dns.Example-1.com").unwrap()))
        );
    }

    #[test]
    fn refuses_empty_target() {
        assert_eq!(target(""), Err(TargetError::Empty));
    }

    #[test]
    fn refuses_non_ascii_target() {
        assert_eq!(
            parse_target("exämple.com".as_bytes()),
            Err(TargetError::NonAscii)
        );
        assert_eq!(target("ex%C3%A4mple.com"), Err(TargetError::NonAscii));
    }

    #[test]
    fn refuses_bad_percent_escapes() {
        assert_eq!(target("2001%3"), Err(TargetError::BadPercentEncoding));
        assert_eq!(target("2001%"), Err(TargetError::BadPercentEncoding));
        assert_eq!(target("2001%G0"), Err(TargetError::BadPercentEncoding));
        assert_eq!(target("%+1"), Err(TargetError::BadPercentEncoding));
    }

    #[test]
    fn refuses_unencoded_colons_and_slashes() {
        assert_eq!(
            target("2001:db8::1"),
            Err(TargetError::ForbiddenCharacter(b':'))
        );
        assert_eq!(
            target("10.0.0.0/8"),
            Err(TargetError::ForbiddenCharacter(b'/'))
        );
        assert_eq!(target("a b"), Err(TargetError::ForbiddenCharacter(b' ')));
    }

    #[test]
    fn refuses_zone_ids() {
        assert_eq!(target("fe80%3A%3A1%25eth0"), Err(TargetError::ZoneId));
        assert_eq!(target("fe80%3A%3A1%251"), Err(TargetError::ZoneId));
    }

    #[test]
    fn refuses_invalid_addresses() {
        assert_eq!(target("192.0.2"), Err(TargetError::InvalidAddress));
        assert_eq!(target("192.0.2.256"), Err(TargetError::InvalidAddress));
        assert_eq!(target("192.0.2.01"), Err(TargetError::InvalidAddress));
        assert_eq!(
            target("2001%3Adb8%3A%3A%3A1"),
            Err(TargetError::InvalidAddress)
        );
        assert_eq!(target("%2F24"), Err(TargetError::InvalidAddress));
    }

    #[test]
    fn refuses_bad_prefix_lengths() {
        assert_eq!(target("10.0.0.0%2F"), Err(TargetError::BadPrefixLength));
        assert_eq!(target("10.0.0.0%2F008"), Err(TargetError::BadPrefixLength));
        assert_eq!(target("10.0.0.0%2F-8"), Err(TargetError::BadPrefixLength));
        assert_eq!(
            target("10.0.0.0%2F8%2F8"),
            Err(TargetError::BadPrefixLength)
        );
        assert_eq!(target("%3A%3A%2F0128"), Err(TargetError::BadPrefixLength));
    }

    #[test]
    fn refuses_prefix_lengths_past_the_address() {
        assert_eq!(
            target("10.0.0.0%2F33"),
            Err(TargetError::PrefixTooLong { len: 33, max: 32 })
        );
        assert_eq!(
            target("%3A%3A%2F129"),
            Err(TargetError::PrefixTooLong { len: 129, max: 128 })
        );
        assert_eq!(
            target("%3A%3A%2F999"),
            Err(TargetError::PrefixTooLong { len: 999, max: 128 })
        );
    }

    #[test]
    fn refuses_host_bits_in_prefixes() {
        assert_eq!(target("192.0.2.1%2F24"), Err(TargetError::HostBitsSet));
        assert_eq!(
            target("2001%3Adb8%3A%3A1%2F64"),
            Err(TargetError::HostBitsSet)
        );
        assert_eq!(target("0.0.0.1%2F0"), Err(TargetError::HostBitsSet));
    }

    #[test]
    fn refuses_prefix_on_hostname() {
        assert_eq!(
            target("example.com%2F24"),
            Err(TargetError::PrefixOnHostname)
        );
    }

    #[test]
    fn refuses_invalid_hostnames() {
        for bad in [
            "-a.com", "a-.com", "a..com", "a.com.", ".a", "a.123", "a~b", "a%2Ab",
        ] {
            assert_eq!(target(bad), Err(TargetError::InvalidHostname), "{bad}");
        }
        // Double encoding is not decoded twice: this is the text "2001%3Adb8".
        assert_eq!(target("2001%253Adb8"), Err(TargetError::InvalidHostname));
        let long_label = "a".repeat(64);
        assert_eq!(target(&long_label), Err(TargetError::InvalidHostname));
    }

    #[test]
    fn refuses_hostnames_past_253_bytes() {
        let label = "a".repeat(63);
        let name = std::format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(name.len(), 253);
        assert!(matches!(target(&name), Ok(Target::Name(_))));
        let name = std::format!("{name}c");
        assert_eq!(target(&name), Err(TargetError::HostnameTooLong));
        assert_eq!(Hostname::new(&name), Err(TargetError::HostnameTooLong));
    }

    #[test]
    fn parses_ipproto() {
        let p = |raw: &str| parse_ipproto(raw.as_bytes());
        assert_eq!(p("*"), Ok(IpProto::Any));
        assert_eq!(p("0"), Ok(IpProto::Number(0)));
        assert_eq!(p("17"), Ok(IpProto::Number(17)));
        assert_eq!(p("017"), Ok(IpProto::Number(17)));
        assert_eq!(p("%31%33%32"), Ok(IpProto::Number(132)));
        assert_eq!(p("255"), Ok(IpProto::Number(255)));
    }

    #[test]
    fn refuses_bad_ipproto() {
        let p = |raw: &str| parse_ipproto(raw.as_bytes());
        assert_eq!(p(""), Err(IpProtoError::Empty));
        assert_eq!(p("256"), Err(IpProtoError::OutOfRange(256)));
        assert_eq!(p("999"), Err(IpProtoError::OutOfRange(999)));
        assert_eq!(p("0017"), Err(IpProtoError::NotDecimal));
        assert_eq!(p("udp"), Err(IpProtoError::NotDecimal));
        assert_eq!(p("-1"), Err(IpProtoError::NotDecimal));
        assert_eq!(p("**"), Err(IpProtoError::NotDecimal));
        assert_eq!(p("1%"), Err(IpProtoError::BadPercentEncoding));
        assert_eq!(p("1+1"), Err(IpProtoError::ForbiddenCharacter(b'+')));
        assert_eq!(parse_ipproto("１".as_bytes()), Err(IpProtoError::NonAscii));
    }

    fn expanded(target: &Target) -> std::string::String {
        let mut buf = [0; 300];
        let mut w = crate::Writer::new(&mut buf);
        expand_target(target, &mut w).unwrap();
        std::string::String::from_utf8(w.written().to_vec()).unwrap()
    }

    #[test]
    fn expands_targets() {
        assert_eq!(expanded(&Target::Any), "*");
        assert_eq!(expanded(&prefix("2001:db8::42", 128)), "2001%3Adb8%3A%3A42");
        assert_eq!(expanded(&prefix("2001:db8::", 32)), "2001%3Adb8%3A%3A%2F32");
        assert_eq!(expanded(&prefix("192.0.2.0", 24)), "192.0.2.0%2F24");
        assert_eq!(expanded(&prefix("192.0.2.7", 32)), "192.0.2.7");
        assert_eq!(
            expanded(&Target::Name(Hostname::new("a.example").unwrap())),
            "a.example"
        );
    }
}

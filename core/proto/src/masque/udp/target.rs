//! What a CONNECT-UDP request asks for: a host and a port (RFC 9298 §3).

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::num::NonZeroU16;
use core::str::FromStr;

use crate::masque::percent::{Decoded, Decoder};

/// The longest DNS name [`Name`] holds, in characters, without a trailing dot.
///
/// 253 characters of text are the 255 octets of a wire-format name (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 253;

/// The longest DNS label, in characters (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Where a CONNECT-UDP client wants its UDP packets to go.
///
/// Built from a request path by [`PathTemplate::match_path`](super::PathTemplate::match_path)
/// or by the client, and written into a request path by
/// [`PathTemplate::expand`](super::PathTemplate::expand). Every `Target` expands to a path
/// that parses back to an equal `Target`.
///
/// `Display` gives `host:port`, with IPv6 addresses in brackets (`[2001:db8::42]:443`), for logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The host the proxy sends to: an IP address, or a DNS name it must resolve first.
    pub host: Host,
    /// The UDP port; RFC 9298 §3 rules out port 0, and so does the type.
    //# RFC 9298 §3: ""target_port" MUST represent an integer between 1 and 65535
    //# inclusive."
    pub port: NonZeroU16,
}

impl Target {
    /// A target at `host`, port `port`.
    pub const fn new(host: Host, port: NonZeroU16) -> Self {
        Self { host, port }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

/// The host part of a [`Target`].
//# RFC 9298 §3: ""target_host" supports using DNS names, IPv6 literals and IPv4
//# literals."
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
// A name needs its 253 bytes inline: without `alloc` there is nothing to box it in.
#[allow(clippy::large_enum_variant)]
pub enum Host {
    /// An IPv4 or IPv6 address, used as is.
    Ip(IpAddr),
    /// A DNS name the proxy must resolve before answering (RFC 9298 §3.1).
    Name(Name),
}

impl Host {
    /// Parses the value of the `target_host` variable as it appears in a request, that is
    /// still percent-encoded (`2001%3Adb8%3A%3A42`, `example.com`, `192.0.2.6`).
    ///
    /// Percent escapes are decoded in either hex case. An IPv6 colon written as a bare `:`
    /// is refused ([`HostError::UnencodedColon`]), as is any bracket, raw or encoded
    /// ([`HostError::Bracketed`]). What remains must be an IPv6 address, an IPv4 address
    /// or a DNS name, by the rules of [`Host::from_str`].
    pub fn decode(encoded: &[u8]) -> Result<Self, HostError> {
        let mut buf = [0; MAX_NAME_LEN + 1];
        let mut len = 0;
        for item in Decoder::new(encoded) {
            let byte = match item.map_err(|_| HostError::MalformedPercentEncoding)? {
                //# RFC 9298 §3: "if "target_host" contains an IPv6 literal, the colons
                //# (":") MUST be percent-encoded."
                Decoded::Raw(b':') => return Err(HostError::UnencodedColon),
                Decoded::Raw(b'[' | b']') => return Err(HostError::Bracketed),
                Decoded::Raw(byte) | Decoded::Escaped(byte) => byte,
            };
            *buf.get_mut(len).ok_or(HostError::TooLong)? = byte;
            len += 1;
        }
        classify(buf.get(..len).unwrap_or_default())
    }
}

impl FromStr for Host {
    type Err = HostError;

    /// Parses a host as plain text (`2001:db8::42`, `192.0.2.6`, `Example.COM.`).
    ///
    /// - Text with a colon must be an IPv6 address without brackets or zone identifier.
    /// - Otherwise, text that [`Ipv4Addr`] parses (four decimal octets, no leading zeros)
    ///   is an IPv4 address.
    /// - Anything else must be a DNS name under the rules of [`Name::new`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        classify(text.as_bytes())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Name(name) => name.fmt(f),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        Self::Ip(ip)
    }
}

impl From<Name> for Host {
    fn from(name: Name) -> Self {
        Self::Name(name)
    }
}

/// Sorts decoded host text into an IPv6 address, an IPv4 address or a DNS name.
fn classify(text: &[u8]) -> Result<Host, HostError> {
    if text.is_empty() {
        //# RFC 9298 §3: "both the "target_host" and "target_port" variables MUST NOT
        //# be empty."
        return Err(HostError::Empty);
    }
    if !text.is_ascii() {
        return Err(HostError::NonAscii);
    }
    //# RFC 9298 §3: "Using the terms IPv6address, IPv4address, reg-name, and port from
    //# [URI], the "target_host" and "target_port" variables MUST adhere to the format
    //# in Figure 2"
    //# RFC 9298 §3, Figure 2: "target_host = IPv6address / IPv4address / reg-name"
    // IPv6address, unlike RFC 3986's IP-literal, has no brackets.
    if text.iter().any(|&b| b == b'[' || b == b']') {
        return Err(HostError::Bracketed);
    }
    if text.contains(&b':') {
        return parse_ipv6(text).map(|ip| Host::Ip(IpAddr::V6(ip)));
    }
    if let Some(ip) = ascii_str(text).and_then(|s| s.parse::<Ipv4Addr>().ok()) {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    Name::from_ascii(text).map(Host::Name)
}

/// Parses an IPv6 address written without brackets.
fn parse_ipv6(text: &[u8]) -> Result<Ipv6Addr, HostError> {
    //# RFC 9298 §3: "Note that IPv6 scoped addressing zone identifiers are not
    //# supported."
    if text.contains(&b'%') {
        return Err(HostError::ZoneId);
    }
    ascii_str(text)
        .and_then(|s| s.parse().ok())
        .ok_or(HostError::InvalidIpv6)
}

fn ascii_str(text: &[u8]) -> Option<&str> {
    core::str::from_utf8(text).ok()
}

/// A DNS name a [`Target`] can carry, validated and lowercased.
///
/// - Characters: ASCII letters, digits, `-` and `_`; labels are separated by single dots.
///   Hyphens and underscores may stand anywhere in a label: DNS itself permits them and
///   resolvers accept them, and the hostname rules of RFC 1123 are not the proxy's to
///   enforce.
/// - A label holds 1 to 63 characters, the whole name at most 253.
/// - One trailing dot is accepted and dropped: `example.com.` and `example.com` are the
///   same target. A proxy resolves every name as fully qualified.
/// - Letters are lowercased, since DNS compares names without regard to case
///   (RFC 4343); two equal names are then equal values, which is what policy
///   matching and logs want.
/// - A name whose last label is all digits, or `0x` and hex digits, is refused
///   ([`HostError::NumericName`]): no top-level domain looks like that, and many
///   resolvers would read `127.1` or `0x7f.1` as an IPv4 address that the IPv4 rules
///   have just refused.
///
/// A valid name only holds unreserved URI characters, so it expands into a template
/// unchanged, and it is never `.` or `..`, so it cannot become a dot-segment of a path.
///
/// Storage: with the `alloc` feature the name is a `Box<str>` of its own length (16 bytes
/// inline), so that the engine's per-tunnel records and events, which hold a target each,
/// stay small; without it, a fixed 253-byte buffer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(NameText);

#[cfg(feature = "alloc")]
type NameText = alloc::boxed::Box<str>;
#[cfg(not(feature = "alloc"))]
type NameText = heapless::String<MAX_NAME_LEN>;

impl Name {
    /// Validates `name` (plain text, not percent-encoded) and stores it lowercased.
    pub fn new(name: &str) -> Result<Self, HostError> {
        if name.is_empty() {
            return Err(HostError::Empty);
        }
        if !name.is_ascii() {
            return Err(HostError::NonAscii);
        }
        Self::from_ascii(name.as_bytes())
    }

    /// The name, lowercased, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Validates non-empty ASCII text as a DNS name.
    fn from_ascii(text: &[u8]) -> Result<Self, HostError> {
        let name = text.strip_suffix(b".").unwrap_or(text);
        let mut last_label: &[u8] = &[];
        for label in name.split(|&b| b == b'.') {
            check_label(label)?;
            last_label = label;
        }
        if name.len() > MAX_NAME_LEN {
            return Err(HostError::TooLong);
        }
        if is_numeric_label(last_label) {
            return Err(HostError::NumericName);
        }
        let mut lower = [0; MAX_NAME_LEN];
        let lower = lower.get_mut(..name.len()).ok_or(HostError::TooLong)?;
        for (out, &byte) in lower.iter_mut().zip(name) {
            *out = byte.to_ascii_lowercase();
        }
        let text = ascii_str(lower).ok_or(HostError::NonAscii)?;
        #[cfg(feature = "alloc")]
        let stored = NameText::from(text);
        #[cfg(not(feature = "alloc"))]
        let stored = {
            let mut stored = NameText::new();
            stored.push_str(text).map_err(|_| HostError::TooLong)?;
            stored
        };
        Ok(Self(stored))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl FromStr for Name {
    type Err = HostError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

fn check_label(label: &[u8]) -> Result<(), HostError> {
    if label.is_empty() {
        return Err(HostError::EmptyLabel);
    }
    if let Some(&bad) = label
        .iter()
        .find(|&&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(HostError::InvalidCharacter(bad));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(HostError::LabelTooLong);
    }
    Ok(())
}

/// Whether a last label reads as a number: all decimal digits, or `0x` then hex digits.
fn is_numeric_label(label: &[u8]) -> bool {
    let hex = label
        .strip_prefix(b"0x")
        .or_else(|| label.strip_prefix(b"0X"));
    match hex {
        Some(digits) => digits.iter().all(u8::is_ascii_hexdigit),
        None => label.iter().all(u8::is_ascii_digit),
    }
}

/// Parses the value of the `target_port` variable as it appears in a request.
///
/// Percent escapes are decoded (RFC 9298 §3.1: the proxy "decodes their percent-encoding"),
/// then the text must be a decimal number from 1 to 65535 with no sign, no spaces and no
/// leading zeros: `0443` is refused so that every port has one spelling.
pub fn decode_port(encoded: &[u8]) -> Result<NonZeroU16, PortError> {
    if encoded.is_empty() {
        return Err(PortError::Empty);
    }
    let mut value: u32 = 0;
    for (index, item) in Decoder::new(encoded).enumerate() {
        let (Decoded::Raw(byte) | Decoded::Escaped(byte)) =
            item.map_err(|_| PortError::MalformedPercentEncoding)?;
        if !byte.is_ascii_digit() {
            return Err(PortError::NotDecimal);
        }
        if index == 1 && value == 0 {
            return Err(PortError::LeadingZero);
        }
        // `value` is at most 65535 here, so neither step can overflow a u32.
        value = value * 10 + u32::from(byte - b'0');
        if value > u32::from(u16::MAX) {
            return Err(PortError::OutOfRange);
        }
    }
    let port = u16::try_from(value).map_err(|_| PortError::OutOfRange)?;
    NonZeroU16::new(port).ok_or(PortError::Zero)
}

/// Why a `target_host` value names no host veil will send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostError {
    /// The value is empty.
    Empty,
    /// A `%` is not followed by two hex digits.
    MalformedPercentEncoding,
    /// A byte, raw or decoded, is outside ASCII (internationalized names must arrive in
    /// their `xn--` form).
    NonAscii,
    /// A character that no DNS name, IPv4 address or IPv6 address contains.
    InvalidCharacter(u8),
    /// An IPv6 colon written as `:` rather than `%3A`.
    UnencodedColon,
    /// A `[` or `]`: RFC 9298 takes IPv6 addresses without brackets.
    Bracketed,
    /// An IPv6 zone identifier (`%25` followed by a zone).
    ZoneId,
    /// The value has a colon but is not an IPv6 address.
    InvalidIpv6,
    /// The name is longer than 253 characters.
    TooLong,
    /// The name has an empty label: it starts with a dot, has two in a row, or is `.`.
    EmptyLabel,
    /// A label is longer than 63 characters.
    LabelTooLong,
    /// The name ends in a numeric label, yet it is not a valid IPv4 address.
    NumericName,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("target_host is empty"),
            Self::MalformedPercentEncoding => {
                f.write_str("target_host has a '%' not followed by two hex digits")
            }
            Self::NonAscii => f.write_str("target_host has a non-ASCII character"),
            Self::InvalidCharacter(byte) => write!(
                f,
                "target_host has a character no host name or address contains: '{}'",
                char::from(*byte).escape_default()
            ),
            Self::UnencodedColon => {
                f.write_str("target_host has an IPv6 colon that is not percent-encoded as %3A")
            }
            Self::Bracketed => {
                f.write_str("target_host has brackets; IPv6 addresses are sent without them")
            }
            Self::ZoneId => f.write_str("target_host has an IPv6 zone identifier"),
            Self::InvalidIpv6 => f.write_str("target_host has a colon but is not an IPv6 address"),
            Self::TooLong => f.write_str("target_host is longer than 253 characters"),
            Self::EmptyLabel => f.write_str("target_host has an empty DNS label"),
            Self::LabelTooLong => f.write_str("target_host has a DNS label over 63 characters"),
            Self::NumericName => {
                f.write_str("target_host ends in a number but is not a valid IPv4 address")
            }
        }
    }
}

impl core::error::Error for HostError {}

/// Why a `target_port` value is not a port from 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortError {
    /// The value is empty.
    Empty,
    /// A `%` is not followed by two hex digits.
    MalformedPercentEncoding,
    /// A character other than a decimal digit, including signs and spaces.
    NotDecimal,
    /// A leading zero, as in `0443`.
    LeadingZero,
    /// Port 0.
    Zero,
    /// A number above 65535.
    OutOfRange,
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "target_port is empty",
            Self::MalformedPercentEncoding => {
                "target_port has a '%' not followed by two hex digits"
            }
            Self::NotDecimal => "target_port is not a decimal number",
            Self::LeadingZero => "target_port has a leading zero",
            Self::Zero => "target_port is 0",
            Self::OutOfRange => "target_port is above 65535",
        })
    }
}

impl core::error::Error for PortError {}

//! Version 1, the human-readable line (proxy-protocol.txt §2.1).
//!
//! ```text
//! PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n
//! PROXY TCP6 <src> <dst> <sport> <dport>\r\n
//! PROXY UNKNOWN[ anything]\r\n
//! ```

use core::fmt::{self, Write as _};
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use core::str::FromStr;

use crate::cursor::Writer;
use crate::error::BufferTooSmall;

use super::{Addresses, Command, Decoded, Header, Transport, Version, tlv::Tlvs};

/// The five bytes that open a v1 line.
pub const V1_PREFIX: [u8; 5] = *b"PROXY";

//# proxy-protocol.txt §2.1: "worst case (optional fields set to 0xff) :
//#   "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"
//#   => 5 + 1 + 7 + 1 + 39 + 1 + 39 + 1 + 5 + 1 + 5 + 2 = 107 chars"
/// The longest v1 line, CRLF included.
pub const V1_MAX_LEN: usize = 107;

/// "PROXY" and the single space after it.
const LEAD_LEN: usize = V1_PREFIX.len() + 1;

/// Which of the two endpoints a field describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The client side: source address or port.
    Source,
    /// The server side: destination address or port.
    Destination,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Destination => "destination",
        })
    }
}

/// A malformed v1 line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum V1Error {
    /// "PROXY" is not followed by a space.
    NoSpaceAfterProxy,
    /// No line feed in the first 107 bytes.
    LineTooLong,
    /// The line ends with a line feed that has no carriage return before it.
    BareLineFeed,
    /// The protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    UnknownProtocol,
    /// Two spaces in a row, or a space right before the CRLF: fields are separated by
    /// exactly one space.
    EmptyField,
    /// A `TCP4`/`TCP6` line without exactly four fields after the protocol.
    FieldCount {
        /// Fields found after the protocol.
        found: usize,
    },
    /// An address that is not the canonical text form of the declared family.
    InvalidAddress(Endpoint),
    /// A port that is not a decimal in 0–65535 without leading zeros.
    InvalidPort(Endpoint),
}

impl fmt::Display for V1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSpaceAfterProxy => f.write_str("PROXY v1: no space after \"PROXY\""),
            Self::LineTooLong => f.write_str("PROXY v1: no CRLF in the first 107 bytes"),
            Self::BareLineFeed => f.write_str("PROXY v1: line ends with LF, not CRLF"),
            Self::UnknownProtocol => f.write_str("PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN"),
            Self::EmptyField => f.write_str("PROXY v1: fields must be separated by one space"),
            Self::FieldCount { found } => {
                write!(f, "PROXY v1: {found} fields after the protocol, expected 4")
            }
            Self::InvalidAddress(end) => write!(f, "PROXY v1: invalid {end} address"),
            Self::InvalidPort(end) => write!(f, "PROXY v1: invalid {end} port"),
        }
    }
}

impl core::error::Error for V1Error {}

/// Decodes a v1 line from the front of `buf`, which starts with [`V1_PREFIX`].
pub(super) fn decode(buf: &[u8]) -> Result<Decoded<'_>, V1Error> {
    match buf.get(V1_PREFIX.len()) {
        None => return Ok(Decoded::Incomplete),
        Some(b' ') => {}
        Some(_) => return Err(V1Error::NoSpaceAfterProxy),
    }
    let rest = buf.get(LEAD_LEN..).unwrap_or_default();
    let window = rest.get(..V1_MAX_LEN - LEAD_LEN).unwrap_or(rest);
    //# proxy-protocol.txt §2.1: "If the CRLF sequence is not found in the first 107
    //# characters, the receiver should declare the line invalid."
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN {
            Err(V1Error::LineTooLong)
        } else {
            Ok(Decoded::Incomplete)
        };
    };
    //# proxy-protocol.txt §2.1: "The receiver must not tolerate a single CR or LF
    //# character to end the line when a complete CRLF sequence is expected."
    let fields = window
        .get(..lf)
        .and_then(|line| line.strip_suffix(b"\r"))
        .ok_or(V1Error::BareLineFeed)?;
    let (transport, addresses) = parse_fields(fields)?;
    Ok(Decoded::Complete {
        header: Header {
            version: Version::V1,
            command: Command::Proxy,
            transport,
            addresses,
            tlvs: Tlvs::EMPTY,
        },
        len: LEAD_LEN + lf + 1,
    })
}

/// Parses what follows "PROXY " up to the CRLF.
fn parse_fields(fields: &[u8]) -> Result<(Transport, Addresses<'static>), V1Error> {
    let (protocol, tail) = match fields.iter().position(|&b| b == b' ') {
        Some(space) => (&fields[..space], fields.get(space + 1..)),
        None => (fields, None),
    };
    match protocol {
        //# proxy-protocol.txt §2.1: "For "UNKNOWN", the rest of the line before the CRLF
        //# may be omitted by the sender, and the receiver must ignore anything presented
        //# before the CRLF is found."
        b"UNKNOWN" => Ok((Transport::Unspec, Addresses::Unspecified)),
        b"TCP4" => {
            let [src, dst, sport, dport] = split_four(tail)?;
            Ok((
                Transport::Stream,
                Addresses::Ipv4 {
                    source: SocketAddrV4::new(
                        parse_address::<Ipv4Addr>(src, Endpoint::Source)?,
                        parse_port(sport, Endpoint::Source)?,
                    ),
                    destination: SocketAddrV4::new(
                        parse_address::<Ipv4Addr>(dst, Endpoint::Destination)?,
                        parse_port(dport, Endpoint::Destination)?,
                    ),
                },
            ))
        }
        b"TCP6" => {
            let [src, dst, sport, dport] = split_four(tail)?;
            Ok((
                Transport::Stream,
                Addresses::Ipv6 {
                    source: SocketAddrV6::new(
                        parse_address::<Ipv6Addr>(src, Endpoint::Source)?,
                        parse_port(sport, Endpoint::Source)?,
                        0,
                        0,
                    ),
                    destination: SocketAddrV6::new(
                        parse_address::<Ipv6Addr>(dst, Endpoint::Destination)?,
                        parse_port(dport, Endpoint::Destination)?,
                        0,
                        0,
                    ),
                },
            ))
        }
        b"" => Err(V1Error::EmptyField),
        _ => Err(V1Error::UnknownProtocol),
    }
}

/// Splits the four space-separated fields after `TCP4`/`TCP6`.
fn split_four(tail: Option<&[u8]>) -> Result<[&[u8]; 4], V1Error> {
    let Some(tail) = tail else {
        return Err(V1Error::FieldCount { found: 0 });
    };
    let mut fields: [&[u8]; 4] = [&[]; 4];
    let mut found = 0;
    for field in tail.split(|&b| b == b' ') {
        if field.is_empty() {
            return Err(V1Error::EmptyField);
        }
        if let Some(slot) = fields.get_mut(found) {
            *slot = field;
        }
        found += 1;
    }
    if found == fields.len() {
        Ok(fields)
    } else {
        Err(V1Error::FieldCount { found })
    }
}

/// Parses an address with `core::net`'s strict parser.
///
/// For IPv4 it refuses leading zeros, as the spec asks ("Heading zeroes are not permitted in
/// front of numbers in order to avoid any possible confusion with octal numbers"). For IPv6
/// it takes any RFC 4291 text form, `::` and a trailing dotted quad included, as
/// `inet_pton` does.
fn parse_address<A: FromStr>(field: &[u8], endpoint: Endpoint) -> Result<A, V1Error> {
    core::str::from_utf8(field)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(V1Error::InvalidAddress(endpoint))
}

//# proxy-protocol.txt §2.1: "the TCP source port represented as a decimal integer in the
//# range [0..65535] inclusive. Heading zeroes are not permitted in front of numbers in
//# order to avoid any possible confusion with octal numbers."
/// Parses a port: ASCII digits only (no sign), "0" alone or no leading zero, at most 65535.
fn parse_port(field: &[u8], endpoint: Endpoint) -> Result<u16, V1Error> {
    let invalid = V1Error::InvalidPort(endpoint);
    if field.len() > 1 && field.starts_with(b"0") {
        return Err(invalid);
    }
    field.iter().try_fold(0u16, |port, &digit| {
        if !digit.is_ascii_digit() {
            return Err(invalid);
        }
        port.checked_mul(10)
            .and_then(|p| p.checked_add(u16::from(digit - b'0')))
            .ok_or(invalid)
    })
}

/// A v1 line to send: `TCP4` or `TCP6` for IP addresses, `UNKNOWN` for anything else.
///
/// v1 can only say TCP, so callers proxying UDP or UNIX sockets should pass
/// [`Addresses::Unspecified`] (or use v2). [`fmt::Display`] writes the exact line, CRLF
/// included. IPv6 addresses are written as RFC 5952 hex groups, never with a dotted IPv4
/// tail, which the spec's "series of sets of 4 hexadecimal digits" does not allow for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1Line<'a> {
    addresses: &'a Addresses<'a>,
}

impl<'a> V1Line<'a> {
    /// The line announcing `addresses`.
    pub const fn new(addresses: &'a Addresses<'a>) -> Self {
        Self { addresses }
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        let mut counter = Counter(0);
        // Counting never fails, and a Display impl only fails when its sink does.
        let _ = write!(counter, "{self}");
        counter.0
    }

    /// Writes the line to the front of `out` and returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let needed = self.encoded_len();
        let available = out.len();
        let mut writer = Writer::new(out);
        writer.reserve(needed)?;
        // Cannot fail once the room is reserved; report it as a short buffer if it ever did.
        write!(WriterSink(&mut writer), "{self}")
            .map_err(|fmt::Error| BufferTooSmall { needed, available })?;
        Ok(writer.finish())
    }
}

impl fmt::Display for V1Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addresses {
            Addresses::Ipv4 {
                source,
                destination,
            } => write!(
                f,
                "PROXY TCP4 {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            ),
            Addresses::Ipv6 {
                source,
                destination,
            } => write!(
                f,
                "PROXY TCP6 {} {} {} {}\r\n",
                HexIpv6(*source.ip()),
                HexIpv6(*destination.ip()),
                source.port(),
                destination.port()
            ),
            Addresses::Unspecified | Addresses::Unix { .. } => f.write_str("PROXY UNKNOWN\r\n"),
        }
    }
}

/// An IPv6 address in RFC 5952 form (lower-case hex, longest run of two or more zero groups
/// as `::`), without the dotted IPv4 tail `core::net` uses for mapped addresses.
struct HexIpv6(Ipv6Addr);

impl fmt::Display for HexIpv6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups = self.0.segments();
        match longest_zero_run(&groups) {
            Some((start, len)) => {
                write_groups(f, groups.get(..start).unwrap_or_default())?;
                f.write_str("::")?;
                write_groups(f, groups.get(start + len..).unwrap_or_default())
            }
            None => write_groups(f, &groups),
        }
    }
}

/// The first longest run of at least two zero groups, as (start, length).
fn longest_zero_run(groups: &[u16; 8]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    let mut run_start = 0;
    for (i, &group) in groups.iter().enumerate() {
        if group != 0 {
            run_start = i + 1;
            continue;
        }
        let len = i + 1 - run_start;
        if len >= 2 && best.is_none_or(|(_, best_len)| len > best_len) {
            best = Some((run_start, len));
        }
    }
    best
}

fn write_groups(f: &mut fmt::Formatter<'_>, groups: &[u16]) -> fmt::Result {
    for (i, group) in groups.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{group:x}")?;
    }
    Ok(())
}

/// A `fmt::Write` that only counts bytes.
struct Counter(usize);

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// A `fmt::Write` over a [`Writer`].
struct WriterSink<'w, 'b>(&'w mut Writer<'b>);

impl fmt::Write for WriterSink<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.bytes(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn ports_are_strict_decimals() {
        let port = |s: &[u8]| parse_port(s, Endpoint::Source);
        assert_eq!(port(b"0"), Ok(0));
        assert_eq!(port(b"443"), Ok(443));
        assert_eq!(port(b"65535"), Ok(65535));
        for bad in [
            &b"65536"[..],
            b"00",
            b"080",
            b"+80",
            b"-1",
            b"8a",
            b"99999999999",
        ] {
            assert_eq!(
                port(bad),
                Err(V1Error::InvalidPort(Endpoint::Source)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ipv6_text_is_rfc5952_hex_only() {
        let text = |s: &str| HexIpv6(s.parse().unwrap()).to_string();
        assert_eq!(text("::"), "::");
        assert_eq!(text("::1"), "::1");
        assert_eq!(text("1::"), "1::");
        assert_eq!(text("2001:db8::1"), "2001:db8::1");
        // A single zero group is not compressed.
        assert_eq!(text("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
        // The first of two equally long runs is compressed.
        assert_eq!(text("1:0:0:2:0:0:3:4"), "1::2:0:0:3:4");
        // The longer run wins even when it comes second.
        assert_eq!(text("1:0:0:2:0:0:0:4"), "1:0:0:2::4");
        // IPv4-mapped: hex groups, not "::ffff:1.2.3.4".
        assert_eq!(text("::ffff:1.2.3.4"), "::ffff:102:304");
        assert_eq!(
            text("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
    }
}

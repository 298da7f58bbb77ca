//! SOCKS5 addresses (RFC 1928 §5): the `ATYP DST.ADDR DST.PORT` group shared by requests,
//! replies and UDP request headers.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::cursor::{Reader, Writer};
use crate::error::{BufferTooSmall, Truncated};

/// `ATYP` for a version-4 IP address.
const ATYP_IPV4: u8 = 0x01;
/// `ATYP` for a domain name.
const ATYP_DOMAIN: u8 = 0x03;
/// `ATYP` for a version-6 IP address.
const ATYP_IPV6: u8 = 0x04;

/// The longest domain name the one-octet length field can carry.
pub const MAX_DOMAIN_LEN: usize = 255;

/// The longest encoded address group: `ATYP`, length octet, 255-octet name, port.
pub(super) const MAX_TARGET_LEN: usize = 1 + 1 + MAX_DOMAIN_LEN + 2;

/// A domain name as a SOCKS5 client sent it, validated so veil can hand it to a resolver.
///
/// RFC 1928 carries the name as opaque octets; veil resolves it, so it keeps only names of
/// 1 to 255 visible ASCII characters (`0x21..=0x7E`). Internationalised names travel as
/// A-labels (`xn--…`), which are ASCII. The name is kept as sent: no case folding, and an
/// IP literal sent as a name (`"127.0.0.1"`) stays a name, for the resolver to handle.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Domain(heapless::String<MAX_DOMAIN_LEN, u8>);

/// Why a byte string is not a [`Domain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DomainError {
    /// The name has no characters.
    Empty,
    /// The name is longer than 255 bytes; carries its length.
    TooLong(usize),
    /// The name holds a byte outside visible ASCII (`0x21..=0x7E`): a space, a control
    /// character or a non-ASCII byte.
    NotPrintableAscii,
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("domain name is empty"),
            Self::TooLong(len) => write!(f, "domain name is {len} bytes, longer than 255"),
            Self::NotPrintableAscii => {
                f.write_str("domain name holds a byte outside visible ASCII")
            }
        }
    }
}

impl core::error::Error for DomainError {}

impl Domain {
    /// Validates `name`: 1 to 255 bytes, each visible ASCII.
    pub fn new(name: &str) -> Result<Self, DomainError> {
        if name.is_empty() {
            return Err(DomainError::Empty);
        }
        if !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DomainError::NotPrintableAscii);
        }
        heapless::String::try_from(name)
            .map(Self)
            .map_err(|_| DomainError::TooLong(name.len()))
    }

    /// Validates a name given as raw octets, as it arrives on the wire.
    pub fn from_bytes(name: &[u8]) -> Result<Self, DomainError> {
        let name = core::str::from_utf8(name).map_err(|_| DomainError::NotPrintableAscii)?;
        Self::new(name)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The name's length in bytes, 1 to 255.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: a [`Domain`] is never empty. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name's length as the one-octet wire field.
    fn len_octet(&self) -> u8 {
        // Construction bounds the length to 255, so the conversion is lossless.
        u8::try_from(self.len()).unwrap_or(u8::MAX)
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for Domain {
    type Error = DomainError;
    fn try_from(name: &str) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

/// Where a client wants to go (`DST.ADDR`, `DST.PORT`), or where the server is bound
/// (`BND.ADDR`, `BND.PORT`).
// The name is stored inline: without alloc there is nothing to box it in.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An IPv4 or IPv6 address and port.
    ///
    /// The wire carries neither IPv6 flow info nor scope id: encoding ignores them and
    /// decoding sets them to zero.
    Ip(SocketAddr),
    /// A domain name and port, for veil to resolve.
    Domain(Domain, u16),
}

impl Target {
    /// `0.0.0.0:0`, the address a server puts in replies that carry no address.
    pub const UNSPECIFIED: Self =
        Self::Ip(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Ip(addr) => addr.port(),
            Self::Domain(_, port) => *port,
        }
    }

    /// Bytes of the `ATYP ADDR PORT` encoding: 7 for IPv4, 19 for IPv6, 4 + name length for
    /// a domain.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Self::Ip(SocketAddr::V4(_)) => 4,
            Self::Ip(SocketAddr::V6(_)) => 16,
            Self::Domain(name, _) => 1 + name.len(),
        } + 2
    }

    /// Writes `ATYP ADDR PORT`; the caller has reserved [`Self::encoded_len`] bytes.
    pub(super) fn encode(&self, out: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        out.reserve(self.encoded_len())?;
        match self {
            Self::Ip(SocketAddr::V4(addr)) => {
                out.u8(ATYP_IPV4)?;
                out.bytes(&addr.ip().octets())?;
            }
            Self::Ip(SocketAddr::V6(addr)) => {
                out.u8(ATYP_IPV6)?;
                out.bytes(&addr.ip().octets())?;
            }
            Self::Domain(name, _) => {
                out.u8(ATYP_DOMAIN)?;
                out.u8(name.len_octet())?;
                out.bytes(name.as_str().as_bytes())?;
            }
        }
        out.u16(self.port())
    }

    /// Reads `ATYP ADDR PORT` from the front of `input`.
    ///
    /// A domain's port is read before its name is checked, so that a refused request has
    /// been read whole.
    pub(super) fn decode(input: &mut Reader<'_>) -> Result<Self, TargetError> {
        match input.u8()? {
            ATYP_IPV4 => {
                let ip = Ipv4Addr::from(input.array::<4>()?);
                let port = input.u16()?;
                Ok(Self::Ip(SocketAddr::V4(SocketAddrV4::new(ip, port))))
            }
            ATYP_IPV6 => {
                let ip = Ipv6Addr::from(input.array::<16>()?);
                let port = input.u16()?;
                Ok(Self::Ip(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))))
            }
            //# RFC 1928 §5: "the address field contains a fully-qualified domain name.  The
            //# first octet of the address field contains the number of octets of name that
            //# follow, there is no terminating NUL octet."
            ATYP_DOMAIN => {
                let len = input.u8()?;
                let name = input.bytes(usize::from(len))?;
                let port = input.u16()?;
                let name = Domain::from_bytes(name).map_err(TargetError::InvalidDomain)?;
                Ok(Self::Domain(name, port))
            }
            other => Err(TargetError::UnsupportedType(other)),
        }
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Self::Ip(addr)
    }
}

impl fmt::Display for Target {
    /// `192.0.2.1:80`, `[2001:db8::1]:443` or `example.com:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(addr) => addr.fmt(f),
            Self::Domain(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// Why an address group could not be read. Each user maps it to its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TargetError {
    /// The input ended inside the address group.
    Truncated,
    /// `ATYP` is not one of the three RFC 1928 types.
    UnsupportedType(u8),
    /// The domain name is not one veil resolves.
    InvalidDomain(DomainError),
}

impl From<Truncated> for TargetError {
    fn from(Truncated: Truncated) -> Self {
        Self::Truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn encode(target: &Target) -> Vec<u8> {
        let mut buf = [0; MAX_TARGET_LEN];
        let mut out = Writer::new(&mut buf);
        target.encode(&mut out).unwrap();
        let len = out.finish();
        assert_eq!(len, target.encoded_len());
        buf[..len].to_vec()
    }

    #[test]
    fn encodes_each_address_type() {
        let v4 = Target::Ip("192.0.2.1:80".parse().unwrap());
        // ATYP=1, 192.0.2.1, port 80
        assert_eq!(encode(&v4), [0x01, 192, 0, 2, 1, 0x00, 0x50]);
        let v6 = Target::Ip("[2001:db8::1]:443".parse().unwrap());
        // ATYP=4, 2001:db8::1, port 443
        assert_eq!(
            encode(&v6),
            [
                0x04, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, 0xbb
            ]
        );
        let name = Target::Domain(Domain::new("a.io").unwrap(), 8080);
        // ATYP=3, length 4, "a.io", port 8080
        assert_eq!(encode(&name), [0x03, 4, b'a', b'.', b'i', b'o', 0x1f, 0x90]);
    }

    #[test]
    fn domain_validation() {
        assert_eq!(Domain::new(""), Err(DomainError::Empty));
        assert_eq!(Domain::new("a b"), Err(DomainError::NotPrintableAscii));
        assert_eq!(
            Domain::new("bücher.de"),
            Err(DomainError::NotPrintableAscii)
        );
        assert_eq!(Domain::new("a\0"), Err(DomainError::NotPrintableAscii));
        assert_eq!(Domain::new("a\x7f"), Err(DomainError::NotPrintableAscii));
        assert_eq!(
            Domain::from_bytes(&[0xff]),
            Err(DomainError::NotPrintableAscii)
        );
        let long = "a".repeat(256);
        assert_eq!(Domain::new(&long), Err(DomainError::TooLong(256)));
        assert_eq!(Domain::new(&long[..255]).unwrap().len(), 255);
        assert_eq!(
            Domain::new("xn--bcher-kva.de").unwrap().as_str(),
            "xn--bcher-kva.de"
        );
    }

    #[test]
    fn decode_reports_each_failure() {
        let decode = |bytes: &[u8]| Target::decode(&mut Reader::new(bytes));
        assert_eq!(decode(&[0x01, 1, 2, 3]), Err(TargetError::Truncated));
        assert_eq!(decode(&[0x02]), Err(TargetError::UnsupportedType(0x02)));
        assert_eq!(
            decode(&[0x03, 0, 0, 80]),
            Err(TargetError::InvalidDomain(DomainError::Empty))
        );
        assert_eq!(decode(&[0x03, 1, b'a', 0]), Err(TargetError::Truncated));
    }

    #[test]
    fn display_forms() {
        let name = Target::Domain(Domain::new("example.com").unwrap(), 80);
        assert_eq!(std::format!("{name}"), "example.com:80");
        let v6 = Target::Ip("[::1]:443".parse().unwrap());
        assert_eq!(std::format!("{v6}"), "[::1]:443");
        assert_eq!(std::format!("{}", Target::UNSPECIFIED), "0.0.0.0:0");
    }
}

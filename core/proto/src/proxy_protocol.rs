//! The PROXY protocol of haproxy, versions 1 and 2 (`doc/proxy-protocol.txt`).
//!
//! A proxy prepends one header to a relayed connection to tell the server who the client
//! really is. Version 1 is a text line, version 2 a binary block with optional TLVs.
//!
//! # Receiving
//!
//! Buffer the connection's first bytes and call [`decode`] (or [`Decoder::decode`]) after
//! every read until it stops answering [`Decoded::Incomplete`]. The decoder keeps no state:
//! it judges the bytes it is given, refusing as early as a prefix allows, and any chunking
//! of the same bytes reaches the same answer. [`Decoded::Complete`] carries the header's
//! length; the application data starts right after it, in the same buffer. At most
//! [`V1_MAX_LEN`] bytes (v1) or [`Decoder::max_v2_len`] bytes (v2) ever need buffering.
//!
//! [`detect`] tells from the first byte whether a PROXY header can follow at all. It is
//! not a licence to make the header optional:
//!
//! > The receiver MUST be configured to only receive the protocol described in this
//! > specification and MUST not try to guess whether the protocol header is present or not.
//!
//! Decoding is strict: single spaces, canonical addresses of the declared family, ports
//! without leading zeros, CRLF within 107 bytes, known v2 version, command, family and
//! transport, TLVs inside the header, a matching CRC32C when one is present.
//!
//! # Sending
//!
//! [`V1Line`] and [`V2Encoder`] write into caller buffers.
//!
//! # What the header means
//!
//! [`Addresses::Unspecified`] (v1 `UNKNOWN`, v2 LOCAL, v2 UNSPEC family or transport)
//! means "use the real connection's endpoints".

mod crc32c;
pub mod tlv;
mod v1;
mod v2;

use core::fmt;
use core::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

pub use crc32c::{Crc32c, crc32c};
pub use tlv::{Tlv, TlvError, TlvIter, Tlvs};
pub use v1::{Endpoint, V1_MAX_LEN, V1_PREFIX, V1Error, V1Line};
pub use v2::{V2_FIXED_LEN, V2_MAX_LEN, V2_SIGNATURE, V2EncodeError, V2Encoder, V2Error};

/// Which header format carried the information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The text line.
    V1,
    /// The binary block.
    V2,
}

/// What the sender asks the receiver to do with the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// The proxy opened the connection itself (e.g. a health check): use the real endpoints.
    Local,
    /// The connection is relayed: the header describes the original endpoints. Every v1
    /// header decodes as `Proxy`.
    Proxy,
}

/// The relayed connection's socket type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Unknown or unsupported (v1 `UNKNOWN`, v2 transport 0).
    Unspec,
    /// `SOCK_STREAM`: TCP or a UNIX stream socket.
    Stream,
    /// `SOCK_DGRAM`: UDP or a UNIX datagram socket.
    Datagram,
}

/// The relayed connection's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addresses<'a> {
    /// No usable addresses: use the real connection's.
    Unspecified,
    /// IPv4 source and destination.
    Ipv4 {
        /// The client.
        source: SocketAddrV4,
        /// The address the client connected to.
        destination: SocketAddrV4,
    },
    /// IPv6 source and destination. Flow info and scope id are always 0.
    Ipv6 {
        /// The client.
        source: SocketAddrV6,
        /// The address the client connected to.
        destination: SocketAddrV6,
    },
    /// UNIX socket addresses (v2 only).
    Unix {
        /// The client.
        source: UnixAddr<'a>,
        /// The address the client connected to.
        destination: UnixAddr<'a>,
    },
}

impl Addresses<'_> {
    /// IP endpoints from a pair of socket addresses; `None` if their families differ.
    pub const fn from_pair(source: SocketAddr, destination: SocketAddr) -> Option<Self> {
        match (source, destination) {
            (SocketAddr::V4(source), SocketAddr::V4(destination)) => Some(Self::Ipv4 {
                source,
                destination,
            }),
            (SocketAddr::V6(source), SocketAddr::V6(destination)) => Some(Self::Ipv6 {
                source,
                destination,
            }),
            _ => None,
        }
    }

    /// The client's IP address and port, if the header gave one.
    pub const fn source(&self) -> Option<SocketAddr> {
        match *self {
            Self::Ipv4 { source, .. } => Some(SocketAddr::V4(source)),
            Self::Ipv6 { source, .. } => Some(SocketAddr::V6(source)),
            Self::Unspecified | Self::Unix { .. } => None,
        }
    }

    /// The IP address and port the client connected to, if the header gave one.
    pub const fn destination(&self) -> Option<SocketAddr> {
        match *self {
            Self::Ipv4 { destination, .. } => Some(SocketAddr::V4(destination)),
            Self::Ipv6 { destination, .. } => Some(SocketAddr::V6(destination)),
            Self::Unspecified | Self::Unix { .. } => None,
        }
    }
}

//# proxy-protocol.txt §2.2: "0x3 : AF_UNIX : the forwarded connection uses the AF_UNIX
//# address family (UNIX). The addresses are exactly 108 bytes each."
/// Bytes of one v2 UNIX address.
const UNIX_ADDR_LEN: usize = 108;

/// A UNIX socket address as v2 carries it: 108 bytes, a path padded with NULs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnixAddr<'a> {
    raw: &'a [u8; UNIX_ADDR_LEN],
}

impl<'a> UnixAddr<'a> {
    /// Bytes of one address.
    pub const LEN: usize = UNIX_ADDR_LEN;

    /// Wraps the 108 raw bytes (`sun_path`).
    pub const fn new(raw: &'a [u8; UNIX_ADDR_LEN]) -> Self {
        Self { raw }
    }

    /// The raw bytes, padding included. Abstract-namespace addresses start with a NUL.
    pub const fn raw(&self) -> &'a [u8; UNIX_ADDR_LEN] {
        self.raw
    }

    /// The path: the bytes before the first NUL (empty for abstract-namespace addresses).
    pub fn path(&self) -> &'a [u8] {
        let raw: &'a [u8] = self.raw;
        raw.split(|&b| b == 0).next().unwrap_or_default()
    }
}

/// A decoded header, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Text (v1) or binary (v2).
    pub version: Version,
    /// LOCAL or PROXY; always PROXY for v1.
    pub command: Command,
    /// As announced: TCP4/TCP6 is [`Transport::Stream`], v1 `UNKNOWN` is
    /// [`Transport::Unspec`]; for v2 the transport nibble, LOCAL headers included.
    pub transport: Transport,
    /// The original endpoints, or [`Addresses::Unspecified`] when the real connection's
    /// apply (v1 `UNKNOWN`, v2 LOCAL, v2 UNSPEC family or transport).
    pub addresses: Addresses<'a>,
    /// The v2 TLVs after the addresses, checked; empty for v1.
    pub tlvs: Tlvs<'a>,
}

/// What the bytes so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid prefix of a header: read more and call again with all the bytes.
    Incomplete,
    /// A whole header.
    Complete {
        /// The header.
        header: Header<'a>,
        /// Its length: the application's bytes start at `buf[len..]`.
        len: usize,
    },
}

/// What the first bytes of a connection announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detection {
    /// Too few bytes to tell (a prefix of one of the signatures, or nothing).
    Incomplete,
    /// The bytes start with "PROXY".
    V1,
    /// The bytes start with the v2 signature.
    V2,
    /// Not a PROXY header, which is known from the first byte that differs.
    NotProxy,
}

/// Tells a v1 line, a v2 header and anything else apart from the first bytes.
///
/// Cheap: it looks at no more than the 12 signature bytes, and the first byte alone settles
/// most non-PROXY input.
pub fn detect(prefix: &[u8]) -> Detection {
    if let Some(verdict) = match_signature(prefix, &V2_SIGNATURE, Detection::V2) {
        verdict
    } else if let Some(verdict) = match_signature(prefix, &V1_PREFIX, Detection::V1) {
        verdict
    } else {
        Detection::NotProxy
    }
}

/// `Some(found)` if `prefix` starts with `signature`, `Some(Incomplete)` if it is a proper
/// prefix of it, `None` otherwise.
fn match_signature(prefix: &[u8], signature: &[u8], found: Detection) -> Option<Detection> {
    let common = prefix.len().min(signature.len());
    if prefix.get(..common) != signature.get(..common) {
        None
    } else if common == signature.len() {
        Some(found)
    } else {
        Some(Detection::Incomplete)
    }
}

/// Why the bytes are not a valid PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    //# proxy-protocol.txt §2.2: "otherwise the protocol is not covered by this
    //# specification and the connection must be dropped."
    /// Neither signature: the peer does not speak the PROXY protocol.
    NotProxy,
    /// A malformed v1 line.
    V1(V1Error),
    /// A malformed or refused v2 header.
    V2(V2Error),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotProxy => f.write_str("not a PROXY protocol header"),
            Self::V1(e) => e.fmt(f),
            Self::V2(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::NotProxy => None,
            Self::V1(e) => Some(e),
            Self::V2(e) => Some(e),
        }
    }
}

impl From<V1Error> for DecodeError {
    fn from(e: V1Error) -> Self {
        Self::V1(e)
    }
}

impl From<V2Error> for DecodeError {
    fn from(e: V2Error) -> Self {
        Self::V2(e)
    }
}

/// A PROXY header decoder with a bound on v2 header size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    max_v2_len: usize,
}

impl Decoder {
    /// The default bound on a whole v2 header, fixed part included: 4 KiB.
    ///
    /// The spec sets none beyond the 16-bit length (64 KiB). The addresses take at most 216
    /// bytes, a unique ID at most 128, and ALPN, SNI and TLS names are short, so real
    /// headers are a few hundred bytes; 4 KiB leaves room for custom TLVs while keeping
    /// what every not-yet-identified connection may make the receiver buffer small.
    pub const DEFAULT_MAX_V2_LEN: usize = 4096;

    /// A decoder with [`DEFAULT_MAX_V2_LEN`](Self::DEFAULT_MAX_V2_LEN).
    pub const fn new() -> Self {
        Self {
            max_v2_len: Self::DEFAULT_MAX_V2_LEN,
        }
    }

    /// A decoder that refuses v2 headers longer than `max` bytes in total ([`V2_MAX_LEN`]
    /// accepts all). A v2 header is refused as soon as its length field is read.
    pub const fn with_max_v2_len(max: usize) -> Self {
        Self { max_v2_len: max }
    }

    /// The longest v2 header this decoder accepts, fixed part included.
    pub const fn max_v2_len(&self) -> usize {
        self.max_v2_len
    }

    /// Decodes a header from the front of `buf`, all the connection's bytes so far.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Decoded<'a>, DecodeError> {
        match detect(buf) {
            Detection::Incomplete => Ok(Decoded::Incomplete),
            Detection::NotProxy => Err(DecodeError::NotProxy),
            Detection::V1 => Ok(v1::decode(buf)?),
            Detection::V2 => Ok(v2::decode(buf, self.max_v2_len)?),
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes a header from the front of `buf` with the default [`Decoder`].
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    Decoder::new().decode(buf)
}

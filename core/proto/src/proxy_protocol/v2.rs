//! Version 2, the binary header (proxy-protocol.txt §2.2).
//!
//! ```text
//! struct proxy_hdr_v2 {
//!     uint8_t sig[12];  /* hex 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A */
//!     uint8_t ver_cmd;  /* protocol version and command */
//!     uint8_t fam;      /* protocol family and address */
//!     uint16_t len;     /* number of following bytes part of the header */
//! };
//! ```
//!
//! followed by `len` bytes: the addresses (12, 36 or 216 bytes by family), then TLVs.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use crate::cursor::{Reader, Writer};
use crate::error::{BufferTooSmall, Truncated};

use super::crc32c::{Crc32c, crc32c};
use super::tlv::{self, Checksum, Ssl, TlvError};
use super::{Addresses, Command, Decoded, Header, Transport, UNIX_ADDR_LEN, UnixAddr, Version};

/// The twelve bytes that open a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

//# proxy-protocol.txt §2.2: "the length of the protocol header in bytes is always exactly
//# 16 + this value."
/// Bytes before the addresses: signature, version and command, family, length.
pub const V2_FIXED_LEN: usize = 16;

/// The longest header the 16-bit length field can describe.
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + 65_535;

/// The only version byte nibble the spec allows.
const VERSION_2: u8 = 0x2;

/// The address family, high nibble of the 14th byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Unspec,
    Inet,
    Inet6,
    Unix,
}

impl Family {
    const fn from_nibble(nibble: u8) -> Option<Self> {
        match nibble {
            0x0 => Some(Self::Unspec),
            0x1 => Some(Self::Inet),
            0x2 => Some(Self::Inet6),
            0x3 => Some(Self::Unix),
            _ => None,
        }
    }

    const fn nibble(self) -> u8 {
        match self {
            Self::Unspec => 0x0,
            Self::Inet => 0x1,
            Self::Inet6 => 0x2,
            Self::Unix => 0x3,
        }
    }

    /// Bytes of the address block: two addresses, then two ports for IP.
    const fn addresses_len(self) -> usize {
        match self {
            Self::Unspec => 0,
            Self::Inet => 2 * 4 + 2 * 2,
            Self::Inet6 => 2 * 16 + 2 * 2,
            Self::Unix => 2 * UNIX_ADDR_LEN,
        }
    }

    const fn of(addresses: &Addresses<'_>) -> Self {
        match addresses {
            Addresses::Unspecified => Self::Unspec,
            Addresses::Ipv4 { .. } => Self::Inet,
            Addresses::Ipv6 { .. } => Self::Inet6,
            Addresses::Unix { .. } => Self::Unix,
        }
    }
}

impl Transport {
    const fn from_nibble(nibble: u8) -> Option<Self> {
        match nibble {
            0x0 => Some(Self::Unspec),
            0x1 => Some(Self::Stream),
            0x2 => Some(Self::Datagram),
            _ => None,
        }
    }

    const fn nibble(self) -> u8 {
        match self {
            Self::Unspec => 0x0,
            Self::Stream => 0x1,
            Self::Datagram => 0x2,
        }
    }
}

impl Command {
    const fn from_nibble(nibble: u8) -> Option<Self> {
        match nibble {
            0x0 => Some(Self::Local),
            0x1 => Some(Self::Proxy),
            _ => None,
        }
    }

    const fn nibble(self) -> u8 {
        match self {
            Self::Local => 0x0,
            Self::Proxy => 0x1,
        }
    }
}

/// A malformed or refused v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum V2Error {
    /// The version nibble is not 2.
    UnsupportedVersion(u8),
    /// The command nibble is neither LOCAL (0) nor PROXY (1).
    UnsupportedCommand(u8),
    /// The family nibble is not UNSPEC, INET, INET6 or UNIX (0–3).
    UnsupportedFamily(u8),
    /// The transport nibble is not UNSPEC, STREAM or DGRAM (0–2).
    UnsupportedTransport(u8),
    /// The header is longer than the decoder accepts.
    TooLong {
        /// Bytes the header announces, 16 + its length field.
        len: usize,
        /// The decoder's limit.
        max: usize,
    },
    /// A PROXY header whose length is shorter than its family's address block.
    AddressesTruncated {
        /// Bytes the family's addresses take.
        needed: usize,
        /// Bytes after the fixed 16.
        available: usize,
    },
    /// The TLVs after the addresses cannot be walked (offsets count from the header start).
    Tlv(TlvError),
    /// The CRC32C TLV does not match the header.
    ChecksumMismatch {
        /// The checksum in the TLV.
        received: u32,
        /// The checksum of the header as received.
        computed: u32,
    },
}

impl fmt::Display for V2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion(v) => write!(f, "PROXY v2: version {v}, expected 2"),
            Self::UnsupportedCommand(c) => write!(f, "PROXY v2: unknown command {c:#x}"),
            Self::UnsupportedFamily(a) => write!(f, "PROXY v2: unknown address family {a:#x}"),
            Self::UnsupportedTransport(t) => write!(f, "PROXY v2: unknown transport {t:#x}"),
            Self::TooLong { len, max } => {
                write!(
                    f,
                    "PROXY v2: {len}-byte header exceeds the {max}-byte limit"
                )
            }
            Self::AddressesTruncated { needed, available } => write!(
                f,
                "PROXY v2: addresses need {needed} bytes, header has {available}"
            ),
            Self::Tlv(e) => write!(f, "PROXY v2: {e}"),
            Self::ChecksumMismatch { received, computed } => write!(
                f,
                "PROXY v2: CRC32C {received:#010x} does not match computed {computed:#010x}"
            ),
        }
    }
}

impl core::error::Error for V2Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Tlv(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TlvError> for V2Error {
    fn from(e: TlvError) -> Self {
        Self::Tlv(e)
    }
}

/// Decodes a v2 header from the front of `buf`, which starts with [`V2_SIGNATURE`].
///
/// Each byte is judged as soon as it arrives, so a bad version is refused at 13 bytes
/// without waiting for the rest.
pub(super) fn decode(buf: &[u8], max_len: usize) -> Result<Decoded<'_>, V2Error> {
    let mut reader = Reader::new(buf);
    if reader.bytes(V2_SIGNATURE.len()).is_err() {
        return Ok(Decoded::Incomplete);
    }
    let Ok(version_command) = reader.u8() else {
        return Ok(Decoded::Incomplete);
    };
    let command = parse_version_command(version_command)?;
    let Ok(family_transport) = reader.u8() else {
        return Ok(Decoded::Incomplete);
    };
    let (family, transport) = parse_family_transport(family_transport)?;
    let Ok(payload_len) = reader.u16() else {
        return Ok(Decoded::Incomplete);
    };
    let len = V2_FIXED_LEN + usize::from(payload_len);
    if len > max_len {
        return Err(V2Error::TooLong { len, max: max_len });
    }
    let Ok(payload) = reader.bytes(usize::from(payload_len)) else {
        return Ok(Decoded::Incomplete);
    };
    let (addresses, tlv_area, tlv_base) = split_addresses(command, family, transport, payload)?;
    let (tlvs, checksum) = tlv::parse_area(tlv_area, tlv_base)?;
    if let Some(checksum) = checksum {
        verify_checksum(buf.get(..len).unwrap_or_default(), checksum)?;
    }
    Ok(Decoded::Complete {
        header: Header {
            version: Version::V2,
            command,
            transport,
            addresses,
            tlvs,
        },
        len,
    })
}

fn parse_version_command(byte: u8) -> Result<Command, V2Error> {
    //# proxy-protocol.txt §2.2: "As of this specification, it must always be sent as \x2
    //# and the receiver must only accept this value."
    let version = byte >> 4;
    if version != VERSION_2 {
        return Err(V2Error::UnsupportedVersion(version));
    }
    //# proxy-protocol.txt §2.2: "other values are unassigned and must not be emitted by
    //# senders. Receivers must drop connections presenting unexpected values here."
    let command = byte & 0x0f;
    Command::from_nibble(command).ok_or(V2Error::UnsupportedCommand(command))
}

/// Checks the family and transport nibbles, for LOCAL too: the spec makes other values
/// invalid outright, even where it then says the family is ignored.
fn parse_family_transport(byte: u8) -> Result<(Family, Transport), V2Error> {
    //# proxy-protocol.txt §2.2: "other values are unspecified and must not be emitted in
    //# version 2 of this protocol and must be rejected as invalid by receivers."
    let family = Family::from_nibble(byte >> 4).ok_or(V2Error::UnsupportedFamily(byte >> 4))?;
    let transport =
        Transport::from_nibble(byte & 0x0f).ok_or(V2Error::UnsupportedTransport(byte & 0x0f))?;
    Ok((family, transport))
}

/// Splits the payload into addresses and the TLV area, returning the area's header offset.
fn split_addresses(
    command: Command,
    family: Family,
    transport: Transport,
    payload: &[u8],
) -> Result<(Addresses<'_>, &[u8], usize), V2Error> {
    let needed = family.addresses_len();
    let Some((block, tlv_area)) = payload.split_at_checked(needed) else {
        return match command {
            //# proxy-protocol.txt §2.2: "The receiver must accept this connection as valid
            //# and must use the real connection endpoints and discard the protocol block
            //# including the family which is ignored."
            Command::Local => Ok((Addresses::Unspecified, &[], V2_FIXED_LEN + payload.len())),
            Command::Proxy => Err(V2Error::AddressesTruncated {
                needed,
                available: payload.len(),
            }),
        };
    };
    //# proxy-protocol.txt §2.2 (UNSPEC transport): "The receiver should ignore address
    //# information."
    let addresses = match (command, transport) {
        (Command::Local, _) | (_, Transport::Unspec) => Addresses::Unspecified,
        (Command::Proxy, _) => {
            parse_block(family, block).map_err(|Truncated| V2Error::AddressesTruncated {
                needed,
                available: payload.len(),
            })?
        }
    };
    Ok((addresses, tlv_area, V2_FIXED_LEN + needed))
}

/// Reads an address block of exactly `family.addresses_len()` bytes.
fn parse_block(family: Family, block: &[u8]) -> Result<Addresses<'_>, Truncated> {
    let mut reader = Reader::new(block);
    Ok(match family {
        Family::Unspec => Addresses::Unspecified,
        Family::Inet => {
            let source = Ipv4Addr::from(reader.array::<4>()?);
            let destination = Ipv4Addr::from(reader.array::<4>()?);
            Addresses::Ipv4 {
                source: SocketAddrV4::new(source, reader.u16()?),
                destination: SocketAddrV4::new(destination, reader.u16()?),
            }
        }
        Family::Inet6 => {
            let source = Ipv6Addr::from(reader.array::<16>()?);
            let destination = Ipv6Addr::from(reader.array::<16>()?);
            Addresses::Ipv6 {
                source: SocketAddrV6::new(source, reader.u16()?, 0, 0),
                destination: SocketAddrV6::new(destination, reader.u16()?, 0, 0),
            }
        }
        Family::Unix => Addresses::Unix {
            source: read_unix(&mut reader)?,
            destination: read_unix(&mut reader)?,
        },
    })
}

fn read_unix<'a>(reader: &mut Reader<'a>) -> Result<UnixAddr<'a>, Truncated> {
    let raw = reader.bytes(UNIX_ADDR_LEN)?;
    <&[u8; UNIX_ADDR_LEN]>::try_from(raw)
        .map(UnixAddr::new)
        .map_err(|_| Truncated)
}

//# proxy-protocol.txt §2.2.3: "replace the 32 bits of the checksum field in the received
//# PROXY header with all '0's and calculate a CRC32c checksum value of the whole PROXY
//# header."
fn verify_checksum(header: &[u8], checksum: Checksum) -> Result<(), V2Error> {
    let mut crc = Crc32c::new();
    crc.update(header.get(..checksum.at).unwrap_or_default());
    crc.update(&[0; 4]);
    crc.update(header.get(checksum.at + 4..).unwrap_or_default());
    let computed = crc.finish();
    if computed == checksum.received {
        Ok(())
    } else {
        Err(V2Error::ChecksumMismatch {
            received: checksum.received,
            computed,
        })
    }
}

/// Why a v2 header could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum V2EncodeError {
    /// The output buffer cannot hold the header.
    BufferTooSmall(BufferTooSmall),
    /// Addresses and TLVs exceed the 65535 bytes the length field can count.
    TooLong {
        /// Bytes after the fixed 16 the header would need.
        len: usize,
    },
    /// A TLV value exceeds the 65535 bytes its length field can count.
    TlvTooLong {
        /// The TLV's type.
        kind: u8,
        /// The value's length.
        len: usize,
    },
    /// A [`tlv::CRC32C`] TLV in the list; set [`V2Encoder::crc32c`] instead, so it is
    /// computed over the final bytes.
    ChecksumTlvInList,
    /// A [`tlv::SSL`] value that a receiver could not parse.
    InvalidSsl(TlvError),
    /// A LOCAL header with addresses: LOCAL means "use the real connection endpoints".
    LocalWithAddresses,
    /// Addresses with [`Transport::Unspec`], which tells receivers to ignore them.
    AddressesNeedTransport,
}

impl fmt::Display for V2EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall(e) => e.fmt(f),
            Self::TooLong { len } => {
                write!(f, "PROXY v2: {len} bytes of addresses and TLVs, max 65535")
            }
            Self::TlvTooLong { kind, len } => {
                write!(
                    f,
                    "PROXY v2: TLV {kind:#04x} value of {len} bytes, max 65535"
                )
            }
            Self::ChecksumTlvInList => {
                f.write_str("PROXY v2: CRC32C TLV given in the list; use the crc32c flag")
            }
            Self::InvalidSsl(e) => write!(f, "PROXY v2: invalid SSL TLV value: {e}"),
            Self::LocalWithAddresses => f.write_str("PROXY v2: LOCAL header with addresses"),
            Self::AddressesNeedTransport => {
                f.write_str("PROXY v2: addresses given with an UNSPEC transport")
            }
        }
    }
}

impl core::error::Error for V2EncodeError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::BufferTooSmall(e) => Some(e),
            Self::InvalidSsl(e) => Some(e),
            _ => None,
        }
    }
}

impl From<BufferTooSmall> for V2EncodeError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall(e)
    }
}

/// A v2 header to send.
///
/// The family byte follows from `addresses`. TLVs are written in the order given; with
/// `crc32c` set, a [`tlv::CRC32C`] TLV is appended last and filled in over the finished
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2Encoder<'a> {
    /// LOCAL (health checks, the proxy's own connections) or PROXY (relayed connections).
    pub command: Command,
    /// The relayed connection's socket type.
    pub transport: Transport,
    /// The relayed connection's endpoints.
    pub addresses: Addresses<'a>,
    /// `(type, value)` pairs to append after the addresses.
    pub tlvs: &'a [(u8, &'a [u8])],
    /// Whether to append a CRC32C TLV.
    pub crc32c: bool,
}

impl<'a> V2Encoder<'a> {
    //# proxy-protocol.txt §2.2: "When a sender presents a LOCAL connection, it should not
    //# present any address so it sets this field to zero."
    /// A LOCAL header: family and transport UNSPEC, no addresses, no TLVs.
    pub const fn local() -> Self {
        Self {
            command: Command::Local,
            transport: Transport::Unspec,
            addresses: Addresses::Unspecified,
            tlvs: &[],
            crc32c: false,
        }
    }

    /// A PROXY header for a relayed connection, no TLVs.
    pub const fn proxy(transport: Transport, addresses: Addresses<'a>) -> Self {
        Self {
            command: Command::Proxy,
            transport,
            addresses,
            tlvs: &[],
            crc32c: false,
        }
    }

    /// The same header with these TLVs.
    #[must_use]
    pub const fn with_tlvs(self, tlvs: &'a [(u8, &'a [u8])]) -> Self {
        Self { tlvs, ..self }
    }

    /// The same header with a CRC32C TLV.
    #[must_use]
    pub const fn with_crc32c(self) -> Self {
        Self {
            crc32c: true,
            ..self
        }
    }

    /// Bytes [`encode`](Self::encode) writes, or why it would fail for any buffer.
    pub fn encoded_len(&self) -> Result<usize, V2EncodeError> {
        Ok(V2_FIXED_LEN + usize::from(self.payload_len()?))
    }

    /// Writes the header to the front of `out` and returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, V2EncodeError> {
        let payload_len = self.payload_len()?;
        let family = Family::of(&self.addresses);
        let mut writer = Writer::new(out);
        writer.reserve(V2_FIXED_LEN + usize::from(payload_len))?;
        writer.bytes(&V2_SIGNATURE)?;
        writer.u8(VERSION_2 << 4 | self.command.nibble())?;
        writer.u8(family.nibble() << 4 | self.transport.nibble())?;
        writer.u16(payload_len)?;
        write_addresses(&self.addresses, &mut writer)?;
        tlv::write_all(self.tlvs, &mut writer)?;
        if self.crc32c {
            writer.u8(tlv::CRC32C)?;
            writer.u16(4)?;
            writer.u32(0)?;
        }
        let len = writer.finish();
        if self.crc32c {
            fill_checksum(out.get_mut(..len).unwrap_or_default());
        }
        Ok(len)
    }

    /// Validates the header and returns its length field.
    fn payload_len(&self) -> Result<u16, V2EncodeError> {
        let has_addresses = self.addresses != Addresses::Unspecified;
        if has_addresses && self.command == Command::Local {
            return Err(V2EncodeError::LocalWithAddresses);
        }
        if has_addresses && self.transport == Transport::Unspec {
            return Err(V2EncodeError::AddressesNeedTransport);
        }
        for &(kind, value) in self.tlvs {
            tlv::check_value_len(kind, value)?;
            match kind {
                tlv::CRC32C => return Err(V2EncodeError::ChecksumTlvInList),
                tlv::SSL => {
                    Ssl::parse(value).map_err(V2EncodeError::InvalidSsl)?;
                }
                _ => {}
            }
        }
        let checksum_len = if self.crc32c {
            tlv::TLV_HEADER_LEN + 4
        } else {
            0
        };
        let len = Family::of(&self.addresses)
            .addresses_len()
            .saturating_add(tlv::encoded_len(self.tlvs))
            .saturating_add(checksum_len);
        u16::try_from(len).map_err(|_| V2EncodeError::TooLong { len })
    }
}

fn write_addresses(addresses: &Addresses<'_>, out: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
    match addresses {
        Addresses::Unspecified => Ok(()),
        Addresses::Ipv4 {
            source,
            destination,
        } => {
            out.bytes(&source.ip().octets())?;
            out.bytes(&destination.ip().octets())?;
            out.u16(source.port())?;
            out.u16(destination.port())
        }
        Addresses::Ipv6 {
            source,
            destination,
        } => {
            out.bytes(&source.ip().octets())?;
            out.bytes(&destination.ip().octets())?;
            out.u16(source.port())?;
            out.u16(destination.port())
        }
        Addresses::Unix {
            source,
            destination,
        } => {
            out.bytes(source.raw())?;
            out.bytes(destination.raw())
        }
    }
}

//# proxy-protocol.txt §2.2.3: "initialize the checksum field to '0's. - calculate the
//# CRC32c checksum of the PROXY header as described in RFC4960, Appendix B [8]. - put the
//# resultant value into the checksum field, and leave the rest of the bits unchanged."
/// Fills the zeroed CRC32C value in the last 4 bytes of `header`.
fn fill_checksum(header: &mut [u8]) {
    let sum = crc32c(header).to_be_bytes();
    let value_at = header.len().saturating_sub(sum.len());
    if let Some(field) = header.get_mut(value_at..) {
        field.copy_from_slice(&sum);
    }
}

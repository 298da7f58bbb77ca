//! PROXY v2 Type-Length-Value extensions (proxy-protocol.txt §2.2).
//!
//! ```text
//! struct pp2_tlv {
//!     uint8_t type;
//!     uint8_t length_hi;
//!     uint8_t length_lo;
//!     uint8_t value[0];
//! };
//! ```
//!
//! [`Tlvs`] is a borrowed view over a TLV area that has already been walked and checked, so
//! iterating it cannot fail.

use core::fmt;

use crate::cursor::{Reader, Writer};
use crate::error::Truncated;

use super::v2::V2EncodeError;

/// `PP2_TYPE_ALPN`: the negotiated application protocol, e.g. a copy of TLS ALPN.
pub const ALPN: u8 = 0x01;
/// `PP2_TYPE_AUTHORITY`: the host name the client asked for (TLS SNI), UTF-8.
pub const AUTHORITY: u8 = 0x02;
/// `PP2_TYPE_CRC32C`: a CRC-32C over the whole header, big-endian, 4 bytes.
pub const CRC32C: u8 = 0x03;
/// `PP2_TYPE_NOOP`: padding, to be ignored.
pub const NOOP: u8 = 0x04;
/// `PP2_TYPE_UNIQUE_ID`: an opaque connection identifier of up to 128 bytes.
pub const UNIQUE_ID: u8 = 0x05;
/// `PP2_TYPE_SSL`: TLS facts about the client connection; see [`Ssl`].
pub const SSL: u8 = 0x20;
/// `PP2_SUBTYPE_SSL_VERSION` (inside [`SSL`]): the TLS version, US-ASCII.
pub const SSL_VERSION: u8 = 0x21;
/// `PP2_SUBTYPE_SSL_CN` (inside [`SSL`]): the client certificate's Common Name, UTF-8.
pub const SSL_CN: u8 = 0x22;
/// `PP2_SUBTYPE_SSL_CIPHER` (inside [`SSL`]): the cipher name, US-ASCII.
pub const SSL_CIPHER: u8 = 0x23;
/// `PP2_SUBTYPE_SSL_SIG_ALG` (inside [`SSL`]): the server certificate's signature algorithm.
pub const SSL_SIG_ALG: u8 = 0x24;
/// `PP2_SUBTYPE_SSL_KEY_ALG` (inside [`SSL`]): the server certificate's key algorithm.
pub const SSL_KEY_ALG: u8 = 0x25;
/// `PP2_TYPE_NETNS`: the network namespace name, US-ASCII.
pub const NETNS: u8 = 0x30;
/// `PP2_TYPE_MIN_CUSTOM..=PP2_TYPE_MAX_CUSTOM`: reserved for application-specific data.
pub const CUSTOM: core::ops::RangeInclusive<u8> = 0xE0..=0xEF;
/// `PP2_TYPE_MIN_EXPERIMENT..=PP2_TYPE_MAX_EXPERIMENT`: reserved for experiments.
pub const EXPERIMENT: core::ops::RangeInclusive<u8> = 0xF0..=0xF7;
/// `PP2_TYPE_MIN_FUTURE..=PP2_TYPE_MAX_FUTURE`: reserved for future extensions.
pub const FUTURE: core::ops::RangeInclusive<u8> = 0xF8..=0xFF;

/// [`Ssl::client`] bit `PP2_CLIENT_SSL`: the client connected over TLS.
pub const CLIENT_SSL: u8 = 0x01;
/// [`Ssl::client`] bit `PP2_CLIENT_CERT_CONN`: the client sent a certificate on this connection.
pub const CLIENT_CERT_CONN: u8 = 0x02;
/// [`Ssl::client`] bit `PP2_CLIENT_CERT_SESS`: the client sent a certificate in this TLS session.
pub const CLIENT_CERT_SESS: u8 = 0x04;

/// Bytes of a TLV's type and length fields.
pub const TLV_HEADER_LEN: usize = 3;

/// One TLV: its type and its value, borrowed from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The type byte, e.g. [`ALPN`].
    pub kind: u8,
    /// The value bytes.
    pub value: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// The `PP2_TYPE_SSL` sub-structure, if this is a well-formed [`SSL`] TLV.
    pub fn ssl(&self) -> Option<Ssl<'a>> {
        if self.kind == SSL {
            Ssl::parse(self.value).ok()
        } else {
            None
        }
    }
}

/// A checked TLV area: every TLV lies inside it, [`SSL`] values are well-formed and there is
/// at most one 4-byte [`CRC32C`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tlvs<'a> {
    bytes: &'a [u8],
}

impl<'a> Tlvs<'a> {
    /// No TLVs, as in every v1 header.
    pub const EMPTY: Self = Self { bytes: &[] };

    /// Checks `bytes` as a TLV area. Error offsets count from the start of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, TlvError> {
        parse_area(bytes, 0).map(|(tlvs, _)| tlvs)
    }

    /// The TLVs in wire order, including [`NOOP`] and unknown types.
    pub fn iter(&self) -> TlvIter<'a> {
        TlvIter {
            reader: Reader::new(self.bytes),
        }
    }

    /// The value of the first TLV of type `kind`.
    pub fn find(&self, kind: u8) -> Option<&'a [u8]> {
        self.iter()
            .find(|tlv| tlv.kind == kind)
            .map(|tlv| tlv.value)
    }

    /// The raw TLV area.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether there are no TLVs.
    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl<'a> IntoIterator for Tlvs<'a> {
    type Item = Tlv<'a>;
    type IntoIter = TlvIter<'a>;
    fn into_iter(self) -> TlvIter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &Tlvs<'a> {
    type Item = Tlv<'a>;
    type IntoIter = TlvIter<'a>;
    fn into_iter(self) -> TlvIter<'a> {
        self.iter()
    }
}

/// Iterator over a checked TLV area.
#[derive(Debug, Clone)]
pub struct TlvIter<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Tlv<'a>;
    fn next(&mut self) -> Option<Tlv<'a>> {
        // The area was checked when the `Tlvs` was made, so this only ends at its end.
        read_tlv(&mut self.reader).ok()
    }
}

impl core::iter::FusedIterator for TlvIter<'_> {}

/// The value of a [`SSL`] TLV.
///
/// ```text
/// struct pp2_tlv_ssl {
///         uint8_t  client;
///         uint32_t verify;
///         struct pp2_tlv sub_tlv[0];
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ssl<'a> {
    /// Bit field of [`CLIENT_SSL`], [`CLIENT_CERT_CONN`], [`CLIENT_CERT_SESS`].
    pub client: u8,
    //# proxy-protocol.txt §2.2.6: "The <verify> field will be zero if the client presented
    //# a certificate and it was successfully verified, and non-zero otherwise."
    /// Zero if the client presented a certificate that verified, non-zero otherwise.
    pub verify: u32,
    /// Sub-TLVs: [`SSL_VERSION`], [`SSL_CN`], [`SSL_CIPHER`], [`SSL_SIG_ALG`], [`SSL_KEY_ALG`].
    pub sub_tlvs: Tlvs<'a>,
}

impl<'a> Ssl<'a> {
    /// Bytes of `client` and `verify`, before the sub-TLVs.
    pub const FIXED_LEN: usize = 5;

    /// Checks an [`SSL`] TLV value. Error offsets count from the start of `value`, so a
    /// value too short for `client` and `verify` is `SslTooShort { offset: 0 }`.
    pub fn parse(value: &'a [u8]) -> Result<Self, TlvError> {
        parse_ssl(value, 0)
    }

    /// The value of the first sub-TLV of type `kind`.
    pub fn find(&self, kind: u8) -> Option<&'a [u8]> {
        self.sub_tlvs.find(kind)
    }
}

/// A TLV area that cannot be walked. Offsets are of the offending TLV's type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlvError {
    /// A TLV's type and length, or its value, run past the end of the area that holds it.
    CrossesEnd {
        /// Where the TLV starts.
        offset: usize,
    },
    /// An [`SSL`] value is shorter than its 5-byte `client` and `verify` fields.
    SslTooShort {
        /// Where the SSL TLV starts.
        offset: usize,
    },
    /// A [`CRC32C`] value is not exactly 4 bytes.
    ChecksumLength {
        /// Where the CRC32C TLV starts.
        offset: usize,
        /// The value's length.
        len: usize,
    },
    /// A second [`CRC32C`] TLV: which one would the header be checked against?
    DuplicateChecksum {
        /// Where the second CRC32C TLV starts.
        offset: usize,
    },
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CrossesEnd { offset } => write!(f, "TLV at offset {offset} crosses the end"),
            Self::SslTooShort { offset } => {
                write!(f, "SSL TLV at offset {offset} is shorter than 5 bytes")
            }
            Self::ChecksumLength { offset, len } => {
                write!(f, "CRC32C TLV at offset {offset} has {len} bytes, not 4")
            }
            Self::DuplicateChecksum { offset } => {
                write!(f, "second CRC32C TLV at offset {offset}")
            }
        }
    }
}

impl core::error::Error for TlvError {}

/// Reads one TLV; `Truncated` if its header or value runs past the end.
fn read_tlv<'a>(reader: &mut Reader<'a>) -> Result<Tlv<'a>, Truncated> {
    let kind = reader.u8()?;
    let len = reader.u16()?;
    let value = reader.bytes(usize::from(len))?;
    Ok(Tlv { kind, value })
}

/// A [`CRC32C`] TLV found while walking an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checksum {
    /// Header offset of the 4-byte value.
    pub(super) at: usize,
    /// The checksum the sender computed.
    pub(super) received: u32,
}

/// Checks a top-level TLV area that starts `base` bytes into the header.
///
/// Returns the checked area and its [`CRC32C`] TLV, if it has one.
pub(super) fn parse_area(
    area: &[u8],
    base: usize,
) -> Result<(Tlvs<'_>, Option<Checksum>), TlvError> {
    let mut reader = Reader::new(area);
    let mut checksum = None;
    while !reader.is_empty() {
        let offset = base + reader.position();
        let tlv = read_tlv(&mut reader).map_err(|Truncated| TlvError::CrossesEnd { offset })?;
        let value_at = offset + TLV_HEADER_LEN;
        match tlv.kind {
            CRC32C if checksum.is_some() => {
                return Err(TlvError::DuplicateChecksum { offset });
            }
            CRC32C => {
                let received =
                    <[u8; 4]>::try_from(tlv.value).map_err(|_| TlvError::ChecksumLength {
                        offset,
                        len: tlv.value.len(),
                    })?;
                checksum = Some(Checksum {
                    at: value_at,
                    received: u32::from_be_bytes(received),
                });
            }
            SSL => {
                parse_ssl(tlv.value, value_at).map_err(|e| match e {
                    TlvError::SslTooShort { .. } => TlvError::SslTooShort { offset },
                    other => other,
                })?;
            }
            _ => {}
        }
    }
    Ok((Tlvs { bytes: area }, checksum))
}

/// Checks an [`SSL`] value that starts `base` bytes into the header.
fn parse_ssl(value: &[u8], base: usize) -> Result<Ssl<'_>, TlvError> {
    let mut reader = Reader::new(value);
    let too_short = |Truncated| TlvError::SslTooShort { offset: base };
    let client = reader.u8().map_err(too_short)?;
    let verify = reader.u32().map_err(too_short)?;
    let sub_base = base + reader.position();
    let area = reader.take_rest();
    let mut subs = Reader::new(area);
    while !subs.is_empty() {
        let offset = sub_base + subs.position();
        read_tlv(&mut subs).map_err(|Truncated| TlvError::CrossesEnd { offset })?;
    }
    Ok(Ssl {
        client,
        verify,
        sub_tlvs: Tlvs { bytes: area },
    })
}

/// Bytes `tlvs` take on the wire, saturating on absurd input so callers see "too long".
pub(super) fn encoded_len(tlvs: &[(u8, &[u8])]) -> usize {
    tlvs.iter().fold(0, |sum: usize, (_, value)| {
        sum.saturating_add(TLV_HEADER_LEN)
            .saturating_add(value.len())
    })
}

/// Fails on a value that does not fit the 16-bit length field.
pub(super) fn check_value_len(kind: u8, value: &[u8]) -> Result<u16, V2EncodeError> {
    u16::try_from(value.len()).map_err(|_| V2EncodeError::TlvTooLong {
        kind,
        len: value.len(),
    })
}

/// Writes `tlvs` in order; their lengths must have been checked.
pub(super) fn write_all(tlvs: &[(u8, &[u8])], out: &mut Writer<'_>) -> Result<(), V2EncodeError> {
    for &(kind, value) in tlvs {
        let len = check_value_len(kind, value)?;
        out.u8(kind)?;
        out.u16(len)?;
        out.bytes(value)?;
    }
    Ok(())
}

/// Writes the value of an [`SSL`] TLV (not its type and length) into `out`.
///
/// Pass the result as the value of an `(SSL, value)` pair to
/// [`V2Encoder`](super::V2Encoder). Returns the bytes written.
pub fn encode_ssl(
    client: u8,
    verify: u32,
    sub_tlvs: &[(u8, &[u8])],
    out: &mut [u8],
) -> Result<usize, V2EncodeError> {
    for &(kind, value) in sub_tlvs {
        check_value_len(kind, value)?;
    }
    let mut writer = Writer::new(out);
    writer.reserve(Ssl::FIXED_LEN.saturating_add(encoded_len(sub_tlvs)))?;
    writer.u8(client)?;
    writer.u32(verify)?;
    write_all(sub_tlvs, &mut writer)?;
    Ok(writer.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn walks_and_finds_tlvs() {
        let area = [
            ALPN, 0x00, 0x02, b'h', b'2', // ALPN "h2"
            NOOP, 0x00, 0x00, // empty NOOP
            AUTHORITY, 0x00, 0x01, b'x', // AUTHORITY "x"
        ];
        let tlvs = Tlvs::parse(&area).unwrap();
        let kinds: Vec<u8> = tlvs.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [ALPN, NOOP, AUTHORITY]);
        assert_eq!(tlvs.find(AUTHORITY), Some(&b"x"[..]));
        assert_eq!(tlvs.find(NETNS), None);
    }

    #[test]
    fn reports_where_a_tlv_crosses_the_end() {
        // A complete NOOP, then a TLV whose length (5) exceeds the 2 bytes left.
        let area = [NOOP, 0, 0, ALPN, 0, 5, b'h', b'2'];
        assert_eq!(Tlvs::parse(&area), Err(TlvError::CrossesEnd { offset: 3 }));
        // A lone type byte: the length field itself is cut.
        assert_eq!(
            Tlvs::parse(&[ALPN]),
            Err(TlvError::CrossesEnd { offset: 0 })
        );
        assert_eq!(
            Tlvs::parse(&[ALPN, 0]),
            Err(TlvError::CrossesEnd { offset: 0 })
        );
    }

    #[test]
    fn checks_checksum_tlvs() {
        assert_eq!(
            Tlvs::parse(&[CRC32C, 0, 3, 1, 2, 3]),
            Err(TlvError::ChecksumLength { offset: 0, len: 3 })
        );
        assert_eq!(
            Tlvs::parse(&[CRC32C, 0, 4, 1, 2, 3, 4, CRC32C, 0, 4, 1, 2, 3, 4]),
            Err(TlvError::DuplicateChecksum { offset: 7 })
        );
        assert_eq!(
            parse_area(&[NOOP, 0, 0, CRC32C, 0, 4, 1, 2, 3, 4], 100).map(|(_, sum)| sum),
            Ok(Some(Checksum {
                at: 106,
                received: 0x0102_0304
            }))
        );
    }

    #[test]
    fn parses_the_ssl_sub_structure() {
        let mut value = [0; 64];
        let len = encode_ssl(
            CLIENT_SSL | CLIENT_CERT_CONN,
            0,
            &[(SSL_VERSION, b"TLSv1.3"), (SSL_CN, b"example.com")],
            &mut value,
        )
        .unwrap();
        let expected = [
            &[0x03][..],          // client: CLIENT_SSL | CLIENT_CERT_CONN
            &[0, 0, 0, 0],        // verify: 0, the certificate verified
            &[SSL_VERSION, 0, 7], // SSL_VERSION, 7 bytes
            b"TLSv1.3",
            &[SSL_CN, 0, 11], // SSL_CN, 11 bytes
            b"example.com",
        ]
        .concat();
        assert_eq!(&value[..len], &expected[..]);
        let tlv = Tlv {
            kind: SSL,
            value: &value[..len],
        };
        let ssl = tlv.ssl().unwrap();
        assert_eq!(ssl.client, CLIENT_SSL | CLIENT_CERT_CONN);
        assert_eq!(ssl.verify, 0);
        assert_eq!(ssl.find(SSL_CN), Some(&b"example.com"[..]));
        assert_eq!(Tlv { kind: ALPN, ..tlv }.ssl(), None);
    }

    #[test]
    fn rejects_malformed_ssl_values_at_the_tlv_offset() {
        // NOOP, then an SSL TLV (offset 3) with a 4-byte value: one short of client + verify.
        let short = [NOOP, 0, 0, SSL, 0, 4, 1, 0, 0, 0];
        assert_eq!(
            Tlvs::parse(&short),
            Err(TlvError::SslTooShort { offset: 3 })
        );
        // SSL TLV whose sub-TLV (at offset 3 + 3 + 5 = 11) claims 9 bytes but has 1.
        let sub = [NOOP, 0, 0, SSL, 0, 9, 1, 0, 0, 0, 0, SSL_CN, 0, 9, b'x'];
        assert_eq!(Tlvs::parse(&sub), Err(TlvError::CrossesEnd { offset: 11 }));
    }
}

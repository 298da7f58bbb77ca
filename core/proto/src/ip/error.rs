//! Why a buffer is not a valid IP packet.

use core::fmt;

/// Why [`IpPacket::new_checked`](super::IpPacket::new_checked) refused a buffer.
///
/// Every variant is a malformed packet: the caller drops it (and may count it). None of them
/// warrants an ICMP error, since a packet that fails validation cannot be quoted reliably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The buffer is shorter than the IP header, or than the length the header announces
    /// (IPv4 Total Length, 40 + IPv6 Payload Length).
    Truncated {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes the buffer had.
        available: usize,
    },
    /// The version nibble is neither 4 nor 6.
    UnsupportedVersion(u8),
    /// The IPv4 Internet Header Length is below 5 words (20 bytes).
    Ipv4HeaderLength(u8),
    /// The IPv4 Total Length is smaller than the header it must include.
    Ipv4TotalLength(u16),
    /// The IPv4 header checksum does not verify.
    Ipv4HeaderChecksum,
    /// The IP payload ends inside a header: an extension header, or the transport header,
    /// whose protocol number is given.
    HeaderTruncated {
        /// Protocol number of the cut-off header.
        protocol: u8,
    },
    /// An IPv6 Hop-by-Hop Options header follows another extension header.
    HopByHopNotFirst,
    /// An IPv6 packet carries two Fragment headers.
    RepeatedFragmentHeader,
    /// The packet has more than [`MAX_EXTENSION_HEADERS`](super::MAX_EXTENSION_HEADERS)
    /// extension headers.
    TooManyExtensionHeaders,
    /// An Authentication Header's Payload Len is 0, shorter than its fixed fields.
    AuthHeaderLength,
    /// The UDP Length is below 8 or beyond the bytes the IP packet carries.
    UdpLength(u16),
    /// The TCP Data Offset is below 5 words (20 bytes).
    TcpDataOffset(u8),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => write!(
                f,
                "IP packet truncated: needs {needed} bytes, buffer has {available}"
            ),
            Self::UnsupportedVersion(version) => write!(f, "unsupported IP version {version}"),
            Self::Ipv4HeaderLength(ihl) => {
                write!(
                    f,
                    "IPv4 header length {ihl} words is below the minimum of 5"
                )
            }
            Self::Ipv4TotalLength(total) => {
                write!(f, "IPv4 total length {total} is smaller than the header")
            }
            Self::Ipv4HeaderChecksum => f.write_str("IPv4 header checksum does not verify"),
            Self::HeaderTruncated { protocol } => {
                write!(f, "IP payload ends inside a header of protocol {protocol}")
            }
            Self::HopByHopNotFirst => {
                f.write_str("IPv6 Hop-by-Hop Options header not right after the IPv6 header")
            }
            Self::RepeatedFragmentHeader => f.write_str("IPv6 packet has two Fragment headers"),
            Self::TooManyExtensionHeaders => f.write_str("too many IPv6 extension headers"),
            Self::AuthHeaderLength => f.write_str("Authentication Header payload length of 0"),
            Self::UdpLength(len) => {
                write!(f, "UDP length {len} is below 8 or beyond the IP payload")
            }
            Self::TcpDataOffset(offset) => {
                write!(
                    f,
                    "TCP data offset {offset} words is below the minimum of 5"
                )
            }
        }
    }
}

impl core::error::Error for ParseError {}

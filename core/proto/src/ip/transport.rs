//! Typed views of the transport header, and the flow key built from them.

use core::net::SocketAddr;

use super::error::ParseError;
use super::packet::IpVersion;
use super::{checksum, protocol};

/// The upper layer of an [`IpPacket`](super::IpPacket), validated when the packet was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    /// A UDP datagram.
    Udp(UdpView<'a>),
    /// A TCP segment.
    Tcp(TcpView<'a>),
    /// An ICMP message in an IPv4 packet.
    Icmpv4(IcmpView<'a>),
    /// An ICMPv6 message in an IPv6 packet.
    Icmpv6(IcmpView<'a>),
    /// A fragment of a larger datagram; nothing in it is parsed. See
    /// [`IpPacket::fragment`](super::IpPacket::fragment) and
    /// [`IpPacket::payload`](super::IpPacket::payload).
    Fragment,
    /// Any other protocol, including ESP and No Next Header, left unparsed. See
    /// [`IpPacket::protocol`](super::IpPacket::protocol) and
    /// [`IpPacket::payload`](super::IpPacket::payload).
    Other,
}

impl<'a> Transport<'a> {
    /// Validates the transport header at the start of `upper`, a whole upper-layer packet.
    /// `addresses` are the IP source and destination, kept for the pseudo-header checksum.
    // Inlined so that the aggregates it passes on stay in registers: copied through memory,
    // their packed layouts caused store-forwarding stalls that made the parse 2-3x slower.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(super) fn parse(
        version: IpVersion,
        protocol: u8,
        upper: &'a [u8],
        addresses: &'a [u8],
    ) -> Result<Self, ParseError> {
        Ok(match (version, protocol) {
            (_, protocol::UDP) => Self::Udp(UdpView::parse(version, upper, addresses)?),
            (_, protocol::TCP) => Self::Tcp(TcpView::parse(upper, addresses)?),
            (IpVersion::V4, protocol::ICMP) => {
                Self::Icmpv4(IcmpView::parse(version, upper, addresses)?)
            }
            (IpVersion::V6, protocol::ICMPV6) => {
                Self::Icmpv6(IcmpView::parse(version, upper, addresses)?)
            }
            _ => Self::Other,
        })
    }
}

/// A UDP datagram (RFC 768): the 8-byte header and the payload its Length covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpView<'a> {
    header: &'a [u8; 8],
    payload: &'a [u8],
    version: IpVersion,
    addresses: &'a [u8],
}

impl<'a> UdpView<'a> {
    #[inline]
    fn parse(version: IpVersion, upper: &'a [u8], addresses: &'a [u8]) -> Result<Self, ParseError> {
        let (header, rest) = upper
            .split_first_chunk::<8>()
            .ok_or(ParseError::HeaderTruncated {
                protocol: protocol::UDP,
            })?;
        let length = u16::from_be_bytes([header[4], header[5]]);
        // Bytes the IP payload holds beyond the UDP Length are ignored, as IP padding is.
        let payload = usize::from(length)
            .checked_sub(8)
            .and_then(|payload_len| rest.get(..payload_len))
            .ok_or(ParseError::UdpLength(length))?;
        Ok(Self {
            header,
            payload,
            version,
            addresses,
        })
    }

    /// The source port.
    pub const fn source_port(&self) -> u16 {
        u16::from_be_bytes([self.header[0], self.header[1]])
    }

    /// The destination port.
    pub const fn destination_port(&self) -> u16 {
        u16::from_be_bytes([self.header[2], self.header[3]])
    }

    /// The Length field: header plus payload, at least 8.
    pub const fn length(&self) -> u16 {
        u16::from_be_bytes([self.header[4], self.header[5]])
    }

    /// The Checksum field as sent; 0 means "none" in IPv4.
    pub const fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.header[6], self.header[7]])
    }

    /// The datagram's payload.
    pub const fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Whether the checksum verifies over the pseudo header, UDP header and payload.
    ///
    /// An IPv4 datagram sent without a checksum (field 0) passes; an IPv6 one fails.
    //# RFC 1122 §4.1.3.4: "the UDP checksum is optional; the value zero is transmitted in the
    //# checksum field of a UDP header to indicate the absence of a checksum."
    //# RFC 2460 §8.1: "Unlike IPv4, when UDP packets are originated by an IPv6 node, the UDP
    //# checksum is not optional."
    pub fn checksum_valid(&self) -> bool {
        if self.checksum() == 0 {
            return self.version == IpVersion::V4;
        }
        let sum =
            checksum::pseudo_header(self.addresses, protocol::UDP, usize::from(self.length()))
                .add_slice(self.header)
                .add_slice(self.payload);
        checksum::verifies(&sum)
    }
}

/// The TCP control bits (RFC 9293 §3.1), from byte 13 of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: Self = Self(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: Self = Self(0x02);
    /// Reset the connection.
    pub const RST: Self = Self(0x04);
    /// Push function.
    pub const PSH: Self = Self(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: Self = Self(0x10);
    /// Urgent pointer field is significant.
    pub const URG: Self = Self(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: Self = Self(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: Self = Self(0x80);

    /// The flags from their wire byte.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// The wire byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag set in `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A TCP segment (RFC 9293 §3.1): the fixed header, its options and the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpView<'a> {
    header: &'a [u8; 20],
    options: &'a [u8],
    payload: &'a [u8],
    addresses: &'a [u8],
}

impl<'a> TcpView<'a> {
    #[inline]
    fn parse(upper: &'a [u8], addresses: &'a [u8]) -> Result<Self, ParseError> {
        let cut = ParseError::HeaderTruncated {
            protocol: protocol::TCP,
        };
        let (header, rest) = upper.split_first_chunk::<20>().ok_or(cut)?;
        let data_offset = header[12] >> 4;
        let option_words = data_offset
            .checked_sub(5)
            .ok_or(ParseError::TcpDataOffset(data_offset))?;
        let (options, payload) = rest
            .split_at_checked(usize::from(option_words) * 4)
            .ok_or(cut)?;
        Ok(Self {
            header,
            options,
            payload,
            addresses,
        })
    }

    /// The source port.
    pub const fn source_port(&self) -> u16 {
        u16::from_be_bytes([self.header[0], self.header[1]])
    }

    /// The destination port.
    pub const fn destination_port(&self) -> u16 {
        u16::from_be_bytes([self.header[2], self.header[3]])
    }

    /// The Sequence Number.
    pub const fn sequence_number(&self) -> u32 {
        u32::from_be_bytes([
            self.header[4],
            self.header[5],
            self.header[6],
            self.header[7],
        ])
    }

    /// The Acknowledgment Number (meaningful when [`TcpFlags::ACK`] is set).
    pub const fn acknowledgment_number(&self) -> u32 {
        u32::from_be_bytes([
            self.header[8],
            self.header[9],
            self.header[10],
            self.header[11],
        ])
    }

    /// The header length in bytes, options included (Data Offset × 4).
    pub const fn header_len(&self) -> usize {
        20 + self.options.len()
    }

    /// The control bits.
    pub const fn flags(&self) -> TcpFlags {
        TcpFlags(self.header[13])
    }

    /// The receive Window.
    pub const fn window(&self) -> u16 {
        u16::from_be_bytes([self.header[14], self.header[15]])
    }

    /// The Checksum field as sent.
    pub const fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.header[16], self.header[17]])
    }

    /// The Urgent Pointer (meaningful when [`TcpFlags::URG`] is set).
    pub const fn urgent_pointer(&self) -> u16 {
        u16::from_be_bytes([self.header[18], self.header[19]])
    }

    /// The raw options, between the fixed header and the payload.
    pub const fn options(&self) -> &'a [u8] {
        self.options
    }

    /// The segment's payload.
    pub const fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Whether the checksum verifies over the pseudo header, TCP header and payload.
    pub fn checksum_valid(&self) -> bool {
        let len = self.header_len() + self.payload.len();
        let sum = checksum::pseudo_header(self.addresses, protocol::TCP, len)
            .add_slice(self.header)
            .add_slice(self.options)
            .add_slice(self.payload);
        checksum::verifies(&sum)
    }
}

/// An ICMP (RFC 792) or ICMPv6 (RFC 4443) message: the 8-byte header and the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpView<'a> {
    header: &'a [u8; 8],
    payload: &'a [u8],
    version: IpVersion,
    addresses: &'a [u8],
}

impl<'a> IcmpView<'a> {
    #[inline]
    fn parse(version: IpVersion, upper: &'a [u8], addresses: &'a [u8]) -> Result<Self, ParseError> {
        let protocol = match version {
            IpVersion::V4 => protocol::ICMP,
            IpVersion::V6 => protocol::ICMPV6,
        };
        let (header, payload) = upper
            .split_first_chunk::<8>()
            .ok_or(ParseError::HeaderTruncated { protocol })?;
        Ok(Self {
            header,
            payload,
            version,
            addresses,
        })
    }

    /// The Type.
    pub const fn icmp_type(&self) -> u8 {
        self.header[0]
    }

    /// The Code.
    pub const fn code(&self) -> u8 {
        self.header[1]
    }

    /// The Checksum field as sent.
    pub const fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.header[2], self.header[3]])
    }

    /// Header bytes 4 to 7, whose meaning depends on the type (identifier and sequence
    /// number, next-hop MTU, pointer, ...).
    pub const fn rest_of_header(&self) -> [u8; 4] {
        [
            self.header[4],
            self.header[5],
            self.header[6],
            self.header[7],
        ]
    }

    /// The body after the 8-byte header (for errors, the quoted packet).
    pub const fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The Identifier of an echo request or reply (ICMPv4 types 8 and 0, ICMPv6 128 and
    /// 129), which pairs requests with their replies as ports pair UDP datagrams; `None`
    /// for every other message.
    //# RFC 792: "Identifier: If code = 0, an identifier to aid in matching echos and
    //# replies, may be zero."
    pub const fn echo_identifier(&self) -> Option<u16> {
        let echo = match self.version {
            IpVersion::V4 => matches!(self.icmp_type(), 0 | 8),
            IpVersion::V6 => matches!(self.icmp_type(), 128 | 129),
        };
        if echo {
            Some(u16::from_be_bytes([self.header[4], self.header[5]]))
        } else {
            None
        }
    }

    /// Whether this is an error message, about which no ICMP error may be sent.
    ///
    /// ICMPv6 marks errors with types below 128 (RFC 4443 §2.1). ICMPv4 has no such rule:
    /// every type but the known informational ones (echo, router discovery, timestamp,
    /// information, address mask, extended echo) counts as an error, so that an unknown
    /// type never draws an error message.
    pub const fn is_error(&self) -> bool {
        is_icmp_error(self.version, self.icmp_type())
    }

    /// Whether the checksum verifies: over the message for ICMPv4, over the pseudo header
    /// and the message for ICMPv6 (RFC 4443 §2.3).
    pub fn checksum_valid(&self) -> bool {
        let start = match self.version {
            IpVersion::V4 => checksum::sum(&[]),
            IpVersion::V6 => {
                let len = self.header.len() + self.payload.len();
                checksum::pseudo_header(self.addresses, protocol::ICMPV6, len)
            }
        };
        checksum::verifies(&start.add_slice(self.header).add_slice(self.payload))
    }
}

/// Whether an ICMP message of `icmp_type` is an error, as [`IcmpView::is_error`] says.
pub(super) const fn is_icmp_error(version: IpVersion, icmp_type: u8) -> bool {
    match version {
        IpVersion::V4 => !matches!(
            icmp_type,
            0 | 8 | 9 | 10 | 13 | 14 | 15 | 16 | 17 | 18 | 42 | 43
        ),
        IpVersion::V6 => icmp_type < 128,
    }
}

/// The transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowProtocol {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// ICMP or ICMPv6 echo, requests and replies alike: both "ports" of the key are the
    /// echo's Identifier, so that a reply's key is the request's
    /// [`reversed`](FlowKey::reversed).
    IcmpEcho,
}

/// The 5-tuple that maps a packet to its flow (for ICMP echo, the addresses and the
/// Identifier in place of both ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// UDP or TCP.
    pub protocol: FlowProtocol,
    /// Source address and port.
    pub source: SocketAddr,
    /// Destination address and port.
    pub destination: SocketAddr,
}

impl FlowKey {
    /// The key of the packets going the other way.
    #[must_use]
    pub const fn reversed(self) -> Self {
        Self {
            protocol: self.protocol,
            source: self.destination,
            destination: self.source,
        }
    }
}

//! The checked IP packet view and the extension-header walk.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::ParseError;
use super::transport::{FlowKey, FlowProtocol, Transport};
use super::{checksum, protocol};

/// Most extension headers [`IpPacket::new_checked`] walks before giving up with
/// [`ParseError::TooManyExtensionHeaders`].
///
/// RFC 8200 §4.1 recommends at most one of each extension header, Destination Options
/// twice: six walkable headers (Hop-by-Hop, Destination, Routing, Fragment, Authentication,
/// Destination). Eight leaves slack for unusual senders while keeping the walk short.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Length of the IPv4 header without options.
pub(super) const IPV4_HEADER_LEN: usize = 20;
/// Length of the IPv6 header.
pub(super) const IPV6_HEADER_LEN: usize = 40;

/// IP version of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4 (RFC 791).
    V4,
    /// IPv6 (RFC 8200).
    V6,
}

/// Where a fragment sits in its original datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// The Identification shared by the fragments of one datagram (16 bits in IPv4).
    pub identification: u32,
    /// Offset of this fragment's data in the original payload, in 8-octet units.
    pub offset: u16,
    /// Whether more fragments follow.
    pub more_fragments: bool,
}

impl Fragment {
    /// Whether this is the first fragment, the one that carries the upper-layer header.
    pub const fn is_first(&self) -> bool {
        self.offset == 0
    }

    /// A fragment, unless offset 0 and no more fragments say the datagram is whole.
    //# RFC 8200 §4.5: "If the fragment is a whole datagram (that is, both the Fragment Offset
    //# field and the M flag are zero), then it does not need any further reassembly and
    //# should be processed as a fully reassembled packet"
    const fn of(identification: u32, offset: u16, more_fragments: bool) -> Option<Self> {
        if offset == 0 && !more_fragments {
            None
        } else {
            Some(Self {
                identification,
                offset,
                more_fragments,
            })
        }
    }
}

/// The fixed part of the IP header, as arrays so that field reads cannot go out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FixedHeader<'a> {
    V4(&'a [u8; IPV4_HEADER_LEN]),
    V6(&'a [u8; IPV6_HEADER_LEN]),
}

/// A validated IPv4 or IPv6 packet, borrowed from the buffer it was read from.
///
/// Built by [`IpPacket::new_checked`], which checks every length and the header chain, so
/// that every accessor is infallible. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket<'a> {
    bytes: &'a [u8],
    fixed: FixedHeader<'a>,
    upper: &'a [u8],
    protocol: u8,
    fragment: Option<Fragment>,
    transport: Transport<'a>,
}

impl<'a> IpPacket<'a> {
    /// Validates the IP packet at the start of `buf` and its transport header.
    ///
    /// Checks the version, the header and packet lengths against the buffer (bytes beyond
    /// the packet's own length are ignored), the IPv4 header checksum, the extension-header
    /// chain (bounded by [`MAX_EXTENSION_HEADERS`]) and, unless the packet is a fragment,
    /// the UDP, TCP or ICMP header. Transport checksums are left to the views'
    /// `checksum_valid`.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, ParseError> {
        match buf.first().map(|first| first >> 4) {
            Some(4) => Self::parse_ipv4(buf),
            Some(6) => Self::parse_ipv6(buf),
            Some(version) => Err(ParseError::UnsupportedVersion(version)),
            None => Err(truncated(IPV4_HEADER_LEN, 0)),
        }
    }

    #[inline]
    fn parse_ipv4(buf: &'a [u8]) -> Result<Self, ParseError> {
        let fixed = buf
            .first_chunk::<IPV4_HEADER_LEN>()
            .ok_or(truncated(IPV4_HEADER_LEN, buf.len()))?;
        let ihl = fixed[0] & 0x0f;
        if ihl < 5 {
            return Err(ParseError::Ipv4HeaderLength(ihl));
        }
        let header_len = usize::from(ihl) * 4;
        let header = buf
            .get(..header_len)
            .ok_or(truncated(header_len, buf.len()))?;
        //# RFC 791 §3.1, Header Checksum: "A checksum on the header only. Since some header
        //# fields change (e.g., time to live), this is recomputed and verified at each point
        //# that the internet header is processed."
        if !checksum::verifies(&checksum::sum(header)) {
            return Err(ParseError::Ipv4HeaderChecksum);
        }
        let total_len = u16::from_be_bytes([fixed[2], fixed[3]]);
        let total = usize::from(total_len);
        let bytes = buf.get(..total).ok_or(truncated(total, buf.len()))?;
        // The header is in the buffer, so only a Total Length below it can fail here.
        let payload = bytes
            .get(header_len..)
            .ok_or(ParseError::Ipv4TotalLength(total_len))?;
        let flags_and_offset = u16::from_be_bytes([fixed[6], fixed[7]]);
        let fragment = Fragment::of(
            u32::from(u16::from_be_bytes([fixed[4], fixed[5]])),
            flags_and_offset & 0x1fff,
            flags_and_offset & 0x2000 != 0,
        );
        let chain = walk(IpVersion::V4, fixed[9], payload, fragment)?;
        Self::finish(bytes, FixedHeader::V4(fixed), ipv4_addresses(fixed), chain)
    }

    #[inline]
    fn parse_ipv6(buf: &'a [u8]) -> Result<Self, ParseError> {
        let fixed = buf
            .first_chunk::<IPV6_HEADER_LEN>()
            .ok_or(truncated(IPV6_HEADER_LEN, buf.len()))?;
        let total = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
        let bytes = buf.get(..total).ok_or(truncated(total, buf.len()))?;
        // `total` is at least the header length, so this is never the default.
        let payload = bytes.get(IPV6_HEADER_LEN..).unwrap_or_default();
        let chain = walk(IpVersion::V6, fixed[6], payload, None)?;
        Self::finish(bytes, FixedHeader::V6(fixed), ipv6_addresses(fixed), chain)
    }

    // Inlined so that the aggregates it passes on stay in registers: copied through memory,
    // their packed layouts caused store-forwarding stalls that made the parse 2-3x slower.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn finish(
        bytes: &'a [u8],
        fixed: FixedHeader<'a>,
        addresses: &'a [u8],
        chain: Chain<'a>,
    ) -> Result<Self, ParseError> {
        let version = match fixed {
            FixedHeader::V4(_) => IpVersion::V4,
            FixedHeader::V6(_) => IpVersion::V6,
        };
        let transport = if chain.fragment.is_some() {
            Transport::Fragment
        } else {
            Transport::parse(version, chain.protocol, chain.upper, addresses)?
        };
        Ok(Self {
            bytes,
            fixed,
            upper: chain.upper,
            protocol: chain.protocol,
            fragment: chain.fragment,
            transport,
        })
    }

    /// The IP version.
    pub const fn version(&self) -> IpVersion {
        match self.fixed {
            FixedHeader::V4(_) => IpVersion::V4,
            FixedHeader::V6(_) => IpVersion::V6,
        }
    }

    /// The source address.
    pub fn source(&self) -> IpAddr {
        match self.fixed {
            FixedHeader::V4(h) => Ipv4Addr::new(h[12], h[13], h[14], h[15]).into(),
            FixedHeader::V6(h) => ipv6_at::<8>(h).into(),
        }
    }

    /// The destination address (for IPv6, the one in the IPv6 header, even when a Routing
    /// header lists further hops).
    pub fn destination(&self) -> IpAddr {
        match self.fixed {
            FixedHeader::V4(h) => Ipv4Addr::new(h[16], h[17], h[18], h[19]).into(),
            FixedHeader::V6(h) => ipv6_at::<24>(h).into(),
        }
    }

    /// The IPv4 Time to Live or IPv6 Hop Limit.
    pub const fn hop_limit(&self) -> u8 {
        match self.fixed {
            FixedHeader::V4(h) => h[8],
            FixedHeader::V6(h) => h[7],
        }
    }

    /// The protocol number of the upper layer, after any extension headers.
    ///
    /// For a non-first fragment this is the Next Header of its Fragment header, the first
    /// header of the fragmentable part, which the fragment itself does not carry.
    pub const fn protocol(&self) -> u8 {
        self.protocol
    }

    /// The whole packet, without any trailing bytes the buffer had beyond it.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Length of the IP header, its options and its extension headers: where
    /// [`payload`](Self::payload) starts.
    pub const fn header_len(&self) -> usize {
        self.bytes.len() - self.upper.len()
    }

    /// The upper-layer bytes after every header [`new_checked`](Self::new_checked) walked:
    /// the transport header and its payload, or a fragment's data.
    pub const fn payload(&self) -> &'a [u8] {
        self.upper
    }

    /// Where this fragment sits, or `None` for a whole datagram.
    pub const fn fragment(&self) -> Option<Fragment> {
        self.fragment
    }

    /// Whether routers may not fragment the packet: the IPv4 Don't Fragment flag; always
    /// true for IPv6, which routers never fragment.
    pub const fn dont_fragment(&self) -> bool {
        match self.fixed {
            FixedHeader::V4(h) => h[6] & 0x40 != 0,
            FixedHeader::V6(_) => true,
        }
    }

    /// The typed view of the transport header, validated by
    /// [`new_checked`](Self::new_checked).
    pub const fn transport(&self) -> Transport<'a> {
        self.transport
    }

    /// The flow this packet belongs to, for UDP and TCP packets and ICMP echo requests
    /// and replies that are not fragments (an echo's Identifier stands for both ports).
    pub fn flow_key(&self) -> Option<FlowKey> {
        let (protocol, source_port, destination_port) = match self.transport {
            Transport::Udp(udp) => (FlowProtocol::Udp, udp.source_port(), udp.destination_port()),
            Transport::Tcp(tcp) => (FlowProtocol::Tcp, tcp.source_port(), tcp.destination_port()),
            Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp) => {
                let id = icmp.echo_identifier()?;
                (FlowProtocol::IcmpEcho, id, id)
            }
            _ => return None,
        };
        Some(FlowKey {
            protocol,
            source: SocketAddr::new(self.source(), source_port),
            destination: SocketAddr::new(self.destination(), destination_port),
        })
    }
}

/// The IPv6 address at `OFFSET` in the IPv6 header (8: source, 24: destination).
fn ipv6_at<const OFFSET: usize>(header: &[u8; IPV6_HEADER_LEN]) -> Ipv6Addr {
    let mut octets = [0; 16];
    octets.copy_from_slice(&header[OFFSET..OFFSET + 16]);
    Ipv6Addr::from(octets)
}

/// The source and destination addresses in an IPv4 header, as the pseudo header sums them.
pub(super) fn ipv4_addresses(header: &[u8; IPV4_HEADER_LEN]) -> &[u8] {
    &header[12..20]
}

/// The source and destination addresses in an IPv6 header, as the pseudo header sums them.
pub(super) fn ipv6_addresses(header: &[u8; IPV6_HEADER_LEN]) -> &[u8] {
    &header[8..40]
}

fn truncated(needed: usize, available: usize) -> ParseError {
    ParseError::Truncated { needed, available }
}

/// Where the extension-header walk stopped.
#[derive(Clone, Copy)]
struct Chain<'a> {
    /// The protocol number of what `upper` holds.
    protocol: u8,
    /// The bytes after the last header walked.
    upper: &'a [u8],
    /// The fragment information, from the IPv4 header or an IPv6 Fragment header.
    fragment: Option<Fragment>,
}

impl Chain<'_> {
    /// Whether `upper` starts with a header, rather than a non-first fragment's data.
    fn headers_follow(&self) -> bool {
        self.fragment.is_none_or(|fragment| fragment.is_first())
    }
}

/// Whether the walk steps over `protocol` in an IP packet of `version`.
const fn is_extension_header(version: IpVersion, protocol: u8) -> bool {
    match version {
        IpVersion::V4 => protocol == protocol::AUTHENTICATION,
        IpVersion::V6 => matches!(
            protocol,
            protocol::HOP_BY_HOP
                | protocol::ROUTING
                | protocol::FRAGMENT
                | protocol::DESTINATION_OPTIONS
                | protocol::AUTHENTICATION
        ),
    }
}

/// Walks the extension headers that start `payload`, whose first header is `first`.
// Inlined so that the aggregates it passes on stay in registers: copied through memory,
// their packed layouts caused store-forwarding stalls that made the parse 2-3x slower.
#[allow(clippy::inline_always)]
#[inline(always)]
fn walk(
    version: IpVersion,
    first: u8,
    payload: &[u8],
    fragment: Option<Fragment>,
) -> Result<Chain<'_>, ParseError> {
    let mut chain = Chain {
        protocol: first,
        upper: payload,
        fragment,
    };
    let mut walked = 0;
    let mut seen_fragment_header = false;
    while chain.headers_follow() && is_extension_header(version, chain.protocol) {
        if walked == MAX_EXTENSION_HEADERS {
            return Err(ParseError::TooManyExtensionHeaders);
        }
        let (next, rest) = match chain.protocol {
            //# RFC 2460 §4 (kept by RFC 8200): "The Hop-by-Hop Options header, when present,
            //# must immediately follow the IPv6 header."
            protocol::HOP_BY_HOP if walked > 0 => return Err(ParseError::HopByHopNotFirst),
            protocol::FRAGMENT if seen_fragment_header => {
                return Err(ParseError::RepeatedFragmentHeader);
            }
            protocol::FRAGMENT => {
                seen_fragment_header = true;
                let (next, rest, fragment) = fragment_header(chain.upper)?;
                chain.fragment = fragment;
                (next, rest)
            }
            protocol::AUTHENTICATION => authentication_header(chain.upper)?,
            options_or_routing => generic_header(options_or_routing, chain.upper)?,
        };
        chain.protocol = next;
        chain.upper = rest;
        walked += 1;
    }
    Ok(chain)
}

/// A Hop-by-Hop Options, Routing or Destination Options header: Next Header, then Hdr Ext
/// Len in 8-octet units not counting the first 8 octets.
#[inline]
fn generic_header(protocol: u8, upper: &[u8]) -> Result<(u8, &[u8]), ParseError> {
    let cut = ParseError::HeaderTruncated { protocol };
    let [next, ext_len] = *upper.first_chunk::<2>().ok_or(cut)?;
    let len = (usize::from(ext_len) + 1) * 8;
    Ok((next, upper.get(len..).ok_or(cut)?))
}

/// The 8-byte IPv6 Fragment header (RFC 8200 §4.5): Next Header, reserved, 13-bit offset,
/// two reserved bits and M, 32-bit Identification.
#[inline]
fn fragment_header(upper: &[u8]) -> Result<(u8, &[u8], Option<Fragment>), ParseError> {
    let (header, rest) = upper
        .split_first_chunk::<8>()
        .ok_or(ParseError::HeaderTruncated {
            protocol: protocol::FRAGMENT,
        })?;
    let offset_and_m = u16::from_be_bytes([header[2], header[3]]);
    let identification = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let fragment = Fragment::of(identification, offset_and_m >> 3, offset_and_m & 1 != 0);
    Ok((header[0], rest, fragment))
}

/// The Authentication Header (RFC 4302 §2): Next Header, then Payload Len in 4-octet units
/// minus 2.
#[inline]
fn authentication_header(upper: &[u8]) -> Result<(u8, &[u8]), ParseError> {
    let cut = ParseError::HeaderTruncated {
        protocol: protocol::AUTHENTICATION,
    };
    let [next, payload_len] = *upper.first_chunk::<2>().ok_or(cut)?;
    // Next Header, Payload Len, Reserved, SPI and Sequence Number take 12 octets: a Payload
    // Len of 0 would make the header 8.
    if payload_len == 0 {
        return Err(ParseError::AuthHeaderLength);
    }
    let len = (usize::from(payload_len) + 2) * 4;
    Ok((next, upper.get(len..).ok_or(cut)?))
}
